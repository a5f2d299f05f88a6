//! The `api` and `healthcheck` commands: a Workload API client over the unix socket that
//! prints or writes what the agent serves (files named as spire-agent names them).

use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use mandate_proto::workload::{
    JwtsvidRequest, ValidateJwtsvidRequest, X509svidRequest, X509svidResponse,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::cli::Output;
use crate::pem;

/// Errors of the client commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to the workload API at {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The agent answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The agent sent nothing in time.
    #[error("no answer from the workload API within {0:?}")]
    Timeout(Duration),
    /// The stream ended without a message.
    #[error("the workload API closed the stream")]
    Closed,
    /// Writing files failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate in the answer does not parse.
    #[error("invalid certificate in answer: {0}")]
    Certificate(String),
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the Workload API socket.
///
/// # Errors
/// When the socket cannot be reached.
pub async fn connect(socket: &str) -> Result<SpiffeWorkloadApiClient<Channel>, ClientError> {
    let path = crate::config::socket_path_from(socket).unwrap_or_else(|_| PathBuf::from(socket));
    let connector = tower::service_fn(move |_| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    Ok(SpiffeWorkloadApiClient::new(channel))
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        mandate_proto::WORKLOAD_HEADER_KEY,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// `api fetch x509`: prints the SVIDs and optionally writes them out.
///
/// # Errors
/// On connection failure, refusal, timeout or write failure.
pub async fn fetch_x509(
    socket: &str,
    write: Option<&Path>,
    output: Output,
) -> Result<String, ClientError> {
    let started = Instant::now();
    let mut client = connect(socket).await?;
    let mut stream = client
        .fetch_x509svid(request(X509svidRequest {}))
        .await?
        .into_inner();
    let message = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .map_err(|_| ClientError::Timeout(TIMEOUT))??
        .ok_or(ClientError::Closed)?;
    if let Some(dir) = write {
        write_x509(dir, &message)?;
    }
    describe_x509(&message, started.elapsed(), output)
}

fn describe_x509(
    message: &X509svidResponse,
    took: Duration,
    output: Output,
) -> Result<String, ClientError> {
    let mut rows = Vec::new();
    for svid in &message.svids {
        let chain = split(&svid.x509_svid)?;
        let leaf = chain
            .first()
            .ok_or_else(|| ClientError::Certificate("empty chain".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| ClientError::Certificate(e.to_string()))?;
        rows.push((
            svid,
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        ));
    }
    if output == Output::Json {
        let json: Vec<_> = rows
            .iter()
            .map(|(svid, nb, na)| serde_json::json!({"spiffe_id": svid.spiffe_id, "hint": svid.hint, "not_before": nb, "not_after": na}))
            .collect();
        return Ok(serde_json::Value::Array(json).to_string());
    }
    let mut text = format!(
        "Received {} svid after {}ms\n",
        rows.len(),
        took.as_millis()
    );
    for (svid, nb, na) in rows {
        let _ = write!(
            text,
            "\nSPIFFE ID:\t\t{}\nSVID Valid After:\t{}\nSVID Valid Until:\t{}\n",
            svid.spiffe_id,
            rfc3339(nb),
            rfc3339(na)
        );
        if !svid.hint.is_empty() {
            let _ = writeln!(text, "Hint:\t\t\t{}", svid.hint);
        }
    }
    Ok(text.trim_end().to_owned())
}

fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(mandate_core::time::from_unix_seconds(unix)).to_string()
}

fn split(der: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    mandate_core::x509::split_der_certs(der).map_err(|e| ClientError::Certificate(e.to_string()))
}

fn write_x509(dir: &Path, message: &X509svidResponse) -> Result<(), ClientError> {
    std::fs::create_dir_all(dir).map_err(|source| ClientError::Write {
        path: dir.to_owned(),
        source,
    })?;
    for (i, svid) in message.svids.iter().enumerate() {
        let chain = split(&svid.x509_svid)?;
        write_file(
            &dir.join(format!("svid.{i}.pem")),
            pem::encode("CERTIFICATE", &chain).as_bytes(),
            0o644,
        )?;
        let key = pem::encode("PRIVATE KEY", &[svid.x509_svid_key.to_vec()]);
        write_file(&dir.join(format!("svid.{i}.key")), key.as_bytes(), 0o600)?;
        let bundle = split(&svid.bundle)?;
        write_file(
            &dir.join(format!("bundle.{i}.pem")),
            pem::encode("CERTIFICATE", &bundle).as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    let err = |source| ClientError::Write {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    std::io::Write::write_all(&mut file, data).map_err(err)
}

/// `api fetch jwt`: one token per line in text mode.
///
/// # Errors
/// On connection failure or refusal.
pub async fn fetch_jwt(
    socket: &str,
    audience: Vec<String>,
    spiffe_id: Option<String>,
    output: Output,
) -> Result<String, ClientError> {
    let mut client = connect(socket).await?;
    let response = client
        .fetch_jwtsvid(request(JwtsvidRequest {
            audience,
            spiffe_id: spiffe_id.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    if output == Output::Json {
        let json: Vec<_> = response
            .svids
            .iter()
            .map(|s| serde_json::json!({"spiffe_id": s.spiffe_id, "token": s.svid, "hint": s.hint}))
            .collect();
        return Ok(serde_json::Value::Array(json).to_string());
    }
    Ok(response
        .svids
        .iter()
        .map(|s| s.svid.as_str())
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `api watch`: prints one line (or JSON object) per X509-SVID update until the stream ends.
///
/// # Errors
/// When the stream fails or ends with an error.
pub async fn watch(socket: &str, output: Output) -> Result<(), ClientError> {
    let mut client = connect(socket).await?;
    let mut stream = client
        .fetch_x509svid(request(X509svidRequest {}))
        .await?
        .into_inner();
    let started = Instant::now();
    while let Some(message) = stream.message().await? {
        let text = describe_x509(&message, started.elapsed(), output)?;
        if output == Output::Json {
            println!("{text}");
        } else {
            println!("{text}\n");
        }
    }
    Err(ClientError::Closed)
}

/// `healthcheck`: the agent is healthy when its Workload API answers a request.
///
/// # Errors
/// When the socket cannot be reached or the server is unavailable.
pub async fn healthcheck(socket: &str) -> Result<(), ClientError> {
    let mut client = connect(socket).await?;
    let probe = request(ValidateJwtsvidRequest {
        audience: "mandate-healthcheck".into(),
        svid: String::new(),
    });
    match tokio::time::timeout(TIMEOUT, client.validate_jwtsvid(probe)).await {
        Err(_) => Err(ClientError::Timeout(TIMEOUT)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => Ok(()),
        Ok(Err(status)) => Err(status.into()),
    }
}

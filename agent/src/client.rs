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
    /// The agent answered with an error: its message's first line, as the server CLI prints
    /// refusals (the code's name when there is no message).
    #[error("{}", status_line(.0))]
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
    /// The agent has not heard from the server since it started.
    #[error("the agent has not heard from the server since it started")]
    NeverHeard,
    /// The agent last heard from the server longer ago than the bound.
    #[error("the agent last heard from the server {ago:?} ago (bound {bound:?})")]
    Stale {
        /// How long ago, to the second.
        ago: Duration,
        /// The bound.
        bound: Duration,
    },
}

/// One line for a refusal: the message's first line, or the code's name when it is empty.
fn status_line(status: &tonic::Status) -> String {
    match status.message().lines().next() {
        Some(line) if !line.is_empty() => line.to_owned(),
        _ => format!("request failed: {:?}", status.code()),
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the Workload API socket.
///
/// # Errors
/// When the socket cannot be reached.
pub async fn connect(socket: &str) -> Result<SpiffeWorkloadApiClient<Channel>, ClientError> {
    Ok(SpiffeWorkloadApiClient::new(channel(socket).await?))
}

/// A channel to the agent socket, for the Workload API and the other services on it.
///
/// # Errors
/// When the socket cannot be reached.
pub async fn channel(socket: &str) -> Result<Channel, ClientError> {
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
    Ok(channel)
}

/// A request with the Workload API security header.
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
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

/// `healthcheck`: the agent is healthy when its Workload API answers and it has heard from
/// the server within `max_staleness` (DESIGN 3.4: the server sends something at least every
/// 5 s, and verifiers fail closed after 15 s without it).
///
/// # Errors
/// When the socket cannot be reached, the agent does not answer, or its last contact with the
/// server is missing or older than `max_staleness`.
pub async fn healthcheck(socket: &str, max_staleness: Duration) -> Result<(), ClientError> {
    let mut client = connect(socket).await?;
    let probe = request(ValidateJwtsvidRequest {
        audience: "mandate-healthcheck".into(),
        svid: String::new(),
    });
    let status = match tokio::time::timeout(TIMEOUT, client.validate_jwtsvid(probe)).await {
        Err(_) => return Err(ClientError::Timeout(TIMEOUT)),
        Ok(Ok(_)) => return Err(ClientError::NeverHeard),
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => status,
        Ok(Err(status)) => return Err(status.into()),
    };
    let heard_ms: i64 = status
        .metadata()
        .get(crate::workload::service::LAST_HEARD_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    staleness_verdict(heard_ms, std::time::SystemTime::now(), max_staleness)
}

/// Healthy when `heard_ms` (unix ms, 0 for never) is at most `bound` before `now`.
fn staleness_verdict(
    heard_ms: i64,
    now: std::time::SystemTime,
    bound: Duration,
) -> Result<(), ClientError> {
    if heard_ms <= 0 {
        return Err(ClientError::NeverHeard);
    }
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let ago = Duration::from_millis(u64::try_from(now_ms.saturating_sub(heard_ms)).unwrap_or(0));
    if ago > bound {
        return Err(ClientError::Stale {
            ago: Duration::from_secs(ago.as_secs()),
            bound,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_counts_from_the_last_contact() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let bound = Duration::from_secs(15);
        assert!(matches!(
            staleness_verdict(0, now, bound),
            Err(ClientError::NeverHeard)
        ));
        assert!(staleness_verdict(986_000, now, bound).is_ok());
        assert!(staleness_verdict(985_000, now, bound).is_ok());
        let error = staleness_verdict(984_000, now, bound).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the agent last heard from the server 16s ago (bound 15s)"
        );
        // A clock behind the agent's counts as fresh.
        assert!(staleness_verdict(1_001_000, now, bound).is_ok());
    }
}

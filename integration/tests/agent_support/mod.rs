//! Shared helpers of the agent integration tests: a server and an attested agent, the
//! test's own unix identity, and raw Workload API calls with or without the security header.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mandate_integration::{Agent, Server, TRUST_DOMAIN, workload};
use mandate_proto::workload::{X509svidRequest, X509svidResponse};
use tonic::Streaming;

/// The uid this test runs as.
pub(crate) fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// `unix:uid:<my uid>`.
pub(crate) fn my_uid_selector() -> String {
    format!("unix:uid:{}", my_uid())
}

/// A SPIFFE ID in the test trust domain.
pub(crate) fn id(path: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{path}")
}

/// A server and one attested agent.
pub(crate) fn server_and_agent(name: &str) -> Result<(Server, Agent)> {
    let server = Server::start()?;
    let agent = Agent::start(&server, name)?;
    Ok((server, agent))
}

/// Creates an entry for this test's uid under `agent`, with extra flags.
pub(crate) fn entry_for_me(
    server: &Server,
    agent: &Agent,
    path: &str,
    extra: &[&str],
) -> Result<String> {
    let selector = my_uid_selector();
    let mut args = vec!["--selector", selector.as_str()];
    args.extend_from_slice(extra);
    server.create_entry(&id(path), &agent.spiffe_id, &args)
}

/// A request carrying the security header.
pub(crate) fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().expect("ascii"));
    request
}

/// Opens a raw FetchX509SVID stream.
pub(crate) async fn x509_stream(
    socket: &Path,
) -> Result<Streaming<X509svidResponse>, tonic::Status> {
    let mut client = workload::client(socket)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner())
}

/// The SPIFFE IDs in one X509 message.
pub(crate) fn ids_of(message: &X509svidResponse) -> Vec<String> {
    let mut ids: Vec<String> = message.svids.iter().map(|s| s.spiffe_id.clone()).collect();
    ids.sort();
    ids
}

/// Waits until a fresh FetchX509SVID call returns a message that `accept` likes.
pub(crate) async fn wait_x509(
    socket: &Path,
    timeout: Duration,
    accept: impl Fn(&X509svidResponse) -> bool,
) -> Result<X509svidResponse> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last;
        match x509_stream(socket).await {
            Ok(mut stream) => {
                match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                    Ok(Ok(Some(message))) if accept(&message) => return Ok(message),
                    other => last = format!("{other:?}"),
                }
            }
            Err(status) => last = format!("{status:?}"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for an X509-SVID message; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the next stream message within `timeout`.
pub(crate) async fn next(
    stream: &mut Streaming<X509svidResponse>,
    timeout: Duration,
) -> Result<Result<X509svidResponse, tonic::Status>> {
    match tokio::time::timeout(timeout, stream.message()).await {
        Err(_) => bail!("no stream message within {timeout:?}"),
        Ok(Ok(Some(m))) => Ok(Ok(m)),
        Ok(Ok(None)) => bail!("stream ended without a status"),
        Ok(Err(status)) => Ok(Err(status)),
    }
}

/// The serial and notAfter (unix s) of the first SVID's leaf.
pub(crate) fn leaf_info(message: &X509svidResponse) -> Result<(Vec<u8>, i64)> {
    let svid = message.svids.first().context("no svid")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&svid.x509_svid).context("leaf parses")?;
    Ok((
        cert.raw_serial().to_vec(),
        cert.validity().not_after.timestamp(),
    ))
}

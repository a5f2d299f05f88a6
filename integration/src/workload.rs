//! A raw Workload API client on our own protos, for tests that must send what standard
//! clients never send (no security header, odd requests) or read exact status codes.

use std::path::Path;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use mandate_proto::delegation::task_status_client::TaskStatusClient;
use mandate_proto::workload::JwtBundlesRequest;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::net::UnixStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects a tonic channel to a unix socket.
///
/// # Errors
///
/// When the socket does not accept the connection.
pub async fn channel(socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(channel)
}

/// A Workload API client on `socket`.
///
/// # Errors
///
/// When the socket does not accept the connection.
pub async fn client(socket: &Path) -> Result<SpiffeWorkloadApiClient<Channel>> {
    Ok(SpiffeWorkloadApiClient::new(channel(socket).await?))
}

/// A task-status client on `socket`.
///
/// # Errors
///
/// When the socket does not accept the connection.
pub async fn task_status_client(socket: &Path) -> Result<TaskStatusClient<Channel>> {
    Ok(TaskStatusClient::new(channel(socket).await?))
}

/// Wraps `message` in a request carrying the `workload.spiffe.io: true` header.
pub fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        mandate_proto::WORKLOAD_HEADER_KEY,
        MetadataValue::from_static("true"),
    );
    request
}

/// The JWKS of the harness trust domain from the first message of a `FetchJWTBundles` stream.
///
/// # Errors
///
/// When the call fails, the stream ends first, or the bundle is missing or not JSON.
pub async fn jwt_bundle(
    client: &mut SpiffeWorkloadApiClient<Channel>,
) -> Result<serde_json::Value> {
    let mut stream = client
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await?
        .into_inner();
    let message = stream.message().await?.context("a JWT bundle message")?;
    let key = format!("spiffe://{}", crate::TRUST_DOMAIN);
    let bytes = message
        .bundles
        .get(&key)
        .with_context(|| format!("JWT bundle for {key}"))?;
    Ok(serde_json::from_slice(bytes)?)
}

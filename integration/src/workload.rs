//! A raw Workload API client on our own protos, for tests that must send what standard
//! clients never send (no security header, odd requests) or read exact status codes.

use std::path::Path;

use anyhow::Result;
use hyper_util::rt::TokioIo;
use mandate_proto::delegation::task_status_client::TaskStatusClient;
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

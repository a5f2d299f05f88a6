//! The Workload API endpoint: the unix socket (mode 0777 in a 0755 dir, stale socket removed,
//! DESIGN 3.7) and the tonic server that carries the Workload API and the task-status feed.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mandate_proto::delegation::task_status_server::TaskStatusServer;
use mandate_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use tokio_stream::StreamExt;

use super::authority::AuthorityFix;
use super::service::WorkloadService;
use super::task_status::TaskStatusService;

/// Errors from opening or serving the socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The socket or its directory could not be set up.
    #[error("cannot open workload socket {path}: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("workload API server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Creates the socket's parent dirs (0755), removes a stale socket, binds, and sets 0777.
///
/// # Errors
/// When any of these steps fails.
pub fn bind(path: &Path) -> Result<UnixListener, EndpointError> {
    let err = |source| EndpointError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    Ok(listener)
}

/// Serves both services on `listener` until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: UnixListener,
    workload: WorkloadService,
    task_status: TaskStatusService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    tonic::transport::Server::builder()
        .add_service(SpiffeWorkloadApiServer::new(workload))
        .add_service(TaskStatusServer::new(task_status))
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new)),
            shutdown,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_modes_and_stale_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("public/api.sock");
        let first = bind(&path).unwrap();
        drop(first);
        // The file is still there: a stale socket.
        assert!(path.exists());
        let _second = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o755);
    }
}

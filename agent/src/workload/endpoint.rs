//! The Workload API endpoint: the unix socket (mode 0777 in a 0755 dir that only the agent's
//! uid or root can have made, only a stale socket removed, DESIGN 3.7) and the tonic server
//! that carries the Workload API and the task-status feed.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mandate_proto::delegation::delegation_server::DelegationServer;
use mandate_proto::delegation::task_status_server::TaskStatusServer;
use mandate_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use tokio_stream::StreamExt;

use super::delegation::DelegationService;
use super::h2_authority::{AuthorityFix, MAX_FRAME_SIZE};
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
    /// The socket's directory exists but someone other than this agent could have planted it
    /// or could replace the socket in it.
    #[error("refusing socket directory {path}: {why}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Something that is not a socket is at the socket path; it is never deleted.
    #[error("refusing to replace {path}: it exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A live process (another agent) answers on the socket.
    #[error("another process is serving on {path}: refusing to take over its socket")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The gRPC server failed.
    #[error("workload API server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Prepares the socket's directory, removes a stale socket, binds, and sets mode 0777
/// (DESIGN 3.7).
///
/// A missing directory is created with mode 0755. The directory and every directory above it
/// (as written and as resolved through symlinks) must be owned by this process's uid or by
/// root, and must not be writable by group or others unless its sticky bit is set (as on
/// `/tmp`), where others cannot remove or rename what is not theirs: otherwise someone else
/// could have planted it, or could swap the socket's directory for their own. At the path,
/// only a stale socket (one that refuses connections) is removed: a live socket means another
/// agent serves there, and any other kind of file is left alone.
///
/// # Errors
/// When a directory is unsafe, the path holds a live socket or a non-socket, or a step fails.
pub fn bind(path: &Path) -> Result<UnixListener, EndpointError> {
    let err = |source| EndpointError::Socket {
        path: path.to_owned(),
        source,
    };
    let me = effective_uid().map_err(err)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // What exists is checked before anything is made inside it, and all of it after.
        check_ancestors(parent, me)?;
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(err)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .map_err(err)?;
            check_ancestors(parent, me)?;
        }
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    Ok(listener)
}

/// Checks every existing directory from `dir` up to the root, as written (a symlink's own
/// owner counts) and as resolved.
fn check_ancestors(dir: &Path, me: u32) -> Result<(), EndpointError> {
    let err = |source| EndpointError::Socket {
        path: dir.to_owned(),
        source,
    };
    let mut deepest = None;
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(ancestor) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(e)),
            Ok(meta) => {
                check_directory(ancestor, &meta, me)?;
                deepest.get_or_insert(ancestor);
            }
        }
    }
    if let Some(existing) = deepest {
        let resolved = std::fs::canonicalize(existing).map_err(err)?;
        for ancestor in resolved.ancestors() {
            let meta = std::fs::metadata(ancestor).map_err(err)?;
            check_directory(ancestor, &meta, me)?;
        }
    }
    Ok(())
}

/// Refuses a directory (or a symlink to one) that another uid could have planted or could
/// change: owned by neither `me` nor root, or group/world-writable without the sticky bit.
fn check_directory(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), EndpointError> {
    let refuse = |why: String| {
        Err(EndpointError::UnsafeDirectory {
            path: path.to_owned(),
            why,
        })
    };
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return refuse(format!(
            "owned by uid {owner}; only this agent's uid ({me}) or root may own it"
        ));
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if !meta.is_dir() {
        return refuse("not a directory".into());
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return refuse(format!(
            "mode {:o} lets others replace the socket (group/world-writable, no sticky bit)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Removes a stale socket at `path`; refuses a live one and anything that is not a socket.
fn remove_stale(path: &Path) -> Result<(), EndpointError> {
    let err = |source| EndpointError::Socket {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(EndpointError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(EndpointError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(err)?;
            tracing::info!(path = %path.display(), "removed stale socket");
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

/// This process's effective uid, from `/proc/self/status` (the crate has no `unsafe` to call
/// `geteuid`).
fn effective_uid() -> std::io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| std::io::Error::other("no Uid line in /proc/self/status"))
}

/// Serves the Workload API, the task-status feed and the Delegation service on `listener`
/// until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: UnixListener,
    workload: WorkloadService,
    task_status: TaskStatusService,
    delegation: DelegationService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), EndpointError> {
    tonic::transport::Server::builder()
        .max_frame_size(MAX_FRAME_SIZE)
        .add_service(SpiffeWorkloadApiServer::new(workload))
        .add_service(TaskStatusServer::new(task_status))
        .add_service(DelegationServer::new(delegation))
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
        // A live socket is refused, and left in place.
        assert!(matches!(bind(&path), Err(EndpointError::InUse { .. })));
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

    #[tokio::test]
    async fn a_non_socket_is_never_deleted_and_a_writable_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(bind(&path), Err(EndpointError::NotASocket { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");

        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = bind(&open.join("api.sock")).unwrap_err();
        assert!(
            matches!(error, EndpointError::UnsafeDirectory { .. }),
            "{error}"
        );
        // A directory of ours inside one another uid owns: that uid could swap it.
        if effective_uid().unwrap() == 0 {
            let foreign = dir.path().join("foreign");
            std::fs::create_dir_all(foreign.join("mine")).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            let error = bind(&foreign.join("mine/api.sock")).unwrap_err();
            assert!(error.to_string().contains("owned by uid 65534"), "{error}");
            let error = bind(&foreign.join("new/api.sock")).unwrap_err();
            assert!(error.to_string().contains("owned by uid 65534"), "{error}");
            assert!(!foreign.join("new").exists(), "nothing made inside it");
        }
        // The sticky bit makes a shared directory safe, as /tmp.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(bind(&open.join("api.sock")).is_ok());
    }

    #[test]
    fn the_effective_uid_is_read() {
        let proc_owner = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(effective_uid().unwrap(), proc_owner);
    }
}

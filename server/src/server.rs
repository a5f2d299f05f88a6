//! Wiring for `mandate-server run`: open the store, load the registry and the CA, bind the
//! admin socket, the agent API and the optional metrics listener, serve until shutdown.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use mandate_core::task::TaskState;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;

use crate::admin_api::remote::RoleGate;
use crate::admin_api::{self, AdminService};
use crate::agent_api::{self, AgentService};
use crate::ca::{self, ensure_private_dir};
use crate::config::Config;
use crate::context::Context;
use crate::metrics::{self, Metrics};
use crate::registry::Registry;
use crate::store::Store;
use crate::tasks::{ApprovalPolicy, Tasks};

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A directory, socket or listener could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The CA failed.
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// A gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Runs the server until `shutdown` resolves.
///
/// # Errors
/// A [`ServerError`] when start-up fails or a listener dies.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    ensure_private_dir(&config.data_dir).map_err(io(format!(
        "cannot create data dir {}",
        config.data_dir.display()
    )))?;
    let store_dir = config.data_dir.join("store");
    ensure_private_dir(&store_dir).map_err(io("cannot create store dir"))?;
    let store: Arc<dyn Store> = config.store.open(&store_dir)?;
    let registry = Arc::new(Registry::open(Arc::clone(&store))?);
    let ca = ca::open(&config, Arc::clone(&registry)).await?;
    restore_revocations(&registry, &ca)?;
    let policy = ApprovalPolicy {
        actions: config.approval_required_actions.clone(),
        value_threshold: config.approval_value_threshold,
    };
    let tasks = Tasks::new(Arc::clone(&registry), Arc::clone(&ca), policy);
    let ctx = Arc::new(Context {
        config: config.clone(),
        registry,
        ca: Arc::clone(&ca),
        tasks: Arc::clone(&tasks),
        metrics: Arc::new(Metrics::default()),
    });

    let admin = bind_admin_socket(&config.admin_socket)?;
    let remote_admin_listener = match config.admin_bind_address {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(io(format!("cannot bind admin_bind_address {addr}")))?,
        ),
        None => None,
    };
    let agent_listener = TcpListener::bind(config.bind_address)
        .await
        .map_err(io(format!("cannot bind {}", config.bind_address)))?;
    let metrics_task = match config.metrics_address {
        Some(addr) => {
            let l = metrics::bind(addr)
                .await
                .map_err(io(format!("cannot bind {addr}")))?;
            Some(metrics::spawn(l, Arc::clone(&ctx)))
        }
        None => None,
    };
    tasks.arm_all();
    let rotation = ca.spawn_rotation();
    let pruning = crate::pruning::spawn(Arc::clone(&ctx.registry), crate::pruning::PRUNE_EVERY);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let tls = agent_api::server_config(Arc::clone(&ca))?;
    let agent_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(AgentService::server(Arc::clone(&ctx)))
        .serve_with_incoming_shutdown(
            agent_api::incoming(agent_listener, tls),
            stopped(stop_rx.clone()),
        );
    let admin_server = tonic::transport::Server::builder()
        .add_service(AdminService::server(Arc::clone(&ctx)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(admin), stopped(stop_rx.clone()));
    // The same Admin service over mTLS, behind the role gate (DESIGN 3.9).
    let remote_admin_server = match remote_admin_listener {
        Some(listener) => {
            let gate = RoleGate::new(
                AdminService::server(Arc::clone(&ctx)),
                Arc::new(config.admin_ids.clone()),
                Arc::clone(&ctx.registry),
            );
            let tls = admin_api::remote::server_config(Arc::clone(&ca))?;
            Some(
                tonic::transport::Server::builder()
                    .add_service(gate)
                    .serve_with_incoming_shutdown(
                        agent_api::incoming(listener, tls),
                        stopped(stop_rx),
                    ),
            )
        }
        None => None,
    };
    let remote_admin_server = async {
        match remote_admin_server {
            Some(server) => server.await,
            None => Ok(()),
        }
    };
    ctx.metrics.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        trust_domain = %config.trust_domain,
        bind_address = %config.bind_address,
        admin_socket = %config.admin_socket.display(),
        admin_bind_address = ?config.admin_bind_address,
        "mandate-server ready"
    );
    let servers = async { tokio::try_join!(agent_server, admin_server, remote_admin_server) };
    tokio::pin!(servers);
    let result = tokio::select! {
        r = &mut servers => r.map(|_| ()),
        () = shutdown => {
            tracing::info!("shutting down");
            ctx.metrics.ready.store(false, Ordering::SeqCst);
            let _ = stop_tx.send(true);
            // Streams never end on their own: give in-flight calls a moment, then stop.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), &mut servers).await;
            Ok(())
        }
    };
    rotation.abort();
    pruning.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&config.admin_socket);
    store.sync()?;
    Ok(result?)
}

/// Binds the admin socket with mode 0600 in a 0700 directory, removing a stale socket.
fn bind_admin_socket(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_private_dir(parent).map_err(io(format!(
            "cannot create admin socket dir {}",
            parent.display()
        )))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed stale admin socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("cannot remove {}", path.display()))(e)),
    }
    let listener = UnixListener::bind(path)
        .map_err(io(format!("cannot bind admin socket {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod admin socket"))?;
    Ok(listener)
}

/// Re-lists in the CRLs the serials of tasks that ended but whose deadline has not passed.
fn restore_revocations(registry: &Registry, ca: &ca::CaManager) -> Result<(), ServerError> {
    let now = SystemTime::now();
    let ended: Vec<_> = registry
        .read()
        .index
        .tasks()
        .filter(|t| matches!(t.task.state, TaskState::Closed | TaskState::Expired))
        .filter(|t| t.task.deadline > now)
        .map(|t| t.task.id.clone())
        .collect();
    for id in ended {
        let serials = registry.store().task_serials(&id)?;
        if !serials.is_empty() {
            ca.revoke(&serials, now)?;
        }
    }
    Ok(())
}

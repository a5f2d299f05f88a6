//! `mandate-agent run`: loads or obtains the agent SVID, opens the Workload API socket, and
//! runs the cache manager, the signer, the sync loop and renewal until SIGTERM or a fatal
//! refusal from the server.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use mandate_core::TrustDomain;
use mandate_core::tls::SharedRoots;
use rustls_pki_types::CertificateDer;
use tokio::sync::mpsc;

use crate::cache::manager::Manager;
use crate::cache::signer::run_signer;
use crate::config::AgentConfig;
use crate::datadir::{self, DataDir, DataDirError, StoredIdentity};
use crate::upstream::node::{self, NodeError, Upstream};
use crate::upstream::rpc::ServerRpc;
use crate::upstream::sync::{self, unix_ms};
use crate::workload::attestor::UnixAttestor;
use crate::workload::delegation::DelegationService;
use crate::workload::endpoint::{self, EndpointError};
use crate::workload::jwt_cache::JwtCache;
use crate::workload::service::WorkloadService;
use crate::workload::task_status::TaskStatusService;

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data dir failed.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// No trust bundle to authenticate the server with.
    #[error("no trust bundle: pass --trust-bundle for the first attestation")]
    NoBundle,
    /// The bundle holds no CA certificate with a SPIFFE trust domain.
    #[error("trust bundle holds no CA certificate with a spiffe://<trust-domain> URI SAN")]
    NoTrustDomain,
    /// Nothing to attest with.
    #[error("no stored agent SVID in {0}: pass --join-token to attest")]
    NoToken(String),
    /// The agent identity failed (refused token, expiry, eviction).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The Workload API failed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Runs the agent until SIGTERM/SIGINT (Ok) or a fatal error.
///
/// # Errors
/// See [`RunError`].
pub async fn run(config: AgentConfig) -> Result<(), RunError> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let bundle = match data_dir.load_bundle()? {
        Some(stored) => stored,
        None => match &config.trust_bundle {
            Some(path) => datadir::read_bundle(path)?,
            None => return Err(RunError::NoBundle),
        },
    };
    let trust_domain = trust_domain_of(&bundle).ok_or(RunError::NoTrustDomain)?;
    let roots: SharedRoots = Arc::new(RwLock::new(to_roots(&bundle)));
    let identity = obtain_identity(&config, &data_dir, &roots, &trust_domain, &bundle).await?;
    let upstream = Arc::new(Upstream::new(
        config.server_address.clone(),
        trust_domain.clone(),
        roots.clone(),
        data_dir.clone(),
        identity,
    )?);
    let listener = endpoint::bind(&config.socket_path)?;
    tracing::info!(socket = %config.socket_path.display(), trust_domain = %trust_domain, "workload API listening");

    let rpc = Arc::new(ServerRpc(upstream.clone()));
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
    let sink_roots = roots.clone();
    let sink_dir = data_dir.clone();
    let on_authorities = Box::new(move |authorities: &[Vec<u8>]| {
        if let Ok(mut guard) = sink_roots.write() {
            *guard = to_roots(authorities);
        }
        if let Err(e) = sink_dir.store_bundle(authorities) {
            tracing::error!(error = %e, "cannot store the trust bundle");
        }
    });
    let start_sequence = u64::try_from(unix_ms(SystemTime::now())).unwrap_or_default();
    let (manager, cache) = Manager::new(jobs_tx, outcomes_rx, on_authorities, start_sequence);
    let last_heard = Arc::new(AtomicI64::new(0));
    let attestor = Arc::new(UnixAttestor::default());
    let workload = WorkloadService::new(
        cache.snapshot.clone(),
        attestor.clone(),
        Arc::new(JwtCache::default()),
        rpc.clone(),
        last_heard.clone(),
    );
    let delegation = DelegationService::new(cache.snapshot.clone(), attestor.clone(), rpc.clone());
    let task_status = TaskStatusService::new(cache.snapshot.clone(), attestor, last_heard.clone());

    tokio::spawn(manager.run());
    tokio::spawn(run_signer(rpc, jobs_rx, outcomes_tx));
    let sync_task = tokio::spawn(sync::run(upstream.clone(), cache, last_heard));
    let renew_upstream = upstream.clone();
    let renew_task = tokio::spawn(async move { renew_upstream.renew_forever().await });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(endpoint::serve(
        listener,
        workload,
        task_status,
        delegation,
        async {
            let _ = stop_rx.await;
        },
    ));

    let outcome = tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        fatal = sync_task => Err(fatal.unwrap_or_else(|e| NodeError::Unreachable(e.to_string()))),
        fatal = renew_task => Err(fatal.unwrap_or_else(|e| NodeError::Unreachable(e.to_string()))),
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    let _ = std::fs::remove_file(&config.socket_path);
    outcome.map_err(RunError::Node)
}

/// Uses the stored agent SVID while it is valid; otherwise attests with the join token.
async fn obtain_identity(
    config: &AgentConfig,
    data_dir: &DataDir,
    roots: &SharedRoots,
    trust_domain: &TrustDomain,
    bundle: &[Vec<u8>],
) -> Result<StoredIdentity, RunError> {
    let expired_at = match data_dir.load_identity()? {
        Some(stored) => {
            let (_, not_after) = node::validity(&stored)?;
            if SystemTime::now() < not_after {
                tracing::info!("using the stored agent SVID");
                return Ok(stored);
            }
            Some(humantime::format_rfc3339_seconds(not_after).to_string())
        }
        None => None,
    };
    let Some(token) = &config.join_token else {
        return Err(match expired_at {
            Some(at) => NodeError::Expired(at).into(),
            None => RunError::NoToken(config.data_dir.display().to_string()),
        });
    };
    let (identity, server_bundle) =
        node::attest(&config.server_address, roots.clone(), trust_domain, token).await?;
    data_dir.store_identity(&identity)?;
    match server_bundle {
        Some(b) if !b.authorities.is_empty() => data_dir.store_bundle(&b.authorities)?,
        _ => data_dir.store_bundle(bundle)?,
    }
    tracing::info!("attested with the join token");
    Ok(identity)
}

/// The trust domain named by the first CA certificate with a `spiffe://<td>` URI SAN.
pub fn trust_domain_of(bundle: &[Vec<u8>]) -> Option<TrustDomain> {
    bundle
        .iter()
        .find_map(|der| mandate_core::x509::validate_ca(der).ok())
}

fn to_roots(bundle: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    bundle
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

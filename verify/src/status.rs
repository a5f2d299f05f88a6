//! The task-status watcher: a live, fail-closed view of the local agent's closed-task set
//! (DESIGN 3.4, `mandate.delegation.v1.TaskStatus/Watch`).
//!
//! A background task subscribes to the agent's feed over its unix socket, with the
//! `workload.spiffe.io: true` header, and reconnects with exponential backoff. Checks read the
//! newest snapshot and refuse every delegated caller once that snapshot's `as_of_unix_ms` is older
//! than the staleness bound: staleness counts from `as_of`, not from arrival, so a verifier whose
//! agent lost the server fails closed as well.
//!
//! The watcher also follows the same agent's CRLs (`FetchX509Bundles`, see
//! [`crate::revocation`]): the second, independent path of DESIGN 3.4.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use mandate_proto::delegation::task_status_client::TaskStatusClient;
use mandate_proto::delegation::{TaskStatusSnapshot, WatchRequest};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Endpoint, Uri};

use crate::revocation::{self, RevokedSerials};

/// The default staleness bound of DESIGN 3.4: 15 s.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(15);

/// The largest task-status snapshot or bundle message accepted: the closed set of a trust
/// domain with 100k closed tasks is about 4 MB, over tonic's 4 MiB default.
pub const MAX_FEED_MESSAGE: usize = 64 * 1024 * 1024;

/// How the watcher finds and follows the agent's feed.
#[derive(Debug, Clone)]
pub struct TaskStatusConfig {
    /// Path of the agent's unix socket (the Workload API socket).
    pub socket_path: PathBuf,
    /// A snapshot older than this (counted from its `as_of_unix_ms`) refuses every delegated caller.
    pub staleness: Duration,
    /// First reconnect delay; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Largest reconnect delay.
    pub max_backoff: Duration,
}

impl TaskStatusConfig {
    /// A config for the agent socket at `socket_path` with the default bounds.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            staleness: DEFAULT_STALENESS,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    /// A config for the socket named by `SPIFFE_ENDPOINT_SOCKET` (`unix:///path` or a bare path).
    ///
    /// Fails when the variable is unset or does not name a unix socket.
    pub fn from_env() -> Result<Self, StatusError> {
        let value = std::env::var("SPIFFE_ENDPOINT_SOCKET").map_err(|_| StatusError::NoEndpoint)?;
        Ok(Self::new(socket_path_from_endpoint(&value)?))
    }

    /// Sets the staleness bound.
    #[must_use]
    pub fn with_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }
}

/// Turns a SPIFFE endpoint address (`unix:///p`, `unix:/p` or `/p`) into a socket path.
///
/// Fails for any other scheme (the agent's feed is served on a unix socket only).
pub fn socket_path_from_endpoint(endpoint: &str) -> Result<PathBuf, StatusError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(StatusError::BadEndpoint(endpoint.to_owned()))
    }
}

/// One snapshot of the closed-task set, as received from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Closed or expired task IDs whose SVIDs may still be unexpired.
    pub closed_task_ids: HashSet<String>,
    /// Grows on every change.
    pub sequence: u64,
    /// When the agent last heard from the server.
    pub as_of: SystemTime,
}

impl From<TaskStatusSnapshot> for Snapshot {
    fn from(wire: TaskStatusSnapshot) -> Self {
        let as_of =
            UNIX_EPOCH + Duration::from_millis(u64::try_from(wire.as_of_unix_ms).unwrap_or(0));
        Self {
            closed_task_ids: wire.closed_task_ids.into_iter().collect(),
            sequence: wire.sequence,
            as_of,
        }
    }
}

/// Why the task-status view cannot vouch for a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// No snapshot has arrived from the agent yet.
    #[error("no task-status snapshot received from the agent yet")]
    Unavailable,
    /// The newest snapshot is older than the staleness bound.
    #[error("task status is stale: newest snapshot is {age_ms} ms old (bound {bound_ms} ms)")]
    Stale {
        /// Age of the newest snapshot's `as_of`, in milliseconds.
        age_ms: u128,
        /// The configured bound, in milliseconds.
        bound_ms: u128,
    },
    /// The task is in the closed set.
    #[error("task {0} is closed")]
    Closed(String),
    /// The certificate serial (hex) is listed in a verified CRL of the trust domain.
    #[error("certificate serial {0} is revoked")]
    Revoked(String),
    /// `SPIFFE_ENDPOINT_SOCKET` is not set.
    #[error("SPIFFE_ENDPOINT_SOCKET is not set")]
    NoEndpoint,
    /// The endpoint does not name a unix socket.
    #[error("endpoint {0:?} is not a unix socket address")]
    BadEndpoint(String),
}

/// A live subscription to the agent's task-status feed. Dropping it stops the subscription.
#[derive(Debug)]
pub struct TaskStatusWatcher {
    latest: watch::Receiver<Option<Snapshot>>,
    revoked: watch::Receiver<Option<Arc<RevokedSerials>>>,
    staleness: Duration,
    task: JoinHandle<()>,
    crl_task: JoinHandle<()>,
}

impl TaskStatusWatcher {
    /// Starts following the feed in a background tokio task; it must run inside a tokio runtime.
    ///
    /// It returns at once; until the first snapshot arrives, every check fails closed.
    pub fn spawn(config: TaskStatusConfig) -> Self {
        let (sender, latest) = watch::channel(None);
        let (crl_sender, revoked) = watch::channel(None);
        let staleness = config.staleness;
        let crl_task = tokio::spawn(revocation::follow(
            config.socket_path.clone(),
            crl_sender,
            config.initial_backoff,
            config.max_backoff,
        ));
        let task = tokio::spawn(follow(config, sender));
        Self {
            latest,
            revoked,
            staleness,
            task,
            crl_task,
        }
    }

    /// Waits until a task-status snapshot and the CRLs have arrived, or `timeout` passes;
    /// returns whether both did.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut latest = self.latest.clone();
        let mut revoked = self.revoked.clone();
        let both = async {
            latest.wait_for(Option::is_some).await.is_ok()
                && revoked.wait_for(Option::is_some).await.is_ok()
        };
        tokio::time::timeout(timeout, both).await.unwrap_or(false)
    }

    /// Waits until a task-status snapshot has arrived (not the CRLs), or `timeout` passes;
    /// returns whether one did.
    pub async fn wait_task_status(&self, timeout: Duration) -> bool {
        let mut latest = self.latest.clone();
        tokio::time::timeout(timeout, latest.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Checks that the certificate serial `serial` (big-endian bytes) is not listed in a
    /// verified CRL of the trust domain.
    ///
    /// Fails with `Revoked`, or `Unavailable` while no CRLs have arrived (fail closed).
    pub fn check_serial(&self, serial: &[u8]) -> Result<(), StatusError> {
        match self.revoked.borrow().as_ref() {
            None => Err(StatusError::Unavailable),
            Some(set) if set.contains(serial) => Err(StatusError::Revoked(hex(serial))),
            Some(_) => Ok(()),
        }
    }

    /// The newest snapshot, if any arrived.
    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.borrow().clone()
    }

    /// Checks at `now` that `task_id` is not closed and that the view is fresh.
    ///
    /// Fails with `Unavailable`, `Stale` or `Closed`.
    pub fn check(&self, task_id: &str, now: SystemTime) -> Result<(), StatusError> {
        check_snapshot(self.latest.borrow().as_ref(), self.staleness, task_id, now)
    }
}

#[cfg(test)]
impl TaskStatusWatcher {
    /// A watcher fed by a test's own channel instead of an agent.
    pub(crate) fn for_test(latest: watch::Receiver<Option<Snapshot>>, staleness: Duration) -> Self {
        let (_, revoked) = watch::channel(Some(Arc::default()));
        Self::for_test_with_crls(latest, revoked, staleness)
    }

    /// A watcher fed by a test's own task-status and CRL channels.
    pub(crate) fn for_test_with_crls(
        latest: watch::Receiver<Option<Snapshot>>,
        revoked: watch::Receiver<Option<Arc<RevokedSerials>>>,
        staleness: Duration,
    ) -> Self {
        Self {
            latest,
            revoked,
            staleness,
            task: tokio::spawn(async {}),
            crl_task: tokio::spawn(async {}),
        }
    }
}

impl Drop for TaskStatusWatcher {
    fn drop(&mut self) {
        self.task.abort();
        self.crl_task.abort();
    }
}

/// The pure decision behind [`TaskStatusWatcher::check`].
///
/// Fails closed: no snapshot, or one whose `as_of` is older than `staleness` at `now`, refuses.
pub fn check_snapshot(
    snapshot: Option<&Snapshot>,
    staleness: Duration,
    task_id: &str,
    now: SystemTime,
) -> Result<(), StatusError> {
    let snapshot = snapshot.ok_or(StatusError::Unavailable)?;
    // A snapshot from the future (clock skew between agent and verifier) counts as age zero.
    let age = now.duration_since(snapshot.as_of).unwrap_or(Duration::ZERO);
    if age > staleness {
        return Err(StatusError::Stale {
            age_ms: age.as_millis(),
            bound_ms: staleness.as_millis(),
        });
    }
    if snapshot.closed_task_ids.contains(task_id) {
        return Err(StatusError::Closed(task_id.to_owned()));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Follows the feed forever: connect, stream, and reconnect with backoff on any failure.
async fn follow(config: TaskStatusConfig, sender: watch::Sender<Option<Snapshot>>) {
    let mut backoff = config.initial_backoff;
    loop {
        match stream_once(&config.socket_path, &sender).await {
            Ok(received_any) => {
                tracing::debug!("task-status stream ended; reconnecting");
                if received_any {
                    backoff = config.initial_backoff;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "task-status feed unavailable; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// Opens one `Watch` stream and publishes its snapshots; returns whether any arrived.
async fn stream_once(
    socket_path: &Path,
    sender: &watch::Sender<Option<Snapshot>>,
) -> Result<bool, tonic::Status> {
    let channel = connect_unix(socket_path)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = TaskStatusClient::new(channel).max_decoding_message_size(MAX_FEED_MESSAGE);
    let mut request = tonic::Request::new(WatchRequest {});
    request.metadata_mut().insert(
        mandate_proto::WORKLOAD_HEADER_KEY,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = client.watch(request).await?.into_inner();
    let mut received_any = false;
    while let Some(wire) = stream.message().await? {
        received_any = true;
        sender.send_replace(Some(Snapshot::from(wire)));
    }
    Ok(received_any)
}

/// A tonic channel to a unix socket (the URI is a placeholder; the connector ignores it).
pub(crate) async fn connect_unix(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

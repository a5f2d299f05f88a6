//! The cache manager: one task owns the [`State`], applies sync events and signing outcomes,
//! drops SVIDs at their notAfter (a timer, not a poll), asks for signing when entries need it,
//! and publishes a fresh [`Snapshot`] after every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use mandate_proto::workload::X509svid;
use tokio::sync::{mpsc, watch};

use super::closed::ClosedTasks;
use super::model::SharedSvid;
use super::signer::{SignJob, SignOutcome};
use super::snapshot::{BundlePayloads, Identity, Snapshot, bundle_payloads};
use super::state::{State, SyncEvent};

/// Longest wait between two signing attempts for one entry.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the manager listens to.
#[derive(Debug)]
pub enum ManagerEvent {
    /// A sync event and the revision it brings the agent to.
    Sync {
        /// The event.
        event: SyncEvent,
        /// The message's revision.
        revision: u64,
    },
    /// A sync stream (re)connected: retry pending signing now, drop any partial snapshot.
    Connected,
}

/// Called with the bundle's CA certificates whenever they change.
pub type AuthoritiesSink = Box<dyn Fn(&[Vec<u8>]) + Send>;

/// The manager's handles for others.
#[derive(Debug, Clone)]
pub struct CacheHandle {
    /// Send sync events here.
    pub events: mpsc::UnboundedSender<ManagerEvent>,
    /// The published snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The last revision fully applied (resume point of the sync stream).
    pub revision: Arc<AtomicU64>,
}

/// The manager task's state.
pub struct Manager {
    state: State,
    events: mpsc::UnboundedReceiver<ManagerEvent>,
    outcomes: mpsc::UnboundedReceiver<Vec<SignOutcome>>,
    jobs: mpsc::UnboundedSender<Vec<SignJob>>,
    publish: watch::Sender<Arc<Snapshot>>,
    revision: Arc<AtomicU64>,
    on_authorities: AuthoritiesSink,
    payloads: HashMap<String, (SharedSvid, u64, Arc<Identity>)>,
    bundle: Arc<BundlePayloads>,
    authorities_version: u64,
    versions: u64,
    closed: Arc<ClosedTasks>,
    closed_version: u64,
    closed_sequence: u64,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("entries", &self.state.entries.len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Creates the manager with its channels. `closed_sequence_start` seeds the task-status
    /// sequence so it keeps growing across agent restarts (unix ms of the start is a good seed).
    pub fn new(
        jobs: mpsc::UnboundedSender<Vec<SignJob>>,
        outcomes: mpsc::UnboundedReceiver<Vec<SignOutcome>>,
        on_authorities: AuthoritiesSink,
        closed_sequence_start: u64,
    ) -> (Self, CacheHandle) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (publish, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let revision = Arc::new(AtomicU64::new(0));
        let manager = Self {
            state: State::default(),
            events,
            outcomes,
            jobs,
            publish,
            revision: revision.clone(),
            on_authorities,
            payloads: HashMap::new(),
            bundle: Arc::new(BundlePayloads::default()),
            authorities_version: 0,
            versions: 0,
            closed: Arc::default(),
            closed_version: 0,
            closed_sequence: closed_sequence_start,
        };
        let handle = CacheHandle {
            events: events_tx,
            snapshot,
            revision,
        };
        (manager, handle)
    }

    /// Runs until every event sender is gone.
    pub async fn run(mut self) {
        loop {
            let now = SystemTime::now();
            let wake = self.state.next_wake(now).map(|t| {
                let wait = t.duration_since(now).unwrap_or(Duration::ZERO);
                // A little past the instant, so that `now >= not_after` holds on wake-up.
                tokio::time::Instant::now() + wait + Duration::from_millis(5)
            });
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.events.recv() => {
                    let Some(event) = event else { return };
                    self.handle(event);
                    while let Ok(event) = self.events.try_recv() {
                        self.handle(event);
                    }
                }
                Some(outcomes) = self.outcomes.recv() => self.apply_outcomes(outcomes),
                () = sleep => self.state.dirty = true,
            }
            self.settle();
        }
    }

    fn handle(&mut self, event: ManagerEvent) {
        match event {
            ManagerEvent::Sync { event, revision } => {
                let applied = self.state.apply(event);
                if applied.authorities_changed {
                    self.authorities_version += 1;
                    if let Some(bundle) = &self.state.bundle {
                        (self.on_authorities)(&bundle.authorities);
                    }
                }
                if applied.revision_done && revision > 0 {
                    self.revision.store(revision, Ordering::SeqCst);
                }
            }
            ManagerEvent::Connected => {
                self.state.abandon_staging();
                for record in self.state.entries.values_mut() {
                    record.retry_at = None;
                }
            }
        }
    }

    fn apply_outcomes(&mut self, outcomes: Vec<SignOutcome>) {
        let now = SystemTime::now();
        for outcome in outcomes {
            match outcome {
                SignOutcome::Issued { job, svid } => {
                    let Some(record) = self.state.entries.get_mut(&job.entry_id) else {
                        continue;
                    };
                    record.in_flight = None;
                    if record.generation == job.generation {
                        tracing::debug!(entry = %job.entry_id, serial = %svid.serial, "svid issued");
                        record.svid = Some(Arc::new(svid));
                        record.failures = 0;
                        record.retry_at = None;
                        self.state.dirty = true;
                    }
                }
                SignOutcome::Refused { job, code, message } => {
                    tracing::info!(entry = %job.entry_id, code, %message, "server refused to sign");
                    self.state.back_off(&job.entry_id, now, MAX_BACKOFF);
                }
                SignOutcome::Failed { job } => {
                    self.state
                        .back_off(&job.entry_id, now, Duration::from_secs(5));
                }
            }
        }
    }

    /// After every wake-up: expire, plan signing, publish.
    fn settle(&mut self) {
        let now = SystemTime::now();
        self.state.drop_expired(now);
        let due = self.state.due_for_signing(now);
        if !due.is_empty() {
            let mut jobs = Vec::with_capacity(due.len());
            for (entry_id, generation) in due {
                let Some(record) = self.state.entries.get_mut(&entry_id) else {
                    continue;
                };
                record.in_flight = Some(generation);
                jobs.push(SignJob {
                    spiffe_id: record.entry.spiffe_id.clone(),
                    entry_id,
                    generation,
                });
            }
            if self.jobs.send(jobs).is_err() {
                tracing::error!("signer is gone");
            }
        }
        // Rebuilt only when the set changed: with 100k closed tasks a rebuild is a few ms.
        let closed = self.state.closed_tasks(now);
        if closed.version() != self.closed_version {
            self.closed_version = closed.version();
            let published = closed.to_published();
            if published != *self.closed {
                self.closed = Arc::new(published);
                self.closed_sequence += 1;
                self.state.dirty = true;
            }
        }
        if self.state.dirty {
            self.state.dirty = false;
            self.publish(now);
        }
    }

    fn publish(&mut self, now: SystemTime) {
        let bundle_changed = self.bundle.data.as_ref() != self.state.bundle.as_ref();
        if bundle_changed {
            self.versions += 1;
            self.bundle = Arc::new(bundle_payloads(self.state.bundle.clone(), self.versions));
        }
        let authorities = self
            .state
            .bundle
            .as_ref()
            .map(|b| prost::bytes::Bytes::from(b.authorities.concat()))
            .unwrap_or_default();
        let mut identities = Vec::new();
        let mut live = HashMap::new();
        for record in self.state.entries.values() {
            let Some(svid) = &record.svid else { continue };
            if svid.not_after <= now || !self.state.task_allows(&record.entry, now) {
                continue;
            }
            let entry = &record.entry;
            let reusable = self.payloads.remove(&entry.id).filter(|(s, v, id)| {
                Arc::ptr_eq(s, svid)
                    && *v == self.authorities_version
                    && id.hint == entry.hint
                    && id.selectors == entry.selectors
            });
            let identity = match reusable {
                Some((_, _, identity)) => identity,
                None => {
                    self.versions += 1;
                    Arc::new(Identity {
                        entry_id: entry.id.clone(),
                        spiffe_id: entry.spiffe_id.clone(),
                        selectors: entry.selectors.clone(),
                        hint: entry.hint.clone(),
                        created: entry.created,
                        task_id: entry.task_id.clone(),
                        x509: X509svid {
                            spiffe_id: entry.spiffe_id.clone(),
                            x509_svid: svid.chain.concat().into(),
                            x509_svid_key: svid.key_pkcs8.clone().into(),
                            bundle: authorities.clone(),
                            hint: entry.hint.clone(),
                        },
                        not_after: svid.not_after,
                        version: self.versions,
                    })
                }
            };
            live.insert(
                entry.id.clone(),
                (svid.clone(), self.authorities_version, identity.clone()),
            );
            identities.push(identity);
        }
        self.payloads = live;
        let snapshot = Snapshot::build(
            identities,
            self.bundle.clone(),
            Arc::clone(&self.closed),
            self.closed_sequence,
        );
        self.publish.send_replace(Arc::new(snapshot));
    }
}

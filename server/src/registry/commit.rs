//! Group commit: a writer records its generation, then waits until a sync that began after its
//! write has completed. One writer at a time leads a sync covering every write applied so far,
//! so concurrent writers share one fsync. Changes are published after they are durable, in
//! commit order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::RegistryError;
use crate::store::{ChangeRecord, Store, StoreError};

/// Capacity of the change broadcast; a slower stream resumes from the store's change log.
const EVENT_CAPACITY: usize = 4096;

/// The group committer and change publisher.
#[derive(Debug)]
pub struct Committer {
    written: AtomicU64,
    synced: AtomicU64,
    leader: tokio::sync::Mutex<()>,
    pending: Mutex<VecDeque<(u64, Arc<ChangeRecord>)>>,
    published: AtomicU64,
    events: broadcast::Sender<Arc<ChangeRecord>>,
}

impl Committer {
    /// A committer whose last published revision is `revision`.
    pub fn new(revision: u64) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            leader: tokio::sync::Mutex::new(()),
            pending: Mutex::new(VecDeque::new()),
            published: AtomicU64::new(revision),
            events,
        }
    }

    /// Records an applied write (called under the registry's write lock, so generations and
    /// pending changes are in commit order). Returns the write's generation.
    pub fn record(&self, change: Option<Arc<ChangeRecord>>) -> u64 {
        let generation = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(change) = change {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back((generation, change));
        }
        generation
    }

    /// Subscribes to published changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeRecord>> {
        self.events.subscribe()
    }

    /// The last published revision.
    pub fn published_revision(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Waits until write `generation` is durable, leading a sync when no running one covers it.
    ///
    /// # Errors
    /// The sync failed.
    pub async fn wait_durable(
        &self,
        generation: u64,
        store: &Arc<dyn Store>,
    ) -> Result<(), RegistryError> {
        if self.synced.load(Ordering::SeqCst) >= generation {
            return Ok(());
        }
        let _lead = self.leader.lock().await;
        if self.synced.load(Ordering::SeqCst) >= generation {
            return Ok(());
        }
        // Everything applied up to now is covered by the sync that starts here.
        let target = self.written.load(Ordering::SeqCst);
        let store = Arc::clone(store);
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|e| RegistryError::Store(StoreError::Backend(e.to_string())))??;
        self.synced.fetch_max(target, Ordering::SeqCst);
        self.publish_up_to(target);
        Ok(())
    }

    fn publish_up_to(&self, target: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.front().is_some_and(|(g, _)| *g <= target) {
            if let Some((_, change)) = pending.pop_front() {
                self.published.store(change.revision, Ordering::SeqCst);
                // No receiver is fine: nobody is syncing.
                let _ = self.events.send(change);
            }
        }
    }
}

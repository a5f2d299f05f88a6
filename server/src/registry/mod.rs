//! The registry: the single writer in front of the [`Store`]. It keeps the indexed state in
//! memory, numbers revisions, chains audit records, makes every acknowledged write durable
//! with group commit, and then publishes the change to sync streams in revision order.

mod commit;
mod index;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::store::{
    AuditChain, AuditDraft, Change, ChangeRecord, Store, StoreError, WriteBatch, WriteOp,
};
pub use commit::Committer;
pub use index::Index;

/// Errors of registry operations, mapped to gRPC codes in one place per service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Malformed input.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (CA signing failures and the like).
    #[error("{0}")]
    Internal(String),
}

/// A write computed against the current state, committed atomically.
#[derive(Debug, Default)]
pub struct Plan {
    /// Store writes.
    pub ops: Vec<WriteOp>,
    /// Changes for the change log and sync streams; non-empty moves the revision.
    pub changes: Vec<Change>,
    /// Audit records to chain.
    pub audit: Vec<AuditDraft>,
}

/// The state readers see.
#[derive(Debug)]
pub struct State {
    /// The indexes.
    pub index: Index,
    /// The last committed revision.
    pub revision: u64,
    chain: AuditChain,
}

impl State {
    /// The audit chain head `(seq, hash)`.
    pub fn audit_head(&self) -> (u64, String) {
        self.chain.head()
    }
}

/// The single writer and the in-memory state.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn Store>,
    state: RwLock<State>,
    committer: Committer,
}

impl Registry {
    /// Loads the state from `store`.
    ///
    /// # Errors
    /// The store could not be read.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let loaded = store.load()?;
        let revision = loaded.revision;
        let chain = AuditChain::resume(loaded.audit_head.clone());
        let index = Index::build(loaded);
        Ok(Self {
            store,
            state: RwLock::new(State {
                index,
                revision,
                chain,
            }),
            committer: Committer::new(revision),
        })
    }

    /// The store, for reads that are not kept in memory.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A read view of the state.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A poisoned lock means a writer panicked mid-update; the state is still the last
        // committed one because ops are applied only after the store accepted them.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to published changes (each after it is durable).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeRecord>> {
        self.committer.subscribe()
    }

    /// The revision of the last published change.
    pub fn published_revision(&self) -> u64 {
        self.committer.published_revision()
    }

    /// Plans a write against the current state with `plan`, commits it and waits until it is
    /// durable. Returns what `plan` returned alongside the write.
    ///
    /// # Errors
    /// What `plan` returned (nothing is written then), or a store failure.
    pub async fn write<T>(
        &self,
        now: SystemTime,
        plan: impl FnOnce(&State) -> Result<(Plan, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let generation = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let (plan, value) = plan(&state)?;
            let generation = self.commit_locked(&mut state, plan, now)?;
            (generation, value)
        };
        self.committer
            .wait_durable(generation.0, &self.store)
            .await?;
        Ok(generation.1)
    }

    /// Appends audit records with no other change (refusals), durably.
    ///
    /// # Errors
    /// A store failure.
    pub async fn audit(
        &self,
        now: SystemTime,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), RegistryError> {
        self.write(now, |_| {
            Ok((
                Plan {
                    audit: drafts,
                    ..Plan::default()
                },
                (),
            ))
        })
        .await
    }

    fn commit_locked(
        &self,
        state: &mut State,
        plan: Plan,
        now: SystemTime,
    ) -> Result<u64, RegistryError> {
        let Plan {
            mut ops,
            changes,
            audit,
        } = plan;
        let revision = if changes.is_empty() {
            state.revision
        } else {
            state.revision + 1
        };
        for op in &mut ops {
            match op {
                WriteOp::PutEntry(e) => e.revision = revision,
                WriteOp::PutTask(t) => t.revision = revision,
                _ => {}
            }
        }
        let mut chain = state.chain.clone();
        let time = mandate_core::time::unix_seconds(now);
        for draft in audit {
            ops.push(WriteOp::AppendAudit(chain.append(draft, time)));
        }
        let record = (!changes.is_empty()).then(|| Arc::new(ChangeRecord { revision, changes }));
        if let Some(record) = &record {
            ops.push(WriteOp::AppendChange(ChangeRecord::clone(record)));
        }
        let batch = WriteBatch { ops };
        self.store.apply(&batch)?;
        for op in &batch.ops {
            state.index.apply(op);
        }
        state.index.prune_ended(now);
        state.chain = chain;
        state.revision = revision;
        Ok(self.committer.record(record))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ended_tests;

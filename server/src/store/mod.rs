//! The durable store behind a narrow [`Store`] trait (DESIGN 4): entries, tasks, agents, join
//! tokens, the audit chain, the change log, issued serials, the CA journal and the schema
//! version. sled is the embedded default; the trait keeps room for a PostgreSQL backend.

mod audit;
mod config;
mod durability;
mod postgres;
mod sled_store;
#[cfg(any(test, feature = "store-suite"))]
pub mod suite;

use std::fmt;

use mandate_core::entry::Entry;
use mandate_core::ids::{EntryId, TaskId};
use mandate_core::task::Task;
use serde::{Deserialize, Serialize};

pub use audit::{AuditChain, AuditDraft, AuditProblem, ChainVerifier, verify_chain};
pub use config::{DATABASE_URL_ENV, StoreConfig, StoreKind, StoreSection};
pub use durability::sync_sled_dir;
pub use postgres::{PG_SCHEMA_VERSION, PgStore};
pub use sled_store::{SCHEMA_VERSION, SledStore};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed.
    #[error("store backend error: {0}")]
    Backend(String),
    /// Syncing to disk failed.
    #[error("store sync failed: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value did not decode.
    #[error("corrupt store record {key}: {message}")]
    Corrupt {
        /// The record key.
        key: String,
        /// What failed.
        message: String,
    },
    /// The store was written by another schema version.
    #[error("store schema version {found} is not supported (expected {expected})")]
    Schema {
        /// Found version.
        found: u32,
        /// Supported version.
        expected: u32,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

/// An entry with the revision it was last written at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The entry.
    pub entry: Entry,
    /// The store revision of its last write.
    pub revision: u64,
}

/// A task with the revision it was last written at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTask {
    /// The task.
    pub task: Task,
    /// The store revision of its last write.
    pub revision: u64,
    /// The audit actor that opened it (a SPIFFE ID over the network): whose task it is when
    /// a task broker asks (DESIGN 3.9). Absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<String>,
}

/// An attested node agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Unix seconds of the last attestation.
    pub attested_at: i64,
    /// Unix seconds when its current SVID expires.
    pub expires_at: i64,
    /// Evicted: it must attest again with a new token.
    pub banned: bool,
    /// Hex serial of its current SVID.
    pub serial: String,
}

/// A join token, stored by the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The agent ID the token names, if any.
    pub agent_id: Option<String>,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Consumed by an attestation.
    pub used: bool,
}

/// One record of the hash-chained audit log (DESIGN 3.7 `audit list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// Kind, e.g. `task.close`.
    pub kind: String,
    /// Who: `uid:<uid> pid:<pid>` or an agent SPIFFE ID.
    pub actor: String,
    /// The task concerned.
    pub task_id: Option<String>,
    /// The SPIFFE ID concerned.
    pub spiffe_id: Option<String>,
    /// The certificate serial concerned (hex).
    pub serial: Option<String>,
    /// Free text.
    pub detail: String,
    /// Hex SHA-256 of this record (over every field above and `prev_hash`).
    pub hash: String,
    /// Hex SHA-256 of the previous record; empty for the first.
    pub prev_hash: String,
}

/// An SVID serial recorded under its task so a close can revoke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedSerial {
    /// Hex serial.
    pub serial: String,
    /// Unix seconds of its notAfter.
    pub not_after: i64,
    /// The CA slot that signed it.
    pub ca_id: u64,
}

/// One CA generation in the journal. Keys live in 0600 files in the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaSlot {
    /// Generation number.
    pub id: u64,
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// File (relative to the CA dir) holding its PKCS#8 key.
    pub key_file: String,
    /// JWT signing key `kid`.
    pub jwt_kid: String,
    /// File holding the JWT key's PKCS#8.
    pub jwt_key_file: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The CA journal: every CA still in the bundle and which one signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaJournal {
    /// Slots, oldest first.
    pub slots: Vec<CaSlot>,
    /// The slot that signs now.
    pub active: u64,
}

/// What changed at a revision; sync streams resolve it against the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// An entry was written or deleted.
    Entry {
        /// The entry.
        id: EntryId,
        /// Its parent (agent) SPIFFE ID.
        parent: String,
    },
    /// A task changed state.
    Task {
        /// The task.
        id: TaskId,
    },
    /// The bundle, CRLs or JWKS changed.
    Bundle,
    /// An agent was evicted.
    Agent {
        /// The agent's SPIFFE ID.
        spiffe_id: String,
    },
}

/// The changes of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The revision.
    pub revision: u64,
    /// What changed.
    pub changes: Vec<Change>,
}

/// One write in an atomic [`WriteBatch`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WriteOp {
    /// Insert or replace an entry.
    PutEntry(StoredEntry),
    /// Delete an entry.
    DeleteEntry(EntryId),
    /// Insert or replace a task.
    PutTask(StoredTask),
    /// Insert or replace an agent.
    PutAgent(AgentRecord),
    /// Insert or replace a join token by its hash.
    PutToken(String, TokenRecord),
    /// Append an audit record (and move the chain head).
    AppendAudit(AuditRecord),
    /// Append a change-log record (and move the revision).
    AppendChange(ChangeRecord),
    /// Record a serial under a task.
    PutSerial(TaskId, IssuedSerial),
    /// Replace the CA journal.
    PutCaJournal(CaJournal),
}

/// Writes applied atomically: all or none.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// The writes, in order.
    pub ops: Vec<WriteOp>,
}

/// Everything the server keeps in memory, read once at start.
#[derive(Debug, Default)]
pub struct LoadedState {
    /// All entries.
    pub entries: Vec<StoredEntry>,
    /// All tasks.
    pub tasks: Vec<StoredTask>,
    /// All agents.
    pub agents: Vec<AgentRecord>,
    /// The current revision.
    pub revision: u64,
    /// The last audit record's `(seq, hash)`.
    pub audit_head: Option<(u64, String)>,
}

/// The narrow storage interface the server needs. Methods block; async callers use
/// `spawn_blocking` for [`Store::sync`].
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads the state kept in memory.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn load(&self) -> Result<LoadedState, StoreError>;
    /// Applies `batch` atomically. Not yet durable: see [`Store::sync`].
    ///
    /// # Errors
    /// Backend failure.
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Makes every applied write durable (survives power loss).
    ///
    /// # Errors
    /// Flush or fsync failure.
    fn sync(&self) -> Result<(), StoreError>;
    /// The change records after `revision`, or `None` when the log no longer reaches back
    /// that far (the caller then sends a snapshot).
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn changes_after(&self, revision: u64) -> Result<Option<Vec<ChangeRecord>>, StoreError>;
    /// The join token stored under `hash`.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Deletes up to `max` join tokens whose `expires_at` is at or before `now_unix`, used or
    /// not, durably, and returns how many went. Safe for the single-use rule: an expired token
    /// is refused whether it is stored or not, so a used token stays refused; an unexpired one
    /// is never touched.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn prune_tokens(&self, now_unix: i64, max: usize) -> Result<usize, StoreError>;
    /// Deletes up to `max` recorded SVID serials whose `not_after` is at or before `now_unix`,
    /// durably, and returns how many went. Safe for revocation: an expired SVID needs no CRL
    /// entry, and an unexpired serial is never touched.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn prune_serials(&self, now_unix: i64, max: usize) -> Result<usize, StoreError>;
    /// Every audit record in chain order.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError>;
    /// At most `max` audit records after `after_seq`, in chain order: the pages through
    /// which `audit list` and `audit verify` walk a log of any length in bounded memory.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn audit_chunk(&self, after_seq: u64, max: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// The serials recorded under `task`.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn task_serials(&self, task: &TaskId) -> Result<Vec<IssuedSerial>, StoreError>;
    /// The CA journal, `None` before the first start.
    ///
    /// # Errors
    /// Backend failure or a corrupt record.
    fn ca_journal(&self) -> Result<Option<CaJournal>, StoreError>;
}

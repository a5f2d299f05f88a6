//! The PostgreSQL implementation of [`Store`] (DESIGN 4, "several servers on PostgreSQL"),
//! through `tokio-postgres`.
//!
//! The [`Store`] trait blocks, and the registry calls it from the server's async workers
//! while holding its write lock. So the connections are driven by a runtime of their own (one
//! thread, `mandate-pg`), and a call waits for its reply with a plain `block_on` on the
//! calling thread: a call never needs the server's runtime to make progress, so it cannot
//! deadlock it however many of its workers are blocked. One connection writes and one reads;
//! a closed connection is opened again on the next call.
//!
//! Durability: [`Store::apply`] is one transaction whose `COMMIT` runs with
//! `synchronous_commit = on`, so a batch is durable when `apply` returns and
//! [`Store::sync`] has nothing left to do.

mod rows;
mod schema;
mod session;
mod write;

use std::sync::Mutex;
use std::time::Duration;

use mandate_core::ids::TaskId;
use tokio_postgres::Client;

use super::{
    AuditRecord, CaJournal, ChangeRecord, IssuedSerial, LoadedState, Store, StoreError,
    TokenRecord, WriteBatch,
};
pub use schema::PG_SCHEMA_VERSION;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store in a PostgreSQL database (14 or newer).
pub struct PgStore {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    writer: Mutex<Option<Conn>>,
    reader: Mutex<Option<Conn>>,
    /// The writing session holds [`SERVER_LOCK`]: no second server writes meanwhile.
    exclusive: bool,
}

/// The session advisory lock of the one server that writes a database ("mandate" + 1):
/// several servers on one database are not supported yet (their revisions and audit seqs
/// come from each one's memory), so a second one is refused at start rather than left to
/// collide on every write.
const SERVER_LOCK: i64 = 0x006d_616e_6461_7466;

/// A connection, with the write statements once prepared on it.
struct Conn {
    client: Client,
    statements: Option<write::Statements>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: show where, not how.
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…` or a `key=value` string), applies
    /// the schema migrations under a database lock, and refuses a schema newer than
    /// [`PG_SCHEMA_VERSION`]. Blocks; may be called from inside or outside a runtime.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for a bad URL or an unreachable database,
    /// [`StoreError::Schema`] for a newer schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid database url: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("mandate-server");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mandate-pg")
            .enable_all()
            .build()?;
        let store = Self {
            runtime: Some(runtime),
            config,
            writer: Mutex::new(None),
            reader: Mutex::new(None),
            exclusive: false,
        };
        let mut migrator = store.connect()?;
        let found = futures::executor::block_on(schema::migrate(&mut migrator))?;
        tracing::debug!(
            found,
            current = PG_SCHEMA_VERSION,
            "postgres schema checked"
        );
        Ok(store)
    }

    /// [`PgStore::open`] for a server: its writing session also takes the database's server
    /// lock, now and after every reconnect, so a second server on the same database fails.
    ///
    /// # Errors
    /// As [`PgStore::open`], and [`StoreError::Backend`] when another server holds the lock.
    pub fn open_exclusive(url: &str) -> Result<Self, StoreError> {
        let mut store = Self::open(url)?;
        store.exclusive = true;
        store.with_writer(async |_| Ok(()))?;
        Ok(store)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime: let it go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A driver error as one line, with the database's own message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// A driver error as a [`StoreError`].
fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("postgres: {}", describe(&e)))
}

impl Store for PgStore {
    fn load(&self) -> Result<LoadedState, StoreError> {
        self.read(async |c| {
            // One snapshot for the whole read, so the parts agree with each other.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(backend)?;
            let head = tx
                .query_one(
                    "SELECT revision, audit_seq, audit_hash FROM store_head",
                    &[],
                )
                .await
                .map_err(backend)?;
            let (revision, audit_head) = rows::head(&head)?;
            let entries = tx
                .query(
                    "SELECT id, body FROM entries ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(backend)?;
            let tasks = tx
                .query("SELECT id, body FROM tasks ORDER BY id COLLATE \"C\"", &[])
                .await
                .map_err(backend)?;
            let agents = tx
                .query(
                    "SELECT spiffe_id, attested_at, expires_at, banned, serial FROM agents \
                     ORDER BY spiffe_id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(LoadedState {
                entries: entries.iter().map(rows::entry).collect::<Result<_, _>>()?,
                tasks: tasks.iter().map(rows::task).collect::<Result<_, _>>()?,
                agents: agents.iter().map(rows::agent).collect::<Result<_, _>>()?,
                revision,
                audit_head,
            })
        })
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let attempt = async |c: &mut Conn| {
            let statements = match c.statements.take() {
                Some(prepared) => prepared,
                None => write::Statements::prepare(&c.client).await?,
            };
            let statements = c.statements.insert(statements);
            Ok(write::apply(&c.client, statements, batch).await)
        };
        match self.with(&self.writer, attempt)? {
            Ok(()) => Ok(()),
            // Nothing was committed and the connection is gone (the database restarted while
            // it sat idle): send the batch once more on a new one.
            Err(write::Failure::Uncommitted(_)) if self.closed(&self.writer) => self
                .with(&self.writer, attempt)?
                .map_err(write::Failure::into_error),
            Err(failure) => Err(failure.into_error()),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Every apply committed with synchronous_commit on: already durable.
        Ok(())
    }

    fn changes_after(&self, revision: u64) -> Result<Option<Vec<ChangeRecord>>, StoreError> {
        let after = rows::to_db("revision", revision)?;
        self.read(async |c| {
            let oldest: Option<i64> = c
                .query_one("SELECT min(revision) FROM change_events", &[])
                .await
                .map_err(backend)?
                .try_get(0)
                .map_err(backend)?;
            match oldest {
                None => return Ok(Some(Vec::new())),
                Some(oldest) if after.saturating_add(1) < oldest => return Ok(None),
                Some(_) => {}
            }
            let found = c
                .query(
                    "SELECT revision, changes FROM change_events WHERE revision > $1 \
                     ORDER BY revision",
                    &[&after],
                )
                .await
                .map_err(backend)?;
            found
                .iter()
                .map(rows::change)
                .collect::<Result<_, _>>()
                .map(Some)
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(async |c| {
            let row = c
                .query_opt(
                    "SELECT agent_id, expires_at, used FROM join_tokens WHERE hash = $1",
                    &[&hash],
                )
                .await
                .map_err(backend)?;
            row.as_ref().map(rows::token).transpose()
        })
    }

    fn prune_tokens(&self, now_unix: i64, max: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.with(&self.writer, async |c| {
            let pruned = c
                .client
                .execute(
                    "DELETE FROM join_tokens WHERE hash IN (SELECT hash FROM join_tokens \
                     WHERE expires_at <= $1 LIMIT $2)",
                    &[&now_unix, &limit],
                )
                .await
                .map_err(backend)?;
            Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
        })
    }

    fn prune_serials(&self, now_unix: i64, max: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.with(&self.writer, async |c| {
            let pruned = c
                .client
                .execute(
                    "DELETE FROM issued_serials WHERE (task_id, serial) IN (SELECT task_id, \
                     serial FROM issued_serials WHERE not_after <= $1 LIMIT $2)",
                    &[&now_unix, &limit],
                )
                .await
                .map_err(backend)?;
            Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
        })
    }

    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_chunk(0, usize::MAX)
    }

    fn audit_chunk(&self, after_seq: u64, max: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let after = rows::to_db("audit seq", after_seq)?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.read(async |c| {
            let found = c
                .query(
                    &format!(
                        "SELECT {} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                        rows::AUDIT_COLUMNS
                    ),
                    &[&after, &limit],
                )
                .await
                .map_err(backend)?;
            found.iter().map(rows::audit).collect()
        })
    }

    fn task_serials(&self, task: &TaskId) -> Result<Vec<IssuedSerial>, StoreError> {
        self.read(async |c| {
            let found = c
                .query(
                    "SELECT serial, not_after, ca_id FROM issued_serials WHERE task_id = $1 \
                     ORDER BY serial COLLATE \"C\"",
                    &[&task.as_str()],
                )
                .await
                .map_err(backend)?;
            found.iter().map(rows::serial).collect()
        })
    }

    fn ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        self.read(async |c| {
            let Some(active) = c
                .query_opt("SELECT slot FROM ca_active", &[])
                .await
                .map_err(backend)?
            else {
                return Ok(None);
            };
            let active: i64 = active.try_get(0).map_err(backend)?;
            let slots = c
                .query(
                    "SELECT id, cert_der, key_file, jwt_kid, jwt_key_file, not_before, not_after \
                     FROM ca_slots ORDER BY id",
                    &[],
                )
                .await
                .map_err(backend)?;
            Ok(Some(CaJournal {
                slots: slots.iter().map(rows::ca_slot).collect::<Result<_, _>>()?,
                active: rows::from_db("ca_active", active)?,
            }))
        })
    }
}

//! The PostgreSQL schema and its migrations: applied at start, once, under an advisory lock,
//! recorded in `mandate_schema`. A database whose schema is newer than this build knows is
//! refused rather than written (DESIGN 4).
//!
//! The tables are shaped for several servers sharing one database: keys and the invariants
//! that must hold across servers are constraints and triggers, not one server's memory.

use tokio_postgres::Client;

use crate::store::StoreError;

/// The schema version this build creates and writes.
pub const PG_SCHEMA_VERSION: u32 = 1;

/// The key of the session advisory lock held while migrating ("mandate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_616e_6461_7465;

/// Each migration, in order: `(version, SQL)`. Never edit one that has shipped; append.
const MIGRATIONS: &[(u32, &str)] = &[(1, V1)];

const V1: &str = r"
-- The global revision and the audit chain head: one row, written by every batch that
-- moves either, so concurrent writers serialize on it.
CREATE TABLE store_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   bigint  NOT NULL DEFAULT 0 CHECK (revision >= 0),
    audit_seq  bigint  NOT NULL DEFAULT 0 CHECK (audit_seq >= 0),
    audit_hash text    NOT NULL DEFAULT ''
);
INSERT INTO store_head DEFAULT VALUES;
CREATE FUNCTION store_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revision < OLD.revision OR NEW.audit_seq < OLD.audit_seq THEN
        RAISE EXCEPTION 'the store head only moves forward (revision %, audit seq %)',
            OLD.revision, OLD.audit_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER store_head_forward BEFORE UPDATE ON store_head
    FOR EACH ROW EXECUTE FUNCTION store_head_forward();

-- Registration entries: the document as the server serialized it, with the columns that
-- lookups and constraints need.
CREATE TABLE entries (
    id        text   PRIMARY KEY,
    spiffe_id text   NOT NULL,
    parent_id text   NOT NULL,
    revision  bigint NOT NULL CHECK (revision >= 0),
    body      jsonb  NOT NULL
);
CREATE INDEX entries_parent ON entries (parent_id);

-- Tasks: an ID is unique forever (never deleted) and a closed or expired task never
-- leaves that state.
CREATE TABLE tasks (
    id       text   PRIMARY KEY,
    state    text   NOT NULL CHECK (state IN ('pending', 'open', 'closed', 'expired')),
    revision bigint NOT NULL CHECK (revision >= 0),
    body     jsonb  NOT NULL
);
CREATE FUNCTION tasks_never_reopen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'task % cannot be deleted: task IDs are unique forever', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.state IN ('closed', 'expired') AND NEW.state <> OLD.state THEN
        RAISE EXCEPTION 'task % is % and never reopens', OLD.id, OLD.state
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_never_reopen BEFORE UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_never_reopen();

-- Attested node agents.
CREATE TABLE agents (
    spiffe_id   text    PRIMARY KEY,
    attested_at bigint  NOT NULL,
    expires_at  bigint  NOT NULL,
    banned      boolean NOT NULL,
    serial      text    NOT NULL
);

-- Join tokens by the SHA-256 of their text: once used, used for good.
CREATE TABLE join_tokens (
    hash       text    PRIMARY KEY,
    agent_id   text,
    expires_at bigint  NOT NULL,
    used       boolean NOT NULL
);
CREATE FUNCTION join_tokens_used_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.used AND NOT NEW.used THEN
        RAISE EXCEPTION 'join token % was used and cannot be used again', OLD.hash
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER join_tokens_used_once BEFORE UPDATE ON join_tokens
    FOR EACH ROW EXECUTE FUNCTION join_tokens_used_once();

-- SVID serials issued under a task, so that a close revokes them.
CREATE TABLE issued_serials (
    task_id   text   NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    serial    text   NOT NULL,
    not_after bigint NOT NULL,
    ca_id     bigint NOT NULL,
    PRIMARY KEY (task_id, serial)
);

-- The CA journal's public half: certificates and the names of key files. Private keys stay
-- in each server's data dir and never reach the database.
CREATE TABLE ca_slots (
    id           bigint PRIMARY KEY CHECK (id >= 0),
    cert_der     bytea  NOT NULL,
    key_file     text   NOT NULL,
    jwt_kid      text   NOT NULL UNIQUE,
    jwt_key_file text   NOT NULL,
    not_before   bigint NOT NULL,
    not_after    bigint NOT NULL CHECK (not_after >= not_before)
);
CREATE TABLE ca_active (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    slot      bigint  NOT NULL
);

-- The hash-chained audit log: one record per seq, each hash once.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    time      bigint NOT NULL,
    kind      text   NOT NULL,
    actor     text   NOT NULL,
    task_id   text,
    spiffe_id text,
    serial    text,
    detail    text   NOT NULL,
    hash      text   NOT NULL UNIQUE,
    prev_hash text   NOT NULL
);

-- The change log: one event row per revision, what sync streams replay.
CREATE TABLE change_events (
    revision bigint PRIMARY KEY CHECK (revision >= 1),
    changes  jsonb  NOT NULL
);
";

/// Brings the database's schema to [`PG_SCHEMA_VERSION`] under a session advisory lock, so
/// that servers starting together apply each migration once. Returns the version found
/// before migrating (0 on an empty database).
///
/// # Errors
/// [`StoreError::Schema`] when the database holds a newer schema than this build knows;
/// [`StoreError::Backend`] when a statement fails.
pub(crate) async fn migrate(client: &mut Client) -> Result<u32, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(super::backend)?;
    let result = migrate_locked(client).await;
    // Unlock on every path; a failed unlock is moot because the caller drops the session.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let found = result?;
    unlocked.map_err(super::backend)?;
    Ok(found)
}

async fn migrate_locked(client: &mut Client) -> Result<u32, StoreError> {
    // No NOTICE ("already exists, skipping") in the server's log on every start.
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS mandate_schema (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(super::backend)?;
    let found = current_version(client).await?;
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::Schema {
            found,
            expected: PG_SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        let tx = client.transaction().await.map_err(super::backend)?;
        tx.batch_execute(sql).await.map_err(super::backend)?;
        let version_column =
            i32::try_from(*version).map_err(|e| StoreError::Backend(e.to_string()))?;
        tx.execute(
            "INSERT INTO mandate_schema (version) VALUES ($1)",
            &[&version_column],
        )
        .await
        .map_err(super::backend)?;
        tx.commit().await.map_err(super::backend)?;
        tracing::info!(version, "postgres schema migrated");
    }
    Ok(found)
}

/// The highest schema version recorded, 0 when none is.
async fn current_version(client: &Client) -> Result<u32, StoreError> {
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM mandate_schema", &[])
        .await
        .map_err(super::backend)?;
    let version: i32 = row.try_get(0).map_err(super::backend)?;
    u32::try_from(version).map_err(|_| StoreError::Corrupt {
        key: "mandate_schema".into(),
        message: format!("negative schema version {version}"),
    })
}

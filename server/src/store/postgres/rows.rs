//! Conversions between the store's records and PostgreSQL rows: unsigned numbers become
//! `bigint` (refused past `i64::MAX` rather than wrapped), documents become `jsonb`, and
//! every column is read with a checked `try_get` so a bad row is a [`StoreError::Corrupt`].

use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Json};

use crate::store::{
    AgentRecord, AuditRecord, CaSlot, Change, ChangeRecord, IssuedSerial, StoreError, StoredEntry,
    StoredTask, TokenRecord,
};

/// A `u64` as a `bigint`.
///
/// # Errors
/// [`StoreError::Backend`] past `i64::MAX`.
pub(super) fn to_db(what: &str, n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{what} {n} does not fit a bigint")))
}

/// A `bigint` as a `u64`.
///
/// # Errors
/// [`StoreError::Corrupt`] when negative.
pub(super) fn from_db(what: &str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        key: what.to_owned(),
        message: format!("negative value {n}"),
    })
}

/// Column `idx` of `row`, where `key` names the record in an error.
fn column<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, key: &str) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// `SELECT id, body FROM entries`.
pub(super) fn entry(row: &Row) -> Result<StoredEntry, StoreError> {
    let id: &str = column(row, 0, "entries")?;
    let Json(entry) = column::<Json<StoredEntry>>(row, 1, &format!("entries/{id}"))?;
    Ok(entry)
}

/// `SELECT id, body FROM tasks`.
pub(super) fn task(row: &Row) -> Result<StoredTask, StoreError> {
    let id: &str = column(row, 0, "tasks")?;
    let Json(task) = column::<Json<StoredTask>>(row, 1, &format!("tasks/{id}"))?;
    Ok(task)
}

/// `SELECT spiffe_id, attested_at, expires_at, banned, serial FROM agents`.
pub(super) fn agent(row: &Row) -> Result<AgentRecord, StoreError> {
    let key = "agents";
    Ok(AgentRecord {
        spiffe_id: column(row, 0, key)?,
        attested_at: column(row, 1, key)?,
        expires_at: column(row, 2, key)?,
        banned: column(row, 3, key)?,
        serial: column(row, 4, key)?,
    })
}

/// `SELECT agent_id, expires_at, used FROM join_tokens`.
pub(super) fn token(row: &Row) -> Result<TokenRecord, StoreError> {
    let key = "join_tokens";
    Ok(TokenRecord {
        agent_id: column(row, 0, key)?,
        expires_at: column(row, 1, key)?,
        used: column(row, 2, key)?,
    })
}

/// The audit columns, in the order [`audit`] reads them.
pub(super) const AUDIT_COLUMNS: &str =
    "seq, time, kind, actor, task_id, spiffe_id, serial, detail, hash, prev_hash";

/// `SELECT` [`AUDIT_COLUMNS`] `FROM audit_log`.
pub(super) fn audit(row: &Row) -> Result<AuditRecord, StoreError> {
    let key = "audit_log";
    Ok(AuditRecord {
        seq: from_db(key, column(row, 0, key)?)?,
        time: column(row, 1, key)?,
        kind: column(row, 2, key)?,
        actor: column(row, 3, key)?,
        task_id: column(row, 4, key)?,
        spiffe_id: column(row, 5, key)?,
        serial: column(row, 6, key)?,
        detail: column(row, 7, key)?,
        hash: column(row, 8, key)?,
        prev_hash: column(row, 9, key)?,
    })
}

/// `SELECT revision, changes FROM change_events`.
pub(super) fn change(row: &Row) -> Result<ChangeRecord, StoreError> {
    let key = "change_events";
    let revision = from_db(key, column(row, 0, key)?)?;
    let Json(changes) = column::<Json<Vec<Change>>>(row, 1, &format!("{key}/{revision}"))?;
    Ok(ChangeRecord { revision, changes })
}

/// `SELECT serial, not_after, ca_id FROM issued_serials`.
pub(super) fn serial(row: &Row) -> Result<IssuedSerial, StoreError> {
    let key = "issued_serials";
    Ok(IssuedSerial {
        serial: column(row, 0, key)?,
        not_after: column(row, 1, key)?,
        ca_id: from_db(key, column(row, 2, key)?)?,
    })
}

/// `SELECT id, cert_der, key_file, jwt_kid, jwt_key_file, not_before, not_after FROM ca_slots`.
pub(super) fn ca_slot(row: &Row) -> Result<CaSlot, StoreError> {
    let key = "ca_slots";
    Ok(CaSlot {
        id: from_db(key, column(row, 0, key)?)?,
        cert_der: column(row, 1, key)?,
        key_file: column(row, 2, key)?,
        jwt_kid: column(row, 3, key)?,
        jwt_key_file: column(row, 4, key)?,
        not_before: column(row, 5, key)?,
        not_after: column(row, 6, key)?,
    })
}

/// `SELECT revision, audit_seq, audit_hash FROM store_head`: the revision and the audit
/// chain head, `None` before the first record.
pub(super) fn head(row: &Row) -> Result<(u64, Option<(u64, String)>), StoreError> {
    let key = "store_head";
    let revision = from_db(key, column(row, 0, key)?)?;
    let seq = from_db(key, column(row, 1, key)?)?;
    let hash: String = column(row, 2, key)?;
    Ok((revision, (seq > 0).then_some((seq, hash))))
}

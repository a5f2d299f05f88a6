//! One [`WriteBatch`] as one PostgreSQL transaction: every op in order, the batch's audit
//! records and serials each in one multi-row `INSERT … SELECT FROM unnest(…)`, the head
//! row once, then `COMMIT` with `synchronous_commit = on`. Any refused statement (a task
//! reopened, a used join token unused, an audit seq taken twice) rolls the whole batch back.

use std::collections::BTreeMap;

use tokio_postgres::types::Json;
use tokio_postgres::{Client, Transaction};

use super::backend;
use super::rows::to_db;
use crate::store::{AuditRecord, CaJournal, IssuedSerial, StoreError, WriteBatch, WriteOp};

/// How many revisions of change events are kept for resuming agents (as on sled).
const CHANGE_LOG_KEEP: u64 = 100_000;

const PUT_ENTRY: &str = "INSERT INTO entries (id, spiffe_id, parent_id, revision, body) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET spiffe_id = EXCLUDED.spiffe_id, \
     parent_id = EXCLUDED.parent_id, revision = EXCLUDED.revision, body = EXCLUDED.body";
const PUT_TASK: &str = "INSERT INTO tasks (id, state, revision, body) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, revision = EXCLUDED.revision, \
     body = EXCLUDED.body";
const PUT_AGENT: &str = "INSERT INTO agents (spiffe_id, attested_at, expires_at, banned, serial) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (spiffe_id) DO UPDATE SET attested_at = EXCLUDED.attested_at, \
     expires_at = EXCLUDED.expires_at, banned = EXCLUDED.banned, serial = EXCLUDED.serial";
const PUT_TOKEN: &str = "INSERT INTO join_tokens (hash, agent_id, expires_at, used) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (hash) DO UPDATE SET agent_id = EXCLUDED.agent_id, \
     expires_at = EXCLUDED.expires_at, used = EXCLUDED.used";
const APPEND_AUDIT: &str = "INSERT INTO audit_log \
     (seq, time, kind, actor, task_id, spiffe_id, serial, detail, hash, prev_hash) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])";
const PUT_SERIALS: &str = "INSERT INTO issued_serials (task_id, serial, not_after, ca_id) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
     ON CONFLICT (task_id, serial) DO UPDATE SET not_after = EXCLUDED.not_after, \
     ca_id = EXCLUDED.ca_id";
const MOVE_HEAD: &str = "UPDATE store_head SET revision = coalesce($1, revision), \
     audit_seq = coalesce($2, audit_seq), audit_hash = coalesce($3, audit_hash)";

/// Applies `batch` in one transaction, durable when this returns.
///
/// # Errors
/// [`StoreError::Backend`] when a statement or the commit fails; nothing is written then.
pub(super) async fn apply(client: &mut Client, batch: &WriteBatch) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(backend)?;
    let mut audit: Vec<&AuditRecord> = Vec::new();
    // By (task, serial), the last write winning as in one key-value batch.
    let mut serials: BTreeMap<(&str, &str), &IssuedSerial> = BTreeMap::new();
    let mut revision = None;
    for op in &batch.ops {
        match op {
            WriteOp::PutEntry(e) => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
                    &e.entry.id.as_str(),
                    &e.entry.spiffe_id.to_string(),
                    &e.entry.parent_id.to_string(),
                    &to_db("revision", e.revision)?,
                    &Json(e),
                ];
                tx.execute(PUT_ENTRY, &params).await.map_err(backend)?;
            }
            WriteOp::DeleteEntry(id) => {
                tx.execute("DELETE FROM entries WHERE id = $1", &[&id.as_str()])
                    .await
                    .map_err(backend)?;
            }
            WriteOp::PutTask(t) => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                    &t.task.id.as_str(),
                    &t.task.state.as_str(),
                    &to_db("revision", t.revision)?,
                    &Json(t),
                ];
                tx.execute(PUT_TASK, &params).await.map_err(backend)?;
            }
            WriteOp::PutAgent(a) => {
                tx.execute(
                    PUT_AGENT,
                    &[
                        &a.spiffe_id,
                        &a.attested_at,
                        &a.expires_at,
                        &a.banned,
                        &a.serial,
                    ],
                )
                .await
                .map_err(backend)?;
            }
            WriteOp::PutToken(hash, t) => {
                tx.execute(PUT_TOKEN, &[hash, &t.agent_id, &t.expires_at, &t.used])
                    .await
                    .map_err(backend)?;
            }
            WriteOp::AppendAudit(r) => audit.push(r),
            WriteOp::AppendChange(c) => {
                let at = to_db("revision", c.revision)?;
                tx.execute(
                    "INSERT INTO change_events (revision, changes) VALUES ($1, $2)",
                    &[&at, &Json(&c.changes)],
                )
                .await
                .map_err(backend)?;
                if c.revision > CHANGE_LOG_KEEP {
                    let pruned = to_db("revision", c.revision - CHANGE_LOG_KEEP)?;
                    tx.execute("DELETE FROM change_events WHERE revision <= $1", &[&pruned])
                        .await
                        .map_err(backend)?;
                }
                revision = Some(at);
            }
            WriteOp::PutSerial(task, s) => {
                serials.insert((task.as_str(), s.serial.as_str()), s);
            }
            WriteOp::PutCaJournal(j) => put_ca_journal(&tx, j).await?,
        }
    }
    append_audit(&tx, &audit).await?;
    put_serials(&tx, &serials).await?;
    let last = audit.last();
    if revision.is_some() || last.is_some() {
        let seq = last.map(|r| to_db("audit seq", r.seq)).transpose()?;
        let hash = last.map(|r| r.hash.as_str());
        tx.execute(MOVE_HEAD, &[&revision, &seq, &hash])
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

async fn append_audit(tx: &Transaction<'_>, records: &[&AuditRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let seqs = records
        .iter()
        .map(|r| to_db("audit seq", r.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let times: Vec<i64> = records.iter().map(|r| r.time).collect();
    let text = |f: fn(&AuditRecord) -> &str| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    let optional =
        |f: fn(&AuditRecord) -> Option<&str>| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    tx.execute(
        APPEND_AUDIT,
        &[
            &seqs,
            &times,
            &text(|r| &r.kind),
            &text(|r| &r.actor),
            &optional(|r| r.task_id.as_deref()),
            &optional(|r| r.spiffe_id.as_deref()),
            &optional(|r| r.serial.as_deref()),
            &text(|r| &r.detail),
            &text(|r| &r.hash),
            &text(|r| &r.prev_hash),
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

async fn put_serials(
    tx: &Transaction<'_>,
    serials: &BTreeMap<(&str, &str), &IssuedSerial>,
) -> Result<(), StoreError> {
    if serials.is_empty() {
        return Ok(());
    }
    let tasks: Vec<&str> = serials.keys().map(|(task, _)| *task).collect();
    let names: Vec<&str> = serials.keys().map(|(_, serial)| *serial).collect();
    let not_after: Vec<i64> = serials.values().map(|s| s.not_after).collect();
    let ca_ids = serials
        .values()
        .map(|s| to_db("ca id", s.ca_id))
        .collect::<Result<Vec<_>, _>>()?;
    tx.execute(PUT_SERIALS, &[&tasks, &names, &not_after, &ca_ids])
        .await
        .map_err(backend)?;
    Ok(())
}

/// Replaces the journal: its slots (certificates and key file names, never keys) and the
/// active one.
async fn put_ca_journal(tx: &Transaction<'_>, journal: &CaJournal) -> Result<(), StoreError> {
    tx.execute("DELETE FROM ca_slots", &[])
        .await
        .map_err(backend)?;
    for slot in &journal.slots {
        let id = to_db("ca slot", slot.id)?;
        tx.execute(
            "INSERT INTO ca_slots \
             (id, cert_der, key_file, jwt_kid, jwt_key_file, not_before, not_after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &slot.cert_der,
                &slot.key_file,
                &slot.jwt_kid,
                &slot.jwt_key_file,
                &slot.not_before,
                &slot.not_after,
            ],
        )
        .await
        .map_err(backend)?;
    }
    let active = to_db("ca slot", journal.active)?;
    tx.execute(
        "INSERT INTO ca_active (singleton, slot) VALUES (true, $1) \
         ON CONFLICT (singleton) DO UPDATE SET slot = EXCLUDED.slot",
        &[&active],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

//! One [`WriteBatch`] as one PostgreSQL transaction, pipelined: `BEGIN` and every op's
//! prepared statement go out together in batch order (the batch's audit records and serials
//! each as one multi-row `INSERT … SELECT FROM unnest(…)`, the head row once), and `COMMIT`
//! follows only when every statement succeeded, else `ROLLBACK`. The session runs with
//! `synchronous_commit = on`, so a committed batch is durable. Any refused statement (a task
//! reopened, a used join token unused, an audit seq taken twice) rolls the whole batch back.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Client, Statement};

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

const DELETE_ENTRY: &str = "DELETE FROM entries WHERE id = $1";
const APPEND_CHANGE: &str = "INSERT INTO change_events (revision, changes) VALUES ($1, $2)";
const PRUNE_CHANGES: &str = "DELETE FROM change_events WHERE revision <= $1";
const DELETE_CA_SLOTS: &str = "DELETE FROM ca_slots";
const PUT_CA_SLOT: &str = "INSERT INTO ca_slots \
     (id, cert_der, key_file, jwt_kid, jwt_key_file, not_before, not_after) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const PUT_CA_ACTIVE: &str = "INSERT INTO ca_active (singleton, slot) VALUES (true, $1) \
     ON CONFLICT (singleton) DO UPDATE SET slot = EXCLUDED.slot";

/// The writing connection's prepared statements.
#[derive(Debug)]
pub(super) struct Statements {
    put_entry: Statement,
    delete_entry: Statement,
    put_task: Statement,
    put_agent: Statement,
    put_token: Statement,
    append_audit: Statement,
    put_serials: Statement,
    append_change: Statement,
    prune_changes: Statement,
    move_head: Statement,
    delete_ca_slots: Statement,
    put_ca_slot: Statement,
    put_ca_active: Statement,
}

impl Statements {
    /// Makes the session durable on commit and prepares every write statement.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a statement does not prepare.
    pub(super) async fn prepare(client: &Client) -> Result<Self, StoreError> {
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(backend)?;
        let prepare = async |sql: &str| client.prepare(sql).await.map_err(backend);
        Ok(Self {
            put_entry: prepare(PUT_ENTRY).await?,
            delete_entry: prepare(DELETE_ENTRY).await?,
            put_task: prepare(PUT_TASK).await?,
            put_agent: prepare(PUT_AGENT).await?,
            put_token: prepare(PUT_TOKEN).await?,
            append_audit: prepare(APPEND_AUDIT).await?,
            put_serials: prepare(PUT_SERIALS).await?,
            append_change: prepare(APPEND_CHANGE).await?,
            prune_changes: prepare(PRUNE_CHANGES).await?,
            move_head: prepare(MOVE_HEAD).await?,
            delete_ca_slots: prepare(DELETE_CA_SLOTS).await?,
            put_ca_slot: prepare(PUT_CA_SLOT).await?,
            put_ca_active: prepare(PUT_CA_ACTIVE).await?,
        })
    }
}

/// One statement's parameters, owned or borrowed from the batch.
type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;
/// A statement to run and its parameters.
type Call<'a> = (&'a Statement, Vec<Param<'a>>);
type Pending<'a> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + 'a>>;

/// Why a batch was not applied.
#[derive(Debug)]
pub(super) enum Failure {
    /// Before `COMMIT` was sent: nothing was written, sending the batch again is safe.
    Uncommitted(StoreError),
    /// `COMMIT` itself failed: the batch may or may not be written.
    AtCommit(StoreError),
}

impl Failure {
    /// The error, whichever the failure.
    pub(super) fn into_error(self) -> StoreError {
        match self {
            Self::Uncommitted(e) | Self::AtCommit(e) => e,
        }
    }
}

/// Applies `batch` in one transaction, durable when this returns.
///
/// # Errors
/// A [`Failure`] saying whether the batch can have been written.
pub(super) async fn apply(
    client: &Client,
    statements: &Statements,
    batch: &WriteBatch,
) -> Result<(), Failure> {
    let calls = plan(statements, batch).map_err(Failure::Uncommitted)?;
    let mut pending: Vec<Pending<'_>> = Vec::with_capacity(calls.len() + 1);
    pending.push(Box::pin(client.batch_execute("BEGIN")));
    for (statement, params) in &calls {
        let params = params.iter().map(|p| &**p as &(dyn ToSql + Sync));
        pending.push(Box::pin(async move {
            client.execute_raw(*statement, params).await.map(drop)
        }));
    }
    match in_order(pending).await.into_iter().find_map(Result::err) {
        None => client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| Failure::AtCommit(backend(e))),
        Some(e) => {
            // The transaction is aborted already; end it so the session can go on.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Failure::Uncommitted(backend(e)))
        }
    }
}

/// Polls every call, always in order, until all are done: each sends its statement on its
/// first poll, so the statements reach the database in batch order, in one pipeline.
async fn in_order(mut calls: Vec<Pending<'_>>) -> Vec<Result<(), tokio_postgres::Error>> {
    let mut results: Vec<Option<Result<(), tokio_postgres::Error>>> =
        calls.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (call, result) in calls.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match call.as_mut().poll(cx) {
                    Poll::Ready(done) => *result = Some(done),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// The statements for `batch`, in its order; the audit records, serials and head last.
fn plan<'a>(s: &'a Statements, batch: &'a WriteBatch) -> Result<Vec<Call<'a>>, StoreError> {
    let mut calls: Vec<Call<'a>> = Vec::with_capacity(batch.ops.len() + 3);
    let mut audit: Vec<&AuditRecord> = Vec::new();
    // By (task, serial), the last write winning as in one key-value batch.
    let mut serials: BTreeMap<(&str, &str), &IssuedSerial> = BTreeMap::new();
    let mut revision = None;
    for op in &batch.ops {
        match op {
            WriteOp::PutEntry(e) => calls.push((
                &s.put_entry,
                vec![
                    Box::new(e.entry.id.as_str()),
                    Box::new(e.entry.spiffe_id.to_string()),
                    Box::new(e.entry.parent_id.to_string()),
                    Box::new(to_db("revision", e.revision)?),
                    Box::new(Json(e)),
                ],
            )),
            WriteOp::DeleteEntry(id) => calls.push((&s.delete_entry, vec![Box::new(id.as_str())])),
            WriteOp::PutTask(t) => calls.push((
                &s.put_task,
                vec![
                    Box::new(t.task.id.as_str()),
                    Box::new(t.task.state.as_str()),
                    Box::new(to_db("revision", t.revision)?),
                    Box::new(Json(t)),
                ],
            )),
            WriteOp::PutAgent(a) => calls.push((
                &s.put_agent,
                vec![
                    Box::new(a.spiffe_id.as_str()),
                    Box::new(a.attested_at),
                    Box::new(a.expires_at),
                    Box::new(a.banned),
                    Box::new(a.serial.as_str()),
                ],
            )),
            WriteOp::PutToken(hash, t) => calls.push((
                &s.put_token,
                vec![
                    Box::new(hash.as_str()),
                    Box::new(t.agent_id.as_deref()),
                    Box::new(t.expires_at),
                    Box::new(t.used),
                ],
            )),
            WriteOp::AppendAudit(r) => audit.push(r),
            WriteOp::AppendChange(c) => {
                let at = to_db("revision", c.revision)?;
                calls.push((
                    &s.append_change,
                    vec![Box::new(at), Box::new(Json(&c.changes))],
                ));
                if c.revision > CHANGE_LOG_KEEP {
                    let pruned = to_db("revision", c.revision - CHANGE_LOG_KEEP)?;
                    calls.push((&s.prune_changes, vec![Box::new(pruned)]));
                }
                revision = Some(at);
            }
            WriteOp::PutSerial(task, serial) => {
                serials.insert((task.as_str(), serial.serial.as_str()), serial);
            }
            WriteOp::PutCaJournal(j) => put_ca_journal(s, j, &mut calls)?,
        }
    }
    if !audit.is_empty() {
        calls.push((&s.append_audit, audit_columns(&audit)?));
    }
    if !serials.is_empty() {
        calls.push((&s.put_serials, serial_columns(&serials)?));
    }
    let last = audit.last();
    if revision.is_some() || last.is_some() {
        let seq = last.map(|r| to_db("audit seq", r.seq)).transpose()?;
        let hash = last.map(|r| r.hash.as_str());
        calls.push((
            &s.move_head,
            vec![Box::new(revision), Box::new(seq), Box::new(hash)],
        ));
    }
    Ok(calls)
}

/// The audit records as the ten arrays of [`APPEND_AUDIT`].
fn audit_columns<'a>(records: &[&'a AuditRecord]) -> Result<Vec<Param<'a>>, StoreError> {
    let seqs = records
        .iter()
        .map(|r| to_db("audit seq", r.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let times: Vec<i64> = records.iter().map(|r| r.time).collect();
    let text = |f: fn(&'a AuditRecord) -> &'a str| -> Param<'a> {
        Box::new(records.iter().map(|r| f(r)).collect::<Vec<&'a str>>())
    };
    let optional = |f: fn(&'a AuditRecord) -> Option<&'a str>| -> Param<'a> {
        Box::new(
            records
                .iter()
                .map(|r| f(r))
                .collect::<Vec<Option<&'a str>>>(),
        )
    };
    Ok(vec![
        Box::new(seqs),
        Box::new(times),
        text(|r| &r.kind),
        text(|r| &r.actor),
        optional(|r| r.task_id.as_deref()),
        optional(|r| r.spiffe_id.as_deref()),
        optional(|r| r.serial.as_deref()),
        text(|r| &r.detail),
        text(|r| &r.hash),
        text(|r| &r.prev_hash),
    ])
}

/// The serials as the four arrays of [`PUT_SERIALS`].
fn serial_columns<'a>(
    serials: &BTreeMap<(&'a str, &'a str), &'a IssuedSerial>,
) -> Result<Vec<Param<'a>>, StoreError> {
    let tasks: Vec<&str> = serials.keys().map(|(task, _)| *task).collect();
    let names: Vec<&str> = serials.keys().map(|(_, serial)| *serial).collect();
    let not_after: Vec<i64> = serials.values().map(|s| s.not_after).collect();
    let ca_ids = serials
        .values()
        .map(|s| to_db("ca id", s.ca_id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        Box::new(tasks),
        Box::new(names),
        Box::new(not_after),
        Box::new(ca_ids),
    ])
}

/// Replaces the journal: its slots (certificates and key file names, never keys) and the
/// active one.
fn put_ca_journal<'a>(
    s: &'a Statements,
    journal: &'a CaJournal,
    calls: &mut Vec<Call<'a>>,
) -> Result<(), StoreError> {
    calls.push((&s.delete_ca_slots, Vec::new()));
    for slot in &journal.slots {
        calls.push((
            &s.put_ca_slot,
            vec![
                Box::new(to_db("ca slot", slot.id)?),
                Box::new(slot.cert_der.as_slice()),
                Box::new(slot.key_file.as_str()),
                Box::new(slot.jwt_kid.as_str()),
                Box::new(slot.jwt_key_file.as_str()),
                Box::new(slot.not_before),
                Box::new(slot.not_after),
            ],
        ));
    }
    calls.push((
        &s.put_ca_active,
        vec![Box::new(to_db("ca slot", journal.active)?)],
    ));
    Ok(())
}

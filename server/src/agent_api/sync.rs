//! The Sync stream (DESIGN 3.5 "Sync"): a snapshot or a replay of the change log after the
//! agent's revision, then every change as it is published, plus a heartbeat every 2 s. Each
//! change is resolved against the current in-memory state, filtered for the agent, so a
//! change costs O(change). A task end reaches every agent (DESIGN 3.4): the full task to
//! agents whose entries use it, a compact `TaskEnded` to all others; the snapshot carries the
//! trust domain's closed set.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mandate_core::task::TaskState;
use mandate_proto::agent::{
    EntryRemoved, Heartbeat, SnapshotPart, SyncMessage, TaskEnded, sync_message::Event,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::delegate_sync;
use crate::context::Context;
use crate::registry::State;
use crate::store::{Change, ChangeRecord};
use crate::wire;

/// Heartbeat period (DESIGN 3.4 wants at least every 5 s).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Entries per snapshot part.
const SNAPSHOT_PART: usize = 1000;
/// Closed-set members per snapshot part (about 45 bytes each, so a part stays near 200 KB).
const ENDED_PART: usize = 4096;

type Tx = mpsc::Sender<Result<SyncMessage, Status>>;

/// Opens a sync stream for `agent` resuming after `since` (0: snapshot).
pub(super) fn open(
    ctx: Arc<Context>,
    agent: String,
    since: u64,
) -> ReceiverStream<Result<SyncMessage, Status>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        ctx.metrics.sync_streams.inc();
        if let Err(reason) = run(&ctx, &agent, since, &tx).await {
            tracing::debug!(%agent, %reason, "sync stream ended");
            let status = match reason {
                End::Evicted => Some(evicted()),
                End::Store(e) => Some(Status::internal(e)),
                End::Gone => None,
            };
            if let Some(status) = status {
                let _ = tx.send(Err(status)).await;
            }
        }
        ctx.metrics.sync_streams.dec();
    });
    ReceiverStream::new(rx)
}

/// Why a stream ended.
#[derive(Debug)]
enum End {
    Gone,
    Evicted,
    Store(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone => f.write_str("agent disconnected"),
            Self::Evicted => f.write_str("agent evicted"),
            Self::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

async fn run(ctx: &Context, agent: &str, since: u64, tx: &Tx) -> Result<(), End> {
    // Subscribe before reading state: nothing published in between is missed.
    let mut events = ctx.registry.subscribe();
    let mut last = catch_up(ctx, agent, since, tx).await?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(record) if record.revision > last => {
                    let messages = resolve(ctx, agent, &record, true)?;
                    send_all(tx, messages).await?;
                    last = record.revision;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    last = catch_up(ctx, agent, last, tx).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Err(End::Gone),
            },
            _ = heartbeat.tick() => {
                send(tx, message(last, Event::Heartbeat(Heartbeat {}))).await?;
            }
            () = tx.closed() => return Err(End::Gone),
        }
    }
}

/// Brings the agent from `since` to the published revision: a replay when the change log
/// still reaches back, else a snapshot. Returns the revision reached.
async fn catch_up(ctx: &Context, agent: &str, since: u64, tx: &Tx) -> Result<u64, End> {
    let published = ctx.registry.published_revision();
    if since > 0 && since <= published {
        let records = ctx
            .registry
            .store()
            .changes_after(since)
            .map_err(|e| End::Store(e.to_string()))?;
        if let Some(records) = records {
            let mut bundle_changed = false;
            for record in records.iter().filter(|r| r.revision <= published) {
                bundle_changed |= record.changes.contains(&Change::Bundle);
                send_all(tx, resolve(ctx, agent, record, false)?).await?;
            }
            if bundle_changed {
                let bundle = wire::bundle(&ctx.ca.bundle());
                send(tx, message(published, Event::BundleUpdate(bundle))).await?;
            }
            // Tell the agent where it is even when nothing concerned it.
            send(tx, message(published, Event::Heartbeat(Heartbeat {}))).await?;
            return Ok(published);
        }
    }
    let parts = snapshot(ctx, agent, published);
    send_all(tx, parts).await?;
    Ok(published)
}

fn snapshot(ctx: &Context, agent: &str, revision: u64) -> Vec<SyncMessage> {
    let now = SystemTime::now();
    let state = ctx.registry.read();
    // A delegate entry issues nothing by itself: it travels as one entry per open sub-task.
    let mut entries: Vec<_> = state
        .index
        .entries_of_parent(agent)
        .filter(|e| e.entry.delegate_from.is_empty())
        .map(|e| wire::entry(e))
        .collect();
    let (bound_entries, bound_tasks) = delegate_sync::snapshot(&state, agent, now);
    entries.extend(bound_entries);
    let mut task_ids: Vec<_> = state
        .index
        .entries_of_parent(agent)
        .filter_map(|e| e.entry.task_id.clone())
        .collect();
    task_ids.sort();
    task_ids.dedup();
    let mut tasks: Vec<_> = task_ids
        .iter()
        .filter_map(|id| state.index.task(id))
        .map(|t| wire::task(t, now))
        .collect();
    tasks.extend(bound_tasks);
    let ended: Vec<TaskEnded> = state
        .index
        .ended_tasks(now)
        .map(|(deadline, id)| task_ended(id, deadline))
        .collect();
    drop(state);
    let mut parts: Vec<SnapshotPart> = entries
        .chunks(SNAPSHOT_PART)
        .map(|entries| SnapshotPart {
            entries: entries.to_vec(),
            ..SnapshotPart::default()
        })
        .collect();
    parts.extend(ended.chunks(ENDED_PART).map(|ended| SnapshotPart {
        ended_tasks: ended.to_vec(),
        ..SnapshotPart::default()
    }));
    if parts.is_empty() {
        parts.push(SnapshotPart::default());
    }
    if let Some(first) = parts.first_mut() {
        first.reset = true;
        first.tasks = tasks;
        first.bundle = Some(wire::bundle(&ctx.ca.bundle()));
    }
    if let Some(last) = parts.last_mut() {
        last.complete = true;
    }
    parts
        .into_iter()
        .map(|part| message(revision, Event::Snapshot(part)))
        .collect()
}

fn task_ended(id: &mandate_core::ids::TaskId, deadline: SystemTime) -> TaskEnded {
    TaskEnded {
        task_id: id.to_string(),
        deadline_unix: mandate_core::time::unix_seconds(deadline),
    }
}

/// The messages `record` means for `agent`. Bundle changes are sent when `bundles`.
fn resolve(
    ctx: &Context,
    agent: &str,
    record: &ChangeRecord,
    bundles: bool,
) -> Result<Vec<SyncMessage>, End> {
    let now = SystemTime::now();
    let rev = record.revision;
    let state = ctx.registry.read();
    let mut out = Vec::new();
    for change in &record.changes {
        match change {
            Change::Entry { id, parent } if parent == agent => match state.index.entry(id) {
                Some(e) if !e.entry.delegate_from.is_empty() => out.extend(
                    delegate_sync::entry_change(&state, e, now)
                        .into_iter()
                        .map(|event| message(rev, event)),
                ),
                Some(e) => {
                    if let Some(task) = e.entry.task_id.as_ref().and_then(|t| state.index.task(t)) {
                        out.push(message(rev, Event::TaskUpdate(wire::task(task, now))));
                    }
                    out.push(message(rev, Event::EntryUpsert(wire::entry(e))));
                }
                None => out.push(message(
                    rev,
                    Event::EntryRemoved(EntryRemoved {
                        entry_id: id.to_string(),
                    }),
                )),
            },
            Change::Task { id } => match state.index.task(id) {
                // A sub-task bound to a delegate entry of this agent (DESIGN 3.8).
                Some(task) if delegate_sync::concerns(&state, agent, task) => out.extend(
                    delegate_sync::task_change(&state, agent, task, now)
                        .into_iter()
                        .map(|event| message(rev, event)),
                ),
                Some(task) if concerns(&state, agent, id) => {
                    out.push(message(rev, Event::TaskUpdate(wire::task(task, now))));
                }
                // Every other agent learns of every task end: its verifiers may see the
                // task's callers from other nodes (DESIGN 3.4).
                Some(task) if matches!(task.task.state, TaskState::Closed | TaskState::Expired) => {
                    let ended = task_ended(id, task.task.deadline);
                    out.push(message(rev, Event::TaskEnded(ended)));
                }
                _ => {}
            },
            Change::Bundle if bundles => {
                out.push(message(
                    rev,
                    Event::BundleUpdate(wire::bundle(&ctx.ca.bundle())),
                ));
            }
            Change::Agent { spiffe_id }
                if spiffe_id == agent && state.index.agent(agent).is_none_or(|a| a.banned) =>
            {
                return Err(End::Evicted);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn concerns(state: &State, agent: &str, task: &mandate_core::ids::TaskId) -> bool {
    state
        .index
        .entries_of_task(task)
        .any(|e| e.entry.parent_id.to_string() == agent)
}

fn message(revision: u64, event: Event) -> SyncMessage {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    SyncMessage {
        revision,
        server_time_unix_ms: ms,
        event: Some(event),
    }
}

async fn send(tx: &Tx, msg: SyncMessage) -> Result<(), End> {
    tx.send(Ok(msg)).await.map_err(|_| End::Gone)
}

async fn send_all(tx: &Tx, messages: Vec<SyncMessage>) -> Result<(), End> {
    for m in messages {
        send(tx, m).await?;
    }
    Ok(())
}

/// Ends a stream for an evicted agent with the status agents expect.
pub(super) fn evicted() -> Status {
    Status::permission_denied("agent evicted")
}

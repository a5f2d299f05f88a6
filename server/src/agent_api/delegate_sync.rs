//! What sync sends a delegate's agent (DESIGN 3.8): a delegate entry issues nothing by
//! itself, so the agent never receives it as such; instead each open sub-task bound to it
//! travels as one entry `<entry id>/<sub-task id>`, bound to the sub-task with the sub-task
//! ID as its hint, next to the sub-task itself. The agent's cache then holds one SVID per
//! (delegate entry, open sub-task) without knowing about delegation.

use std::time::SystemTime;

use mandate_proto::agent::EntryRemoved;
use mandate_proto::agent::sync_message::Event;
use mandate_proto::types;

use crate::registry::State;
use crate::store::{StoredEntry, StoredTask};
use crate::wire;

/// The ID under which the agent holds `entry`'s SVID for sub-task `task`.
pub(super) fn bound_id(entry: &StoredEntry, task: &StoredTask) -> String {
    format!("{}/{}", entry.entry.id, task.task.id)
}

/// True when `task` is a sub-task bound to `entry` (its delegate and delegator match).
fn is_bound(entry: &StoredEntry, task: &StoredTask) -> bool {
    task.task.lineage.as_ref().is_some_and(|l| {
        l.delegate == entry.entry.spiffe_id.to_string()
            && entry
                .entry
                .delegate_from
                .iter()
                .any(|d| d.to_string() == l.delegator)
    })
}

/// `entry` as the agent holds it for sub-task `task`.
fn bound_entry(entry: &StoredEntry, task: &StoredTask) -> types::Entry {
    let mut wire_entry = wire::entry(entry);
    wire_entry.id = bound_id(entry, task);
    wire_entry.task_id = task.task.id.to_string();
    wire_entry.hint = task.task.id.to_string();
    wire_entry.delegate_from = Vec::new();
    wire_entry.revision = entry.revision.max(task.revision);
    wire_entry
}

/// The delegate entries of `agent` that `task` is bound to.
fn bound_entries<'a>(
    state: &'a State,
    agent: &'a str,
    task: &'a StoredTask,
) -> impl Iterator<Item = &'a std::sync::Arc<StoredEntry>> + 'a {
    let delegate = task
        .task
        .lineage
        .as_ref()
        .map(|l| l.delegate.as_str())
        .unwrap_or_default();
    state
        .index
        .delegate_entries(delegate)
        .filter(move |e| e.entry.parent_id.to_string() == agent && is_bound(e, task))
}

/// True when `task` is a sub-task bound to a delegate entry of `agent`.
pub(super) fn concerns(state: &State, agent: &str, task: &StoredTask) -> bool {
    task.task.lineage.is_some() && bound_entries(state, agent, task).next().is_some()
}

/// The events a change of sub-task `task` means for `agent`: the task, then per bound
/// delegate entry its SVID's entry while the task is open, or its removal once it is not.
pub(super) fn task_change(
    state: &State,
    agent: &str,
    task: &StoredTask,
    now: SystemTime,
) -> Vec<Event> {
    let mut events = vec![Event::TaskUpdate(wire::task(task, now))];
    for entry in bound_entries(state, agent, task) {
        events.push(if task.task.can_issue(now) {
            Event::EntryUpsert(bound_entry(entry, task))
        } else {
            Event::EntryRemoved(EntryRemoved {
                entry_id: bound_id(entry, task),
            })
        });
    }
    events
}

/// The events a created or changed delegate entry means for its agent: one entry per open
/// sub-task bound to it, each after its task.
pub(super) fn entry_change(state: &State, entry: &StoredEntry, now: SystemTime) -> Vec<Event> {
    let mut events = Vec::new();
    for task in open_bound(state, entry, now) {
        events.push(Event::TaskUpdate(wire::task(task, now)));
        events.push(Event::EntryUpsert(bound_entry(entry, task)));
    }
    events
}

/// What a snapshot for `agent` carries for its delegate entries: the bound entries and
/// their sub-tasks.
pub(super) fn snapshot(
    state: &State,
    agent: &str,
    now: SystemTime,
) -> (Vec<types::Entry>, Vec<types::Task>) {
    let mut entries = Vec::new();
    let mut tasks = Vec::new();
    for entry in state
        .index
        .entries_of_parent(agent)
        .filter(|e| !e.entry.delegate_from.is_empty())
    {
        for task in open_bound(state, entry, now) {
            entries.push(bound_entry(entry, task));
            tasks.push(wire::task(task, now));
        }
    }
    (entries, tasks)
}

fn open_bound<'a>(
    state: &'a State,
    entry: &'a StoredEntry,
    now: SystemTime,
) -> impl Iterator<Item = &'a std::sync::Arc<StoredTask>> + 'a {
    state
        .index
        .subtasks_bound_to(&entry.entry.spiffe_id.to_string())
        .filter(move |t| t.task.can_issue(now) && is_bound(entry, t))
        .collect::<Vec<_>>()
        .into_iter()
}

//! Unit tests of the cache state: entry-by-entry application, snapshots, signing plans.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::task::TaskState;

use super::*;
use crate::cache::model::CachedSvid;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn entry(id: &str, task: Option<&str>) -> AgentEntry {
    AgentEntry {
        id: id.into(),
        spiffe_id: format!("spiffe://example.org/{id}"),
        selectors: vec!["unix:uid:1001".parse().unwrap()],
        x509_ttl: Duration::from_secs(60),
        jwt_ttl: Duration::from_secs(60),
        task_id: task.map(str::to_owned),
        dns_names: vec![],
        hint: String::new(),
        created: (0, 0),
    }
}

fn svid(generation: u64, issued: SystemTime, ttl: u64) -> SharedSvid {
    Arc::new(CachedSvid {
        chain: vec![vec![1]],
        key_pkcs8: vec![2],
        serial: "0a".into(),
        issued_at: issued,
        not_after: issued + Duration::from_secs(ttl),
        generation,
        jitter: Duration::ZERO,
    })
}

#[test]
fn upserts_and_removals_apply_one_entry_at_a_time() {
    let mut state = State::default();
    state.apply(SyncEvent::EntryUpsert(entry("a", None)));
    state.apply(SyncEvent::EntryUpsert(entry("b", None)));
    let generation = state.entries["a"].generation;
    state.entries.get_mut("a").unwrap().svid = Some(svid(generation, t(0), 60));
    // A hint change keeps the SVID and the generation.
    let mut hinted = entry("a", None);
    hinted.hint = "h".into();
    state.apply(SyncEvent::EntryUpsert(hinted));
    assert_eq!(state.entries["a"].generation, generation);
    assert!(state.entries["a"].svid.is_some());
    // A TTL change bumps the generation but keeps serving the old SVID until the new one.
    let mut longer = entry("a", None);
    longer.x509_ttl = Duration::from_secs(120);
    state.apply(SyncEvent::EntryUpsert(longer));
    assert!(state.entries["a"].generation > generation);
    assert!(state.entries["a"].svid.is_some());
    state.apply(SyncEvent::EntryRemoved("b".into()));
    assert_eq!(state.entries.len(), 1);
}

#[test]
fn a_snapshot_replaces_the_set_only_when_complete() {
    let mut state = State::default();
    state.apply(SyncEvent::EntryUpsert(entry("old", None)));
    let applied = state.apply(SyncEvent::Snapshot {
        reset: true,
        complete: false,
        entries: vec![entry("x", None)],
        tasks: vec![],
        ended: vec![],
        bundle: None,
    });
    assert!(!applied.revision_done);
    assert!(state.entries.contains_key("old"));
    state.apply(SyncEvent::Snapshot {
        reset: false,
        complete: true,
        entries: vec![entry("y", None)],
        tasks: vec![],
        ended: vec![],
        bundle: None,
    });
    let mut ids: Vec<_> = state.entries.keys().cloned().collect();
    ids.sort();
    assert_eq!(ids, vec!["x", "y"]);
}

#[test]
fn signing_plan_respects_tasks_rotation_and_backoff() {
    let mut state = State::default();
    state.apply(SyncEvent::EntryUpsert(entry("free", None)));
    state.apply(SyncEvent::EntryUpsert(entry("bound", Some("t1"))));
    // Unknown task: not signed.
    let due: Vec<_> = state
        .due_for_signing(t(0))
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(due, vec!["free"]);
    state.apply(SyncEvent::TaskUpdate(TaskView {
        id: "t1".into(),
        state: TaskState::Open,
        deadline: t(100),
    }));
    assert_eq!(state.due_for_signing(t(0)).len(), 2);
    let generation = state.entries["free"].generation;
    state.entries.get_mut("free").unwrap().svid = Some(svid(generation, t(0), 60));
    state.back_off("bound", t(0), Duration::from_secs(30));
    assert!(state.due_for_signing(t(0)).is_empty());
    assert_eq!(state.next_wake(t(0)), Some(t(1)));
    // Half-life of the free entry's SVID.
    assert_eq!(state.due_for_signing(t(31)).len(), 2);
    // Closing the task stops signing and lists it as closed.
    state.apply_at(
        SyncEvent::TaskUpdate(TaskView {
            id: "t1".into(),
            state: TaskState::Closed,
            deadline: t(100),
        }),
        t(2),
    );
    assert!(!state.task_allows(&state.entries["bound"].entry, t(2)));
    let generation = state.entries["bound"].generation;
    state.entries.get_mut("bound").unwrap().svid = Some(svid(generation, t(0), 60));
    assert!(
        state.drop_expired(t(2)),
        "a closed task's SVID goes at once"
    );
    assert!(state.entries["bound"].svid.is_none());
    assert!(state.closed_tasks(t(2)).contains("t1"));
}

#[test]
fn expired_svids_are_dropped() {
    let mut state = State::default();
    state.apply(SyncEvent::EntryUpsert(entry("a", None)));
    let generation = state.entries["a"].generation;
    state.entries.get_mut("a").unwrap().svid = Some(svid(generation, t(0), 10));
    assert!(!state.drop_expired(t(9)));
    assert!(state.drop_expired(t(10)));
    assert!(state.entries["a"].svid.is_none());
}

#[test]
fn removing_a_delegate_entry_drops_its_sub_task_svids() {
    let mut state = State::default();
    state.apply(SyncEvent::EntryUpsert(entry("d/task-1", Some("task-1"))));
    state.apply(SyncEvent::EntryUpsert(entry("d/task-2", Some("task-2"))));
    state.apply(SyncEvent::EntryUpsert(entry("dx/task-3", Some("task-3"))));
    state.dirty = false;
    state.apply(SyncEvent::EntryRemoved("d".into()));
    let left: Vec<&String> = state.entries.keys().collect();
    assert_eq!(left, ["dx/task-3"]);
    assert!(state.dirty);
}

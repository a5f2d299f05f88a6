//! The one test suite every [`Store`] backend passes (DESIGN 4: "the same test suite runs
//! against both"): the server's unit tests run it on sled, and `integration/tests/
//! store_postgres.rs` runs it on sled and on a real PostgreSQL. Each case takes an empty store
//! and panics on the first difference; [`CASES`] lists them for the runners.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::time::{Duration, SystemTime};

use mandate_core::TrustDomain;
use mandate_core::entry::{Entry, EntrySpec, TtlDefaults};
use mandate_core::ids::{EntryId, TaskId};
use mandate_core::task::{Action, Task, TaskSpec};

use super::{
    AgentRecord, AuditChain, AuditDraft, CaJournal, CaSlot, Change, ChangeRecord, IssuedSerial,
    Store, StoredEntry, StoredTask, TokenRecord, WriteBatch, WriteOp, verify_chain,
};

/// One case: its name and the check, run on an empty store.
pub type Case = (&'static str, fn(&dyn Store));

/// Every case of the suite.
pub const CASES: &[Case] = &[
    ("an_empty_store_holds_nothing", an_empty_store_holds_nothing),
    (
        "records_round_trip_and_overwrite",
        records_round_trip_and_overwrite,
    ),
    (
        "the_change_log_replays_after_a_revision",
        the_change_log_replays_after_a_revision,
    ),
    (
        "a_log_that_starts_later_asks_for_a_snapshot",
        a_log_that_starts_later_asks_for_a_snapshot,
    ),
    ("join_tokens_by_hash", join_tokens_by_hash),
    (
        "audit_records_read_whole_and_in_chunks",
        audit_records_read_whole_and_in_chunks,
    ),
    ("serials_are_kept_per_task", serials_are_kept_per_task),
    (
        "the_ca_journal_is_replaced_whole",
        the_ca_journal_is_replaced_whole,
    ),
    (
        "a_batch_applies_all_or_nothing",
        a_batch_applies_all_or_nothing,
    ),
];

fn apply(store: &dyn Store, ops: Vec<WriteOp>) {
    store.apply(&WriteBatch { ops }).unwrap();
    store.sync().unwrap();
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// An entry for workload `name` under agent `a`.
pub fn entry(name: &str, revision: u64) -> StoredEntry {
    let spec = EntrySpec {
        spiffe_id: format!("spiffe://example.org/{name}"),
        parent_id: "spiffe://example.org/mandate/agent/a".into(),
        selectors: vec!["unix:uid:1001".into()],
        ..EntrySpec::default()
    };
    let td = TrustDomain::new("example.org").unwrap();
    let ttl = TtlDefaults {
        x509: Duration::from_secs(3600),
        jwt: Duration::from_secs(300),
    };
    StoredEntry {
        entry: Entry::from_spec(spec, &td, ttl, now()).unwrap(),
        revision,
    }
}

/// An open task `id`.
pub fn task(id: &str, revision: u64) -> StoredTask {
    let spec = TaskSpec {
        id: Some(TaskId::new(id).unwrap()),
        principal: "user:alice@example.org".parse().unwrap(),
        purpose: "store suite".into(),
        actions: vec![Action::new("po.draft").unwrap()],
        value_limit: None,
        deadline: now() + Duration::from_secs(600),
        max_depth: 0,
        require_approval: false,
    };
    StoredTask {
        task: Task::open(spec, now()).unwrap(),
        revision,
        opened_by: Some("uid:0 pid:1".into()),
    }
}

fn agent(id: &str, banned: bool) -> AgentRecord {
    AgentRecord {
        spiffe_id: format!("spiffe://example.org/mandate/agent/{id}"),
        attested_at: 1_700_000_000,
        expires_at: 1_700_003_600,
        banned,
        serial: "0a1b".into(),
    }
}

fn change(revision: u64) -> WriteOp {
    WriteOp::AppendChange(ChangeRecord {
        revision,
        changes: vec![Change::Bundle],
    })
}

fn audit_batch(chain: &mut AuditChain, n: usize) -> Vec<WriteOp> {
    (0..n)
        .map(|i| {
            let draft = AuditDraft {
                kind: "svid.issue",
                detail: format!("record {i}"),
                ..AuditDraft::default()
            };
            WriteOp::AppendAudit(chain.append(draft, 1_700_000_000))
        })
        .collect()
}

fn an_empty_store_holds_nothing(store: &dyn Store) {
    let state = store.load().unwrap();
    assert!(state.entries.is_empty() && state.tasks.is_empty() && state.agents.is_empty());
    assert_eq!((state.revision, state.audit_head), (0, None));
    assert_eq!(store.changes_after(0).unwrap(), Some(Vec::new()));
    assert_eq!(store.token("00").unwrap(), None);
    assert!(store.audit_records().unwrap().is_empty());
    assert!(store.audit_chunk(0, 10).unwrap().is_empty());
    assert!(
        store
            .task_serials(&TaskId::new("task-x").unwrap())
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.ca_journal().unwrap(), None);
}

fn records_round_trip_and_overwrite(store: &dyn Store) {
    let (e1, e2, t1) = (entry("one", 1), entry("two", 1), task("task-one", 1));
    apply(
        store,
        vec![
            WriteOp::PutEntry(e1.clone()),
            WriteOp::PutEntry(e2.clone()),
            WriteOp::PutTask(t1.clone()),
            WriteOp::PutAgent(agent("a", false)),
            change(1),
        ],
    );
    let state = store.load().unwrap();
    let mut want = vec![json(&e1), json(&e2)];
    want.sort_by_key(|v| v["entry"]["id"].as_str().map(str::to_owned));
    assert_eq!(state.entries.iter().map(json).collect::<Vec<_>>(), want);
    assert_eq!(json(&state.tasks), json(&vec![t1.clone()]));
    assert_eq!(state.agents, vec![agent("a", false)]);
    assert_eq!(state.revision, 1);

    // Overwrites and a delete, in batch order (a put then a delete of one entry deletes it).
    let mut closed = t1;
    closed.task.close(Some("done".into()), now()).unwrap();
    closed.revision = 2;
    let e3 = entry("three", 2);
    apply(
        store,
        vec![
            WriteOp::PutEntry(e3.clone()),
            WriteOp::DeleteEntry(e3.entry.id.clone()),
            WriteOp::DeleteEntry(e1.entry.id.clone()),
            WriteOp::DeleteEntry(EntryId::new("never-written").unwrap()),
            WriteOp::PutTask(closed.clone()),
            WriteOp::PutAgent(agent("a", true)),
            change(2),
        ],
    );
    let state = store.load().unwrap();
    assert_eq!(json(&state.entries), json(&vec![e2]));
    assert_eq!(json(&state.tasks), json(&vec![closed]));
    assert_eq!(state.agents, vec![agent("a", true)]);
    assert_eq!(state.revision, 2);
}

fn the_change_log_replays_after_a_revision(store: &dyn Store) {
    apply(store, vec![change(1)]);
    apply(store, vec![change(2), change(3)]);
    let revisions = |after| {
        let records = store.changes_after(after).unwrap().unwrap();
        records.iter().map(|c| c.revision).collect::<Vec<_>>()
    };
    assert_eq!(revisions(0), vec![1, 2, 3]);
    assert_eq!(revisions(1), vec![2, 3]);
    assert_eq!(revisions(3), Vec::<u64>::new());
    let entry_change = Change::Entry {
        id: EntryId::new("e-1").unwrap(),
        parent: "spiffe://example.org/mandate/agent/a".into(),
    };
    let task_change = Change::Task {
        id: TaskId::new("task-1").unwrap(),
    };
    let record = ChangeRecord {
        revision: 4,
        changes: vec![
            entry_change,
            task_change,
            Change::Agent {
                spiffe_id: "x".into(),
            },
        ],
    };
    apply(store, vec![WriteOp::AppendChange(record.clone())]);
    assert_eq!(store.changes_after(3).unwrap(), Some(vec![record]));
    assert_eq!(store.load().unwrap().revision, 4);
}

fn a_log_that_starts_later_asks_for_a_snapshot(store: &dyn Store) {
    apply(store, vec![change(5), change(6)]);
    assert_eq!(store.changes_after(1).unwrap(), None);
    assert_eq!(store.changes_after(4).unwrap().unwrap().len(), 2);
    assert_eq!(store.changes_after(6).unwrap(), Some(Vec::new()));
}

fn join_tokens_by_hash(store: &dyn Store) {
    let fresh = TokenRecord {
        agent_id: Some("spiffe://example.org/mandate/agent/a".into()),
        expires_at: 1_700_000_600,
        used: false,
    };
    let anonymous = TokenRecord {
        agent_id: None,
        expires_at: 1_700_000_900,
        used: false,
    };
    apply(
        store,
        vec![
            WriteOp::PutToken("aa".into(), fresh.clone()),
            WriteOp::PutToken("bb".into(), anonymous.clone()),
        ],
    );
    assert_eq!(store.token("aa").unwrap(), Some(fresh.clone()));
    assert_eq!(store.token("bb").unwrap(), Some(anonymous));
    let used = TokenRecord {
        used: true,
        ..fresh
    };
    apply(store, vec![WriteOp::PutToken("aa".into(), used.clone())]);
    assert_eq!(store.token("aa").unwrap(), Some(used));
    assert_eq!(store.token("cc").unwrap(), None);
    // Expired tokens go, used or not, at most `max` a call; unexpired ones stay.
    assert_eq!(store.prune_tokens(1_700_000_599, 10).unwrap(), 0);
    assert_eq!(store.prune_tokens(1_700_000_600, 10).unwrap(), 1);
    assert_eq!(store.token("aa").unwrap(), None);
    assert!(store.token("bb").unwrap().is_some());
    assert_eq!(store.prune_tokens(i64::MAX, 0).unwrap(), 0);
    assert_eq!(store.prune_tokens(i64::MAX, 10).unwrap(), 1);
    assert_eq!(store.token("bb").unwrap(), None);
}

fn audit_records_read_whole_and_in_chunks(store: &dyn Store) {
    let mut chain = AuditChain::default();
    apply(store, audit_batch(&mut chain, 1));
    apply(store, audit_batch(&mut chain, 250));
    apply(store, audit_batch(&mut chain, 1));
    let records = store.audit_records().unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=252).collect::<Vec<_>>()
    );
    let head = store.load().unwrap().audit_head.unwrap();
    assert_eq!(head, chain.head());
    assert_eq!(verify_chain(&records, &head), Ok(252));
    for (after, max) in [(0, 7), (1, 1), (2, 20), (100, 1000), (251, 5), (252, 5)] {
        let page = store.audit_chunk(after, max).unwrap();
        let want: Vec<u64> = (after + 1..=252).take(max).collect();
        assert_eq!(
            page.iter().map(|r| r.seq).collect::<Vec<_>>(),
            want,
            "after {after}"
        );
        assert_eq!(
            page.as_slice(),
            &records[after as usize..after as usize + want.len()]
        );
    }
}

fn serials_are_kept_per_task(store: &dyn Store) {
    let (a, b) = (
        TaskId::new("task-a").unwrap(),
        TaskId::new("task-b").unwrap(),
    );
    let serial = |s: &str, not_after| IssuedSerial {
        serial: s.into(),
        not_after,
        ca_id: 1,
    };
    apply(
        store,
        vec![
            WriteOp::PutTask(task("task-a", 1)),
            WriteOp::PutTask(task("task-b", 1)),
            WriteOp::PutSerial(a.clone(), serial("02", 10)),
            WriteOp::PutSerial(a.clone(), serial("01", 10)),
            WriteOp::PutSerial(b.clone(), serial("03", 10)),
            // The same serial again in one batch: the last write stands.
            WriteOp::PutSerial(a.clone(), serial("02", 20)),
        ],
    );
    apply(store, vec![WriteOp::PutSerial(b.clone(), serial("03", 30))]);
    assert_eq!(
        store.task_serials(&a).unwrap(),
        vec![serial("01", 10), serial("02", 20)]
    );
    assert_eq!(store.task_serials(&b).unwrap(), vec![serial("03", 30)]);
    // Pruning takes serials at or past their notAfter, at most `max` per call.
    assert_eq!(store.prune_serials(20, 1).unwrap(), 1);
    assert_eq!(store.prune_serials(20, 10).unwrap(), 1);
    assert_eq!(store.prune_serials(20, 10).unwrap(), 0);
    assert!(store.task_serials(&a).unwrap().is_empty());
    assert_eq!(store.task_serials(&b).unwrap(), vec![serial("03", 30)]);
}

fn the_ca_journal_is_replaced_whole(store: &dyn Store) {
    let slot = |id: u64| CaSlot {
        id,
        cert_der: vec![0x30, 0x82, id as u8],
        key_file: format!("ca-{id}.key"),
        jwt_kid: format!("kid-{id}"),
        jwt_key_file: format!("jwt-{id}.key"),
        not_before: 1_700_000_000,
        not_after: 1_700_086_400,
    };
    let two = CaJournal {
        slots: vec![slot(1), slot(2)],
        active: 2,
    };
    apply(store, vec![WriteOp::PutCaJournal(two.clone())]);
    assert_eq!(store.ca_journal().unwrap(), Some(two));
    let one = CaJournal {
        slots: vec![slot(2)],
        active: 2,
    };
    apply(store, vec![WriteOp::PutCaJournal(one.clone())]);
    assert_eq!(store.ca_journal().unwrap(), Some(one));
}

/// A batch whose last op collides with what is stored (an audit seq already taken): a store
/// that refuses it keeps none of the batch; a store that takes it keeps all of it.
fn a_batch_applies_all_or_nothing(store: &dyn Store) {
    let mut chain = AuditChain::default();
    let mut first = audit_batch(&mut chain, 2);
    first.push(change(1));
    apply(store, first);
    let before = store.load().unwrap();
    let mut stale = AuditChain::resume(Some((1, store.audit_records().unwrap()[0].hash.clone())));
    let colliding = stale.append(AuditDraft::default(), 1_700_000_001);
    let batch = WriteBatch {
        ops: vec![
            WriteOp::PutAgent(agent("late", false)),
            WriteOp::PutEntry(entry("late", 2)),
            change(2),
            WriteOp::AppendAudit(colliding),
        ],
    };
    let after = match store.apply(&batch) {
        Ok(()) => (1, 1, 2, None),
        Err(_) => (0, 0, before.revision, before.audit_head),
    };
    let state = store.load().unwrap();
    let seen = (state.agents.len(), state.entries.len(), state.revision);
    assert_eq!(seen, (after.0, after.1, after.2));
    if let Some(head) = after.3 {
        // Refused: the chain head and the change log are as before too.
        assert_eq!(state.audit_head, Some(head));
        assert_eq!(store.changes_after(1).unwrap(), Some(Vec::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::CASES;
    use crate::store::SledStore;

    #[test]
    fn the_suite_passes_on_sled() {
        let dir = tempfile::tempdir().unwrap();
        for (name, case) in CASES {
            let store = SledStore::open(&dir.path().join(name)).unwrap();
            case(&store);
        }
    }
}

//! Sub-task tests on the real store and CA: opening under the rules, the audit of a refusal,
//! the cascade close in one write, a delegator closing only its own sub-tasks, and consent
//! withdrawal.

use std::time::Duration;

use mandate_core::TrustDomain;
use mandate_core::entry::{EntrySpec, TtlDefaults};
use mandate_core::principal::Principal;
use mandate_core::task::{Action, TaskSpec};

use super::*;
use crate::registry::Registry;
use crate::tasks::{ApprovalPolicy, Tasks};
use crate::testing::registry_and_ca;

const PLANNER: &str = "spiffe://example.org/ai/planner";
const SEARCH: &str = "spiffe://example.org/ai/search";

fn root_spec(id: &str, now: SystemTime) -> TaskSpec {
    TaskSpec {
        id: Some(TaskId::new(id).unwrap()),
        principal: "user:alice@example.org".parse::<Principal>().unwrap(),
        purpose: "po 4711".into(),
        actions: vec![
            Action::new("po.draft").unwrap(),
            Action::new("supplier.search").unwrap(),
        ],
        value_limit: Some("500.00:EUR".parse().unwrap()),
        deadline: now + Duration::from_secs(600),
        max_depth: 2,
        require_approval: false,
    }
}

fn request(now: SystemTime) -> SubtaskRequest {
    SubtaskRequest {
        id: None,
        target: SpiffeId::new(SEARCH).unwrap(),
        purpose: "find suppliers".into(),
        actions: vec![Action::new("supplier.search").unwrap()],
        value_limit: Some("50.00:EUR".parse().unwrap()),
        deadline: Some(now + Duration::from_secs(300)),
    }
}

async fn delegate_entry(registry: &Registry, spiffe_id: &str, from: &str, now: SystemTime) {
    let spec = EntrySpec {
        spiffe_id: spiffe_id.into(),
        parent_id: "spiffe://example.org/mandate/agent/b".into(),
        selectors: vec!["unix:uid:1002".into()],
        delegate_from: vec![from.into()],
        ..EntrySpec::default()
    };
    let defaults = TtlDefaults {
        x509: Duration::from_secs(300),
        jwt: Duration::from_secs(300),
    };
    let td = TrustDomain::new("example.org").unwrap();
    crate::entries::create_entry(registry, spec, &td, defaults, "op".into(), now)
        .await
        .unwrap();
}

async fn setup(dir: &std::path::Path) -> (Arc<Registry>, Arc<Tasks>, SystemTime) {
    let (registry, ca) = registry_and_ca(dir, Duration::from_secs(3600)).await;
    let tasks = Tasks::new(Arc::clone(&registry), ca, ApprovalPolicy::default());
    let now = SystemTime::now();
    tasks
        .open(root_spec("root", now), "op".into(), now)
        .await
        .unwrap();
    delegate_entry(&registry, SEARCH, PLANNER, now).await;
    (registry, tasks, now)
}

fn planner() -> SpiffeId {
    SpiffeId::new(PLANNER).unwrap()
}

fn root() -> TaskId {
    TaskId::new("root").unwrap()
}

#[tokio::test]
async fn open_refuse_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tasks, now) = setup(dir.path()).await;
    let sub = tasks
        .open_subtask(&root(), &planner(), request(now), now)
        .await
        .unwrap();
    let lineage = sub.task.lineage.clone().unwrap();
    assert_eq!(lineage.parent_id, root());
    assert_eq!(lineage.depth, 1);
    assert_eq!(registry.read().index.children(&root()).count(), 1);

    let mut wider = request(now);
    wider.actions.push(Action::new("po.draft").unwrap());
    wider.actions.push(Action::new("po.submit").unwrap());
    let refused = tasks.open_subtask(&root(), &planner(), wider, now).await;
    match refused {
        Err(RegistryError::PermissionDenied(m)) => assert!(m.contains("actions"), "{m}"),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let records = registry.store().audit_records().unwrap();
    let deny = records
        .iter()
        .rev()
        .find(|r| r.kind == "task.deny")
        .unwrap();
    assert_eq!(deny.actor, PLANNER);
    assert!(deny.detail.contains("po.submit"), "{}", deny.detail);
    let open = records
        .iter()
        .find(|r| r.kind == "task.open" && r.task_id.as_deref() == Some(sub.task.id.as_str()))
        .unwrap();
    assert_eq!(open.actor, PLANNER, "the delegating SPIFFE ID is the actor");
    assert!(open.detail.contains("parent root"), "{}", open.detail);

    // A closed or pending parent delegates nothing.
    let mut pending = root_spec("pending", now);
    pending.require_approval = true;
    tasks.open(pending, "op".into(), now).await.unwrap();
    let pending_parent = TaskId::new("pending").unwrap();
    let refused = tasks
        .open_subtask(&pending_parent, &planner(), request(now), now)
        .await;
    assert!(
        matches!(&refused, Err(RegistryError::PermissionDenied(m)) if m.contains("pending")),
        "{refused:?}"
    );
    tasks
        .close("pending", None, "op".into(), now)
        .await
        .unwrap();
    let refused = tasks
        .open_subtask(&pending_parent, &planner(), request(now), now)
        .await;
    assert!(
        matches!(&refused, Err(RegistryError::PermissionDenied(m)) if m.contains("closed")),
        "{refused:?}"
    );

    // A target whose delegate_from does not list the delegator.
    let mut other = request(now);
    other.target = SpiffeId::new("spiffe://example.org/ai/fetch").unwrap();
    delegate_entry(&registry, "spiffe://example.org/ai/fetch", SEARCH, now).await;
    let refused = tasks.open_subtask(&root(), &planner(), other, now).await;
    assert!(
        matches!(refused, Err(RegistryError::PermissionDenied(m)) if m.contains("delegate_from"))
    );
}

#[tokio::test]
async fn cascade_close_is_one_write_and_only_the_delegator_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tasks, now) = setup(dir.path()).await;
    let mut subs = Vec::new();
    for _ in 0..200 {
        let sub = tasks
            .open_subtask(&root(), &planner(), request(now), now)
            .await
            .unwrap();
        subs.push(sub.task.id);
    }
    // Someone else may not close the planner's sub-task.
    let search = SpiffeId::new(SEARCH).unwrap();
    let refused = tasks.close_subtask(&subs[0], &search, None, now).await;
    assert!(matches!(refused, Err(RegistryError::PermissionDenied(_))));
    let closed = tasks
        .close_subtask(&subs[0], &planner(), Some("done".into()), now)
        .await
        .unwrap();
    assert_eq!(closed.task.state, TaskState::Closed);

    let before = registry.read().revision;
    tasks
        .close("root", Some("done".into()), "op".into(), now)
        .await
        .unwrap();
    let state = registry.read();
    assert_eq!(
        state.revision,
        before + 1,
        "the whole subtree ends in one write"
    );
    for id in &subs {
        assert_eq!(state.index.task(id).unwrap().task.state, TaskState::Closed);
    }
}

#[tokio::test]
async fn consent_withdrawal_closes_every_task_of_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tasks, now) = setup(dir.path()).await;
    let sub = tasks
        .open_subtask(&root(), &planner(), request(now), now)
        .await
        .unwrap();
    let mut bob = root_spec("bobs", now);
    bob.principal = "user:bob@example.org".parse().unwrap();
    tasks.open(bob, "op".into(), now).await.unwrap();
    let before = registry.read().revision;
    let closed = tasks
        .close_principal("user:alice@example.org", None, "op".into(), now)
        .await
        .unwrap();
    let mut ids: Vec<_> = closed.iter().map(|t| t.task.id.to_string()).collect();
    ids.sort();
    let mut want = vec!["root".to_owned(), sub.task.id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    let state = registry.read();
    assert_eq!(state.revision, before + 1, "one write");
    let bobs = state.index.task(&TaskId::new("bobs").unwrap()).unwrap();
    assert_eq!(
        bobs.task.state,
        TaskState::Open,
        "another principal's task stays open"
    );
}

//! Task lifecycle tests on the real store and CA.

use std::time::Duration;

use mandate_core::principal::Principal;
use mandate_core::task::Action;

use super::*;
use crate::testing::registry_and_ca;

fn spec(id: &str, deadline: SystemTime, approval: bool) -> TaskSpec {
    TaskSpec {
        id: Some(TaskId::new(id).unwrap()),
        principal: "user:alice@example.org".parse::<Principal>().unwrap(),
        purpose: "po 4711".into(),
        actions: vec![Action::new("po.draft").unwrap()],
        value_limit: Some("500.00:EUR".parse().unwrap()),
        deadline,
        max_depth: 0,
        require_approval: approval,
    }
}

#[tokio::test]
async fn lifecycle_policy_and_id_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, ca) = registry_and_ca(dir.path(), Duration::from_secs(3600)).await;
    let policy = ApprovalPolicy {
        actions: vec![glob::Pattern::new("po.*").unwrap()],
        value_threshold: None,
    };
    let tasks = Tasks::new(Arc::clone(&registry), ca, policy);
    let now = SystemTime::now();
    let deadline = now + Duration::from_secs(600);
    let t = tasks
        .open(spec("t1", deadline, false), "op".into(), now)
        .await
        .unwrap();
    assert_eq!(
        t.task.state,
        TaskState::Pending,
        "policy glob requires approval"
    );
    let t = tasks
        .approve("t1", "bob".into(), "op".into(), now)
        .await
        .unwrap();
    assert_eq!(t.task.state, TaskState::Open);
    assert_eq!(t.task.approval.unwrap().approver, "bob");
    let again = tasks.approve("t1", "bob".into(), "op".into(), now).await;
    assert!(matches!(again, Err(RegistryError::FailedPrecondition(_))));
    let t = tasks
        .close("t1", Some("done".into()), "op".into(), now)
        .await
        .unwrap();
    assert_eq!(t.task.state, TaskState::Closed);
    assert_eq!(t.task.close_reason.as_deref(), Some("done"));
    let reuse = tasks
        .open(spec("t1", deadline, false), "op".into(), now)
        .await;
    assert!(matches!(reuse, Err(RegistryError::AlreadyExists(_))));
    let missing = tasks.close("nope", None, "op".into(), now).await;
    assert!(matches!(missing, Err(RegistryError::NotFound(_))));
}

#[tokio::test]
async fn expiry_fires_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, ca) = registry_and_ca(dir.path(), Duration::from_secs(3600)).await;
    let tasks = Tasks::new(Arc::clone(&registry), ca, ApprovalPolicy::default());
    let now = SystemTime::now();
    let mut events = registry.subscribe();
    tasks
        .open(
            spec("short", now + Duration::from_secs(1), false),
            "op".into(),
            now,
        )
        .await
        .unwrap();
    let id = TaskId::new("short").unwrap();
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let record = events.recv().await.unwrap();
            if record.changes.contains(&Change::Task { id: id.clone() })
                && registry.read().index.task(&id).unwrap().task.state == TaskState::Expired
            {
                return;
            }
        }
    })
    .await;
    assert!(expired.is_ok(), "task did not expire");
    let audit = registry.store().audit_records().unwrap();
    assert!(audit.iter().any(|r| r.kind == "task.expire"));
}

//! The index of ended tasks behind the trust domain's closed set (DESIGN 3.4): a close or an
//! expiry enters it, and a deadline takes it out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::ids::TaskId;
use mandate_core::principal::Principal;
use mandate_core::task::{Action, TaskSpec};

use crate::tasks::{ApprovalPolicy, Tasks};
use crate::testing::registry_and_ca;

fn spec(id: &str, deadline: SystemTime) -> TaskSpec {
    TaskSpec {
        id: Some(TaskId::new(id).unwrap()),
        principal: "user:alice@example.org".parse::<Principal>().unwrap(),
        purpose: "po 4711".into(),
        actions: vec![Action::new("po.read").unwrap()],
        value_limit: None,
        deadline,
        max_depth: 0,
        require_approval: false,
    }
}

fn listed(registry: &super::Registry, now: SystemTime) -> Vec<String> {
    let state = registry.read();
    state
        .index
        .ended_tasks(now)
        .map(|(_, id)| id.to_string())
        .collect()
}

#[tokio::test]
async fn closed_tasks_are_listed_until_their_deadline_earliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, ca) = registry_and_ca(dir.path(), Duration::from_secs(3600)).await;
    let tasks = Tasks::new(Arc::clone(&registry), ca, ApprovalPolicy::default());
    let now = SystemTime::now();
    let (soon, later) = (
        now + Duration::from_secs(60),
        now + Duration::from_secs(600),
    );
    for (id, deadline) in [("late", later), ("soon", soon), ("open", later)] {
        tasks
            .open(spec(id, deadline), "op".into(), now)
            .await
            .unwrap();
    }
    assert!(
        listed(&registry, now).is_empty(),
        "open tasks are not listed"
    );
    for id in ["late", "soon"] {
        tasks.close(id, None, "op".into(), now).await.unwrap();
    }
    assert_eq!(listed(&registry, now), ["soon", "late"]);
    assert_eq!(
        listed(&registry, soon),
        ["late"],
        "a deadline takes a task out"
    );
    assert!(listed(&registry, later).is_empty());
}

//! Table-driven tests of the narrowing rules: one case per rule of DESIGN 3.8, plus the
//! shape of the sub-task and its delegation.

use super::*;
use crate::delegation::Delegation;
use crate::task::Approval;
use crate::task::tests::t;

fn id(text: &str) -> SpiffeId {
    SpiffeId::new(text).expect("valid SPIFFE ID")
}

fn action(a: &str) -> Action {
    Action::new(a).expect("valid action")
}

/// The root: alice's task, po.draft + po.read + supplier.search, 500.00 EUR, deadline 2000,
/// max depth 2.
fn root() -> Task {
    let mut task = Task::open(crate::task::tests::spec(false), t(1_000)).expect("valid");
    task.actions = vec![
        action("po.draft"),
        action("po.read"),
        action("supplier.search"),
    ];
    task.max_depth = 2;
    task
}

fn planner() -> SpiffeId {
    id("spiffe://example.org/ai/planner")
}

fn search() -> SpiffeId {
    id("spiffe://example.org/ai/search")
}

fn request() -> SubtaskRequest {
    SubtaskRequest {
        id: None,
        target: search(),
        purpose: "find suppliers".into(),
        actions: vec![action("supplier.search")],
        value_limit: Some("50.00:EUR".parse().expect("valid")),
        deadline: Some(t(1_500)),
    }
}

fn open(parent: &Task, req: SubtaskRequest, now: u64) -> Result<Task, SubtaskRefusal> {
    let allowed = [planner()];
    open_subtask(parent, &planner(), &[&allowed[..]], req, t(now))
}

#[test]
fn each_rule_refuses_with_its_own_refusal() {
    type Case = (
        &'static str,
        fn(&mut Task, &mut SubtaskRequest),
        fn(&SubtaskRefusal) -> bool,
    );
    let cases: &[Case] = &[
        (
            "closed parent",
            |p, _| p.state = TaskState::Closed,
            |r| {
                matches!(
                    r,
                    SubtaskRefusal::ParentNotOpen {
                        state: TaskState::Closed,
                        ..
                    }
                )
            },
        ),
        (
            "pending parent",
            |p, _| p.state = TaskState::Pending,
            |r| {
                matches!(
                    r,
                    SubtaskRefusal::ParentNotOpen {
                        state: TaskState::Pending,
                        ..
                    }
                )
            },
        ),
        (
            "expired parent",
            |p, _| p.deadline = t(1_100),
            |r| {
                matches!(
                    r,
                    SubtaskRefusal::ParentNotOpen {
                        state: TaskState::Expired,
                        ..
                    }
                )
            },
        ),
        (
            "depth exhausted",
            |p, _| p.max_depth = 0,
            |r| {
                matches!(
                    r,
                    SubtaskRefusal::DepthExhausted {
                        depth: 1,
                        max_depth: 0
                    }
                )
            },
        ),
        (
            "chain at 8",
            |p, _| {
                p.max_depth = 255;
                p.lineage = Some(lineage(8));
            },
            |r| matches!(r, SubtaskRefusal::ChainTooLong(9)),
        ),
        (
            "wider actions",
            |_, q| q.actions.push(action("po.submit")),
            |r| matches!(r, SubtaskRefusal::ActionNotHeld(a) if a == "po.submit"),
        ),
        (
            "other currency",
            |_, q| q.value_limit = Some("10.00:USD".parse().expect("valid")),
            |r| matches!(r, SubtaskRefusal::CurrencyMismatch { .. }),
        ),
        (
            "higher limit",
            |_, q| q.value_limit = Some("500.01:EUR".parse().expect("valid")),
            |r| {
                matches!(
                    r,
                    SubtaskRefusal::LimitAbove {
                        asked: 50_001,
                        held: 50_000
                    }
                )
            },
        ),
        (
            "later deadline",
            |_, q| q.deadline = Some(t(2_001)),
            |r| matches!(r, SubtaskRefusal::DeadlineLater),
        ),
        (
            "past deadline",
            |_, q| q.deadline = Some(t(1_000)),
            |r| matches!(r, SubtaskRefusal::Invalid(TaskError::DeadlineNotInFuture)),
        ),
        (
            "no action",
            |_, q| q.actions.clear(),
            |r| matches!(r, SubtaskRefusal::Invalid(TaskError::ActionCount(0))),
        ),
        (
            "not a delegate entry",
            |_, q| q.target = id("spiffe://example.org/ai/other"),
            |r| matches!(r, SubtaskRefusal::NotDelegateEntry(_)),
        ),
    ];
    for (name, change, expected) in cases {
        let mut parent = root();
        let mut req = request();
        change(&mut parent, &mut req);
        let allowed = [planner()];
        let targets: Vec<&[SpiffeId]> = if req.target == search() {
            vec![&allowed[..]]
        } else {
            Vec::new()
        };
        let got = open_subtask(&parent, &planner(), &targets, req, t(1_200));
        match got {
            Err(refusal) => assert!(expected(&refusal), "{name}: wrong refusal {refusal:?}"),
            Ok(task) => panic!("{name}: accepted {task:?}"),
        }
    }
}

#[test]
fn target_must_list_the_delegator() {
    let other = [id("spiffe://example.org/ai/someone-else")];
    let got = open_subtask(&root(), &planner(), &[&other[..]], request(), t(1_200));
    assert!(
        matches!(got, Err(SubtaskRefusal::DelegatorNotListed { .. })),
        "{got:?}"
    );
    // One of several delegate entries with that SPIFFE ID listing the delegator suffices.
    let mine = [planner()];
    assert!(
        open_subtask(
            &root(),
            &planner(),
            &[&other[..], &mine[..]],
            request(),
            t(1_200)
        )
        .is_ok()
    );
}

#[test]
fn limits_narrow_and_default_to_the_delegators() {
    // No limit asked: the delegator's; a delegator with a limit never yields none.
    let mut req = request();
    req.value_limit = None;
    let sub = open(&root(), req, 1_200).expect("opens");
    assert_eq!(sub.value_limit, root().value_limit);
    // Equal amount is allowed, and a delegator without a limit may grant one.
    let mut req = request();
    req.value_limit = Some("500.00:EUR".parse().expect("valid"));
    assert!(open(&root(), req, 1_200).is_ok());
    let mut parent = root();
    parent.value_limit = None;
    assert_eq!(
        open(&parent, request(), 1_200).expect("opens").value_limit,
        request().value_limit
    );
    // No deadline asked: the delegator's; an earlier or equal one is fine.
    let mut req = request();
    req.deadline = None;
    assert_eq!(open(&root(), req, 1_200).expect("opens").deadline, t(2_000));
}

#[test]
fn subtask_carries_the_chain_and_depth() {
    let mut parent = root();
    parent.approval = Some(Approval {
        approver: "bob".into(),
        approved_at: t(1_050),
    });
    let sub = open(&parent, request(), 1_200).expect("opens");
    assert_eq!(sub.state, TaskState::Open);
    assert_eq!(sub.principal, parent.principal);
    assert_eq!(sub.approval, parent.approval);
    assert_eq!(sub.max_depth, 2);
    let lineage = sub.lineage.clone().expect("a sub-task has a lineage");
    assert_eq!(lineage.parent_id, parent.id);
    assert_eq!(lineage.depth, 1);
    assert_eq!(lineage.delegator, planner().to_string());
    assert_eq!(lineage.delegate, search().to_string());
    assert_eq!(
        lineage.chain,
        vec![Link {
            principal: parent.principal.clone(),
            task_id: parent.id.clone(),
            actor: planner().to_string(),
        }]
    );
    // The search agent delegates on: depth 2, two links, oldest first.
    let fetch = id("spiffe://example.org/ai/fetch");
    let allowed = [search()];
    let req = SubtaskRequest {
        target: fetch.clone(),
        actions: vec![action("supplier.search")],
        value_limit: Some("5.00:EUR".parse().expect("valid")),
        ..request()
    };
    let grand = open_subtask(&sub, &search(), &[&allowed[..]], req.clone(), t(1_300))
        .expect("depth 2 is within max depth 2");
    let delegation = Delegation::for_task(&grand);
    assert_eq!(delegation.task.depth, 2);
    assert_eq!(delegation.chain.len(), 2);
    assert_eq!(delegation.chain[0].task_id, parent.id);
    assert_eq!(delegation.chain[1].task_id, sub.id);
    assert_eq!(delegation.chain[1].actor, search().to_string());
    assert!(delegation.to_der().is_ok());
    // Depth 3 is beyond max depth 2.
    let allowed = [fetch.clone()];
    let again = open_subtask(&grand, &fetch, &[&allowed[..]], req, t(1_300));
    assert!(matches!(
        again,
        Err(SubtaskRefusal::DepthExhausted { depth: 3, .. })
    ));
}

#[test]
fn lineage_survives_serde() {
    let sub = open(&root(), request(), 1_200).expect("opens");
    let json = serde_json::to_string(&sub).expect("serialize");
    assert_eq!(
        serde_json::from_str::<Task>(&json).expect("deserialize"),
        sub
    );
    // A root task stored before sub-delegation existed still loads.
    let root_json = serde_json::to_value(root()).expect("serialize");
    assert!(root_json.get("lineage").is_none());
}

fn lineage(links: usize) -> Lineage {
    let link = Link {
        principal: "user:alice@example.org".parse().expect("valid"),
        task_id: TaskId::new("task-x").expect("valid"),
        actor: "spiffe://example.org/ai/x".into(),
    };
    Lineage {
        parent_id: TaskId::new("task-x").expect("valid"),
        depth: u8::try_from(links).expect("small"),
        chain: vec![link; links],
        delegator: "spiffe://example.org/ai/x".into(),
        delegate: planner().to_string(),
    }
}

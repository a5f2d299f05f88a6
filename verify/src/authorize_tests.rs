//! Tests of per-request authorization: every rule refuses with its own typed reason.

use std::time::{Duration, SystemTime};

use mandate_core::delegation::Delegation;
use mandate_core::task::ValueLimit;
use tokio::sync::watch;

use super::*;
use crate::status::Snapshot;

fn delegation(deadline: SystemTime) -> Delegation {
    crate::test_support::sample_delegation(deadline)
}

fn amount(text: &str) -> ValueLimit {
    text.parse().expect("amount")
}

fn agent_id() -> mandate_core::SpiffeId {
    mandate_core::SpiffeId::new("spiffe://example.org/ai/procurement").expect("id")
}

fn verifier(closed: &[&str], as_of: SystemTime) -> (Verifier, watch::Sender<Option<Snapshot>>) {
    let snapshot = Snapshot {
        closed_task_ids: closed.iter().map(|s| (*s).to_owned()).collect(),
        sequence: 1,
        as_of,
    };
    let (tx, rx) = watch::channel(Some(snapshot));
    let status = TaskStatusWatcher::for_test(rx, Duration::from_secs(15));
    (
        Verifier::new(DelegationPolicy::require_under(["/ai"]), status),
        tx,
    )
}

#[test]
fn grant_rules_refuse_with_their_own_reason() {
    let now = SystemTime::now();
    let d = delegation(now + Duration::from_secs(3600));
    assert_eq!(
        check_grant(&d, "po.draft", Some(&amount("120.00:EUR")), now),
        Ok(())
    );
    assert_eq!(check_grant(&d, "po.read", None, now), Ok(()));
    assert_eq!(
        check_grant(&d, "po.draft", Some(&amount("500.00:EUR")), now),
        Ok(())
    );
    let cases: [(&str, Option<ValueLimit>, &str); 5] = [
        ("po.approve", None, "action_not_granted"),
        ("po.dra", None, "action_not_granted"),
        ("PO.DRAFT", None, "action_not_granted"),
        ("po.draft", Some(amount("500.01:EUR")), "over_value_limit"),
        ("po.draft", Some(amount("10.00:USD")), "currency_mismatch"),
    ];
    for (action, amt, code) in cases {
        let got = check_grant(&d, action, amt.as_ref(), now).expect_err(action);
        assert_eq!(got.code(), code, "{action}");
    }
}

#[test]
fn deadline_and_depth_and_missing_limit() {
    let now = SystemTime::now();
    let expired = delegation(now - Duration::from_secs(1));
    assert_eq!(
        check_grant(&expired, "po.draft", None, now).map_err(|r| r.code()),
        Err("deadline_passed")
    );
    let at_deadline = delegation(now);
    assert_eq!(
        check_grant(&at_deadline, "po.draft", None, now).map_err(|r| r.code()),
        Err("deadline_passed")
    );

    let mut deep = delegation(now + Duration::from_secs(60));
    deep.task.depth = 2;
    deep.task.max_depth = 1;
    assert_eq!(
        check_grant(&deep, "po.draft", None, now),
        Err(Refusal::DepthExceeded {
            depth: 2,
            max_depth: 1
        })
    );
    deep.task.max_depth = 2;
    assert_eq!(check_grant(&deep, "po.draft", None, now), Ok(()));

    let mut unlimited = delegation(now + Duration::from_secs(60));
    unlimited.value_limit = None;
    assert_eq!(check_grant(&unlimited, "po.draft", None, now), Ok(()));
    assert_eq!(
        check_grant(&unlimited, "po.draft", Some(&amount("1.00:EUR")), now).map_err(|r| r.code()),
        Err("no_value_limit")
    );
}

#[tokio::test]
async fn closed_task_is_refused_per_request() {
    let now = SystemTime::now();
    let (verifier, feed) = verifier(&[], now);
    let caller = CallerIdentity::new(
        agent_id(),
        Some(delegation(now + Duration::from_secs(3600))),
    );
    assert!(
        verifier
            .authorize_at(&caller, "po.draft", None, now)
            .is_ok()
    );
    feed.send_replace(Some(Snapshot {
        closed_task_ids: ["task-4711".to_owned()].into_iter().collect(),
        sequence: 2,
        as_of: now,
    }));
    assert_eq!(
        verifier
            .authorize_at(&caller, "po.draft", None, now)
            .map(|_| ()),
        Err(Refusal::TaskClosed {
            task_id: "task-4711".into()
        })
    );
}

#[tokio::test]
async fn stale_or_missing_status_refuses_delegated_callers_only() {
    let now = SystemTime::now();
    let (verifier, feed) = verifier(&[], now - Duration::from_secs(16));
    let delegated = CallerIdentity::new(
        agent_id(),
        Some(delegation(now + Duration::from_secs(3600))),
    );
    let refusal = verifier
        .authorize_at(&delegated, "po.draft", None, now)
        .map(|_| ())
        .expect_err("stale");
    assert_eq!(refusal.code(), "status_stale");

    let service = mandate_core::SpiffeId::new("spiffe://example.org/billing").expect("id");
    let plain = CallerIdentity::new(service, None);
    let allowed = verifier
        .authorize_at(&plain, "po.read", None, now)
        .expect("not delegated");
    assert!(allowed.delegation.is_none());

    feed.send_replace(None);
    let refusal = verifier
        .authorize_at(&delegated, "po.draft", None, now)
        .map(|_| ())
        .expect_err("none");
    assert_eq!(refusal, Refusal::StatusUnavailable);
}

#[tokio::test]
async fn required_delegation_is_enforced_for_hand_built_callers() {
    let now = SystemTime::now();
    let (verifier, _feed) = verifier(&[], now);
    let bare = CallerIdentity::new(agent_id(), None);
    let refusal = verifier
        .authorize_at(&bare, "po.draft", None, now)
        .map(|_| ())
        .expect_err("required");
    assert_eq!(refusal.code(), "delegation_required");
}

#[test]
fn chain_over_eight_links_is_refused_and_the_chain_is_exposed() {
    let now = SystemTime::now();
    let mut chained = delegation(now + Duration::from_secs(60));
    let link = mandate_core::delegation::Link {
        principal: chained.principal.clone(),
        task_id: chained.task.id.clone(),
        actor: "spiffe://example.org/ai/planner".into(),
    };
    chained.task.max_depth = 9;
    chained.task.depth = 8;
    chained.chain = vec![link.clone(); 8];
    assert_eq!(check_grant(&chained, "po.draft", None, now), Ok(()));
    let caller = CallerIdentity::new(
        mandate_core::SpiffeId::new("spiffe://example.org/ai/fetch").expect("valid"),
        Some(chained.clone()),
    );
    assert_eq!(caller.chain().len(), 8);
    assert_eq!(caller.depth(), Some(8));
    chained.task.depth = 9;
    chained.chain.push(link);
    assert_eq!(
        check_grant(&chained, "po.draft", None, now).map_err(|r| r.code()),
        Err("chain_too_long")
    );
}

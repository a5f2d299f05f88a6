//! Tests of the Cedar layer: permits and forbids see the delegation's principal and context.

use std::time::{Duration, SystemTime};

use super::*;

const POLICIES: &str = r#"
permit(principal is User, action == Action::"po.draft", resource == Service::"po")
when { context.task like "task-*" && (!(context has amount) || context.amount.amount_minor <= 30000) };
permit(principal == User::"alice@example.org", action == Action::"po.read", resource);
forbid(principal, action, resource) when { context.depth > 0 };
"#;

fn caller_and_delegation() -> (CallerIdentity, Delegation) {
    let delegation =
        crate::test_support::sample_delegation(SystemTime::now() + Duration::from_secs(60));
    let id = mandate_core::SpiffeId::new("spiffe://example.org/ai/procurement").expect("id");
    (
        CallerIdentity::new(id, Some(delegation.clone())),
        delegation,
    )
}

#[test]
fn permits_and_denies_on_delegation_context() {
    let policy = CedarPolicy::new(POLICIES, "po").expect("policies parse");
    let (caller, delegation) = caller_and_delegation();
    let small: ValueLimit = "120.00:EUR".parse().expect("amount");
    let large: ValueLimit = "400.00:EUR".parse().expect("amount");
    assert_eq!(
        policy.check(&caller, &delegation, "po.draft", Some(&small)),
        Ok(())
    );
    assert_eq!(policy.check(&caller, &delegation, "po.draft", None), Ok(()));
    assert_eq!(policy.check(&caller, &delegation, "po.read", None), Ok(()));
    let refusal = policy
        .check(&caller, &delegation, "po.draft", Some(&large))
        .expect_err("over cedar cap");
    assert_eq!(
        refusal,
        Refusal::PolicyDenied("no permit policy matched".into())
    );
    assert!(
        policy
            .check(&caller, &delegation, "po.approve", None)
            .is_err()
    );

    let mut deep = delegation.clone();
    deep.task.depth = 1;
    deep.task.max_depth = 1;
    let refusal = policy
        .check(&caller, &deep, "po.read", None)
        .expect_err("forbid on depth");
    assert!(refusal.to_string().contains("forbidden by"), "{refusal}");
}

#[test]
fn bad_policy_text_is_an_error() {
    assert!(CedarPolicy::new("permit(principal,", "po").is_err());
}

#[tokio::test]
async fn verifier_applies_cedar_after_the_grant_rules() {
    use crate::status::{Snapshot, TaskStatusWatcher};
    use crate::{DelegationPolicy, Verifier};
    let now = SystemTime::now();
    let snapshot = Snapshot {
        closed_task_ids: Default::default(),
        sequence: 1,
        as_of: now,
    };
    let (_feed, rx) = tokio::sync::watch::channel(Some(snapshot));
    let status = TaskStatusWatcher::for_test(rx, Duration::from_secs(15));
    let verifier = Verifier::new(DelegationPolicy::default(), status)
        .with_cedar(CedarPolicy::new(POLICIES, "po").expect("policies parse"));
    let (caller, _) = caller_and_delegation();
    let small: ValueLimit = "120.00:EUR".parse().expect("amount");
    let large: ValueLimit = "400.00:EUR".parse().expect("amount");
    assert!(
        verifier
            .authorize_at(&caller, "po.draft", Some(&small), now)
            .is_ok()
    );
    // Within the grant's 500.00 EUR but over the Cedar cap of 300.00 EUR.
    let refusal = verifier
        .authorize_at(&caller, "po.draft", Some(&large), now)
        .map(|_| ())
        .expect_err("cedar");
    assert_eq!(refusal.code(), "policy_denied");
    // The grant rules still come first.
    let refusal = verifier
        .authorize_at(&caller, "po.approve", None, now)
        .map(|_| ())
        .expect_err("grant");
    assert_eq!(refusal.code(), "action_not_granted");
}

//! Tests of the delegation codec: DER and claim round trips, the DESIGN 3.3 limits, and
//! robustness against malformed input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::principal::tests::principal_strategy;
use crate::task::Currency;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn sample() -> Delegation {
    Delegation {
        principal: "user:alice@example.org".parse().expect("valid"),
        task: TaskInfo {
            id: TaskId::new("task-1").expect("valid"),
            purpose: "draft purchase orders".into(),
            deadline: t(1_796_126_400),
            depth: 1,
            max_depth: 2,
        },
        actions: vec![
            Action::new("po.draft").expect("valid"),
            Action::new("po.read").expect("valid"),
        ],
        value_limit: Some("500.00:EUR".parse().expect("valid")),
        approval: Some(Approval {
            approver: "bob".into(),
            approved_at: t(1_795_339_800),
        }),
        chain: vec![Link {
            principal: "app:portal".parse().expect("valid"),
            task_id: TaskId::new("task-0").expect("valid"),
            actor: "spiffe://example.org/agents/planner".into(),
        }],
    }
}

/// Byte offset of the first element inside the outer SEQUENCE.
fn body_offset(der: &[u8]) -> usize {
    match der[1] {
        n if n < 0x80 => 2,
        n => 2 + usize::from(n & 0x7f),
    }
}

#[test]
fn oid_is_kept_in_one_place() {
    assert_eq!(DELEGATION_OID_ARCS.to_string(), DELEGATION_OID);
    let components = delegation_oid_components();
    assert_eq!(components.first(), Some(&1));
    assert_eq!(components.last(), Some(&1));
    assert_eq!(components.len(), 15);
    assert_eq!(components[13], 14_707_388);
}

#[test]
fn der_round_trip_and_layout() {
    let d = sample();
    let der = d.to_der().expect("encodes");
    assert_eq!(der[0], 0x30, "outer SEQUENCE");
    let at = body_offset(&der);
    assert_eq!(
        &der[at..at + 3],
        &[0x02, 0x01, 0x01],
        "version INTEGER 1 first"
    );
    // IMPLICIT [0], [1] and [2] on constructed values are context-specific constructed tags.
    for tag in [0xa0_u8, 0xa1, 0xa2] {
        assert!(der.contains(&tag), "tag {tag:#x} present");
    }
    assert_eq!(Delegation::from_der(&der), Ok(d));
}

#[test]
fn optional_fields_are_omitted() {
    let mut d = sample();
    d.value_limit = None;
    d.approval = None;
    d.chain.clear();
    let der = d.to_der().expect("encodes");
    assert!(!der.contains(&0xa0) && !der.contains(&0xa1) && !der.contains(&0xa2));
    assert_eq!(Delegation::from_der(&der), Ok(d.clone()));
    let claim = d.to_claim();
    assert!(claim.get("value_limit").is_none());
    assert!(claim.get("approval").is_none());
    assert!(claim.get("chain").is_none());
}

#[test]
fn times_are_truncated_to_seconds() {
    let mut d = sample();
    d.task.deadline = t(1_000) + Duration::from_millis(999);
    let back = Delegation::from_der(&d.to_der().expect("encodes")).expect("decodes");
    assert_eq!(back.task.deadline, t(1_000));
}

#[test]
fn claim_has_the_documented_shape() {
    let claim = sample().to_claim();
    assert_eq!(
        claim,
        json!({
            "principal": {"kind": "user", "id": "alice@example.org"},
            "task": {"id": "task-1", "purpose": "draft purchase orders",
                     "deadline": 1_796_126_400, "depth": 1, "max_depth": 2},
            "actions": ["po.draft", "po.read"],
            "value_limit": {"amount_minor": 50_000, "currency": "EUR"},
            "approval": {"approver": "bob", "approved_at": 1_795_339_800},
            "chain": [{"principal": {"kind": "application", "id": "portal"},
                       "task_id": "task-0", "actor": "spiffe://example.org/agents/planner"}],
        })
    );
    assert_eq!(Delegation::from_claim(&claim), Ok(sample()));
}

#[test]
fn claim_refusals() {
    let good = sample().to_claim();
    type Change = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "kind app",
            Box::new(|c| c["principal"]["kind"] = json!("app")),
        ),
        ("empty id", Box::new(|c| c["principal"]["id"] = json!(""))),
        (
            "long id",
            Box::new(|c| c["principal"]["id"] = json!("a".repeat(257))),
        ),
        ("depth 256", Box::new(|c| c["task"]["depth"] = json!(256))),
        ("depth > max", Box::new(|c| c["task"]["depth"] = json!(3))),
        (
            "deadline str",
            Box::new(|c| c["task"]["deadline"] = json!("soon")),
        ),
        (
            "currency",
            Box::new(|c| c["value_limit"]["currency"] = json!("eur")),
        ),
        (
            "actions",
            Box::new(|c| {
                c["actions"] = json!((0..65).map(|i| format!("a{i}")).collect::<Vec<_>>())
            }),
        ),
        ("action space", Box::new(|c| c["actions"] = json!(["a b"]))),
        (
            "chain 9",
            Box::new(|c| c["chain"] = json!(vec![c["chain"][0].clone(); 9])),
        ),
        (
            "no task",
            Box::new(|c| {
                c.as_object_mut().map(|o| o.remove("task"));
            }),
        ),
        ("not object", Box::new(|c| *c = json!([1, 2]))),
    ];
    for (name, change) in cases {
        let mut claim = good.clone();
        change(&mut claim);
        assert!(
            Delegation::from_claim(&claim).is_err(),
            "{name} should be refused"
        );
    }
}

#[test]
fn encoding_refuses_what_the_asn1_forbids() {
    let mut d = sample();
    d.actions = (0..65)
        .map(|i| Action::new(format!("a{i}")).expect("valid"))
        .collect();
    assert_eq!(d.to_der(), Err(DelegationError::TooManyActions(65)));
    let mut d = sample();
    d.chain = vec![d.chain[0].clone(); 9];
    assert_eq!(d.to_der(), Err(DelegationError::ChainLength(9)));
    let mut d = sample();
    d.task.purpose = "p".repeat(257);
    assert_eq!(d.to_der(), Err(DelegationError::PurposeTooLong));
    let mut d = sample();
    d.chain[0].actor = "spiffe://example.org/é".into();
    assert_eq!(d.to_der(), Err(DelegationError::ActorNotAscii));
    let mut d = sample();
    d.task.depth = 3;
    assert!(matches!(
        d.to_der(),
        Err(DelegationError::DepthExceedsMax { .. })
    ));
    let mut d = sample();
    d.task.deadline = t(253_402_300_800); // year 10000
    assert_eq!(d.to_der(), Err(DelegationError::TimeOutOfRange));
}

#[test]
fn wrong_version_is_refused() {
    let mut der = sample().to_der().expect("encodes");
    let at = body_offset(&der);
    der[at + 2] = 2;
    assert_eq!(
        Delegation::from_der(&der),
        Err(DelegationError::UnsupportedVersion(2))
    );
    der[at + 2] = 0;
    assert_eq!(
        Delegation::from_der(&der),
        Err(DelegationError::UnsupportedVersion(0))
    );
}

#[test]
fn truncated_and_trailing_input_is_refused() {
    let der = sample().to_der().expect("encodes");
    for len in 0..der.len() {
        assert!(
            matches!(
                Delegation::from_der(&der[..len]),
                Err(DelegationError::Der(_))
            ),
            "prefix of {len} bytes must be refused"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(
        Delegation::from_der(&trailing),
        Err(DelegationError::Der(_))
    ));
}

#[test]
fn oversized_input_is_refused() {
    let big = vec![0_u8; MAX_DER_LEN + 1];
    assert_eq!(Delegation::from_der(&big), Err(DelegationError::TooLarge));
}

#[test]
fn for_task_copies_the_task() {
    let now = t(1_000);
    let task = Task::open(crate::task::tests::spec(false), now).expect("valid");
    let d = Delegation::for_task(&task);
    assert_eq!(d.task.id, task.id);
    assert_eq!((d.task.depth, d.task.max_depth), (0, task.max_depth));
    assert_eq!(d.actions, task.actions);
    assert!(d.allows("po.draft"));
    assert!(!d.allows("po.draf"));
    assert!(d.chain.is_empty());
}

fn link_strategy() -> impl Strategy<Value = Link> {
    (principal_strategy(), "[A-Za-z0-9._:-]{1,64}", "[ -~]{0,40}").prop_map(
        |(principal, id, actor)| Link {
            principal,
            task_id: TaskId::new(id).expect("strategy yields valid ids"),
            actor,
        },
    )
}

prop_compose! {
    fn delegation_strategy()(
        principal in principal_strategy(),
        id in "[A-Za-z0-9._:-]{1,64}",
        purpose in "\\PC{0,60}",
        deadline in 0_u64..=253_402_300_799,
        (depth, max_depth) in (0_u8..=255).prop_flat_map(|m| (0..=m, Just(m))),
        actions in proptest::collection::vec("[a-z][a-z0-9._-]{0,20}", 0..=64),
        value_limit in proptest::option::of((any::<i64>(), "[A-Z]{3}")),
        approval in proptest::option::of(("\\PC{0,40}", 0_u64..=253_402_300_799)),
        chain in proptest::collection::vec(link_strategy(), 0..=8),
    ) -> Delegation {
        Delegation {
            principal,
            task: TaskInfo {
                id: TaskId::new(id).expect("valid id"),
                purpose,
                deadline: t(deadline),
                depth,
                max_depth,
            },
            actions: actions.into_iter().map(|a| Action::new(a).expect("valid action")).collect(),
            value_limit: value_limit.map(|(amount_minor, c)| ValueLimit {
                amount_minor,
                currency: c.parse::<Currency>().expect("valid currency"),
            }),
            approval: approval.map(|(approver, at)| Approval { approver, approved_at: t(at) }),
            chain,
        }
    }
}

proptest! {
    #[test]
    fn der_round_trip(d in delegation_strategy()) {
        let der = d.to_der().expect("valid delegations encode");
        prop_assert_eq!(Delegation::from_der(&der), Ok(d));
    }

    #[test]
    fn claim_round_trip(d in delegation_strategy()) {
        let claim = d.to_claim();
        let text = serde_json::to_string(&claim).expect("serialize");
        let back: serde_json::Value = serde_json::from_str(&text).expect("parse");
        prop_assert_eq!(Delegation::from_claim(&back), Ok(d));
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Delegation::from_der(&bytes);
    }

    #[test]
    fn mutated_der_never_panics(d in delegation_strategy(), at in any::<usize>(), byte in any::<u8>()) {
        let mut der = d.to_der().expect("encodes");
        let i = at % der.len();
        der[i] = byte;
        if let Ok(decoded) = Delegation::from_der(&der) {
            // Whatever decodes must satisfy the limits and encode again.
            prop_assert!(decoded.to_der().is_ok());
        }
    }
}

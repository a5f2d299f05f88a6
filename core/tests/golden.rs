//! The golden delegation vectors: fixed delegations whose DER extension values are committed in
//! `tests/data/delegation-golden.der` and `delegation-golden-chain2.der` (and `.hex`) so that
//! other languages can check their codecs against them. Run with
//! `MANDATE_REGENERATE_GOLDEN=1` to rewrite the files.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use mandate_core::delegation::{Delegation, Link, TaskInfo};
use mandate_core::ids::TaskId;
use mandate_core::task::{Action, Approval};

/// The delegation described in `tests/data/README.md`.
fn golden() -> Delegation {
    Delegation {
        principal: "user:alice@example.org".parse().expect("valid principal"),
        task: TaskInfo {
            id: TaskId::new("task-golden-1").expect("valid id"),
            purpose: "draft purchase orders for office supplies".into(),
            // 2026-12-01T12:00:00Z
            deadline: UNIX_EPOCH + Duration::from_secs(1_796_126_400),
            depth: 1,
            max_depth: 2,
        },
        actions: vec![
            Action::new("po.draft").expect("valid action"),
            Action::new("po.submit").expect("valid action"),
        ],
        value_limit: Some("500.00:EUR".parse().expect("valid limit")),
        approval: Some(Approval {
            approver: "bob@example.org".into(),
            // 2026-11-22T09:30:00Z
            approved_at: UNIX_EPOCH + Duration::from_secs(1_795_339_800),
        }),
        chain: vec![Link {
            principal: "app:procurement-portal".parse().expect("valid principal"),
            task_id: TaskId::new("task-parent-0").expect("valid id"),
            actor: "spiffe://example.org/agents/planner".into(),
        }],
    }
}

/// A sub-sub-task (DESIGN 3.8): alice's root task, delegated by the planner to the search
/// agent, then by the search agent to the fetch agent; two links, oldest first.
fn golden_chain2() -> Delegation {
    let alice: mandate_core::principal::Principal =
        "user:alice@example.org".parse().expect("valid principal");
    Delegation {
        principal: alice.clone(),
        task: TaskInfo {
            id: TaskId::new("task-fetch-2").expect("valid id"),
            purpose: "fetch one supplier page".into(),
            // 2026-12-01T11:00:00Z
            deadline: UNIX_EPOCH + Duration::from_secs(1_796_122_800),
            depth: 2,
            max_depth: 3,
        },
        actions: vec![Action::new("supplier.fetch").expect("valid action")],
        value_limit: Some("5.00:EUR".parse().expect("valid limit")),
        approval: None,
        chain: vec![
            Link {
                principal: alice.clone(),
                task_id: TaskId::new("task-root-0").expect("valid id"),
                actor: "spiffe://example.org/ai/planner".into(),
            },
            Link {
                principal: alice,
                task_id: TaskId::new("task-search-1").expect("valid id"),
                actor: "spiffe://example.org/ai/search".into(),
            },
        ],
    }
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

fn hex_lines(der: &[u8]) -> String {
    der.chunks(32).map(|c| hex::encode(c) + "\n").collect()
}

#[test]
fn golden_delegation_der_is_stable() {
    let der = golden().to_der().expect("golden delegation encodes");
    let der_path = data_dir().join("delegation-golden.der");
    let hex_path = data_dir().join("delegation-golden.hex");
    if std::env::var_os("MANDATE_REGENERATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&der_path, &der).expect("write der");
        std::fs::write(&hex_path, hex_lines(&der)).expect("write hex");
    }
    let committed = std::fs::read(&der_path).expect("golden .der is committed");
    assert_eq!(
        der, committed,
        "encoding changed: the golden vector no longer matches"
    );
    let hex_text = std::fs::read_to_string(&hex_path).expect("golden .hex is committed");
    let from_hex = hex::decode(hex_text.split_whitespace().collect::<String>()).expect("hex");
    assert_eq!(from_hex, committed, ".hex and .der disagree");
    assert_eq!(Delegation::from_der(&committed), Ok(golden()));
}

#[test]
fn golden_claim_matches_the_der() {
    let committed = std::fs::read(data_dir().join("delegation-golden.der")).expect("committed");
    let decoded = Delegation::from_der(&committed).expect("decodes");
    let claim = decoded.to_claim();
    assert_eq!(
        claim["task"]["deadline"], 1_796_126_400,
        "claim deadline equals the GeneralizedTime"
    );
    assert_eq!(claim["principal"]["kind"], "user");
    assert_eq!(Delegation::from_claim(&claim), Ok(golden()));
}

#[test]
fn golden_two_link_chain_is_stable() {
    let value = golden_chain2();
    let der = value.to_der().expect("two-link delegation encodes");
    let der_path = data_dir().join("delegation-golden-chain2.der");
    let hex_path = data_dir().join("delegation-golden-chain2.hex");
    if std::env::var_os("MANDATE_REGENERATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&der_path, &der).expect("write der");
        std::fs::write(&hex_path, hex_lines(&der)).expect("write hex");
    }
    let committed = std::fs::read(&der_path).expect("two-link .der is committed");
    assert_eq!(
        der, committed,
        "encoding changed: the two-link vector no longer matches"
    );
    let hex_text = std::fs::read_to_string(&hex_path).expect("two-link .hex is committed");
    let from_hex = hex::decode(hex_text.split_whitespace().collect::<String>()).expect("hex");
    assert_eq!(from_hex, committed, ".hex and .der disagree");
    let decoded = Delegation::from_der(&committed).expect("decodes");
    assert_eq!(decoded, value);
    assert_eq!(decoded.task.depth, 2);
    assert_eq!(decoded.chain.len(), 2);
    assert_eq!(Delegation::from_claim(&decoded.to_claim()), Ok(value));
}

//! Fuzzes the delegation extension's DER decoder (DESIGN 3.3), alone and inside a certificate.
//!
//! Input: the first byte picks a mode. 0: the rest is the extension value as is. Otherwise the
//! rest is a list of (position, byte) edits applied to a valid encoding, so that most inputs
//! reach the deep fields instead of failing at the outer SEQUENCE. Whatever decodes must
//! encode again and decode to the same value, and mirror the same value as a JWT claim.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mandate_core::delegation::{Delegation, Link, TaskInfo, from_certificate};
use mandate_core::ids::TaskId;
use mandate_core::task::{Action, Approval, ValueLimit};

fn valid_der() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let d = Delegation {
            principal: "user:alice@example.org".parse().expect("valid"),
            task: TaskInfo {
                id: TaskId::new("task-4711").expect("valid"),
                purpose: "draft purchase order 4711".into(),
                deadline: t(1_800_000_000),
                depth: 1,
                max_depth: 2,
            },
            actions: vec![
                Action::new("po.draft").expect("valid"),
                Action::new("po.read").expect("valid"),
            ],
            value_limit: Some(ValueLimit {
                amount_minor: 50_000,
                currency: "EUR".parse().expect("valid"),
            }),
            approval: Some(Approval {
                approver: "bob".into(),
                approved_at: t(1_799_990_000),
            }),
            chain: vec![Link {
                principal: "spiffe://example.org/agent/a".parse().expect("valid"),
                task_id: TaskId::new("task-1").expect("valid"),
                actor: "spiffe://example.org/agent/b".into(),
            }],
        };
        d.to_der().expect("the sample encodes")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode == 0 {
        rest.to_vec()
    } else {
        let mut der = valid_der().to_vec();
        for edit in rest.chunks_exact(2) {
            let at = usize::from(edit[0]) % der.len();
            der[at] = edit[1];
        }
        der
    };
    if let Ok(decoded) = Delegation::from_der(&input) {
        let again = decoded.to_der().expect("a decoded delegation encodes");
        // Value equality, not byte equality: the decoder is lenient in two ways that make
        // re-encoding differ from the input (findings F1 and F2 in docs/RELIABILITY.md): a
        // workload principal's trust domain is case-normalized, and the `der` crate skips a
        // context-specific field whose tag number is below the one it expects.
        assert_eq!(Delegation::from_der(&again).as_ref(), Ok(&decoded));
        let claim = decoded.to_claim();
        assert_eq!(Delegation::from_claim(&claim).as_ref(), Ok(&decoded));
    }
    let _ = from_certificate(&input);
});

//! The DER form of the delegation extension, exactly per DESIGN 3.3, derived with the `der`
//! crate (IMPLICIT tags for the optional fields).

use std::time::SystemTime;

use der::asn1::{GeneralizedTime, Ia5String, PrintableString};
use der::{Decode, Encode, Enumerated, Sequence};

use super::{Delegation, DelegationError, Link, TaskInfo, VERSION};
use crate::ids::TaskId;
use crate::principal::{Principal, PrincipalKind};
use crate::task::{Action, Approval, ValueLimit};
use crate::time::truncate_to_seconds;

/// `MandateDelegation ::= SEQUENCE { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct MandateDelegation {
    version: u8,
    principal: PrincipalDer,
    task: TaskInfoDer,
    actions: Vec<String>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    value_limit: Option<ValueLimitDer>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    approval: Option<ApprovalDer>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    chain: Option<Vec<LinkDer>>,
}

/// `kind ENUMERATED { user(0), application(1), workload(2) }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enumerated)]
#[repr(u32)]
enum KindDer {
    User = 0,
    Application = 1,
    Workload = 2,
}

/// `Principal ::= SEQUENCE { kind, id UTF8String }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct PrincipalDer {
    kind: KindDer,
    id: String,
}

/// `TaskInfo ::= SEQUENCE { id, purpose, deadline, depth, maxDepth }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct TaskInfoDer {
    id: String,
    purpose: String,
    deadline: GeneralizedTime,
    depth: u8,
    max_depth: u8,
}

/// `ValueLimit ::= SEQUENCE { amountMinor INTEGER, currency PrintableString (SIZE (3)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct ValueLimitDer {
    amount_minor: i64,
    currency: PrintableString,
}

/// `Approval ::= SEQUENCE { approver UTF8String, approvedAt GeneralizedTime }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct ApprovalDer {
    approver: String,
    approved_at: GeneralizedTime,
}

/// `Link ::= SEQUENCE { principal Principal, taskId UTF8String, actor IA5String }`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct LinkDer {
    principal: PrincipalDer,
    task_id: String,
    actor: Ia5String,
}

/// Encodes a checked delegation as the DER extension value.
pub(super) fn encode(d: &Delegation) -> Result<Vec<u8>, DelegationError> {
    let value = MandateDelegation {
        version: VERSION,
        principal: principal_to_der(&d.principal),
        task: TaskInfoDer {
            id: d.task.id.as_str().to_owned(),
            purpose: d.task.purpose.clone(),
            deadline: time_to_der(d.task.deadline)?,
            depth: d.task.depth,
            max_depth: d.task.max_depth,
        },
        actions: d.actions.iter().map(|a| a.as_str().to_owned()).collect(),
        value_limit: d
            .value_limit
            .map(|v| {
                Ok::<_, DelegationError>(ValueLimitDer {
                    amount_minor: v.amount_minor,
                    currency: PrintableString::new(v.currency.as_str())
                        .map_err(|_| DelegationError::BadCurrency(v.currency.to_string()))?,
                })
            })
            .transpose()?,
        approval: d
            .approval
            .as_ref()
            .map(|a| {
                Ok::<_, DelegationError>(ApprovalDer {
                    approver: a.approver.clone(),
                    approved_at: time_to_der(a.approved_at)?,
                })
            })
            .transpose()?,
        chain: if d.chain.is_empty() {
            None
        } else {
            Some(
                d.chain
                    .iter()
                    .map(|l| {
                        Ok(LinkDer {
                            principal: principal_to_der(&l.principal),
                            task_id: l.task_id.as_str().to_owned(),
                            actor: Ia5String::new(&l.actor)
                                .map_err(|_| DelegationError::ActorNotAscii)?,
                        })
                    })
                    .collect::<Result<_, DelegationError>>()?,
            )
        },
    };
    value
        .to_der()
        .map_err(|e| DelegationError::Der(e.to_string()))
}

/// Decodes the DER extension value into an unchecked delegation (the caller checks it).
pub(super) fn decode(bytes: &[u8]) -> Result<Delegation, DelegationError> {
    let value =
        MandateDelegation::from_der(bytes).map_err(|e| DelegationError::Der(e.to_string()))?;
    if value.version != VERSION {
        return Err(DelegationError::UnsupportedVersion(value.version));
    }
    if value.actions.len() > super::MAX_ACTIONS {
        return Err(DelegationError::TooManyActions(value.actions.len()));
    }
    let chain = match value.chain {
        None => Vec::new(),
        Some(links) if links.is_empty() => return Err(DelegationError::ChainLength(0)),
        Some(links) => links
            .into_iter()
            .map(|l| {
                Ok(Link {
                    principal: principal_from_der(l.principal)?,
                    task_id: TaskId::new(l.task_id).map_err(DelegationError::TaskId)?,
                    actor: l.actor.to_string(),
                })
            })
            .collect::<Result<_, DelegationError>>()?,
    };
    Ok(Delegation {
        principal: principal_from_der(value.principal)?,
        task: TaskInfo {
            id: TaskId::new(value.task.id).map_err(DelegationError::TaskId)?,
            purpose: value.task.purpose,
            deadline: value.task.deadline.to_system_time(),
            depth: value.task.depth,
            max_depth: value.task.max_depth,
        },
        actions: value
            .actions
            .into_iter()
            .map(|a| Action::new(a).map_err(DelegationError::Action))
            .collect::<Result<_, _>>()?,
        value_limit: value
            .value_limit
            .map(|v| {
                let currency = v
                    .currency
                    .to_string()
                    .parse()
                    .map_err(|_| DelegationError::BadCurrency(v.currency.to_string()))?;
                Ok::<_, DelegationError>(ValueLimit {
                    amount_minor: v.amount_minor,
                    currency,
                })
            })
            .transpose()?,
        approval: value.approval.map(|a| Approval {
            approver: a.approver,
            approved_at: a.approved_at.to_system_time(),
        }),
        chain,
    })
}

fn principal_to_der(p: &Principal) -> PrincipalDer {
    PrincipalDer {
        kind: match p.kind() {
            PrincipalKind::User => KindDer::User,
            PrincipalKind::Application => KindDer::Application,
            PrincipalKind::Workload => KindDer::Workload,
        },
        id: p.id().to_owned(),
    }
}

fn principal_from_der(p: PrincipalDer) -> Result<Principal, DelegationError> {
    let kind = match p.kind {
        KindDer::User => PrincipalKind::User,
        KindDer::Application => PrincipalKind::Application,
        KindDer::Workload => PrincipalKind::Workload,
    };
    Principal::new(kind, p.id).map_err(DelegationError::Principal)
}

fn time_to_der(t: SystemTime) -> Result<GeneralizedTime, DelegationError> {
    GeneralizedTime::from_system_time(truncate_to_seconds(t))
        .map_err(|_| DelegationError::TimeOutOfRange)
}

#[cfg(test)]
mod tests {
    //! Inputs the public types cannot express, built at the DER level.
    use super::*;
    use crate::delegation::tests::sample;

    fn raw(d: &Delegation) -> MandateDelegation {
        MandateDelegation::from_der(&encode(d).expect("encodes")).expect("decodes")
    }

    fn decode_modified(
        change: impl FnOnce(&mut MandateDelegation),
    ) -> Result<Delegation, DelegationError> {
        let mut value = raw(&sample());
        change(&mut value);
        Delegation::from_der(&value.to_der().expect("encodes"))
    }

    #[test]
    fn limits_are_enforced_on_decode() {
        let r = decode_modified(|v| v.actions = (0..65).map(|i| format!("a{i}")).collect());
        assert_eq!(r, Err(DelegationError::TooManyActions(65)));
        let r = decode_modified(|v| v.principal.id = "a".repeat(257));
        assert!(matches!(r, Err(DelegationError::Principal(_))), "{r:?}");
        let r = decode_modified(|v| v.principal.id = String::new());
        assert!(matches!(r, Err(DelegationError::Principal(_))), "{r:?}");
        let r = decode_modified(|v| v.task.id = "t".repeat(65));
        assert!(matches!(r, Err(DelegationError::TaskId(_))), "{r:?}");
        let r = decode_modified(|v| v.task.purpose = "p".repeat(257));
        assert_eq!(r, Err(DelegationError::PurposeTooLong));
        let r = decode_modified(|v| v.chain = Some(Vec::new()));
        assert_eq!(r, Err(DelegationError::ChainLength(0)));
        let r = decode_modified(|v| {
            let link = v.chain.as_ref().expect("sample has a chain")[0].clone();
            v.chain = Some(vec![link; 9]);
        });
        assert_eq!(r, Err(DelegationError::ChainLength(9)));
        let r = decode_modified(|v| {
            if let Some(limit) = v.value_limit.as_mut() {
                limit.currency = PrintableString::new("EU").expect("printable");
            }
        });
        assert!(matches!(r, Err(DelegationError::BadCurrency(_))), "{r:?}");
        let r = decode_modified(|v| v.task.depth = 9);
        assert!(
            matches!(r, Err(DelegationError::DepthExceedsMax { .. })),
            "{r:?}"
        );
        let r = decode_modified(|v| v.principal.kind = KindDer::Workload);
        assert!(
            matches!(r, Err(DelegationError::Principal(_))),
            "a user id is no SPIFFE ID"
        );
        let r = decode_modified(|v| v.actions = vec!["a b".into()]);
        assert!(matches!(r, Err(DelegationError::Action(_))), "{r:?}");
    }

    #[test]
    fn a_2049_byte_workload_principal_is_refused() {
        let prefix = "spiffe://example.org/";
        let id = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
        // The length limit of a principal (256 bytes) refuses it before SPIFFE parsing.
        let r = decode_modified(|v| {
            v.principal.kind = KindDer::Workload;
            v.principal.id = id;
        });
        assert!(matches!(r, Err(DelegationError::Principal(_))), "{r:?}");
    }

    #[test]
    fn unknown_enumerated_kind_is_malformed() {
        let mut der = sample().to_der().expect("encodes");
        // The first ENUMERATED (tag 0x0a, length 1) is the principal kind.
        let at = der
            .windows(2)
            .position(|w| w == [0x0a, 0x01])
            .expect("kind present");
        der[at + 2] = 3;
        assert!(matches!(
            Delegation::from_der(&der),
            Err(DelegationError::Der(_))
        ));
    }
}

//! The JWT `delegation` claim: the DER structure mirrored in snake_case JSON, times as unix
//! seconds, optional members omitted when absent (DESIGN 3.3 and 3.7).

use serde::{Deserialize, Serialize};

use super::{Delegation, DelegationError, Link, TaskInfo};
use crate::ids::TaskId;
use crate::principal::{Principal, PrincipalKind};
use crate::task::{Action, Approval, ValueLimit};
use crate::time::{from_unix_seconds, unix_seconds};

#[derive(Serialize, Deserialize)]
struct ClaimJson {
    principal: PrincipalJson,
    task: TaskJson,
    actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_limit: Option<ValueLimitJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chain: Vec<LinkJson>,
}

#[derive(Serialize, Deserialize)]
struct PrincipalJson {
    kind: String,
    id: String,
}

#[derive(Serialize, Deserialize)]
struct TaskJson {
    id: String,
    purpose: String,
    deadline: i64,
    depth: u8,
    max_depth: u8,
}

#[derive(Serialize, Deserialize)]
struct ValueLimitJson {
    amount_minor: i64,
    currency: String,
}

#[derive(Serialize, Deserialize)]
struct ApprovalJson {
    approver: String,
    approved_at: i64,
}

#[derive(Serialize, Deserialize)]
struct LinkJson {
    principal: PrincipalJson,
    task_id: String,
    actor: String,
}

pub(super) fn to_claim(d: &Delegation) -> serde_json::Value {
    let claim = ClaimJson {
        principal: principal_json(&d.principal),
        task: TaskJson {
            id: d.task.id.as_str().to_owned(),
            purpose: d.task.purpose.clone(),
            deadline: unix_seconds(d.task.deadline),
            depth: d.task.depth,
            max_depth: d.task.max_depth,
        },
        actions: d.actions.iter().map(|a| a.as_str().to_owned()).collect(),
        value_limit: d.value_limit.map(|v| ValueLimitJson {
            amount_minor: v.amount_minor,
            currency: v.currency.to_string(),
        }),
        approval: d.approval.as_ref().map(|a| ApprovalJson {
            approver: a.approver.clone(),
            approved_at: unix_seconds(a.approved_at),
        }),
        chain: d
            .chain
            .iter()
            .map(|l| LinkJson {
                principal: principal_json(&l.principal),
                task_id: l.task_id.as_str().to_owned(),
                actor: l.actor.clone(),
            })
            .collect(),
    };
    // Serializing plain structs of strings and integers into a Value cannot fail.
    serde_json::to_value(claim).unwrap_or(serde_json::Value::Null)
}

pub(super) fn from_claim(value: &serde_json::Value) -> Result<Delegation, DelegationError> {
    let claim = ClaimJson::deserialize(value).map_err(|e| DelegationError::Claim(e.to_string()))?;
    if claim.actions.len() > super::MAX_ACTIONS {
        return Err(DelegationError::TooManyActions(claim.actions.len()));
    }
    if claim.chain.len() > super::MAX_CHAIN {
        return Err(DelegationError::ChainLength(claim.chain.len()));
    }
    Ok(Delegation {
        principal: principal_from_json(claim.principal)?,
        task: TaskInfo {
            id: TaskId::new(claim.task.id).map_err(DelegationError::TaskId)?,
            purpose: claim.task.purpose,
            deadline: from_unix_seconds(claim.task.deadline),
            depth: claim.task.depth,
            max_depth: claim.task.max_depth,
        },
        actions: claim
            .actions
            .into_iter()
            .map(|a| Action::new(a).map_err(DelegationError::Action))
            .collect::<Result<_, _>>()?,
        value_limit: claim
            .value_limit
            .map(|v| {
                let currency = v
                    .currency
                    .parse()
                    .map_err(|_| DelegationError::BadCurrency(v.currency.clone()))?;
                Ok::<_, DelegationError>(ValueLimit {
                    amount_minor: v.amount_minor,
                    currency,
                })
            })
            .transpose()?,
        approval: claim.approval.map(|a| Approval {
            approver: a.approver,
            approved_at: from_unix_seconds(a.approved_at),
        }),
        chain: claim
            .chain
            .into_iter()
            .map(|l| {
                Ok(Link {
                    principal: principal_from_json(l.principal)?,
                    task_id: TaskId::new(l.task_id).map_err(DelegationError::TaskId)?,
                    actor: l.actor,
                })
            })
            .collect::<Result<_, DelegationError>>()?,
    })
}

fn principal_json(p: &Principal) -> PrincipalJson {
    PrincipalJson {
        kind: p.kind().as_str().to_owned(),
        id: p.id().to_owned(),
    }
}

fn principal_from_json(p: PrincipalJson) -> Result<Principal, DelegationError> {
    let kind = PrincipalKind::from_name(&p.kind).map_err(DelegationError::Principal)?;
    Principal::new(kind, p.id).map_err(DelegationError::Principal)
}

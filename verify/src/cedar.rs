//! Optional Cedar policies (feature `cedar`): a service states extra rules in Cedar, evaluated
//! per request with the delegation as the request's principal and context.
//!
//! The request is:
//! - principal: `User::"<id>"`, `Application::"<id>"` or `Workload::"<spiffe id>"`, the
//!   delegation's principal (who the agent acts for);
//! - action: `Action::"<action>"`, e.g. `Action::"po.draft"`;
//! - resource: `Service::"<name>"`, the name the service gave [`CedarPolicy::new`];
//! - context: `{agent, task, purpose, deadline, depth, max_depth, actions, approved, approver?,
//!   amount?: {amount_minor, currency}, limit?: {amount_minor, currency}, chain_length}`.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request,
};
use mandate_core::delegation::Delegation;
use mandate_core::principal::PrincipalKind;
use mandate_core::task::ValueLimit;

use crate::caller::CallerIdentity;
use crate::refusal::{Refusal, unix_seconds};

/// Why a Cedar policy set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CedarError {
    /// The policy text does not parse.
    #[error("cedar policies do not parse: {0}")]
    Parse(String),
}

/// A parsed Cedar policy set and the resource name requests are made against.
#[derive(Debug)]
pub struct CedarPolicy {
    policies: PolicySet,
    resource: EntityUid,
    authorizer: Authorizer,
}

impl CedarPolicy {
    /// Parses `policies` (Cedar text); requests use `Service::"<service>"` as their resource.
    ///
    /// Fails when the text does not parse.
    pub fn new(policies: &str, service: &str) -> Result<Self, CedarError> {
        let policies =
            PolicySet::from_str(policies).map_err(|e| CedarError::Parse(e.to_string()))?;
        Ok(Self {
            policies,
            resource: uid("Service", service)?,
            authorizer: Authorizer::new(),
        })
    }

    /// Evaluates one request; Cedar's default is deny, so a request no `permit` matches is refused.
    ///
    /// Fails with `PolicyDenied` naming the deciding policies (or the evaluation error).
    pub fn check(
        &self,
        caller: &CallerIdentity,
        delegation: &Delegation,
        action: &str,
        amount: Option<&ValueLimit>,
    ) -> Result<(), Refusal> {
        let denied = Refusal::PolicyDenied;
        let kind = match delegation.principal.kind() {
            PrincipalKind::User => "User",
            PrincipalKind::Application => "Application",
            _ => "Workload",
        };
        let principal = uid(kind, delegation.principal.id()).map_err(|e| denied(e.to_string()))?;
        let action_uid = uid("Action", action).map_err(|e| denied(e.to_string()))?;
        let context = Context::from_json_value(context_json(caller, delegation, amount), None)
            .map_err(|e| denied(format!("context: {e}")))?;
        let request = Request::new(principal, action_uid, self.resource.clone(), context, None)
            .map_err(|e| denied(format!("request: {e}")))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &Entities::empty());
        match response.decision() {
            Decision::Allow => Ok(()),
            Decision::Deny => {
                let reasons: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(ToString::to_string)
                    .collect();
                let errors: Vec<String> = response
                    .diagnostics()
                    .errors()
                    .map(ToString::to_string)
                    .collect();
                Err(denied(if !errors.is_empty() {
                    format!("evaluation error: {}", errors.join("; "))
                } else if reasons.is_empty() {
                    "no permit policy matched".to_owned()
                } else {
                    format!("forbidden by {}", reasons.join(", "))
                }))
            }
        }
    }
}

/// The request context: everything the delegation says, in Cedar-friendly JSON.
fn context_json(
    caller: &CallerIdentity,
    d: &Delegation,
    amount: Option<&ValueLimit>,
) -> serde_json::Value {
    let money = |v: &ValueLimit| serde_json::json!({"amount_minor": v.amount_minor, "currency": v.currency.to_string()});
    let mut context = serde_json::json!({
        "agent": caller.spiffe_id().to_string(),
        "principal": d.principal.to_string(),
        "task": d.task.id.to_string(),
        "purpose": d.task.purpose,
        "deadline": unix_seconds(d.task.deadline),
        "depth": i64::from(d.task.depth),
        "max_depth": i64::from(d.task.max_depth),
        "actions": d.actions.iter().map(|a| a.as_str().to_owned()).collect::<Vec<_>>(),
        "approved": d.approval.is_some(),
        "chain_length": i64::try_from(d.chain.len()).unwrap_or(i64::MAX),
    });
    if let Some(approval) = &d.approval {
        context["approver"] = approval.approver.clone().into();
    }
    if let Some(amount) = amount {
        context["amount"] = money(amount);
    }
    if let Some(limit) = &d.value_limit {
        context["limit"] = money(limit);
    }
    context
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, CedarError> {
    let name = EntityTypeName::from_str(type_name).map_err(|e| CedarError::Parse(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

#[cfg(test)]
#[path = "cedar_tests.rs"]
mod tests;

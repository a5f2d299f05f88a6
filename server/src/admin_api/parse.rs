//! Admin requests to domain specs (STYLE 5: proto stays at the edge). Malformed input is
//! `InvalidArgument`.

use std::time::{Duration, SystemTime};

use mandate_core::entry::EntrySpec;
use mandate_core::principal::Principal;
use mandate_core::task::{Action, Currency, TaskSpec, ValueLimit};
use mandate_core::time::from_unix_seconds;
use mandate_proto::admin::{CreateEntryRequest, OpenTaskRequest};

use crate::registry::RegistryError;
use crate::tasks::parse_task_id;

/// Deadline of a task opened without one.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);

fn invalid(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::InvalidArgument(format!("invalid {what}: {e}"))
}

/// An entry spec; the core checks every field.
pub(crate) fn entry_spec(req: CreateEntryRequest) -> EntrySpec {
    let ttl = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    EntrySpec {
        spiffe_id: req.spiffe_id,
        parent_id: req.parent_id,
        selectors: req.selectors,
        x509_ttl: ttl(req.x509_ttl_seconds),
        jwt_ttl: ttl(req.jwt_ttl_seconds),
        task_id: (!req.task_id.is_empty()).then_some(req.task_id),
        dns_names: req.dns_names,
        hint: (!req.hint.is_empty()).then_some(req.hint),
        delegate_from: req.delegate_from,
    }
}

/// A task spec from an open request.
///
/// # Errors
/// `InvalidArgument` naming the bad field.
pub(crate) fn task_spec(req: OpenTaskRequest, now: SystemTime) -> Result<TaskSpec, RegistryError> {
    let id = (!req.id.is_empty())
        .then(|| parse_task_id(&req.id))
        .transpose()?;
    let principal: Principal = req.principal.parse().map_err(|e| invalid("principal", e))?;
    let actions = req
        .actions
        .iter()
        .map(|a| a.parse::<Action>().map_err(|e| invalid("action", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let value_limit = req
        .value_limit
        .map(|v| {
            if v.amount_minor < 0 {
                return Err(invalid("value limit", "amount must not be negative"));
            }
            let currency: Currency = v.currency.parse().map_err(|e| invalid("currency", e))?;
            Ok(ValueLimit {
                amount_minor: v.amount_minor,
                currency,
            })
        })
        .transpose()?;
    let deadline = match req.deadline_unix {
        0 => now + DEFAULT_DEADLINE,
        s => from_unix_seconds(s),
    };
    let max_depth = u8::try_from(req.max_depth).map_err(|_| invalid("max depth", "at most 255"))?;
    Ok(TaskSpec {
        id,
        principal,
        purpose: req.purpose,
        actions,
        value_limit,
        deadline,
        max_depth,
        require_approval: req.require_approval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_proto::types;

    fn request() -> OpenTaskRequest {
        OpenTaskRequest {
            principal: "user:alice@example.org".into(),
            purpose: "po".into(),
            actions: vec!["po.draft".into()],
            value_limit: Some(types::ValueLimit {
                amount_minor: 50000,
                currency: "EUR".into(),
            }),
            ..OpenTaskRequest::default()
        }
    }

    #[test]
    fn parses_and_refuses() {
        let now = SystemTime::now();
        let spec = task_spec(request(), now).unwrap();
        assert_eq!(spec.deadline, now + DEFAULT_DEADLINE);
        assert_eq!(spec.value_limit.unwrap().amount_minor, 50000);
        for bad in [
            OpenTaskRequest {
                principal: "bob".into(),
                ..request()
            },
            OpenTaskRequest {
                actions: vec!["a b".into()],
                ..request()
            },
            OpenTaskRequest {
                max_depth: 300,
                ..request()
            },
            OpenTaskRequest {
                id: "a/b".into(),
                ..request()
            },
        ] {
            assert!(matches!(
                task_spec(bad, now),
                Err(RegistryError::InvalidArgument(_))
            ));
        }
    }
}

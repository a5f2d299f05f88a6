//! Conversions from domain types to the shared wire types of `mandate.types.v1`, used by
//! both APIs at their edge (STYLE 5).

use mandate_core::task::TaskState;
use mandate_core::time::unix_seconds;
use mandate_proto::types;

use crate::ca::BundleView;
use crate::registry::RegistryError;
use crate::store::{StoredEntry, StoredTask};

/// An entry on the wire.
pub fn entry(e: &StoredEntry) -> types::Entry {
    let entry = &e.entry;
    types::Entry {
        id: entry.id.to_string(),
        spiffe_id: entry.spiffe_id.to_string(),
        parent_id: entry.parent_id.to_string(),
        selectors: entry.selectors.iter().map(ToString::to_string).collect(),
        x509_ttl_seconds: entry.x509_ttl.as_secs(),
        jwt_ttl_seconds: entry.jwt_ttl.as_secs(),
        task_id: entry
            .task_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        dns_names: entry.dns_names.clone(),
        hint: entry.hint.clone().unwrap_or_default(),
        revision: e.revision,
        created_at_unix: unix_seconds(entry.created_at),
        delegate_from: entry
            .delegate_from
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// The wire enum of a task state.
pub fn task_state(s: TaskState) -> types::TaskState {
    match s {
        TaskState::Pending => types::TaskState::Pending,
        TaskState::Open => types::TaskState::Open,
        TaskState::Closed => types::TaskState::Closed,
        TaskState::Expired => types::TaskState::Expired,
        _ => types::TaskState::Unspecified,
    }
}

/// A task on the wire, its state as of `now` (a passed deadline reads as expired).
pub fn task(t: &StoredTask, now: std::time::SystemTime) -> types::Task {
    let task = &t.task;
    let lineage = task.lineage.as_ref();
    types::Task {
        id: task.id.to_string(),
        principal: task.principal.to_string(),
        purpose: task.purpose.clone(),
        actions: task.actions.iter().map(|a| a.as_str().to_owned()).collect(),
        value_limit: task.value_limit.as_ref().map(|v| types::ValueLimit {
            amount_minor: v.amount_minor,
            currency: v.currency.to_string(),
        }),
        deadline_unix: unix_seconds(task.deadline),
        state: task_state(task.state_at(now)).into(),
        approval: task.approval.as_ref().map(|a| types::Approval {
            approver: a.approver.clone(),
            approved_at_unix: unix_seconds(a.approved_at),
        }),
        max_depth: u32::from(task.max_depth),
        created_at_unix: unix_seconds(task.created_at),
        ended_at_unix: task.ended_at.map(unix_seconds).unwrap_or_default(),
        close_reason: task.close_reason.clone().unwrap_or_default(),
        revision: t.revision,
        parent_id: lineage.map(|l| l.parent_id.to_string()).unwrap_or_default(),
        depth: lineage.map_or(0, |l| u32::from(l.depth)),
        // Filled by the admin API, which has the index at hand.
        children: Vec::new(),
        delegator_id: lineage.map(|l| l.delegator.clone()).unwrap_or_default(),
        delegate_id: lineage.map(|l| l.delegate.clone()).unwrap_or_default(),
    }
}

/// The bundle on the wire.
pub fn bundle(b: &BundleView) -> types::Bundle {
    types::Bundle {
        trust_domain: b.trust_domain.clone(),
        x509_authorities: b.x509_authorities.clone(),
        crls: b.crls.clone(),
        jwks: b.jwks.clone(),
        sequence: b.sequence,
        refresh_hint_seconds: b.refresh_hint_seconds,
    }
}

/// The gRPC status of a registry error: the one mapping both services use.
pub fn status(e: RegistryError) -> tonic::Status {
    match e {
        RegistryError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
        RegistryError::NotFound(m) => tonic::Status::not_found(m),
        RegistryError::AlreadyExists(m) => tonic::Status::already_exists(m),
        RegistryError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
        RegistryError::PermissionDenied(m) => tonic::Status::permission_denied(m),
        RegistryError::Store(e) => {
            tracing::error!(error = %e, "store failure");
            tonic::Status::internal(e.to_string())
        }
        RegistryError::Internal(m) => {
            tracing::error!(error = %m, "internal failure");
            tonic::Status::internal(m)
        }
    }
}

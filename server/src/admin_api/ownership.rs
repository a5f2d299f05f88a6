//! What a task broker may touch over the network (DESIGN 3.9): the tasks it opened itself,
//! and entries bound to one of them whose SPIFFE ID lies under its `allowed_paths`. Each check
//! passes every other caller through; a missing task or entry is left to the handler's own
//! `NotFound` where that tells a broker nothing about another caller's work.

use mandate_core::ids::{EntryId, TaskId};
use mandate_proto::admin::CreateEntryRequest;
use tonic::{Request, Status};

use super::roles::RemoteCaller;
use crate::registry::Registry;
use crate::store::StoredTask;

/// The network caller of `request` when it is held to its own tasks (a task broker).
pub(super) fn broker<T>(request: &Request<T>) -> Option<RemoteCaller> {
    request
        .extensions()
        .get::<RemoteCaller>()
        .filter(|c| c.role.owns_only())
        .cloned()
}

/// Whether `task` was opened by `broker` (always true without a broker).
pub(super) fn owns(broker: Option<&RemoteCaller>, task: &StoredTask) -> bool {
    broker.is_none_or(|b| task.opened_by.as_deref() == Some(b.spiffe_id.as_str()))
}

/// Refuses a broker a task it did not open.
///
/// # Errors
/// `PermissionDenied` naming the task.
pub(super) fn check_task(
    registry: &Registry,
    broker: Option<&RemoteCaller>,
    task_id: &str,
) -> Result<(), Status> {
    let Some(b) = broker else { return Ok(()) };
    let Ok(id) = TaskId::new(task_id) else {
        return Ok(());
    };
    match registry.read().index.task(&id) {
        Some(task) if !owns(broker, task) => Err(not_its_task(b, task_id)),
        _ => Ok(()),
    }
}

/// Refuses a broker an entry outside its paths, without a task, or bound to a task it did
/// not open.
///
/// # Errors
/// `PermissionDenied` with one line saying which rule.
pub(super) fn check_entry_create(
    registry: &Registry,
    broker: Option<&RemoteCaller>,
    request: &CreateEntryRequest,
) -> Result<(), Status> {
    let Some(b) = broker else { return Ok(()) };
    check_path(b, &request.spiffe_id)?;
    if request.task_id.is_empty() {
        return Err(Status::permission_denied(format!(
            "{} may only create entries bound to one of its tasks",
            b.spiffe_id
        )));
    }
    let owned = TaskId::new(&request.task_id)
        .ok()
        .and_then(|id| registry.read().index.task(&id).map(|t| owns(broker, t)));
    if owned != Some(true) {
        return Err(not_its_task(b, &request.task_id));
    }
    Ok(())
}

/// Refuses a broker the deletion of an entry it could not have created.
///
/// # Errors
/// `PermissionDenied` with one line saying which rule.
pub(super) fn check_entry_delete(
    registry: &Registry,
    broker: Option<&RemoteCaller>,
    entry_id: &str,
) -> Result<(), Status> {
    let Some(b) = broker else { return Ok(()) };
    let Ok(id) = EntryId::new(entry_id) else {
        return Ok(());
    };
    let (spiffe_id, owned) = {
        let state = registry.read();
        let Some(entry) = state.index.entry(&id) else {
            return Ok(());
        };
        let owned = entry
            .entry
            .task_id
            .as_ref()
            .and_then(|t| state.index.task(t))
            .is_some_and(|t| owns(broker, t));
        (entry.entry.spiffe_id.to_string(), owned)
    };
    if !owned {
        return Err(Status::permission_denied(format!(
            "entry {entry_id} is not bound to a task {} opened",
            b.spiffe_id
        )));
    }
    check_path(b, &spiffe_id)
}

fn check_path(b: &RemoteCaller, spiffe_id: &str) -> Result<(), Status> {
    let inside =
        mandate_core::ids::parse_spiffe_id(spiffe_id).is_ok_and(|id| b.role.allows_path(&id));
    if inside {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{spiffe_id:?} is not under the allowed_paths of {}",
            b.spiffe_id
        )))
    }
}

fn not_its_task(b: &RemoteCaller, task_id: &str) -> Status {
    Status::permission_denied(format!("task {task_id} was not opened by {}", b.spiffe_id))
}

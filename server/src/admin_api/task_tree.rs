//! The admin API's sub-delegation views and consent withdrawal (DESIGN 3.6-3.8): a task with
//! its children, the subtree of a task, the `task list` filters, and closing every task of
//! a principal.

use std::time::SystemTime;

use mandate_core::principal::Principal;
use mandate_core::task::TaskState;
use mandate_proto::admin as pb;
use mandate_proto::types::Task;
use tonic::Status;

use crate::context::Context;
use crate::registry::Index;
use crate::store::StoredTask;
use crate::tasks::parse_task_id;
use crate::wire;

/// A task on the wire with its direct sub-tasks.
pub(super) fn with_children(index: &Index, task: &StoredTask, now: SystemTime) -> Task {
    let mut wire_task = wire::task(task, now);
    wire_task.children = index
        .children(&task.task.id)
        .map(ToString::to_string)
        .collect();
    wire_task
}

/// `task tree ID`: the task and every sub-task below it, parents before children.
///
/// # Errors
/// `InvalidArgument` for a malformed ID, `NotFound` for an unknown task.
pub(super) fn tree(
    ctx: &Context,
    req: &pb::TaskTreeRequest,
) -> Result<pb::TaskTreeResponse, Status> {
    let id = parse_task_id(&req.id).map_err(wire::status)?;
    let now = SystemTime::now();
    let state = ctx.registry.read();
    if state.index.task(&id).is_none() {
        return Err(Status::not_found(format!("task {id} not found")));
    }
    let tasks = state
        .index
        .subtree(&id)
        .iter()
        .filter_map(|t| state.index.task(t))
        .map(|t| with_children(&state.index, t, now))
        .collect();
    Ok(pb::TaskTreeResponse { tasks })
}

/// The `task list` filters: by principal and by state (as of now).
#[derive(Debug, Default)]
pub(super) struct TaskFilter {
    principal: Option<Principal>,
    state: Option<TaskState>,
}

impl TaskFilter {
    /// Parses the filters of a list request.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed principal or an unknown state.
    pub(super) fn new(req: &pb::ListTasksRequest) -> Result<Self, Status> {
        let principal = (!req.principal.is_empty())
            .then(|| req.principal.parse::<Principal>())
            .transpose()
            .map_err(|e| Status::invalid_argument(format!("invalid principal: {e}")))?;
        let state = (!req.state.is_empty())
            .then(|| req.state.parse::<TaskState>())
            .transpose()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Self { principal, state })
    }

    /// True when `task` passes the filters at `now`.
    pub(super) fn keeps(&self, task: &StoredTask, now: SystemTime) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| *p == task.task.principal)
            && self.state.is_none_or(|s| s == task.task.state_at(now))
    }
}

/// `task close --principal P`: every pending or open task of P and their subtrees.
///
/// # Errors
/// `InvalidArgument` for a malformed principal, or a store failure.
pub(super) async fn close_principal(
    ctx: &Context,
    req: pb::CloseTasksOfPrincipalRequest,
    actor: String,
) -> Result<pb::CloseTasksOfPrincipalResponse, Status> {
    let reason = (!req.reason.is_empty()).then_some(req.reason);
    let closed = ctx
        .tasks
        .close_principal(&req.principal, reason, actor, SystemTime::now())
        .await
        .map_err(wire::status)?;
    let now = SystemTime::now();
    let state = ctx.registry.read();
    let tasks = closed
        .iter()
        .map(|t| with_children(&state.index, t, now))
        .collect();
    Ok(pb::CloseTasksOfPrincipalResponse { tasks })
}

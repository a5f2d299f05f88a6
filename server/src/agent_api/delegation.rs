//! Sub-delegation calls forwarded by agents (DESIGN 3.8): resolves the caller's task-bound
//! SVIDs from the entries the agent attested it for, against the server's own records (the
//! agent is trusted for nothing more), then opens or closes the sub-task.

use std::sync::Arc;
use std::time::SystemTime;

use mandate_core::SpiffeId;
use mandate_core::ids::TaskId;
use mandate_core::task::{Action, SubtaskRequest, ValueLimit};
use mandate_core::time::{from_unix_seconds, unix_seconds};
use mandate_proto::agent::{ForwardedCloseSubtask, ForwardedOpenSubtask};
use mandate_proto::delegation::Subtask;

use super::sign::resolve_entry;
use crate::context::Context;
use crate::registry::{RegistryError, State};
use crate::store::StoredTask;

/// One task-bound SVID the caller holds through its agent: the SPIFFE ID and the task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    spiffe_id: SpiffeId,
    task: TaskId,
}

/// Opens a sub-task for the caller of `agent`.
///
/// # Errors
/// `InvalidArgument` for a malformed request or an ambiguous delegator, `PermissionDenied`
/// when the caller holds no open task-bound SVID for the delegator or a rule of DESIGN 3.8
/// is broken (audited), or a store failure.
pub(super) async fn open(
    ctx: &Arc<Context>,
    agent: &str,
    forwarded: ForwardedOpenSubtask,
    now: SystemTime,
) -> Result<Subtask, RegistryError> {
    let req = forwarded.request.unwrap_or_default();
    let held = held_svids(&ctx.registry.read(), agent, &forwarded.caller_entry_ids);
    let chosen = choose(&held, &req.delegator_id, &req.delegator_task_id)?;
    let target = SpiffeId::new(&req.target_id)
        .map_err(|e| invalid(format!("target_id {:?}: {e}", req.target_id)))?;
    let actions = req
        .actions
        .iter()
        .map(|a| Action::new(a.as_str()).map_err(|e| invalid(format!("actions: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let value_limit = (!req.value_limit.is_empty())
        .then(|| req.value_limit.parse::<ValueLimit>())
        .transpose()
        .map_err(|e| invalid(format!("value_limit: {e}")))?;
    let deadline = (req.deadline_unix != 0).then(|| from_unix_seconds(req.deadline_unix));
    let request = SubtaskRequest {
        id: None,
        target,
        purpose: req.purpose,
        actions,
        value_limit,
        deadline,
    };
    let task = ctx
        .tasks
        .open_subtask(&chosen.task, &chosen.spiffe_id, request, now)
        .await?;
    Ok(subtask(&task))
}

/// Closes a sub-task the caller of `agent` opened.
///
/// # Errors
/// `InvalidArgument` for a malformed request or an ambiguous delegator, `PermissionDenied`
/// when the caller did not open it (audited), `NotFound`, `FailedPrecondition` for a task
/// already ended, or a store failure.
pub(super) async fn close(
    ctx: &Arc<Context>,
    agent: &str,
    forwarded: ForwardedCloseSubtask,
    now: SystemTime,
) -> Result<Subtask, RegistryError> {
    let req = forwarded.request.unwrap_or_default();
    let task_id = TaskId::new(&req.task_id)
        .map_err(|e| invalid(format!("task_id {:?}: {e}", req.task_id)))?;
    let held = held_svids(&ctx.registry.read(), agent, &forwarded.caller_entry_ids);
    let mut ids: Vec<&SpiffeId> = held.iter().map(|h| &h.spiffe_id).collect();
    ids.sort_by_key(|id| id.to_string());
    ids.dedup();
    let delegator = if req.delegator_id.is_empty() {
        match ids.as_slice() {
            [only] => (*only).clone(),
            [] => return Err(no_svid("")),
            many => {
                return Err(invalid(format!(
                    "the caller holds SVIDs for several SPIFFE IDs; name one with delegator_id: {}",
                    join(many.iter().map(ToString::to_string))
                )));
            }
        }
    } else {
        let wanted = SpiffeId::new(&req.delegator_id)
            .map_err(|e| invalid(format!("delegator_id {:?}: {e}", req.delegator_id)))?;
        if !ids.contains(&&wanted) {
            return Err(no_svid(&req.delegator_id));
        }
        wanted
    };
    let reason = (!req.reason.is_empty()).then_some(req.reason);
    let task = ctx
        .tasks
        .close_subtask(&task_id, &delegator, reason, now)
        .await?;
    Ok(subtask(&task))
}

/// The task-bound SVIDs `entry_ids` give the caller, from the server's records: entries the
/// agent does not parent, unknown entries and entries without a task are ignored.
fn held_svids(state: &State, agent: &str, entry_ids: &[String]) -> Vec<Held> {
    let agent_id = SpiffeId::new(agent).ok();
    let mut held: Vec<Held> = entry_ids
        .iter()
        .filter_map(|id| resolve_entry(state, id))
        .filter(|(entry, _)| agent_id.as_ref() == Some(&entry.entry.parent_id))
        .filter_map(|(entry, task)| {
            Some(Held {
                spiffe_id: entry.entry.spiffe_id.clone(),
                task: task?.task.id.clone(),
            })
        })
        .collect();
    held.sort_by(|a, b| {
        (a.spiffe_id.to_string(), &a.task).cmp(&(b.spiffe_id.to_string(), &b.task))
    });
    held.dedup();
    held
}

/// Picks the delegating SVID (DESIGN 3.8): by `delegator_id` and `delegator_task_id` when
/// given, else the caller's only one.
fn choose(held: &[Held], delegator_id: &str, task_id: &str) -> Result<Held, RegistryError> {
    let by_id: Vec<&Held> = if delegator_id.is_empty() {
        held.iter().collect()
    } else {
        let wanted = SpiffeId::new(delegator_id)
            .map_err(|e| invalid(format!("delegator_id {delegator_id:?}: {e}")))?;
        held.iter().filter(|h| h.spiffe_id == wanted).collect()
    };
    let chosen: Vec<&Held> = if task_id.is_empty() {
        by_id
    } else {
        by_id
            .into_iter()
            .filter(|h| h.task.as_str() == task_id)
            .collect()
    };
    match chosen.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err(no_svid(delegator_id)),
        many => Err(invalid(format!(
            "the caller holds several task-bound SVIDs{}; name one with delegator_task_id: {}",
            if delegator_id.is_empty() {
                String::new()
            } else {
                format!(" for {delegator_id}")
            },
            join(many.iter().map(|h| h.task.to_string()))
        ))),
    }
}

fn subtask(task: &StoredTask) -> Subtask {
    let lineage = task.task.lineage.as_ref();
    Subtask {
        task_id: task.task.id.to_string(),
        parent_id: lineage.map(|l| l.parent_id.to_string()).unwrap_or_default(),
        deadline_unix: unix_seconds(task.task.deadline),
        depth: lineage.map_or(0, |l| u32::from(l.depth)),
    }
}

fn no_svid(delegator_id: &str) -> RegistryError {
    let whose = if delegator_id.is_empty() {
        String::new()
    } else {
        format!(" for {delegator_id}")
    };
    RegistryError::PermissionDenied(format!(
        "delegator: the caller holds no task-bound SVID{whose} through this agent"
    ))
}

fn invalid(message: String) -> RegistryError {
    RegistryError::InvalidArgument(message)
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, task: &str) -> Held {
        Held {
            spiffe_id: SpiffeId::new(id).unwrap(),
            task: TaskId::new(task).unwrap(),
        }
    }

    #[test]
    fn the_delegator_is_chosen_or_the_choice_is_listed() {
        const SEARCH: &str = "spiffe://example.org/ai/search";
        const PLANNER: &str = "spiffe://example.org/ai/planner";
        let all = [
            held(SEARCH, "task-a"),
            held(SEARCH, "task-b"),
            held(PLANNER, "task-p"),
        ];
        // Several task-bound SVIDs and none named: InvalidArgument listing the tasks.
        match choose(&all, SEARCH, "") {
            Err(RegistryError::InvalidArgument(m)) => {
                assert!(m.contains("task-a") && m.contains("task-b"), "{m}");
                assert!(!m.contains("task-p"), "only the tasks of {SEARCH}: {m}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        assert!(matches!(
            choose(&all, "", ""),
            Err(RegistryError::InvalidArgument(_))
        ));
        assert_eq!(choose(&all, SEARCH, "task-b").unwrap(), all[1]);
        assert_eq!(choose(&all, PLANNER, "").unwrap(), all[2]);
        assert_eq!(choose(&all[2..], "", "").unwrap(), all[2]);
        // None held for that ID, or that task: PermissionDenied.
        assert!(matches!(
            choose(&all, "spiffe://example.org/ai/other", ""),
            Err(RegistryError::PermissionDenied(_))
        ));
        assert!(matches!(
            choose(&all, SEARCH, "task-p"),
            Err(RegistryError::PermissionDenied(_))
        ));
        assert!(matches!(
            choose(&all, "not a spiffe id", ""),
            Err(RegistryError::InvalidArgument(_))
        ));
    }
}

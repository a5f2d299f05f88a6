//! Sub-tasks (DESIGN 3.8): opening one under the narrowing rules of `mandate_core::task`,
//! closing one by its delegator, the cascade that ends a whole subtree in the same write as
//! its root, and closing every task of a principal (consent withdrawn) in one write.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use mandate_core::SpiffeId;
use mandate_core::ids::TaskId;
use mandate_core::principal::Principal;
use mandate_core::task::{SubtaskRefusal, SubtaskRequest, Task, TaskState, open_subtask};
use mandate_core::time::unix_seconds;

use super::{Tasks, task_plan};
use crate::registry::{Plan, RegistryError, State};
use crate::store::{AuditDraft, IssuedSerial, StoredTask};

impl Tasks {
    /// Opens a sub-task of `parent` for `delegator` (a SPIFFE ID the caller holds an SVID of,
    /// bound to `parent`, as the agent API resolved it from the server's own records).
    ///
    /// # Errors
    /// `PermissionDenied` naming the rule a refused sub-task breaks (audited as `task.deny`),
    /// `InvalidArgument` for a malformed request, `NotFound` for a parent that is gone, or a
    /// store failure.
    pub async fn open_subtask(
        self: &Arc<Self>,
        parent: &TaskId,
        delegator: &SpiffeId,
        request: SubtaskRequest,
        now: SystemTime,
    ) -> Result<StoredTask, RegistryError> {
        let target = request.target.to_string();
        let mut refused: Option<SubtaskRefusal> = None;
        let written = self
            .registry
            .write(now, |state| {
                let stored = state.index.task(parent).ok_or_else(|| {
                    RegistryError::NotFound(format!("parent task {parent} not found"))
                })?;
                let lists: Vec<&[SpiffeId]> = state
                    .index
                    .delegate_entries(&target)
                    .map(|e| &e.entry.delegate_from[..])
                    .collect();
                let task = match open_subtask(&stored.task, delegator, &lists, request, now) {
                    Ok(task) => task,
                    Err(refusal) => {
                        let message = refusal.to_string();
                        let invalid = refusal.is_invalid_request();
                        refused = Some(refusal);
                        return Err(if invalid {
                            RegistryError::InvalidArgument(format!("sub-task refused: {message}"))
                        } else {
                            RegistryError::PermissionDenied(format!("sub-task refused: {message}"))
                        });
                    }
                };
                if state.index.task(&task.id).is_some() {
                    return Err(RegistryError::AlreadyExists(format!(
                        "task {} already exists (task IDs are never reused)",
                        task.id
                    )));
                }
                let detail = format!(
                    "parent {parent} delegate {target} depth {} actions {} deadline {}",
                    task.lineage.as_ref().map_or(0, |l| l.depth),
                    task.actions
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    unix_seconds(task.deadline)
                );
                let id = task.id.clone();
                let deadline = task.deadline;
                let actor = delegator.to_string();
                let plan = task_plan(task, Some(actor.clone()), "task.open", actor, detail, false);
                Ok((plan, (id, deadline)))
            })
            .await;
        match written {
            Ok((id, deadline)) => {
                self.arm(id.clone(), deadline);
                self.current(&id)
            }
            Err(e) => {
                if let Some(refusal) = refused {
                    self.audit_denial(parent, delegator, &target, &refusal, now)
                        .await?;
                }
                Err(e)
            }
        }
    }

    async fn audit_denial(
        &self,
        parent: &TaskId,
        delegator: &SpiffeId,
        target: &str,
        refusal: &SubtaskRefusal,
        now: SystemTime,
    ) -> Result<(), RegistryError> {
        let draft = AuditDraft {
            kind: "task.deny",
            actor: delegator.to_string(),
            task_id: Some(parent.to_string()),
            spiffe_id: Some(target.to_owned()),
            detail: format!("sub-task refused: {refusal}"),
            ..AuditDraft::default()
        };
        self.registry.audit(now, vec![draft]).await
    }

    /// Closes sub-task `id` for `delegator`, which must be the SPIFFE ID that opened it; its
    /// subtree closes with it.
    ///
    /// # Errors
    /// `PermissionDenied` when `delegator` did not open it (audited as `task.deny`),
    /// `NotFound`, `FailedPrecondition` for a task already ended, or a store failure.
    pub async fn close_subtask(
        &self,
        id: &TaskId,
        delegator: &SpiffeId,
        reason: Option<String>,
        now: SystemTime,
    ) -> Result<StoredTask, RegistryError> {
        let opener = {
            let state = self.registry.read();
            let task = state
                .index
                .task(id)
                .ok_or_else(|| RegistryError::NotFound(format!("task {id} not found")))?;
            task.task.lineage.as_ref().map(|l| l.delegator.clone())
        };
        if opener.as_deref() != Some(delegator.to_string().as_str()) {
            let draft = AuditDraft {
                kind: "task.deny",
                actor: delegator.to_string(),
                task_id: Some(id.to_string()),
                detail: "close refused: a delegator closes only the sub-tasks it opened".into(),
                ..AuditDraft::default()
            };
            self.registry.audit(now, vec![draft]).await?;
            return Err(RegistryError::PermissionDenied(format!(
                "close refused: {delegator} did not open task {id} (a delegator closes only the sub-tasks it opened)"
            )));
        }
        self.close(id.as_str(), reason, delegator.to_string(), now)
            .await
    }

    /// Consent withdrawn: closes every pending or open task of `principal`, with the
    /// subtrees below them, in one durable write. Returns every task closed.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed principal, or a store failure.
    pub async fn close_principal(
        &self,
        principal: &str,
        reason: Option<String>,
        actor: String,
        now: SystemTime,
    ) -> Result<Vec<StoredTask>, RegistryError> {
        let principal: Principal = principal
            .parse()
            .map_err(|e| RegistryError::InvalidArgument(format!("invalid principal: {e}")))?;
        let reason = reason.unwrap_or_else(|| format!("consent withdrawn by {principal}"));
        let ids = self
            .registry
            .write(now, |state| {
                let roots: Vec<TaskId> = state
                    .index
                    .tasks()
                    .filter(|t| t.task.principal == principal && !t.task.state.is_final())
                    .map(|t| t.task.id.clone())
                    .collect();
                let mut plan = Plan::default();
                let mut serials = Vec::new();
                let mut ids = Vec::new();
                let mut seen = HashSet::new();
                for root in &roots {
                    if seen.contains(root) {
                        continue;
                    }
                    for id in state.index.subtree(root) {
                        if seen.insert(id.clone()) {
                            self.end_into(
                                state,
                                &id,
                                &reason,
                                &actor,
                                now,
                                &mut plan,
                                &mut serials,
                            )?;
                            ids.push(id);
                        }
                    }
                }
                Ok((plan, (ids, serials)))
            })
            .await?;
        let (ids, serials) = ids;
        self.ca.publish_revocations(&serials, now).await?;
        for id in &ids {
            self.disarm(id);
        }
        let state = self.registry.read();
        Ok(ids
            .iter()
            .filter_map(|id| state.index.task(id))
            .map(|t| StoredTask::clone(t))
            .collect())
    }

    /// Adds to `plan` the end of every task below `root` (not `root` itself) that is still
    /// pending or open: the cascade runs in the root's write. Returns their serials, for the
    /// CRL published after the commit.
    ///
    /// # Errors
    /// A store failure.
    pub(super) fn cascade_into(
        &self,
        state: &State,
        root: &TaskId,
        now: SystemTime,
        plan: &mut Plan,
    ) -> Result<Vec<IssuedSerial>, RegistryError> {
        let reason = format!("parent task {root} ended");
        let mut serials = Vec::new();
        for id in state.index.subtree(root).iter().skip(1) {
            self.end_into(state, id, &reason, "server", now, plan, &mut serials)?;
        }
        Ok(serials)
    }

    /// Ends task `id` into `plan`: expired when its deadline passed, else closed; nothing
    /// when it already ended. Its serials join `serials` for one revocation.
    #[allow(clippy::too_many_arguments)]
    fn end_into(
        &self,
        state: &State,
        id: &TaskId,
        reason: &str,
        actor: &str,
        now: SystemTime,
        plan: &mut Plan,
        serials: &mut Vec<IssuedSerial>,
    ) -> Result<(), RegistryError> {
        let Some(stored) = state.index.task(id) else {
            return Ok(());
        };
        if stored.task.state.is_final() {
            return Ok(());
        }
        let mut task: Task = stored.task.clone();
        let kind = if task.state_at(now) == TaskState::Expired {
            task.expire(now)
                .map_err(|e| RegistryError::Internal(e.to_string()))?;
            "task.expire"
        } else {
            task.close(Some(reason.to_owned()), now)
                .map_err(|e| RegistryError::Internal(e.to_string()))?;
            "task.close"
        };
        serials.extend(self.registry.store().task_serials(id)?);
        let detail = format!("reason: {reason}");
        let part = task_plan(
            task,
            stored.opened_by.clone(),
            kind,
            actor.to_owned(),
            detail,
            false,
        );
        plan.ops.extend(part.ops);
        plan.audit.extend(part.audit);
        plan.changes.extend(part.changes);
        Ok(())
    }
}

#[cfg(test)]
#[path = "subtasks_tests.rs"]
mod tests;

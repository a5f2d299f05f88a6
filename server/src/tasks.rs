//! The task lifecycle (DESIGN 3.4): open (pending when approval is needed), approve, close,
//! and expiry fired by a timer set for each task's own deadline. A close or an expiry revokes
//! the task's unexpired serials in a fresh CRL and is pushed to agents at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mandate_core::ids::TaskId;
use mandate_core::task::{Task, TaskSpec, TaskState, ValueLimit};
use tokio::task::AbortHandle;

use crate::ca::CaManager;
use crate::registry::{Plan, Registry, RegistryError};
use crate::store::{AuditDraft, Change, StoredTask, WriteOp};

/// When a task needs approval besides `--require-approval` (server config).
#[derive(Debug, Clone, Default)]
pub struct ApprovalPolicy {
    /// Action globs that need approval.
    pub actions: Vec<glob::Pattern>,
    /// Value limit from which approval is needed (same currency).
    pub value_threshold: Option<ValueLimit>,
}

impl ApprovalPolicy {
    /// True when a task with these actions and value limit needs approval.
    pub fn requires_approval(&self, spec: &TaskSpec) -> bool {
        let by_action = spec
            .actions
            .iter()
            .any(|a| self.actions.iter().any(|g| g.matches(a.as_str())));
        let by_value = match (&self.value_threshold, &spec.value_limit) {
            (Some(t), Some(v)) => t.currency == v.currency && v.amount_minor >= t.amount_minor,
            _ => false,
        };
        by_action || by_value
    }
}

/// The task service: lifecycle operations and expiry timers.
#[derive(Debug)]
pub struct Tasks {
    registry: Arc<Registry>,
    ca: Arc<CaManager>,
    policy: ApprovalPolicy,
    timers: Mutex<HashMap<TaskId, AbortHandle>>,
}

impl Tasks {
    /// A task service over `registry`, revoking through `ca`.
    pub fn new(registry: Arc<Registry>, ca: Arc<CaManager>, policy: ApprovalPolicy) -> Arc<Self> {
        Arc::new(Self {
            registry,
            ca,
            policy,
            timers: Mutex::new(HashMap::new()),
        })
    }

    /// Arms an expiry timer for every pending or open task; past deadlines expire at once.
    /// Must run inside a tokio runtime.
    pub fn arm_all(self: &Arc<Self>) {
        let live: Vec<(TaskId, SystemTime)> = self
            .registry
            .read()
            .index
            .tasks()
            .filter(|t| matches!(t.task.state, TaskState::Pending | TaskState::Open))
            .map(|t| (t.task.id.clone(), t.task.deadline))
            .collect();
        for (id, deadline) in live {
            self.arm(id, deadline);
        }
    }

    fn arm(self: &Arc<Self>, id: TaskId, deadline: SystemTime) {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let this = Arc::clone(self);
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let now = SystemTime::now().max(deadline);
            if let Err(e) = this.expire(&task_id, now).await {
                tracing::error!(task = %task_id, error = %e, "task expiry failed");
            }
        });
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, handle.abort_handle());
    }

    fn disarm(&self, id: &TaskId) {
        if let Some(h) = self
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            h.abort();
        }
    }

    /// Opens a task. It is pending when `spec.require_approval` or the policy says so.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad spec, `AlreadyExists` for a used ID (IDs are never
    /// reused), or a store failure.
    pub async fn open(
        self: &Arc<Self>,
        mut spec: TaskSpec,
        actor: String,
        now: SystemTime,
    ) -> Result<StoredTask, RegistryError> {
        spec.require_approval |= self.policy.requires_approval(&spec);
        let task =
            Task::open(spec, now).map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
        let id = task.id.clone();
        let deadline = task.deadline;
        self.registry
            .write(now, |state| {
                if state.index.task(&id).is_some() {
                    return Err(RegistryError::AlreadyExists(format!(
                        "task {id} already exists (task IDs are never reused)"
                    )));
                }
                let detail = format!(
                    "principal {} state {} deadline {}",
                    task.principal,
                    task.state.as_str(),
                    mandate_core::time::unix_seconds(task.deadline)
                );
                let opened_by = Some(actor.clone());
                let plan = task_plan(task, opened_by, "task.open", actor, detail, false);
                Ok((plan, ()))
            })
            .await?;
        self.arm(id.clone(), deadline);
        self.current(&id)
    }

    /// Approves a pending task, recording `approver`.
    ///
    /// # Errors
    /// `NotFound`, `FailedPrecondition` for a task that is not pending, or a store failure.
    pub async fn approve(
        &self,
        id: &str,
        approver: String,
        actor: String,
        now: SystemTime,
    ) -> Result<StoredTask, RegistryError> {
        let id = parse_task_id(id)?;
        if approver.trim().is_empty() {
            return Err(RegistryError::InvalidArgument(
                "approver must not be empty".into(),
            ));
        }
        if approver.len() > mandate_core::task::MAX_APPROVER_LEN {
            return Err(RegistryError::InvalidArgument(format!(
                "approver is longer than {} bytes",
                mandate_core::task::MAX_APPROVER_LEN
            )));
        }
        self.transition(&id, "task.approve", actor, now, |t| {
            t.approve(approver.clone(), now)
        })
        .await
    }

    /// Closes a pending or open task with an optional reason.
    ///
    /// # Errors
    /// `NotFound`, `FailedPrecondition` for a task already closed or expired, or a store
    /// failure.
    pub async fn close(
        &self,
        id: &str,
        reason: Option<String>,
        actor: String,
        now: SystemTime,
    ) -> Result<StoredTask, RegistryError> {
        let id = parse_task_id(id)?;
        let task = self.transition(&id, "task.close", actor, now, |t| {
            t.close(reason.clone(), now)
        });
        let task = task.await?;
        self.disarm(&id);
        self.disarm_subtree(&id);
        Ok(task)
    }

    async fn expire(&self, id: &TaskId, now: SystemTime) -> Result<StoredTask, RegistryError> {
        let task = self.transition(id, "task.expire", "server".into(), now, |t| t.expire(now));
        let task = task.await?;
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.disarm_subtree(id);
        Ok(task)
    }

    async fn transition(
        &self,
        id: &TaskId,
        kind: &'static str,
        actor: String,
        now: SystemTime,
        apply: impl Fn(&mut Task) -> Result<(), mandate_core::task::TaskError>,
    ) -> Result<StoredTask, RegistryError> {
        let ends = kind != "task.approve";
        let serials = self
            .registry
            .write(now, |state| {
                let stored = state
                    .index
                    .task(id)
                    .ok_or_else(|| RegistryError::NotFound(format!("task {id} not found")))?;
                let mut task = stored.task.clone();
                apply(&mut task).map_err(|e| match e {
                    mandate_core::task::TaskError::TooLong { .. } => {
                        RegistryError::InvalidArgument(e.to_string())
                    }
                    _ => RegistryError::FailedPrecondition(e.to_string()),
                })?;
                // Read under the write lock, so a concurrent issuance either recorded its
                // serial already or will see the task ended and revoke it itself. The CRL is
                // signed after the commit (`CaManager::publish_revocations`), not under the lock.
                let serials = if ends {
                    self.registry.store().task_serials(id)?
                } else {
                    Vec::new()
                };
                let detail = match (&task.close_reason, &task.approval) {
                    (Some(r), _) if ends => format!("reason: {r}"),
                    (_, Some(a)) if !ends => format!("approver {}", a.approver),
                    _ => String::new(),
                };
                let opened_by = stored.opened_by.clone();
                let mut plan = task_plan(task, opened_by, kind, actor, detail, false);
                let mut serials = serials;
                if ends {
                    // The whole subtree ends in the same durable write (DESIGN 3.8).
                    serials.extend(self.cascade_into(state, id, now, &mut plan)?);
                }
                Ok((plan, serials))
            })
            .await?;
        self.ca.publish_revocations(&serials, now).await?;
        self.current(id)
    }

    /// Stops the expiry timers below `id` (not its own), whose tasks ended with it.
    fn disarm_subtree(&self, id: &TaskId) {
        let below = self.registry.read().index.subtree(id);
        for task in below.iter().skip(1) {
            self.disarm(task);
        }
    }

    fn current(&self, id: &TaskId) -> Result<StoredTask, RegistryError> {
        self.registry
            .read()
            .index
            .task(id)
            .map(|t| StoredTask::clone(t))
            .ok_or_else(|| RegistryError::NotFound(format!("task {id} not found")))
    }
}

fn task_plan(
    task: Task,
    opened_by: Option<String>,
    kind: &'static str,
    actor: String,
    detail: String,
    bundle: bool,
) -> Plan {
    let mut changes = vec![Change::Task {
        id: task.id.clone(),
    }];
    if bundle {
        changes.push(Change::Bundle);
    }
    Plan {
        audit: vec![AuditDraft {
            kind,
            actor,
            task_id: Some(task.id.to_string()),
            detail,
            ..AuditDraft::default()
        }],
        ops: vec![WriteOp::PutTask(StoredTask {
            task,
            revision: 0,
            opened_by,
        })],
        changes,
    }
}

/// Parses a task ID from an API request.
///
/// # Errors
/// `InvalidArgument` naming the problem.
pub fn parse_task_id(id: &str) -> Result<TaskId, RegistryError> {
    TaskId::new(id).map_err(|e| RegistryError::InvalidArgument(format!("invalid task ID: {e}")))
}

mod subtasks;

#[cfg(test)]
mod tests;

//! Tasks and their lifecycle (DESIGN 3.4): pending, open, closed, expired. Transitions are
//! pure functions that take `now`; an illegal one is a typed error.

mod subtask;
mod values;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::ids::TaskId;
use crate::principal::Principal;
pub use subtask::{Lineage, SubtaskRefusal, SubtaskRequest, open_subtask};
pub use values::{Action, Approval, Currency, MAX_ACTION_LEN, TaskState, ValueLimit};

/// Longest task purpose, in bytes.
pub const MAX_PURPOSE_LEN: usize = 256;
/// Most actions a task may allow.
pub const MAX_ACTIONS: usize = 64;
/// Longest approver name, in bytes (it is written into every SVID of the task).
pub const MAX_APPROVER_LEN: usize = 256;
/// Longest close reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// How far ahead a task's deadline may lie (366 days, so `--deadline 1y` fits): an SVID never
/// outlives its task, and a bounded deadline keeps every time the task yields printable and
/// encodable (X.509 GeneralizedTime, RFC 3339).
pub const MAX_TASK_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Errors from building a task or changing its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// An action name is empty, too long or holds whitespace.
    #[error("invalid action {0:?}: 1 to 128 bytes without whitespace")]
    BadAction(String),
    /// A currency is not three uppercase ASCII letters.
    #[error("invalid currency {0:?}: expected an ISO 4217 code such as EUR")]
    BadCurrency(String),
    /// A value limit is not `<amount>:<code>` with at most two decimals.
    #[error("invalid value limit {0:?}: expected <amount>:<ISO 4217 code>, e.g. 500.00:EUR")]
    BadValueLimit(String),
    /// An unknown state name.
    #[error("unknown task state {0:?}")]
    UnknownState(String),
    /// The deadline is not in the future.
    #[error("task deadline must be in the future")]
    DeadlineNotInFuture,
    /// The deadline lies more than [`MAX_TASK_LIFETIME`] ahead.
    #[error("task deadline must be at most 366 days ahead")]
    DeadlineTooFar,
    /// The purpose is over 256 bytes.
    #[error("task purpose is longer than {MAX_PURPOSE_LEN} bytes")]
    PurposeTooLong,
    /// The task has no action, or more than 64.
    #[error("a task needs 1 to {MAX_ACTIONS} actions, got {0}")]
    ActionCount(usize),
    /// The same action is listed twice.
    #[error("action {0:?} is listed twice")]
    DuplicateAction(String),
    /// The approver name is empty.
    #[error("approver name is empty")]
    EmptyApprover,
    /// A free-text field (approver, close reason) is over its length limit.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// `approver` or `reason`.
        field: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// The transition is not allowed from the current state.
    #[error("task cannot go from {from} to {to}")]
    IllegalTransition {
        /// The current state.
        from: TaskState,
        /// The state asked for.
        to: TaskState,
    },
    /// The deadline passed, so the task can no longer be approved.
    #[error("task deadline has passed")]
    Expired,
    /// Expiry was asked for before the deadline.
    #[error("task deadline has not passed yet")]
    NotYetExpired,
}

/// What an operator asks for when opening a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// An operator-chosen ID; a fresh one is minted when absent.
    pub id: Option<TaskId>,
    /// Who the task is done for.
    pub principal: Principal,
    /// Why, in free text (at most 256 bytes).
    pub purpose: String,
    /// The actions allowed (1 to 64, no duplicates).
    pub actions: Vec<Action>,
    /// An optional spending limit.
    pub value_limit: Option<ValueLimit>,
    /// When the task ends; its SVIDs never outlive it.
    pub deadline: SystemTime,
    /// How many further delegation hops are allowed.
    pub max_depth: u8,
    /// Whether the task waits for an approval before it opens.
    pub require_approval: bool,
}

/// A task: the mandate an agent acts under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's ID, unique forever.
    pub id: TaskId,
    /// Who the task is done for.
    pub principal: Principal,
    /// Why, in free text.
    pub purpose: String,
    /// The actions allowed.
    pub actions: Vec<Action>,
    /// An optional spending limit.
    pub value_limit: Option<ValueLimit>,
    /// When the task ends.
    pub deadline: SystemTime,
    /// The recorded state (see [`Task::state_at`] for the state at a given time).
    pub state: TaskState,
    /// The approval, once given.
    pub approval: Option<Approval>,
    /// How many further delegation hops are allowed.
    pub max_depth: u8,
    /// When the task was opened.
    pub created_at: SystemTime,
    /// When it closed or expired.
    pub ended_at: Option<SystemTime>,
    /// Why it was closed, when a reason was given.
    pub close_reason: Option<String>,
    /// For a sub-task (DESIGN 3.8): its parent, depth and chain; `None` for a root task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

impl Task {
    /// Opens a task from a spec: `Pending` when approval is required, else `Open`.
    ///
    /// # Errors
    /// When the deadline is not after `now` or lies more than [`MAX_TASK_LIFETIME`] ahead, the
    /// purpose is over 256 bytes, or there are 0 or more than 64 actions or a duplicate.
    pub fn open(spec: TaskSpec, now: SystemTime) -> Result<Self, TaskError> {
        if spec.deadline <= now {
            return Err(TaskError::DeadlineNotInFuture);
        }
        if now
            .checked_add(MAX_TASK_LIFETIME)
            .is_some_and(|latest| spec.deadline > latest)
        {
            return Err(TaskError::DeadlineTooFar);
        }
        if spec.purpose.len() > MAX_PURPOSE_LEN {
            return Err(TaskError::PurposeTooLong);
        }
        if spec.actions.is_empty() || spec.actions.len() > MAX_ACTIONS {
            return Err(TaskError::ActionCount(spec.actions.len()));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = spec.actions.iter().find(|a| !seen.insert(a.as_str())) {
            return Err(TaskError::DuplicateAction(dup.as_str().to_owned()));
        }
        Ok(Self {
            id: spec.id.unwrap_or_else(TaskId::generate),
            principal: spec.principal,
            purpose: spec.purpose,
            actions: spec.actions,
            value_limit: spec.value_limit,
            deadline: spec.deadline,
            state: if spec.require_approval {
                TaskState::Pending
            } else {
                TaskState::Open
            },
            approval: None,
            max_depth: spec.max_depth,
            created_at: now,
            ended_at: None,
            close_reason: None,
            lineage: None,
        })
    }

    /// Approves a pending task, which opens it.
    ///
    /// # Errors
    /// [`TaskError::IllegalTransition`] unless the task is pending, [`TaskError::Expired`] when
    /// the deadline has passed, [`TaskError::EmptyApprover`] for an empty name,
    /// [`TaskError::TooLong`] for one over [`MAX_APPROVER_LEN`] bytes.
    pub fn approve(&mut self, approver: String, now: SystemTime) -> Result<(), TaskError> {
        self.check_transition(TaskState::Pending, TaskState::Open)?;
        if now >= self.deadline {
            return Err(TaskError::Expired);
        }
        if approver.trim().is_empty() {
            return Err(TaskError::EmptyApprover);
        }
        if approver.len() > MAX_APPROVER_LEN {
            return Err(TaskError::TooLong {
                field: "approver",
                max: MAX_APPROVER_LEN,
            });
        }
        self.state = TaskState::Open;
        self.approval = Some(Approval {
            approver,
            approved_at: now,
        });
        Ok(())
    }

    /// Closes a pending or open task.
    ///
    /// # Errors
    /// [`TaskError::IllegalTransition`] when the task is already closed or expired,
    /// [`TaskError::TooLong`] for a reason over [`MAX_REASON_LEN`] bytes.
    pub fn close(&mut self, reason: Option<String>, now: SystemTime) -> Result<(), TaskError> {
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN) {
            return Err(TaskError::TooLong {
                field: "reason",
                max: MAX_REASON_LEN,
            });
        }
        if self.state.is_final() {
            return Err(TaskError::IllegalTransition {
                from: self.state,
                to: TaskState::Closed,
            });
        }
        self.state = TaskState::Closed;
        self.ended_at = Some(now);
        self.close_reason = reason;
        Ok(())
    }

    /// Records the expiry of a pending or open task whose deadline has passed.
    ///
    /// # Errors
    /// [`TaskError::IllegalTransition`] when already closed or expired,
    /// [`TaskError::NotYetExpired`] before the deadline.
    pub fn expire(&mut self, now: SystemTime) -> Result<(), TaskError> {
        if self.state.is_final() {
            return Err(TaskError::IllegalTransition {
                from: self.state,
                to: TaskState::Expired,
            });
        }
        if now < self.deadline {
            return Err(TaskError::NotYetExpired);
        }
        self.state = TaskState::Expired;
        self.ended_at = Some(self.deadline);
        Ok(())
    }

    /// The state at `now`: a pending or open task whose deadline has passed reads as expired.
    pub fn state_at(&self, now: SystemTime) -> TaskState {
        match self.state {
            TaskState::Pending | TaskState::Open if now >= self.deadline => TaskState::Expired,
            state => state,
        }
    }

    /// True when SVIDs may be issued for the task at `now` (it is open and before its deadline).
    pub fn can_issue(&self, now: SystemTime) -> bool {
        self.state_at(now) == TaskState::Open
    }

    fn check_transition(&self, from: TaskState, to: TaskState) -> Result<(), TaskError> {
        if self.state == from {
            Ok(())
        } else {
            Err(TaskError::IllegalTransition {
                from: self.state,
                to,
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(crate) fn spec(require_approval: bool) -> TaskSpec {
        TaskSpec {
            id: Some(TaskId::new("task-1").expect("valid")),
            principal: "user:alice@example.org".parse().expect("valid"),
            purpose: "draft purchase orders".into(),
            actions: vec![Action::new("po.draft").expect("valid")],
            value_limit: Some("500.00:EUR".parse().expect("valid")),
            deadline: t(2_000),
            max_depth: 0,
            require_approval,
        }
    }

    #[test]
    fn open_validates_spec() {
        let mut s = spec(false);
        s.deadline = t(1_000);
        assert_eq!(Task::open(s, t(1_000)), Err(TaskError::DeadlineNotInFuture));
        // The deadline's edges: 1 s ahead and exactly the maximum open, one more second not.
        let max = MAX_TASK_LIFETIME.as_secs();
        for (ahead, ok) in [
            (1, true),
            (max, true),
            (max + 1, false),
            (u64::from(u32::MAX), false),
        ] {
            let mut s = spec(false);
            s.deadline = t(1_000 + ahead);
            let got = Task::open(s, t(1_000));
            assert_eq!(got.is_ok(), ok, "{ahead} s ahead");
            if !ok {
                assert_eq!(got, Err(TaskError::DeadlineTooFar));
            }
        }
        let mut s = spec(false);
        s.purpose = "x".repeat(257);
        assert_eq!(Task::open(s, t(1_000)), Err(TaskError::PurposeTooLong));
        let mut s = spec(false);
        s.actions.clear();
        assert_eq!(Task::open(s, t(1_000)), Err(TaskError::ActionCount(0)));
        let mut s = spec(false);
        s.actions = (0..65)
            .map(|i| Action::new(format!("a{i}")).expect("valid"))
            .collect();
        assert_eq!(Task::open(s, t(1_000)), Err(TaskError::ActionCount(65)));
        let mut s = spec(false);
        s.actions.push(s.actions[0].clone());
        assert!(matches!(
            Task::open(s, t(1_000)),
            Err(TaskError::DuplicateAction(_))
        ));
        let mut s = spec(false);
        s.id = None;
        let task = Task::open(s, t(1_000)).expect("valid");
        assert!(task.id.as_str().starts_with("task-"));
        assert_eq!(task.state, TaskState::Open);
        assert_eq!(
            Task::open(spec(true), t(1_000)).map(|t| t.state),
            Ok(TaskState::Pending)
        );
    }

    #[test]
    fn transitions_table() {
        use TaskState::*;
        // (initial state, operation, now, expected result state or None for an error)
        type Op = fn(&mut Task, SystemTime) -> Result<(), TaskError>;
        let approve: Op = |t, now| t.approve("bob".into(), now);
        let close: Op = |t, now| t.close(Some("done".into()), now);
        let expire: Op = |t, now| t.expire(now);
        let cases: &[(TaskState, Op, u64, Option<TaskState>)] = &[
            (Pending, approve, 1_500, Some(Open)),
            (Pending, approve, 2_000, None),
            (Open, approve, 1_500, None),
            (Closed, approve, 1_500, None),
            (Expired, approve, 1_500, None),
            (Pending, close, 1_500, Some(Closed)),
            (Open, close, 1_500, Some(Closed)),
            (Closed, close, 1_500, None),
            (Expired, close, 1_500, None),
            (Open, expire, 1_999, None),
            (Open, expire, 2_000, Some(Expired)),
            (Pending, expire, 2_500, Some(Expired)),
            (Closed, expire, 2_500, None),
            (Expired, expire, 2_500, None),
        ];
        for (i, (from, op, now, want)) in cases.iter().enumerate() {
            let mut task = Task::open(spec(false), t(1_000)).expect("valid");
            task.state = *from;
            let before = task.clone();
            let result = op(&mut task, t(*now));
            match want {
                Some(state) => {
                    assert_eq!(result, Ok(()), "case {i}");
                    assert_eq!(task.state, *state, "case {i}");
                }
                None => {
                    assert!(result.is_err(), "case {i}: expected an error");
                    assert_eq!(
                        task, before,
                        "case {i}: a refused transition changes nothing"
                    );
                }
            }
        }
    }

    #[test]
    fn illegal_transition_is_typed() {
        let mut task = Task::open(spec(false), t(1_000)).expect("valid");
        task.close(None, t(1_100)).expect("open task closes");
        assert_eq!(
            task.close(None, t(1_200)),
            Err(TaskError::IllegalTransition {
                from: TaskState::Closed,
                to: TaskState::Closed
            })
        );
        assert_eq!(task.ended_at, Some(t(1_100)));
    }

    #[test]
    fn approver_and_reason_lengths() {
        // (approver bytes, accepted)
        for (len, ok) in [
            (1, true),
            (MAX_APPROVER_LEN, true),
            (MAX_APPROVER_LEN + 1, false),
        ] {
            let mut task = Task::open(spec(true), t(1_000)).expect("valid");
            let got = task.approve("a".repeat(len), t(1_100));
            assert_eq!(got.is_ok(), ok, "approver of {len} bytes");
        }
        // (reason bytes, accepted)
        for (len, ok) in [
            (0, true),
            (MAX_REASON_LEN, true),
            (MAX_REASON_LEN + 1, false),
        ] {
            let mut task = Task::open(spec(false), t(1_000)).expect("valid");
            let got = task.close(Some("r".repeat(len)), t(1_100));
            assert_eq!(got.is_ok(), ok, "reason of {len} bytes");
            assert_eq!(
                task.state == TaskState::Closed,
                ok,
                "closed only when accepted"
            );
        }
    }

    #[test]
    fn state_at_and_can_issue() {
        let mut task = Task::open(spec(true), t(1_000)).expect("valid");
        assert!(!task.can_issue(t(1_100)), "pending tasks do not issue");
        task.approve("bob".into(), t(1_100)).expect("approve");
        assert_eq!(
            task.approval.as_ref().map(|a| a.approver.as_str()),
            Some("bob")
        );
        assert!(task.can_issue(t(1_999)));
        assert!(!task.can_issue(t(2_000)), "no issuing at the deadline");
        assert_eq!(task.state_at(t(2_000)), TaskState::Expired);
        task.close(None, t(1_500)).expect("close");
        assert!(!task.can_issue(t(1_600)));
    }

    #[test]
    fn serde_round_trip() {
        let task = Task::open(spec(false), t(1_000)).expect("valid");
        let json = serde_json::to_string(&task).expect("serialize");
        assert_eq!(
            serde_json::from_str::<Task>(&json).expect("deserialize"),
            task
        );
    }
}

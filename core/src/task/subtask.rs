//! Sub-delegation (DESIGN 3.8): the narrowing rules a sub-task must obey, as one pure
//! function that takes `now` and returns either the sub-task or a refusal naming the rule.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use spiffe::SpiffeId;

use super::{Action, Task, TaskError, TaskSpec, TaskState, ValueLimit};
use crate::delegation::{Link, MAX_CHAIN};
use crate::ids::TaskId;

/// Where a sub-task sits in its tree: set on every task that was delegated, absent on roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The task it was delegated from.
    pub parent_id: TaskId,
    /// Hops from the principal: the parent's depth plus one.
    pub depth: u8,
    /// Earlier hops, oldest first: the parent's chain plus the parent's own link.
    pub chain: Vec<Link>,
    /// The SPIFFE ID that opened it (the delegator).
    pub delegator: String,
    /// The SPIFFE ID of the delegate entry it is bound to.
    pub delegate: String,
}

/// What a delegator asks for (DESIGN 3.8 `OpenSubtaskRequest`, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskRequest {
    /// A chosen ID; a fresh one is minted when absent.
    pub id: Option<TaskId>,
    /// The delegate's SPIFFE ID (a delegate entry's).
    pub target: SpiffeId,
    /// Why, in free text.
    pub purpose: String,
    /// The actions granted: a subset of the delegator's.
    pub actions: Vec<Action>,
    /// The limit granted; `None` takes the delegator's.
    pub value_limit: Option<ValueLimit>,
    /// The deadline; `None` takes the delegator's.
    pub deadline: Option<SystemTime>,
}

/// Why a sub-task is refused; each names the rule of DESIGN 3.8 it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubtaskRefusal {
    /// The delegator's task is pending, closed or expired.
    #[error("parent task {id} is {state}, not open")]
    ParentNotOpen {
        /// The parent task.
        id: TaskId,
        /// Its state at the time of the request.
        state: TaskState,
    },
    /// `depth + 1` would exceed the task's `maxDepth`.
    #[error("depth: a sub-task would be at depth {depth}, beyond max depth {max_depth}")]
    DepthExhausted {
        /// The depth the sub-task would have.
        depth: u16,
        /// The tree's maximum depth.
        max_depth: u8,
    },
    /// The chain would grow past 8 links.
    #[error("chain: a sub-task would carry {0} links, at most {MAX_CHAIN} are allowed")]
    ChainTooLong(usize),
    /// An action the delegator does not hold.
    #[error("actions: {0:?} is not among the delegator's actions")]
    ActionNotHeld(String),
    /// The limit's currency differs from the delegator's.
    #[error("value limit: currency {asked} differs from the delegator's {held}")]
    CurrencyMismatch {
        /// The currency asked for.
        asked: String,
        /// The delegator's currency.
        held: String,
    },
    /// The limit is above the delegator's.
    #[error("value limit: {asked} is more than the delegator's {held}")]
    LimitAbove {
        /// The amount asked for, in minor units.
        asked: i64,
        /// The delegator's amount, in minor units.
        held: i64,
    },
    /// The deadline is after the delegator's.
    #[error("deadline: the sub-task's deadline is later than the delegator's")]
    DeadlineLater,
    /// No delegate entry has the target's SPIFFE ID.
    #[error("target: {0} is not a delegate entry")]
    NotDelegateEntry(String),
    /// The target's `--delegate-from` does not list the delegator.
    #[error("target: {target} does not list {delegator} in delegate_from")]
    DelegatorNotListed {
        /// The target.
        target: String,
        /// The delegator.
        delegator: String,
    },
    /// The request itself is malformed (no action, purpose too long, deadline past).
    #[error("{0}")]
    Invalid(TaskError),
}

impl SubtaskRefusal {
    /// True for a malformed request (`InvalidArgument`); false for a widening or a
    /// forbidden delegation (`PermissionDenied`).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

/// Opens a sub-task of `parent` for the delegator `delegator_id`, or refuses it.
///
/// `target_delegate_from` holds the `delegate_from` list of every delegate entry whose
/// SPIFFE ID is `request.target` (empty: the target is no delegate entry). Checks every rule
/// of DESIGN 3.8 in order: open parent, depth, chain, actions, value limit, deadline, target.
///
/// # Errors
/// The first rule broken, as a [`SubtaskRefusal`].
pub fn open_subtask(
    parent: &Task,
    delegator_id: &SpiffeId,
    target_delegate_from: &[&[SpiffeId]],
    request: SubtaskRequest,
    now: SystemTime,
) -> Result<Task, SubtaskRefusal> {
    let state = parent.state_at(now);
    if state != TaskState::Open {
        return Err(SubtaskRefusal::ParentNotOpen {
            id: parent.id.clone(),
            state,
        });
    }
    let parent_depth = parent.lineage.as_ref().map_or(0, |l| l.depth);
    let depth = u16::from(parent_depth) + 1;
    if depth > u16::from(parent.max_depth) {
        return Err(SubtaskRefusal::DepthExhausted {
            depth,
            max_depth: parent.max_depth,
        });
    }
    let parent_chain = parent.lineage.as_ref().map_or(&[][..], |l| &l.chain[..]);
    if parent_chain.len() + 1 > MAX_CHAIN {
        return Err(SubtaskRefusal::ChainTooLong(parent_chain.len() + 1));
    }
    if let Some(extra) = request.actions.iter().find(|a| !parent.actions.contains(a)) {
        return Err(SubtaskRefusal::ActionNotHeld(extra.as_str().to_owned()));
    }
    let value_limit = narrow_limit(parent.value_limit, request.value_limit)?;
    let deadline = request.deadline.unwrap_or(parent.deadline);
    if deadline > parent.deadline {
        return Err(SubtaskRefusal::DeadlineLater);
    }
    let target = request.target.to_string();
    if target_delegate_from.is_empty() {
        return Err(SubtaskRefusal::NotDelegateEntry(target));
    }
    if !target_delegate_from
        .iter()
        .any(|list| list.contains(delegator_id))
    {
        return Err(SubtaskRefusal::DelegatorNotListed {
            target,
            delegator: delegator_id.to_string(),
        });
    }
    let spec = TaskSpec {
        id: request.id,
        principal: parent.principal.clone(),
        purpose: request.purpose,
        actions: request.actions,
        value_limit,
        deadline,
        max_depth: parent.max_depth,
        require_approval: false,
    };
    let mut task = Task::open(spec, now).map_err(SubtaskRefusal::Invalid)?;
    task.approval = parent.approval.clone();
    let mut chain = parent_chain.to_vec();
    chain.push(Link {
        principal: parent.principal.clone(),
        task_id: parent.id.clone(),
        actor: delegator_id.to_string(),
    });
    task.lineage = Some(Lineage {
        parent_id: parent.id.clone(),
        // At most max_depth, a u8, as checked above.
        depth: u8::try_from(depth).unwrap_or(u8::MAX),
        chain,
        delegator: delegator_id.to_string(),
        delegate: target,
    });
    Ok(task)
}

/// The limit a sub-task gets: the delegator's when none is asked; never wider.
fn narrow_limit(
    held: Option<ValueLimit>,
    asked: Option<ValueLimit>,
) -> Result<Option<ValueLimit>, SubtaskRefusal> {
    match (held, asked) {
        (held, None) => Ok(held),
        (None, Some(asked)) => Ok(Some(asked)),
        (Some(held), Some(asked)) if held.currency != asked.currency => {
            Err(SubtaskRefusal::CurrencyMismatch {
                asked: asked.currency.to_string(),
                held: held.currency.to_string(),
            })
        }
        (Some(held), Some(asked)) if asked.amount_minor > held.amount_minor => {
            Err(SubtaskRefusal::LimitAbove {
                asked: asked.amount_minor,
                held: held.amount_minor,
            })
        }
        (Some(_), Some(asked)) => Ok(Some(asked)),
    }
}

#[cfg(test)]
#[path = "subtask_tests.rs"]
mod tests;

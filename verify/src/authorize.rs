//! Per-request authorization of a delegated caller: task status, deadline, action, amount and
//! depth, checked on every request rather than only at the TLS handshake (DESIGN 3.4).

use std::time::SystemTime;

use mandate_core::delegation::{Delegation, MAX_CHAIN};
use mandate_core::task::ValueLimit;

use crate::caller::{CallerIdentity, DelegationPolicy};
use crate::refusal::{Refusal, unix_seconds};
use crate::status::TaskStatusWatcher;

/// What a service checks its callers against: the delegation policy, the live task-status view
/// and, with the `cedar` feature, an optional Cedar policy set.
#[derive(Debug)]
pub struct Verifier {
    policy: DelegationPolicy,
    status: TaskStatusWatcher,
    #[cfg(feature = "cedar")]
    cedar: Option<crate::cedar::CedarPolicy>,
}

/// A request the verifier allowed, with what it was allowed under.
#[derive(Debug, Clone, Copy)]
pub struct Authorized<'a> {
    /// The delegation the request runs under; `None` for a caller without one that policy
    /// does not require to carry one (the service applies its own rules to those).
    pub delegation: Option<&'a Delegation>,
}

impl Verifier {
    /// A verifier with `policy` and the task-status view `status`.
    pub fn new(policy: DelegationPolicy, status: TaskStatusWatcher) -> Self {
        Self {
            policy,
            status,
            #[cfg(feature = "cedar")]
            cedar: None,
        }
    }

    /// Adds a Cedar policy set that every delegated request must also satisfy.
    #[cfg(feature = "cedar")]
    #[must_use]
    pub fn with_cedar(mut self, cedar: crate::cedar::CedarPolicy) -> Self {
        self.cedar = Some(cedar);
        self
    }

    /// The delegation policy, for [`CallerIdentity::from_certificate`].
    pub fn policy(&self) -> &DelegationPolicy {
        &self.policy
    }

    /// The task-status view.
    pub fn status(&self) -> &TaskStatusWatcher {
        &self.status
    }

    /// Checks one request of `caller` for `action` with an optional `amount`, now.
    ///
    /// Fails with the [`Refusal`] naming the first rule that refused.
    pub fn authorize<'a>(
        &self,
        caller: &'a CallerIdentity,
        action: &str,
        amount: Option<&ValueLimit>,
    ) -> Result<Authorized<'a>, Refusal> {
        self.authorize_at(caller, action, amount, SystemTime::now())
    }

    /// [`Self::authorize`] at a given time.
    ///
    /// Fails with the [`Refusal`] naming the first rule that refused.
    pub fn authorize_at<'a>(
        &self,
        caller: &'a CallerIdentity,
        action: &str,
        amount: Option<&ValueLimit>,
        now: SystemTime,
    ) -> Result<Authorized<'a>, Refusal> {
        let Some(delegation) = caller.delegation() else {
            // The identity was built under a policy; re-check in case the caller was built by hand.
            if self.policy.requires_delegation(caller.spiffe_id()) {
                return Err(Refusal::DelegationRequired {
                    spiffe_id: caller.spiffe_id().to_string(),
                });
            }
            return Ok(Authorized { delegation: None });
        };
        let task_id = delegation.task.id.as_str();
        self.status
            .check(task_id, now)
            .map_err(|e| Refusal::from_status(e, task_id))?;
        // The second, independent path (DESIGN 3.4): the trust domain's CRLs.
        if let Some(serial) = caller.serial() {
            self.status
                .check_serial(serial)
                .map_err(|e| Refusal::from_status(e, task_id))?;
        }
        check_grant(delegation, action, amount, now)?;
        #[cfg(feature = "cedar")]
        if let Some(cedar) = &self.cedar {
            cedar.check(caller, delegation, action, amount)?;
        }
        Ok(Authorized {
            delegation: Some(delegation),
        })
    }
}

/// The pure checks of a delegation's grant at `now`: deadline, depth, action (exact match) and
/// amount (same currency, within the limit; an amount under a grant without a limit is refused).
///
/// Fails with the refusal of the first rule that does not hold.
pub fn check_grant(
    delegation: &Delegation,
    action: &str,
    amount: Option<&ValueLimit>,
    now: SystemTime,
) -> Result<(), Refusal> {
    let task = &delegation.task;
    if now >= task.deadline {
        return Err(Refusal::DeadlinePassed {
            task_id: task.id.to_string(),
            deadline_unix: unix_seconds(task.deadline),
        });
    }
    if task.depth > task.max_depth {
        return Err(Refusal::DepthExceeded {
            depth: task.depth,
            max_depth: task.max_depth,
        });
    }
    // DESIGN 3.8: a chain longer than 8 links is refused (the DER decoder refuses one too;
    // a caller built from parts never went through it).
    if delegation.chain.len() > MAX_CHAIN {
        return Err(Refusal::ChainTooLong {
            links: delegation.chain.len(),
        });
    }
    if !delegation
        .actions
        .iter()
        .any(|granted| granted.as_str() == action)
    {
        return Err(Refusal::ActionNotGranted {
            action: action.to_owned(),
            task_id: task.id.to_string(),
        });
    }
    if let Some(amount) = amount {
        let Some(limit) = &delegation.value_limit else {
            return Err(Refusal::NoValueLimit {
                amount: amount.to_string(),
                task_id: task.id.to_string(),
            });
        };
        if amount.currency != limit.currency {
            return Err(Refusal::CurrencyMismatch {
                requested: amount.currency.to_string(),
                limit: limit.currency.to_string(),
            });
        }
        if amount.amount_minor > limit.amount_minor {
            return Err(Refusal::OverValueLimit {
                amount: amount.to_string(),
                limit: limit.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "authorize_tests.rs"]
mod tests;

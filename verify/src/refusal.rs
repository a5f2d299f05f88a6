//! The typed refusal: which rule refused a caller, with a stable code a service can return.

use std::time::SystemTime;

use crate::status::StatusError;

/// Why `mandate-verify` refused a caller or a request. Each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The TLS peer presented no certificate.
    #[error("the peer presented no client certificate")]
    NoPeerCertificate,
    /// The peer certificate does not carry exactly one SPIFFE ID.
    #[error("the peer certificate carries no valid SPIFFE ID: {0}")]
    NoSpiffeId(String),
    /// Policy requires a delegation for this SPIFFE ID and the certificate has none.
    #[error("{spiffe_id} must carry a delegation and carries none")]
    DelegationRequired {
        /// The caller's SPIFFE ID.
        spiffe_id: String,
    },
    /// The certificate carries a delegation extension that does not parse.
    #[error("the delegation extension does not parse: {0}")]
    DelegationMalformed(String),
    /// The task is in the agent's closed-task set (closed or expired).
    #[error("task {task_id} is closed")]
    TaskClosed {
        /// The task.
        task_id: String,
    },
    /// The caller's certificate serial is listed in a verified CRL of the trust domain (the
    /// second revocation path, independent of the task-status feed).
    #[error("certificate serial {serial} is revoked by a CRL of the trust domain")]
    CertificateRevoked {
        /// The serial, hex.
        serial: String,
    },
    /// The task's deadline has passed.
    #[error("task {task_id} passed its deadline at unix time {deadline_unix}")]
    DeadlinePassed {
        /// The task.
        task_id: String,
        /// The deadline, in unix seconds.
        deadline_unix: i64,
    },
    /// The action is not among the delegation's actions (exact match).
    #[error("action {action:?} is not granted by task {task_id}")]
    ActionNotGranted {
        /// The requested action.
        action: String,
        /// The task.
        task_id: String,
    },
    /// The request carries an amount but the delegation grants none.
    #[error("an amount of {amount} was requested but task {task_id} has no value limit")]
    NoValueLimit {
        /// The requested amount, as `<amount>:<currency>`.
        amount: String,
        /// The task.
        task_id: String,
    },
    /// The amount's currency differs from the value limit's.
    #[error("amount currency {requested} differs from the value limit currency {limit}")]
    CurrencyMismatch {
        /// The requested currency.
        requested: String,
        /// The limit's currency.
        limit: String,
    },
    /// The amount exceeds the value limit.
    #[error("amount {amount} exceeds the value limit {limit}")]
    OverValueLimit {
        /// The requested amount, as `<amount>:<currency>`.
        amount: String,
        /// The limit, as `<amount>:<currency>`.
        limit: String,
    },
    /// The delegation is deeper than its task allows.
    #[error("delegation depth {depth} exceeds the maximum {max_depth}")]
    DepthExceeded {
        /// The delegation's depth.
        depth: u8,
        /// The task's maximum depth.
        max_depth: u8,
    },
    /// The delegation chain is longer than 8 links (DESIGN 3.8).
    #[error("delegation chain has {links} links, at most 8 are allowed")]
    ChainTooLong {
        /// How many links the chain has.
        links: usize,
    },
    /// No task-status snapshot has arrived yet: delegated callers are refused (fail closed).
    #[error("task status unavailable: no snapshot from the agent yet")]
    StatusUnavailable,
    /// The newest task-status snapshot is older than the staleness bound (fail closed).
    #[error("task status is stale: newest snapshot is {age_ms} ms old (bound {bound_ms} ms)")]
    StatusStale {
        /// Age of the newest snapshot, in milliseconds.
        age_ms: u128,
        /// The staleness bound, in milliseconds.
        bound_ms: u128,
    },
    /// A Cedar policy did not permit the request.
    #[error("policy denied the request: {0}")]
    PolicyDenied(String),
}

impl Refusal {
    /// A stable snake_case code naming the rule, for logs and response bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoPeerCertificate => "no_peer_certificate",
            Self::NoSpiffeId(_) => "no_spiffe_id",
            Self::DelegationRequired { .. } => "delegation_required",
            Self::DelegationMalformed(_) => "delegation_malformed",
            Self::TaskClosed { .. } => "task_closed",
            Self::CertificateRevoked { .. } => "certificate_revoked",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::ActionNotGranted { .. } => "action_not_granted",
            Self::NoValueLimit { .. } => "no_value_limit",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::OverValueLimit { .. } => "over_value_limit",
            Self::DepthExceeded { .. } => "depth_exceeded",
            Self::ChainTooLong { .. } => "chain_too_long",
            Self::StatusUnavailable => "status_unavailable",
            Self::StatusStale { .. } => "status_stale",
            Self::PolicyDenied(_) => "policy_denied",
        }
    }

    /// The refusal as JSON: `{"refused": <code>, "reason": <message>}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "refused": self.code(), "reason": self.to_string() })
    }

    /// Maps a task-status failure for `task_id` to its refusal.
    pub(crate) fn from_status(error: StatusError, task_id: &str) -> Self {
        match error {
            StatusError::Closed(_) => Self::TaskClosed {
                task_id: task_id.to_owned(),
            },
            StatusError::Stale { age_ms, bound_ms } => Self::StatusStale { age_ms, bound_ms },
            StatusError::Revoked(serial) => Self::CertificateRevoked { serial },
            // Unavailable, and configuration errors that cannot reach a check, fail closed.
            _ => Self::StatusUnavailable,
        }
    }
}

/// Unix seconds of `time` (zero before the epoch), for refusal messages.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

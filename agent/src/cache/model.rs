//! The agent's domain view of what the server syncs: entries, tasks, the bundle, and the
//! X509-SVIDs the agent holds. Proto messages are converted into these at the edge.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::selector::Selector;
use mandate_core::task::TaskState;

/// A registration entry as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    /// The entry ID.
    pub id: String,
    /// The SPIFFE ID the entry issues, as text.
    pub spiffe_id: String,
    /// The selectors, deduplicated and sorted.
    pub selectors: Vec<Selector>,
    /// X509-SVID TTL.
    pub x509_ttl: Duration,
    /// JWT-SVID TTL.
    pub jwt_ttl: Duration,
    /// The task the entry is bound to.
    pub task_id: Option<String>,
    /// DNS names.
    pub dns_names: Vec<String>,
    /// The operator's hint.
    pub hint: String,
    /// When the entry was created (unix seconds) and the store revision that wrote it: the
    /// oldest entry sorts first in a Workload API response (DESIGN 3.1).
    pub created: (i64, u64),
}

impl AgentEntry {
    /// True when a change from `other` to `self` needs a fresh X509-SVID.
    pub fn svid_differs(&self, other: &Self) -> bool {
        self.spiffe_id != other.spiffe_id
            || self.task_id != other.task_id
            || self.dns_names != other.dns_names
            || self.x509_ttl != other.x509_ttl
    }
}

/// A task as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// The task ID.
    pub id: String,
    /// The state the server last reported.
    pub state: TaskState,
    /// The deadline.
    pub deadline: SystemTime,
}

impl TaskView {
    /// True when SVIDs bound to the task may be served at `now`.
    pub fn is_open(&self, now: SystemTime) -> bool {
        self.state == TaskState::Open && now < self.deadline
    }

    /// True when the task is closed or expired (by state or by deadline) at `now`.
    pub fn is_ended(&self, now: SystemTime) -> bool {
        matches!(self.state, TaskState::Closed | TaskState::Expired) || now >= self.deadline
    }
}

/// The trust bundle of the agent's trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleData {
    /// `spiffe://<td>`.
    pub trust_domain_id: String,
    /// DER CA certificates.
    pub authorities: Vec<Vec<u8>>,
    /// DER CRLs.
    pub crls: Vec<Vec<u8>>,
    /// JWKS JSON.
    pub jwks: Vec<u8>,
    /// The server's bundle sequence.
    pub sequence: u64,
}

/// An X509-SVID the agent holds for an entry.
pub struct CachedSvid {
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER of the key.
    pub key_pkcs8: Vec<u8>,
    /// Serial number, hex.
    pub serial: String,
    /// When the agent received it (the start of its life for rotation: notBefore is backdated).
    pub issued_at: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The entry generation it was signed for.
    pub generation: u64,
    /// Rotation jitter chosen for this SVID.
    pub jitter: Duration,
}

impl CachedSvid {
    /// When this SVID should be rotated (half-life less jitter, per `mandate_core::time`).
    pub fn rotate_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.issued_at)
            .unwrap_or(Duration::ZERO);
        self.issued_at + life / 2 - self.jitter.min(life / 4)
    }

    /// True once the SVID should be replaced.
    pub fn should_rotate(&self, now: SystemTime) -> bool {
        mandate_core::time::should_rotate(now, self.issued_at, self.not_after, self.jitter)
    }
}

impl std::fmt::Debug for CachedSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSvid")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A shared SVID.
pub type SharedSvid = Arc<CachedSvid>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_counts_from_receipt_not_backdated_not_before() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let svid = CachedSvid {
            chain: vec![],
            key_pkcs8: vec![],
            serial: "01".into(),
            issued_at: t0,
            not_after: t0 + Duration::from_secs(4),
            generation: 1,
            jitter: Duration::ZERO,
        };
        assert!(!svid.should_rotate(t0 + Duration::from_secs(1)));
        assert!(svid.should_rotate(t0 + Duration::from_secs(2)));
        assert_eq!(svid.rotate_at(), t0 + Duration::from_secs(2));
    }

    #[test]
    fn task_views() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut task = TaskView {
            id: "t".into(),
            state: TaskState::Open,
            deadline: t0 + Duration::from_secs(10),
        };
        assert!(task.is_open(t0));
        assert!(!task.is_ended(t0));
        assert!(task.is_ended(t0 + Duration::from_secs(10)));
        task.state = TaskState::Closed;
        assert!(!task.is_open(t0));
        assert!(task.is_ended(t0));
    }
}

//! The audit of refused attestations, bounded: `Attest` needs no credential, so one
//! `agent.deny` record (and one fsync) per refused call would let anyone drive the server's
//! disk. A token bucket lets a burst of refusals through one record each; past it, refusals
//! are counted and the count goes into the next record, or into one summary record written
//! at most once per flush interval. Every refusal is still counted in the audit log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use mandate_core::time::unix_seconds;

use crate::registry::{Registry, RegistryError};
use crate::store::AuditDraft;

/// How many refusals are recorded one by one, and how often the rest are summed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefusalPolicy {
    /// Refusals recorded one by one in a burst.
    pub burst: u32,
    /// How fast the burst allowance refills, per second.
    pub per_second: f64,
    /// How long after the first uncounted refusal its summary record is written.
    pub flush_after: Duration,
}

impl Default for RefusalPolicy {
    /// 20 records in a burst, then one per second, and a summary within 5 s.
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 1.0,
            flush_after: Duration::from_secs(5),
        }
    }
}

/// A token bucket: a pure decision that takes `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(policy: &RefusalPolicy, now: Instant) -> Self {
        Self {
            tokens: f64::from(policy.burst),
            at: now,
        }
    }

    /// Refills for the time since the last call and takes one token if there is one.
    pub fn take(&mut self, policy: &RefusalPolicy, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * policy.per_second).min(f64::from(policy.burst));
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Pending {
    bucket: TokenBucket,
    /// Refusals not yet in any record.
    uncounted: u64,
    /// When the first of them happened.
    since: Option<SystemTime>,
    flush_scheduled: bool,
}

/// The refusal audit of one server.
#[derive(Debug)]
pub struct RefusalLog {
    registry: Arc<Registry>,
    policy: RefusalPolicy,
    pending: Mutex<Pending>,
}

impl RefusalLog {
    /// A refusal log writing to `registry`.
    pub fn new(registry: Arc<Registry>, policy: RefusalPolicy) -> Arc<Self> {
        Arc::new(Self {
            registry,
            policy,
            pending: Mutex::new(Pending {
                bucket: TokenBucket::full(&policy, Instant::now()),
                uncounted: 0,
                since: None,
                flush_scheduled: false,
            }),
        })
    }

    /// Audits one refusal (`agent.deny`, actor `unauthenticated`): as its own record while the
    /// bucket allows, else counted into a later record. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// A store failure while writing a record.
    pub async fn refuse(
        self: &Arc<Self>,
        detail: String,
        now: SystemTime,
    ) -> Result<(), RegistryError> {
        let (write, folded, schedule) = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if p.bucket.take(&self.policy, Instant::now()) {
                let count = std::mem::take(&mut p.uncounted);
                let since = p.since.take();
                (true, since.filter(|_| count > 0).map(|s| (count, s)), false)
            } else {
                p.uncounted += 1;
                p.since.get_or_insert(now);
                let schedule = !p.flush_scheduled;
                p.flush_scheduled = true;
                (false, None, schedule)
            }
        };
        if schedule {
            let log = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(log.policy.flush_after).await;
                if let Err(e) = log.flush(SystemTime::now()).await {
                    tracing::warn!(error = %e, "could not write the agent.deny summary");
                }
            });
        }
        if !write {
            return Ok(());
        }
        let detail = match folded {
            Some((count, since)) => format!("{detail}; {}", summary(count, since)),
            None => detail,
        };
        self.registry.audit(now, vec![draft(detail)]).await
    }

    /// Writes the summary of the refusals not yet in any record, if there are any.
    async fn flush(&self, now: SystemTime) -> Result<(), RegistryError> {
        let taken = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            p.flush_scheduled = false;
            let count = std::mem::take(&mut p.uncounted);
            p.since
                .take()
                .filter(|_| count > 0)
                .map(|since| (count, since))
        };
        match taken {
            Some((count, since)) => {
                self.registry
                    .audit(now, vec![draft(summary(count, since))])
                    .await
            }
            None => Ok(()),
        }
    }
}

/// The text that accounts for `count` refusals not recorded one by one: the count, then
/// [`MORE_REFUSED`]. A summary record starts with it; a single refusal's record ends with it.
fn summary(count: u64, since: SystemTime) -> String {
    format!(
        "{count}{MORE_REFUSED} since {} (unknown, used or expired), not recorded one by one (rate limit)",
        unix_seconds(since)
    )
}

/// What follows the count of refusals a record accounts for beyond its own.
pub const MORE_REFUSED: &str = " more join tokens refused";

/// How many refusals an `agent.deny` record accounts for: one for a single refusal, plus the
/// count it carries; a summary record accounts for its count alone.
pub fn refusals_in(detail: &str) -> u64 {
    let Some(at) = detail.find(MORE_REFUSED) else {
        return 1;
    };
    let head = &detail[..at];
    let digits = head.rsplit([' ', ';']).next().unwrap_or("");
    let count = digits.parse::<u64>().unwrap_or(0);
    if head.len() == digits.len() {
        count
    } else {
        count + 1
    }
}

fn draft(detail: String) -> AuditDraft {
    AuditDraft {
        kind: "agent.deny",
        actor: "unauthenticated".into(),
        detail,
        ..AuditDraft::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SledStore, Store};

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let policy = RefusalPolicy {
            burst: 3,
            per_second: 2.0,
            flush_after: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(&policy, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // (time in ms, expected): three at once, then one per 500 ms, never more than three.
        let cases = [
            (0, true),
            (0, true),
            (0, true),
            (0, false),
            (400, false),
            (500, true),
            (600, false),
            (1_000, true),
            (60_000, true),
            (60_000, true),
            (60_000, true),
            (60_000, false),
            // A clock that steps back never adds tokens.
            (10_000, false),
        ];
        for (ms, want) in cases {
            assert_eq!(bucket.take(&policy, at(ms)), want, "at {ms} ms");
        }
    }

    #[test]
    fn refusal_counts_table() {
        let at = SystemTime::UNIX_EPOCH;
        let cases = [
            (
                "join token abc refused: unknown, used or expired".to_owned(),
                1,
            ),
            (format!("join token abc refused; {}", summary(7, at)), 8),
            (summary(41, at), 41),
        ];
        for (detail, want) in cases {
            assert_eq!(refusals_in(&detail), want, "{detail}");
        }
    }

    #[tokio::test]
    async fn a_flood_writes_few_records_and_counts_every_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let registry = Arc::new(Registry::open(Arc::clone(&store)).unwrap());
        let policy = RefusalPolicy {
            burst: 5,
            per_second: 0.5,
            flush_after: Duration::from_millis(200),
        };
        let log = RefusalLog::new(Arc::clone(&registry), policy);
        let refused = 500_u64;
        for i in 0..refused {
            log.refuse(format!("join token {i} refused"), SystemTime::now())
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = store.audit_records().unwrap();
            let total: u64 = records.iter().map(|r| refusals_in(&r.detail)).sum();
            if total == refused {
                assert!(
                    records.len() <= 8,
                    "{} records for {refused}",
                    records.len()
                );
                break;
            }
            assert!(Instant::now() < deadline, "counted {total} of {refused}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! Revoked serials and the CRL each CA signs for them. A task's serials are revoked when it
//! closes or expires and leave the set once their notAfter passes, so a CRL lists unexpired
//! serials only. CRLs are signed after the write that ended the task is durable, outside the
//! registry's lock ([`CaManager::publish_revocations`]).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mandate_core::time::from_unix_seconds;
use mandate_core::x509::{Ca, Serial};

use super::{CaError, CaManager};
use crate::registry::{Plan, RegistryError};
use crate::store::{Change, IssuedSerial};

impl CaManager {
    /// Lists `serials` (of tasks whose end is already durable) in freshly signed CRLs, then
    /// commits a bundle change so that agents serve the new CRLs. Call it after the commit,
    /// never inside a write plan: signing stays outside the registry's lock. A crash in
    /// between is repaired at start, where the server re-lists the serials of every ended
    /// task whose deadline has not passed.
    ///
    /// # Errors
    /// `Internal` when a CRL cannot be signed, or a store failure.
    pub async fn publish_revocations(
        &self,
        serials: &[IssuedSerial],
        now: SystemTime,
    ) -> Result<(), RegistryError> {
        if serials.is_empty() {
            return Ok(());
        }
        self.revoke(serials, now)
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let plan = Plan {
            changes: vec![Change::Bundle],
            ..Plan::default()
        };
        self.registry.write(now, |_| Ok((plan, ()))).await
    }
}

/// A revoked SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Its serial.
    pub serial: Serial,
    /// When it was revoked.
    pub at: SystemTime,
    /// Its notAfter; after that it leaves the CRL.
    pub not_after: SystemTime,
    /// The CA generation that signed it.
    pub ca_id: u64,
}

/// Adds `serials` revoked at `now`, skipping expired and already listed ones, and drops
/// entries that expired.
pub(crate) fn add(revoked: &mut Vec<Revoked>, serials: &[IssuedSerial], now: SystemTime) {
    revoked.retain(|r| r.not_after > now);
    let mut listed: HashSet<Serial> = revoked.iter().map(|r| r.serial).collect();
    for s in serials {
        let not_after = from_unix_seconds(s.not_after);
        let Some(serial) = Serial::from_hex(&s.serial) else {
            tracing::warn!(serial = %s.serial, "skipping unparsable recorded serial");
            continue;
        };
        if not_after <= now || !listed.insert(serial) {
            continue;
        }
        revoked.push(Revoked {
            serial,
            at: now,
            not_after,
            ca_id: s.ca_id,
        });
    }
}

/// Signs the CRL of CA generation `ca_id`: its revoked, unexpired serials.
///
/// # Errors
/// [`CaError::X509`] when signing fails.
pub(crate) fn sign(
    ca: &Ca,
    ca_id: u64,
    revoked: &[Revoked],
    number: u64,
    now: SystemTime,
) -> Result<Vec<u8>, CaError> {
    let listed: Vec<(Serial, SystemTime)> = revoked
        .iter()
        .filter(|r| r.ca_id == ca_id && r.not_after > now)
        .map(|r| (r.serial, r.at))
        .collect();
    let next_update = ca.not_after.max(now + Duration::from_secs(1));
    Ok(ca.sign_crl(&listed, number, now, next_update)?)
}

/// The next bundle sequence / CRL number: above `previous` and at least the unix
/// milliseconds of `now`, so it keeps growing across restarts.
pub(crate) fn next_sequence(previous: u64, now: SystemTime) -> u64 {
    let ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    ms.max(previous + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pruning::{Prunable, prune};
    use crate::store::WriteOp;
    use mandate_core::ids::TaskId;

    #[tokio::test]
    async fn serials_past_not_after_are_pruned_and_unexpired_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _ca) =
            crate::testing::registry_and_ca(dir.path(), Duration::from_secs(3600)).await;
        let now = SystemTime::now();
        let at = mandate_core::time::unix_seconds(now);
        let task = TaskId::new("t1").unwrap();
        let serial = |hex: &str, not_after| {
            WriteOp::PutSerial(
                task.clone(),
                IssuedSerial {
                    serial: hex.into(),
                    not_after,
                    ca_id: 1,
                },
            )
        };
        let plan = Plan {
            ops: vec![
                serial("0a", at - 5),
                serial("0b", at),
                serial("0c", at + 60),
            ],
            ..Plan::default()
        };
        registry.write(now, |_| Ok((plan, ()))).await.unwrap();
        assert_eq!(prune(&registry, Prunable::Serials, now).await.unwrap(), 2);
        let kept = registry.store().task_serials(&task).unwrap();
        let kept: Vec<&str> = kept.iter().map(|s| s.serial.as_str()).collect();
        assert_eq!(kept, ["0c"]);
        assert_eq!(prune(&registry, Prunable::Serials, now).await.unwrap(), 0);
    }

    #[test]
    fn add_skips_expired_and_duplicates_and_prunes() {
        let now = SystemTime::now();
        let future = mandate_core::time::unix_seconds(now) + 60;
        let past = mandate_core::time::unix_seconds(now) - 60;
        let s = |serial: &str, not_after| IssuedSerial {
            serial: serial.into(),
            not_after,
            ca_id: 1,
        };
        let mut set = Vec::new();
        add(
            &mut set,
            &[s("0a", future), s("0b", past), s("0a", future)],
            now,
        );
        assert_eq!(set.len(), 1);
        add(&mut set, &[], now + Duration::from_secs(120));
        assert!(set.is_empty());
    }

    #[test]
    fn sequence_grows() {
        let now = SystemTime::now();
        let a = next_sequence(0, now);
        assert!(next_sequence(a, now) > a);
    }
}

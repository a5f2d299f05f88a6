//! Deletes what can no longer matter, durably and in batches off the async runtime: join tokens
//! past their expiry (an expired token is refused whether it is stored or not, so a used one
//! stays refused, DESIGN 3.5) and SVID serials past their notAfter (an expired SVID needs no
//! CRL entry, so the serials kept, and a close's work, follow the unexpired SVIDs only).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::time::unix_seconds;

use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError};

/// How often the server prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Records deleted per store call.
const PRUNE_BATCH: usize = 10_000;

/// A kind of record that expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prunable {
    /// Join tokens, used or not, past their expiry.
    Tokens,
    /// Recorded SVID serials past their notAfter.
    Serials,
}

impl Prunable {
    /// Every kind, in the order a pruning round takes them.
    pub const ALL: [Self; 2] = [Self::Tokens, Self::Serials];

    fn name(self) -> &'static str {
        match self {
            Self::Tokens => "expired join tokens",
            Self::Serials => "expired SVID serials",
        }
    }

    fn prune_batch(self, store: &dyn Store, now: i64, max: usize) -> Result<usize, StoreError> {
        match self {
            Self::Tokens => store.prune_tokens(now, max),
            Self::Serials => store.prune_serials(now, max),
        }
    }
}

/// Deletes every record of `what` that expired at or before `now`; returns how many went.
///
/// # Errors
/// A store failure.
pub async fn prune(
    registry: &Registry,
    what: Prunable,
    now: SystemTime,
) -> Result<usize, RegistryError> {
    let store = Arc::clone(registry.store());
    let now = unix_seconds(now);
    tokio::task::spawn_blocking(move || {
        let mut total = 0;
        loop {
            let pruned = what.prune_batch(store.as_ref(), now, PRUNE_BATCH)?;
            total += pruned;
            if pruned < PRUNE_BATCH {
                return Ok(total);
            }
        }
    })
    .await
    .map_err(|e| RegistryError::Internal(format!("pruning {} stopped: {e}", what.name())))?
}

/// Prunes every kind now and then every `every`, until the task is aborted.
pub fn spawn(registry: Arc<Registry>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for what in Prunable::ALL {
                match prune(&registry, what, SystemTime::now()).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned {}", what.name()),
                    Err(e) => tracing::warn!(error = %e, "pruning {} failed", what.name()),
                }
            }
        }
    })
}

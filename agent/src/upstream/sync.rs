//! The sync loop: consumes the server's Sync stream over mTLS, hands each change to the cache
//! manager, reconnects with backoff and resumes from the last applied revision. It also records
//! when the agent last heard from the server, for the task-status feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use mandate_proto::agent::SyncRequest;
use rand::Rng;

use super::convert;
use super::node::{NodeError, Upstream};
use crate::cache::manager::{CacheHandle, ManagerEvent};

/// A stream silent this long is considered dead (the server sends heartbeats every few s).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// Runs the sync loop until the server refuses this agent for good; returns why.
pub async fn run(
    upstream: Arc<Upstream>,
    cache: CacheHandle,
    last_heard_ms: Arc<AtomicI64>,
) -> NodeError {
    let mut backoff = Duration::from_millis(250);
    loop {
        if let Ok((_, not_after)) = upstream.validity()
            && SystemTime::now() >= not_after
        {
            return NodeError::Expired(humantime::format_rfc3339_seconds(not_after).to_string());
        }
        let since = cache.revision.load(Ordering::SeqCst);
        match upstream
            .client()
            .sync(SyncRequest {
                since_revision: since,
            })
            .await
        {
            Ok(response) => {
                tracing::info!(since_revision = since, "sync stream open");
                if cache.events.send(ManagerEvent::Connected).is_err() {
                    return NodeError::Unreachable("cache manager stopped".into());
                }
                let mut stream = response.into_inner();
                loop {
                    match tokio::time::timeout(SILENCE_LIMIT, stream.message()).await {
                        Ok(Ok(Some(message))) => {
                            backoff = Duration::from_millis(250);
                            // The agent's own clock, not the server's: verifiers on this
                            // node compare `as_of` with the same local clock, so a skewed
                            // server clock must not make them fail closed (DESIGN 3.4).
                            last_heard_ms.store(unix_ms(SystemTime::now()), Ordering::SeqCst);
                            let revision = message.revision;
                            for event in convert::sync_message(message) {
                                if cache
                                    .events
                                    .send(ManagerEvent::Sync { event, revision })
                                    .is_err()
                                {
                                    return NodeError::Unreachable("cache manager stopped".into());
                                }
                            }
                        }
                        Ok(Ok(None)) => {
                            tracing::warn!("server ended the sync stream");
                            break;
                        }
                        Ok(Err(status)) => {
                            let error = NodeError::from_status(&status);
                            if error.is_fatal() {
                                return error;
                            }
                            tracing::warn!(error = %error, "sync stream failed");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!("sync stream silent for too long; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                let error = NodeError::from_status(&status);
                if error.is_fatal() {
                    return error;
                }
                tracing::warn!(error = %error, "cannot open sync stream");
            }
        }
        let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Milliseconds since the epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

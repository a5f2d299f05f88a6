//! JWT-SVIDs minted by the server, cached per (entry, SPIFFE ID, audience set) until half
//! their life, so a warm `FetchJWTSVID` makes no server call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

/// The boxed future of [`JwtMinter::mint`]: the token and its `exp` (unix seconds).
pub type MintFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(String, i64), tonic::Status>> + Send + 'a>>;

/// What the cache needs from the server: mint one JWT-SVID for an entry.
pub trait JwtMinter: Send + Sync + 'static {
    /// Mints a token for `entry_id` and `audience`.
    fn mint(&self, entry_id: String, audience: Vec<String>) -> MintFuture<'_>;
}

/// The cache key: entry, SPIFFE ID, sorted deduplicated audiences.
pub type JwtKey = (String, String, Vec<String>);

#[derive(Debug, Clone)]
struct CachedJwt {
    token: String,
    refresh_at: SystemTime,
    expires_at: SystemTime,
}

/// The cache.
#[derive(Debug, Default)]
pub struct JwtCache {
    tokens: RwLock<HashMap<JwtKey, CachedJwt>>,
}

impl JwtCache {
    /// The key for an entry and a requested audience list.
    pub fn key(entry_id: &str, spiffe_id: &str, audience: &[String]) -> JwtKey {
        let mut audience = audience.to_vec();
        audience.sort();
        audience.dedup();
        (entry_id.to_owned(), spiffe_id.to_owned(), audience)
    }

    /// A token that needs no refresh at `now`.
    pub fn fresh(&self, key: &JwtKey, now: SystemTime) -> Option<String> {
        let tokens = self.tokens.read().ok()?;
        let hit = tokens.get(key)?;
        (now < hit.refresh_at).then(|| hit.token.clone())
    }

    /// A token that has not expired at `now` (used when the server cannot be reached).
    pub fn unexpired(&self, key: &JwtKey, now: SystemTime) -> Option<String> {
        let tokens = self.tokens.read().ok()?;
        let hit = tokens.get(key)?;
        (now < hit.expires_at).then(|| hit.token.clone())
    }

    /// Stores a token minted at `now` that expires at `exp_unix`.
    pub fn insert(&self, key: JwtKey, token: String, exp_unix: i64, now: SystemTime) {
        let expires_at = mandate_core::time::from_unix_seconds(exp_unix);
        let life = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
        let refresh_at = now + life / 2;
        if let Ok(mut tokens) = self.tokens.write() {
            if tokens.len() >= 4096 {
                tokens.retain(|_, t| t.expires_at > now);
            }
            tokens.insert(
                key,
                CachedJwt {
                    token,
                    refresh_at,
                    expires_at,
                },
            );
        }
    }

    /// Forgets every token of entries that are not in `live`.
    pub fn retain_entries(&self, live: &dyn Fn(&str) -> bool) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.retain(|(entry, _, _), _| live(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_until_half_life_and_served_until_expiry() {
        let cache = JwtCache::default();
        let now = mandate_core::time::from_unix_seconds(1_000_000);
        let key = JwtCache::key("e", "spiffe://td/w", &["b".into(), "a".into(), "a".into()]);
        assert_eq!(key.2, vec!["a", "b"]);
        cache.insert(key.clone(), "tok".into(), 1_000_100, now);
        assert_eq!(
            cache.fresh(&key, now + Duration::from_secs(49)).as_deref(),
            Some("tok")
        );
        assert_eq!(cache.fresh(&key, now + Duration::from_secs(50)), None);
        assert_eq!(
            cache
                .unexpired(&key, now + Duration::from_secs(99))
                .as_deref(),
            Some("tok")
        );
        assert_eq!(cache.unexpired(&key, now + Duration::from_secs(100)), None);
        cache.retain_entries(&|e| e != "e");
        assert_eq!(cache.unexpired(&key, now), None);
    }
}

//! The JWT bundle: a JWKS whose every key has a `kid`, plus `spiffe_sequence` and
//! `spiffe_refresh_hint` ([SPIFFE Trust Domain and Bundle, section 4](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format)).

use std::time::Duration;

use serde_json::{Value, json};

use super::JwtError;

/// A JWKS bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Value>,
    sequence: u64,
    refresh_hint: Duration,
}

impl Jwks {
    /// Builds a bundle from JWKs (e.g. [`super::JwtKey::public_jwk`]).
    pub fn new(keys: Vec<Value>, sequence: u64, refresh_hint: Duration) -> Self {
        Self {
            keys,
            sequence,
            refresh_hint,
        }
    }

    /// The keys.
    pub fn keys(&self) -> &[Value] {
        &self.keys
    }

    /// `spiffe_sequence`.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// `spiffe_refresh_hint`.
    pub fn refresh_hint(&self) -> Duration {
        self.refresh_hint
    }

    /// The key with this `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&Value> {
        self.keys
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
    }

    /// The bundle as JSON: `{"keys":[..],"spiffe_sequence":N,"spiffe_refresh_hint":S}`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        json!({
            "keys": self.keys,
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": self.refresh_hint.as_secs(),
        })
        .to_string()
        .into_bytes()
    }

    /// Parses a bundle. Keys without a `kid` are dropped only if they are `x509-svid` keys;
    /// a `jwt-svid` key (or one without `use`) must have a `kid`.
    ///
    /// # Errors
    /// [`JwtError::Jwks`] when it is not JSON, `keys` is missing or not an array of objects,
    /// or a JWT key has no `kid`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, JwtError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| JwtError::Jwks(e.to_string()))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwtError::Jwks("missing keys array".into()))?;
        for key in keys {
            if !key.is_object() {
                return Err(JwtError::Jwks("a key is not an object".into()));
            }
            let is_x509 = key.get("use").and_then(Value::as_str) == Some("x509-svid");
            if !is_x509
                && key
                    .get("kid")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                return Err(JwtError::Jwks("a jwt-svid key has no kid".into()));
            }
        }
        let sequence = value
            .get("spiffe_sequence")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let refresh_hint = Duration::from_secs(
            value
                .get("spiffe_refresh_hint")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        Ok(Self {
            keys: keys.clone(),
            sequence,
            refresh_hint,
        })
    }
}

//! JWT-SVIDs (DESIGN 3.1, 3.3): ES256 minting and verification with aws-lc-rs directly, and
//! the JWKS bundle ([JWT-SVID.md](https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md)).

mod audience;
mod jwks;
mod verify;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use spiffe::SpiffeId;

use crate::delegation::{Delegation, DelegationError};
pub use audience::{
    AudienceError, MAX_AUDIENCE_LEN, MAX_AUDIENCE_TOTAL, MAX_AUDIENCES, check_audience,
};
pub use jwks::Jwks;
pub use verify::{MAX_TOKEN_LEN, verify};

/// Errors from minting or verifying JWT-SVIDs and from JWKS handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Key generation, loading or signing failed.
    #[error("jwt key error: {0}")]
    Key(String),
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The token is not three base64url JSON parts, or a member has the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The `alg` is not ES256 or ES384 (e.g. `none` or `HS256`).
    #[error("unsupported jwt algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The `typ` header is neither `JWT` nor `JOSE`.
    #[error("unsupported jwt typ {0:?}")]
    BadType(String),
    /// The header has no `kid`.
    #[error("token header has no kid")]
    MissingKid,
    /// No key in the JWKS has this `kid` (or it does not fit the algorithm).
    #[error("no usable key with kid {0:?} in the bundle")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("jwt signature does not verify")]
    BadSignature,
    /// `exp` is not after now.
    #[error("token has expired")]
    Expired,
    /// The token has no audience, or the expected one is not among them.
    #[error("token audience does not include {0:?}")]
    AudienceMismatch(String),
    /// The audience list to mint or check is empty.
    #[error("audience is empty")]
    EmptyAudience,
    /// `sub` is not a SPIFFE ID.
    #[error("token subject is not a SPIFFE ID: {0}")]
    BadSubject(String),
    /// The `delegation` claim does not parse.
    #[error("delegation claim: {0}")]
    Delegation(DelegationError),
    /// The JWKS is malformed.
    #[error("malformed jwks: {0}")]
    Jwks(String),
}

/// The claims of a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvidClaims {
    /// The workload's SPIFFE ID.
    pub sub: SpiffeId,
    /// The audiences (at least one).
    pub aud: Vec<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issue time, unix seconds (0 when a verified token has none).
    pub iat: i64,
    /// The delegation, for an entry bound to a task.
    pub delegation: Option<Delegation>,
}

/// An ES256 signing key with its key ID.
#[derive(Debug)]
pub struct JwtKey {
    key: EcdsaKeyPair,
    kid: String,
}

impl JwtKey {
    /// Generates a fresh P-256 key with a random `kid`.
    ///
    /// # Errors
    /// [`JwtError::Key`] when the crypto provider fails.
    pub fn generate() -> Result<Self, JwtError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self { key, kid })
    }

    /// Loads a PKCS#8 DER P-256 key with its `kid`.
    ///
    /// # Errors
    /// [`JwtError::Key`] when the key does not parse or the kid is empty.
    pub fn from_pkcs8_der(der: &[u8], kid: impl Into<String>) -> Result<Self, JwtError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(JwtError::Key("kid is empty".into()));
        }
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Self { key, kid })
    }

    /// The PKCS#8 DER of the private key (secret: mode 0600, never log).
    ///
    /// # Errors
    /// [`JwtError::Key`] when serialization fails.
    pub fn pkcs8_der(&self) -> Result<Vec<u8>, JwtError> {
        self.key
            .to_pkcs8v1()
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| JwtError::Key(e.to_string()))
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK: `{"kty":"EC","crv":"P-256","x","y","kid","use":"jwt-svid"}`.
    pub fn public_jwk(&self) -> Value {
        // An uncompressed P-256 point is 0x04 || X (32 bytes) || Y (32 bytes).
        let point = self.key.public_key().as_ref();
        let coords = point.get(1..).unwrap_or(&[]);
        let (x, y) = coords.split_at(coords.len() / 2);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": self.kid,
            "use": "jwt-svid",
        })
    }

    /// The SubjectPublicKeyInfo DER of the public key.
    ///
    /// # Errors
    /// [`JwtError::Key`] when encoding fails.
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, JwtError> {
        self.key
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| JwtError::Key(e.to_string()))
    }

    /// Mints a JWT-SVID: header `{"alg":"ES256","kid":..,"typ":"JWT"}`, claims `sub`, `aud`
    /// (an array), `exp`, `iat` and `delegation` when present.
    ///
    /// # Errors
    /// [`JwtError::EmptyAudience`] without an audience, [`JwtError::Key`] when signing fails.
    pub fn mint(&self, claims: &JwtSvidClaims) -> Result<String, JwtError> {
        if claims.aud.is_empty() || claims.aud.iter().any(String::is_empty) {
            return Err(JwtError::EmptyAudience);
        }
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let mut body = Map::new();
        body.insert("sub".into(), Value::String(claims.sub.to_string()));
        body.insert("aud".into(), json!(claims.aud));
        body.insert("exp".into(), json!(claims.exp));
        body.insert("iat".into(), json!(claims.iat));
        if let Some(d) = &claims.delegation {
            body.insert("delegation".into(), d.to_claim());
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(body).to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests;

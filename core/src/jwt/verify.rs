//! JWT-SVID verification against a JWKS: ES256/ES384 only, `kid` required, signature, expiry,
//! audience, SPIFFE ID subject and the delegation claim.

use std::time::SystemTime;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Jwks, JwtError, JwtSvidClaims};
use crate::delegation::Delegation;
use crate::ids::parse_spiffe_id;
use crate::time::unix_seconds;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verifies a JWT-SVID against `jwks` for `audience` at `now` and returns its claims.
///
/// # Errors
/// [`JwtError::UnsupportedAlgorithm`] for anything but ES256/ES384 (`none`, `HS256`, ...),
/// [`JwtError::MissingKid`] / [`JwtError::UnknownKid`], [`JwtError::BadSignature`],
/// [`JwtError::Expired`] when `exp <= now`, [`JwtError::AudienceMismatch`],
/// [`JwtError::BadSubject`], [`JwtError::Delegation`], [`JwtError::Malformed`].
pub fn verify(
    token: &str,
    jwks: &Jwks,
    audience: &str,
    now: SystemTime,
) -> Result<JwtSvidClaims, JwtError> {
    if audience.is_empty() {
        return Err(JwtError::EmptyAudience);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(body_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let header = decode_json(header_b64, "header")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::Malformed("header has no alg".into()))?;
    let (verify_alg, crv, coord_len): (&'static dyn VerificationAlgorithm, &str, usize) = match alg
    {
        "ES256" => (&ECDSA_P256_SHA256_FIXED, "P-256", 32),
        "ES384" => (&ECDSA_P384_SHA384_FIXED, "P-384", 48),
        other => return Err(JwtError::UnsupportedAlgorithm(other.to_owned())),
    };
    if let Some(typ) = header.get("typ") {
        match typ.as_str() {
            Some("JWT" | "JOSE") => {}
            _ => return Err(JwtError::BadType(typ.to_string())),
        }
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::MissingKid)?;
    let jwk = jwks
        .find(kid)
        .ok_or_else(|| JwtError::UnknownKid(kid.to_owned()))?;
    let public_key =
        ec_point(jwk, crv, coord_len).ok_or_else(|| JwtError::UnknownKid(kid.to_owned()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Malformed("signature is not base64url".into()))?;
    let signing_input = &token[..header_b64.len() + 1 + body_b64.len()];
    UnparsedPublicKey::new(verify_alg, &public_key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;

    let body = decode_json(body_b64, "claims")?;
    let exp = body
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| JwtError::Malformed("claims have no integer exp".into()))?;
    if exp <= unix_seconds(now) {
        return Err(JwtError::Expired);
    }
    let aud = match body.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| JwtError::Malformed("aud holds a non-string".into()))?,
        _ => return Err(JwtError::AudienceMismatch(audience.to_owned())),
    };
    if !aud.iter().any(|a| a == audience) {
        return Err(JwtError::AudienceMismatch(audience.to_owned()));
    }
    let sub = body
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::BadSubject("missing".into()))?;
    let sub = parse_spiffe_id(sub).map_err(|e| JwtError::BadSubject(e.to_string()))?;
    let iat = match body.get("iat") {
        None => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| JwtError::Malformed("iat is not an integer".into()))?,
    };
    let delegation = body
        .get("delegation")
        .map(Delegation::from_claim)
        .transpose()
        .map_err(JwtError::Delegation)?;
    Ok(JwtSvidClaims {
        sub,
        aud,
        exp,
        iat,
        delegation,
    })
}

fn decode_json(part: &str, what: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| JwtError::Malformed(format!("{what} is not JSON")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(JwtError::Malformed(format!("{what} is not a JSON object")))
    }
}

/// The uncompressed EC point of a JWK, when it is an EC key on `crv` usable for JWT-SVIDs.
fn ec_point(jwk: &Value, crv: &str, coord_len: usize) -> Option<Vec<u8>> {
    if jwk.get("kty")?.as_str()? != "EC" || jwk.get("crv")?.as_str()? != crv {
        return None;
    }
    if let Some(usage) = jwk.get("use")
        && usage.as_str()? != "jwt-svid"
    {
        return None;
    }
    let x = URL_SAFE_NO_PAD.decode(jwk.get("x")?.as_str()?).ok()?;
    let y = URL_SAFE_NO_PAD.decode(jwk.get("y")?.as_str()?).ok()?;
    if x.len() != coord_len || y.len() != coord_len {
        return None;
    }
    let mut point = Vec::with_capacity(1 + 2 * coord_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}

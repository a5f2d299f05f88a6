//! `ValidateJWTSVID`: checks a token against the trust domain's JWKS with
//! `mandate_core::jwt::verify` and turns its claims into a protobuf `Struct`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::cache::closed::ClosedTasks;
use mandate_core::jwt::{Jwks, JwtError, verify};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The agent holds no JWKS yet or it does not parse.
    #[error("no usable JWT bundle: {0}")]
    Bundle(JwtError),
    /// The token failed validation.
    #[error("invalid JWT-SVID: {0}")]
    Token(JwtError),
    /// The token's delegation names a task that is closed or expired (DESIGN 3.4).
    #[error("invalid JWT-SVID: task {0} is closed")]
    TaskClosed(String),
}

/// Validates `token` for `audience` at `now`; returns its SPIFFE ID and claims.
///
/// # Errors
/// When the JWKS is unusable, the token fails any check of `mandate_core::jwt::verify`, or
/// its delegation names a task in `closed_tasks` (the trust domain's closed set, so a JWT-SVID
/// minted on any node is refused here once its task closed, DESIGN 3.4).
pub fn validate(
    token: &str,
    jwks: &[u8],
    audience: &str,
    closed_tasks: &ClosedTasks,
    now: SystemTime,
) -> Result<(String, Struct), ClaimsError> {
    let jwks = Jwks::from_json_bytes(jwks).map_err(ClaimsError::Bundle)?;
    let claims = verify(token, &jwks, audience, now).map_err(ClaimsError::Token)?;
    if let Some(delegation) = &claims.delegation {
        let task = delegation.task.id.as_str();
        if closed_tasks.contains(task) {
            return Err(ClaimsError::TaskClosed(task.to_string()));
        }
    }
    let mut json = serde_json::Map::new();
    json.insert("sub".into(), claims.sub.to_string().into());
    json.insert("aud".into(), claims.aud.clone().into());
    json.insert("exp".into(), claims.exp.into());
    json.insert("iat".into(), claims.iat.into());
    if let Some(delegation) = &claims.delegation {
        json.insert("delegation".into(), delegation.to_claim());
    }
    Ok((claims.sub.to_string(), to_struct(json)))
}

/// Converts a JSON object into a protobuf `Struct`.
pub fn to_struct(object: serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: object
            .into_iter()
            .map(|(k, v)| (k, to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn to_value(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_becomes_struct() {
        let json = serde_json::json!({"a": [1, "x", true, null], "b": {"c": 2}});
        let serde_json::Value::Object(map) = json else {
            unreachable!()
        };
        let s = to_struct(map);
        let Some(Kind::ListValue(list)) = &s.fields["a"].kind else {
            panic!("not a list")
        };
        assert_eq!(list.values.len(), 4);
        let Some(Kind::StructValue(inner)) = &s.fields["b"].kind else {
            panic!("not a struct")
        };
        assert_eq!(inner.fields["c"].kind, Some(Kind::NumberValue(2.0)));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(
            validate(
                "x.y.z",
                b"{\"keys\":[]}",
                "aud",
                &ClosedTasks::default(),
                SystemTime::now()
            )
            .is_err()
        );
        assert!(
            validate(
                "x.y.z",
                b"not json",
                "aud",
                &ClosedTasks::default(),
                SystemTime::now()
            )
            .is_err()
        );
    }
}

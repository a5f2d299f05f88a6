//! The principal an agent acts for: `user:<id>`, `app:<id>` or a SPIFFE ID (DESIGN 3.3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{IdError, parse_spiffe_id};

/// Longest principal id, in bytes (DESIGN 3.3: `UTF8String (SIZE (1..256))`).
pub const MAX_PRINCIPAL_ID_LEN: usize = 256;

/// The kind of a principal; ASN.1 `ENUMERATED { user(0), application(1), workload(2) }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A human user, written `user:<id>`.
    User,
    /// An application, written `app:<id>`.
    Application,
    /// A workload, written as its SPIFFE ID.
    Workload,
}

impl PrincipalKind {
    /// The JSON name: `user`, `application` or `workload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Application => "application",
            Self::Workload => "workload",
        }
    }

    /// Parses the JSON name.
    ///
    /// # Errors
    /// [`PrincipalError::UnknownKind`] for anything but `user`, `application`, `workload`.
    pub fn from_name(name: &str) -> Result<Self, PrincipalError> {
        match name {
            "user" => Ok(Self::User),
            "application" => Ok(Self::Application),
            "workload" => Ok(Self::Workload),
            other => Err(PrincipalError::UnknownKind(other.to_owned())),
        }
    }
}

/// Errors from parsing a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrincipalError {
    /// The text is not `user:<id>`, `app:<id>` or a SPIFFE ID.
    #[error("principal {0:?} is not user:<id>, app:<id> or a SPIFFE ID")]
    Malformed(String),
    /// The id is empty.
    #[error("principal id is empty")]
    EmptyId,
    /// The id is longer than 256 bytes.
    #[error("principal id is longer than {MAX_PRINCIPAL_ID_LEN} bytes")]
    TooLong,
    /// The id holds a control character.
    #[error("principal id contains a control character")]
    ControlChar,
    /// A workload principal is not a valid SPIFFE ID.
    #[error("workload principal is not a valid SPIFFE ID: {0}")]
    SpiffeId(IdError),
    /// An unknown principal kind name.
    #[error("unknown principal kind {0:?}: expected user, application or workload")]
    UnknownKind(String),
}

/// A validated principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    kind: PrincipalKind,
    id: String,
}

impl Principal {
    /// Builds a principal from its kind and id. For [`PrincipalKind::Workload`] the id is the
    /// full SPIFFE ID text and must parse as one.
    ///
    /// # Errors
    /// When the id is empty, over 256 bytes, holds a control character, or (workload) is not
    /// a SPIFFE ID.
    pub fn new(kind: PrincipalKind, id: impl Into<String>) -> Result<Self, PrincipalError> {
        let id = id.into();
        if id.is_empty() {
            return Err(PrincipalError::EmptyId);
        }
        if id.len() > MAX_PRINCIPAL_ID_LEN {
            return Err(PrincipalError::TooLong);
        }
        if id.chars().any(char::is_control) {
            return Err(PrincipalError::ControlChar);
        }
        if kind == PrincipalKind::Workload {
            let parsed = parse_spiffe_id(&id).map_err(PrincipalError::SpiffeId)?;
            return Ok(Self {
                kind,
                id: parsed.to_string(),
            });
        }
        Ok(Self { kind, id })
    }

    /// The principal's kind.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The principal's id (for a workload, its SPIFFE ID text).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PrincipalKind::User => write!(f, "user:{}", self.id),
            PrincipalKind::Application => write!(f, "app:{}", self.id),
            PrincipalKind::Workload => f.write_str(&self.id),
        }
    }
}

impl FromStr for Principal {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(id) = s.strip_prefix("user:") {
            Self::new(PrincipalKind::User, id)
        } else if let Some(id) = s.strip_prefix("app:") {
            Self::new(PrincipalKind::Application, id)
        } else if s.starts_with("spiffe://") {
            Self::new(PrincipalKind::Workload, s)
        } else {
            Err(PrincipalError::Malformed(s.to_owned()))
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        let id_256 = "a".repeat(256);
        let id_257 = "a".repeat(257);
        let cases: Vec<(String, Option<(PrincipalKind, &str)>)> = vec![
            (
                "user:alice@example.org".into(),
                Some((PrincipalKind::User, "alice@example.org")),
            ),
            (
                "app:billing".into(),
                Some((PrincipalKind::Application, "billing")),
            ),
            (
                "spiffe://example.org/agent/a".into(),
                Some((PrincipalKind::Workload, "spiffe://example.org/agent/a")),
            ),
            (
                format!("user:{id_256}"),
                Some((PrincipalKind::User, id_256.as_str())),
            ),
            (format!("user:{id_257}"), None),
            ("user:".into(), None),
            ("app:".into(), None),
            ("user:a\nb".into(), None),
            ("alice".into(), None),
            ("group:x".into(), None),
            ("spiffe://".into(), None),
            ("spiffe://bad domain/x".into(), None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Principal>();
            match want {
                Some((kind, id)) => {
                    let p = got.expect("valid principal");
                    assert_eq!((p.kind(), p.id()), (kind, id), "{text:?}");
                    assert_eq!(p.to_string(), text);
                }
                None => assert!(got.is_err(), "{text:?} should be refused"),
            }
        }
    }

    #[test]
    fn principal_over_256_bytes_is_refused() {
        // 129 two-byte characters: 258 bytes but only 129 chars; the limit is in bytes.
        let id = "é".repeat(129);
        assert_eq!(
            Principal::new(PrincipalKind::User, id),
            Err(PrincipalError::TooLong)
        );
    }

    #[test]
    fn kind_names() {
        for kind in [
            PrincipalKind::User,
            PrincipalKind::Application,
            PrincipalKind::Workload,
        ] {
            assert_eq!(PrincipalKind::from_name(kind.as_str()), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!(PrincipalKind::from_name("app").is_err());
    }

    /// Any valid principal, for property tests here and in the delegation codec.
    pub(crate) fn principal_strategy() -> impl Strategy<Value = Principal> {
        prop_oneof![
            "[^\\p{Cc}]{1,64}".prop_map(|id| Principal::new(PrincipalKind::User, id)),
            "[^\\p{Cc}]{1,64}".prop_map(|id| Principal::new(PrincipalKind::Application, id)),
            "[a-z0-9.-]{1,20}(/[a-zA-Z0-9._-]{1,10}){0,4}"
                .prop_filter("no dot segments", |s| !s
                    .split('/')
                    .any(|p| p == "." || p == ".."))
                .prop_map(|p| Principal::new(PrincipalKind::Workload, format!("spiffe://{p}"))),
        ]
        .prop_filter_map("valid only", |r| r.ok())
    }

    proptest! {
        #[test]
        fn text_round_trip(p in principal_strategy()) {
            prop_assert_eq!(p.to_string().parse::<Principal>(), Ok(p.clone()));
            let json = serde_json::to_string(&p).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<Principal>(&json).expect("deserialize"), p);
        }
    }
}

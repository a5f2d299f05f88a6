//! Identifier newtypes: entry and task IDs, and the length-checked SPIFFE ID parser.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use spiffe::SpiffeId;

/// Longest SPIFFE ID accepted, in bytes ([SPIFFE-ID.md section 2.3](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#23-maximum-spiffe-id-length)).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Longest entry or task ID, in characters.
pub const MAX_ID_LEN: usize = 64;

/// Errors from parsing identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The identifier is empty.
    #[error("identifier is empty")]
    Empty,
    /// The identifier is longer than allowed.
    #[error("identifier is longer than {max} characters")]
    TooLong {
        /// The maximum length.
        max: usize,
    },
    /// The identifier holds a character outside the allowed set.
    #[error("identifier contains the character {0:?}, which is not allowed")]
    BadChar(char),
    /// A SPIFFE ID did not parse.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(String),
    /// A SPIFFE ID whose scheme or trust domain is not lowercase.
    #[error("invalid SPIFFE ID {0:?}: the scheme and trust domain must be lowercase")]
    NotLowercase(String),
}

/// The path prefix reserved for the server's and the agents' own identities (DESIGN 3.7).
pub const RESERVED_PATH: &str = "/mandate";

/// The path prefix of every agent's SPIFFE ID (DESIGN 3.5, 3.7).
pub const AGENT_PATH: &str = "/mandate/agent/";

/// The path of the server's own SPIFFE ID; with several servers, `/mandate/server/<name>`.
pub const SERVER_PATH: &str = "/mandate/server";

/// True when `id` is `/mandate` or lies under `/mandate/`, the paths no registration entry may
/// take (DESIGN 3.7, "Input rules").
pub fn is_reserved(id: &SpiffeId) -> bool {
    let path = id.path();
    path == RESERVED_PATH
        || path
            .strip_prefix(RESERVED_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// True when `id` lies under `/mandate/agent/`: the only IDs agents are given and the only
/// client certificates the agent API accepts (DESIGN 3.7).
pub fn is_agent_id(id: &SpiffeId) -> bool {
    id.path()
        .strip_prefix(AGENT_PATH)
        .is_some_and(|rest| !rest.is_empty())
}

/// True when `id` is `/mandate/server` or `/mandate/server/<name>` (one segment): the IDs an
/// agent accepts from its server (DESIGN 3.7, 4).
pub fn is_server_id(id: &SpiffeId) -> bool {
    match id.path().strip_prefix(SERVER_PATH) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|name| !name.is_empty() && !name.contains('/')),
        None => false,
    }
}

/// Parses a SPIFFE ID with the `spiffe` crate and also enforces the 2048-byte limit of
/// [SPIFFE-ID.md section 2.3](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#23-maximum-spiffe-id-length),
/// which the crate's parser does not check, and the lowercase scheme and trust domain of
/// [section 2.1](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#21-trust-domain),
/// which the crate accepts in any case and folds to lowercase.
///
/// # Errors
/// [`IdError::TooLong`] over 2048 bytes, [`IdError::SpiffeId`] when the text is not a SPIFFE ID,
/// [`IdError::NotLowercase`] when its scheme or trust domain holds an uppercase letter.
pub fn parse_spiffe_id(text: &str) -> Result<SpiffeId, IdError> {
    if text.len() > MAX_SPIFFE_ID_LEN {
        return Err(IdError::TooLong {
            max: MAX_SPIFFE_ID_LEN,
        });
    }
    let id = SpiffeId::new(text).map_err(|e| IdError::SpiffeId(e.to_string()))?;
    // The crate keeps the path as written and lowercases only the scheme and trust domain, so
    // the canonical text differs from the input exactly when one of those had an uppercase
    // letter.
    if id.to_string() != text {
        return Err(IdError::NotLowercase(text.to_owned()));
    }
    Ok(id)
}

fn check_id(text: &str, extra: &[char]) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    match text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(c)))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier.
            ///
            /// # Errors
            /// When the text is empty, longer than 64 characters, or holds a character outside
            /// the allowed set.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                check_id(&text, $extra)?;
                Ok(Self(text))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_newtype!(
    /// The ID of a registration entry: 1 to 64 characters of `[A-Za-z0-9._-]`.
    EntryId,
    &[]
);

id_newtype!(
    /// The ID of a task: 1 to 64 characters of `[A-Za-z0-9._:-]`. Unique forever.
    TaskId,
    &[':']
);

impl EntryId {
    /// A fresh random entry ID (a UUID v4).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl TaskId {
    /// A fresh random task ID: `task-` and 32 hex digits of randomness.
    pub fn generate() -> Self {
        Self(format!("task-{}", uuid::Uuid::new_v4().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules_table() {
        let long = "a".repeat(65);
        let max = "a".repeat(64);
        let cases: &[(&str, bool, bool)] = &[
            // (text, valid entry id, valid task id)
            ("abc-123_x.y", true, true),
            (&max, true, true),
            (&long, false, false),
            ("", false, false),
            ("a:b", false, true),
            ("a b", false, false),
            ("a/b", false, false),
            ("é", false, false),
        ];
        for (text, entry_ok, task_ok) in cases {
            assert_eq!(EntryId::new(*text).is_ok(), *entry_ok, "entry id {text:?}");
            assert_eq!(TaskId::new(*text).is_ok(), *task_ok, "task id {text:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TaskId::generate();
        let b = TaskId::generate();
        assert_ne!(a, b);
        assert_eq!(TaskId::new(a.as_str()).as_ref(), Ok(&a));
        let e = EntryId::generate();
        assert_eq!(EntryId::new(e.as_str()).as_ref(), Ok(&e));
    }

    #[test]
    fn serde_validates() {
        let id: TaskId = serde_json::from_str("\"task-1\"").expect("valid id");
        assert_eq!(id.as_str(), "task-1");
        assert!(serde_json::from_str::<TaskId>("\"bad id\"").is_err());
        assert_eq!(serde_json::to_string(&id).expect("serialize"), "\"task-1\"");
    }

    #[test]
    fn spiffe_id_length_limit() {
        let prefix = "spiffe://example.org/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(parse_spiffe_id(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(over.len(), 2049);
        assert_eq!(
            parse_spiffe_id(&over),
            Err(IdError::TooLong {
                max: MAX_SPIFFE_ID_LEN
            })
        );
        assert!(matches!(
            parse_spiffe_id("http://x/y"),
            Err(IdError::SpiffeId(_))
        ));
    }

    #[test]
    fn spiffe_id_syntax_table() {
        // (text, accepted): SPIFFE-ID.md 2.1 (lowercase trust domain) and 2.2 (path segments).
        let cases: &[(&str, bool)] = &[
            ("spiffe://example.org/ai/buyer", true),
            ("spiffe://example.org/Ai/Buyer", true),
            ("spiffe://ex-ample_1.org/a", true),
            ("spiffe://EXAMPLE.org/ai", false),
            ("spiffe://Example.org", false),
            ("SPIFFE://example.org/ai", false),
            ("Spiffe://example.org/ai", false),
            ("spiffe://example.org/a//b", false),
            ("spiffe://example.org/a/", false),
            ("spiffe://example.org/./a", false),
            ("spiffe://example.org/a/..", false),
            ("spiffe://example.org/a b", false),
            ("spiffe://example.org:8080/a", false),
            ("spiffe://user@example.org/a", false),
            ("spiffe://example.org/a?q", false),
            ("spiffe://example.org/a#f", false),
            ("spiffe:///a", false),
            ("spiffe://", false),
            ("", false),
        ];
        for (text, ok) in cases {
            assert_eq!(parse_spiffe_id(text).is_ok(), *ok, "{text:?}");
        }
        assert!(matches!(
            parse_spiffe_id("spiffe://EXAMPLE.org/ai"),
            Err(IdError::NotLowercase(_))
        ));
    }

    #[test]
    fn reserved_paths_table() {
        // (path, reserved, agent, server)
        let cases: &[(&str, bool, bool, bool)] = &[
            ("/ai/buyer", false, false, false),
            ("/mandatory", false, false, false),
            ("/mandate-x/y", false, false, false),
            ("/x/mandate/agent/a", false, false, false),
            ("/mandate", true, false, false),
            ("/mandate/other", true, false, false),
            ("/mandate/agent", true, false, false),
            ("/mandate/agent/join_token/abc", true, true, false),
            ("/mandate/agent/node-a", true, true, false),
            ("/mandate/agents/a", true, false, false),
            ("/mandate/server", true, false, true),
            ("/mandate/server/s1", true, false, true),
            ("/mandate/server/s1/x", true, false, false),
            ("/mandate/servers", true, false, false),
        ];
        for (path, reserved, agent, server) in cases {
            let id = parse_spiffe_id(&format!("spiffe://example.org{path}")).expect("valid id");
            assert_eq!(is_reserved(&id), *reserved, "reserved {path}");
            assert_eq!(is_agent_id(&id), *agent, "agent {path}");
            assert_eq!(is_server_id(&id), *server, "server {path}");
            // What an agent accepts as its server: only these, and only of its trust domain.
            let td = spiffe::TrustDomain::new("example.org").expect("valid td");
            let matcher = crate::tls::SpiffeIdMatcher::ServerOf(td);
            assert_eq!(matcher.matches(&id), *server, "matcher {path}");
            let elsewhere =
                parse_spiffe_id(&format!("spiffe://other.org{path}")).expect("valid id");
            assert!(!matcher.matches(&elsewhere), "other td {path}");
        }
    }
}

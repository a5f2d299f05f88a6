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
}

/// Parses a SPIFFE ID with the `spiffe` crate and also enforces the 2048-byte limit of
/// [SPIFFE-ID.md section 2.3](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md#23-maximum-spiffe-id-length),
/// which the crate's parser does not check.
///
/// # Errors
/// [`IdError::TooLong`] over 2048 bytes, [`IdError::SpiffeId`] when the text is not a SPIFFE ID.
pub fn parse_spiffe_id(text: &str) -> Result<SpiffeId, IdError> {
    if text.len() > MAX_SPIFFE_ID_LEN {
        return Err(IdError::TooLong {
            max: MAX_SPIFFE_ID_LEN,
        });
    }
    SpiffeId::new(text).map_err(|e| IdError::SpiffeId(e.to_string()))
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
}

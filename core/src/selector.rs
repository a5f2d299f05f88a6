//! Unix workload selectors (DESIGN 3.6) and the entry-matching rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of a unix selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SelectorKind {
    /// `unix:uid:N`, a numeric user ID.
    Uid,
    /// `unix:gid:N`, a numeric group ID.
    Gid,
    /// `unix:user:NAME`, a user name.
    User,
    /// `unix:group:NAME`, a group name.
    Group,
    /// `unix:path:/abs/exe`, the executable's absolute path.
    Path,
    /// `unix:sha256:HEX`, the SHA-256 digest of the executable.
    Sha256,
}

impl SelectorKind {
    /// Every kind, in display order.
    pub const ALL: [Self; 6] = [
        Self::Uid,
        Self::Gid,
        Self::User,
        Self::Group,
        Self::Path,
        Self::Sha256,
    ];

    /// The kind as written in the selector text, e.g. `uid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uid => "uid",
            Self::Gid => "gid",
            Self::User => "user",
            Self::Group => "group",
            Self::Path => "path",
            Self::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for SelectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SelectorKind {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| SelectorError::UnknownKind(s.to_owned()))
    }
}

/// Errors from parsing a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text is not of the form `type:kind:value`.
    #[error("selector {0:?} is not of the form unix:<kind>:<value>")]
    Malformed(String),
    /// The selector type is not `unix`.
    #[error("unsupported selector type {0:?}: only unix selectors are supported")]
    UnsupportedType(String),
    /// The kind is not one of the unix kinds.
    #[error("unknown unix selector kind {0:?}: expected uid, gid, user, group, path or sha256")]
    UnknownKind(String),
    /// A uid or gid is not a 32-bit unsigned number.
    #[error("unix:{kind} needs a number, got {value:?}")]
    NotANumber {
        /// The kind (`uid` or `gid`).
        kind: &'static str,
        /// The offending value.
        value: String,
    },
    /// A sha256 value is not 64 hex digits.
    #[error("unix:sha256 needs 64 hex digits, got {0:?}")]
    BadDigest(String),
    /// A path is not absolute.
    #[error("unix:path needs an absolute path, got {0:?}")]
    RelativePath(String),
    /// A user or group name is empty or holds whitespace or control characters.
    #[error("unix:{kind} needs a non-empty name without whitespace, got {value:?}")]
    BadName {
        /// The kind (`user` or `group`).
        kind: &'static str,
        /// The offending value.
        value: String,
    },
}

/// A validated unix selector, such as `unix:uid:1001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    kind: SelectorKind,
    value: String,
}

impl Selector {
    /// Builds a selector from its kind and value.
    ///
    /// # Errors
    /// When the value breaks the kind's rule: uid/gid numeric, sha256 64 hex digits, path
    /// absolute, user/group names non-empty without whitespace or control characters.
    pub fn new(kind: SelectorKind, value: &str) -> Result<Self, SelectorError> {
        let value = match kind {
            SelectorKind::Uid | SelectorKind::Gid => {
                let ok = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && value.parse::<u32>().is_ok();
                if !ok {
                    return Err(SelectorError::NotANumber {
                        kind: kind.as_str(),
                        value: value.to_owned(),
                    });
                }
                // Canonical decimal form, so `007` and `7` select the same caller.
                value
                    .parse::<u32>()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            }
            SelectorKind::Sha256 => {
                if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SelectorError::BadDigest(value.to_owned()));
                }
                value.to_ascii_lowercase()
            }
            SelectorKind::Path => {
                if !value.starts_with('/') || value.chars().any(char::is_control) {
                    return Err(SelectorError::RelativePath(value.to_owned()));
                }
                value.to_owned()
            }
            SelectorKind::User | SelectorKind::Group => {
                if value.is_empty()
                    || value
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
                {
                    return Err(SelectorError::BadName {
                        kind: kind.as_str(),
                        value: value.to_owned(),
                    });
                }
                value.to_owned()
            }
        };
        Ok(Self { kind, value })
    }

    /// The selector's kind.
    pub fn kind(&self) -> SelectorKind {
        self.kind
    }

    /// The selector's value, in canonical form.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}:{}", self.kind.as_str(), self.value)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ty, rest) = s
            .split_once(':')
            .ok_or_else(|| SelectorError::Malformed(s.to_owned()))?;
        if ty != "unix" {
            return Err(SelectorError::UnsupportedType(ty.to_owned()));
        }
        let (kind, value) = rest
            .split_once(':')
            .ok_or_else(|| SelectorError::Malformed(s.to_owned()))?;
        Self::new(kind.parse()?, value)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// True when the entry has at least one selector and every one of them is among the caller's.
pub fn matches(entry_selectors: &[Selector], caller: &[Selector]) -> bool {
    !entry_selectors.is_empty() && entry_selectors.iter().all(|s| caller.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        let digest = "AB".repeat(32);
        let cases: Vec<(String, Option<&str>)> = vec![
            ("unix:uid:1001".into(), Some("unix:uid:1001")),
            ("unix:uid:007".into(), Some("unix:uid:7")),
            ("unix:gid:0".into(), Some("unix:gid:0")),
            ("unix:user:alice".into(), Some("unix:user:alice")),
            ("unix:group:wheel".into(), Some("unix:group:wheel")),
            (
                "unix:path:/usr/bin/agent".into(),
                Some("unix:path:/usr/bin/agent"),
            ),
            (format!("unix:sha256:{digest}"), None),
            ("unix:uid:-1".into(), None),
            ("unix:uid:4294967296".into(), None),
            ("unix:uid:".into(), None),
            ("unix:uid:abc".into(), None),
            ("unix:sha256:abcd".into(), None),
            ("unix:path:relative/bin".into(), None),
            ("unix:user:".into(), None),
            ("unix:user:a b".into(), None),
            ("k8s:ns:default".into(), None),
            ("unix:pid:1".into(), None),
            ("unix".into(), None),
            ("".into(), None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Selector>();
            match want {
                Some(display) => assert_eq!(got.map(|s| s.to_string()).as_deref(), Ok(display)),
                None if text.starts_with("unix:sha256:AB") => {
                    let s = got.expect("uppercase digest is accepted");
                    assert_eq!(s.value(), digest.to_ascii_lowercase());
                }
                None => assert!(got.is_err(), "{text:?} should be refused"),
            }
        }
    }

    #[test]
    fn unsupported_type_message() {
        let err = "k8s:ns:x".parse::<Selector>().expect_err("refused");
        assert_eq!(
            err.to_string(),
            "unsupported selector type \"k8s\": only unix selectors are supported"
        );
    }

    #[test]
    fn matching_rule() {
        let s = |t: &str| t.parse::<Selector>().expect("valid");
        let caller = [s("unix:uid:1"), s("unix:gid:2"), s("unix:user:a")];
        assert!(matches(&[s("unix:uid:1")], &caller));
        assert!(matches(&[s("unix:uid:1"), s("unix:gid:2")], &caller));
        assert!(!matches(&[s("unix:uid:1"), s("unix:gid:3")], &caller));
        assert!(!matches(&[], &caller));
        assert!(!matches(&[s("unix:uid:1")], &[]));
    }

    fn selector_strategy() -> impl Strategy<Value = Selector> {
        prop_oneof![
            any::<u32>().prop_map(|n| Selector::new(SelectorKind::Uid, &n.to_string())),
            any::<u32>().prop_map(|n| Selector::new(SelectorKind::Gid, &n.to_string())),
            "[a-z_][a-z0-9_.-]{0,30}".prop_map(|n| Selector::new(SelectorKind::User, &n)),
            "[a-z_][a-z0-9_.-]{0,30}".prop_map(|n| Selector::new(SelectorKind::Group, &n)),
            "(/[a-zA-Z0-9 ._-]{1,12}){1,5}".prop_map(|p| Selector::new(SelectorKind::Path, &p)),
            "[0-9a-f]{64}".prop_map(|h| Selector::new(SelectorKind::Sha256, &h)),
        ]
        .prop_map(|r| r.expect("strategy yields valid selectors"))
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(sel in selector_strategy()) {
            let text = sel.to_string();
            prop_assert_eq!(text.parse::<Selector>(), Ok(sel.clone()));
            let json = serde_json::to_string(&sel).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<Selector>(&json).expect("deserialize"), sel);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = text.parse::<Selector>();
        }
    }
}

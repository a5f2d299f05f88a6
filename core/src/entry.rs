//! Registration entries: which workload gets which SPIFFE ID, under which parent agent.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use spiffe::{SpiffeId, TrustDomain};

use crate::ids::{EntryId, IdError, TaskId, is_reserved, parse_spiffe_id};
use crate::selector::{Selector, SelectorError};

/// Shortest TTL an entry may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest TTL an entry may ask for (30 days).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest hint, in bytes.
pub const MAX_HINT_LEN: usize = 256;

/// Errors from building an entry; each names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A SPIFFE ID field did not parse.
    #[error("{field}: {source}")]
    SpiffeId {
        /// `spiffe_id` or `parent_id`.
        field: &'static str,
        /// Why.
        source: IdError,
    },
    /// A SPIFFE ID is outside the server's trust domain.
    #[error("{field}: {id} is not in trust domain {trust_domain}")]
    WrongTrustDomain {
        /// `spiffe_id` or `parent_id`.
        field: &'static str,
        /// The offending ID.
        id: String,
        /// The server's trust domain.
        trust_domain: String,
    },
    /// A SPIFFE ID has an empty path.
    #[error("{field}: {id} has an empty path")]
    EmptyPath {
        /// `spiffe_id` or `parent_id`.
        field: &'static str,
        /// The offending ID.
        id: String,
    },
    /// The SPIFFE ID lies under `/mandate/`, which is reserved for the server and the agents.
    #[error(
        "spiffe_id: {0} lies under /mandate/, which is reserved for the server's and the agents' own identities"
    )]
    Reserved(String),
    /// The entry has no selector.
    #[error("selectors: an entry needs at least one selector")]
    NoSelectors,
    /// A selector did not parse.
    #[error("selectors: {0}")]
    Selector(#[from] SelectorError),
    /// A TTL is outside 1 s ..= 30 days.
    #[error("{field}: ttl must be between 1s and 30 days")]
    Ttl {
        /// `x509_ttl` or `jwt_ttl`.
        field: &'static str,
    },
    /// The task ID did not parse.
    #[error("task_id: {0}")]
    TaskId(IdError),
    /// A DNS name is not a valid hostname.
    #[error("dns_names: {0:?} is not a valid DNS name")]
    DnsName(String),
    /// The hint is over 256 bytes.
    #[error("hint: longer than {MAX_HINT_LEN} bytes")]
    HintTooLong,
    /// A delegate entry (DESIGN 3.8) is also bound to a task of its own.
    #[error("delegate_from: a delegate entry has no task of its own (drop --task)")]
    DelegateWithTask,
}

/// The default TTLs used when an entry does not set its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlDefaults {
    /// Default X509-SVID TTL.
    pub x509: Duration,
    /// Default JWT-SVID TTL.
    pub jwt: Duration,
}

/// What an operator asks for when creating an entry (unparsed text, as from the CLI or API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntrySpec {
    /// The SPIFFE ID to issue.
    pub spiffe_id: String,
    /// The SPIFFE ID of the agent that may fetch it.
    pub parent_id: String,
    /// Selector texts such as `unix:uid:1001`.
    pub selectors: Vec<String>,
    /// X509-SVID TTL; the default when absent.
    pub x509_ttl: Option<Duration>,
    /// JWT-SVID TTL; the default when absent.
    pub jwt_ttl: Option<Duration>,
    /// The task the SVIDs act under, if any.
    pub task_id: Option<String>,
    /// DNS SANs to add to the X509-SVID.
    pub dns_names: Vec<String>,
    /// A hint for workloads holding several identities.
    pub hint: Option<String>,
    /// SPIFFE IDs that may bind sub-tasks to this entry (DESIGN 3.8); empty for a plain entry.
    pub delegate_from: Vec<String>,
}

/// A registration entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's ID.
    pub id: EntryId,
    /// The SPIFFE ID issued.
    #[serde(with = "spiffe_id_text")]
    pub spiffe_id: SpiffeId,
    /// The agent that may fetch it.
    #[serde(with = "spiffe_id_text")]
    pub parent_id: SpiffeId,
    /// All of these must match the caller.
    pub selectors: Vec<Selector>,
    /// X509-SVID TTL.
    pub x509_ttl: Duration,
    /// JWT-SVID TTL.
    pub jwt_ttl: Duration,
    /// The task the SVIDs act under, if any.
    pub task_id: Option<TaskId>,
    /// DNS SANs added to the X509-SVID.
    pub dns_names: Vec<String>,
    /// A hint for workloads holding several identities.
    pub hint: Option<String>,
    /// When the entry was created.
    pub created_at: SystemTime,
    /// SPIFFE IDs that may bind sub-tasks to this entry (DESIGN 3.8). A delegate entry has no
    /// task of its own and issues nothing by itself: each open sub-task bound to it does.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "spiffe_id_list"
    )]
    pub delegate_from: Vec<SpiffeId>,
}

impl Entry {
    /// Builds an entry from a spec, with a fresh [`EntryId`].
    ///
    /// # Errors
    /// When a SPIFFE ID does not parse, is outside `trust_domain` or has an empty path; the
    /// SPIFFE ID lies under the reserved `/mandate/` (DESIGN 3.7); there is no selector or one
    /// does not parse; a TTL is outside 1 s ..= 30 days; the task ID, a DNS name or the hint is
    /// invalid.
    pub fn from_spec(
        spec: EntrySpec,
        trust_domain: &TrustDomain,
        defaults: TtlDefaults,
        now: SystemTime,
    ) -> Result<Self, EntryError> {
        let spiffe_id = member_id("spiffe_id", &spec.spiffe_id, trust_domain)?;
        if is_reserved(&spiffe_id) {
            return Err(EntryError::Reserved(spiffe_id.to_string()));
        }
        let parent_id = member_id("parent_id", &spec.parent_id, trust_domain)?;
        if spec.selectors.is_empty() {
            return Err(EntryError::NoSelectors);
        }
        let mut selectors = spec
            .selectors
            .iter()
            .map(|s| s.parse::<Selector>())
            .collect::<Result<Vec<_>, _>>()?;
        selectors.sort();
        selectors.dedup();
        let x509_ttl = check_ttl("x509_ttl", spec.x509_ttl.unwrap_or(defaults.x509))?;
        let jwt_ttl = check_ttl("jwt_ttl", spec.jwt_ttl.unwrap_or(defaults.jwt))?;
        let task_id = spec
            .task_id
            .map(TaskId::new)
            .transpose()
            .map_err(EntryError::TaskId)?;
        if let Some(bad) = spec.dns_names.iter().find(|n| !is_dns_name(n)) {
            return Err(EntryError::DnsName(bad.clone()));
        }
        if spec.hint.as_ref().is_some_and(|h| h.len() > MAX_HINT_LEN) {
            return Err(EntryError::HintTooLong);
        }
        let mut delegate_from = spec
            .delegate_from
            .iter()
            .map(|id| member_id("delegate_from", id, trust_domain))
            .collect::<Result<Vec<_>, _>>()?;
        delegate_from.sort_by_key(ToString::to_string);
        delegate_from.dedup();
        if !delegate_from.is_empty() && task_id.is_some() {
            return Err(EntryError::DelegateWithTask);
        }
        Ok(Self {
            id: EntryId::generate(),
            spiffe_id,
            parent_id,
            selectors,
            x509_ttl,
            jwt_ttl,
            task_id,
            dns_names: spec.dns_names,
            hint: spec.hint,
            delegate_from,
            created_at: now,
        })
    }
}

fn member_id(field: &'static str, text: &str, td: &TrustDomain) -> Result<SpiffeId, EntryError> {
    let id = parse_spiffe_id(text).map_err(|source| EntryError::SpiffeId { field, source })?;
    if !id.is_member_of(td) {
        return Err(EntryError::WrongTrustDomain {
            field,
            id: id.to_string(),
            trust_domain: td.to_string(),
        });
    }
    if id.path().is_empty() {
        return Err(EntryError::EmptyPath {
            field,
            id: id.to_string(),
        });
    }
    Ok(id)
}

fn check_ttl(field: &'static str, ttl: Duration) -> Result<Duration, EntryError> {
    if (MIN_TTL..=MAX_TTL).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(EntryError::Ttl { field })
    }
}

/// True for a DNS name rcgen and webpki accept: labels of `[A-Za-z0-9-]` (1..=63 bytes, not
/// starting or ending with `-`), at most 253 bytes, optionally a leading `*.` wildcard.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Serde helpers that write a [`SpiffeId`] as its text form.
pub mod spiffe_id_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use spiffe::SpiffeId;

    /// Writes the SPIFFE ID as a string.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(id: &SpiffeId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    /// Reads a SPIFFE ID from a string.
    ///
    /// # Errors
    /// When the string is not a valid SPIFFE ID.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SpiffeId, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::ids::parse_spiffe_id(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for a list of SPIFFE IDs as strings.
mod spiffe_id_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use spiffe::SpiffeId;

    pub(super) fn serialize<S: Serializer>(
        ids: &[SpiffeId],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(ids.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SpiffeId>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| crate::ids::parse_spiffe_id(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const DEFAULTS: TtlDefaults = TtlDefaults {
        x509: Duration::from_secs(300),
        jwt: Duration::from_secs(300),
    };

    fn good() -> EntrySpec {
        EntrySpec {
            spiffe_id: "spiffe://example.org/ai/buyer".into(),
            parent_id: "spiffe://example.org/mandate/agent/join_token/abc".into(),
            selectors: vec!["unix:uid:1001".into()],
            ..EntrySpec::default()
        }
    }

    fn build(spec: EntrySpec) -> Result<Entry, EntryError> {
        let td = TrustDomain::new("example.org").expect("valid");
        Entry::from_spec(spec, &td, DEFAULTS, UNIX_EPOCH)
    }

    #[test]
    fn delegate_entries() {
        let mut spec = good();
        spec.delegate_from = vec![
            "spiffe://example.org/ai/planner".into(),
            "spiffe://example.org/ai/planner".into(),
        ];
        let entry = build(spec.clone()).expect("a delegate entry");
        assert_eq!(entry.delegate_from.len(), 1, "deduplicated");
        let json = serde_json::to_string(&entry).expect("serialize");
        assert_eq!(serde_json::from_str::<Entry>(&json).expect("load"), entry);
        spec.task_id = Some("task-1".into());
        assert_eq!(build(spec.clone()), Err(EntryError::DelegateWithTask));
        spec.task_id = None;
        spec.delegate_from = vec!["spiffe://other.org/ai/planner".into()];
        assert!(matches!(
            build(spec),
            Err(EntryError::WrongTrustDomain {
                field: "delegate_from",
                ..
            })
        ));
        let plain = build(good()).expect("plain");
        let json = serde_json::to_value(&plain).expect("serialize");
        assert!(json.get("delegate_from").is_none(), "absent when empty");
    }

    #[test]
    fn valid_entry_uses_defaults() {
        let entry = build(good()).expect("valid");
        assert_eq!(entry.x509_ttl, DEFAULTS.x509);
        assert_eq!(entry.spiffe_id.to_string(), "spiffe://example.org/ai/buyer");
        let json = serde_json::to_string(&entry).expect("serialize");
        assert!(json.contains("\"spiffe://example.org/ai/buyer\""));
        assert_eq!(
            serde_json::from_str::<Entry>(&json).expect("deserialize"),
            entry
        );
    }

    #[test]
    fn refusals_table() {
        let long_id = format!("spiffe://example.org/{}", "a".repeat(2049 - 21));
        type Change = Box<dyn Fn(&mut EntrySpec)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "other td",
                Box::new(|s| s.spiffe_id = "spiffe://other.org/x".into()),
            ),
            (
                "empty path",
                Box::new(|s| s.spiffe_id = "spiffe://example.org".into()),
            ),
            (
                "parent other td",
                Box::new(|s| s.parent_id = "spiffe://other.org/a".into()),
            ),
            (
                "not spiffe",
                Box::new(|s| s.spiffe_id = "https://example.org/x".into()),
            ),
            (
                "2049-byte id",
                Box::new(move |s| s.spiffe_id = long_id.clone()),
            ),
            (
                "server id",
                Box::new(|s| s.spiffe_id = "spiffe://example.org/mandate/server".into()),
            ),
            (
                "agent id",
                Box::new(|s| {
                    s.spiffe_id = "spiffe://example.org/mandate/agent/join_token/abc".into();
                }),
            ),
            (
                "reserved root",
                Box::new(|s| s.spiffe_id = "spiffe://example.org/mandate".into()),
            ),
            (
                "uppercase td",
                Box::new(|s| s.spiffe_id = "spiffe://EXAMPLE.org/ai/buyer".into()),
            ),
            (
                "uppercase parent td",
                Box::new(|s| s.parent_id = "spiffe://Example.org/mandate/agent/a".into()),
            ),
            (
                "double slash",
                Box::new(|s| s.spiffe_id = "spiffe://example.org/ai//buyer".into()),
            ),
            (
                "dot segment",
                Box::new(|s| s.spiffe_id = "spiffe://example.org/ai/../buyer".into()),
            ),
            ("no selector", Box::new(|s| s.selectors.clear())),
            (
                "uid not a number",
                Box::new(|s| s.selectors = vec!["unix:uid:root".into()]),
            ),
            (
                "gid negative",
                Box::new(|s| s.selectors = vec!["unix:gid:-1".into()]),
            ),
            (
                "short sha256",
                Box::new(|s| s.selectors = vec![format!("unix:sha256:{}", "a".repeat(63))]),
            ),
            (
                "relative path",
                Box::new(|s| s.selectors = vec!["unix:path:bin/agent".into()]),
            ),
            (
                "bad selector",
                Box::new(|s| s.selectors = vec!["k8s:ns:x".into()]),
            ),
            ("zero ttl", Box::new(|s| s.x509_ttl = Some(Duration::ZERO))),
            (
                "huge ttl",
                Box::new(|s| s.jwt_ttl = Some(MAX_TTL + Duration::from_secs(1))),
            ),
            ("bad task", Box::new(|s| s.task_id = Some("a b".into()))),
            (
                "bad dns",
                Box::new(|s| s.dns_names = vec!["bad_name.example".into()]),
            ),
            ("hint", Box::new(|s| s.hint = Some("h".repeat(257)))),
        ];
        for (name, change) in cases {
            let mut spec = good();
            change(&mut spec);
            assert!(build(spec).is_err(), "{name} should be refused");
        }
    }

    #[test]
    fn dns_names() {
        for ok in ["a.example.org", "localhost", "*.svc.local", "x-1.y"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", "-a.org", "a..org", "a_b.org", "a b", &"a".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}

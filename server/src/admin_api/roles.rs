//! Who may call what on the admin API over the network (DESIGN 3.9): the `[[admin_ids]]` of
//! the config, each SPIFFE ID with one [`Role`], and the pure decisions the mTLS listener and
//! the handlers take from them. The unix socket is not subject to roles.
//!
//! | RPC | operator | task-broker | approver |
//! |---|---|---|---|
//! | `OpenTask` | yes | yes (the broker becomes its owner) | no |
//! | `GetTask`, `ListTasks` | yes | its own tasks | yes |
//! | `CloseTask` | yes | its own tasks | no |
//! | `ApproveTask` | yes | no | yes |
//! | `CreateEntry`, `DeleteEntry` | yes | bound to its own task, SPIFFE ID under `allowed_paths` | no |
//! | every other RPC | yes | no | no |

use std::collections::HashMap;

use mandate_core::{SpiffeId, TrustDomain};

/// Errors in the `[[admin_ids]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The SPIFFE ID does not parse.
    #[error("{0}")]
    SpiffeId(String),
    /// The SPIFFE ID is of another trust domain: no such caller can present an SVID here.
    #[error("{id} is not in the trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The ID.
        id: String,
        /// The server's trust domain.
        trust_domain: String,
    },
    /// The same SPIFFE ID is listed twice.
    #[error("{0} is listed twice")]
    Duplicate(String),
    /// An allowed path is not an absolute SPIFFE ID path.
    #[error("allowed path {0:?} must start with '/' and name at least one segment")]
    BadPath(String),
    /// A task broker without allowed paths could create no entry.
    #[error("the task-broker {0} needs allowed_paths")]
    NoPaths(String),
    /// `allowed_paths` given to a role that creates no entries.
    #[error("allowed_paths is only for a task-broker ({0})")]
    PathsWithoutBroker(String),
}

/// A role of a network caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Everything the unix socket allows.
    Operator,
    /// Opens and closes its own tasks and binds entries under its paths to them.
    TaskBroker {
        /// Where the SPIFFE IDs of its entries may lie.
        allowed_paths: Vec<AllowedPath>,
    },
    /// Shows, lists and approves tasks.
    Approver,
}

impl Role {
    /// The role's name in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::TaskBroker { .. } => "task-broker",
            Self::Approver => "approver",
        }
    }

    /// Whether this role may call the admin RPC named `method` at all; the handlers then
    /// hold a task broker to its own tasks and paths. An RPC this table does not name is
    /// for operators only, so a new RPC is closed to the other roles until it is listed.
    pub fn may_call(&self, method: &str) -> bool {
        match self {
            Self::Operator => true,
            Self::TaskBroker { .. } => matches!(
                method,
                "OpenTask" | "GetTask" | "ListTasks" | "CloseTask" | "CreateEntry" | "DeleteEntry"
            ),
            Self::Approver => matches!(method, "GetTask" | "ListTasks" | "ApproveTask"),
        }
    }

    /// For a task broker, whether `id` lies under one of its allowed paths; other roles are
    /// not limited by path.
    pub fn allows_path(&self, id: &SpiffeId) -> bool {
        match self {
            Self::TaskBroker { allowed_paths } => allowed_paths.iter().any(|p| p.contains(id)),
            Self::Operator | Self::Approver => true,
        }
    }

    /// True for a task broker, whose task and entry calls are limited to its own tasks.
    pub fn owns_only(&self) -> bool {
        matches!(self, Self::TaskBroker { .. })
    }
}

/// A path prefix of SPIFFE IDs, matched segment by segment: `/ai/` and `/ai` both hold
/// `/ai/x` and `/ai/x/y`, never `/ai` itself or `/aix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPath(String);

impl AllowedPath {
    /// Parses a path such as `/ai/`.
    ///
    /// # Errors
    /// [`RoleError::BadPath`] unless it starts with `/` and names a segment.
    pub fn new(text: &str) -> Result<Self, RoleError> {
        let trimmed = text.trim_end_matches('/');
        let segments_ok = trimmed
            .strip_prefix('/')
            .is_some_and(|rest| !rest.is_empty() && rest.split('/').all(|s| !s.is_empty()));
        if !segments_ok {
            return Err(RoleError::BadPath(text.to_owned()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Whether `id`'s path lies under this one.
    pub fn contains(&self, id: &SpiffeId) -> bool {
        id.path()
            .strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
    }
}

/// The network callers of the admin API and their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminIds(HashMap<String, Role>);

impl AdminIds {
    /// Checks the `(spiffe_id, role)` pairs of the config against the trust domain.
    ///
    /// # Errors
    /// A [`RoleError`] for a malformed or foreign SPIFFE ID or a duplicate.
    pub fn new(
        trust_domain: &TrustDomain,
        ids: impl IntoIterator<Item = (String, Role)>,
    ) -> Result<Self, RoleError> {
        let mut map = HashMap::new();
        for (text, role) in ids {
            let id = mandate_core::ids::parse_spiffe_id(&text)
                .map_err(|e| RoleError::SpiffeId(e.to_string()))?;
            if !id.is_member_of(trust_domain) {
                return Err(RoleError::ForeignTrustDomain {
                    id: id.to_string(),
                    trust_domain: trust_domain.to_string(),
                });
            }
            if map.insert(id.to_string(), role).is_some() {
                return Err(RoleError::Duplicate(id.to_string()));
            }
        }
        Ok(Self(map))
    }

    /// The role of `id`, when it is listed.
    pub fn role(&self, id: &str) -> Option<&Role> {
        self.0.get(id)
    }

    /// True when nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A network caller that passed the role check, as the handlers see it (request extension).
#[derive(Debug, Clone)]
pub struct RemoteCaller {
    /// Its SPIFFE ID, the audit actor of its calls.
    pub spiffe_id: String,
    /// Its role.
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> SpiffeId {
        SpiffeId::new(format!("spiffe://example.org{path}")).unwrap()
    }

    #[test]
    fn allowed_paths_match_whole_segments() {
        for (prefix, path, inside) in [
            ("/ai/", "/ai/x", true),
            ("/ai", "/ai/x/y", true),
            ("/ai/", "/ai", false),
            ("/ai/", "/aix", false),
            ("/ai/", "/b/ai/x", false),
            ("/ai/agents", "/ai/agents/po", true),
            ("/ai/agents", "/ai/agentsx/po", false),
        ] {
            let p = AllowedPath::new(prefix).unwrap();
            assert_eq!(p.contains(&id(path)), inside, "{prefix} {path}");
        }
        for bad in ["", "/", "ai/", "//", "/a//b"] {
            assert!(AllowedPath::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_checked_against_the_trust_domain() {
        let td = TrustDomain::new("example.org").unwrap();
        let ok = AdminIds::new(&td, [("spiffe://example.org/ops".into(), Role::Operator)]);
        assert_eq!(
            ok.unwrap().role("spiffe://example.org/ops"),
            Some(&Role::Operator)
        );
        for (text, want) in [
            ("spiffe://other.org/ops", "not in the trust domain"),
            ("not a spiffe id", "invalid"),
        ] {
            let err = AdminIds::new(&td, [(text.to_owned(), Role::Approver)]).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let twice = [
            ("spiffe://example.org/a".to_owned(), Role::Approver),
            ("spiffe://example.org/a".to_owned(), Role::Operator),
        ];
        assert!(matches!(
            AdminIds::new(&td, twice),
            Err(RoleError::Duplicate(_))
        ));
    }

    #[test]
    fn unknown_rpcs_are_for_operators_only() {
        let broker = Role::TaskBroker {
            allowed_paths: vec![AllowedPath::new("/ai").unwrap()],
        };
        for role in [&broker, &Role::Approver] {
            assert!(!role.may_call("CloseTasksOfPrincipal"));
            assert!(!role.may_call("SomethingNew"));
        }
        assert!(Role::Operator.may_call("SomethingNew"));
    }
}

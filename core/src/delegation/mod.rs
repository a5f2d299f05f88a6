//! The delegation an SVID carries (DESIGN 3.3): who the agent acts for and under which task,
//! as a non-critical X.509 extension in DER and as the JWT `delegation` claim.

mod asn1;
mod claim;

use std::borrow::Cow;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier;

use crate::ids::{IdError, TaskId};
use crate::principal::{Principal, PrincipalError};
use crate::task::{Action, Approval, MAX_ACTIONS, MAX_PURPOSE_LEN, Task, TaskError, ValueLimit};

/// The delegation extension's OID, as text. This is the one place it is written; a GUID-based
/// arc, because a `2.25.<uuid>` OID breaks Go's parser.
pub const DELEGATION_OID: &str =
    "1.2.840.113556.1.8000.2554.59017.18993.23044.17922.41336.3076546.14707388.1";

/// The delegation extension's OID, parsed from [`DELEGATION_OID`] at compile time.
pub const DELEGATION_OID_ARCS: ObjectIdentifier = ObjectIdentifier::new_unwrap(DELEGATION_OID);

/// The only `version` this codec writes and accepts.
pub const VERSION: u8 = 1;
/// Most links a chain may hold.
pub const MAX_CHAIN: usize = 8;
/// Largest DER extension value accepted, in bytes.
pub const MAX_DER_LEN: usize = 64 * 1024;

/// The delegation extension's OID as integer components (what rcgen takes).
pub fn delegation_oid_components() -> Vec<u64> {
    DELEGATION_OID_ARCS.arcs().map(u64::from).collect()
}

/// Errors from encoding or decoding a delegation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationError {
    /// The DER is malformed, truncated or has trailing bytes.
    #[error("malformed delegation DER: {0}")]
    Der(String),
    /// The DER is not the one canonical encoding of the value it decodes to.
    #[error("delegation DER is not canonical")]
    NonCanonical,
    /// The input is larger than [`MAX_DER_LEN`].
    #[error("delegation is larger than {MAX_DER_LEN} bytes")]
    TooLarge,
    /// The version is not 1.
    #[error("unsupported delegation version {0}")]
    UnsupportedVersion(u8),
    /// More than 64 actions.
    #[error("delegation has {0} actions, at most {MAX_ACTIONS} are allowed")]
    TooManyActions(usize),
    /// The chain is present but empty, or longer than 8.
    #[error("delegation chain has {0} links, expected 1 to {MAX_CHAIN}")]
    ChainLength(usize),
    /// The principal is invalid.
    #[error("delegation principal: {0}")]
    Principal(PrincipalError),
    /// A task ID is invalid.
    #[error("delegation task id: {0}")]
    TaskId(IdError),
    /// An action name is invalid.
    #[error("delegation action: {0}")]
    Action(TaskError),
    /// The purpose is longer than 256 bytes.
    #[error("delegation purpose is longer than {MAX_PURPOSE_LEN} bytes")]
    PurposeTooLong,
    /// The currency is not three uppercase letters.
    #[error("delegation currency {0:?} is not an ISO 4217 code")]
    BadCurrency(String),
    /// A link's actor is not ASCII (IA5String).
    #[error("delegation chain actor is not ASCII")]
    ActorNotAscii,
    /// The depth is greater than the maximum depth.
    #[error("delegation depth {depth} exceeds max depth {max_depth}")]
    DepthExceedsMax {
        /// The depth.
        depth: u8,
        /// The maximum depth.
        max_depth: u8,
    },
    /// A time cannot be written as a GeneralizedTime (before 1970 or after 9999).
    #[error("delegation time is out of range")]
    TimeOutOfRange,
    /// The JSON claim has the wrong shape.
    #[error("malformed delegation claim: {0}")]
    Claim(String),
    /// The certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
    /// The certificate carries the extension more than once.
    #[error("certificate carries the delegation extension more than once")]
    DuplicateExtension,
    /// The certificate marks the extension critical, which DESIGN 3.3 forbids.
    #[error("delegation extension must not be critical")]
    Critical,
}

/// The link to the task an SVID acts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's ID.
    pub id: TaskId,
    /// Why, in free text (at most 256 bytes).
    pub purpose: String,
    /// The task deadline (whole seconds once encoded).
    pub deadline: SystemTime,
    /// How many hops this delegation is from the principal.
    pub depth: u8,
    /// How many hops are allowed.
    pub max_depth: u8,
}

/// An earlier hop of a delegation chain (audit only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    /// Who that hop acted for.
    pub principal: Principal,
    /// The task it acted under.
    pub task_id: TaskId,
    /// Who acted, usually a SPIFFE ID (ASCII).
    pub actor: String,
}

/// A delegation: the principal an agent acts for, the task, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Who the agent acts for.
    pub principal: Principal,
    /// The task.
    pub task: TaskInfo,
    /// Exact-match action names (at most 64).
    pub actions: Vec<Action>,
    /// An optional spending limit.
    pub value_limit: Option<ValueLimit>,
    /// The approval, when the task required one.
    pub approval: Option<Approval>,
    /// Earlier hops, oldest first (at most 8; empty when direct).
    pub chain: Vec<Link>,
}

impl Delegation {
    /// The delegation an SVID for `task` carries: for a root task depth 0 and no chain; for
    /// a sub-task (DESIGN 3.8) its depth and the chain of the hops before it.
    pub fn for_task(task: &Task) -> Self {
        Self {
            principal: task.principal.clone(),
            task: TaskInfo {
                id: task.id.clone(),
                purpose: task.purpose.clone(),
                deadline: task.deadline,
                depth: task.lineage.as_ref().map_or(0, |l| l.depth),
                max_depth: task.max_depth,
            },
            actions: task.actions.clone(),
            value_limit: task.value_limit,
            approval: task.approval.clone(),
            chain: task
                .lineage
                .as_ref()
                .map(|l| l.chain.clone())
                .unwrap_or_default(),
        }
    }

    /// True when `action` is among the allowed actions (exact match).
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a.as_str() == action)
    }

    /// Encodes the delegation as the DER extension value (times truncated to seconds).
    ///
    /// # Errors
    /// When a limit of DESIGN 3.3 is broken (more than 64 actions, purpose over 256 bytes,
    /// chain over 8, non-ASCII actor, depth over max depth) or a time is out of range.
    pub fn to_der(&self) -> Result<Vec<u8>, DelegationError> {
        self.check()?;
        asn1::encode(self)
    }

    /// Decodes a DER extension value. Never panics.
    ///
    /// # Errors
    /// When the input is malformed, truncated, has trailing bytes, is over 64 KiB, has a
    /// version other than 1, or breaks a limit of DESIGN 3.3.
    pub fn from_der(bytes: &[u8]) -> Result<Self, DelegationError> {
        if bytes.len() > MAX_DER_LEN {
            return Err(DelegationError::TooLarge);
        }
        let delegation = asn1::decode(bytes)?;
        delegation.check()?;
        // DER has one encoding per value: anything the decoder tolerated (a skipped,
        // mis-tagged optional field; a trust domain in upper case) re-encodes differently.
        if delegation.to_der()? != bytes {
            return Err(DelegationError::NonCanonical);
        }
        Ok(delegation)
    }

    /// The JWT `delegation` claim (DESIGN 3.3, times as unix seconds, absent fields omitted).
    pub fn to_claim(&self) -> serde_json::Value {
        claim::to_claim(self)
    }

    /// Parses a JWT `delegation` claim.
    ///
    /// # Errors
    /// When the JSON has the wrong shape or breaks a limit of DESIGN 3.3.
    pub fn from_claim(value: &serde_json::Value) -> Result<Self, DelegationError> {
        let delegation = claim::from_claim(value)?;
        delegation.check()?;
        Ok(delegation)
    }

    /// Checks the limits the types alone do not guarantee.
    fn check(&self) -> Result<(), DelegationError> {
        if self.actions.len() > MAX_ACTIONS {
            return Err(DelegationError::TooManyActions(self.actions.len()));
        }
        if self.task.purpose.len() > MAX_PURPOSE_LEN {
            return Err(DelegationError::PurposeTooLong);
        }
        if self.chain.len() > MAX_CHAIN {
            return Err(DelegationError::ChainLength(self.chain.len()));
        }
        if self.chain.iter().any(|l| !l.actor.is_ascii()) {
            return Err(DelegationError::ActorNotAscii);
        }
        if self.task.depth > self.task.max_depth {
            return Err(DelegationError::DepthExceedsMax {
                depth: self.task.depth,
                max_depth: self.task.max_depth,
            });
        }
        Ok(())
    }
}

/// Finds and decodes the delegation extension in a DER X.509 certificate.
///
/// # Errors
/// When the certificate does not parse, carries the extension twice or as critical, or its
/// value does not decode. `Ok(None)` when the extension is absent.
pub fn from_certificate(cert_der: &[u8]) -> Result<Option<Delegation>, DelegationError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| DelegationError::Certificate(e.to_string()))?;
    from_parsed_certificate(&cert)
}

/// Like [`from_certificate`], for a certificate x509-parser already parsed.
///
/// # Errors
/// As [`from_certificate`].
pub fn from_parsed_certificate(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Option<Delegation>, DelegationError> {
    let oid = x509_parser::der_parser::oid::Oid::new(Cow::Borrowed(DELEGATION_OID_ARCS.as_bytes()));
    let mut found = cert.extensions().iter().filter(|e| e.oid == oid);
    let Some(ext) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(DelegationError::DuplicateExtension);
    }
    if ext.critical {
        return Err(DelegationError::Critical);
    }
    Delegation::from_der(ext.value).map(Some)
}

#[cfg(test)]
pub(crate) mod tests;

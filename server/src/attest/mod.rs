//! Node attestation with join tokens (DESIGN 3.5 "Join tokens", 3.7 "Input rules"): 128-bit
//! random, single use, stored only as their SHA-256; agent SVIDs, renewal, and eviction.

mod refusals;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::csr::public_key_from_csr;
use mandate_core::ids::{AGENT_PATH, is_agent_id};
use mandate_core::time::{from_unix_seconds, unix_seconds};
use mandate_core::{SpiffeId, TrustDomain};
use sha2::{Digest, Sha256};

use crate::ca::{CaManager, SignedSvid, SvidRequest};
use crate::registry::{Plan, Registry, RegistryError};
use crate::store::{AgentRecord, AuditDraft, Change, TokenRecord, WriteOp};
pub use refusals::{MORE_REFUSED, RefusalLog, RefusalPolicy, TokenBucket, refusals_in};

/// Default join token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Shortest join token lifetime.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(1);

/// Longest join token lifetime (30 days).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The one message every refused join token gets.
pub const TOKEN_REFUSED: &str = "join token is unknown, used or expired";

/// Hex SHA-256 of a token: the key it is stored under.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token ID: the first 16 hex characters of its SHA-256.
pub fn token_id(token: &str) -> String {
    token_hash(token)[..16].to_owned()
}

/// A new join token as returned to the operator.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The secret token (32 lowercase hex characters).
    pub token: String,
    /// The agent ID it grants.
    pub agent_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Creates a join token, optionally naming the agent ID.
///
/// # Errors
/// `InvalidArgument` for an agent ID outside the trust domain or not under `/mandate/agent/`
/// (DESIGN 3.7), or a TTL outside [`MIN_TOKEN_TTL`]`..=`[`MAX_TOKEN_TTL`]; a store failure.
pub async fn create_token(
    registry: &Registry,
    trust_domain: &TrustDomain,
    agent_id: Option<&str>,
    ttl: Duration,
    actor: String,
    now: SystemTime,
) -> Result<NewToken, RegistryError> {
    let named = agent_id
        .map(|id| parse_agent_id(id, trust_domain))
        .transpose()?;
    let expires = now
        .checked_add(ttl)
        .filter(|_| (MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&ttl))
        .ok_or_else(|| {
            RegistryError::InvalidArgument(format!(
                "invalid token TTL {}s: it must be between 1s and 30 days",
                ttl.as_secs()
            ))
        })?;
    let token = hex::encode(rand::random::<[u8; 16]>());
    let agent_id = named
        .clone()
        .unwrap_or_else(|| default_agent_id(trust_domain, &token));
    let expires_at = unix_seconds(expires);
    let record = TokenRecord {
        agent_id: named,
        expires_at,
        used: false,
    };
    let hash = token_hash(&token);
    let detail = format!(
        "token {} for {agent_id} expires {expires_at}",
        token_id(&token)
    );
    let audit = AuditDraft {
        kind: "token.create",
        actor,
        spiffe_id: Some(agent_id.clone()),
        detail,
        ..AuditDraft::default()
    };
    registry
        .write(now, |_| {
            let plan = Plan {
                ops: vec![WriteOp::PutToken(hash, record)],
                changes: Vec::new(),
                audit: vec![audit],
            };
            Ok((plan, ()))
        })
        .await?;
    Ok(NewToken {
        token,
        agent_id,
        expires_at,
    })
}

fn default_agent_id(td: &TrustDomain, token: &str) -> String {
    format!(
        "{}/mandate/agent/join_token/{}",
        td.id_string(),
        token_id(token)
    )
}

fn parse_agent_id(id: &str, td: &TrustDomain) -> Result<String, RegistryError> {
    let parsed = mandate_core::ids::parse_spiffe_id(id)
        .map_err(|e| RegistryError::InvalidArgument(format!("invalid agent ID: {e}")))?;
    if parsed.trust_domain() != td || !is_agent_id(&parsed) {
        return Err(RegistryError::InvalidArgument(format!(
            "invalid agent ID {id}: it must lie under {}{AGENT_PATH}",
            td.id_string()
        )));
    }
    Ok(parsed.to_string())
}

fn usable(record: Option<&TokenRecord>, now: SystemTime) -> bool {
    record.is_some_and(|r| !r.used && from_unix_seconds(r.expires_at) > now)
}

/// Trades a join token and a CSR for an agent SVID. The token is consumed.
///
/// # Errors
/// `InvalidArgument` for a bad CSR; `PermissionDenied` ([`TOKEN_REFUSED`]) for an unknown,
/// used or expired token, audited as `agent.deny` through `refusals` (bounded: see
/// [`RefusalLog`]); a store or CA failure.
pub async fn attest(
    registry: &Registry,
    refusals: &Arc<RefusalLog>,
    ca: &CaManager,
    token: &str,
    csr: &[u8],
    agent_ttl: Duration,
    now: SystemTime,
) -> Result<(String, SignedSvid), RegistryError> {
    let key = public_key_from_csr(csr)
        .map_err(|e| RegistryError::InvalidArgument(format!("invalid CSR: {e}")))?;
    let hash = token_hash(token);
    let stored = registry.store().token(&hash)?;
    let refuse = |detail: String| async move {
        refusals.refuse(detail, now).await?;
        Err(RegistryError::PermissionDenied(TOKEN_REFUSED.into()))
    };
    let tid = token_id(token);
    if !usable(stored.as_ref(), now) {
        return refuse(format!(
            "join token {tid} refused: unknown, used or expired"
        ))
        .await;
    }
    let td = ca.trust_domain();
    let agent_id = stored
        .as_ref()
        .and_then(|r| r.agent_id.clone())
        .unwrap_or_else(|| default_agent_id(td, token));
    let spiffe_id = SpiffeId::new(&agent_id)
        .map_err(|e| RegistryError::Internal(format!("agent ID {agent_id}: {e}")))?;
    let req = SvidRequest {
        spiffe_id,
        dns_names: Vec::new(),
        ttl: agent_ttl,
        deadline: None,
        delegation: None,
    };
    let signed = ca
        .sign_svid(&key, &req, now)
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    let result = registry
        .write(now, |_| {
            // Re-read under the write lock: two attestations racing for one token.
            let current = registry.store().token(&hash)?;
            let Some(mut record) = current.filter(|r| usable(Some(r), now)) else {
                return Err(RegistryError::PermissionDenied(TOKEN_REFUSED.into()));
            };
            record.used = true;
            let agent = AgentRecord {
                spiffe_id: agent_id.clone(),
                attested_at: unix_seconds(now),
                expires_at: unix_seconds(signed.not_after),
                banned: false,
                serial: signed.serial.to_string(),
            };
            let plan = Plan {
                ops: vec![
                    WriteOp::PutToken(hash.clone(), record),
                    WriteOp::PutAgent(agent),
                ],
                changes: Vec::new(),
                audit: vec![AuditDraft {
                    kind: "agent.attest",
                    actor: agent_id.clone(),
                    spiffe_id: Some(agent_id.clone()),
                    serial: Some(signed.serial.to_string()),
                    detail: format!("join token {tid}"),
                    ..AuditDraft::default()
                }],
            };
            Ok((plan, ()))
        })
        .await;
    match result {
        Ok(()) => Ok((agent_id, signed)),
        Err(RegistryError::PermissionDenied(_)) => {
            refuse(format!("join token {tid} refused: used concurrently")).await
        }
        Err(e) => Err(e),
    }
}

/// Checks that `peer` is an agent ID (under `/mandate/agent/`, DESIGN 3.7) of a known agent
/// that was not evicted. A workload SVID is refused even when an agent of that ID exists.
///
/// # Errors
/// `PermissionDenied` for an ID outside `/mandate/agent/`, "agent evicted" or "unknown agent".
pub fn authorize_agent(registry: &Registry, peer: &str) -> Result<AgentRecord, RegistryError> {
    let is_agent = mandate_core::ids::parse_spiffe_id(peer).is_ok_and(|id| is_agent_id(&id));
    if !is_agent {
        tracing::warn!(%peer, "agent API call with a client certificate that is not an agent's");
        return Err(RegistryError::PermissionDenied(format!(
            "{peer} is not an agent ID: the agent API accepts only client certificates under {AGENT_PATH}"
        )));
    }
    match registry.read().index.agent(peer) {
        Some(a) if a.banned => Err(RegistryError::PermissionDenied("agent evicted".into())),
        Some(a) => Ok(a.clone()),
        None => Err(RegistryError::PermissionDenied(format!(
            "unknown agent {peer}"
        ))),
    }
}

/// Issues a fresh agent SVID for the key in `csr`.
///
/// # Errors
/// `PermissionDenied` for an evicted or unknown agent, `InvalidArgument` for a bad CSR.
pub async fn renew(
    registry: &Registry,
    ca: &CaManager,
    agent_id: &str,
    csr: &[u8],
    agent_ttl: Duration,
    now: SystemTime,
) -> Result<SignedSvid, RegistryError> {
    let key = public_key_from_csr(csr)
        .map_err(|e| RegistryError::InvalidArgument(format!("invalid CSR: {e}")))?;
    let spiffe_id = SpiffeId::new(agent_id)
        .map_err(|e| RegistryError::Internal(format!("agent ID {agent_id}: {e}")))?;
    let req = SvidRequest {
        spiffe_id,
        dns_names: Vec::new(),
        ttl: agent_ttl,
        deadline: None,
        delegation: None,
    };
    let signed = ca
        .sign_svid(&key, &req, now)
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    registry
        .write(now, |state| {
            let mut agent = match state.index.agent(agent_id) {
                Some(a) if !a.banned => a.clone(),
                _ => return Err(RegistryError::PermissionDenied("agent evicted".into())),
            };
            agent.expires_at = unix_seconds(signed.not_after);
            agent.serial = signed.serial.to_string();
            let plan = Plan {
                ops: vec![WriteOp::PutAgent(agent)],
                ..Plan::default()
            };
            Ok((plan, ()))
        })
        .await?;
    Ok(signed)
}

/// Evicts (bans) an agent: it can no longer sync or sign and must attest again.
///
/// # Errors
/// `NotFound` for an unknown agent, or a store failure.
pub async fn evict(
    registry: &Registry,
    agent_id: &str,
    actor: String,
    now: SystemTime,
) -> Result<AgentRecord, RegistryError> {
    registry
        .write(now, |state| {
            let mut agent =
                state.index.agent(agent_id).cloned().ok_or_else(|| {
                    RegistryError::NotFound(format!("agent {agent_id} not found"))
                })?;
            agent.banned = true;
            let plan = Plan {
                ops: vec![WriteOp::PutAgent(agent.clone())],
                changes: vec![Change::Agent {
                    spiffe_id: agent.spiffe_id.clone(),
                }],
                audit: vec![AuditDraft {
                    kind: "agent.evict",
                    actor,
                    spiffe_id: Some(agent.spiffe_id.clone()),
                    detail: String::new(),
                    ..AuditDraft::default()
                }],
            };
            Ok((plan, agent))
        })
        .await
}

#[cfg(test)]
mod tests;

//! Issuance for agents (DESIGN 3.5 "Signing"): batched X509-SVIDs and JWT-SVIDs, only for
//! entries parented by the calling agent and only while their task is open. From a CSR only
//! the public key is taken. Each issuance is audited and its serial recorded under its task.

use std::sync::Arc;
use std::time::SystemTime;

use mandate_core::csr::public_key_from_csr;
use mandate_core::delegation::Delegation;
use mandate_core::ids::{TaskId, is_reserved};
use mandate_core::time::unix_seconds;
use mandate_proto::agent::{SignX509SvidRequest, SignX509SvidResult};

use crate::ca::SvidRequest;
use crate::context::Context;
use crate::entries::parse_entry_id;
use crate::registry::{Plan, RegistryError, State};
use crate::store::{AuditDraft, IssuedSerial, StoredEntry, StoredTask, WriteOp};

/// Most CSRs in one call.
pub const MAX_BATCH: usize = 1000;

/// An entry the agent may sign for, with its task.
type Authorized = (Arc<StoredEntry>, Option<Arc<StoredTask>>);

/// Looks up `entry_ids`, all of which must be parented by `agent`; otherwise audits one
/// `svid.deny` and refuses the whole call.
///
/// # Errors
/// `PermissionDenied` naming the first unauthorized entry.
pub(super) async fn authorize(
    ctx: &Context,
    agent: &str,
    entry_ids: &[&str],
    now: SystemTime,
) -> Result<Vec<Authorized>, RegistryError> {
    // Parsed once, so each entry's parent compares without rendering it as a string.
    let agent_id = mandate_core::SpiffeId::new(agent).ok();
    let denied = {
        let state = ctx.registry.read();
        let mut found = Vec::with_capacity(entry_ids.len());
        let mut denied = None;
        for id in entry_ids {
            match resolve_entry(&state, id) {
                // An entry under /mandate/ (only in a store from before DESIGN 3.7's rule)
                // would carry an agent's or the server's identity: never issued.
                Some((e, task))
                    if agent_id.as_ref() == Some(&e.entry.parent_id)
                        && !is_reserved(&e.entry.spiffe_id) =>
                {
                    found.push((e, task));
                }
                _ => {
                    denied = Some((*id).to_owned());
                    break;
                }
            }
        }
        match denied {
            None => return Ok(found),
            Some(id) => id,
        }
    };
    ctx.metrics.svid_denied.inc();
    let draft = AuditDraft {
        kind: "svid.deny",
        actor: agent.to_owned(),
        detail: format!("entry {denied:?} does not exist or is not parented by the caller"),
        ..AuditDraft::default()
    };
    ctx.registry.audit(now, vec![draft]).await?;
    Err(RegistryError::PermissionDenied(format!(
        "entry {denied:?} is not authorized for agent {agent}"
    )))
}

/// The entry and task an agent's entry ID names, from the server's records: a plain entry
/// with its task, or `<delegate entry>/<sub-task>` for a delegate entry's SVID of one
/// sub-task bound to it (DESIGN 3.8). `None` when unknown, when a delegate entry is named
/// alone (it issues nothing by itself), or when the sub-task is not bound to that entry.
pub(super) fn resolve_entry(state: &State, id: &str) -> Option<Authorized> {
    match id.split_once('/') {
        None => {
            let entry = state.index.entry(&parse_entry_id(id).ok()?)?;
            if !entry.entry.delegate_from.is_empty() {
                return None;
            }
            let task = entry
                .entry
                .task_id
                .as_ref()
                .and_then(|t| state.index.task(t).cloned());
            Some((Arc::clone(entry), task))
        }
        Some((entry_id, task_id)) => {
            let entry = state.index.entry(&parse_entry_id(entry_id).ok()?)?;
            let task = state.index.task(&TaskId::new(task_id).ok()?)?;
            let lineage = task.task.lineage.as_ref()?;
            let bound = lineage.delegate == entry.entry.spiffe_id.to_string()
                && entry
                    .entry
                    .delegate_from
                    .iter()
                    .any(|d| d.to_string() == lineage.delegator);
            bound.then(|| (Arc::clone(entry), Some(Arc::clone(task))))
        }
    }
}

/// Why an authorized entry may still not be issued: its task is not open.
fn task_refusal(task: Option<&Arc<StoredTask>>, now: SystemTime) -> Option<String> {
    let task = &task?.task;
    (!task.can_issue(now)).then(|| format!("task {} is {}", task.id, task.state_at(now).as_str()))
}

/// Signs a batch of CSRs for `agent`.
///
/// # Errors
/// `PermissionDenied` when any entry is not the caller's (audited), `InvalidArgument` for a
/// batch over [`MAX_BATCH`], or a store failure.
pub(super) async fn sign_x509(
    ctx: Arc<Context>,
    agent: &str,
    requests: Vec<SignX509SvidRequest>,
    now: SystemTime,
) -> Result<Vec<SignX509SvidResult>, RegistryError> {
    if requests.len() > MAX_BATCH {
        return Err(RegistryError::InvalidArgument(format!(
            "at most {MAX_BATCH} CSRs per call"
        )));
    }
    let ids: Vec<&str> = requests.iter().map(|r| r.entry_id.as_str()).collect();
    let authorized = authorize(&ctx, agent, &ids, now).await?;
    let worker_ctx = Arc::clone(&ctx);
    // CSR checks and signing are CPU work: keep them off the async workers.
    let (results, issued, denials) =
        tokio::task::spawn_blocking(move || sign_all(&worker_ctx, requests, authorized, now))
            .await
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
    let mut plan = Plan::default();
    let mut late = Vec::new();
    for (task, serial, draft) in issued {
        if task.is_some() {
            late.push((task.clone(), serial.clone()));
        }
        if let Some(task) = task {
            plan.ops.push(WriteOp::PutSerial(task, serial));
        }
        plan.audit.push(draft);
    }
    plan.audit.extend(denials.into_iter().map(|mut d| {
        d.actor = agent.to_owned();
        d
    }));
    if !plan.audit.is_empty() {
        let ended = ctx
            .registry
            .write(now, |state| {
                // A task that ended while we signed: its close already read the serials, so
                // revoke these here (read under the write lock, see `Tasks::transition`; the
                // CRL is signed after the commit).
                let ended: Vec<IssuedSerial> = late
                    .iter()
                    .filter(|(t, _)| {
                        t.as_ref()
                            .and_then(|t| state.index.task(t))
                            .is_some_and(|t| !t.task.can_issue(now))
                    })
                    .map(|(_, s)| s.clone())
                    .collect();
                Ok((plan, ended))
            })
            .await?;
        ctx.ca.publish_revocations(&ended, now).await?;
    }
    Ok(results)
}

type Issued = (Option<TaskId>, IssuedSerial, AuditDraft);

fn sign_all(
    ctx: &Context,
    requests: Vec<SignX509SvidRequest>,
    authorized: Vec<Authorized>,
    now: SystemTime,
) -> (Vec<SignX509SvidResult>, Vec<Issued>, Vec<AuditDraft>) {
    let mut results = Vec::with_capacity(requests.len());
    let mut issued = Vec::new();
    let mut denials = Vec::new();
    for (req, (entry, task)) in requests.into_iter().zip(authorized) {
        let refuse = |code: tonic::Code, message: String| SignX509SvidResult {
            entry_id: req.entry_id.clone(),
            cert_chain: Vec::new(),
            code: code as i32,
            message,
        };
        if let Some(why) = task_refusal(task.as_ref(), now) {
            denials.push(AuditDraft {
                kind: "svid.deny",
                task_id: task.as_ref().map(|t| t.task.id.to_string()),
                spiffe_id: Some(entry.entry.spiffe_id.to_string()),
                detail: why.clone(),
                ..AuditDraft::default()
            });
            ctx.metrics.svid_denied.inc();
            results.push(refuse(tonic::Code::PermissionDenied, why));
            continue;
        }
        let key = match public_key_from_csr(&req.csr) {
            Ok(k) => k,
            Err(e) => {
                results.push(refuse(
                    tonic::Code::InvalidArgument,
                    format!("invalid CSR: {e}"),
                ));
                continue;
            }
        };
        let svid_req = SvidRequest {
            spiffe_id: entry.entry.spiffe_id.clone(),
            dns_names: entry.entry.dns_names.clone(),
            ttl: entry.entry.x509_ttl,
            deadline: task.as_ref().map(|t| t.task.deadline),
            delegation: task.as_ref().map(|t| Delegation::for_task(&t.task)),
        };
        match ctx.ca.sign_svid(&key, &svid_req, now) {
            Ok(signed) => {
                let serial = signed.serial.to_string();
                let not_after = unix_seconds(signed.not_after);
                issued.push((
                    task.as_ref().map(|t| t.task.id.clone()),
                    IssuedSerial {
                        serial: serial.clone(),
                        not_after,
                        ca_id: signed.ca_id,
                    },
                    AuditDraft {
                        kind: "svid.issue",
                        actor: entry.entry.parent_id.to_string(),
                        task_id: task.as_ref().map(|t| t.task.id.to_string()),
                        spiffe_id: Some(entry.entry.spiffe_id.to_string()),
                        serial: Some(serial),
                        detail: format!("x509 entry {} not_after {not_after}", entry.entry.id),
                    },
                ));
                ctx.metrics.svid_issued.inc();
                results.push(SignX509SvidResult {
                    entry_id: req.entry_id.clone(),
                    cert_chain: signed.chain,
                    code: 0,
                    message: String::new(),
                });
            }
            Err(e) => results.push(refuse(tonic::Code::Internal, e.to_string())),
        }
    }
    (results, issued, denials)
}

/// Mints a JWT-SVID for one entry of `agent`.
///
/// # Errors
/// `PermissionDenied` for another agent's entry (audited) or a task not open,
/// `InvalidArgument` for an empty audience or one beyond the bounds of
/// [`mandate_core::jwt::check_audience`] (the audit record carries the audience).
pub(super) async fn mint_jwt(
    ctx: &Context,
    agent: &str,
    entry_id: &str,
    audience: Vec<String>,
    now: SystemTime,
) -> Result<(String, i64), RegistryError> {
    mandate_core::jwt::check_audience(&audience)
        .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
    let mut found = authorize(ctx, agent, &[entry_id], now).await?;
    let (entry, task) = found
        .pop()
        .ok_or_else(|| RegistryError::Internal("authorized entry missing".into()))?;
    if let Some(why) = task_refusal(task.as_ref(), now) {
        let draft = AuditDraft {
            kind: "svid.deny",
            actor: agent.to_owned(),
            task_id: task.as_ref().map(|t| t.task.id.to_string()),
            spiffe_id: Some(entry.entry.spiffe_id.to_string()),
            detail: format!("jwt: {why}"),
            ..AuditDraft::default()
        };
        ctx.registry.audit(now, vec![draft]).await?;
        return Err(RegistryError::PermissionDenied(why));
    }
    let (token, exp) = ctx
        .ca
        .mint_jwt(
            entry.entry.spiffe_id.clone(),
            audience.clone(),
            entry.entry.jwt_ttl,
            task.as_ref().map(|t| t.task.deadline),
            task.as_ref().map(|t| Delegation::for_task(&t.task)),
            now,
        )
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    let draft = AuditDraft {
        kind: "svid.issue",
        actor: agent.to_owned(),
        task_id: task.as_ref().map(|t| t.task.id.to_string()),
        spiffe_id: Some(entry.entry.spiffe_id.to_string()),
        detail: format!(
            "jwt entry {} aud {} exp {exp}",
            entry.entry.id,
            audience.join(",")
        ),
        ..AuditDraft::default()
    };
    ctx.registry.audit(now, vec![draft]).await?;
    ctx.metrics.svid_issued.inc();
    Ok((token, exp))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mandate_core::entry::{Entry, EntrySpec, TtlDefaults};
    use mandate_core::{SpiffeId, TrustDomain};

    use super::*;
    use crate::metrics::Metrics;
    use crate::tasks::{ApprovalPolicy, Tasks};
    use crate::testing::{config, registry_and_ca};

    #[tokio::test]
    async fn an_entry_under_mandate_from_an_old_store_is_never_issued() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, ca) = registry_and_ca(dir.path(), Duration::from_secs(3600)).await;
        let tasks = Tasks::new(
            Arc::clone(&registry),
            Arc::clone(&ca),
            ApprovalPolicy::default(),
        );
        let ctx = Context {
            config: config(dir.path(), Duration::from_secs(3600)),
            registry: Arc::clone(&registry),
            ca,
            tasks,
            metrics: Arc::new(Metrics::default()),
        };
        const AGENT_A: &str = "spiffe://example.org/mandate/agent/a";
        let now = SystemTime::now();
        let td = TrustDomain::new("example.org").unwrap();
        let defaults = TtlDefaults {
            x509: Duration::from_secs(60),
            jwt: Duration::from_secs(60),
        };
        // (SPIFFE ID, issued): agent B's ID written as an old server would have, and a workload.
        let cases = [
            ("spiffe://example.org/mandate/agent/b", false),
            ("spiffe://example.org/mandate/server", false),
            ("spiffe://example.org/ai/buyer", true),
        ];
        for (id, issued) in cases {
            let spec = EntrySpec {
                spiffe_id: "spiffe://example.org/placeholder".into(),
                parent_id: AGENT_A.into(),
                selectors: vec!["unix:uid:1".into()],
                ..EntrySpec::default()
            };
            let mut entry = Entry::from_spec(spec, &td, defaults, now).unwrap();
            entry.spiffe_id = SpiffeId::new(id).unwrap();
            let entry_id = entry.id.to_string();
            let stored = StoredEntry { entry, revision: 0 };
            registry
                .write(now, |_| {
                    let plan = Plan {
                        ops: vec![WriteOp::PutEntry(stored.clone())],
                        ..Plan::default()
                    };
                    Ok((plan, ()))
                })
                .await
                .unwrap();
            let got = authorize(&ctx, AGENT_A, &[entry_id.as_str()], now).await;
            assert_eq!(got.is_ok(), issued, "{id}: {got:?}");
        }
    }
}

//! Registration entries: create and delete through the registry, each audited and pushed to
//! the parent agent's sync stream.

use std::time::SystemTime;

use mandate_core::TrustDomain;
use mandate_core::entry::{Entry, EntrySpec, TtlDefaults};
use mandate_core::ids::EntryId;

use crate::registry::{Plan, Registry, RegistryError};
use crate::store::{AuditDraft, Change, StoredEntry, WriteOp};

/// Creates an entry from `spec` after checking it (DESIGN 3.7 input rules).
///
/// # Errors
/// `InvalidArgument` for a malformed spec or a SPIFFE ID under the reserved `/mandate/`,
/// `NotFound` for an unknown task, `FailedPrecondition` for a closed or expired task,
/// `AlreadyExists` for an entry with the same SPIFFE ID, parent and selectors, or a store
/// failure.
pub async fn create_entry(
    registry: &Registry,
    spec: EntrySpec,
    trust_domain: &TrustDomain,
    defaults: TtlDefaults,
    actor: String,
    now: SystemTime,
) -> Result<StoredEntry, RegistryError> {
    let entry = Entry::from_spec(spec, trust_domain, defaults, now)
        .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
    registry
        .write(now, |state| {
            if let Some(task) = &entry.task_id {
                let stored = state
                    .index
                    .task(task)
                    .ok_or_else(|| RegistryError::NotFound(format!("task {task} not found")))?;
                let at_now = stored.task.state_at(now);
                if at_now.is_final() {
                    // Its entries would never issue (DESIGN 3.3 "Expiry"), so say so now.
                    return Err(RegistryError::FailedPrecondition(format!(
                        "task {task} is {at_now}: an entry bound to it would never issue"
                    )));
                }
            }
            if state.index.has_identity(&entry) {
                return Err(RegistryError::AlreadyExists(format!(
                    "an entry for {} with parent {} and these selectors already exists",
                    entry.spiffe_id, entry.parent_id
                )));
            }
            let stored = StoredEntry {
                entry: entry.clone(),
                revision: 0,
            };
            let plan = Plan {
                ops: vec![WriteOp::PutEntry(stored)],
                changes: vec![Change::Entry {
                    id: entry.id.clone(),
                    parent: entry.parent_id.to_string(),
                }],
                audit: vec![AuditDraft {
                    kind: "entry.create",
                    actor,
                    task_id: entry.task_id.as_ref().map(ToString::to_string),
                    spiffe_id: Some(entry.spiffe_id.to_string()),
                    detail: format!("entry {} parent {}", entry.id, entry.parent_id),
                    ..AuditDraft::default()
                }],
            };
            Ok((plan, ()))
        })
        .await?;
    registry
        .read()
        .index
        .entry(&entry.id)
        .map(|e| StoredEntry::clone(e))
        .ok_or_else(|| RegistryError::Internal("entry vanished after create".into()))
}

/// Deletes entry `id`.
///
/// # Errors
/// `InvalidArgument` for a malformed ID, `NotFound` when absent, or a store failure.
pub async fn delete_entry(
    registry: &Registry,
    id: &str,
    actor: String,
    now: SystemTime,
) -> Result<EntryId, RegistryError> {
    let id = parse_entry_id(id)?;
    registry
        .write(now, |state| {
            let old = state
                .index
                .entry(&id)
                .ok_or_else(|| RegistryError::NotFound(format!("entry {id} not found")))?;
            let plan = Plan {
                ops: vec![WriteOp::DeleteEntry(id.clone())],
                changes: vec![Change::Entry {
                    id: id.clone(),
                    parent: old.entry.parent_id.to_string(),
                }],
                audit: vec![AuditDraft {
                    kind: "entry.delete",
                    actor,
                    task_id: old.entry.task_id.as_ref().map(ToString::to_string),
                    spiffe_id: Some(old.entry.spiffe_id.to_string()),
                    detail: format!("entry {id}"),
                    ..AuditDraft::default()
                }],
            };
            Ok((plan, ()))
        })
        .await?;
    Ok(id)
}

/// Parses an entry ID from an API request.
///
/// # Errors
/// `InvalidArgument` naming the problem.
pub fn parse_entry_id(id: &str) -> Result<EntryId, RegistryError> {
    EntryId::new(id).map_err(|e| RegistryError::InvalidArgument(format!("invalid entry ID: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SledStore, Store};
    use std::sync::Arc;

    fn spec(task: Option<&str>) -> EntrySpec {
        EntrySpec {
            spiffe_id: "spiffe://example.org/wl".into(),
            parent_id: "spiffe://example.org/mandate/agent/a".into(),
            selectors: vec!["unix:uid:1001".into()],
            x509_ttl: None,
            jwt_ttl: None,
            task_id: task.map(Into::into),
            dns_names: vec![],
            hint: None,
            delegate_from: vec![],
        }
    }

    #[tokio::test]
    async fn create_delete_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let reg = Registry::open(store).unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let d = TtlDefaults {
            x509: std::time::Duration::from_secs(60),
            jwt: std::time::Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let e = create_entry(&reg, spec(None), &td, d, "t".into(), now)
            .await
            .unwrap();
        assert_eq!(e.revision, 1);
        let dup = create_entry(&reg, spec(None), &td, d, "t".into(), now).await;
        assert!(matches!(dup, Err(RegistryError::AlreadyExists(_))));
        let mut two = spec(None);
        two.selectors = vec!["unix:gid:7".into(), "unix:uid:1001".into()];
        let two = create_entry(&reg, two, &td, d, "t".into(), now)
            .await
            .unwrap();
        let mut reordered = spec(None);
        reordered.selectors = vec!["unix:uid:1001".into(), "unix:gid:7".into()];
        let reordered = create_entry(&reg, reordered, &td, d, "t".into(), now).await;
        assert!(matches!(reordered, Err(RegistryError::AlreadyExists(_))));
        delete_entry(&reg, two.entry.id.as_str(), "t".into(), now)
            .await
            .unwrap();
        let unknown = create_entry(&reg, spec(Some("nope")), &td, d, "t".into(), now).await;
        assert!(matches!(unknown, Err(RegistryError::NotFound(_))));
        let mut bad = spec(None);
        bad.spiffe_id = "spiffe://other.org/x".into();
        let bad = create_entry(&reg, bad, &td, d, "t".into(), now).await;
        assert!(matches!(bad, Err(RegistryError::InvalidArgument(_))));
        delete_entry(&reg, e.entry.id.as_str(), "t".into(), now)
            .await
            .unwrap();
        assert_eq!(reg.read().index.entry_count(), 0);
        let again = delete_entry(&reg, e.entry.id.as_str(), "t".into(), now).await;
        assert!(matches!(again, Err(RegistryError::NotFound(_))));
        assert_eq!(reg.read().audit_head().0, 4);
        // A deleted registration frees its identity for a new entry.
        create_entry(&reg, spec(None), &td, d, "t".into(), now)
            .await
            .unwrap();
    }
}

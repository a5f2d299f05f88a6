//! Proto -> domain conversion of what the server syncs (STYLE 5: proto stays at the edge).

use std::time::Duration;

use mandate_core::SpiffeId;
use mandate_core::selector::Selector;
use mandate_core::task::TaskState;
use mandate_core::time::from_unix_seconds;
use mandate_proto::agent::SyncMessage;
use mandate_proto::agent::sync_message::Event;
use mandate_proto::types;

use crate::cache::model::{AgentEntry, BundleData, TaskView};
use crate::cache::state::SyncEvent;

/// Why a synced entry is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The SPIFFE ID does not parse.
    #[error("entry {id}: invalid SPIFFE ID {value:?}")]
    SpiffeId {
        /// Entry ID.
        id: String,
        /// The value.
        value: String,
    },
    /// A selector does not parse.
    #[error("entry {id}: {source}")]
    Selector {
        /// Entry ID.
        id: String,
        /// Why.
        source: mandate_core::selector::SelectorError,
    },
}

/// Converts an entry.
///
/// # Errors
/// When its SPIFFE ID or a selector does not parse.
pub fn entry(entry: types::Entry) -> Result<AgentEntry, ConvertError> {
    if SpiffeId::new(&entry.spiffe_id).is_err() {
        return Err(ConvertError::SpiffeId {
            id: entry.id,
            value: entry.spiffe_id,
        });
    }
    let mut selectors = Vec::with_capacity(entry.selectors.len());
    for text in &entry.selectors {
        let selector: Selector = text.parse().map_err(|source| ConvertError::Selector {
            id: entry.id.clone(),
            source,
        })?;
        selectors.push(selector);
    }
    selectors.sort();
    selectors.dedup();
    Ok(AgentEntry {
        id: entry.id,
        spiffe_id: entry.spiffe_id,
        selectors,
        x509_ttl: Duration::from_secs(entry.x509_ttl_seconds),
        jwt_ttl: Duration::from_secs(entry.jwt_ttl_seconds),
        task_id: (!entry.task_id.is_empty()).then_some(entry.task_id),
        dns_names: entry.dns_names,
        hint: entry.hint,
        created: (entry.created_at_unix, entry.revision),
    })
}

/// Converts a task; an unknown state reads as closed (fail closed).
pub fn task(task: types::Task) -> TaskView {
    let state = match types::TaskState::try_from(task.state) {
        Ok(types::TaskState::Pending) => TaskState::Pending,
        Ok(types::TaskState::Open) => TaskState::Open,
        Ok(types::TaskState::Expired) => TaskState::Expired,
        _ => TaskState::Closed,
    };
    TaskView {
        id: task.id,
        state,
        deadline: from_unix_seconds(task.deadline_unix),
    }
}

/// Converts a bundle.
pub fn bundle(bundle: types::Bundle) -> BundleData {
    let trust_domain_id = if bundle.trust_domain.starts_with("spiffe://") {
        bundle.trust_domain
    } else {
        format!("spiffe://{}", bundle.trust_domain)
    };
    BundleData {
        trust_domain_id,
        authorities: bundle.x509_authorities,
        crls: bundle.crls,
        jwks: bundle.jwks,
        sequence: bundle.sequence,
    }
}

/// Converts one sync message into events (an unusable entry becomes its removal, so the
/// agent never serves a stale version of it).
pub fn sync_message(message: SyncMessage) -> Vec<SyncEvent> {
    let Some(event) = message.event else {
        return vec![SyncEvent::Heartbeat];
    };
    match event {
        Event::Snapshot(part) => {
            let mut entries = Vec::with_capacity(part.entries.len());
            for e in part.entries {
                match entry(e) {
                    Ok(e) => entries.push(e),
                    Err(err) => tracing::warn!(error = %err, "ignoring unusable entry"),
                }
            }
            vec![SyncEvent::Snapshot {
                reset: part.reset,
                complete: part.complete,
                entries,
                tasks: part.tasks.into_iter().map(task).collect(),
                ended: part
                    .ended_tasks
                    .into_iter()
                    .map(|t| (t.task_id, from_unix_seconds(t.deadline_unix)))
                    .collect(),
                bundle: part.bundle.map(bundle),
            }]
        }
        Event::EntryUpsert(e) => {
            let id = e.id.clone();
            match entry(e) {
                Ok(e) => vec![SyncEvent::EntryUpsert(e)],
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring unusable entry");
                    vec![SyncEvent::EntryRemoved(id)]
                }
            }
        }
        Event::EntryRemoved(r) => vec![SyncEvent::EntryRemoved(r.entry_id)],
        Event::TaskUpdate(t) => vec![SyncEvent::TaskUpdate(task(t))],
        Event::TaskEnded(t) => vec![SyncEvent::TaskEnded {
            id: t.task_id,
            deadline: from_unix_seconds(t.deadline_unix),
        }],
        Event::BundleUpdate(b) => vec![SyncEvent::BundleUpdate(bundle(b))],
        Event::Heartbeat(_) => vec![SyncEvent::Heartbeat],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_convert_and_bad_ones_become_removals() {
        let good = types::Entry {
            id: "e1".into(),
            spiffe_id: "spiffe://example.org/w".into(),
            selectors: vec!["unix:uid:1".into(), "unix:uid:1".into()],
            x509_ttl_seconds: 60,
            ..Default::default()
        };
        let converted = entry(good.clone()).unwrap();
        assert_eq!(converted.selectors.len(), 1);
        assert_eq!(converted.task_id, None);
        let mut bad = good;
        bad.selectors = vec!["k8s:ns:x".into()];
        let events = sync_message(SyncMessage {
            revision: 3,
            server_time_unix_ms: 0,
            event: Some(Event::EntryUpsert(bad)),
        });
        assert!(matches!(&events[..], [SyncEvent::EntryRemoved(id)] if id == "e1"));
    }

    #[test]
    fn unknown_task_state_fails_closed() {
        let t = task(types::Task {
            id: "t".into(),
            state: 99,
            ..Default::default()
        });
        assert_eq!(t.state, TaskState::Closed);
        assert_eq!(
            bundle(types::Bundle {
                trust_domain: "td".into(),
                ..Default::default()
            })
            .trust_domain_id,
            "spiffe://td"
        );
    }
}

//! Registry tests on the real sled store in a temp dir.

use std::sync::Arc;
use std::time::SystemTime;

use super::*;
use crate::store::{AgentRecord, SledStore, verify_chain};

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        spiffe_id: id.into(),
        attested_at: 1,
        expires_at: 2,
        banned: false,
        serial: "01".into(),
    }
}

fn open(dir: &std::path::Path) -> Registry {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
    Registry::open(store).unwrap()
}

#[tokio::test]
async fn writes_are_published_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    {
        let reg = Arc::new(open(dir.path()));
        let mut events = reg.subscribe();
        let mut handles = Vec::new();
        for i in 0..20 {
            let reg = Arc::clone(&reg);
            handles.push(tokio::spawn(async move {
                reg.write(now, |_| {
                    let id = format!("spiffe://td/a{i}");
                    Ok((
                        Plan {
                            ops: vec![WriteOp::PutAgent(agent(&id))],
                            changes: vec![Change::Agent { spiffe_id: id }],
                            audit: vec![AuditDraft {
                                kind: "agent.attest",
                                ..AuditDraft::default()
                            }],
                        },
                        (),
                    ))
                })
                .await
                .unwrap();
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let mut seen = Vec::new();
        while let Ok(record) = events.try_recv() {
            seen.push(record.revision);
        }
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        assert_eq!(reg.published_revision(), 20);
    }
    let reg = open(dir.path());
    let state = reg.read();
    assert_eq!(state.revision, 20);
    assert_eq!(state.index.agents().count(), 20);
    assert_eq!(state.audit_head().0, 20);
    let records = reg.store().audit_records().unwrap();
    assert_eq!(verify_chain(&records, &state.audit_head()), Ok(20));
}

#[tokio::test]
async fn a_refused_plan_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path());
    let r: Result<(), _> = reg
        .write(SystemTime::now(), |_| {
            Err(RegistryError::NotFound("nope".into()))
        })
        .await;
    assert!(matches!(r, Err(RegistryError::NotFound(_))));
    assert_eq!(reg.read().revision, 0);
    assert!(reg.store().audit_records().unwrap().is_empty());
}

#[test]
#[ignore = "scale measurement: run with --ignored --nocapture in release"]
fn load_100k_entries() {
    use mandate_core::entry::{Entry, EntrySpec, TtlDefaults};
    let dir = tempfile::tempdir().unwrap();
    let td = mandate_core::TrustDomain::new("example.org").unwrap();
    let defaults = TtlDefaults {
        x509: std::time::Duration::from_secs(3600),
        jwt: std::time::Duration::from_secs(300),
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        for chunk in 0..100 {
            let mut batch = WriteBatch::default();
            for i in 0..1000 {
                let spec = EntrySpec {
                    spiffe_id: format!("spiffe://example.org/wl/{chunk}/{i}"),
                    parent_id: format!("spiffe://example.org/agent/{}", i % 100),
                    selectors: vec![format!("unix:uid:{i}")],
                    x509_ttl: None,
                    jwt_ttl: None,
                    task_id: None,
                    dns_names: vec![],
                    hint: None,
                    delegate_from: vec![],
                };
                let entry = Entry::from_spec(spec, &td, defaults, SystemTime::now()).unwrap();
                batch.ops.push(WriteOp::PutEntry(crate::store::StoredEntry {
                    entry,
                    revision: 1,
                }));
            }
            store.apply(&batch).unwrap();
        }
        store.sync().unwrap();
    }
    let start = std::time::Instant::now();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    println!("open {:?}", start.elapsed());
    let loaded = store.load().unwrap();
    println!("load {:?}", start.elapsed());
    drop(Index::build(loaded));
    println!("index {:?}", start.elapsed());
    let start = std::time::Instant::now();
    let reg = Registry::open(store).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(reg.read().index.entry_count(), 100_000);
    println!("loaded 100k entries in {elapsed:?}");
}

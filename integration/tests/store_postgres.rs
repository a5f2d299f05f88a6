//! The store on a real PostgreSQL (DESIGN 4): the one store suite on sled and on PostgreSQL,
//! migrations that race and migrations that refuse, the invariants the database itself
//! enforces, and a batch that is durable when `apply` returns, across a database crash.
//!
//! PostgreSQL comes from the distribution's packages through the harness; without it these
//! tests skip with a message, except under `CI=true`, where that is a failure.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::{Arc, Barrier};

use mandate_integration::postgres::Postgres;
use mandate_server::store::suite::{self, CASES};
use mandate_server::store::{
    AuditChain, AuditDraft, PG_SCHEMA_VERSION, PgStore, SledStore, Store, StoreError, TokenRecord,
    WriteBatch, WriteOp,
};

fn apply(store: &dyn Store, ops: Vec<WriteOp>) -> Result<(), StoreError> {
    store.apply(&WriteBatch { ops })
}

#[test]
fn the_store_suite_passes_on_sled_and_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    for (name, case) in CASES {
        let store = SledStore::open(&dir.path().join(name)).unwrap();
        case(&store);
    }
    let Some(pg) = Postgres::start_or_skip("the store suite on postgres") else {
        return;
    };
    for (name, case) in CASES {
        let store = PgStore::open(&pg.create_database().unwrap()).unwrap();
        eprintln!("postgres: {name}");
        case(&store);
    }
}

#[test]
fn racing_migrators_apply_the_schema_once() {
    let Some(pg) = Postgres::start_or_skip("racing migrators") else {
        return;
    };
    let url = pg.create_database().unwrap();
    let start = Arc::new(Barrier::new(4));
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (url, start) = (url.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&url).map(drop)
            })
        })
        .collect();
    for racer in racers {
        racer.join().unwrap().unwrap();
    }
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT count(*), max(version) FROM mandate_schema")
            .unwrap(),
        format!("{PG_SCHEMA_VERSION}|{PG_SCHEMA_VERSION}")
    );
    assert_eq!(pg.psql(db, "SELECT count(*) FROM store_head").unwrap(), "1");
}

#[test]
fn a_schema_newer_than_the_build_is_refused() {
    let Some(pg) = Postgres::start_or_skip("newer schema") else {
        return;
    };
    let url = pg.create_database().unwrap();
    drop(PgStore::open(&url).unwrap());
    let db = url.rsplit('/').next().unwrap();
    let newer = PG_SCHEMA_VERSION + 1;
    pg.psql(
        db,
        &format!("INSERT INTO mandate_schema (version) VALUES ({newer})"),
    )
    .unwrap();
    match PgStore::open(&url) {
        Err(StoreError::Schema { found, expected }) => {
            assert_eq!((found, expected), (newer, PG_SCHEMA_VERSION));
        }
        other => panic!("expected a schema refusal, got {other:?}"),
    }
    // The advisory lock was released with the refusal: the next start is not stuck on it.
    assert!(matches!(
        PgStore::open(&url),
        Err(StoreError::Schema { .. })
    ));
}

#[test]
fn the_database_refuses_what_no_server_may_do() {
    let Some(pg) = Postgres::start_or_skip("database invariants") else {
        return;
    };
    let url = pg.create_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let store = PgStore::open(&url).unwrap();

    // A closed task never reopens, and the refused batch leaves nothing behind.
    let mut closed = suite::task("task-closed", 1);
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_010);
    closed.task.close(Some("done".into()), now).unwrap();
    apply(&store, vec![WriteOp::PutTask(closed)]).unwrap();
    let reopened = suite::task("task-closed", 2);
    let err = apply(
        &store,
        vec![
            WriteOp::PutEntry(suite::entry("sneaky", 2)),
            WriteOp::PutTask(reopened),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("never reopens"), "{err}");
    let state = store.load().unwrap();
    assert!(state.entries.is_empty());
    assert_eq!(state.tasks[0].task.state.as_str(), "closed");
    // Not even by hand: task IDs are unique forever.
    let deleted = pg.psql(&db, "DELETE FROM tasks").unwrap_err();
    assert!(deleted.to_string().contains("unique forever"), "{deleted}");

    // A used join token stays used.
    let token = |used| TokenRecord {
        agent_id: None,
        expires_at: 1_700_000_600,
        used,
    };
    apply(&store, vec![WriteOp::PutToken("t1".into(), token(true))]).unwrap();
    let err = apply(&store, vec![WriteOp::PutToken("t1".into(), token(false))]).unwrap_err();
    assert!(err.to_string().contains("cannot be used again"), "{err}");
    assert_eq!(store.token("t1").unwrap(), Some(token(true)));

    // One audit record per seq: a second writer on a stale head is refused.
    let mut chain = AuditChain::default();
    let mut stale = chain.clone();
    let first = chain.append(AuditDraft::default(), 1_700_000_000);
    apply(&store, vec![WriteOp::AppendAudit(first)]).unwrap();
    let draft = AuditDraft {
        kind: "forged",
        ..AuditDraft::default()
    };
    let twin = stale.append(draft, 1_700_000_000);
    assert!(apply(&store, vec![WriteOp::AppendAudit(twin)]).is_err());
    assert_eq!(store.audit_records().unwrap().len(), 1);
    assert_eq!(store.load().unwrap().audit_head, Some(chain.head()));
}

#[test]
fn a_batch_is_durable_when_apply_returns() {
    let Some(pg) = Postgres::start_or_skip("durable apply") else {
        return;
    };
    let url = pg.create_database().unwrap();
    let store = PgStore::open(&url).unwrap();
    let mut chain = AuditChain::default();
    let record = chain.append(AuditDraft::default(), 1_700_000_000);
    apply(
        &store,
        vec![
            WriteOp::PutEntry(suite::entry("kept", 1)),
            WriteOp::AppendAudit(record),
        ],
    )
    .unwrap();
    // No sync: the database crashes (no checkpoint, no shutdown) right after the commit.
    pg.stop("immediate").unwrap();
    pg.restart().unwrap();
    // The old connections died with the database; the store opens new ones.
    let state = store.load().unwrap();
    assert_eq!(state.entries.len(), 1);
    assert_eq!(state.audit_head, Some(chain.head()));
    let reopened = PgStore::open(&url).unwrap();
    assert_eq!(reopened.load().unwrap().entries.len(), 1);
}

#[test]
fn the_first_calls_after_a_database_restart_succeed() {
    let Some(pg) = Postgres::start_or_skip("database restart") else {
        return;
    };
    let store = PgStore::open(&pg.create_database().unwrap()).unwrap();
    apply(&store, vec![WriteOp::PutEntry(suite::entry("before", 1))]).unwrap();
    assert_eq!(store.load().unwrap().entries.len(), 1);
    pg.stop("fast").unwrap();
    pg.restart().unwrap();
    // Both connections died idle: nothing was in flight, so the store reconnects and the
    // first write and the first read after the restart go through.
    apply(&store, vec![WriteOp::PutEntry(suite::entry("after", 2))]).unwrap();
    assert_eq!(store.load().unwrap().entries.len(), 2);
}

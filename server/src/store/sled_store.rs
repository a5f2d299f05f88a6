//! The sled 0.34 implementation of [`Store`]: one tree, keys prefixed by record type, every
//! [`WriteBatch`] applied with one atomic `apply_batch`.
//!
//! Key layout (tests and tools that open the db offline rely on it):
//! `e:<entry id>`, `t:<task id>`, `a:<agent id>`, `k:<token sha256 hex>`, `l:<seq u64 BE>`
//! (audit: one record, or a JSON array of the consecutive records one batch appended, keyed
//! by the first one's seq), `c:<revision u64 BE>` (change log), `s:<task id>\0<serial>`, and
//! `m:<name>` for the schema version, revision, audit head and CA journal. Values are JSON.

use std::path::{Path, PathBuf};

use mandate_core::ids::TaskId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AuditRecord, CaJournal, ChangeRecord, IssuedSerial, LoadedState, Store, StoreError,
    TokenRecord, WriteBatch, WriteOp,
};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// How many revisions of change log are kept for resuming agents.
const CHANGE_LOG_KEEP: u64 = 100_000;

/// Most bytes of audit JSON in one stored value (a record is about 400 bytes). sled splits a
/// leaf at 16 keys and writes a leaf over 128 KiB (a quarter of its 512 KiB segment) as a
/// separate blob file, which every sync would then have to fsync: 16 values of 4 KiB stay
/// well under that.
const AUDIT_VALUE_BYTES: usize = 4096;

const META_SCHEMA: &[u8] = b"m:schema";
const META_REVISION: &[u8] = b"m:revision";
const META_AUDIT_HEAD: &[u8] = b"m:audit_head";
const META_CA_JOURNAL: &[u8] = b"m:ca_journal";

/// The embedded store in a directory.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` and checks its schema version.
    ///
    /// # Errors
    /// Backend failure or an unsupported schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let store = Self {
            db,
            dir: dir.to_owned(),
        };
        match store.get::<u32>(META_SCHEMA)? {
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                store.db.insert(META_SCHEMA, encode(&SCHEMA_VERSION)?)?;
                store.sync()?;
            }
        }
        Ok(store)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.db.get(key)?.map(|v| decode(key, &v)).transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }
}

/// Packs consecutive audit records into `l:` values: a lone record as itself, several as a
/// JSON array keyed by the first one's seq.
#[derive(Default)]
struct AuditValues {
    first_seq: u64,
    records: Vec<Vec<u8>>,
    bytes: usize,
}

impl AuditValues {
    fn push(&mut self, seq: u64, json: Vec<u8>, batch: &mut sled::Batch) {
        if !self.records.is_empty() && self.bytes + json.len() + 1 > AUDIT_VALUE_BYTES {
            self.flush(batch);
        }
        if self.records.is_empty() {
            self.first_seq = seq;
        }
        self.bytes += json.len() + 1;
        self.records.push(json);
    }

    fn flush(&mut self, batch: &mut sled::Batch) {
        let key = seq_key(b"l:", self.first_seq);
        match self.records.len() {
            0 => {}
            1 => batch.insert(key, self.records.remove(0)),
            _ => {
                let mut value = Vec::with_capacity(self.bytes + 1);
                for record in &self.records {
                    value.push(if value.is_empty() { b'[' } else { b',' });
                    value.extend_from_slice(record);
                }
                value.push(b']');
                batch.insert(key, value);
            }
        }
        self.records.clear();
        self.bytes = 0;
    }
}

/// What one `l:` key holds.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AuditValue {
    One(AuditRecord),
    Batch(Vec<AuditRecord>),
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn key(prefix: &str, rest: &str) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.extend_from_slice(rest.as_bytes());
    k
}

fn seq_key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn serial_prefix(task: &TaskId) -> Vec<u8> {
    let mut k = key("s:", task.as_str());
    k.push(0);
    k
}

impl Store for SledStore {
    fn load(&self) -> Result<LoadedState, StoreError> {
        Ok(LoadedState {
            entries: self.scan(b"e:")?,
            tasks: self.scan(b"t:")?,
            agents: self.scan(b"a:")?,
            revision: self.get(META_REVISION)?.unwrap_or(0),
            audit_head: self.get(META_AUDIT_HEAD)?,
        })
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        // A batch's audit records (one per SVID when an agent signs a batch of CSRs) go in
        // values of up to AUDIT_VALUE_BYTES, and the head and revision once: a few tree
        // inserts instead of hundreds.
        let mut audit = AuditValues::default();
        let mut head = None;
        let mut revision = None;
        for op in &batch.ops {
            match op {
                WriteOp::PutEntry(e) => b.insert(key("e:", e.entry.id.as_str()), encode(e)?),
                WriteOp::DeleteEntry(id) => b.remove(key("e:", id.as_str())),
                WriteOp::PutTask(t) => b.insert(key("t:", t.task.id.as_str()), encode(t)?),
                WriteOp::PutAgent(a) => b.insert(key("a:", &a.spiffe_id), encode(a)?),
                WriteOp::PutToken(hash, t) => b.insert(key("k:", hash), encode(t)?),
                WriteOp::AppendAudit(r) => {
                    audit.push(r.seq, encode(r)?, &mut b);
                    head = Some((r.seq, &r.hash));
                }
                WriteOp::AppendChange(c) => {
                    b.insert(seq_key(b"c:", c.revision), encode(c)?);
                    revision = Some(c.revision);
                    if c.revision > CHANGE_LOG_KEEP {
                        b.remove(seq_key(b"c:", c.revision - CHANGE_LOG_KEEP));
                    }
                }
                WriteOp::PutSerial(task, s) => {
                    let mut k = serial_prefix(task);
                    k.extend_from_slice(s.serial.as_bytes());
                    b.insert(k, encode(s)?);
                }
                WriteOp::PutCaJournal(j) => b.insert(META_CA_JOURNAL, encode(j)?),
            }
        }
        audit.flush(&mut b);
        if let Some(head) = head {
            b.insert(META_AUDIT_HEAD, encode(&head)?);
        }
        if let Some(revision) = revision {
            b.insert(META_REVISION, encode(&revision)?);
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(super::sync_sled_dir(&self.db, &self.dir)?)
    }

    fn changes_after(&self, revision: u64) -> Result<Option<Vec<ChangeRecord>>, StoreError> {
        let oldest = match self.db.scan_prefix(b"c:").next() {
            None => return Ok(Some(Vec::new())),
            Some(kv) => {
                let (k, v) = kv?;
                decode::<ChangeRecord>(&k, &v)?.revision
            }
        };
        if revision + 1 < oldest {
            return Ok(None);
        }
        let start = seq_key(b"c:", revision + 1);
        let records = self
            .db
            .range(start..)
            .take_while(|kv| {
                kv.as_ref()
                    .map(|(k, _)| k.starts_with(b"c:"))
                    .unwrap_or(true)
            })
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(records))
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(&key("k:", hash))
    }

    fn prune_tokens(&self, now_unix: i64, max: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut pruned = 0;
        for kv in self.db.scan_prefix(b"k:") {
            if pruned >= max {
                break;
            }
            let (k, v) = kv?;
            if decode::<TokenRecord>(&k, &v)?.expires_at <= now_unix {
                batch.remove(k);
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.db.apply_batch(batch)?;
            self.sync()?;
        }
        Ok(pruned)
    }

    fn prune_serials(&self, now_unix: i64, max: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut pruned = 0;
        for kv in self.db.scan_prefix(b"s:") {
            if pruned >= max {
                break;
            }
            let (k, v) = kv?;
            if decode::<IssuedSerial>(&k, &v)?.not_after <= now_unix {
                batch.remove(k);
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.db.apply_batch(batch)?;
            self.sync()?;
        }
        Ok(pruned)
    }

    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let values: Vec<AuditValue> = self.scan(b"l:")?;
        let mut records = Vec::with_capacity(values.len());
        for value in values {
            match value {
                AuditValue::One(record) => records.push(record),
                AuditValue::Batch(batch) => records.extend(batch),
            }
        }
        Ok(records)
    }

    fn audit_chunk(&self, after_seq: u64, max: usize) -> Result<Vec<AuditRecord>, StoreError> {
        // Values are keyed by their first record's seq: start at the last key at or before
        // the first wanted seq, which holds it when it exists.
        let wanted = seq_key(b"l:", after_seq.saturating_add(1));
        let start = match self.db.range(..=wanted.clone()).next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                if k.starts_with(b"l:") {
                    k.to_vec()
                } else {
                    wanted
                }
            }
            None => wanted,
        };
        let mut records = Vec::new();
        for kv in self.db.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(b"l:") || records.len() >= max {
                break;
            }
            let batch = match decode::<AuditValue>(&k, &v)? {
                AuditValue::One(record) => vec![record],
                AuditValue::Batch(batch) => batch,
            };
            records.extend(batch.into_iter().filter(|r| r.seq > after_seq));
        }
        records.truncate(max);
        Ok(records)
    }

    fn task_serials(&self, task: &TaskId) -> Result<Vec<IssuedSerial>, StoreError> {
        self.scan(&serial_prefix(task))
    }

    fn ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        self.get(META_CA_JOURNAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AgentRecord, Change};

    fn change(revision: u64) -> WriteOp {
        WriteOp::AppendChange(ChangeRecord {
            revision,
            changes: vec![Change::Bundle],
        })
    }

    #[test]
    fn batches_survive_reopen_and_changes_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let agent = AgentRecord {
                spiffe_id: "spiffe://td/a".into(),
                attested_at: 1,
                expires_at: 2,
                banned: false,
                serial: "ab".into(),
            };
            let batch = WriteBatch {
                ops: vec![WriteOp::PutAgent(agent), change(1), change(2)],
            };
            store.apply(&batch).unwrap();
            store.sync().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.revision, 2);
        assert_eq!(state.agents.len(), 1);
        let after1 = store.changes_after(1).unwrap().unwrap();
        assert_eq!(
            after1.iter().map(|c| c.revision).collect::<Vec<_>>(),
            vec![2]
        );
        assert!(store.changes_after(2).unwrap().unwrap().is_empty());
    }

    #[test]
    fn pruned_log_asks_for_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .apply(&WriteBatch {
                ops: vec![change(5), change(6)],
            })
            .unwrap();
        assert!(store.changes_after(1).unwrap().is_none());
        assert_eq!(store.changes_after(4).unwrap().unwrap().len(), 2);
    }

    #[test]
    fn a_batch_of_audit_records_is_stored_in_few_values_that_read_back_in_order() {
        use crate::store::audit::{AuditChain, AuditDraft, verify_chain};
        let dir = tempfile::tempdir().unwrap();
        let mut chain = AuditChain::default();
        let mut append = |n: usize| WriteBatch {
            ops: (0..n)
                .map(|i| {
                    let draft = AuditDraft {
                        kind: "svid.issue",
                        detail: format!("record {i}"),
                        ..AuditDraft::default()
                    };
                    WriteOp::AppendAudit(chain.append(draft, 1_700_000_000))
                })
                .collect(),
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.apply(&append(1)).unwrap();
            store.apply(&append(250)).unwrap();
            store.apply(&append(1)).unwrap();
            store.sync().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        // Two lone records, and the batch of 250 in values of at most 4 KiB.
        let values: Vec<usize> = store
            .db
            .scan_prefix(b"l:")
            .map(|kv| kv.unwrap().1.len())
            .collect();
        // About 280 bytes a record here: some 14 a value, 18 values for the 250.
        assert!(
            (2 + 250 / 20..=2 + 250 / 8).contains(&values.len()),
            "{values:?}"
        );
        assert!(values.iter().all(|len| *len <= 4096), "{values:?}");
        // No leaf grew into a blob file.
        let blobs = std::fs::read_dir(dir.path().join("blobs")).map_or(0, Iterator::count);
        assert_eq!(blobs, 0);
        let records = store.audit_records().unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=252).collect::<Vec<_>>());
        let head = store.load().unwrap().audit_head.unwrap();
        assert_eq!(head, (252, records[251].hash.clone()));
        assert_eq!(verify_chain(&records, &head), Ok(252));
        // Pages from any seq, across and inside values, give the same records.
        for (after, max) in [(0, 7), (1, 1), (2, 20), (100, 1000), (251, 5), (252, 5)] {
            let page = store.audit_chunk(after, max).unwrap();
            let want: Vec<u64> = (after + 1..=252).take(max).collect();
            assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
        }

        // A record edited inside a batch value is caught like any other.
        let key = seq_key(b"l:", 2);
        let mut batch: serde_json::Value =
            serde_json::from_slice(&store.db.get(&key).unwrap().unwrap()).unwrap();
        batch[3]["detail"] = "edited".into();
        store
            .db
            .insert(&key, serde_json::to_vec(&batch).unwrap())
            .unwrap();
        let records = store.audit_records().unwrap();
        assert_eq!(
            verify_chain(&records, &head),
            Err(crate::store::audit::AuditProblem::Modified { seq: 5 })
        );
    }
}

//! The audit hash chain: each record holds the SHA-256 of the one before it, so an edited,
//! inserted or deleted record breaks verification (DESIGN 4).

use sha2::{Digest, Sha256};

use super::AuditRecord;

/// What an audit record says, before it is placed in the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditDraft {
    /// Kind, e.g. `entry.create`.
    pub kind: &'static str,
    /// Who acted.
    pub actor: String,
    /// Task concerned.
    pub task_id: Option<String>,
    /// SPIFFE ID concerned.
    pub spiffe_id: Option<String>,
    /// Serial concerned.
    pub serial: Option<String>,
    /// Free text.
    pub detail: String,
}

/// A problem `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditProblem {
    /// A record's hash does not match its content: it was edited.
    #[error("audit record {seq} was modified: its hash does not match its content")]
    Modified {
        /// The record.
        seq: u64,
    },
    /// A record does not link to the one before: one was removed or inserted.
    #[error("audit chain broken before record {seq}: a record was removed or inserted")]
    Broken {
        /// The record after the gap.
        seq: u64,
    },
    /// The chain ends before the recorded head: trailing records were removed.
    #[error("audit log ends at record {found} but {expected} records were written")]
    Truncated {
        /// Last record present.
        found: u64,
        /// Last record written.
        expected: u64,
    },
    /// The last record's hash is not the head the writer recorded: it was edited and its
    /// hash recomputed.
    #[error(
        "audit record {seq} does not match the recorded chain head: it was edited and rehashed"
    )]
    HeadMismatch {
        /// The last record.
        seq: u64,
    },
}

/// The head of the chain, kept in memory by the single writer.
#[derive(Debug, Clone, Default)]
pub struct AuditChain {
    seq: u64,
    hash: String,
}

impl AuditChain {
    /// Resumes the chain after the stored head.
    pub fn resume(head: Option<(u64, String)>) -> Self {
        let (seq, hash) = head.unwrap_or_default();
        Self { seq, hash }
    }

    /// The `(seq, hash)` of the last record.
    pub fn head(&self) -> (u64, String) {
        (self.seq, self.hash.clone())
    }

    /// Places `draft` after the head at time `time` (unix seconds) and moves the head.
    pub fn append(&mut self, draft: AuditDraft, time: i64) -> AuditRecord {
        let mut record = AuditRecord {
            seq: self.seq + 1,
            time,
            kind: draft.kind.to_owned(),
            actor: draft.actor,
            task_id: draft.task_id,
            spiffe_id: draft.spiffe_id,
            serial: draft.serial,
            detail: draft.detail,
            hash: String::new(),
            prev_hash: self.hash.clone(),
        };
        record.hash = record_hash(&record);
        self.seq = record.seq;
        self.hash = record.hash.clone();
        record
    }
}

/// The hex SHA-256 of a record's content and its `prev_hash`: the compact JSON array of the
/// fields, serialized straight from the record (no intermediate `serde_json::Value`).
pub(crate) fn record_hash(r: &AuditRecord) -> String {
    let content = (
        r.seq,
        r.time,
        &r.kind,
        &r.actor,
        &r.task_id,
        &r.spiffe_id,
        &r.serial,
        &r.detail,
        &r.prev_hash,
    );
    // Serializing plain integers, strings and options into a Vec cannot fail.
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Checks every link of `records` (in seq order) and that the chain ends at `head`, the
/// `(seq, hash)` the writer recorded last. Holds every record: [`ChainVerifier`] walks a
/// chain of any length in bounded memory.
///
/// # Errors
/// The first [`AuditProblem`] found.
pub fn verify_chain(records: &[AuditRecord], head: &(u64, String)) -> Result<u64, AuditProblem> {
    let mut verifier = ChainVerifier::default();
    for r in records {
        verifier.push(r)?;
    }
    verifier.finish(head)
}

/// Checks a chain one record at a time (in seq order), holding only the last hash, so
/// `audit verify` reads a log of any length in chunks.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    last_seq: u64,
    last_hash: String,
}

impl ChainVerifier {
    /// Checks that `r` links to the record before it and that its hash matches its content.
    ///
    /// # Errors
    /// [`AuditProblem::Broken`] or [`AuditProblem::Modified`].
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), AuditProblem> {
        if r.seq != self.last_seq + 1 || r.prev_hash != self.last_hash {
            return Err(AuditProblem::Broken { seq: r.seq });
        }
        if record_hash(r) != r.hash {
            return Err(AuditProblem::Modified { seq: r.seq });
        }
        self.last_seq = r.seq;
        self.last_hash.clone_from(&r.hash);
        Ok(())
    }

    /// How many records were checked.
    pub fn records(&self) -> u64 {
        self.last_seq
    }

    /// Checks that the chain reached `head`, the `(seq, hash)` of the last record written, by
    /// number and by hash: a last record edited and rehashed still differs from the head.
    ///
    /// # Errors
    /// [`AuditProblem::Truncated`] or [`AuditProblem::HeadMismatch`].
    pub fn finish(&self, head: &(u64, String)) -> Result<u64, AuditProblem> {
        let (head_seq, head_hash) = head;
        if self.last_seq < *head_seq {
            return Err(AuditProblem::Truncated {
                found: self.last_seq,
                expected: *head_seq,
            });
        }
        if self.last_seq == *head_seq && self.last_hash != *head_hash {
            return Err(AuditProblem::HeadMismatch { seq: self.last_seq });
        }
        Ok(self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut c = AuditChain::default();
        (0..n)
            .map(|i| {
                c.append(
                    AuditDraft {
                        kind: "entry.create",
                        actor: "uid:0 pid:1".into(),
                        detail: format!("record {i}"),
                        ..AuditDraft::default()
                    },
                    1_700_000_000,
                )
            })
            .collect()
    }

    fn head(records: &[AuditRecord]) -> (u64, String) {
        records
            .last()
            .map(|r| (r.seq, r.hash.clone()))
            .unwrap_or_default()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify_chain(&c, &head(&c)), Ok(5));
        assert_eq!(verify_chain(&[], &(0, String::new())), Ok(0));
    }

    #[test]
    fn edit_delete_and_truncation_are_detected() {
        let intact = chain(5);
        let head = head(&intact);
        let mut edited = intact.clone();
        edited[2].detail = "changed".into();
        assert_eq!(
            verify_chain(&edited, &head),
            Err(AuditProblem::Modified { seq: 3 })
        );

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            verify_chain(&deleted, &head),
            Err(AuditProblem::Broken { seq: 3 })
        );

        let mut truncated = chain(5);
        truncated.pop();
        assert!(matches!(
            verify_chain(&truncated, &head),
            Err(AuditProblem::Truncated {
                found: 4,
                expected: 5
            })
        ));
    }

    #[test]
    fn a_last_record_edited_and_rehashed_differs_from_the_head() {
        let intact = chain(5);
        let head = head(&intact);
        let mut forged = intact;
        let last = forged.last_mut().expect("five records");
        last.detail = "nothing happened here".into();
        last.hash = record_hash(last);
        // Every link still holds: only the head can tell.
        let mut links = ChainVerifier::default();
        assert!(forged.iter().all(|r| links.push(r).is_ok()));
        assert_eq!(
            verify_chain(&forged, &head),
            Err(AuditProblem::HeadMismatch { seq: 5 })
        );
    }

    #[test]
    fn hash_input_is_the_compact_json_array_of_the_fields() {
        // Records already on disk were hashed over this exact text; it must not change.
        let mut record = chain(2).pop().expect("two records");
        record.task_id = Some("t-1".into());
        record.detail = "quote \" and unicode \u{e9} and \n".into();
        let expected = serde_json::json!([
            record.seq,
            record.time,
            record.kind,
            record.actor,
            record.task_id,
            record.spiffe_id,
            record.serial,
            record.detail,
            record.prev_hash
        ])
        .to_string();
        assert_eq!(
            record_hash(&record),
            hex::encode(Sha256::digest(expected.as_bytes()))
        );
    }
}

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

/// Checks every link of `records` (in seq order) and that the chain reaches `head_seq`.
///
/// # Errors
/// The first [`AuditProblem`] found.
pub fn verify_chain(records: &[AuditRecord], head_seq: u64) -> Result<u64, AuditProblem> {
    let mut prev = String::new();
    let mut expected_seq = 1;
    for r in records {
        if r.seq != expected_seq || r.prev_hash != prev {
            return Err(AuditProblem::Broken { seq: r.seq });
        }
        if record_hash(r) != r.hash {
            return Err(AuditProblem::Modified { seq: r.seq });
        }
        prev = r.hash.clone();
        expected_seq += 1;
    }
    let found = expected_seq - 1;
    if found < head_seq {
        return Err(AuditProblem::Truncated {
            found,
            expected: head_seq,
        });
    }
    Ok(found)
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

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5), 5), Ok(5));
        assert_eq!(verify_chain(&[], 0), Ok(0));
    }

    #[test]
    fn edit_delete_and_truncation_are_detected() {
        let mut edited = chain(5);
        edited[2].detail = "changed".into();
        assert_eq!(
            verify_chain(&edited, 5),
            Err(AuditProblem::Modified { seq: 3 })
        );

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            verify_chain(&deleted, 5),
            Err(AuditProblem::Broken { seq: 3 })
        );

        let mut truncated = chain(5);
        truncated.pop();
        assert!(matches!(
            verify_chain(&truncated, 5),
            Err(AuditProblem::Truncated {
                found: 4,
                expected: 5
            })
        ));
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

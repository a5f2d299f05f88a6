//! Turns signing jobs into X509-SVIDs: a fresh P-256 key per entry, generated here, and CSRs
//! sent to the server in batches (DESIGN 3.5). The server sees only the CSR's public key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::mpsc;

use super::model::CachedSvid;

/// At most this many CSRs per call (the server's limit is 1000).
pub const BATCH_LIMIT: usize = 500;

/// One entry to sign, at the generation the request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignJob {
    /// The entry ID.
    pub entry_id: String,
    /// The SPIFFE ID the entry issues: the returned leaf must name it.
    pub spiffe_id: String,
    /// The entry generation.
    pub generation: u64,
}

/// What became of a job.
#[derive(Debug)]
pub enum SignOutcome {
    /// Signed.
    Issued {
        /// The job.
        job: SignJob,
        /// The SVID.
        svid: CachedSvid,
    },
    /// The server refused this entry (task not open, entry gone, bad CSR).
    Refused {
        /// The job.
        job: SignJob,
        /// The gRPC code.
        code: i32,
        /// The server's message.
        message: String,
    },
    /// The call failed (server unreachable and the like).
    Failed {
        /// The job.
        job: SignJob,
    },
}

/// One result of a signing call, as the server returns it.
#[derive(Debug, Clone)]
pub struct SignReply {
    /// The entry.
    pub entry_id: String,
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// gRPC code, 0 when signed.
    pub code: i32,
    /// Why not.
    pub message: String,
}

/// The boxed future of [`SvidSigner::sign`].
pub type SignFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SignReply>, tonic::Status>> + Send + 'a>>;

/// What the signer needs from the server: one batched call.
pub trait SvidSigner: Send + Sync + 'static {
    /// Signs `(entry_id, csr_der)` pairs; one reply per request, in order.
    fn sign(&self, requests: Vec<(String, Vec<u8>)>) -> SignFuture<'_>;
}

/// Errors from making a key or a CSR, or reading a signed leaf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// rcgen failed.
    #[error("cannot create key or CSR: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The returned chain is empty or its leaf does not parse.
    #[error("server returned an unreadable certificate: {0}")]
    BadLeaf(String),
    /// The returned leaf certifies another key than the one this agent made for it.
    #[error("server returned a certificate for another key")]
    WrongKey,
    /// The returned leaf names another SPIFFE ID than the entry's.
    #[error("server returned a certificate for {found}, not {expected}")]
    WrongId {
        /// The entry's SPIFFE ID.
        expected: String,
        /// The leaf's URI SANs.
        found: String,
    },
}

/// Runs the signer: takes batches of jobs, returns outcomes, until the job channel closes.
pub async fn run_signer(
    signer: Arc<dyn SvidSigner>,
    mut jobs: mpsc::UnboundedReceiver<Vec<SignJob>>,
    outcomes: mpsc::UnboundedSender<Vec<SignOutcome>>,
) {
    while let Some(mut batch) = jobs.recv().await {
        while let Ok(more) = jobs.try_recv() {
            batch.extend(more);
        }
        for chunk in batch.chunks(BATCH_LIMIT) {
            let result = sign_chunk(signer.as_ref(), chunk.to_vec()).await;
            if outcomes.send(result).is_err() {
                return;
            }
        }
    }
}

async fn sign_chunk(signer: &dyn SvidSigner, jobs: Vec<SignJob>) -> Vec<SignOutcome> {
    sign_chunk_with(signer, jobs, new_key_and_csr).await
}

/// Makes a key (PKCS#8 DER) and its CSR.
type KeyMaker = fn() -> Result<(Vec<u8>, Vec<u8>), SignerError>;

/// [`sign_chunk`] with the key maker as a parameter, so tests can make it fail or panic.
async fn sign_chunk_with(
    signer: &dyn SvidSigner,
    jobs: Vec<SignJob>,
    make_key: KeyMaker,
) -> Vec<SignOutcome> {
    let kept = jobs.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|job| (make_key(), job))
            .collect::<Vec<_>>()
    })
    .await;
    // The jobs went into the blocking task: if it panicked, report them failed from the
    // copy kept here, so the manager clears them and retries with backoff.
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            tracing::error!(error = %e, "key generation task failed");
            return kept
                .into_iter()
                .map(|job| SignOutcome::Failed { job })
                .collect();
        }
    };
    let mut outcomes = Vec::new();
    let mut keys = Vec::new();
    let mut requests = Vec::new();
    for (made, job) in prepared {
        match made {
            Ok((key, csr)) => {
                requests.push((job.entry_id.clone(), csr));
                keys.push((job, key));
            }
            Err(e) => {
                tracing::error!(entry = %job.entry_id, error = %e, "cannot create CSR");
                outcomes.push(SignOutcome::Failed { job });
            }
        }
    }
    if requests.is_empty() {
        return outcomes;
    }
    match signer.sign(requests).await {
        Ok(replies) => {
            let now = SystemTime::now();
            let mut replies = replies.into_iter();
            for (job, key) in keys {
                match replies.next() {
                    Some(reply) => outcomes.push(outcome(job, key, reply, now)),
                    None => {
                        // A short reply: the rest are failed, never left in flight.
                        tracing::warn!(entry = %job.entry_id, "no reply for this CSR");
                        outcomes.push(SignOutcome::Failed { job });
                    }
                }
            }
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "signing call failed");
            outcomes.extend(keys.into_iter().map(|(job, _)| SignOutcome::Failed { job }));
        }
    }
    outcomes
}

fn outcome(job: SignJob, key_pkcs8: Vec<u8>, reply: SignReply, now: SystemTime) -> SignOutcome {
    if reply.code != 0 || reply.entry_id != job.entry_id {
        return SignOutcome::Refused {
            job,
            code: reply.code,
            message: reply.message,
        };
    }
    match check_leaf(&reply.chain, &key_pkcs8, &job.spiffe_id)
        .and_then(|()| read_leaf(&reply.chain))
    {
        Ok((serial, not_after)) => {
            let life = not_after.duration_since(now).unwrap_or(Duration::ZERO);
            let max_jitter = (life / 10).as_millis() as u64;
            let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=max_jitter));
            SignOutcome::Issued {
                svid: CachedSvid {
                    chain: reply.chain,
                    key_pkcs8,
                    serial,
                    issued_at: now.min(not_after),
                    not_after,
                    generation: job.generation,
                    jitter,
                },
                job,
            }
        }
        Err(e) => SignOutcome::Refused {
            job,
            code: 13,
            message: e.to_string(),
        },
    }
}

/// A fresh P-256 key (PKCS#8 DER) and a bare CSR for it.
///
/// # Errors
/// When rcgen fails.
pub fn new_key_and_csr() -> Result<(Vec<u8>, Vec<u8>), SignerError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    Ok((key.serialize_der(), csr.der().to_vec()))
}

/// Checks that the leaf of `chain` certifies the public key of `key_pkcs8` and names exactly
/// `spiffe_id`: the agent never serves a certificate that does not belong to its key and entry.
///
/// # Errors
/// `BadLeaf` when the chain, the leaf or the key does not parse; `WrongKey` or `WrongId` on a
/// mismatch.
pub fn check_leaf(chain: &[Vec<u8>], key_pkcs8: &[u8], spiffe_id: &str) -> Result<(), SignerError> {
    check_leaf_key(chain, key_pkcs8)?;
    let found = leaf_uris(chain)?;
    if found.len() != 1 || found[0] != spiffe_id {
        return Err(SignerError::WrongId {
            expected: spiffe_id.to_owned(),
            found: found.join(","),
        });
    }
    Ok(())
}

/// The URI SANs of the leaf of `chain`.
///
/// # Errors
/// `BadLeaf` when the chain is empty or the leaf or its SAN extension does not parse.
pub fn leaf_uris(chain: &[Vec<u8>]) -> Result<Vec<String>, SignerError> {
    let leaf = chain
        .first()
        .ok_or_else(|| SignerError::BadLeaf("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| SignerError::BadLeaf(e.to_string()))?;
    let uris = cert
        .subject_alternative_name()
        .map_err(|e| SignerError::BadLeaf(e.to_string()))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(uris)
}

/// Checks that the leaf of `chain` certifies the public key of `key_pkcs8`.
///
/// # Errors
/// `BadLeaf` when the chain, the leaf or the key does not parse; `WrongKey` on a mismatch.
pub fn check_leaf_key(chain: &[Vec<u8>], key_pkcs8: &[u8]) -> Result<(), SignerError> {
    let leaf = chain
        .first()
        .ok_or_else(|| SignerError::BadLeaf("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| SignerError::BadLeaf(e.to_string()))?;
    let key = rcgen::KeyPair::try_from(key_pkcs8)?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(SignerError::WrongKey);
    }
    Ok(())
}

/// The serial (hex) and notAfter of the leaf of a chain.
///
/// # Errors
/// When the chain is empty or the leaf does not parse.
pub fn read_leaf(chain: &[Vec<u8>]) -> Result<(String, SystemTime), SignerError> {
    let leaf = chain
        .first()
        .ok_or_else(|| SignerError::BadLeaf("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| SignerError::BadLeaf(e.to_string()))?;
    let not_after = cert.validity().not_after.timestamp();
    let not_after = mandate_core::time::from_unix_seconds(not_after);
    Ok((hex::encode(cert.raw_serial()), not_after))
}

#[cfg(test)]
#[path = "signer_tests.rs"]
mod tests;

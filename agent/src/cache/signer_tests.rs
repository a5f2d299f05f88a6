//! Unit tests of the signer: outcomes for short replies, failed key generation, and leaves that do not match the key or the entry.

use super::*;

#[test]
fn csr_carries_a_p256_key_and_parses() {
    let (key, csr) = new_key_and_csr().unwrap();
    assert!(!key.is_empty());
    let parsed = rcgen::CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
    assert_eq!(
        parsed.public_key.algorithm(),
        &rcgen::PKCS_ECDSA_P256_SHA256
    );
}

#[test]
fn refusals_pass_through() {
    let job = job("e");
    let reply = SignReply {
        entry_id: "e".into(),
        chain: vec![],
        code: 7,
        message: "task t is closed".into(),
    };
    match outcome(job, vec![], reply, SystemTime::now()) {
        SignOutcome::Refused { code, .. } => assert_eq!(code, 7),
        other => panic!("unexpected {other:?}"),
    }
}

fn job(entry_id: &str) -> SignJob {
    SignJob {
        entry_id: entry_id.into(),
        spiffe_id: format!("spiffe://example.org/{entry_id}"),
        generation: 1,
    }
}

/// A server double: signs each CSR's key for `uri_of(entry)` (or for `other_key`), and
/// answers only the first `answer` requests.
struct FakeServer {
    answer: usize,
    uri_of: fn(&str) -> String,
    other_key: bool,
}

impl SvidSigner for FakeServer {
    fn sign(&self, requests: Vec<(String, Vec<u8>)>) -> SignFuture<'_> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), ca_key);
        let replies = requests
            .into_iter()
            .take(self.answer)
            .map(|(entry_id, csr)| {
                let mut params = rcgen::CertificateParams::default();
                params.subject_alt_names = vec![rcgen::SanType::URI(
                    (self.uri_of)(&entry_id).try_into().unwrap(),
                )];
                let csr = rcgen::CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
                let cert = if self.other_key {
                    params
                        .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
                        .unwrap()
                } else {
                    params.signed_by(&csr.public_key, &issuer).unwrap()
                };
                SignReply {
                    entry_id,
                    chain: vec![cert.der().to_vec()],
                    code: 0,
                    message: String::new(),
                }
            })
            .collect();
        Box::pin(async move { Ok(replies) })
    }
}

fn right_uri(entry_id: &str) -> String {
    format!("spiffe://example.org/{entry_id}")
}

fn kinds(outcomes: &[SignOutcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|o| match o {
            SignOutcome::Issued { .. } => "issued",
            SignOutcome::Refused { .. } => "refused",
            SignOutcome::Failed { .. } => "failed",
        })
        .collect()
}

#[tokio::test]
async fn a_matching_leaf_is_issued_and_a_short_reply_fails_the_rest() {
    let server = FakeServer {
        answer: 1,
        uri_of: right_uri,
        other_key: false,
    };
    let outcomes = sign_chunk(&server, vec![job("a"), job("b"), job("c")]).await;
    assert_eq!(kinds(&outcomes), ["issued", "failed", "failed"]);
}

#[tokio::test]
async fn a_leaf_for_another_key_or_id_is_refused() {
    let wrong_key = FakeServer {
        answer: 9,
        uri_of: right_uri,
        other_key: true,
    };
    let outcomes = sign_chunk(&wrong_key, vec![job("a")]).await;
    assert!(
        matches!(&outcomes[..], [SignOutcome::Refused { message, .. }] if message.contains("another key")),
        "{outcomes:?}"
    );
    let wrong_id = FakeServer {
        answer: 9,
        uri_of: |_| "spiffe://example.org/someone-else".into(),
        other_key: false,
    };
    let outcomes = sign_chunk(&wrong_id, vec![job("a")]).await;
    assert!(
        matches!(&outcomes[..], [SignOutcome::Refused { message, .. }] if message.contains("someone-else")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_panicking_key_generation_fails_every_job() {
    let server = FakeServer {
        answer: 9,
        uri_of: right_uri,
        other_key: false,
    };
    let outcomes = sign_chunk_with(&server, vec![job("a"), job("b")], || panic!("keygen")).await;
    assert_eq!(kinds(&outcomes), ["failed", "failed"]);
}

#[test]
fn leaf_uris_reads_the_uri_sans() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["dns.example".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/mandate/agent/a".try_into().unwrap(),
    ));
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(
        leaf_uris(&[cert.der().to_vec()]).unwrap(),
        ["spiffe://example.org/mandate/agent/a"]
    );
    assert!(matches!(leaf_uris(&[]), Err(SignerError::BadLeaf(_))));
}

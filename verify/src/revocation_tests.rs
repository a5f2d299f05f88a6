//! Tests of the CRL path: real CAs, leaves and CRLs made with the server's own signing code.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::x509::{Ca, CaKey, LeafRequest, Serial};
use mandate_core::{SpiffeId, TrustDomain};

use super::*;
use crate::status::DEFAULT_STALENESS;

fn ca(now: SystemTime) -> Ca {
    let td = TrustDomain::new("example.org").expect("trust domain");
    Ca::self_signed(
        td,
        CaKey::generate().expect("key"),
        now,
        Duration::from_secs(3600),
    )
    .expect("ca")
}

fn leaf(ca: &Ca, now: SystemTime) -> (Vec<u8>, Serial) {
    let key = mandate_core::x509::generate_p256_keypair().expect("key");
    let issued = ca
        .sign_leaf(
            &key,
            &LeafRequest {
                spiffe_id: SpiffeId::new("spiffe://example.org/ai/procurement").expect("id"),
                dns_names: Vec::new(),
                not_before: now - Duration::from_secs(10),
                not_after: now + Duration::from_secs(600),
                delegation: None,
            },
        )
        .expect("leaf");
    (issued.der, issued.serial)
}

fn crl(ca: &Ca, serials: &[Serial], now: SystemTime) -> Vec<u8> {
    let listed: Vec<(Serial, SystemTime)> = serials.iter().map(|s| (*s, now)).collect();
    ca.sign_crl(&listed, 7, now, now + Duration::from_secs(3600))
        .expect("crl")
}

#[test]
fn a_serial_listed_by_a_crl_of_a_bundle_ca_is_revoked() {
    let now = SystemTime::now();
    let ca = ca(now);
    let (revoked_leaf, revoked) = leaf(&ca, now);
    let (kept_leaf, _) = leaf(&ca, now);
    let set = revoked_serials(
        &[crl(&ca, &[revoked], now)],
        std::slice::from_ref(&ca.cert_der),
    );
    assert_eq!((set.verified_crls, set.rejected_crls, set.len()), (1, 0, 1));
    let serial = certificate_serial(&revoked_leaf).expect("serial");
    assert!(set.contains(&serial));
    let mut padded = vec![0u8];
    padded.extend_from_slice(&serial);
    assert!(set.contains(&padded), "leading zeros do not matter");
    assert!(!set.contains(&certificate_serial(&kept_leaf).expect("serial")));
}

#[test]
fn a_crl_not_signed_by_a_bundle_ca_is_ignored() {
    let now = SystemTime::now();
    let trusted = ca(now);
    let forger = ca(now);
    let (leaf_der, serial) = leaf(&trusted, now);
    // Signed by a CA outside the bundle (its issuer name differs, and so does its key).
    let forged = crl(&forger, &[serial], now);
    let set = revoked_serials(
        std::slice::from_ref(&forged),
        std::slice::from_ref(&trusted.cert_der),
    );
    assert_eq!((set.verified_crls, set.rejected_crls), (0, 1));
    assert!(!set.contains(&certificate_serial(&leaf_der).expect("serial")));
    // Garbage and a tampered CRL are rejected as well.
    let mut tampered = crl(&trusted, &[serial], now);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let set = revoked_serials(
        &[b"not a crl".to_vec(), tampered],
        std::slice::from_ref(&trusted.cert_der),
    );
    assert_eq!((set.verified_crls, set.rejected_crls), (0, 2));
    assert!(set.is_empty());
}

#[test]
fn serials_of_every_verified_crl_count() {
    let now = SystemTime::now();
    let (old, new) = (ca(now), ca(now));
    let (_, a) = leaf(&old, now);
    let (_, b) = leaf(&new, now);
    let set = revoked_serials(
        &[crl(&old, &[a], now), crl(&new, &[b], now)],
        &[old.cert_der.clone(), new.cert_der.clone()],
    );
    assert_eq!((set.verified_crls, set.len()), (2, 2));
}

/// A verifier whose task-status feed is fresh and lists nothing, with `revoked` as its CRLs.
fn verifier(revoked: Option<RevokedSerials>) -> crate::Verifier {
    let snapshot = crate::status::Snapshot {
        closed_task_ids: HashSet::new(),
        sequence: 1,
        as_of: SystemTime::now(),
    };
    let (_status_tx, status) = watch::channel(Some(snapshot));
    let (_crl_tx, crls) = watch::channel(revoked.map(Arc::new));
    let watcher = crate::TaskStatusWatcher::for_test_with_crls(status, crls, DEFAULT_STALENESS);
    crate::Verifier::new(crate::DelegationPolicy::require_under(["/ai"]), watcher)
}

#[tokio::test]
async fn the_crl_alone_refuses_a_revoked_caller_on_every_request() {
    let now = SystemTime::now();
    let ca = ca(now);
    let key = mandate_core::x509::generate_p256_keypair().expect("key");
    let deadline = now + Duration::from_secs(3600);
    let issued = ca
        .sign_leaf(
            &key,
            &LeafRequest {
                spiffe_id: SpiffeId::new("spiffe://example.org/ai/procurement").expect("id"),
                dns_names: Vec::new(),
                not_before: now - Duration::from_secs(10),
                not_after: now + Duration::from_secs(600),
                delegation: Some(crate::test_support::sample_delegation(deadline)),
            },
        )
        .expect("leaf");
    let caller = crate::CallerIdentity::from_certificate(
        &issued.der,
        &crate::DelegationPolicy::require_under(["/ai"]),
    )
    .expect("caller");

    let allowed = verifier(Some(RevokedSerials::default()));
    assert!(allowed.authorize(&caller, "po.read", None).is_ok());

    // The task-status feed does not list the task; the CRL of the trust domain does.
    let listed = revoked_serials(
        &[crl(&ca, &[issued.serial], now)],
        std::slice::from_ref(&ca.cert_der),
    );
    let refused = verifier(Some(listed));
    for _ in 0..2 {
        let refusal = refused
            .authorize(&caller, "po.read", None)
            .expect_err("revoked");
        assert_eq!(refusal.code(), "certificate_revoked", "{refusal}");
    }

    // No CRLs received yet: fail closed.
    let unknown = verifier(None);
    let refusal = unknown
        .authorize(&caller, "po.read", None)
        .expect_err("fails closed");
    assert_eq!(refusal.code(), "status_unavailable");
}

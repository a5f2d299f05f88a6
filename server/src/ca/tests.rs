//! CA manager tests: first start, reload, rotation with overlap (times injected), CRLs.

use std::time::{Duration, SystemTime};

use mandate_core::x509::{csr_request, generate_p256_keypair, validate_ca};

use super::*;
use crate::testing::registry_and_ca;

const TTL: Duration = Duration::from_secs(600);

#[tokio::test]
async fn rotation_prepares_at_half_life_and_activates_at_a_sixth() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, ca) = registry_and_ca(dir.path(), TTL).await;
    let start = ca.live();
    let first = start.active.id;
    assert_eq!(start.bundle.x509_authorities.len(), 1);
    assert_eq!(
        validate_ca(&start.bundle.x509_authorities[0])
            .unwrap()
            .to_string(),
        "example.org"
    );
    let nb = start.active.ca.not_before;
    let life = start.active.ca.not_after.duration_since(nb).unwrap();

    ca.rotate(nb + life / 3).await.unwrap();
    assert_eq!(ca.live().slots.len(), 1, "nothing before half life");

    ca.rotate(nb + life / 2 + Duration::from_secs(1))
        .await
        .unwrap();
    let prepared = ca.live();
    assert_eq!(prepared.active.id, first, "prepared, not active yet");
    assert_eq!(
        prepared.bundle.x509_authorities.len(),
        2,
        "both CAs in the bundle"
    );
    let jwks: serde_json::Value = serde_json::from_slice(&prepared.bundle.jwks).unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "both JWT keys published"
    );

    ca.rotate(nb + life * 5 / 6 + Duration::from_secs(1))
        .await
        .unwrap();
    let activated = ca.live();
    assert_ne!(activated.active.id, first, "next CA activated");
    assert_eq!(
        activated.bundle.x509_authorities.len(),
        2,
        "old CA stays until it expires"
    );

    ca.rotate(nb + life + Duration::from_secs(1)).await.unwrap();
    let pruned = ca.live();
    assert!(
        pruned.slots.iter().all(|s| s.id != first),
        "expired CA dropped"
    );
    let old_cert = &start.bundle.x509_authorities[0];
    assert!(!pruned.bundle.x509_authorities.contains(old_cert));
    assert!(pruned.bundle.sequence > start.bundle.sequence);
}

#[tokio::test]
async fn the_ca_reloads_from_the_journal_and_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (_registry, ca) = registry_and_ca(dir.path(), TTL).await;
        ca.live().bundle.x509_authorities.clone()
    };
    let mode = std::fs::metadata(dir.path().join("ca/ca-1.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let (_registry, ca) = registry_and_ca(dir.path(), TTL).await;
    assert_eq!(ca.live().bundle.x509_authorities, before);
}

#[tokio::test]
async fn svids_are_capped_and_revocations_land_in_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, ca) = registry_and_ca(dir.path(), TTL).await;
    let key = generate_p256_keypair().unwrap();
    let csr = mandate_core::csr::public_key_from_csr(&csr_request(&key).unwrap()).unwrap();
    let now = SystemTime::now();
    let deadline = now + Duration::from_secs(30);
    let req = SvidRequest {
        spiffe_id: "spiffe://example.org/wl".parse().unwrap(),
        dns_names: vec![],
        ttl: Duration::from_secs(3600),
        deadline: Some(deadline),
        delegation: None,
    };
    let signed = ca.sign_svid(&csr, &req, now).unwrap();
    assert!(signed.not_after <= deadline);
    assert_eq!(signed.chain.len(), 1, "self-signed CA: leaf only");
    let serial = IssuedSerial {
        serial: signed.serial.to_string(),
        not_after: unix_seconds(signed.not_after),
        ca_id: signed.ca_id,
    };
    let seq = ca.bundle().sequence;
    ca.revoke(&[serial], now).unwrap();
    assert!(ca.is_revoked(&signed.serial.to_string()));
    let bundle = ca.bundle();
    assert!(bundle.sequence > seq);
    let (_, crl) = x509_parser::parse_x509_crl(&bundle.crls[0]).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 1);
}

//! Tests of the SVID profile: the CA templates, leaves, chains, CRLs and CA reloading.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::*;
use crate::delegation::tests::sample;
use crate::time::{svid_not_after, svid_not_before};
use spiffe::{SpiffeId, TrustDomain};

pub(crate) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

pub(crate) fn test_ca() -> Ca {
    let td = TrustDomain::new("example.org").expect("valid");
    Ca::self_signed(
        td,
        CaKey::generate().expect("key"),
        now(),
        Duration::from_secs(86_400),
    )
    .expect("ca")
}

pub(crate) fn leaf_request(id: &str) -> LeafRequest {
    LeafRequest {
        spiffe_id: SpiffeId::new(id).expect("valid"),
        dns_names: vec!["buyer.example.org".into()],
        not_before: svid_not_before(now()),
        not_after: now() + Duration::from_secs(300),
        delegation: None,
    }
}

#[test]
fn ca_template_follows_the_profile() {
    let ca = test_ca();
    assert_eq!(
        validate_ca(&ca.cert_der).map(|td| td.to_string()),
        Ok("example.org".into())
    );
    assert_eq!(ca.not_before, svid_not_before(now()));
    assert_eq!(ca.chain(), vec![ca.cert_der.clone()]);
    assert!(matches!(
        validate_leaf(&ca.cert_der),
        Err(SvidProfileError::EmptyPath)
    ));

    let td = TrustDomain::new("example.org").expect("valid");
    let inter = Ca::intermediate(
        td,
        CaKey::generate().expect("key"),
        &ca.cert_der,
        ca.key(),
        now(),
        Duration::from_secs(3_600),
    )
    .expect("intermediate");
    assert!(validate_ca(&inter.cert_der).is_ok());
    assert_eq!(
        inter.chain(),
        vec![inter.cert_der.clone(), ca.cert_der.clone()]
    );
}

#[test]
fn an_intermediate_never_outlives_its_upstream() {
    let upstream = test_ca(); // one day
    let td = TrustDomain::new("example.org").expect("valid");
    let year = Duration::from_secs(365 * 86_400);
    let inter = Ca::intermediate(
        td.clone(),
        CaKey::generate().expect("key"),
        &upstream.cert_der,
        upstream.key(),
        now(),
        year,
    )
    .expect("intermediate");
    assert_eq!(inter.not_after, upstream.not_after);
    let (_, cert) = x509_parser::parse_x509_certificate(&inter.cert_der).expect("parses");
    assert_eq!(
        cert.validity().not_after.timestamp(),
        crate::time::unix_seconds(upstream.not_after)
    );

    // Once the upstream has expired, no CA can be made under it.
    let later = upstream.not_after + Duration::from_secs(60);
    let expired = Ca::intermediate(
        td,
        CaKey::generate().expect("key"),
        &upstream.cert_der,
        upstream.key(),
        later,
        year,
    );
    assert!(
        matches!(expired, Err(X509Error::UpstreamExpired(at)) if at == crate::time::unix_seconds(upstream.not_after)),
        "{expired:?}"
    );
}

#[test]
fn leaf_follows_the_profile() {
    let ca = test_ca();
    let key = generate_p256_keypair().expect("key");
    let mut req = leaf_request("spiffe://example.org/ai/buyer");
    req.delegation = Some(sample());
    let leaf = ca.sign_leaf(&key, &req).expect("signs");
    let info = validate_leaf(&leaf.der).expect("valid leaf");
    assert_eq!(info.spiffe_id, req.spiffe_id);
    assert_eq!(info.serial, leaf.serial);
    assert_eq!(info.not_before, svid_not_before(now()));
    assert_eq!(info.not_after, leaf.not_after);
    assert_eq!(info.dns_names, req.dns_names);
    assert_eq!(info.delegation, Some(sample()));

    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("parses");
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == crate::delegation::DELEGATION_OID)
        .expect("delegation extension present");
    assert!(!ext.critical, "delegation extension is non-critical");
    let ku = cert.key_usage().expect("ok").expect("present");
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&key)
    );
}

#[test]
fn leaf_chains_to_the_ca_in_webpki() {
    let ca = test_ca();
    let leaf = ca
        .sign_leaf(
            &generate_p256_keypair().expect("key"),
            &leaf_request("spiffe://example.org/w"),
        )
        .expect("signs");
    let root = CertificateDer::from(ca.cert_der.clone());
    let anchors = [webpki::anchor_from_trusted_cert(&root).expect("anchor")];
    let ee_der = CertificateDer::from(leaf.der.clone());
    let ee = webpki::EndEntityCert::try_from(&ee_der).expect("ee");
    let at = UnixTime::since_unix_epoch(Duration::from_secs(1_790_000_100));
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        assert!(
            ee.verify_for_usage(algs, &anchors, &[], at, usage, None, None)
                .is_ok()
        );
    }
    let late = UnixTime::since_unix_epoch(Duration::from_secs(1_790_000_301));
    assert!(
        ee.verify_for_usage(
            algs,
            &anchors,
            &[],
            late,
            webpki::KeyUsage::client_auth(),
            None,
            None
        )
        .is_err()
    );
}

#[test]
fn leaf_signing_refusals() {
    let ca = test_ca();
    let key = generate_p256_keypair().expect("key");
    let mut req = leaf_request("spiffe://example.org/w");
    req.not_after = req.not_before;
    assert_eq!(ca.sign_leaf(&key, &req), Err(X509Error::BadValidity));
    let mut req = leaf_request("spiffe://example.org/w");
    req.dns_names = vec!["bad name".into()];
    assert!(matches!(
        ca.sign_leaf(&key, &req),
        Err(X509Error::DnsName(_))
    ));
    let mut req = leaf_request("spiffe://example.org/w");
    let mut d = sample();
    d.task.depth = 5;
    req.delegation = Some(d);
    assert!(matches!(
        ca.sign_leaf(&key, &req),
        Err(X509Error::Delegation(_))
    ));
}

#[test]
fn not_after_from_time_math_never_passes_the_deadline() {
    let ca = test_ca();
    let deadline = now() + Duration::from_secs(60);
    let mut req = leaf_request("spiffe://example.org/w");
    req.not_after = svid_not_after(
        now(),
        Duration::from_secs(3_600),
        Some(deadline),
        ca.not_after,
    );
    let leaf = ca
        .sign_leaf(&generate_p256_keypair().expect("key"), &req)
        .expect("signs");
    let info = validate_leaf(&leaf.der).expect("valid");
    assert_eq!(info.not_after, deadline);
}

#[test]
fn serials_are_random_positive_128_bit() {
    let ca = test_ca();
    let key = generate_p256_keypair().expect("key");
    let a = ca
        .sign_leaf(&key, &leaf_request("spiffe://example.org/w"))
        .expect("signs");
    let b = ca
        .sign_leaf(&key, &leaf_request("spiffe://example.org/w"))
        .expect("signs");
    assert_ne!(a.serial, b.serial);
    for s in [a.serial, b.serial, Serial::random()] {
        assert_eq!(s.to_be_bytes_minimal().len(), 16);
        assert_eq!(s.as_u128() >> 126, 1, "top bits 01: positive, full length");
        assert_eq!(Serial::from_hex(&s.to_string()), Some(s));
        assert_eq!(Serial::from_be_bytes(&s.to_be_bytes_minimal()), Some(s));
    }
    assert_eq!(Serial::from_be_bytes(&[0; 17]), Some(Serial::from_u128(0)));
    assert_eq!(Serial::from_be_bytes(&[1; 17]), None);
}

#[test]
fn crl_lists_revoked_serials_and_verifies() {
    let ca = test_ca();
    let revoked = [(
        Serial::from_u128(0x4000_0000_0000_0000_0000_0000_0000_0001),
        now(),
    )];
    let der = ca
        .sign_crl(&revoked, 7, now(), now() + Duration::from_secs(60))
        .expect("crl");
    let (_, crl) = x509_parser::parse_x509_crl(&der).expect("parses");
    let serials: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(serials, vec![revoked[0].0.to_be_bytes_minimal()]);
    assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("7".into()));
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).expect("parses");
    assert!(crl.verify_signature(ca_cert.public_key()).is_ok());
    assert!(webpki::OwnedCertRevocationList::from_der(&der).is_ok());
    assert!(
        ca.sign_crl(&[], 8, now(), now()).is_err(),
        "nextUpdate must follow thisUpdate"
    );
}

#[test]
fn ca_reloads_from_parts() {
    let ca = test_ca();
    let reloaded = Ca::from_parts(ca.cert_der.clone(), &ca.key_pkcs8_der()).expect("reloads");
    assert_eq!(
        (reloaded.not_before, reloaded.not_after),
        (ca.not_before, ca.not_after)
    );
    assert_eq!(reloaded.trust_domain, ca.trust_domain);
    let leaf = reloaded
        .sign_leaf(
            &generate_p256_keypair().expect("key"),
            &leaf_request("spiffe://example.org/w"),
        )
        .expect("signs");
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("parses");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).expect("parses");
    assert!(
        leaf_cert
            .verify_signature(Some(ca_cert.public_key()))
            .is_ok()
    );
    assert_eq!(leaf_cert.issuer(), ca_cert.subject());

    let other = CaKey::generate().expect("key");
    assert_eq!(
        Ca::from_parts(ca.cert_der.clone(), &other.pkcs8_der()).err(),
        Some(X509Error::KeyMismatch)
    );
    let leaf_as_ca = Ca::from_parts(leaf.der, &ca.key_pkcs8_der());
    assert!(matches!(leaf_as_ca, Err(X509Error::NotACa(_))));
}

#[test]
fn csr_request_is_bare() {
    let key: KeyPair = generate_p256_keypair().expect("key");
    let der = csr_request(&key).expect("csr");
    let pk = crate::csr::public_key_from_csr(&der).expect("valid csr");
    assert_eq!(pk.raw(), rcgen::PublicKeyData::der_bytes(&key));
}

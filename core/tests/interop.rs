//! Interop: the leaves we issue are accepted by the `spiffe` crate's X509-SVID parser and by
//! webpki path validation against our CA, for both clientAuth and serverAuth.

use std::time::{Duration, SystemTime};

use mandate_core::csr::public_key_from_csr;
use mandate_core::delegation::Delegation;
use mandate_core::time::{svid_not_after, svid_not_before};
use mandate_core::x509::{
    Ca, CaKey, LeafRequest, concat_der, csr_request, generate_p256_keypair, validate_leaf,
};
use mandate_core::{SpiffeId, TrustDomain};
use rustls_pki_types::{CertificateDer, UnixTime};

fn issue(ca: &Ca, now: SystemTime) -> (Vec<u8>, Vec<u8>) {
    let key = generate_p256_keypair().expect("key");
    let public_key = public_key_from_csr(&csr_request(&key).expect("csr")).expect("valid csr");
    let req = LeafRequest {
        spiffe_id: SpiffeId::new("spiffe://example.org/ai/buyer").expect("id"),
        dns_names: vec!["buyer.example.org".into()],
        not_before: svid_not_before(now),
        not_after: svid_not_after(now, Duration::from_secs(300), None, ca.not_after),
        delegation: None,
    };
    let leaf = ca.sign_leaf(&public_key, &req).expect("signs");
    (leaf.der, key.serialize_der())
}

#[test]
fn spiffe_crate_parses_our_svid() {
    let now = SystemTime::now();
    for intermediate in [false, true] {
        let td = TrustDomain::new("example.org").expect("td");
        let root = Ca::self_signed(
            td.clone(),
            CaKey::generate().expect("key"),
            now,
            Duration::from_secs(7_200),
        )
        .expect("root");
        let ca = if intermediate {
            Ca::intermediate(
                td,
                CaKey::generate().expect("key"),
                &root.cert_der,
                root.key(),
                now,
                Duration::from_secs(3_600),
            )
            .expect("intermediate")
        } else {
            root
        };
        let (leaf, key) = issue(&ca, now);
        // The Workload API chain: the leaf first, then what the CA adds.
        let mut chain = vec![leaf.clone()];
        chain.extend(
            ca.chain()
                .into_iter()
                .take(if intermediate { 1 } else { 0 }),
        );
        let svid =
            spiffe::X509Svid::parse_from_der(&concat_der(&chain), &key).expect("spiffe accepts");
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/ai/buyer"
        );
        assert_eq!(svid.cert_chain().len(), chain.len());
    }
}

#[test]
fn webpki_validates_our_leaf_for_client_and_server_auth() {
    let now = SystemTime::now();
    let td = TrustDomain::new("example.org").expect("td");
    let root = Ca::self_signed(
        td.clone(),
        CaKey::generate().expect("key"),
        now,
        Duration::from_secs(7_200),
    )
    .expect("root");
    let inter = Ca::intermediate(
        td,
        CaKey::generate().expect("key"),
        &root.cert_der,
        root.key(),
        now,
        Duration::from_secs(3_600),
    )
    .expect("intermediate");
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    let at = UnixTime::now();
    for (ca, intermediates) in [
        (&root, vec![]),
        (&inter, vec![CertificateDer::from(inter.cert_der.clone())]),
    ] {
        let (leaf, _) = issue(ca, now);
        let root_der = CertificateDer::from(root.cert_der.clone());
        let anchors = [webpki::anchor_from_trusted_cert(&root_der).expect("anchor")];
        let leaf_der = CertificateDer::from(leaf);
        let ee = webpki::EndEntityCert::try_from(&leaf_der).expect("parses");
        for usage in [
            webpki::KeyUsage::client_auth(),
            webpki::KeyUsage::server_auth(),
        ] {
            ee.verify_for_usage(algs, &anchors, &intermediates, at, usage, None, None)
                .expect("webpki accepts the chain");
        }
        // webpki also ignores our non-critical delegation extension.
        let mut with_delegation = LeafRequest {
            spiffe_id: SpiffeId::new("spiffe://example.org/ai/buyer").expect("id"),
            dns_names: vec![],
            not_before: svid_not_before(now),
            not_after: now + Duration::from_secs(60),
            delegation: None,
        };
        let golden = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/delegation-golden.der"
        ))
        .expect("golden vector");
        with_delegation.delegation = Some(Delegation::from_der(&golden).expect("decodes"));
        let d_leaf = ca
            .sign_leaf(&generate_p256_keypair().expect("key"), &with_delegation)
            .expect("signs");
        assert!(
            validate_leaf(&d_leaf.der)
                .expect("profile")
                .delegation
                .is_some()
        );
        let d_der = CertificateDer::from(d_leaf.der);
        let ee = webpki::EndEntityCert::try_from(&d_der).expect("parses");
        ee.verify_for_usage(
            algs,
            &anchors,
            &intermediates,
            at,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("webpki accepts a leaf with the delegation extension");
    }
}

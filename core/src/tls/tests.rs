//! Tests of the SPIFFE rustls verifiers: path validation, identity matching, root rotation,
//! and a full in-memory mTLS handshake.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::*;
use crate::x509::{Ca, CaKey, LeafRequest, Serial, generate_p256_keypair};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).expect("after epoch"))
}

fn ca(td: &str) -> Ca {
    let td = TrustDomain::new(td).expect("td");
    Ca::self_signed(
        td,
        CaKey::generate().expect("key"),
        now(),
        Duration::from_secs(86_400),
    )
    .expect("ca")
}

/// A leaf for `id` and its PKCS#8 key.
fn leaf(ca: &Ca, id: &str) -> (CertificateDer<'static>, Vec<u8>) {
    let key = generate_p256_keypair().expect("key");
    let req = LeafRequest {
        spiffe_id: SpiffeId::new(id).expect("id"),
        dns_names: Vec::new(),
        not_before: now() - Duration::from_secs(10),
        not_after: now() + Duration::from_secs(300),
        delegation: None,
    };
    let issued = ca.sign_leaf(&key, &req).expect("signs");
    (CertificateDer::from(issued.der), key.serialize_der())
}

fn roots(ca: &Ca) -> SharedRoots {
    shared_roots(vec![CertificateDer::from(ca.cert_der.clone())])
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("ignored.invalid").expect("name")
}

#[test]
fn server_verifier_checks_path_and_identity() {
    let ca = ca("example.org");
    let (cert, _) = leaf(&ca, "spiffe://example.org/orders");
    let verify = |m: SpiffeIdMatcher, at: SystemTime| {
        SpiffeServerVerifier::new(roots(&ca), m).verify_server_cert(
            &cert,
            &[],
            &server_name(),
            &[],
            unix(at),
        )
    };
    let id = SpiffeId::new("spiffe://example.org/orders").expect("id");
    assert!(verify(SpiffeIdMatcher::Any, now()).is_ok());
    assert!(verify(SpiffeIdMatcher::Exact(id.clone()), now()).is_ok());
    assert!(verify(SpiffeIdMatcher::OneOf(vec![id]), now()).is_ok());
    assert!(
        verify(
            SpiffeIdMatcher::TrustDomain(TrustDomain::new("example.org").expect("td")),
            now()
        )
        .is_ok()
    );
    let other = SpiffeId::new("spiffe://example.org/billing").expect("id");
    assert!(verify(SpiffeIdMatcher::Exact(other), now()).is_err());
    assert!(
        verify(
            SpiffeIdMatcher::TrustDomain(TrustDomain::new("other.org").expect("td")),
            now()
        )
        .is_err()
    );
    assert_eq!(
        verify(SpiffeIdMatcher::Any, now() + Duration::from_secs(301)).err(),
        Some(rustls::Error::InvalidCertificate(CertificateError::Expired))
    );
}

#[test]
fn roots_are_swappable() {
    let old = ca("example.org");
    let new = ca("example.org");
    let (cert, _) = leaf(&new, "spiffe://example.org/orders");
    let shared = roots(&old);
    let verifier = SpiffeClientVerifier::new(shared.clone(), false);
    assert_eq!(
        verifier.verify_client_cert(&cert, &[], unix(now())).err(),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    shared
        .write()
        .expect("lock")
        .push(CertificateDer::from(new.cert_der.clone()));
    assert!(verifier.verify_client_cert(&cert, &[], unix(now())).is_ok());
    shared.write().expect("lock").clear();
    assert!(
        verifier
            .verify_client_cert(&cert, &[], unix(now()))
            .is_err(),
        "no roots, no trust"
    );
}

#[test]
fn client_verifier_options() {
    let ca = ca("example.org");
    assert!(SpiffeClientVerifier::new(roots(&ca), false).client_auth_mandatory());
    assert!(!SpiffeClientVerifier::new(roots(&ca), true).client_auth_mandatory());
    let (cert, _) = leaf(&ca, "spiffe://example.org/agent");
    let only_admin = SpiffeClientVerifier::new(roots(&ca), false).with_matcher(
        SpiffeIdMatcher::Exact(SpiffeId::new("spiffe://example.org/admin").expect("id")),
    );
    assert!(
        only_admin
            .verify_client_cert(&cert, &[], unix(now()))
            .is_err()
    );
}

#[test]
fn two_uri_sans_are_refused_even_when_the_path_validates() {
    let ca = ca("example.org");
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert_der.clone()), ca.key())
        .expect("issuer");
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::ExplicitNoCa;
    p.serial_number = Some(Serial::random().to_rcgen());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = time::OffsetDateTime::from(now() - Duration::from_secs(10));
    p.not_after = time::OffsetDateTime::from(now() + Duration::from_secs(60));
    p.subject_alt_names = vec![
        SanType::URI("spiffe://example.org/a".try_into().expect("ia5")),
        SanType::URI("spiffe://example.org/b".try_into().expect("ia5")),
    ];
    let der = p
        .signed_by(&generate_p256_keypair().expect("key"), &issuer)
        .expect("signs")
        .der()
        .clone();
    assert_eq!(peer_spiffe_id(&der), Err(TlsError::UriSanCount(2)));
    let verifier = SpiffeServerVerifier::new(roots(&ca), SpiffeIdMatcher::Any);
    assert!(
        verifier
            .verify_server_cert(&der, &[], &server_name(), &[], unix(now()))
            .is_err()
    );
}

/// Drives a handshake between in-memory connections until neither side has data to send.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).expect("write");
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).expect("read");
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        server.write_tls(&mut buf).expect("write");
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).expect("read");
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

#[test]
fn mtls_handshake_with_spiffe_verifiers() {
    // Real time: rustls checks validity against the clock, so this CA is made for now.
    let td = TrustDomain::new("example.org").expect("td");
    let ca = Ca::self_signed(
        td,
        CaKey::generate().expect("key"),
        SystemTime::now(),
        Duration::from_secs(3_600),
    )
    .expect("ca");
    let issue = |id: &str| {
        let key = generate_p256_keypair().expect("key");
        let req = LeafRequest {
            spiffe_id: SpiffeId::new(id).expect("id"),
            dns_names: Vec::new(),
            not_before: crate::time::svid_not_before(SystemTime::now()),
            not_after: SystemTime::now() + Duration::from_secs(300),
            delegation: None,
        };
        let der = ca.sign_leaf(&key, &req).expect("signs").der;
        (
            vec![CertificateDer::from(der)],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    };
    let run = |client_matcher: SpiffeIdMatcher| {
        let (server_chain, server_key) = issue("spiffe://example.org/orders");
        let (client_chain, client_key) = issue("spiffe://example.org/buyer");
        let provider = default_provider();
        let server_cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(roots(&ca), false)))
            .with_single_cert(server_chain, server_key)
            .expect("server config");
        let client_cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                roots(&ca),
                client_matcher,
            )))
            .with_client_auth_cert(client_chain, client_key)
            .expect("client config");
        let mut client =
            ClientConnection::new(Arc::new(client_cfg), server_name()).expect("client");
        let mut server = ServerConnection::new(Arc::new(server_cfg)).expect("server");
        let result = handshake(&mut client, &mut server);
        let peer = server
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| peer_spiffe_id(c).expect("peer id").to_string());
        (result, peer)
    };
    let (result, peer) = run(SpiffeIdMatcher::Exact(
        SpiffeId::new("spiffe://example.org/orders").expect("id"),
    ));
    assert_eq!(result, Ok(()));
    assert_eq!(peer.as_deref(), Some("spiffe://example.org/buyer"));
    let (result, _) = run(SpiffeIdMatcher::Exact(
        SpiffeId::new("spiffe://example.org/billing").expect("id"),
    ));
    assert!(result.is_err(), "client refuses the wrong server identity");
}

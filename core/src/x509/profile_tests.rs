//! The validator refusing each broken rule of the SVID profile, on certificates built to
//! break exactly one rule.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

use super::tests::test_ca;
use super::*;
use crate::delegation::tests::sample;
use crate::delegation::{DelegationError, delegation_oid_components};

/// Signs arbitrary params with the CA's key, to build certificates that break the profile.
fn sign_raw(ca: &Ca, params: &CertificateParams) -> Vec<u8> {
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert_der.as_slice()), ca.key())
        .expect("issuer");
    let key = generate_p256_keypair().expect("key");
    let mut params = params.clone();
    params.serial_number = Some(Serial::random().to_rcgen());
    params
        .signed_by(&key, &issuer)
        .expect("signs")
        .der()
        .to_vec()
}

fn good_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.subject_alt_names = vec![SanType::URI(
        "spiffe://example.org/w".try_into().expect("ia5"),
    )];
    p
}

#[test]
fn validator_refuses_each_broken_rule() {
    let ca = test_ca();
    type Break = fn(&mut CertificateParams);
    type Expect = fn(&SvidProfileError) -> bool;
    let cases: &[(&str, Break, Expect)] = &[
        ("baseline passes", |_| {}, |_| false),
        // rcgen writes no SKI without basicConstraints, so either refusal proves the rule.
        (
            "no basicConstraints or SKI",
            |p| p.is_ca = IsCa::NoCa,
            |e| {
                matches!(
                    e,
                    SvidProfileError::MissingBasicConstraints | SvidProfileError::MissingSki
                )
            },
        ),
        (
            "cA=true",
            |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained),
            |e| matches!(e, SvidProfileError::LeafIsCa),
        ),
        (
            "no keyUsage",
            |p| p.key_usages.clear(),
            |e| matches!(e, SvidProfileError::MissingKeyUsage),
        ),
        (
            "keyCertSign",
            |p| p.key_usages.push(KeyUsagePurpose::KeyCertSign),
            |e| matches!(e, SvidProfileError::LeafCanSign),
        ),
        (
            "cRLSign",
            |p| p.key_usages.push(KeyUsagePurpose::CrlSign),
            |e| matches!(e, SvidProfileError::LeafCanSign),
        ),
        (
            "no digitalSignature",
            |p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment],
            |e| matches!(e, SvidProfileError::MissingDigitalSignature),
        ),
        (
            "no EKU",
            |p| p.extended_key_usages.clear(),
            |e| matches!(e, SvidProfileError::ExtendedKeyUsage),
        ),
        (
            "serverAuth only",
            |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth],
            |e| matches!(e, SvidProfileError::ExtendedKeyUsage),
        ),
        (
            "no AKI",
            |p| p.use_authority_key_identifier_extension = false,
            |e| matches!(e, SvidProfileError::MissingAki),
        ),
        (
            "two URI SANs",
            |p| {
                p.subject_alt_names.push(SanType::URI(
                    "spiffe://example.org/x".try_into().expect("ia5"),
                ))
            },
            |e| matches!(e, SvidProfileError::UriSanCount(2)),
        ),
        (
            "no URI SAN",
            |p| p.subject_alt_names = vec![SanType::DnsName("a.example".try_into().expect("ia5"))],
            |e| matches!(e, SvidProfileError::UriSanCount(0)),
        ),
        (
            "https URI",
            |p| {
                p.subject_alt_names = vec![SanType::URI(
                    "https://example.org/w".try_into().expect("ia5"),
                )]
            },
            |e| matches!(e, SvidProfileError::NotSpiffeId { .. }),
        ),
        (
            "critical delegation",
            |p| {
                let mut ext = CustomExtension::from_oid_content(
                    &delegation_oid_components(),
                    sample().to_der().expect("der"),
                );
                ext.set_criticality(true);
                p.custom_extensions.push(ext);
            },
            |e| {
                matches!(
                    e,
                    SvidProfileError::UnknownCritical(_)
                        | SvidProfileError::Delegation(DelegationError::Critical)
                )
            },
        ),
        (
            "garbage delegation",
            |p| {
                p.custom_extensions.push(CustomExtension::from_oid_content(
                    &delegation_oid_components(),
                    vec![0x30, 0x00],
                ))
            },
            |e| matches!(e, SvidProfileError::Delegation(_)),
        ),
        (
            "unknown critical",
            |p| {
                let mut ext = CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 99999, 1],
                    vec![0x05, 0x00],
                );
                ext.set_criticality(true);
                p.custom_extensions.push(ext);
            },
            |e| matches!(e, SvidProfileError::UnknownCritical(_)),
        ),
    ];
    for (name, change, expected) in cases {
        let mut params = good_params();
        change(&mut params);
        let result = validate_leaf(&sign_raw(&ca, &params));
        match result {
            Ok(_) => assert_eq!(*name, "baseline passes", "{name} should be refused"),
            Err(e) => assert!(expected(&e), "{name}: unexpected error {e:?}"),
        }
    }
    assert!(matches!(
        validate_leaf(b"not a certificate"),
        Err(SvidProfileError::Parse(_))
    ));
}

#[test]
fn wrong_oid_is_not_a_delegation() {
    let ca = test_ca();
    let mut params = good_params();
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &[
                1, 2, 840, 113_556, 1, 8000, 2554, 59017, 18993, 23044, 17922, 41336, 3_076_546,
                14_707_388, 2,
            ],
            sample().to_der().expect("der"),
        ));
    let der = sign_raw(&ca, &params);
    assert_eq!(crate::delegation::from_certificate(&der), Ok(None));
    assert_eq!(validate_leaf(&der).map(|i| i.delegation), Ok(None));
}

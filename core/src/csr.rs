//! CSR intake (DESIGN 3.2): check the CSR's self-signature and take ONLY its public key.
//! Subject, SANs, key usage and basic constraints in the CSR are ignored, so nothing a
//! requester writes there can reach a certificate.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rcgen::{
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PublicKeyData, SignatureAlgorithm,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

/// Largest CSR accepted, in bytes.
pub const MAX_CSR_LEN: usize = 8 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

/// Errors from CSR intake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The CSR is larger than 8 KiB.
    #[error("csr is larger than {MAX_CSR_LEN} bytes")]
    TooLarge,
    /// The CSR does not parse or has trailing bytes.
    #[error("malformed csr: {0}")]
    Malformed(String),
    /// The key type is not ECDSA P-256, P-384 or Ed25519.
    #[error("unsupported csr key type: only ECDSA P-256, P-384 and Ed25519 are accepted")]
    UnsupportedKey,
    /// The signature algorithm does not fit the key.
    #[error("csr signature algorithm {0} does not match its key")]
    AlgorithmMismatch(String),
    /// The self-signature does not verify.
    #[error("csr signature does not verify")]
    BadSignature,
}

/// The public key of a checked CSR, usable as the subject key of a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPublicKey {
    spki_der: Vec<u8>,
    raw: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl CsrPublicKey {
    /// The full SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The raw public key bits (the SPKI's BIT STRING contents).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// Parses a DER PKCS#10 CSR, checks its self-signature, and returns only its public key.
///
/// # Errors
/// [`CsrError::TooLarge`] over 8 KiB, [`CsrError::Malformed`] when it does not parse,
/// [`CsrError::UnsupportedKey`] for other key types, [`CsrError::AlgorithmMismatch`] when the
/// signature algorithm does not fit the key, [`CsrError::BadSignature`] when it fails.
pub fn public_key_from_csr(der: &[u8]) -> Result<CsrPublicKey, CsrError> {
    if der.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLarge);
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed("trailing bytes after csr".into()));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let sig_alg = csr.signature_algorithm.algorithm.to_id_string();
    let (rcgen_alg, verify_alg): (
        &'static SignatureAlgorithm,
        &'static dyn VerificationAlgorithm,
    ) = match (key_alg.as_str(), curve.as_deref()) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => {
            expect_alg(&sig_alg, OID_ECDSA_SHA256)?;
            (&PKCS_ECDSA_P256_SHA256, &signature::ECDSA_P256_SHA256_ASN1)
        }
        (OID_EC_PUBLIC_KEY, Some(OID_P384)) => {
            expect_alg(&sig_alg, OID_ECDSA_SHA384)?;
            (&PKCS_ECDSA_P384_SHA384, &signature::ECDSA_P384_SHA384_ASN1)
        }
        (OID_ED25519, _) => {
            expect_alg(&sig_alg, OID_ED25519)?;
            (&PKCS_ED25519, &signature::ED25519)
        }
        _ => return Err(CsrError::UnsupportedKey),
    };
    let raw = spki.subject_public_key.data.to_vec();
    UnparsedPublicKey::new(verify_alg, &raw)
        .verify(
            csr.certification_request_info.raw,
            csr.signature_value.data.as_ref(),
        )
        .map_err(|_| CsrError::BadSignature)?;
    Ok(CsrPublicKey {
        spki_der: spki.raw.to_vec(),
        raw,
        algorithm: rcgen_alg,
    })
}

fn expect_alg(got: &str, want: &str) -> Result<(), CsrError> {
    if got == want {
        Ok(())
    } else {
        Err(CsrError::AlgorithmMismatch(got.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};

    use super::*;
    use crate::x509::{Ca, CaKey, LeafRequest, csr_request, generate_p256_keypair, validate_leaf};

    #[test]
    fn accepted_key_types() {
        for alg in [
            &PKCS_ECDSA_P256_SHA256,
            &PKCS_ECDSA_P384_SHA384,
            &PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).expect("key");
            let pk = public_key_from_csr(&csr_request(&key).expect("csr")).expect("accepted");
            assert_eq!(pk.raw(), key.der_bytes());
            assert_eq!(pk.spki_der(), key.subject_public_key_info().as_slice());
            assert!(std::ptr::eq(pk.algorithm(), alg));
        }
    }

    #[test]
    fn bad_signature_is_refused() {
        let key = generate_p256_keypair().expect("key");
        let der = csr_request(&key).expect("csr");
        // The signature BIT STRING is last: flipping its last byte breaks the signature.
        let mut tampered = der.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_eq!(public_key_from_csr(&tampered), Err(CsrError::BadSignature));
        // A CSR whose key is swapped for another one no longer verifies either.
        let other = generate_p256_keypair().expect("key");
        let mut swapped = der.clone();
        let at = swapped
            .windows(key.der_bytes().len())
            .position(|w| w == key.der_bytes())
            .expect("key present");
        swapped[at..at + other.der_bytes().len()].copy_from_slice(other.der_bytes());
        assert_eq!(public_key_from_csr(&swapped), Err(CsrError::BadSignature));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        let der = csr_request(&generate_p256_keypair().expect("key")).expect("csr");
        assert!(matches!(
            public_key_from_csr(&der[..der.len() - 3]),
            Err(CsrError::Malformed(_))
        ));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(
            public_key_from_csr(&trailing),
            Err(CsrError::Malformed(_))
        ));
        assert!(matches!(
            public_key_from_csr(b"garbage"),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            public_key_from_csr(&vec![0x30; MAX_CSR_LEN + 1]),
            Err(CsrError::TooLarge)
        );
    }

    #[test]
    fn rsa_is_refused() {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("rsa key");
        assert_eq!(
            public_key_from_csr(&csr_request(&key).expect("csr")),
            Err(CsrError::UnsupportedKey)
        );
    }

    #[test]
    fn only_the_key_is_taken_from_a_greedy_csr() {
        let key = generate_p256_keypair().expect("key");
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        params.subject_alt_names.push(SanType::URI(
            "spiffe://example.org/admin".try_into().expect("ia5"),
        ));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let csr = params.serialize_request(&key).expect("csr").der().to_vec();
        let pk = public_key_from_csr(&csr).expect("signature is fine");

        let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let td = spiffe::TrustDomain::new("example.org").expect("td");
        let ca = Ca::self_signed(
            td,
            CaKey::generate().expect("key"),
            now,
            Duration::from_secs(3_600),
        )
        .expect("ca");
        let req = LeafRequest {
            spiffe_id: spiffe::SpiffeId::new("spiffe://example.org/workload").expect("id"),
            dns_names: Vec::new(),
            not_before: now,
            not_after: now + Duration::from_secs(60),
            delegation: None,
        };
        let leaf = ca.sign_leaf(&pk, &req).expect("signs");
        let info = validate_leaf(&leaf.der).expect("leaf follows the profile, not the csr");
        assert_eq!(info.spiffe_id.to_string(), "spiffe://example.org/workload");
        assert!(info.dns_names.is_empty(), "no SAN from the csr");
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("parses");
        assert!(!cert.is_ca());
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.der_bytes()
        );
    }
}

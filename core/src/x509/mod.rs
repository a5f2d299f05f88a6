//! The X509-SVID profile (DESIGN 3.2): CA certificates, leaf signing, CRLs, and the validator
//! that checks any certificate against the SVID rules.

mod bundle;
mod ca;
mod validate;

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};

pub use bundle::{concat_der, parse_pem_certs, pem_encode_certs, split_der_certs};
pub use ca::{Ca, IssuedLeaf, LeafRequest};
pub use validate::{LeafInfo, SvidProfileError, validate_ca, validate_leaf};

/// Errors from building keys, certificates, CSRs and CRLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// Key generation or parsing failed.
    #[error("key error: {0}")]
    Key(String),
    /// rcgen refused to build or sign.
    #[error("cannot build certificate: {0}")]
    Build(String),
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate")]
    KeyMismatch,
    /// The certificate is not a valid CA certificate of the SVID profile.
    #[error("not a valid CA certificate: {0}")]
    NotACa(SvidProfileError),
    /// The delegation could not be encoded.
    #[error("cannot encode delegation: {0}")]
    Delegation(crate::delegation::DelegationError),
    /// A DNS name is not valid.
    #[error("invalid DNS name {0:?}")]
    DnsName(String),
    /// The validity period is empty or inverted.
    #[error("notAfter must be after notBefore")]
    BadValidity,
    /// The upstream CA certificate has expired (or expires before a CA under it would start).
    #[error("the upstream CA certificate expired at {0} (unix seconds); renew it")]
    UpstreamExpired(i64),
    /// The PEM input is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
}

impl From<rcgen::Error> for X509Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Build(e.to_string())
    }
}

/// A certificate serial number: 128 random bits, positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(u128);

impl Serial {
    /// A fresh random serial: 128 bits with the top bit clear (so the DER INTEGER is positive
    /// and at most 16 bytes) and never zero.
    pub fn random() -> Self {
        let mut bytes = [0_u8; 16];
        // The system RNG failing is unrecoverable and aws-lc-rs reports it as an error only
        // in theory; fall back to a UUID's randomness so a serial is always produced.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            bytes = *uuid::Uuid::new_v4().as_bytes();
        }
        bytes[0] &= 0x7f;
        bytes[0] |= 0x40;
        Self(u128::from_be_bytes(bytes))
    }

    /// Builds a serial from its value.
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// The serial's value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The big-endian bytes without leading zeros (at least one byte).
    pub fn to_be_bytes_minimal(self) -> Vec<u8> {
        let bytes = self.0.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(15);
        bytes[first..].to_vec()
    }

    /// Parses big-endian bytes (as found in a certificate), refusing more than 16 significant
    /// bytes.
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Self> {
        let significant = bytes
            .iter()
            .position(|b| *b != 0)
            .map_or(&[][..], |i| &bytes[i..]);
        if significant.len() > 16 {
            return None;
        }
        let mut buf = [0_u8; 16];
        buf[16 - significant.len()..].copy_from_slice(significant);
        Some(Self(u128::from_be_bytes(buf)))
    }

    /// Parses the lowercase or uppercase hex form printed by `Display`.
    pub fn from_hex(text: &str) -> Option<Self> {
        u128::from_str_radix(text, 16).ok().map(Self)
    }

    pub(crate) fn to_rcgen(self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.to_be_bytes_minimal())
    }
}

impl fmt::Display for Serial {
    /// Lowercase hex without leading zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A CA signing key: P-256 ECDSA via aws-lc-rs.
#[derive(Debug)]
pub struct CaKey(KeyPair);

impl CaKey {
    /// Generates a fresh P-256 key.
    ///
    /// # Errors
    /// [`X509Error::Key`] when the crypto provider fails.
    pub fn generate() -> Result<Self, X509Error> {
        generate_p256_keypair().map(Self)
    }

    /// Loads a PKCS#8 DER key (P-256, P-384 or Ed25519).
    ///
    /// # Errors
    /// [`X509Error::Key`] when the key does not parse.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, X509Error> {
        KeyPair::try_from(der)
            .map(Self)
            .map_err(|e| X509Error::Key(e.to_string()))
    }

    /// The PKCS#8 DER of the private key (secret: store with mode 0600, never log).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.0.serialize_der()
    }

    /// The underlying rcgen key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.0
    }

    /// Takes the underlying rcgen key pair.
    pub fn into_key_pair(self) -> KeyPair {
        self.0
    }
}

/// Generates a P-256 ECDSA key pair (for leaves, agents and CAs).
///
/// # Errors
/// [`X509Error::Key`] when the crypto provider fails.
pub fn generate_p256_keypair() -> Result<KeyPair, X509Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| X509Error::Key(e.to_string()))
}

/// Builds a bare PKCS#10 CSR for `key`: empty subject, no extensions. The server takes only
/// the public key from it (DESIGN 3.2).
///
/// # Errors
/// [`X509Error::Build`] when signing fails.
pub fn csr_request(key: &KeyPair) -> Result<Vec<u8>, X509Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(key)?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod profile_tests;
#[cfg(test)]
mod tests;

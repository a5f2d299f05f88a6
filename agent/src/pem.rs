//! PEM reading and writing of certificates and PKCS#8 keys for the data dir and the CLI.

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Errors from reading PEM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The text holds a malformed PEM section.
    #[error("malformed PEM: {0}")]
    Malformed(String),
    /// The text holds no certificate.
    #[error("no certificate found in PEM")]
    Empty,
    /// The text holds no private key.
    #[error("no private key found in PEM")]
    NoKey,
}

/// Encodes DER blobs as PEM sections with the given label (`CERTIFICATE`, `PRIVATE KEY`).
pub fn encode(label: &str, blobs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in blobs {
        out.push_str("-----BEGIN ");
        out.push_str(label);
        out.push_str("-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END ");
        out.push_str(label);
        out.push_str("-----\n");
    }
    out
}

/// Reads every `CERTIFICATE` section of a PEM text, in order.
///
/// # Errors
/// When a section is malformed or there is none.
pub fn decode_certs(text: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(text) {
        let cert = cert.map_err(|e| PemError::Malformed(e.to_string()))?;
        certs.push(cert.as_ref().to_vec());
    }
    if certs.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(certs)
}

/// Reads the first `PRIVATE KEY` (PKCS#8) section of a PEM text.
///
/// # Errors
/// When the section is malformed or there is none.
pub fn decode_key(text: &[u8]) -> Result<Vec<u8>, PemError> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    match PrivatePkcs8KeyDer::from_pem_slice(text) {
        Ok(key) => Ok(key.secret_pkcs8_der().to_vec()),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(PemError::NoKey),
        Err(e) => Err(PemError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let blobs = vec![vec![1u8; 100], vec![2u8; 3]];
        let text = encode("CERTIFICATE", &blobs);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_certs(text.as_bytes()).unwrap(), blobs);
    }

    #[test]
    fn empty_is_an_error() {
        assert!(matches!(decode_certs(b"nothing"), Err(PemError::Empty)));
    }
}

//! Bundle helpers: certificates as concatenated DER (the Workload API form) and as PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::X509Error;

/// Concatenates DER certificates, the form the Workload API carries bundles and chains in.
pub fn concat_der(certs: &[Vec<u8>]) -> Vec<u8> {
    certs.iter().flatten().copied().collect()
}

/// Splits concatenated DER certificates back into single certificates.
///
/// # Errors
/// [`X509Error::Parse`] when a certificate is truncated or not a DER SEQUENCE.
pub fn split_der_certs(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let mut certs = Vec::new();
    while !bytes.is_empty() {
        let len = der_element_len(bytes)
            .ok_or_else(|| X509Error::Parse("truncated or malformed DER certificate".into()))?;
        let (cert, rest) = bytes.split_at(len);
        certs.push(cert.to_vec());
        bytes = rest;
    }
    Ok(certs)
}

/// The total length of the DER SEQUENCE at the start of `bytes`, when it fits.
fn der_element_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&0x30) {
        return None;
    }
    let first = *bytes.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len_bytes = bytes.get(2..2 + n)?;
        let len = len_bytes
            .iter()
            .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let total = header.checked_add(len)?;
    (total <= bytes.len()).then_some(total)
}

/// Encodes DER certificates as PEM `CERTIFICATE` blocks.
pub fn pem_encode_certs(certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(cert);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Parses every PEM `CERTIFICATE` block in `text`, ignoring other blocks and text between.
///
/// # Errors
/// [`X509Error::Pem`] for an unterminated block or bad base64.
pub fn parse_pem_certs(text: &str) -> Result<Vec<Vec<u8>>, X509Error> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after
            .find(END)
            .ok_or_else(|| X509Error::Pem("unterminated CERTIFICATE block".into()))?;
        let body: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| X509Error::Pem(e.to_string()))?;
        certs.push(der);
        rest = &after[end + END.len()..];
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_der_round_trip() {
        let certs = vec![
            vec![0x30, 0x03, 1, 2, 3],
            vec![0x30, 0x81, 0x80].into_iter().chain([7; 128]).collect(),
        ];
        let pem = pem_encode_certs(&certs);
        assert_eq!(parse_pem_certs(&pem), Ok(certs.clone()));
        let joined = concat_der(&certs);
        assert_eq!(split_der_certs(&joined), Ok(certs));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        assert!(parse_pem_certs("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
        assert!(
            parse_pem_certs("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----").is_err()
        );
        assert_eq!(parse_pem_certs("no pem here"), Ok(vec![]));
        assert!(split_der_certs(&[0x30, 0x05, 1]).is_err());
        assert!(split_der_certs(&[0x04, 0x00]).is_err());
    }
}

//! The X509-SVID validator: checks a certificate against every rule of DESIGN 3.2, for tests
//! and for verifiers ([X509-SVID.md](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md)).

use std::time::SystemTime;

use spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Version;

use super::Serial;
use crate::delegation::{self, Delegation, DelegationError};
use crate::ids::parse_spiffe_id;
use crate::time::from_unix_seconds;

/// Ways a certificate breaks the SVID profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidProfileError {
    /// The certificate does not parse or has trailing bytes.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The certificate is not X.509 v3.
    #[error("certificate is not X.509 v3")]
    NotV3,
    /// An extension appears twice or does not parse.
    #[error("bad extension: {0}")]
    BadExtension(String),
    /// A critical extension the profile does not know.
    #[error("unknown critical extension {0}")]
    UnknownCritical(String),
    /// Not exactly one URI SAN.
    #[error("expected exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN {uri:?} is not a valid SPIFFE ID: {reason}")]
    NotSpiffeId {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A leaf's SPIFFE ID has no path.
    #[error("leaf SPIFFE ID has an empty path")]
    EmptyPath,
    /// A CA's SPIFFE ID has a path.
    #[error("CA SPIFFE ID must be spiffe://<trust-domain> without a path")]
    CaIdHasPath,
    /// basicConstraints is missing.
    #[error("basicConstraints is missing")]
    MissingBasicConstraints,
    /// A leaf has cA=true.
    #[error("leaf has cA=true")]
    LeafIsCa,
    /// A CA has cA=false.
    #[error("CA certificate has cA=false")]
    NotCa,
    /// keyUsage is missing.
    #[error("keyUsage is missing")]
    MissingKeyUsage,
    /// keyUsage is not critical.
    #[error("keyUsage is not critical")]
    KeyUsageNotCritical,
    /// A leaf lacks digitalSignature.
    #[error("leaf keyUsage lacks digitalSignature")]
    MissingDigitalSignature,
    /// A leaf has keyCertSign or cRLSign.
    #[error("leaf keyUsage has keyCertSign or cRLSign")]
    LeafCanSign,
    /// A CA lacks keyCertSign or cRLSign.
    #[error("CA keyUsage lacks keyCertSign or cRLSign")]
    CaCannotSign,
    /// EKU is missing or lacks serverAuth or clientAuth.
    #[error("extendedKeyUsage must hold serverAuth and clientAuth")]
    ExtendedKeyUsage,
    /// The subject key identifier is missing.
    #[error("subjectKeyIdentifier is missing")]
    MissingSki,
    /// The authority key identifier is missing.
    #[error("authorityKeyIdentifier is missing")]
    MissingAki,
    /// notAfter is not after notBefore.
    #[error("notAfter is not after notBefore")]
    BadValidity,
    /// The serial is longer than 16 significant bytes.
    #[error("serial number is longer than 128 bits")]
    Serial,
    /// The delegation extension is present but invalid.
    #[error("delegation extension: {0}")]
    Delegation(DelegationError),
}

/// What a valid leaf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// The SPIFFE ID of the URI SAN.
    pub spiffe_id: SpiffeId,
    /// The serial.
    pub serial: Serial,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The DNS SANs.
    pub dns_names: Vec<String>,
    /// The delegation, when the extension is present.
    pub delegation: Option<Delegation>,
}

/// Checks a leaf against every X509-SVID rule of DESIGN 3.2 (no signature or time check).
///
/// # Errors
/// The first rule broken, as a [`SvidProfileError`].
pub fn validate_leaf(der: &[u8]) -> Result<LeafInfo, SvidProfileError> {
    let cert = parse(der)?;
    let (spiffe_id, dns_names) = spiffe_id_of(&cert)?;
    if spiffe_id.path().is_empty() {
        return Err(SvidProfileError::EmptyPath);
    }
    match basic_constraints(&cert)? {
        false => {}
        true => return Err(SvidProfileError::LeafIsCa),
    }
    let ku = key_usage(&cert)?;
    if !ku.digital_signature() {
        return Err(SvidProfileError::MissingDigitalSignature);
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(SvidProfileError::LeafCanSign);
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| SvidProfileError::BadExtension(e.to_string()))?
        .ok_or(SvidProfileError::ExtendedKeyUsage)?;
    if !(eku.value.server_auth && eku.value.client_auth) {
        return Err(SvidProfileError::ExtendedKeyUsage);
    }
    let has_aki = cert.extensions().iter().any(|e| {
        matches!(e.parsed_extension(), ParsedExtension::AuthorityKeyIdentifier(aki) if aki.key_identifier.is_some())
    });
    if !has_aki {
        return Err(SvidProfileError::MissingAki);
    }
    let delegation =
        delegation::from_parsed_certificate(&cert).map_err(SvidProfileError::Delegation)?;
    let (not_before, not_after) = validity(&cert)?;
    let serial = Serial::from_be_bytes(cert.raw_serial()).ok_or(SvidProfileError::Serial)?;
    Ok(LeafInfo {
        spiffe_id,
        serial,
        not_before,
        not_after,
        dns_names,
        delegation,
    })
}

/// Checks a CA certificate against DESIGN 3.2: cA=true, keyCertSign and cRLSign, one URI SAN
/// `spiffe://<td>`, SKI present. Returns its trust domain.
///
/// # Errors
/// The first rule broken, as a [`SvidProfileError`].
pub fn validate_ca(der: &[u8]) -> Result<TrustDomain, SvidProfileError> {
    let cert = parse(der)?;
    let (id, _) = spiffe_id_of(&cert)?;
    if !id.path().is_empty() {
        return Err(SvidProfileError::CaIdHasPath);
    }
    if !basic_constraints(&cert)? {
        return Err(SvidProfileError::NotCa);
    }
    let ku = key_usage(&cert)?;
    if !(ku.key_cert_sign() && ku.crl_sign()) {
        return Err(SvidProfileError::CaCannotSign);
    }
    validity(&cert)?;
    Ok(id.trust_domain().clone())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SvidProfileError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SvidProfileError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidProfileError::Parse(
            "trailing bytes after certificate".into(),
        ));
    }
    if cert.version() != X509Version::V3 {
        return Err(SvidProfileError::NotV3);
    }
    // Every extension must parse and appear once; unknown critical extensions are refused.
    cert.extensions_map()
        .map_err(|e| SvidProfileError::BadExtension(e.to_string()))?;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ParseError { error } => {
                return Err(SvidProfileError::BadExtension(error.to_string()));
            }
            ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                return Err(SvidProfileError::UnknownCritical(ext.oid.to_id_string()));
            }
            _ => {}
        }
    }
    let has_ski = cert.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectKeyIdentifier(_)
        )
    });
    if !has_ski {
        return Err(SvidProfileError::MissingSki);
    }
    Ok(cert)
}

/// The one URI SAN as a SPIFFE ID, and the DNS SANs.
fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<(SpiffeId, Vec<String>), SvidProfileError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidProfileError::BadExtension(e.to_string()))?
        .ok_or(SvidProfileError::UriSanCount(0))?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            _ => {}
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(SvidProfileError::UriSanCount(uris.len()));
    };
    let id = parse_spiffe_id(uri).map_err(|e| SvidProfileError::NotSpiffeId {
        uri: (*uri).to_owned(),
        reason: e.to_string(),
    })?;
    Ok((id, dns))
}

/// The cA flag; an error when basicConstraints is absent.
fn basic_constraints(cert: &X509Certificate<'_>) -> Result<bool, SvidProfileError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| SvidProfileError::BadExtension(e.to_string()))?
        .ok_or(SvidProfileError::MissingBasicConstraints)?;
    Ok(bc.value.ca)
}

fn key_usage<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<&'a x509_parser::extensions::KeyUsage, SvidProfileError> {
    let ku = cert
        .key_usage()
        .map_err(|e| SvidProfileError::BadExtension(e.to_string()))?
        .ok_or(SvidProfileError::MissingKeyUsage)?;
    if !ku.critical {
        return Err(SvidProfileError::KeyUsageNotCritical);
    }
    Ok(ku.value)
}

fn validity(cert: &X509Certificate<'_>) -> Result<(SystemTime, SystemTime), SvidProfileError> {
    let v = cert.validity();
    let (nb, na) = (v.not_before.timestamp(), v.not_after.timestamp());
    if na <= nb {
        return Err(SvidProfileError::BadValidity);
    }
    Ok((from_unix_seconds(nb), from_unix_seconds(na)))
}

//! rustls verifiers that check SPIFFE identity instead of DNS names: webpki path validation
//! against swappable roots, then exactly one `spiffe://` URI SAN on the leaf
//! ([X509-SVID.md section 5](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation)).

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::extensions::GeneralName;

use crate::ids::parse_spiffe_id;

/// Trust roots shared with whoever rotates them (the bundle watcher writes, verifiers read).
pub type SharedRoots = Arc<RwLock<Vec<CertificateDer<'static>>>>;

/// Wraps roots for sharing.
pub fn shared_roots(roots: Vec<CertificateDer<'static>>) -> SharedRoots {
    Arc::new(RwLock::new(roots))
}

/// Errors from reading a peer's SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate does not parse.
    #[error("cannot parse peer certificate: {0}")]
    Parse(String),
    /// Not exactly one URI SAN.
    #[error("peer certificate must have exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    /// The URI SAN is not a SPIFFE ID.
    #[error("peer URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffeId(String),
    /// The SPIFFE ID is not one the verifier accepts.
    #[error("peer SPIFFE ID {0} is not accepted")]
    NotAccepted(String),
    /// The shared roots lock was poisoned by a panicking writer.
    #[error("trust roots are unavailable")]
    RootsUnavailable,
    /// No trust root is configured.
    #[error("no trust roots configured")]
    NoRoots,
    /// Path validation failed.
    #[error("certificate path validation failed: {0}")]
    Path(String),
}

/// Which SPIFFE IDs a verifier accepts once the path validates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdMatcher {
    /// Any SPIFFE ID that chains to the roots.
    Any,
    /// Any SPIFFE ID in this trust domain.
    TrustDomain(TrustDomain),
    /// Exactly this SPIFFE ID.
    Exact(SpiffeId),
    /// One of these SPIFFE IDs.
    OneOf(Vec<SpiffeId>),
    /// A server of this trust domain: `/mandate/server` or `/mandate/server/<name>` (DESIGN
    /// 3.7), what an agent accepts from its server.
    ServerOf(TrustDomain),
}

impl SpiffeIdMatcher {
    /// True when `id` is accepted.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Any => true,
            Self::TrustDomain(td) => id.is_member_of(td),
            Self::Exact(want) => want == id,
            Self::OneOf(list) => list.contains(id),
            Self::ServerOf(td) => id.is_member_of(td) && crate::ids::is_server_id(id),
        }
    }
}

/// The one SPIFFE ID in a certificate's URI SANs.
///
/// # Errors
/// When the certificate does not parse, has not exactly one URI SAN, or it is not a SPIFFE ID.
pub fn peer_spiffe_id(cert_der: &[u8]) -> Result<SpiffeId, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let [uri] = uris.as_slice() else {
        return Err(TlsError::UriSanCount(uris.len()));
    };
    parse_spiffe_id(uri).map_err(|e| TlsError::NotSpiffeId(e.to_string()))
}

/// Path validation against the roots, then the SPIFFE ID check; shared by both verifiers.
struct Core {
    roots: SharedRoots,
    matcher: SpiffeIdMatcher,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Core {
    fn new(roots: SharedRoots, matcher: SpiffeIdMatcher) -> Self {
        Self {
            roots,
            matcher,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let roots = self
            .roots
            .read()
            .map_err(|_| other(TlsError::RootsUnavailable))?
            .clone();
        let anchors: Vec<_> = roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        if anchors.is_empty() {
            return Err(other(TlsError::NoRoots));
        }
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        ee.verify_for_usage(
            self.algorithms.all,
            &anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(map_webpki_error)?;
        let id = peer_spiffe_id(end_entity).map_err(other)?;
        if !self.matcher.matches(&id) {
            return Err(other(TlsError::NotAccepted(id.to_string())));
        }
        Ok(id)
    }

    fn verify_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("matcher", &self.matcher)
            .finish_non_exhaustive()
    }
}

fn other(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

fn map_webpki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::CertRevoked => CertificateError::Revoked,
        W::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other_error => return other(TlsError::Path(format!("{other_error:?}"))),
    };
    rustls::Error::InvalidCertificate(ce)
}

/// A client-side verifier of server certificates: path to the roots, serverAuth, one SPIFFE
/// ID accepted by the matcher. The server name is ignored.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    core: Core,
}

impl SpiffeServerVerifier {
    /// Builds a verifier over shared roots.
    pub fn new(roots: SharedRoots, expected: SpiffeIdMatcher) -> Self {
        Self {
            core: Core::new(roots, expected),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.core.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.algorithms.supported_schemes()
    }
}

/// A server-side verifier of client certificates: path to the roots, clientAuth, one SPIFFE
/// ID accepted by the matcher ([`SpiffeIdMatcher::Any`] unless set).
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    core: Core,
    allow_unauthenticated: bool,
}

impl SpiffeClientVerifier {
    /// Builds a verifier over shared roots; client auth is optional when
    /// `allow_unauthenticated`.
    pub fn new(roots: SharedRoots, allow_unauthenticated: bool) -> Self {
        Self {
            core: Core::new(roots, SpiffeIdMatcher::Any),
            allow_unauthenticated,
        }
    }

    /// Restricts the accepted client SPIFFE IDs.
    pub fn with_matcher(mut self, matcher: SpiffeIdMatcher) -> Self {
        self.core.matcher = matcher;
        self
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        !self.allow_unauthenticated
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.core.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.algorithms.supported_schemes()
    }
}

/// Keeps `CryptoProvider` in the public vocabulary of this module for callers building configs.
pub fn default_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests;

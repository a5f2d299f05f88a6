//! rustls server and client configs fed by the Workload API (SVIDs and bundles rotate without
//! a restart), and a TLS accept that yields the caller's identity once per connection.

use std::sync::Arc;

use mandate_core::{SpiffeId, TrustDomain};
use spiffe::{X509Source, X509Svid};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::caller::{CallerIdentity, DelegationPolicy};
use crate::refusal::Refusal;

/// Why a TLS config could not be built or a connection not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The Workload API source could not be created or has no usable SVID.
    #[error("workload api source: {0}")]
    Source(#[from] spiffe::X509SourceError),
    /// spiffe-rustls could not build the config.
    #[error("tls config: {0}")]
    Config(#[from] spiffe_rustls::Error),
    /// The TLS handshake failed.
    #[error("tls handshake: {0}")]
    Handshake(#[source] std::io::Error),
    /// The handshake succeeded but the caller is refused (e.g. a required delegation is missing).
    #[error("caller refused: {0}")]
    Refused(#[from] Refusal),
}

/// Picks the SVID with a given SPIFFE ID when the workload holds several.
#[derive(Debug, Clone)]
pub struct SpiffeIdPicker(pub SpiffeId);

impl spiffe::x509_source::SvidPicker for SpiffeIdPicker {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        svids.iter().position(|svid| svid.spiffe_id() == &self.0)
    }
}

/// Connects an `X509Source` to the Workload API at `endpoint` (`unix:///path`; `None` reads
/// `SPIFFE_ENDPOINT_SOCKET`), picking the SVID named `pick` when given, else the first one.
///
/// Fails when the endpoint is invalid or the first synchronization does not complete.
pub async fn x509_source(
    endpoint: Option<&str>,
    pick: Option<SpiffeId>,
) -> Result<X509Source, TlsError> {
    let mut builder = X509Source::builder();
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint(endpoint);
    }
    if let Some(id) = pick {
        builder = builder.picker(SpiffeIdPicker(id));
    }
    Ok(builder.build().await?)
}

/// A server config that requires a client SVID from `trust_domain` and presents the source's
/// SVID; both follow rotation. `alpn` lists protocols such as `b"http/1.1"`.
///
/// Fails when the source has no SVID yet.
pub fn server_config(
    source: X509Source,
    trust_domain: TrustDomain,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = spiffe_rustls::mtls_server(source)
        .trust_domain_policy(spiffe_rustls::LocalOnly(trust_domain))
        .with_alpn_protocols(alpn)
        .build()?;
    Ok(Arc::new(config))
}

/// A client config that presents the source's SVID and accepts only the server `server_id`
/// (the peer's SPIFFE ID, not its DNS name, is what is checked).
///
/// Fails when the source has no SVID yet.
pub fn client_config(
    source: X509Source,
    server_id: SpiffeId,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let trust_domain = server_id.trust_domain().clone();
    let config = spiffe_rustls::mtls_client(source)
        .authorize(move |peer: &SpiffeId| peer == &server_id)
        .trust_domain_policy(spiffe_rustls::LocalOnly(trust_domain))
        .with_alpn_protocols(alpn)
        .build()?;
    Ok(Arc::new(config))
}

/// Accepts one TLS connection and reads its caller once, from the handshake.
///
/// Fails with `Handshake` when TLS fails, and `Refused` when the caller's certificate is refused
/// by `policy` (no SPIFFE ID, a malformed delegation, or a required delegation missing).
pub async fn accept<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    policy: &DelegationPolicy,
) -> Result<(TlsStream<IO>, CallerIdentity), TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = acceptor.accept(io).await.map_err(TlsError::Handshake)?;
    let caller = CallerIdentity::from_tls_stream(&stream, policy)?;
    Ok((stream, caller))
}

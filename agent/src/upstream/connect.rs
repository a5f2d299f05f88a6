//! TLS channels to mandate-server: the server is authenticated by its SPIFFE ID
//! (`spiffe://<td>/mandate/server` or `.../mandate/server/<name>`, DESIGN 3.7 "Input rules")
//! with `mandate_core::tls::SpiffeServerVerifier`, never by host name; the agent presents its
//! SVID once it has one.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use mandate_core::TrustDomain;
use mandate_core::tls::{SharedRoots, SpiffeIdMatcher, SpiffeServerVerifier};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::datadir::StoredIdentity;

/// Errors from building a TLS channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// rustls refused the configuration (e.g. the key does not parse).
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The server address does not form a valid URI.
    #[error("invalid server address {0:?}")]
    Address(String),
}

/// The SPIFFE ID the server must present.
pub fn server_id(trust_domain: &TrustDomain) -> String {
    format!("{}/mandate/server", trust_domain.id_string())
}

/// A rustls client config that authenticates the server by SPIFFE ID against `roots`, with
/// the agent's SVID as client certificate when given.
///
/// # Errors
/// When rustls refuses the certificate or key.
pub fn client_config(
    roots: SharedRoots,
    trust_domain: &TrustDomain,
    identity: Option<&StoredIdentity>,
) -> Result<ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let expected = SpiffeIdMatcher::ServerOf(trust_domain.clone());
    let verifier = Arc::new(SpiffeServerVerifier::new(roots, expected));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(identity) => {
            let chain: Vec<CertificateDer<'static>> = identity
                .chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone()));
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A lazy gRPC channel to `address` (`HOST:PORT`) over TLS with `config`; it reconnects by
/// itself after failures.
///
/// # Errors
/// When the address does not form a URI.
pub fn channel(address: &str, config: ClientConfig) -> Result<Channel, ConnectError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| ConnectError::Address(address.to_owned()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = address.to_owned();
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
        .unwrap_or_default();
    let server_name = ServerName::try_from(host)
        // "localhost" is a valid DNS name, so the fallback cannot fail.
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid DNS name"));
    let service = tower::service_fn(move |_uri| {
        let connector = connector.clone();
        let address = address.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}

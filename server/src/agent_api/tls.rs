//! TLS for the agent API: a tokio-rustls accept loop feeding tonic's `serve_with_incoming`,
//! with a connect-info type carrying the verified client certificate. Client auth is
//! optional (Attest runs without a certificate); the roots are the CA manager's shared roots,
//! swapped in place on rotation.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use mandate_core::tls::{SpiffeClientVerifier, peer_spiffe_id};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::ca::CaManager;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What tonic exposes about an agent connection (request extension).
#[derive(Debug, Clone)]
pub struct AgentPeer {
    /// The verified client certificate, when the agent presented one.
    pub certificate: Option<CertificateDer<'static>>,
    /// The SPIFFE ID of that certificate.
    pub spiffe_id: Option<String>,
    /// The remote address.
    pub remote: SocketAddr,
}

/// An accepted TLS connection.
#[derive(Debug)]
pub struct AgentTlsStream {
    inner: TlsStream<TcpStream>,
    peer: AgentPeer,
}

impl AgentTlsStream {
    fn new(inner: TlsStream<TcpStream>, remote: SocketAddr) -> Self {
        let certificate = inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        let spiffe_id = certificate
            .as_ref()
            .and_then(|c| peer_spiffe_id(c).ok())
            .map(|id| id.to_string());
        Self {
            inner,
            peer: AgentPeer {
                certificate,
                spiffe_id,
                remote,
            },
        }
    }
}

impl Connected for AgentTlsStream {
    type ConnectInfo = AgentPeer;

    fn connect_info(&self) -> AgentPeer {
        self.peer.clone()
    }
}

impl AsyncRead for AgentTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves the server's current SVID (it rotates with the CA); the mTLS admin listener
/// shares it.
#[derive(Debug)]
pub struct IdentityResolver(Arc<CaManager>);

impl IdentityResolver {
    /// Resolves to `ca`'s identity.
    pub fn new(ca: Arc<CaManager>) -> Self {
        Self(ca)
    }
}

impl ResolvesServerCert for IdentityResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.identity().certified_key()
    }
}

/// The rustls server config: the server SVID from the CA manager, optional client auth
/// against the live roots, ALPN h2.
///
/// # Errors
/// rustls refused the protocol setup.
pub fn server_config(ca: Arc<CaManager>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let verifier = SpiffeClientVerifier::new(ca.identity().roots(), true);
    let mut config = ServerConfig::builder_with_provider(mandate_core::tls::default_provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(IdentityResolver(ca)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes TLS handshakes concurrently; a failed handshake
/// drops only that connection.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<AgentTlsStream, io::Error>> {
    let (tx, rx) = mpsc::channel(128);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(AgentTlsStream::new(stream, remote))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

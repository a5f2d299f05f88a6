//! The admin API over the network (DESIGN 3.9): the CLI takes its own X509-SVID and the trust
//! bundle from its local agent's Workload API (`--endpoint`), dials `--server-address` over
//! mTLS and accepts only the server's SVID, `spiffe://<td>/mandate/server` or
//! `/mandate/server/<name>`, never a host name.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use mandate_core::SpiffeId;
use mandate_core::tls::{SpiffeIdMatcher, SpiffeServerVerifier, peer_spiffe_id, shared_roots};
use mandate_proto::admin::admin_client::AdminClient;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use spiffe::{WorkloadApiClient, X509Svid};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// How long the TCP connect and TLS handshake with the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server reached over the network, as a workload of a local agent.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The server's admin listener, `HOST:PORT`.
    pub address: String,
    /// The local agent's Workload API, e.g. `unix:///tmp/agent.sock`.
    pub endpoint: String,
    /// Which of the caller's SVIDs to present; the default (first) one when absent.
    pub spiffe_id: Option<String>,
}

impl Remote {
    /// Fetches the caller's SVID and bundle, then connects over mTLS.
    ///
    /// # Errors
    /// One line when the Workload API gives no usable SVID or bundle, or the server cannot be
    /// reached or does not present the server's SVID.
    pub async fn connect(&self) -> Result<AdminClient<Channel>, String> {
        let config = self.tls_config().await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let address = self.address.clone();
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| format!("invalid --server-address {address:?}: expected HOST:PORT"))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                let address = address.clone();
                async move {
                    let tcp = TcpStream::connect(&address).await?;
                    tcp.set_nodelay(true)?;
                    // The verifier checks the SPIFFE ID; the name only fills the SNI field.
                    let name = ServerName::try_from("mandate-server").map_err(io_error)?;
                    let tls = connector.connect(name, tcp).await?;
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| peer_spiffe_id(c))
                        .transpose()
                        .map_err(io_error)?;
                    match peer {
                        Some(id) if is_server_path(&id) => {}
                        Some(id) => {
                            return Err(io_error(format!("{id} is not a mandate server")));
                        }
                        None => return Err(io_error("the server sent no certificate")),
                    }
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string());
                format!("cannot reach the admin API at {}: {cause}", self.address)
            })?;
        Ok(AdminClient::new(channel))
    }

    /// The caller's SVID as client certificate, the server authenticated against the
    /// bundle of the caller's trust domain.
    async fn tls_config(&self) -> Result<ClientConfig, String> {
        let workload = WorkloadApiClient::connect_to(&self.endpoint)
            .await
            .map_err(|e| format!("cannot reach the Workload API at {}: {e}", self.endpoint))?;
        let context = workload.fetch_x509_context().await.map_err(|e| {
            format!(
                "cannot fetch an X509-SVID from the Workload API at {}: {e}",
                self.endpoint
            )
        })?;
        let svid: &X509Svid = match &self.spiffe_id {
            Some(want) => context
                .svids()
                .iter()
                .find(|s| s.spiffe_id().to_string() == *want)
                .ok_or_else(|| format!("the Workload API holds no X509-SVID for {want}"))?,
            None => context
                .default_svid()
                .ok_or("the Workload API gave no X509-SVID")?,
        };
        let trust_domain = svid.spiffe_id().trust_domain().clone();
        let bundle = context
            .bundle_set()
            .get(&trust_domain)
            .ok_or_else(|| format!("the Workload API gave no bundle for {trust_domain}"))?;
        let roots: Vec<CertificateDer<'static>> = bundle
            .authorities()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        let verifier = SpiffeServerVerifier::new(
            shared_roots(roots),
            SpiffeIdMatcher::TrustDomain(trust_domain),
        );
        let chain: Vec<CertificateDer<'static>> = svid
            .cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            svid.private_key().as_bytes().to_vec(),
        ));
        let mut config = ClientConfig::builder_with_provider(mandate_core::tls::default_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the X509-SVID of the Workload API is unusable: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// `/mandate/server` or `/mandate/server/<name>` (DESIGN 3.7, 4).
fn is_server_path(id: &SpiffeId) -> bool {
    match id.path().strip_prefix("/mandate/server") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|name| !name.is_empty() && !name.contains('/')),
        None => false,
    }
}

fn io_error(e: impl ToString) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_paths_are_servers() {
        for (path, server) in [
            ("/mandate/server", true),
            ("/mandate/server/s1", true),
            ("/mandate/server/s1/x", false),
            ("/mandate/servers", false),
            ("/mandate/agent/a", false),
            ("/broker", false),
        ] {
            let id = SpiffeId::new(format!("spiffe://example.org{path}")).unwrap();
            assert_eq!(is_server_path(&id), server, "{path}");
        }
    }
}

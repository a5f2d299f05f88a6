//! The bench acting as a node agent: it attests with a join token over server-authenticated
//! TLS, then talks to the agent API over mTLS with the SVID it got (DESIGN 3.5).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use mandate_core::tls::{SpiffeIdMatcher, SpiffeServerVerifier, shared_roots};
use mandate_core::x509::{csr_request, generate_p256_keypair};
use mandate_core::{SpiffeId, TrustDomain};
use mandate_integration::TRUST_DOMAIN;
use mandate_proto::agent::AttestRequest;
use mandate_proto::agent::agent_api_client::AgentApiClient;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::admin::{Admin, MAX_MESSAGE};

/// An attested pseudo-agent with an mTLS client for the agent API.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The SPIFFE ID the server gave it: the parent ID of its entries.
    pub(crate) spiffe_id: String,
    /// The agent API over mTLS with the node's SVID.
    pub(crate) client: AgentApiClient<Channel>,
}

/// Server-authenticated TLS to one server, for attesting many nodes.
#[derive(Debug, Clone)]
pub(crate) struct Attestor {
    address: String,
    roots: Vec<CertificateDer<'static>>,
    client: AgentApiClient<Channel>,
}

impl Attestor {
    /// Connects to the agent API at `address` (`HOST:PORT`), trusting the bundle `admin` shows.
    ///
    /// Fails when the bundle cannot be read or the TLS setup is refused.
    pub(crate) async fn connect(admin: &Admin, address: &str) -> Result<Self> {
        let bundle = admin.bundle().await?;
        let roots: Vec<CertificateDer<'static>> = bundle
            .x509_authorities
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        if roots.is_empty() {
            bail!("the server's bundle holds no CA certificate");
        }
        let config = tls_config(&roots, None)?;
        let client = AgentApiClient::new(tls_channel(address, config)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Self {
            address: address.to_owned(),
            roots,
            client,
        })
    }

    /// Attests with a fresh join token for `agent_id` and a fresh key; returns the SVID chain
    /// and the key (PKCS#8 DER).
    ///
    /// Fails when the server refuses the token or the CSR.
    pub(crate) async fn attest(
        &self,
        admin: &Admin,
        agent_id: &str,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>)> {
        let token = admin.token(agent_id).await?;
        let key = generate_p256_keypair()?;
        let csr = csr_request(&key)?;
        let request = AttestRequest {
            join_token: token,
            csr,
        };
        let response = self
            .client
            .clone()
            .attest(request)
            .await
            .context("Attest")?
            .into_inner();
        if response.spiffe_id != agent_id {
            bail!("attested as {} instead of {agent_id}", response.spiffe_id);
        }
        Ok((response.cert_chain, key.serialize_der()))
    }

    /// Attests as `agent_id` and opens an mTLS channel with the new SVID.
    ///
    /// Fails when attestation fails or rustls refuses the SVID.
    pub(crate) async fn node(&self, admin: &Admin, agent_id: &str) -> Result<Node> {
        let (chain, key) = self.attest(admin, agent_id).await?;
        let config = tls_config(&self.roots, Some((chain, key)))?;
        let client = AgentApiClient::new(tls_channel(&self.address, config)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Node {
            spiffe_id: agent_id.to_owned(),
            client,
        })
    }
}

/// A rustls client config that accepts only `spiffe://<td>/mandate/server` under `roots`,
/// presenting `identity` (chain, PKCS#8 key) when given.
fn tls_config(
    roots: &[CertificateDer<'static>],
    identity: Option<(Vec<Vec<u8>>, Vec<u8>)>,
) -> Result<ClientConfig> {
    let trust_domain = TrustDomain::new(TRUST_DOMAIN)?;
    let server = SpiffeId::new(format!("{}/mandate/server", trust_domain.id_string()))?;
    let verifier =
        SpiffeServerVerifier::new(shared_roots(roots.to_vec()), SpiffeIdMatcher::Exact(server));
    let builder = ClientConfig::builder_with_provider(mandate_core::tls::default_provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some((chain, key)) => {
            let chain = chain.into_iter().map(CertificateDer::from).collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A lazy gRPC channel over TLS to `address`; the server name is never checked (the verifier
/// checks the SPIFFE ID instead).
fn tls_channel(address: &str, config: ClientConfig) -> Result<Channel> {
    let endpoint =
        Endpoint::from_shared(format!("http://{address}"))?.connect_timeout(Duration::from_secs(5));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = address.to_owned();
    let server_name = ServerName::try_from("localhost")?;
    let service = tower::service_fn(move |_| {
        let (connector, address, server_name) =
            (connector.clone(), address.clone(), server_name.clone());
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}

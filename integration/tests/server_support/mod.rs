//! Helpers for the server tests: a test agent that attests with a real CSR and talks to the
//! agent API over TLS as `mandate-agent` would, plus small parsers for certificates and CRLs.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hyper_util::rt::TokioIo;
use mandate_core::SpiffeId;
use mandate_core::tls::{SpiffeIdMatcher, SpiffeServerVerifier, shared_roots};
use mandate_core::x509::{csr_request, generate_p256_keypair, parse_pem_certs};
use mandate_integration::Server;
use mandate_proto::agent::agent_api_client::AgentApiClient;
use mandate_proto::agent::{
    AttestRequest, SignX509SvidRequest, SignX509SvidsRequest, SyncMessage, SyncRequest,
};
use rcgen::KeyPair;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// An attested test agent with an mTLS client.
pub struct TestAgent {
    /// Its SPIFFE ID.
    pub id: String,
    /// Its SVID chain.
    pub chain: Vec<Vec<u8>>,
    /// The mTLS client.
    pub client: AgentApiClient<Channel>,
    /// Its SVID key.
    pub key: KeyPair,
}

fn roots(server: &Server) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read_to_string(&server.bundle_pem)?;
    Ok(parse_pem_certs(&pem)?
        .into_iter()
        .map(CertificateDer::from)
        .collect())
}

fn tls_config(server: &Server, identity: Option<(&[Vec<u8>], &KeyPair)>) -> Result<ClientConfig> {
    let expected = SpiffeId::new("spiffe://example.org/mandate/server")?;
    let verifier = SpiffeServerVerifier::new(
        shared_roots(roots(server)?),
        SpiffeIdMatcher::Exact(expected),
    );
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some((chain, key)) => {
            let chain = chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A gRPC channel to the server's agent API over TLS.
pub async fn channel(
    server: &Server,
    identity: Option<(&[Vec<u8>], &KeyPair)>,
) -> Result<AgentApiClient<Channel>> {
    let config = tls_config(server, identity)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = server.address.clone();
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let address = address.clone();
            async move {
                let tcp = TcpStream::connect(&address).await?;
                let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .context("connecting to the agent API")?;
    Ok(AgentApiClient::new(channel))
}

/// Attests with `token` and returns the raw result.
pub async fn attest_raw(
    server: &Server,
    token: &str,
) -> Result<Result<(String, Vec<Vec<u8>>, KeyPair), tonic::Status>> {
    let key = generate_p256_keypair()?;
    let csr = csr_request(&key)?;
    let mut client = channel(server, None).await?;
    let reply = client
        .attest(AttestRequest {
            join_token: token.to_owned(),
            csr,
        })
        .await;
    Ok(reply.map(|r| {
        let r = r.into_inner();
        (r.spiffe_id, r.cert_chain, key)
    }))
}

/// Attests with a fresh token (for `agent_id` when given) and connects with the new SVID.
pub async fn attest(server: &Server, agent_id: Option<&str>) -> Result<TestAgent> {
    let token = server.token(agent_id)?;
    let (id, chain, key) = attest_raw(server, &token)
        .await?
        .map_err(|s| anyhow!("attest: {s}"))?;
    let client = channel(server, Some((&chain, &key))).await?;
    Ok(TestAgent {
        id,
        chain,
        client,
        key,
    })
}

impl TestAgent {
    /// Connects again with the same SVID (after a server restart).
    pub async fn reconnect(&mut self, server: &Server) -> Result<()> {
        self.client = channel(server, Some((&self.chain, &self.key))).await?;
        Ok(())
    }

    /// Signs one fresh CSR for `entry_id`; returns the result's (code, chain).
    pub async fn sign(&mut self, entry_id: &str) -> Result<(i32, Vec<Vec<u8>>)> {
        let key = generate_p256_keypair()?;
        self.sign_csr(entry_id, csr_request(&key)?).await
    }

    /// Signs `csr` for `entry_id`; returns the result's (code, chain).
    pub async fn sign_csr(&mut self, entry_id: &str, csr: Vec<u8>) -> Result<(i32, Vec<Vec<u8>>)> {
        let reply = self
            .client
            .sign_x509_svids(SignX509SvidsRequest {
                requests: vec![SignX509SvidRequest {
                    entry_id: entry_id.to_owned(),
                    csr,
                }],
            })
            .await
            .map_err(|s| anyhow!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let r = reply.results.into_iter().next().context("one result")?;
        Ok((r.code, r.cert_chain))
    }

    /// Opens a sync stream from `since`.
    pub async fn sync(&mut self, since: u64) -> Result<tonic::Streaming<SyncMessage>> {
        Ok(self
            .client
            .sync(SyncRequest {
                since_revision: since,
            })
            .await?
            .into_inner())
    }
}

/// The serials (lowercase hex, no leading zeros) listed in a DER CRL.
pub fn crl_serials(der: &[u8]) -> Result<Vec<String>> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| anyhow!("crl: {e}"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| format!("{:x}", r.user_certificate))
        .collect())
}

/// The serial (lowercase hex, no leading zeros) of a DER certificate.
pub fn cert_serial(der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("cert: {e}"))?;
    Ok(format!("{:x}", cert.tbs_certificate.serial))
}

/// Runs `future` on a fresh multi-thread runtime.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

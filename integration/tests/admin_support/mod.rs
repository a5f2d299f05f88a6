//! Shared setup of the remote admin API tests (DESIGN 3.9): a server with an mTLS admin
//! listener and `[[admin_ids]]` for an operator, a task broker (paths `/ai/`) and an approver,
//! and one agent giving this test's uid an SVID for each of them plus one unlisted stranger.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use mandate_core::SpiffeId;
use mandate_core::tls::{SpiffeIdMatcher, SpiffeServerVerifier, shared_roots};
use mandate_core::x509::{Ca, LeafRequest, generate_p256_keypair, parse_pem_certs};
use mandate_integration::{
    Agent, CliOutput, Server, ServerOptions, TRUST_DOMAIN, bin, free_port, run,
};
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::admin::{self as pb};
use mandate_server::cli::Remote;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use spiffe::WorkloadApiClient;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// The network callers of the setup, by the path of their SPIFFE ID.
pub const OPERATOR: &str = "ops";
/// The task broker; its entries must lie under `/ai/`.
pub const BROKER: &str = "broker";
/// A second task broker, with the same paths, to show brokers cannot touch each other's work.
pub const OTHER_BROKER: &str = "broker2";
/// The approver.
pub const APPROVER: &str = "approvals";
/// An SVID of the trust domain that `admin_ids` does not list.
pub const STRANGER: &str = "stranger";

/// `spiffe://example.org/<path>`.
pub fn id(path: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{path}")
}

/// `unix:uid:<this test's uid>`.
pub fn my_uid_selector() -> String {
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    format!("unix:uid:{uid}")
}

/// The `[[admin_ids]]` of the setup.
pub fn admin_ids_toml() -> String {
    format!(
        "[[admin_ids]]\nspiffe_id = \"{}\"\nrole = \"operator\"\n\n\
         [[admin_ids]]\nspiffe_id = \"{}\"\nrole = \"task-broker\"\nallowed_paths = [\"/ai/\"]\n\n\
         [[admin_ids]]\nspiffe_id = \"{}\"\nrole = \"task-broker\"\nallowed_paths = [\"/ai/\"]\n\n\
         [[admin_ids]]\nspiffe_id = \"{}\"\nrole = \"approver\"\n",
        id(OPERATOR),
        id(BROKER),
        id(OTHER_BROKER),
        id(APPROVER)
    )
}

/// A server with the mTLS admin listener and an agent serving every caller's SVID.
#[derive(Debug)]
pub struct RemoteAdmin {
    /// The server.
    pub server: Server,
    /// The agent whose Workload API gives the callers their SVIDs.
    pub agent: Agent,
    /// The mTLS admin listener, `127.0.0.1:<port>`.
    pub address: String,
}

impl RemoteAdmin {
    /// Starts the server and the agent, registers the callers and waits for their SVIDs.
    ///
    /// # Errors
    /// When something does not come up within its timeout.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, "").await
    }

    /// As [`RemoteAdmin::start`], with extra server config lines.
    ///
    /// # Errors
    /// When something does not come up within its timeout.
    pub async fn start_with(name: &str, config: &str) -> Result<Self> {
        let address = format!("127.0.0.1:{}", free_port());
        let server = Server::start_with(ServerOptions {
            config: format!(
                "admin_bind_address = \"{address}\"\n{config}\n{}",
                admin_ids_toml()
            ),
            ..ServerOptions::default()
        })?;
        let agent = Agent::start(&server, name)?;
        let selector = my_uid_selector();
        let callers = [OPERATOR, BROKER, OTHER_BROKER, APPROVER, STRANGER];
        for caller in callers {
            server.create_entry(&id(caller), &agent.spiffe_id, &["--selector", &selector])?;
        }
        let setup = Self {
            server,
            agent,
            address,
        };
        setup.wait_svids(callers.len()).await?;
        Ok(setup)
    }

    async fn wait_svids(&self, count: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = WorkloadApiClient::connect_to(self.agent.endpoint()).await
                && let Ok(svids) = client.fetch_all_x509_svids().await
                && svids.len() >= count
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the agent did not serve {count} SVIDs within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An admin client over mTLS presenting `caller`'s SVID, through the CLI's own code.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn client(&self, caller: &str) -> Result<AdminClient<Channel>> {
        let remote = Remote {
            address: self.address.clone(),
            endpoint: self.agent.endpoint(),
            spiffe_id: Some(id(caller)),
        };
        remote
            .connect()
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("connecting as {caller}"))
    }

    /// Runs `mandate-server --spiffe-id <caller> <args> --server-address .. --endpoint ..`.
    ///
    /// # Errors
    /// When the CLI cannot start.
    pub fn cli(&self, caller: &str, args: &[&str]) -> Result<CliOutput> {
        let caller_id = id(caller);
        let endpoint = self.agent.endpoint();
        let mut all = vec!["--spiffe-id", caller_id.as_str()];
        all.extend_from_slice(args);
        all.extend([
            "--server-address",
            self.address.as_str(),
            "--endpoint",
            endpoint.as_str(),
        ]);
        run(&bin("mandate-server"), &all, &[])
    }

    /// The audit records (JSON) over the unix socket.
    ///
    /// # Errors
    /// When the CLI fails.
    pub fn audit(&self) -> Result<Vec<serde_json::Value>> {
        let v = self.server.cli_json(&["audit", "list"])?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

/// A client certificate: the chain and its PKCS#8 key.
pub type Identity = (Vec<Vec<u8>>, Vec<u8>);

/// Calls `Health` on the mTLS admin listener of `setup` with `identity` (or none), trusting
/// the server's bundle.
pub async fn health_with(setup: &RemoteAdmin, identity: Option<Identity>) -> Result<(), String> {
    let pem = std::fs::read_to_string(&setup.server.bundle_pem).map_err(|e| e.to_string())?;
    let roots = parse_pem_certs(&pem)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let verifier = SpiffeServerVerifier::new(shared_roots(roots), SpiffeIdMatcher::Any);
    let builder = ClientConfig::builder_with_provider(mandate_core::tls::default_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = setup.address.clone();
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
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
        .map_err(|e| format!("connect: {e:?}"))?;
    AdminClient::new(channel)
        .health(pb::HealthRequest {})
        .await
        .map(drop)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// A leaf for `spiffe_id` signed by `ca`, valid from `not_before` to `not_after`.
pub fn leaf(
    ca: &Ca,
    spiffe_id: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Identity> {
    let key = generate_p256_keypair()?;
    let request = LeafRequest {
        spiffe_id: SpiffeId::new(spiffe_id)?,
        dns_names: Vec::new(),
        not_before,
        not_after,
        delegation: None,
    };
    let issued = ca.sign_leaf(&key, &request)?;
    Ok((vec![issued.der], key.serialize_der()))
}

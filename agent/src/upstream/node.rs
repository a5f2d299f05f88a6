//! The agent's own identity with the server: attestation with a join token over
//! server-authenticated TLS, the mTLS client built on the agent SVID, and renewal at half-life
//! with a new key (DESIGN 3.5).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mandate_core::TrustDomain;
use mandate_core::tls::SharedRoots;
use mandate_proto::agent::agent_api_client::AgentApiClient;
use mandate_proto::agent::{AttestRequest, RenewAgentRequest};
use tonic::transport::Channel;

use super::connect::{self, ConnectError};
use super::convert;
use crate::cache::model::BundleData;
use crate::cache::signer::{SignerError, check_leaf, check_leaf_key, leaf_uris, new_key_and_csr};
use crate::datadir::{DataDir, DataDirError, StoredIdentity};

/// How long an RPC to the server may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the agent's own identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A TLS channel could not be built.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A key or CSR could not be made, or a certificate read.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The data dir failed.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The server refused the join token.
    #[error("attestation refused: {0}")]
    Refused(String),
    /// The server could not be reached or failed.
    #[error("cannot reach server: {0}")]
    Unreachable(String),
    /// The server evicted this agent or no longer knows it.
    #[error("agent was evicted or is not recognized by the server: {0}")]
    Evicted(String),
    /// The agent SVID expired before it could be renewed.
    #[error("agent SVID expired at {0}; attest again with a new join token")]
    Expired(String),
    /// The server's answer is unusable.
    #[error("invalid answer from server: {0}")]
    Invalid(String),
}

impl NodeError {
    /// Maps a status from an mTLS call: PermissionDenied and Unauthenticated mean the server
    /// will never accept this agent again.
    pub fn from_status(status: &tonic::Status) -> Self {
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                Self::Evicted(status.message().to_owned())
            }
            _ => Self::Unreachable(format!("{}: {}", status.code(), status.message())),
        }
    }

    /// True when retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Unreachable(_))
    }
}

/// Attests with a join token; returns the identity and the bundle from the server.
///
/// # Errors
/// `Refused` for a bad token, `Unreachable` when the server cannot be reached.
pub async fn attest(
    address: &str,
    roots: SharedRoots,
    trust_domain: &TrustDomain,
    join_token: &str,
) -> Result<(StoredIdentity, Option<BundleData>), NodeError> {
    let config = connect::client_config(roots, trust_domain, None)?;
    let mut client = AgentApiClient::new(connect::channel(address, config)?);
    let (key_pkcs8, csr) = new_key_and_csr()?;
    let mut request = tonic::Request::new(AttestRequest {
        join_token: join_token.to_owned(),
        csr,
    });
    request.set_timeout(RPC_TIMEOUT);
    let response = client.attest(request).await.map_err(|s| match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            NodeError::Unreachable(s.message().to_owned())
        }
        _ => NodeError::Refused(s.message().to_owned()),
    })?;
    let response = response.into_inner();
    if response.cert_chain.is_empty() {
        return Err(NodeError::Invalid("empty agent certificate chain".into()));
    }
    // The certificate must be for the key made here and name an agent ID of this trust
    // domain (issue 11, finding 12).
    check_leaf_key(&response.cert_chain, &key_pkcs8)?;
    let agents = format!("spiffe://{trust_domain}/mandate/agent/");
    match leaf_uris(&response.cert_chain)?.as_slice() {
        [id] if id.starts_with(&agents) => {}
        other => {
            return Err(NodeError::Invalid(format!(
                "agent certificate names {}, not an ID under {agents}",
                other.join(",")
            )));
        }
    }
    let bundle = response.bundle.map(convert::bundle);
    Ok((
        StoredIdentity {
            chain: response.cert_chain,
            key_pkcs8,
        },
        bundle,
    ))
}

/// The notBefore and notAfter of an identity's leaf.
///
/// # Errors
/// When the leaf does not parse.
pub fn validity(identity: &StoredIdentity) -> Result<(SystemTime, SystemTime), NodeError> {
    let leaf = identity
        .chain
        .first()
        .ok_or_else(|| NodeError::Invalid("empty chain".into()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| NodeError::Invalid(e.to_string()))?;
    let from = mandate_core::time::from_unix_seconds(cert.validity().not_before.timestamp());
    let to = mandate_core::time::from_unix_seconds(cert.validity().not_after.timestamp());
    Ok((from, to))
}

/// The agent's connection to the server, rebuilt whenever its SVID changes.
pub struct Upstream {
    address: String,
    trust_domain: TrustDomain,
    roots: SharedRoots,
    data_dir: DataDir,
    identity: ArcSwap<StoredIdentity>,
    client: ArcSwap<AgentApiClient<Channel>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An mTLS connection to `address` with `identity`.
    ///
    /// # Errors
    /// When the TLS config or channel cannot be built.
    pub fn new(
        address: String,
        trust_domain: TrustDomain,
        roots: SharedRoots,
        data_dir: DataDir,
        identity: StoredIdentity,
    ) -> Result<Self, NodeError> {
        let client = Self::build_client(&address, &trust_domain, &roots, &identity)?;
        Ok(Self {
            address,
            trust_domain,
            roots,
            data_dir,
            identity: ArcSwap::from_pointee(identity),
            client: ArcSwap::from_pointee(client),
        })
    }

    fn build_client(
        address: &str,
        trust_domain: &TrustDomain,
        roots: &SharedRoots,
        identity: &StoredIdentity,
    ) -> Result<AgentApiClient<Channel>, NodeError> {
        let config = connect::client_config(roots.clone(), trust_domain, Some(identity))?;
        let channel = connect::channel(address, config)?;
        Ok(AgentApiClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024))
    }

    /// A client for the current identity (cheap: channels are shared).
    pub fn client(&self) -> AgentApiClient<Channel> {
        self.client.load().as_ref().clone()
    }

    /// The current identity's validity.
    ///
    /// # Errors
    /// When the leaf does not parse.
    pub fn validity(&self) -> Result<(SystemTime, SystemTime), NodeError> {
        validity(&self.identity.load())
    }

    /// Renews the agent SVID with a new key, stores it, and switches the client over.
    ///
    /// # Errors
    /// `Evicted` when the server refuses this agent, `Unreachable` otherwise.
    pub async fn renew(&self) -> Result<(), NodeError> {
        let (key_pkcs8, csr) = new_key_and_csr()?;
        let mut request = tonic::Request::new(RenewAgentRequest { csr });
        request.set_timeout(RPC_TIMEOUT);
        let response = self
            .client()
            .renew_agent(request)
            .await
            .map_err(|s| NodeError::from_status(&s))?
            .into_inner();
        if response.cert_chain.is_empty() {
            return Err(NodeError::Invalid("empty agent certificate chain".into()));
        }
        // The renewed certificate is for the new key and keeps this agent's ID.
        let current = leaf_uris(&self.identity.load().chain)?;
        let expected = current.first().map(String::as_str).unwrap_or_default();
        check_leaf(&response.cert_chain, &key_pkcs8, expected)?;
        let identity = StoredIdentity {
            chain: response.cert_chain,
            key_pkcs8,
        };
        let client = Self::build_client(&self.address, &self.trust_domain, &self.roots, &identity)?;
        self.data_dir.store_identity(&identity)?;
        self.identity.store(Arc::new(identity));
        self.client.store(Arc::new(client));
        Ok(())
    }

    /// Renews at half-life, forever; returns the reason when renewal can never succeed
    /// (evicted, or the SVID expired while the server was unreachable).
    pub async fn renew_forever(&self) -> NodeError {
        let mut failures = 0u32;
        loop {
            let (not_before, not_after) = match self.validity() {
                Ok(v) => v,
                Err(e) => return e,
            };
            // notBefore is backdated by 10 s; life counts from the real issue time.
            let issued = (not_before + mandate_core::time::NOT_BEFORE_BACKDATE).min(not_after);
            let half = issued + not_after.duration_since(issued).unwrap_or_default() / 2;
            let now = SystemTime::now();
            if now >= not_after {
                return NodeError::Expired(
                    humantime::format_rfc3339_seconds(not_after).to_string(),
                );
            }
            if failures == 0 {
                if let Ok(wait) = half.duration_since(now) {
                    tokio::time::sleep(wait).await;
                }
            } else {
                let wait = Duration::from_secs(1 << failures.min(5))
                    .min(not_after.duration_since(now).unwrap_or_default());
                tokio::time::sleep(wait).await;
            }
            match self.renew().await {
                Ok(()) => {
                    failures = 0;
                    tracing::info!("renewed the agent SVID");
                }
                Err(e) if e.is_fatal() => return e,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "agent SVID renewal failed; retrying");
                }
            }
        }
    }
}

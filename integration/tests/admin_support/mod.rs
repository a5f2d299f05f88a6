//! Shared setup of the remote admin API tests (DESIGN 3.9): a server with an mTLS admin
//! listener and `[[admin_ids]]` for an operator, a task broker (paths `/ai/`) and an approver,
//! and one agent giving this test's uid an SVID for each of them plus one unlisted stranger.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mandate_integration::{
    Agent, CliOutput, Server, ServerOptions, TRUST_DOMAIN, bin, free_port, run,
};
use mandate_proto::admin::admin_client::AdminClient;
use mandate_server::cli::Remote;
use spiffe::WorkloadApiClient;
use tonic::transport::Channel;

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

//! The two-node fixture for cross-node tests: one [`Server`] and two [`Agent`]s on it, so that
//! a caller workload runs on one node and the service that verifies it on the other, as in
//! production (DESIGN §1 step 5, §3.4: the verifier usually runs on another node).
//!
//! ```no_run
//! use mandate_integration::cluster::Cluster;
//! # fn main() -> anyhow::Result<()> {
//! let cluster = Cluster::start()?;
//! let task = cluster.open_task(&["--action", "po.read"])?;
//! // The caller (this test process's uid) holds an SVID of `task` on node A ...
//! cluster.bind_caller("spiffe://example.org/ai/procurement", &task)?;
//! // ... and a service started with `cluster.verifier.endpoint()` verifies it on node B.
//! cluster.close_task(&task)?;
//! # Ok(()) }
//! ```

use anyhow::Result;

use crate::{Agent, Server};

/// The node name (and agent ID path `/mandate/agent/<name>`) of the caller's agent.
pub const CALLER_NODE: &str = "node-a";
/// The node name (and agent ID path `/mandate/agent/<name>`) of the verifier's agent.
pub const VERIFIER_NODE: &str = "node-b";

/// One server and two attested agents: `caller` (node A) for the workload that makes calls,
/// `verifier` (node B) for the service that verifies them. Everything is killed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// The server.
    pub server: Server,
    /// Node A, whose Workload API serves the calling workload (an AI agent).
    pub caller: Agent,
    /// Node B, whose Workload API and TaskStatus feed serve the verifying service.
    pub verifier: Agent,
}

impl Cluster {
    /// Starts a server and the two agents `spiffe://example.org/mandate/agent/node-a` and
    /// `spiffe://example.org/mandate/agent/node-b`, each ready when this returns.
    ///
    /// # Errors
    ///
    /// When the server or an agent does not come up within 30 s.
    pub fn start() -> Result<Self> {
        let server = Server::start()?;
        let caller = Agent::start(&server, CALLER_NODE)?;
        let verifier = Agent::start(&server, VERIFIER_NODE)?;
        Ok(Self {
            server,
            caller,
            verifier,
        })
    }

    /// Opens a task for `user:alice@example.org` and returns its ID. `extra` arguments of
    /// `task open` follow the defaults (purpose, `--deadline 1h` unless `extra` names one);
    /// `extra` must name at least one `--action`.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn open_task(&self, extra: &[&str]) -> Result<String> {
        let mut args = vec![
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "cross-node test",
        ];
        if !extra.contains(&"--deadline") {
            args.extend(["--deadline", "1h"]);
        }
        args.extend_from_slice(extra);
        self.server.cli_ok(&args)
    }

    /// Registers `spiffe_id` for this process's uid on the caller's node (A), bound to `task`;
    /// returns the entry ID. Any program this test starts with A's endpoint gets the SVID.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn bind_caller(&self, spiffe_id: &str, task: &str) -> Result<String> {
        let selector = format!("unix:uid:{}", current_uid());
        self.server.create_entry(
            spiffe_id,
            &self.caller.spiffe_id,
            &["--selector", &selector, "--task", task],
        )
    }

    /// Registers `spiffe_id` for this process's uid on the verifier's node (B), with `extra`
    /// selectors or flags; returns the entry ID.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn bind_verifier(&self, spiffe_id: &str, extra: &[&str]) -> Result<String> {
        let selector = format!("unix:uid:{}", current_uid());
        let mut args = vec!["--selector", selector.as_str()];
        args.extend_from_slice(extra);
        self.server
            .create_entry(spiffe_id, &self.verifier.spiffe_id, &args)
    }

    /// `task close <task> --reason <reason>`; returns when the server has acknowledged it.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn close_task(&self, task: &str) -> Result<()> {
        self.server
            .cli_ok(&["task", "close", task, "--reason", "cross-node test"])?;
        Ok(())
    }
}

/// This process's real uid, as the agents' unix attestor sees the programs it starts.
pub fn current_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

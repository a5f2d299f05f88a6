//! A real `mandate-agent` attested to a harness [`Server`], serving its Workload API socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::{CliOutput, Process, Server, TRUST_DOMAIN, bin, run, wait_for};

/// How to start an agent.
#[derive(Debug, Default, Clone)]
pub struct AgentOptions {
    /// The agent's SPIFFE ID, named in its join token; the server's default when `None`.
    pub agent_id: Option<String>,
    /// Extra TOML lines for the config file.
    pub config: String,
    /// Extra command-line arguments after `run`.
    pub args: Vec<String>,
}

/// A running agent. Killed on drop; its temp dir goes with it.
#[derive(Debug)]
pub struct Agent {
    /// The temp dir that holds everything of this agent.
    pub dir: TempDir,
    /// The agent's data dir.
    pub data_dir: PathBuf,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// The SPIFFE ID the agent was attested as (parent ID for its entries).
    pub spiffe_id: String,
    server_address: String,
    bundle_pem: PathBuf,
    config_path: PathBuf,
    options: AgentOptions,
    process: Process,
}

impl Agent {
    /// Attests a new agent to `server` with the ID `spiffe://example.org/mandate/agent/<name>`
    /// (agent IDs lie under `/mandate/agent/`, DESIGN 3.7) and waits until its socket answers.
    ///
    /// # Errors
    ///
    /// When the agent does not come up within 30 s.
    pub fn start(server: &Server, name: &str) -> Result<Self> {
        let options = AgentOptions {
            agent_id: Some(format!("spiffe://{TRUST_DOMAIN}/mandate/agent/{name}")),
            ..AgentOptions::default()
        };
        Self::start_with(server, options)
    }

    /// Attests a new agent to `server` with `options`.
    ///
    /// # Errors
    ///
    /// When the agent does not come up within 30 s.
    pub fn start_with(server: &Server, options: AgentOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mandate-agent-")
            .tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let data_dir = dir.path().join("data");
        let socket_path = dir.path().join("public").join("api.sock");
        let config_path = dir.path().join("agent.toml");
        fs::write(&config_path, options.config.as_bytes())?;
        let token = server.token(options.agent_id.as_deref())?;
        let spiffe_id = match &options.agent_id {
            Some(id) => id.clone(),
            None => String::new(),
        };
        let mut agent = Self {
            dir,
            data_dir,
            socket_path,
            spiffe_id,
            server_address: server.address.clone(),
            bundle_pem: server.bundle_pem.clone(),
            config_path,
            options,
            process: Process::placeholder(),
        };
        agent.process = agent.spawn(Some(&token))?;
        agent.wait_ready()?;
        if agent.spiffe_id.is_empty() {
            agent.spiffe_id = agent.discover_id(server)?;
        }
        Ok(agent)
    }

    fn spawn(&self, token: Option<&str>) -> Result<Process> {
        let mut command = Command::new(bin("mandate-agent"));
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .args(["--server-address", &self.server_address])
            .arg("--trust-bundle")
            .arg(&self.bundle_pem)
            .arg("--socket-path")
            .arg(&self.socket_path)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.options.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(token) = token {
            command.args(["--join-token", token]);
        }
        Process::spawn(command, &self.dir.path().join("agent.log"))
            .context("starting mandate-agent")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let ready = wait_for("mandate-agent healthcheck", Duration::from_secs(30), || {
            if let Ok(Some(code)) = self.process.try_exit_code() {
                return Some(Err(code));
            }
            match self.cli(&["healthcheck"]) {
                Ok(out) if out.success() => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(code)) => bail!("mandate-agent exited with {code}:\n{}", self.log()),
            Err(err) => bail!("{err}\n{}", self.log()),
        }
    }

    /// Finds this agent's ID in `agent list` (the newest attested agent).
    fn discover_id(&self, server: &Server) -> Result<String> {
        let agents = server.cli_json(&["agent", "list"])?;
        let newest = agents
            .as_array()
            .and_then(|list| {
                list.iter()
                    .max_by_key(|a| a["attested_at"].as_i64().unwrap_or(0))
            })
            .and_then(|a| a["spiffe_id"].as_str())
            .context("agent list shows no agent")?;
        Ok(newest.to_string())
    }

    /// Runs `mandate-agent <args> --socket-path <socket>`.
    ///
    /// # Errors
    ///
    /// When the CLI cannot start.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let socket = self.socket_path.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--socket-path", &socket]);
        run(&bin("mandate-agent"), &all, &[])
    }

    /// `unix://<socket>`, the form of `SPIFFE_ENDPOINT_SOCKET`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }

    /// Everything the agent has logged.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the agent with SIGKILL.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops the agent with SIGTERM; returns its exit code.
    ///
    /// # Errors
    ///
    /// When it does not exit within 10 s.
    pub fn stop(&mut self) -> Result<Option<i32>> {
        self.process.terminate()
    }

    /// Starts the agent again on the same data dir, without a join token.
    ///
    /// # Errors
    ///
    /// When it does not come up within 30 s.
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        self.process = self.spawn(None)?;
        self.wait_ready()
    }

    /// The exit code if the agent has exited.
    ///
    /// # Errors
    ///
    /// When the process state cannot be read.
    pub fn try_exit_code(&mut self) -> Result<Option<i32>> {
        self.process.try_exit_code()
    }
}

//! A real `mandate-server` on a temp dir, a free loopback port and its own admin socket.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::{CliOutput, Process, TRUST_DOMAIN, bin, free_port, json_of, run, wait_for};

/// How to start a server.
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    /// Extra TOML lines for the config file (the harness writes the rest).
    pub config: String,
    /// Extra command-line arguments after `run`.
    pub args: Vec<String>,
    /// A command that runs the server binary, such as `["taskset", "-c", "0"]`; empty runs it
    /// directly. The program must exec the binary so that [`Server::pid`] stays its pid.
    pub command_prefix: Vec<String>,
}

/// A running server. Killed on drop; its temp dir goes with it.
#[derive(Debug)]
pub struct Server {
    /// The temp dir that holds everything of this server.
    pub dir: TempDir,
    /// The server's data dir.
    pub data_dir: PathBuf,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// `127.0.0.1:<port>` of the agent API.
    pub address: String,
    /// The PEM trust bundle, written after start.
    pub bundle_pem: PathBuf,
    /// The config file passed with `--config`.
    pub config_path: PathBuf,
    options: ServerOptions,
    process: Process,
}

impl Server {
    /// Starts a server with the default options and waits until it answers.
    ///
    /// # Errors
    ///
    /// When the server does not become healthy within 30 s.
    pub fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with `options` and waits until it answers.
    ///
    /// # Errors
    ///
    /// When the server does not become healthy within 30 s.
    pub fn start_with(options: ServerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mandate-server-")
            .tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let data_dir = dir.path().join("data");
        let admin_socket = dir.path().join("admin.sock");
        let address = format!("127.0.0.1:{}", free_port());
        let config_path = dir.path().join("server.toml");
        fs::write(&config_path, options.config.as_bytes())?;
        let bundle_pem = dir.path().join("bundle.pem");
        let process = spawn(
            dir.path(),
            &data_dir,
            &admin_socket,
            &address,
            &config_path,
            &options,
        )?;
        let mut server = Self {
            dir,
            data_dir,
            admin_socket,
            address,
            bundle_pem,
            config_path,
            options,
            process,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until `healthcheck` passes, then writes the bundle PEM.
    fn wait_ready(&mut self) -> Result<()> {
        let ready = wait_for(
            "mandate-server healthcheck",
            Duration::from_secs(30),
            || {
                if let Ok(Some(code)) = self.process.try_exit_code() {
                    return Some(Err(code));
                }
                match self.cli(&["healthcheck"]) {
                    Ok(out) if out.success() => Some(Ok(())),
                    _ => None,
                }
            },
        );
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(code)) => bail!("mandate-server exited with {code}:\n{}", self.log()),
            Err(err) => bail!("{err}\n{}", self.log()),
        }
        let pem = self.cli_ok(&["bundle", "show"])?;
        fs::write(&self.bundle_pem, pem)?;
        Ok(())
    }

    /// Runs `mandate-server <args> --admin-socket <socket>`.
    ///
    /// # Errors
    ///
    /// When the CLI cannot start.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let socket = self.admin_socket.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--admin-socket", &socket]);
        run(&bin("mandate-server"), &all, &[])
    }

    /// Runs a CLI command that must succeed and returns its trimmed stdout.
    ///
    /// # Errors
    ///
    /// When the command fails; the error carries its stderr.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.success() {
            bail!(
                "mandate-server {args:?} failed ({}): {}",
                out.code,
                out.stderr.trim()
            );
        }
        Ok(out.stdout.trim().to_string())
    }

    /// Runs a CLI command with `--output json` and parses its stdout.
    ///
    /// # Errors
    ///
    /// When the command fails or prints something that is not JSON.
    pub fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        json_of(&self.cli(&all)?)
    }

    /// Generates a join token, for `agent_id` when given.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn token(&self, agent_id: Option<&str>) -> Result<String> {
        match agent_id {
            Some(id) => self.cli_ok(&["token", "generate", "--agent-id", id]),
            None => self.cli_ok(&["token", "generate"]),
        }
    }

    /// Creates an entry and returns its ID.
    ///
    /// # Errors
    ///
    /// When the CLI refuses.
    pub fn create_entry(&self, spiffe_id: &str, parent_id: &str, extra: &[&str]) -> Result<String> {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            spiffe_id,
            "--parent-id",
            parent_id,
        ];
        args.extend_from_slice(extra);
        self.cli_ok(&args)
    }

    /// Everything the server has logged.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops the server with SIGTERM; returns its exit code.
    ///
    /// # Errors
    ///
    /// When it does not exit within 10 s.
    pub fn stop(&mut self) -> Result<Option<i32>> {
        self.process.terminate()
    }

    /// Starts the server again on the same data dir, port and socket (after `kill9` or `stop`).
    ///
    /// # Errors
    ///
    /// When it does not become healthy within 30 s.
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        self.process = spawn(
            self.dir.path(),
            &self.data_dir,
            &self.admin_socket,
            &self.address,
            &self.config_path,
            &self.options,
        )?;
        self.wait_ready()
    }

    /// The trust domain as `spiffe://example.org`.
    pub fn trust_domain_id(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}")
    }
}

fn spawn(
    dir: &Path,
    data_dir: &Path,
    admin_socket: &Path,
    address: &str,
    config: &Path,
    options: &ServerOptions,
) -> Result<Process> {
    let mut command = match options.command_prefix.split_first() {
        Some((program, prefix_args)) => {
            let mut command = Command::new(program);
            command.args(prefix_args).arg(bin("mandate-server"));
            command
        }
        None => Command::new(bin("mandate-server")),
    };
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--trust-domain", TRUST_DOMAIN])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind-address", address])
        .arg("--admin-socket")
        .arg(admin_socket)
        .args(&options.args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    Process::spawn(command, &dir.join("server.log")).context("starting mandate-server")
}

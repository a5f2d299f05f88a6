//! The process harness for Mandate's integration tests and benchmarks: it builds and finds the
//! real `mandate-server` and `mandate-agent` binaries and runs them on temp dirs and sockets.
//!
//! Every process it starts is killed when its handle drops, and every handle keeps its log
//! file so that a failing test can show what the process said.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub mod cluster;
pub mod postgres;
pub mod workload;

/// The trust domain every harness server uses.
pub const TRUST_DOMAIN: &str = "example.org";

/// The folder that holds the built binaries (`target/debug` or `target/release`), built once.
///
/// The binaries are built with the same profile as the running test, through the same cargo,
/// so `cargo test` alone is enough.
///
/// # Panics
///
/// When cargo fails to build the binaries: no test can run without them.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("MANDATE_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let exe = std::env::current_exe().expect("the test knows its own path");
        // target/<profile>/deps/<test> or target/<profile>/<bin>
        let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(workspace_root()).args([
            "build",
            "-p",
            "mandate-server",
            "-p",
            "mandate-agent",
            "-p",
            "mandate-examples",
            "--bins",
        ]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the mandate binaries failed");
        dir
    })
}

/// The root of the workspace (the folder with the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_path_buf()
}

/// The path of a built binary such as `mandate-server`.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
///
/// When no port can be bound on loopback.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 10 ms until it returns `Some`, or fails after `timeout`.
///
/// # Errors
///
/// When `timeout` passes first; the error names `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code, or -1 when a signal ended it.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A child process that is killed (SIGKILL) when dropped, with its log file.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    ///
    /// When the log file cannot be created or the program cannot start.
    pub fn spawn(mut command: Command, log: &Path) -> Result<Self> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Self {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// A handle that holds no process yet.
    pub(crate) fn placeholder() -> Self {
        Self {
            child: None,
            log: PathBuf::new(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to 10 s for the exit; returns the exit code.
    ///
    /// # Errors
    ///
    /// When the process does not exit in time (it is then killed).
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        signal(child.id(), libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("process did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit code if the process has already exited.
    ///
    /// # Errors
    ///
    /// When the process state cannot be read.
    pub fn try_exit_code(&mut self) -> Result<Option<i32>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?.map(|status| status.code().unwrap_or(-1))),
            None => Ok(None),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

mod server;
pub use server::{Server, ServerOptions};

mod agent;
pub use agent::{Agent, AgentOptions};

/// Runs a binary with arguments and returns what it printed.
///
/// # Errors
///
/// When the program cannot start.
pub fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<CliOutput> {
    let output = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    Ok(CliOutput::from_output(output))
}

/// Parses a command's stdout as JSON, failing with its stderr when it did not succeed.
///
/// # Errors
///
/// When the command failed or its stdout is not JSON.
pub fn json_of(output: &CliOutput) -> Result<serde_json::Value> {
    if !output.success() {
        return Err(anyhow!(
            "command failed ({}): {}",
            output.code,
            output.stderr.trim()
        ));
    }
    serde_json::from_str(&output.stdout)
        .with_context(|| format!("stdout is not JSON: {}", output.stdout))
}

//! The quickstart's child processes: finding (or building) the binaries, running CLI commands,
//! starting daemons with their logs in the temp dir, and killing them all on the way out.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The binaries the quickstart runs, all from the same target/<profile> directory.
#[derive(Debug)]
pub(crate) struct Binaries {
    pub(crate) server: PathBuf,
    pub(crate) agent: PathBuf,
    pub(crate) po_service: PathBuf,
    pub(crate) ai_agent: PathBuf,
}

const NAMES: [&str; 4] = ["mandate-server", "mandate-agent", "po-service", "ai-agent"];

impl Binaries {
    /// Finds the binaries next to this executable, building them with cargo when one is missing
    /// or when the quickstart runs under `cargo run`.
    pub(crate) fn locate_or_build() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("current executable")?;
        let dir = exe
            .parent()
            .context("executable has no directory")?
            .to_path_buf();
        let path = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let missing: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| !path(n).is_file())
            .collect();
        // Under `cargo run` (CARGO is set) a build also refreshes stale binaries; it is a quick
        // no-op when they are current.
        if !missing.is_empty() || std::env::var_os("CARGO").is_some() {
            build(&dir, &missing)?;
        }
        let found = Self {
            server: path("mandate-server"),
            agent: path("mandate-agent"),
            po_service: path("po-service"),
            ai_agent: path("ai-agent"),
        };
        for p in [
            &found.server,
            &found.agent,
            &found.po_service,
            &found.ai_agent,
        ] {
            if !p.is_file() {
                bail!("{} is still missing after the build", p.display());
            }
        }
        Ok(found)
    }
}

/// Runs `cargo build` for the server, the agent and the example binaries in the same profile.
fn build(target_profile_dir: &Path, missing: &[&str]) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace).args([
        "build",
        "-p",
        "mandate-server",
        "-p",
        "mandate-agent",
        "-p",
        "mandate-examples",
        "--bins",
    ]);
    let profile = target_profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    if missing.is_empty() {
        println!("checking that the binaries are current (cargo build, {profile} profile)");
    } else {
        let names = missing.join(", ");
        println!(
            "building {names} (cargo build, {profile} profile; the first build takes a while)"
        );
    }
    let status = command.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// The running children; dropping it kills them (the temp dir is removed by its own guard).
#[derive(Debug, Default)]
pub(crate) struct Children {
    running: Vec<(String, Child)>,
}

impl Children {
    /// Starts `program args...` with stdout and stderr appended to `log`.
    pub(crate) fn spawn_logged(
        &mut self,
        name: &str,
        command: &mut Command,
        log: &Path,
    ) -> anyhow::Result<()> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.running.push((name.to_owned(), child));
        Ok(())
    }

    /// Starts a child with piped stdin/stdout and stderr to `log`; the caller takes the pipes.
    pub(crate) fn spawn_piped(
        &mut self,
        name: &str,
        command: &mut Command,
        log: &Path,
    ) -> anyhow::Result<&mut Child> {
        let err = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.running.push((name.to_owned(), child));
        let (_, child) = self.running.last_mut().context("just pushed")?;
        Ok(child)
    }

    /// Fails when a child has already exited (naming it and its status).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.running {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited unexpectedly ({status})");
            }
        }
        Ok(())
    }

    /// Waits up to `within` for the children named `name`, whose session was finished, to
    /// exit, and forgets them (so `check_alive` no longer counts them); kills a straggler.
    pub(crate) fn finished(&mut self, name: &str, within: Duration) {
        let until = Instant::now() + within;
        for (_, child) in self.running.iter_mut().filter(|(n, _)| n == name) {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.running.retain(|(n, _)| n != name);
    }

    /// Kills every child that is still running and reaps it.
    pub(crate) fn kill_all(&mut self) -> usize {
        let mut killed = 0;
        for (_, child) in self.running.iter_mut().rev() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                killed += 1;
            }
            let _ = child.wait();
        }
        self.running.clear();
        killed
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Runs a CLI command to completion; returns its trimmed stdout, or fails with its stderr.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Retries `probe` every 50 ms until it succeeds or `timeout` passes (checking the children).
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    children: &mut Children,
    mut probe: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if probe() {
            return Ok(started.elapsed());
        }
        children.check_alive()?;
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a log file, for error reports.
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

//! A real PostgreSQL for tests and benchmarks (DESIGN 4: no mock stands in for it): the
//! distribution's `initdb` and `pg_ctl` on a temp dir, listening on a free loopback port and
//! a socket in that dir, trust authentication, a fresh database per caller. Stopped when the
//! handle drops.
//!
//! `initdb` refuses to run as root, so under root (CI) the cluster belongs to the `postgres`
//! user and its programs run through `runuser`. The binaries come from `MANDATE_PG_BIN` when
//! set, else the newest `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir`;
//! PostgreSQL 14 or newer is required.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::free_port;

/// The oldest major version the store supports.
pub const MIN_MAJOR: u32 = 14;

/// A running PostgreSQL cluster on a temp dir.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some((uid, gid))` of `postgres` when running as root.
    owner: Option<(u32, u32)>,
    databases: AtomicU32,
}

impl Postgres {
    /// Starts a cluster, or says why it cannot be had here.
    ///
    /// # Errors
    /// No PostgreSQL 14+ binaries, `initdb` or `pg_ctl start` failed.
    pub fn start() -> Result<Self> {
        let bin = find_bin()?;
        let owner = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("mandate-pg-").tempdir()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut pg = Self {
            dir,
            bin,
            port: 0,
            owner,
            databases: AtomicU32::new(0),
        };
        let data = pg.data_dir();
        pg.run_tool(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // A port that another test grabs between the probe and the bind fails the start:
        // try a few.
        let mut last = None;
        for _ in 0..3 {
            pg.port = free_port();
            match pg.pg_ctl_start() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// Starts a cluster; when there is none to be had, fails under `CI=true` and otherwise
    /// prints why `test` is skipped and returns `None`.
    ///
    /// # Panics
    /// Under `CI=true` when PostgreSQL cannot be started.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(pg) => Some(pg),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: PostgreSQL is required under CI=true: {e:#}")
            }
            Err(e) => {
                eprintln!("skipping {test}: no PostgreSQL here ({e:#})");
                None
            }
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL.
    ///
    /// # Errors
    /// `CREATE DATABASE` failed.
    pub fn create_database(&self) -> Result<String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("mandate_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs `sql` in database `db` with `psql` and returns its unaligned, tuples-only output.
    ///
    /// # Errors
    /// psql failed (its stderr is in the error).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!(
                "psql {sql:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the cluster with `mode` (`fast` or `immediate`, which is a crash).
    ///
    /// # Errors
    /// `pg_ctl stop` failed.
    pub fn stop(&self, mode: &str) -> Result<()> {
        let data = self.data_dir();
        self.run_tool(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", mode, "-w", "stop"],
        )
    }

    /// Starts the cluster again on the same port after [`Postgres::stop`].
    ///
    /// # Errors
    /// `pg_ctl start` failed.
    pub fn restart(&self) -> Result<()> {
        self.pg_ctl_start()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=64",
            self.port,
            self.dir.path().display()
        );
        let started = self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        started.with_context(|| format!("postgres log:\n{}", self.log()))
    }

    /// Runs a PostgreSQL program from the bin dir, as `postgres` when we are root.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(tool);
        let mut command = if self.owner.is_some() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.stop("fast");
        }
    }
}

/// The folder of the PostgreSQL programs (14 or newer).
fn find_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MANDATE_PG_BIN") {
        return check_bin(PathBuf::from(dir));
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| {
            let major: u32 = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return check_bin(bin);
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("no /usr/lib/postgresql/*/bin/initdb and no pg_config")?;
    check_bin(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

fn check_bin(bin: PathBuf) -> Result<PathBuf> {
    let output = Command::new(bin.join("initdb"))
        .arg("--version")
        .output()
        .with_context(|| format!("running {}/initdb", bin.display()))?;
    // "initdb (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let text = String::from_utf8_lossy(&output.stdout);
    let major = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .with_context(|| format!("unexpected initdb --version: {text:?}"))?;
    if major < MIN_MAJOR {
        bail!(
            "PostgreSQL {major} in {} is older than {MIN_MAJOR}",
            bin.display()
        );
    }
    Ok(bin)
}

fn is_root() -> bool {
    id(&["-u"]).is_ok_and(|uid| uid == 0)
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> Result<(u32, u32)> {
    let uid = id(&["-u", "postgres"]).context("no postgres user")?;
    let gid = id(&["-g", "postgres"]).context("no postgres group")?;
    Ok((uid, gid))
}

fn id(args: &[&str]) -> Result<u32> {
    let output = Command::new("id").args(args).output()?;
    if !output.status.success() {
        bail!(
            "id {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

//! quickstart: runs the whole Mandate journey on this machine, narrating each step with timings:
//! server and agent on embedded defaults in a temp dir, a task for the current user, an AI agent
//! calling an mTLS purchase-order service, refusals, task close on an open connection, the audit;
//! then a sub-task for a search agent on a second node, and alice withdrawing consent.
//!
//! `cargo run --release -p mandate-examples --bin quickstart`

mod chain;
mod procs;
mod session;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use procs::{Binaries, Children, free_port, run, tail, wait_until};
use session::Session;

const TRUST_DOMAIN: &str = "example.org";
const AGENT_ID: &str = "spiffe://example.org/mandate/agent/quickstart";
const SERVICE_ID: &str = "spiffe://example.org/po-service";
const AI_AGENT_ID: &str = "spiffe://example.org/ai/procurement";

fn main() -> ExitCode {
    let started = Instant::now();
    let dir = match tempfile::Builder::new()
        .prefix("mandate-quickstart-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("quickstart failed: cannot create a temp dir: {error}");
            return ExitCode::FAILURE;
        }
    };
    remove_on_interrupt(dir.path().to_path_buf());
    let mut children = Children::default();
    let mut journey = Journey {
        dir: dir.path(),
        started,
        children: &mut children,
    };
    let result = journey.run();
    let started = journey.started;
    let killed = children.kill_all();
    match result {
        Ok(()) => {
            say(
                started,
                &format!(
                    "cleaned up: stopped {killed} processes, removed {}",
                    dir.path().display()
                ),
            );
            println!("\nquickstart: success");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("\nquickstart failed: {error:#}");
            for log in [
                "server.log",
                "agent.log",
                "po-service.log",
                "ai-agent.log",
                "agent-b.log",
                "search-agent.log",
            ] {
                let text = tail(&dir.path().join(log), 15);
                if !text.is_empty() {
                    eprintln!("--- last lines of {log} ---\n{text}");
                }
            }
            eprintln!(
                "(stopped {killed} processes, removed {})",
                dir.path().display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Prints one narration line, prefixed with the time since start.
fn say(started: Instant, text: &str) {
    println!("[{:>6.2}s] {text}", started.elapsed().as_secs_f64());
}

struct Journey<'a> {
    dir: &'a Path,
    started: Instant,
    children: &'a mut Children,
}

impl Journey<'_> {
    fn run(&mut self) -> anyhow::Result<()> {
        let uid = current_uid()?;
        println!(
            "Mandate quickstart: an AI agent acting for alice, from task open to task close.\n"
        );
        let bins = Binaries::locate_or_build()?;
        // The narration's clock starts once the binaries are ready (a first build takes minutes).
        self.started = Instant::now();
        let admin = self.dir.join("admin.sock");
        let socket = self.dir.join("agent").join("public").join("api.sock");
        let endpoint = format!("unix://{}", socket.display());
        let server = |args: &[&str]| -> anyhow::Result<String> {
            run(Command::new(&bins.server)
                .args(args)
                .arg("--admin-socket")
                .arg(&admin))
        };

        // The server and the agent on embedded defaults.
        let t = Instant::now();
        let address = format!("127.0.0.1:{}", free_port()?);
        self.children.spawn_logged(
            "mandate-server",
            Command::new(&bins.server)
                .args([
                    "run",
                    "--trust-domain",
                    TRUST_DOMAIN,
                    "--bind-address",
                    &address,
                ])
                .arg("--data-dir")
                .arg(self.dir.join("server"))
                .arg("--admin-socket")
                .arg(&admin),
            &self.dir.join("server.log"),
        )?;
        wait_until(
            "mandate-server to answer",
            Duration::from_secs(30),
            self.children,
            || server(&["healthcheck"]).is_ok(),
        )?;
        self.say(&format!(
            "mandate-server is up on {address} (trust domain {TRUST_DOMAIN}, sled store) in {}",
            ms(t)
        ));

        let t = Instant::now();
        let token = server(&["token", "generate", "--agent-id", AGENT_ID])?;
        let bundle = self.dir.join("bundle.pem");
        std::fs::write(&bundle, server(&["bundle", "show"])? + "\n")?;
        self.children.spawn_logged(
            "mandate-agent",
            Command::new(&bins.agent)
                .args(["run", "--server-address", &address, "--join-token", &token])
                .arg("--trust-bundle")
                .arg(&bundle)
                .arg("--socket-path")
                .arg(&socket)
                .arg("--data-dir")
                .arg(self.dir.join("agent-data")),
            &self.dir.join("agent.log"),
        )?;
        wait_until(
            "mandate-agent's Workload API socket",
            Duration::from_secs(30),
            self.children,
            || {
                run(Command::new(&bins.agent)
                    .args(["healthcheck", "--socket-path"])
                    .arg(&socket))
                .is_ok()
            },
        )?;
        self.say(&format!("mandate-agent attested with a one-time join token as {AGENT_ID}; Workload API at {} ({})", socket.display(), ms(t)));

        // The purchase-order service, a workload with its own SVID.
        let t = Instant::now();
        let po_exe = std::fs::canonicalize(&bins.po_service)?;
        server(&[
            "entry",
            "create",
            "--spiffe-id",
            SERVICE_ID,
            "--parent-id",
            AGENT_ID,
            "--selector",
            &format!("unix:uid:{uid}"),
            "--selector",
            &format!("unix:path:{}", po_exe.display()),
        ])?;
        let po_address = self.start_po_service(&po_exe, &endpoint)?;
        self.say(&format!(
            "po-service (mTLS, HTTP/1.1) listens on {po_address} as {SERVICE_ID} ({})",
            ms(t)
        ));

        // (1) A task for alice, and the agent workload bound to it.
        println!();
        let t = Instant::now();
        let task = server(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "draft purchase order 4711",
            "--action",
            "po.draft",
            "--action",
            "po.read",
            "--value-limit",
            "500.00:EUR",
            "--deadline",
            "1h",
        ])?;
        self.say(&format!("(1) opened task {task}: principal user:alice@example.org, actions po.draft po.read, limit 500.00 EUR, deadline 1h"));
        let entry = server(&[
            "entry",
            "create",
            "--spiffe-id",
            AI_AGENT_ID,
            "--parent-id",
            AGENT_ID,
            "--selector",
            &format!("unix:uid:{uid}"),
            "--task",
            &task,
        ])?;
        self.say(&format!("    registered entry {entry}: unix:uid:{uid} on this node -> {AI_AGENT_ID}, bound to task {task} ({})", ms(t)));

        // (2) The AI agent calls the service once.
        let t = Instant::now();
        let ai_common = |c: &mut Command| {
            c.arg("--server")
                .arg(&po_address)
                .args(["--server-id", SERVICE_ID, "--spiffe-id", AI_AGENT_ID])
                .arg("--endpoint")
                .arg(&endpoint);
        };
        let mut one = Command::new(&bins.ai_agent);
        ai_common(&mut one);
        one.args(["--action", "po.draft", "--amount", "120.00:EUR"]);
        let result = run(&mut one).context("the AI agent's first call was not allowed")?;
        self.say(&format!("(2) ai-agent fetched its SVID over the Workload API and called POST /po/draft 120.00 EUR ({}):", ms(t)));
        println!("      {result}");

        // (3) Refusals, on one connection that stays open for step 4.
        let mut command = Command::new(&bins.ai_agent);
        ai_common(&mut command);
        command.arg("--stdin");
        let child =
            self.children
                .spawn_piped("ai-agent", &mut command, &self.dir.join("ai-agent.log"))?;
        let mut session = Session::new(child)?;
        self.say("(3) ai-agent opens ONE mTLS connection and sends calls on it:");
        self.expect(&mut session, "po.read", true, None)?;
        self.expect(
            &mut session,
            "po.approve",
            false,
            Some("action_not_granted"),
        )?;
        self.expect(
            &mut session,
            "po.draft 900.00:EUR",
            false,
            Some("over_value_limit"),
        )?;
        self.expect(
            &mut session,
            "po.draft 120.00:USD",
            false,
            Some("currency_mismatch"),
        )?;

        // (4) Close the task; the next call on the same connection is refused.
        println!();
        self.say(
            "(4) one more allowed call on the open connection, then the operator closes the task:",
        );
        self.expect(&mut session, "po.draft 120.00:EUR", true, None)?;
        let t0 = Instant::now();
        server(&[
            "task",
            "close",
            &task,
            "--reason",
            "purchase order 4711 drafted",
        ])?;
        let t1 = Instant::now();
        self.say(&format!("    closed task {task} (the command took {:.1} ms); calling again on the same connection...", (t1 - t0).as_secs_f64() * 1000.0));
        let mut attempts = 0;
        let refused = loop {
            attempts += 1;
            let line = session.call("po.read")?;
            if line["allowed"] == false {
                break line;
            }
            if t1.elapsed() > Duration::from_secs(5) {
                bail!("the closed task was still allowed 5 s after close: {line}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let latency = t1.elapsed();
        if refused["body"]["refused"] != "task_closed" {
            bail!("expected a task_closed refusal, got {refused}");
        }
        println!("      {refused}");
        self.say(&format!(
            "    refused with task_closed {:.1} ms after close returned ({:.1} ms after it started; {attempts} call(s))",
            latency.as_secs_f64() * 1000.0,
            t0.elapsed().as_secs_f64() * 1000.0
        ));
        session.finish();

        // (5) The audit trail of the task.
        println!();
        let audit = server(&["audit", "list", "--task", &task])?;
        self.say(&format!(
            "(5) audit trail of task {task} (mandate-server audit list --task {task}):"
        ));
        for line in audit.lines() {
            println!("      {line}");
        }

        // (6)-(10) Sub-delegation to a search agent on a second node (DESIGN 3.8).
        self.sub_delegation(&chain::Stage {
            bins: &bins,
            server: &server,
            server_address: &address,
            bundle: &bundle,
            uid,
            po_address: &po_address,
            socket_a: &socket,
            old_entry: &entry,
        })
    }

    fn say(&self, text: &str) {
        say(self.started, text);
    }

    /// Starts po-service and returns the address it printed.
    fn start_po_service(&mut self, exe: &Path, endpoint: &str) -> anyhow::Result<String> {
        let log = self.dir.join("po-service.log");
        self.children.spawn_logged(
            "po-service",
            Command::new(exe).args([
                "--listen",
                "127.0.0.1:0",
                "--spiffe-id",
                SERVICE_ID,
                "--endpoint",
                endpoint,
            ]),
            &log,
        )?;
        let mut address = String::new();
        wait_until(
            "po-service to listen",
            Duration::from_secs(60),
            self.children,
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let found = text.lines().find_map(|l| {
                    l.strip_prefix("po-service listening on ")
                        .and_then(|r| r.split_whitespace().next())
                });
                found.map(|a| address = a.to_owned()).is_some()
            },
        )?;
        Ok(address)
    }

    /// Sends one call and checks the outcome (and, for a refusal, its code).
    fn expect(
        &self,
        session: &mut Session,
        call: &str,
        allowed: bool,
        code: Option<&str>,
    ) -> anyhow::Result<()> {
        let line = session.call(call)?;
        let ok = line["allowed"] == allowed && code.is_none_or(|c| line["body"]["refused"] == c);
        let verdict = if allowed { "allowed" } else { "refused" };
        self.say(&format!(
            "    {call:<22} -> {verdict} ({} ms on the open connection)",
            line["elapsed_ms"]
        ));
        println!("      {line}");
        if !ok {
            bail!(
                "expected {call} to be {verdict}{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn ms(since: Instant) -> String {
    format!("{:.0} ms", since.elapsed().as_secs_f64() * 1000.0)
}

/// The current user's uid, from /proc (the unix attestor's view of this process).
fn current_uid() -> anyhow::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .context("no Uid line")?;
    let real = line.split_whitespace().nth(1).context("no uid value")?;
    Ok(real.parse()?)
}

/// On Ctrl-C, removes the temp dir and exits (the children get the same SIGINT from the terminal).
fn remove_on_interrupt(dir: PathBuf) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("\nquickstart interrupted: removed {}", dir.display());
            std::process::exit(130);
        }
    });
}

//! The Go SDK's po-service (`sdk/go/cmd/po-service`, built with `go build`) as the verifier of
//! the Rust `ai-agent`, across two nodes: the service is a workload of agent B, the AI agent of
//! agent A. It answers every call with the same status and refusal code as the Rust po-service
//! beside it, and refuses a closed task on the open connection within 1 s (DESIGN 3.10).
//! Under `CI=true` a missing Go toolchain fails the test; elsewhere it skips with a message.

mod delegation_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use delegation_support::{AI_ID, PoService, SERVICE_ID, bind_to_task, open_task, uid};
use mandate_integration::{Agent, Process, Server, bin, wait_for, workspace_root};

/// An AI agent SPIFFE ID under `/ai` whose entry has no task (so no delegation).
const BARE_AI_ID: &str = "spiffe://example.org/ai/bare";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Builds the Go po-service into `dir`; `None` (skip) when Go is missing outside CI.
fn build_go_service(dir: &Path) -> Result<Option<PathBuf>> {
    if Command::new("go").arg("version").output().is_err() {
        if in_ci() {
            bail!("CI=true but the go toolchain is missing");
        }
        println!("skipped: the go toolchain is not installed");
        return Ok(None);
    }
    let binary = dir.join("po-service-go");
    let build = Command::new("go")
        .current_dir(workspace_root().join("sdk/go"))
        .args(["build", "-o"])
        .arg(&binary)
        .arg("./cmd/po-service")
        .output()?;
    if !build.status.success() {
        bail!(
            "go build failed: {}",
            String::from_utf8_lossy(&build.stderr)
        );
    }
    Ok(Some(std::fs::canonicalize(binary)?))
}

/// The Go po-service as a workload of `agent`, with its own entry; killed on drop.
struct GoService {
    address: String,
    process: Process,
}

impl GoService {
    fn start(server: &Server, agent: &Agent, exe: &Path) -> Result<Self> {
        server.create_entry(
            SERVICE_ID,
            &agent.spiffe_id,
            &[
                "--selector",
                &format!("unix:uid:{}", uid()),
                "--selector",
                &format!("unix:path:{}", exe.display()),
            ],
        )?;
        let log = agent.dir.path().join("po-service-go.log");
        let mut command = Command::new(exe);
        command.args(["--listen", "127.0.0.1:0", "--endpoint", &agent.endpoint()]);
        command.args([
            "--spiffe-id",
            SERVICE_ID,
            "--require-delegation-under",
            "/ai",
        ]);
        let process = Process::spawn(command, &log)?;
        let address = wait_for(
            "the Go po-service to listen",
            Duration::from_secs(60),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.lines()
                    .find_map(|l| l.strip_prefix("po-service listening on "))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            },
        )
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        Ok(Self { address, process })
    }
}

/// `ai-agent --stdin` as `spiffe_id` against `address`: one open mTLS connection.
struct Session {
    child: Child,
    input: ChildStdin,
    lines: Receiver<String>,
}

impl Session {
    fn start(agent: &Agent, address: &str, spiffe_id: &str) -> Result<Self> {
        let mut child = Command::new(bin("ai-agent"))
            .args(["--server", address, "--server-id", SERVICE_ID])
            .args(["--spiffe-id", spiffe_id, "--endpoint", &agent.endpoint()])
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start ai-agent")?;
        let input = child.stdin.take().context("stdin")?;
        let output = child.stdout.take().context("stdout")?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            input,
            lines,
        })
    }

    fn call(&mut self, call: &str) -> Result<serde_json::Value> {
        writeln!(self.input, "{call}")?;
        self.input.flush()?;
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .context("ai-agent answered")?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What two services must agree on: HTTP status, refusal code, and the allowed answer's fields.
fn outcome(result: &serde_json::Value) -> serde_json::Value {
    let body = &result["body"];
    serde_json::json!({
        "status": result["status"],
        "refused": body["refused"],
        "ok": body["ok"], "action": body["action"], "principal": body["principal"],
        "task": body["task"], "amount": body["amount"],
        "has_error": body["error"].is_string(),
        "has_reason": body["reason"].is_string(),
    })
}

#[test]
fn go_po_service_refuses_like_the_rust_one_across_nodes() -> Result<()> {
    let bin_dir = tempfile::tempdir()?;
    let Some(go_exe) = build_go_service(bin_dir.path())? else {
        return Ok(());
    };
    let server = Server::start()?;
    let caller_node = Agent::start(&server, "node-a")?;
    let verifier_node = Agent::start(&server, "node-b")?;
    let task = open_task(&server, &[])?;
    bind_to_task(&server, &caller_node, &task)?;
    let bare = format!("unix:uid:{}", uid());
    server.create_entry(BARE_AI_ID, &caller_node.spiffe_id, &["--selector", &bare])?;

    let go = GoService::start(&server, &verifier_node, &go_exe)?;
    let rust = PoService::start(&server, &verifier_node, &[])?;
    let mut to_go = Session::start(&caller_node, &go.address, AI_ID)?;
    let mut to_rust = Session::start(&caller_node, &rust.address, AI_ID)?;

    let calls = [
        ("po.draft 120.00:EUR", None),
        ("po.read", None),
        ("po.draft 500.00:EUR", None),
        ("po.approve", Some("action_not_granted")),
        ("po.submit 10.00:EUR", Some("action_not_granted")),
        ("po.draft 500.01:EUR", Some("over_value_limit")),
        ("po.draft 10.00:USD", Some("currency_mismatch")),
        ("nothing.here", None),
    ];
    let mut connection = None;
    for (call, code) in calls {
        let from_go = to_go.call(call)?;
        let from_rust = to_rust.call(call)?;
        assert_eq!(
            outcome(&from_go),
            outcome(&from_rust),
            "{call}: Go {from_go} vs Rust {from_rust}"
        );
        assert_eq!(
            from_go["body"]["refused"].as_str(),
            code,
            "{call}: {from_go}"
        );
        connection = from_go["body"]["connection"].as_u64().or(connection);
    }
    assert_eq!(
        to_go.call("po.read")?["body"]["principal"],
        "user:alice@example.org"
    );

    // An agent under /ai without a delegation is refused at the handshake, by both.
    let mut bare_go = Session::start(&caller_node, &go.address, BARE_AI_ID)?;
    let mut bare_rust = Session::start(&caller_node, &rust.address, BARE_AI_ID)?;
    let (from_go, from_rust) = (bare_go.call("po.read")?, bare_rust.call("po.read")?);
    assert_eq!(
        outcome(&from_go),
        outcome(&from_rust),
        "{from_go} vs {from_rust}"
    );
    assert_eq!(
        from_go["body"]["refused"], "delegation_required",
        "{from_go}"
    );

    // Closing the task is refused on the open connection within 1 s of `task close` returning.
    server.cli_ok(&["task", "close", &task, "--reason", "done"])?;
    let closed_at = Instant::now();
    let refused = loop {
        let result = to_go.call("po.read")?;
        if result["allowed"] == false {
            break result;
        }
        if closed_at.elapsed() > Duration::from_secs(5) {
            bail!("still allowed 5 s after close: {result}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let latency = closed_at.elapsed();
    println!("the Go service refused the closed task {latency:?} after `task close` returned");
    assert_eq!(refused["body"]["refused"], "task_closed", "{refused}");
    assert_eq!(
        refused["body"]["connection"].as_u64(),
        connection,
        "same connection"
    );
    assert!(
        latency < Duration::from_secs(1),
        "refused {latency:?} after close"
    );
    let from_rust = to_rust.call("po.read")?;
    assert_eq!(
        outcome(&refused),
        outcome(&from_rust),
        "after close: {from_rust}"
    );
    assert!(
        go.process.log().contains("task_closed"),
        "the Go service logs the refusal"
    );
    Ok(())
}

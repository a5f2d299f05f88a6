//! The Go SDK against the real binaries, across two nodes (DESIGN 3.10). The Go po-service
//! (`sdk/go/cmd/po-service`, built with `go build`) is a workload of agent B and the Rust
//! `ai-agent` one of agent A: the Go service answers every call with the same status and
//! refusal code as the Rust po-service beside it, and refuses a closed task on the open
//! connection within 1 s. The Go `delegate` command (the `subtask` client) opens a sub-task for
//! a delegate, which the Go service then verifies, and closes it again.
//! Under `CI=true` a missing Go toolchain fails the tests; elsewhere they skip with a message.

mod delegation_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use delegation_support::{
    AI_ID, AiSession, PoService, SERVICE_ID, bind_to_task, block_on, call_until_refused,
    first_x509, open_task, uid,
};
use mandate_integration::{Agent, Process, Server, wait_for, workspace_root};

/// An AI agent SPIFFE ID under `/ai` whose entry has no task (so no delegation).
const BARE_AI_ID: &str = "spiffe://example.org/ai/bare";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Builds the Go `po-service` and `delegate` commands into `dir` and returns `dir`, canonical;
/// `None` (skip) when Go is missing outside CI.
fn build_go_commands(dir: &Path) -> Result<Option<PathBuf>> {
    if Command::new("go").arg("version").output().is_err() {
        if in_ci() {
            bail!("CI=true but the go toolchain is missing");
        }
        println!("skipped: the go toolchain is not installed");
        return Ok(None);
    }
    let build = Command::new("go")
        .current_dir(workspace_root().join("sdk/go"))
        .arg("build")
        .arg("-o")
        .arg(format!("{}/", dir.display()))
        .args(["./cmd/po-service", "./cmd/delegate"])
        .output()?;
    if !build.status.success() {
        bail!(
            "go build failed: {}",
            String::from_utf8_lossy(&build.stderr)
        );
    }
    Ok(Some(std::fs::canonicalize(dir)?))
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

/// What two services must agree on: HTTP status, refusal code, and the allowed answer's fields.
fn outcome(result: &serde_json::Value) -> serde_json::Value {
    let body = &result["body"];
    serde_json::json!({
        "status": result["status"],
        "refused": body["refused"],
        "ok": body["ok"], "action": body["action"], "principal": body["principal"],
        "task": body["task"], "amount": body["amount"],
        "depth": body["depth"], "chain": body["chain"],
        "has_error": body["error"].is_string(),
        "has_reason": body["reason"].is_string(),
    })
}

#[test]
fn go_po_service_refuses_like_the_rust_one_across_nodes() -> Result<()> {
    let bin_dir = tempfile::tempdir()?;
    let Some(go_bin) = build_go_commands(bin_dir.path())? else {
        return Ok(());
    };
    let server = Server::start()?;
    let caller_node = Agent::start(&server, "node-a")?;
    let verifier_node = Agent::start(&server, "node-b")?;
    let task = open_task(&server, &[])?;
    bind_to_task(&server, &caller_node, &task)?;
    let bare = format!("unix:uid:{}", uid());
    server.create_entry(BARE_AI_ID, &caller_node.spiffe_id, &["--selector", &bare])?;

    let go = GoService::start(&server, &verifier_node, &go_bin.join("po-service"))?;
    let rust = PoService::start(&server, &verifier_node, &[])?;
    let mut to_go = AiSession::start_at(&caller_node, &go.address, AI_ID)?;
    let mut to_rust = AiSession::start_at(&caller_node, &rust.address, AI_ID)?;

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
    let mut bare_go = AiSession::start_at(&caller_node, &go.address, BARE_AI_ID)?;
    let mut bare_rust = AiSession::start_at(&caller_node, &rust.address, BARE_AI_ID)?;
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
    let (refused, at) =
        call_until_refused(&mut to_go, "po.read", closed_at, Duration::from_secs(5))?;
    let latency = at - closed_at;
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

/// The search agent: a delegate entry on node A that the planner ([`AI_ID`]) delegates to.
const SEARCH_ID: &str = "spiffe://example.org/ai/search";

/// Runs the Go `delegate` command on `agent`; returns (exit code, stdout, stderr).
fn go_delegate(go_bin: &Path, agent: &Agent, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(go_bin.join("delegate"))
        .args(args)
        .args(["--endpoint", &agent.endpoint(), "--delegator-id", AI_ID])
        .output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    ))
}

/// Waits until `agent` serves `spiffe_id` to this process's uid.
fn wait_served(agent: &Agent, spiffe_id: &str) -> Result<()> {
    wait_for("the SVID to be served", Duration::from_secs(15), || {
        let message = block_on(first_x509(agent, Duration::from_secs(2))).ok()??;
        message
            .svids
            .iter()
            .any(|s| s.spiffe_id == spiffe_id)
            .then_some(())
    })
}

#[test]
fn go_subtask_client_delegates_and_the_go_service_verifies_the_sub_task() -> Result<()> {
    let bin_dir = tempfile::tempdir()?;
    let Some(go_bin) = build_go_commands(bin_dir.path())? else {
        return Ok(());
    };
    let server = Server::start()?;
    let caller_node = Agent::start(&server, "node-a")?;
    let verifier_node = Agent::start(&server, "node-b")?;
    let root = open_task(&server, &["--max-depth", "1"])?;
    bind_to_task(&server, &caller_node, &root)?;
    let selector = format!("unix:uid:{}", uid());
    let from = ["--selector", &selector, "--delegate-from", AI_ID];
    server.create_entry(SEARCH_ID, &caller_node.spiffe_id, &from)?;
    let go = GoService::start(&server, &verifier_node, &go_bin.join("po-service"))?;
    wait_served(&caller_node, AI_ID)?;

    // A wider grant than the planner's is refused: one line, nothing on stdout.
    let wider = ["open", "--target-id", SEARCH_ID, "--action", "po.approve"];
    let (code, stdout, stderr) = go_delegate(&go_bin, &caller_node, &wider)?;
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let open = [
        "open",
        "--target-id",
        SEARCH_ID,
        "--action",
        "po.read",
        "--value-limit",
        "50.00:EUR",
        "--deadline",
        "30m",
        "--purpose",
        "find suppliers",
    ];
    let (code, stdout, stderr) = go_delegate(&go_bin, &caller_node, &open)?;
    assert_eq!(code, 0, "{stderr}");
    let sub: serde_json::Value = serde_json::from_str(&stdout)?;
    let sub_task = sub["task_id"].as_str().context("task_id")?.to_owned();
    assert_eq!(
        (sub["parent_id"].as_str(), sub["depth"].as_u64()),
        (Some(root.as_str()), Some(1))
    );

    // The delegate calls the Go service under the sub-task: narrower action and limit.
    wait_served(&caller_node, SEARCH_ID)?;
    let mut session = AiSession::start_at(&caller_node, &go.address, SEARCH_ID)?;
    let rust = PoService::start(&server, &verifier_node, &[])?;
    let mut to_rust = AiSession::start_at(&caller_node, &rust.address, SEARCH_ID)?;
    let allowed = session.call("po.read 50.00:EUR")?;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["body"]["task"], sub_task.as_str());
    assert_eq!(allowed["body"]["principal"], "user:alice@example.org");
    assert_eq!(allowed["body"]["depth"], 1, "{allowed}");
    let link = serde_json::json!([{"task": root, "actor": AI_ID}]);
    assert_eq!(allowed["body"]["chain"], link, "{allowed}");
    assert_eq!(
        outcome(&allowed),
        outcome(&to_rust.call("po.read 50.00:EUR")?)
    );
    for (call, code) in [
        ("po.draft", "action_not_granted"),
        ("po.read 50.01:EUR", "over_value_limit"),
    ] {
        let from_go = session.call(call)?;
        assert_eq!(from_go["body"]["refused"], code, "{from_go}");
        assert_eq!(outcome(&from_go), outcome(&to_rust.call(call)?), "{call}");
    }
    assert!(
        go.process.log().contains("depth=1/1 chain=1"),
        "{}",
        go.process.log()
    );

    // The planner closes the sub-task with the Go client: refused on the open connection.
    let close = ["close", "--task-id", &sub_task, "--reason", "found"];
    let (code, stdout, stderr) = go_delegate(&go_bin, &caller_node, &close)?;
    assert_eq!(code, 0, "{stderr}");
    let closed_at = Instant::now();
    assert!(stdout.contains(&sub_task), "{stdout}");
    let (refused, at) =
        call_until_refused(&mut session, "po.read", closed_at, Duration::from_secs(5))?;
    let latency = at - closed_at;
    assert_eq!(refused["body"]["refused"], "task_closed", "{refused}");
    assert_eq!(refused["body"]["connection"], allowed["body"]["connection"]);
    assert!(
        latency < Duration::from_secs(1),
        "refused {latency:?} after close"
    );
    Ok(())
}

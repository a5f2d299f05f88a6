//! The Python SDK's po-service (`python -m mandate_verify.examples.po_service`, sdk/python)
//! against the real binaries and the unchanged Rust `ai-agent`, on two nodes: the AI agent is a
//! workload of agent A, the Python service (and the Rust po-service it is compared with) of
//! agent B. Allowed calls pass, refused ones carry the Rust service's codes, and a task close
//! is refused within 1 s on the connection that is already open.
//!
//! The Python comes from `MANDATE_PYTHON` or the workspace's `.venv` with sdk/python installed
//! (`.ci/run` does it); without it the test skips locally and fails under `CI=true`.

mod delegation_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use delegation_support::{AI_ID, AiSession, PoService, SERVICE_ID, open_task, uid};
use mandate_integration::cluster::Cluster;
use mandate_integration::{Process, wait_for, workspace_root};

/// The tests of this file take turns: each runs a server, two agents and services, and the
/// 1 s bounds should not depend on how many clusters share two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The venv's Python with `mandate_verify` importable, or `None` (skip) outside CI.
fn python() -> Result<Option<PathBuf>> {
    let python = std::env::var("MANDATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"));
    let importable = python.exists()
        && Command::new(&python)
            .args(["-c", "import mandate_verify.examples.po_service"])
            .status()
            .is_ok_and(|s| s.success());
    if importable {
        return Ok(Some(python));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!(
            "CI=true but {} cannot import mandate_verify (pip install -e sdk/python)",
            python.display()
        );
    }
    println!(
        "skipped: no {} with mandate_verify (python3 -m venv .venv && .venv/bin/pip install -e 'sdk/python[test]')",
        python.display()
    );
    Ok(None)
}

/// The Python po-service, a workload of `agent` with its own uid-only entry; killed on drop.
struct PythonService {
    address: String,
    process: Process,
}

impl PythonService {
    fn start(python: &Path, cluster: &Cluster, staleness: &str) -> Result<Self> {
        cluster.bind_verifier(SERVICE_ID, &[])?;
        let agent = &cluster.verifier;
        let log = agent.dir.path().join("python-po-service.log");
        let mut command = Command::new(python);
        command
            .args(["-m", "mandate_verify.examples.po_service"])
            .args(["--listen", "127.0.0.1:0", "--spiffe-id", SERVICE_ID])
            .args(["--endpoint", &agent.endpoint()])
            .args([
                "--require-delegation-under",
                "/ai",
                "--staleness",
                staleness,
            ])
            .env("PYTHONUNBUFFERED", "1");
        let process = Process::spawn(command, &log)?;
        let address = wait_for(
            "python po-service to listen",
            Duration::from_secs(90),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.lines()
                    .find_map(|l| l.strip_prefix("po-service listening on "))
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_owned)
            },
        )
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        Ok(Self { address, process })
    }
}

#[test]
fn python_po_service_refuses_like_the_rust_one_and_sees_a_close_within_a_second() -> Result<()> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(python) = python()? else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    let (server, node_a, node_b) = (&cluster.server, &cluster.caller, &cluster.verifier);
    let task = open_task(server, &[])?;
    cluster.bind_caller(AI_ID, &task)?;
    // An agent path without a delegation: both services refuse it at the handshake.
    let bare = "spiffe://example.org/ai/bare";
    let selector = format!("unix:uid:{}", uid());
    server.create_entry(bare, &node_a.spiffe_id, &["--selector", &selector])?;

    let python_service = PythonService::start(&python, &cluster, "15s")?;
    let rust_service = PoService::start(server, node_b, &[])?;
    let mut on_python = AiSession::start_at(node_a, &python_service.address, AI_ID)?;
    let mut on_rust = AiSession::start_at(node_a, &rust_service.address, AI_ID)?;

    let allowed = on_python.call("po.draft 120.00:EUR")?;
    assert_eq!(AiSession::code(&allowed), None, "allowed: {allowed}");
    assert_eq!(allowed["body"]["principal"], "user:alice@example.org");
    assert_eq!(allowed["body"]["task"], task.as_str());
    assert_eq!(allowed["body"]["amount"], "120.00:EUR");
    let cases = [
        ("po.read", None),
        ("po.approve", Some("action_not_granted")),
        ("po.submit 10.00:EUR", Some("action_not_granted")),
        ("po.draft 500.01:EUR", Some("over_value_limit")),
        ("po.draft 10.00:USD", Some("currency_mismatch")),
        ("po.draft 500.00:EUR", None),
    ];
    for (call, expected) in cases {
        let from_python = on_python.call(call)?;
        let from_rust = on_rust.call(call)?;
        assert_eq!(
            AiSession::code(&from_python).as_deref(),
            expected,
            "python, {call}: {from_python}"
        );
        assert_eq!(
            AiSession::code(&from_rust),
            AiSession::code(&from_python),
            "rust vs python, {call}: {from_rust}"
        );
        assert_eq!(from_rust["status"], from_python["status"], "{call}");
        // The same JSON answer, reason text included; only the connection numbers differ.
        let (mut rust_body, mut python_body) =
            (from_rust["body"].clone(), from_python["body"].clone());
        rust_body["connection"] = serde_json::Value::Null;
        python_body["connection"] = serde_json::Value::Null;
        assert_eq!(rust_body, python_body, "{call}");
    }
    for address in [&python_service.address, &rust_service.address] {
        let refused = AiSession::start_at(node_a, address, bare)?.call("po.read")?;
        assert_eq!(
            AiSession::code(&refused).as_deref(),
            Some("delegation_required"),
            "{refused}"
        );
    }

    // The Python agent example: its SVID from node A with py-spiffe, calls over mTLS.
    let output = Command::new(&python)
        .args(["-m", "mandate_verify.examples.agent", "--spiffe-id", AI_ID])
        .args([
            "--endpoint",
            &node_a.endpoint(),
            "--server",
            &python_service.address,
        ])
        .args(["--action", "po.read", "--action", "po.approve"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("agent example printed {stdout}"))?;
    let codes: Vec<Option<String>> = results.iter().map(AiSession::code).collect();
    assert_eq!(
        codes,
        [None, Some("action_not_granted".to_owned())],
        "python agent: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "a refused call exits 2");

    let connection = allowed["body"]["connection"]
        .as_u64()
        .context("connection")?;
    cluster.close_task(&task)?;
    let closed_at = Instant::now();
    let mut first_refusal = None;
    let mut closed_code = None;
    while closed_at.elapsed() < Duration::from_secs(5) {
        let result = on_python.call("po.read")?;
        if let Some(code) = AiSession::code(&result) {
            assert_eq!(
                result["body"]["connection"].as_u64(),
                Some(connection),
                "same connection: {result}"
            );
            first_refusal.get_or_insert((code.clone(), closed_at.elapsed()));
            if code == "task_closed" {
                closed_code = Some(closed_at.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (first, latency) = first_refusal.context("the python service never refused after close")?;
    // The CRL (certificate_revoked) may reach the service just before the task-status snapshot.
    assert!(
        first == "task_closed" || first == "certificate_revoked",
        "first refusal after close: {first}"
    );
    assert!(
        latency < Duration::from_secs(1),
        "refused {latency:?} after close (bound 1 s)"
    );
    let closed = closed_code.context("never refused with task_closed")?;
    assert!(
        closed < Duration::from_secs(1),
        "task_closed {closed:?} after close (bound 1 s)"
    );
    let rust_code = AiSession::code(&on_rust.call("po.read")?);
    assert_eq!(
        rust_code.as_deref(),
        Some("task_closed"),
        "the rust service agrees"
    );
    assert!(
        python_service.process.log().contains("task_closed"),
        "the service logs it"
    );
    Ok(())
}

#[test]
fn python_agent_opens_a_subtask_that_the_python_service_verifies_and_closes_with_its_parent()
-> Result<()> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(python) = python()? else {
        return Ok(());
    };
    let search = "spiffe://example.org/ai/search";
    let cluster = Cluster::start()?;
    let (server, node_a) = (&cluster.server, &cluster.caller);
    let task = open_task(server, &["--max-depth", "1"])?;
    cluster.bind_caller(AI_ID, &task)?;
    let selector = format!("unix:uid:{}", uid());
    server.create_entry(
        search,
        &node_a.spiffe_id,
        &["--selector", &selector, "--delegate-from", AI_ID],
    )?;
    let service = PythonService::start(&python, &cluster, "15s")?;

    // The Python agent example (AI_ID on node A) hands po.read, up to 50.00 EUR, to `search`.
    let output = Command::new(&python)
        .args(["-m", "mandate_verify.examples.agent", "--spiffe-id", AI_ID])
        .args(["--endpoint", &node_a.endpoint(), "--delegate-to", search])
        .args([
            "--delegate-action",
            "po.read",
            "--delegate-value-limit",
            "50.00:EUR",
        ])
        .args(["--delegate-purpose", "find suppliers"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python agent: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let opened: serde_json::Value = serde_json::from_str(stdout.trim())?;
    let subtask = opened["subtask"]["task_id"]
        .as_str()
        .context("a sub-task ID")?
        .to_owned();
    assert_eq!(opened["subtask"]["parent_id"], task.as_str(), "{opened}");
    assert_eq!(opened["subtask"]["depth"], 1, "{opened}");

    // The delegate (the unchanged Rust ai-agent as `search`) is verified by the Python service.
    let mut delegate = AiSession::start_at(node_a, &service.address, search)?;
    let allowed = delegate.call("po.read 20.00:EUR")?;
    assert_eq!(AiSession::code(&allowed), None, "{allowed}");
    assert_eq!(allowed["body"]["task"], subtask.as_str());
    assert_eq!(allowed["body"]["principal"], "user:alice@example.org");
    let refused = delegate.call("po.draft")?;
    assert_eq!(
        AiSession::code(&refused).as_deref(),
        Some("action_not_granted")
    );
    let refused = delegate.call("po.read 60.00:EUR")?;
    assert_eq!(
        AiSession::code(&refused).as_deref(),
        Some("over_value_limit")
    );

    // Closing the parent closes the sub-task: refused on the open connection within 1 s.
    cluster.close_task(&task)?;
    let closed_at = Instant::now();
    loop {
        let result = delegate.call("po.read")?;
        if AiSession::code(&result).as_deref() == Some("task_closed") {
            break;
        }
        assert!(
            closed_at.elapsed() < Duration::from_secs(1),
            "sub-task still not task_closed {:?} after its parent closed: {result}",
            closed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[test]
fn python_po_service_fails_closed_when_its_agent_is_killed() -> Result<()> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(python) = python()? else {
        return Ok(());
    };
    let mut cluster = Cluster::start()?;
    let task = open_task(&cluster.server, &[])?;
    cluster.bind_caller(AI_ID, &task)?;
    let service = PythonService::start(&python, &cluster, "2s")?;
    let mut session = AiSession::start_at(&cluster.caller, &service.address, AI_ID)?;
    assert_eq!(AiSession::code(&session.call("po.read")?), None);

    cluster.verifier.kill9();
    let killed_at = Instant::now();
    let refused = loop {
        let result = session.call("po.read")?;
        if AiSession::code(&result).is_some() {
            break result;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "still allowed {:?} after the verifier's agent died",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        AiSession::code(&refused).as_deref(),
        Some("status_stale"),
        "{refused}"
    );
    // Not long after the bound (plus the age of the last snapshot, at most a heartbeat).
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "refused {:?} after the kill",
        killed_at.elapsed()
    );
    Ok(())
}

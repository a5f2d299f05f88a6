//! The delegation journey, revocation side, against the real binaries: po-service (with
//! mandate-verify) refuses a closed or expired task on an already-open connection, fails closed
//! when its agent dies, and a closed task ID never opens again.

mod delegation_support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use delegation_support::{
    AiSession, PoService, bind_to_task, block_on, call_until_refused, open_task, start,
};
use mandate_proto::delegation::WatchRequest;

#[test]
fn closing_a_task_refuses_the_next_call_on_an_open_connection_within_a_second() -> Result<()> {
    let (server, agent) = start()?;
    let task = open_task(&server, &[])?;
    bind_to_task(&server, &agent, &task)?;
    let service = PoService::start(&server, &agent, &[])?;
    let mut session = AiSession::start(&agent, &service)?;

    let allowed = session.call("po.draft 120.00:EUR")?;
    assert_eq!(
        AiSession::code(&allowed),
        None,
        "allowed before close: {allowed}"
    );
    assert_eq!(
        AiSession::code(&session.call("po.approve")?).as_deref(),
        Some("action_not_granted")
    );
    assert_eq!(
        AiSession::code(&session.call("po.draft 500.01:EUR")?).as_deref(),
        Some("over_value_limit")
    );
    let connection = AiSession::connection(&allowed).context("connection number")?;

    server.cli_ok(&["task", "close", &task, "--reason", "done"])?;
    let closed_at = Instant::now();
    let (refused, at) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(5),
    )?;
    let latency = at - closed_at;
    assert_eq!(
        AiSession::code(&refused).as_deref(),
        Some("task_closed"),
        "{refused}"
    );
    assert_eq!(
        AiSession::connection(&refused),
        Some(connection),
        "refused on the same connection"
    );
    assert!(
        latency < Duration::from_secs(1),
        "refused {latency:?} after close (bound 1 s)"
    );
    assert!(
        service.log().contains("task_closed"),
        "po-service logs the refusal"
    );
    Ok(())
}

#[test]
fn deadline_expiry_behaves_like_close() -> Result<()> {
    let (server, agent) = start()?;
    let task = open_task(&server, &["--deadline", "6s"])?;
    bind_to_task(&server, &agent, &task)?;
    // This test process reads the agent's task-status feed itself, which takes an identity.
    let me = std::fs::canonicalize(std::env::current_exe()?)?;
    let selectors = [
        format!("unix:uid:{}", delegation_support::uid()),
        format!("unix:path:{}", me.display()),
    ];
    server.create_entry(
        "spiffe://example.org/test-reader",
        &agent.spiffe_id,
        &["--selector", &selectors[0], "--selector", &selectors[1]],
    )?;
    let service = PoService::start(&server, &agent, &[])?;
    let mut session = AiSession::start(&agent, &service)?;
    let allowed = session.call("po.read")?;
    assert_eq!(
        AiSession::code(&allowed),
        None,
        "allowed before the deadline: {allowed}"
    );

    let (refused, _) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(15),
    )?;
    let code = AiSession::code(&refused).unwrap_or_default();
    assert!(
        code == "task_closed" || code == "deadline_passed",
        "{refused}"
    );

    // The server records the expiry. The agent's closed set lists closed or expired tasks
    // only until their deadline (DESIGN 3.4): an expired task is past it, so it is not listed
    // (no SVID of it is valid, and verifiers check the deadline themselves).
    mandate_integration::wait_for("task state expired", Duration::from_secs(5), || {
        let state = server.cli_json(&["task", "show", &task]).ok()?;
        (state["state"] == "expired").then_some(())
    })?;
    block_on(async {
        let mut client =
            mandate_integration::workload::task_status_client(&agent.socket_path).await?;
        let request = mandate_integration::workload::with_header(WatchRequest {});
        let mut feed = client.watch(request).await?.into_inner();
        let snapshot = feed.message().await?.context("a snapshot")?;
        assert!(
            !snapshot.closed_task_ids.contains(&task),
            "a task past its deadline is not in the closed set: {snapshot:?}"
        );
        Ok::<_, anyhow::Error>(())
    })?;
    let audit = server.cli_ok(&["audit", "list", "--task", &task])?;
    assert!(audit.contains("task.expire"), "expiry is audited:\n{audit}");
    Ok(())
}

#[test]
fn the_verifier_fails_closed_when_its_agent_is_killed() -> Result<()> {
    let (server, mut agent) = start()?;
    let task = open_task(&server, &[])?;
    bind_to_task(&server, &agent, &task)?;
    let service = PoService::start(&server, &agent, &["--staleness", "2s"])?;
    let mut session = AiSession::start(&agent, &service)?;
    assert_eq!(AiSession::code(&session.call("po.read")?), None);

    agent.kill9();
    let killed_at = Instant::now();
    let (refused, at) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(15),
    )?;
    assert_eq!(
        AiSession::code(&refused).as_deref(),
        Some("status_stale"),
        "{refused}"
    );
    // Not before the bound (minus the heartbeat age of the last snapshot, at most 5 s).
    assert!(
        at - killed_at < Duration::from_secs(10),
        "refused {:?} after the kill",
        at - killed_at
    );
    Ok(())
}

#[test]
fn a_closed_task_id_never_opens_again() -> Result<()> {
    let server = mandate_integration::Server::start()?;
    let task = open_task(&server, &["--id", "po-4711-once"])?;
    assert_eq!(task, "po-4711-once");
    let again = server.cli(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "x",
        "--action",
        "po.read",
        "--deadline",
        "1h",
        "--id",
        "po-4711-once",
    ])?;
    assert!(!again.success(), "an open task ID is not reused");
    server.cli_ok(&["task", "close", &task])?;
    let reopened = server.cli(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "x",
        "--action",
        "po.read",
        "--deadline",
        "1h",
        "--id",
        "po-4711-once",
    ])?;
    assert!(!reopened.success(), "a closed task ID is never reused");
    assert!(
        reopened.stdout.trim().is_empty(),
        "a refused command prints nothing on stdout"
    );
    assert!(!reopened.stderr.trim().is_empty(), "and says why on stderr");
    assert_eq!(
        server.cli_json(&["task", "show", &task])?["state"],
        "closed"
    );
    Ok(())
}

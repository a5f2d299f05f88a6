//! The agent's own identity against the real server: refused join tokens, eviction, renewal
//! at half-life, an expired stored SVID, and config errors (exit 64 before anything opens).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod agent_support;

use std::process::Command;
use std::time::Duration;

use agent_support::*;
use anyhow::Result;
use mandate_integration::{Agent, CliOutput, Process, Server, ServerOptions, bin, run, wait_for};

fn run_agent(server: &Server, dir: &std::path::Path, token: &str) -> Result<CliOutput> {
    let data = dir.join("data").to_string_lossy().into_owned();
    let socket = dir.join("api.sock").to_string_lossy().into_owned();
    let bundle = server.bundle_pem.to_string_lossy().into_owned();
    run(
        &bin("mandate-agent"),
        &[
            "run",
            "--server-address",
            &server.address,
            "--trust-bundle",
            &bundle,
            "--join-token",
            token,
            "--socket-path",
            &socket,
            "--data-dir",
            &data,
        ],
        &[],
    )
}

fn one_line(out: &CliOutput) -> String {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stderr: {:?}",
        out.stderr
    );
    lines[0].to_owned()
}

#[test]
fn unknown_used_and_expired_tokens_are_refused_in_one_line() -> Result<()> {
    let server = Server::start()?;
    let tmp = tempfile::tempdir()?;

    let out = run_agent(
        &server,
        &tmp.path().join("unknown"),
        "00112233445566778899aabbccddeeff",
    )?;
    assert_ne!(out.code, 0);
    one_line(&out);

    let token = server.token(None)?;
    let first_dir = tmp.path().join("first");
    let data = first_dir.join("data");
    let socket = first_dir.join("api.sock");
    std::fs::create_dir_all(&first_dir)?;
    let mut command = Command::new(bin("mandate-agent"));
    command
        .args(["run", "--server-address", &server.address, "--trust-bundle"])
        .arg(&server.bundle_pem)
        .args(["--join-token", &token, "--socket-path"])
        .arg(&socket)
        .arg("--data-dir")
        .arg(&data);
    let _first = Process::spawn(command, &first_dir.join("agent.log"))?;
    wait_for("first agent socket", Duration::from_secs(30), || {
        socket.exists().then_some(())
    })?;
    let out = run_agent(&server, &tmp.path().join("reuse"), &token)?;
    assert_ne!(out.code, 0, "a used token must be refused");
    one_line(&out);

    let short = server.cli_ok(&["token", "generate", "--ttl", "1s"])?;
    std::thread::sleep(Duration::from_millis(2_500));
    let out = run_agent(&server, &tmp.path().join("expired"), &short)?;
    assert_ne!(out.code, 0, "an expired token must be refused");
    one_line(&out);
    Ok(())
}

#[test]
fn config_errors_exit_64_before_anything_opens() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, "no_such_key = 1\n")?;
    let data = tmp.path().join("data");
    let out = run(
        &bin("mandate-agent"),
        &[
            "run",
            "--config",
            &config.to_string_lossy(),
            "--data-dir",
            &data.to_string_lossy(),
        ],
        &[],
    )?;
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(one_line(&out).contains("no_such_key"));
    assert!(!data.exists(), "nothing is created on a config error");
    let out = run(
        &bin("mandate-agent"),
        &[
            "run",
            "--server-address",
            "http://x:1",
            "--data-dir",
            &data.to_string_lossy(),
        ],
        &[],
    )?;
    assert_eq!(out.code, 64, "{}", out.stderr);
    Ok(())
}

#[test]
fn an_evicted_agent_says_so_and_exits() -> Result<()> {
    let server = Server::start()?;
    let mut agent = Agent::start(&server, "evictee")?;
    server.cli_ok(&["agent", "evict", &agent.spiffe_id])?;
    let code = wait_for("the evicted agent to exit", Duration::from_secs(30), || {
        agent.try_exit_code().ok().flatten()
    })?;
    assert_ne!(code, 0);
    let log = agent.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("evicted"),
        "last line names the eviction: {last}"
    );
    Ok(())
}

#[test]
fn the_agent_renews_its_svid_and_refuses_an_expired_one_after_restart() -> Result<()> {
    let server = Server::start_with(ServerOptions {
        config: "agent_svid_ttl = \"6s\"\n".into(),
        ..ServerOptions::default()
    })?;
    let mut agent = Agent::start(&server, "renewer")?;
    wait_for("a renewal", Duration::from_secs(20), || {
        agent.log().contains("renewed the agent SVID").then_some(())
    })?;
    entry_for_me(&server, &agent, "workload/renewed", &[])?;
    // Still talking to the server on the renewed SVID: the new entry arrives.
    tokio::runtime::Runtime::new()?.block_on(wait_x509(
        &agent.socket_path,
        Duration::from_secs(20),
        |m| !m.svids.is_empty(),
    ))?;
    agent.kill9();
    std::thread::sleep(Duration::from_secs(8));
    let out = run(
        &bin("mandate-agent"),
        &[
            "run",
            "--server-address",
            &server.address,
            "--socket-path",
            &agent.socket_path.to_string_lossy(),
            "--data-dir",
            &agent.data_dir.to_string_lossy(),
        ],
        &[],
    )?;
    assert_ne!(out.code, 0);
    assert!(one_line(&out).contains("expired"), "{}", out.stderr);
    Ok(())
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() -> Result<()> {
    let server = Server::start()?;
    let mut agent = Agent::start(&server, "sigterm")?;
    assert!(agent.socket_path.exists());
    let code = agent.stop()?;
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(
        !agent.socket_path.exists(),
        "the socket is removed on shutdown"
    );
    Ok(())
}

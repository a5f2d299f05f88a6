//! Local attacks on the agent process itself (issue 11): its socket path and directory
//! (finding 9, DESIGN 3.7), memory through the HTTP/2 `:authority` shim (finding 4), a
//! healthcheck that passed while the agent was cut off from the server (finding 12), and
//! colour codes in a log written to a file (finding 13).

mod agent_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agent_support::*;
use anyhow::{Context, Result, bail};
use mandate_integration::{Agent, Server, bin};
use tokio::io::AsyncWriteExt;

/// Runs a second `mandate-agent run` (own data dir, fresh token) on `socket`, to its exit.
fn run_agent_on(server: &Server, socket: &Path, data: &Path) -> Result<Output> {
    let token = server.token(None)?;
    let mut child = Command::new(bin("mandate-agent"))
        .args(["run", "--server-address", &server.address, "--trust-bundle"])
        .arg(&server.bundle_pem)
        .arg("--socket-path")
        .arg(socket)
        .arg("--data-dir")
        .arg(data)
        .args(["--join-token", &token])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the second agent kept running on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}

/// A refusal: non-zero, nothing on stdout, a first stderr line that names `what`.
fn assert_refused(output: &Output, what: &str) {
    assert!(!output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("mandate-agent: ") && last.contains(what),
        "expected a line about {what:?}: {stderr}"
    );
}

#[test]
fn the_socket_is_never_taken_over_nor_planted() -> Result<()> {
    let (server, mut agent) = server_and_agent("socket-takeover")?;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;

    // A live agent's socket: the second agent refuses, the first keeps its socket.
    let second = run_agent_on(&server, &agent.socket_path, &dir.path().join("d1"))?;
    assert_refused(&second, "another process is serving");
    assert!(agent.cli(&["healthcheck"])?.success(), "{}", agent.log());

    // A regular file at the socket path is left alone.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, b"not a socket")?;
    let output = run_agent_on(&server, &file, &dir.path().join("d2"))?;
    assert_refused(&output, "is not a socket");
    assert_eq!(std::fs::read(&file)?, b"not a socket");

    // A directory someone else could have planted: another owner, or world-writable.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign)?;
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).context("chown needs root")?;
    let output = run_agent_on(&server, &foreign.join("api.sock"), &dir.path().join("d3"))?;
    assert_refused(&output, "owned by uid 65534");
    let open = dir.path().join("open");
    std::fs::create_dir(&open)?;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    let output = run_agent_on(&server, &open.join("api.sock"), &dir.path().join("d4"))?;
    assert_refused(&output, "group/world-writable");
    assert!(
        std::fs::read_dir(&open)?.next().is_none(),
        "no socket made there"
    );

    // A stale socket (its agent killed) is removed, and the agent serves again.
    agent.kill9();
    assert!(agent.socket_path.exists());
    agent.restart()?;
    assert!(agent.cli(&["healthcheck"])?.success());
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Finding 4: 24 connections each declaring a 16 MiB HEADERS frame and sending 4 MiB of it
/// took the agent from 11 to 372 MiB. Now `h2` sees the header at once and refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn huge_declared_frames_do_not_grow_the_agent() -> Result<()> {
    let (server, agent) = server_and_agent("frames")?;
    entry_for_me(&server, &agent, "workload/frames", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let pid = agent.pid().context("agent pid")?;
    let before = rss_kib(pid)?;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let socket = agent.socket_path.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::UnixStream::connect(socket).await?;
            let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
            hello.extend_from_slice(&[0xff, 0xff, 0xff, 1, 0x4, 0, 0, 0, 1]); // 16 MiB HEADERS
            stream.write_all(&hello).await?;
            let chunk = vec![0x25u8; 64 << 10];
            let mut sent = 0usize;
            while sent < 4 << 20 {
                match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    // Refused (the agent closed the connection) or not read any further.
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            anyhow::Ok((stream, sent))
        }));
    }
    let mut held = Vec::new();
    let mut accepted = 0;
    for task in tasks {
        let (stream, sent) = task.await??;
        accepted += sent;
        held.push(stream);
    }
    let after = rss_kib(pid)?;
    let grown_mib = after.saturating_sub(before) / 1024;
    println!(
        "rss {before} KiB -> {after} KiB; the agent took {} KiB of frame payload in all",
        accepted / 1024
    );
    assert!(grown_mib < 24, "the agent grew by {grown_mib} MiB");
    // It keeps serving, with the connections still open.
    wait_x509(&agent.socket_path, Duration::from_secs(10), |m| {
        !m.svids.is_empty()
    })
    .await?;
    drop(held);
    Ok(())
}

/// Finding 12: `healthcheck` passed while the agent was cut off from the server. It now fails,
/// with one line, once the agent has not heard from the server within 15 s.
#[test]
fn healthcheck_fails_once_the_server_is_gone_for_the_staleness_bound() -> Result<()> {
    let mut server = Server::start()?;
    let agent = Agent::start(&server, "stale")?;
    let healthy = agent.cli(&["healthcheck"])?;
    assert!(healthy.success(), "{healthy:?}");
    server.stop()?;
    let stopped = Instant::now();
    let failed = loop {
        let output = agent.cli(&["healthcheck"])?;
        if !output.success() {
            break output;
        }
        if stopped.elapsed() > Duration::from_secs(40) {
            bail!(
                "healthcheck still passes {:?} after the server stopped",
                stopped.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let elapsed = stopped.elapsed();
    assert!(
        elapsed >= Duration::from_secs(9),
        "failed after only {elapsed:?}"
    );
    assert!(failed.stdout.is_empty(), "{failed:?}");
    let stderr = failed.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("last heard from the server"), "{stderr}");
    // A looser bound passes again: the verdict follows the agent's last contact.
    assert!(
        agent
            .cli(&["healthcheck", "--max-staleness", "10m"])?
            .success()
    );
    Ok(())
}

/// Finding 13: the agent's log, written to a file by the harness, has no ANSI colour codes.
#[test]
fn a_log_written_to_a_file_has_no_colour_codes() -> Result<()> {
    let (_server, agent) = server_and_agent("ansi")?;
    let log = agent.log();
    assert!(log.contains("workload API listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log: {log:?}");
    Ok(())
}

//! Injected faults against the real binaries: kill -9 of the server in the middle of a burst
//! of 1,000 concurrent entry creates, the server gone long enough for SVIDs to expire and then
//! back, an agent killed under its workloads' open streams, and the server's data dir on a
//! full disk. (The verifier failing closed when its agent dies is
//! `delegation_revocation::the_verifier_fails_closed_when_its_agent_is_killed`.)

mod agent_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::*;
use anyhow::{Context, Result, ensure};
use mandate_integration::{Server, signal, workload};
use mandate_proto::admin::CreateEntryRequest;
use mandate_proto::admin::admin_client::AdminClient;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

fn entry_request(i: usize) -> CreateEntryRequest {
    CreateEntryRequest {
        spiffe_id: format!("spiffe://example.org/burst/{i}"),
        parent_id: "spiffe://example.org/node/burst".into(),
        selectors: vec![format!("unix:uid:{}", 10_000 + i)],
        ..CreateEntryRequest::default()
    }
}

/// The IDs of every entry the server lists.
fn listed_ids(server: &Server) -> Result<BTreeSet<String>> {
    let list = server.cli_json(&["entry", "list"])?;
    Ok(list
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect())
}

/// Sends `count` entry creates, `parallel` at a time; returns the IDs acknowledged and how many
/// calls failed. `on_ack` sees the running number of acknowledgements.
async fn burst(
    admin: AdminClient<Channel>,
    range: std::ops::Range<usize>,
    parallel: usize,
    on_ack: impl Fn(usize) + Send + Sync + 'static,
) -> (Vec<String>, usize) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(0_usize));
    let gate = Arc::new(Semaphore::new(parallel));
    let on_ack = Arc::new(on_ack);
    let mut tasks = Vec::new();
    for i in range {
        let (mut admin, acked, failed, gate, on_ack) = (
            admin.clone(),
            acked.clone(),
            failed.clone(),
            gate.clone(),
            on_ack.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            match admin.create_entry(entry_request(i)).await {
                Ok(reply) => {
                    let n = {
                        let mut acked = acked.lock().expect("not poisoned");
                        acked.push(reply.into_inner().id);
                        acked.len()
                    };
                    on_ack(n);
                }
                Err(_) => *failed.lock().expect("not poisoned") += 1,
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let acked = acked.lock().expect("not poisoned").clone();
    let failed = *failed.lock().expect("not poisoned");
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_of_1000_entry_creates_loses_no_acknowledged_entry() -> Result<()> {
    let mut server = Server::start()?;
    let pid = server.pid().context("server pid")?;
    let admin = AdminClient::new(workload::channel(&server.admin_socket).await?);
    let started = Instant::now();
    // Kill -9 once 400 creates are acknowledged, with ~32 more in flight.
    let (acked, failed) = burst(admin, 0..1000, 32, move |n| {
        if n == 400 {
            signal(pid, libc::SIGKILL);
        }
    })
    .await;
    let elapsed = started.elapsed();
    server.restart()?;
    let present = listed_ids(&server)?;
    let lost: Vec<_> = acked.iter().filter(|id| !present.contains(*id)).collect();
    println!(
        "burst: {} acknowledged, {} failed, {} present after restart, {:.1?} until the last reply",
        acked.len(),
        failed,
        present.len(),
        elapsed
    );
    ensure!(
        acked.len() >= 400,
        "the kill came after 400 acknowledgements, got {}",
        acked.len()
    );
    ensure!(failed > 0, "the kill interrupted the burst");
    ensure!(
        lost.is_empty(),
        "{} acknowledged entries lost: {lost:?}",
        lost.len()
    );
    // Nothing half-written: every present entry was one of ours, and the audit chain holds.
    ensure!(present.len() <= 1000);
    let audit = server.cli_json(&["audit", "verify"])?;
    ensure!(audit["ok"] == true, "audit verify after kill -9: {audit}");
    ensure!(
        audit["records"].as_u64() >= Some(present.len() as u64),
        "one entry.create per entry: {audit}"
    );
    // The server takes writes again.
    let admin = AdminClient::new(workload::channel(&server.admin_socket).await?);
    let (after, failed_after) = burst(admin, 1000..1010, 4, |_| {}).await;
    ensure!(
        after.len() == 10 && failed_after == 0,
        "writes after restart: {after:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_recovers_on_its_own_when_the_server_returns() -> Result<()> {
    let (mut server, agent) = server_and_agent("recover")?;
    entry_for_me(&server, &agent, "workload/recover", &["--x509-ttl", "6s"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    server.kill9();
    // Without a server the SVID expires and is dropped (agent_streams.rs checks the timing).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match x509_stream(&agent.socket_path).await {
            Err(status) if status.code() == tonic::Code::PermissionDenied => break,
            _ if Instant::now() > deadline => anyhow::bail!("the expired SVID was never dropped"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let down_for = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart()?;
    let restarted = Instant::now();
    // Nobody touches the agent: it reconnects, resyncs and is issued a fresh SVID.
    let message = wait_x509(&agent.socket_path, Duration::from_secs(30), |m| {
        !m.svids.is_empty()
    })
    .await?;
    assert_eq!(ids_of(&message), vec![id("workload/recover")]);
    println!(
        "server down {:.1?}; identity back {:.1?} after restart",
        restarted - down_for,
        restarted.elapsed()
    );
    entry_for_me(&server, &agent, "workload/after-recovery", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(10), |m| {
        m.svids.len() == 2
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_reconnect_to_a_restarted_agent_and_get_the_same_identities() -> Result<()> {
    let (server, mut agent) = server_and_agent("reconnect")?;
    entry_for_me(&server, &agent, "workload/one", &[])?;
    entry_for_me(&server, &agent, "workload/two", &["--hint", "second"])?;
    let before = wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 2
    })
    .await?;
    let mut held = x509_stream(&agent.socket_path).await?;
    next(&mut held, Duration::from_secs(5)).await??;
    agent.kill9();
    // The held stream ends (an error or end of stream), it does not hang.
    let ended = tokio::time::timeout(Duration::from_secs(10), held.message()).await;
    assert!(
        matches!(ended, Ok(Err(_)) | Ok(Ok(None))),
        "held stream after kill -9: {ended:?}"
    );
    agent.restart()?;
    let after = wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 2
    })
    .await?;
    assert_eq!(
        ids_of(&after),
        ids_of(&before),
        "same identities after the restart"
    );
    let hints = |m: &mandate_proto::workload::X509svidResponse| {
        let mut h: Vec<String> = m.svids.iter().map(|s| s.hint.clone()).collect();
        h.sort();
        h
    };
    assert_eq!(hints(&after), hints(&before));
    assert_eq!(
        after.svids[0].bundle, before.svids[0].bundle,
        "same trust bundle"
    );
    Ok(())
}

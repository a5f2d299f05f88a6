//! Load held against the real binaries: 1,000 concurrent Workload API streams for 60 s while
//! entries churn (no stream dropped or stalled; the agent's RSS recorded), and 100 agents
//! syncing through one server (about 7 s, so it runs in CI). The stream test is `#[ignore]`d
//! so CI stays fast; run it with
//! `cargo test -p mandate-integration --test reliability_load -- --ignored --nocapture`.

mod agent_support;
mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_support::*;
use anyhow::{Context, Result, ensure};
use mandate_integration::{Server, workload};
use mandate_proto::agent::sync_message::Event;
use mandate_proto::workload::X509svidRequest;
use tokio::sync::Mutex;

/// The agent's resident set size in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// What one held stream saw.
#[derive(Debug, Default, Clone)]
struct StreamStats {
    messages: u64,
    last_ids: Vec<String>,
    max_gap: Duration,
    ended: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load test: run with --ignored"]
async fn a_thousand_streams_held_for_a_minute_while_entries_churn() -> Result<()> {
    const STREAMS: usize = 1000;
    let (server, agent) = server_and_agent("load")?;
    let pid = agent.pid().context("agent pid")?;
    entry_for_me(&server, &agent, "workload/base", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 1
    })
    .await?;
    let rss_idle = rss_kib(pid);

    let stats: Arc<Vec<Mutex<StreamStats>>> =
        Arc::new((0..STREAMS).map(|_| Mutex::default()).collect());
    let opened = Arc::new(AtomicU64::new(0));
    for i in 0..STREAMS {
        let (stats, opened, socket) = (stats.clone(), opened.clone(), agent.socket_path.clone());
        tokio::spawn(async move {
            let mut client = match workload::client(&socket).await {
                Ok(c) => c,
                Err(e) => {
                    stats[i].lock().await.ended = Some(format!("connect: {e}"));
                    return;
                }
            };
            let mut stream = match client.fetch_x509svid(with_header(X509svidRequest {})).await {
                Ok(s) => s.into_inner(),
                Err(e) => {
                    stats[i].lock().await.ended = Some(format!("open: {e:?}"));
                    return;
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut last = Instant::now();
            loop {
                let message = stream.message().await;
                let mut s = stats[i].lock().await;
                match message {
                    Ok(Some(m)) => {
                        s.messages += 1;
                        s.max_gap = s.max_gap.max(last.elapsed());
                        last = Instant::now();
                        s.last_ids = ids_of(&m);
                    }
                    Ok(None) => {
                        s.ended = Some("end of stream".into());
                        return;
                    }
                    Err(status) => {
                        s.ended = Some(format!("{status:?}"));
                        return;
                    }
                }
            }
        });
    }
    mandate_integration::wait_for("1,000 open streams", Duration::from_secs(60), || {
        (opened.load(Ordering::Relaxed) == STREAMS as u64).then_some(())
    })?;
    let rss_open = rss_kib(pid);

    // Churn for 60 s: every 3 s an entry comes, and the one before goes.
    let started = Instant::now();
    let mut previous: Option<String> = None;
    let mut changes = 0_u64;
    let mut rss_peak = rss_open;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let id = entry_for_me(&server, &agent, &format!("workload/churn-{i}"), &[])?;
        changes += 1;
        if let Some(old) = previous.replace(id) {
            server.cli_ok(&["entry", "delete", &old])?;
            changes += 1;
        }
        i += 1;
        rss_peak = rss_peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(old) = previous {
        server.cli_ok(&["entry", "delete", &old])?;
        changes += 1;
    }
    // Every stream converges on the final state: only the base entry.
    let want = vec![id("workload/base")];
    let converge = Instant::now();
    loop {
        let mut behind = 0;
        for s in stats.iter() {
            if s.lock().await.last_ids != want {
                behind += 1;
            }
        }
        if behind == 0 {
            break;
        }
        ensure!(
            converge.elapsed() < Duration::from_secs(30),
            "{behind} streams never saw the final state"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged_in = converge.elapsed();
    let rss_end = rss_kib(pid);
    let mut all = Vec::new();
    for s in stats.iter() {
        all.push(s.lock().await.clone());
    }
    let ended: Vec<_> = all.iter().filter_map(|s| s.ended.clone()).collect();
    let min_messages = all.iter().map(|s| s.messages).min().unwrap_or(0);
    let max_gap = all.iter().map(|s| s.max_gap).max().unwrap_or_default();
    println!(
        "load: {STREAMS} streams, {changes} entry changes in {:.0?}; messages per stream min {min_messages}; \
         largest gap between messages {max_gap:.1?}; converged {converged_in:.1?} after the last change; \
         agent RSS idle {} MiB, 1,000 streams open {} MiB, peak {} MiB, end {} MiB",
        started.elapsed(),
        rss_idle / 1024,
        rss_open / 1024,
        rss_peak / 1024,
        rss_end / 1024
    );
    ensure!(
        ended.is_empty(),
        "{} streams ended: {:?}",
        ended.len(),
        &ended[..ended.len().min(5)]
    );
    // Each change is a new message; a stream may see adjacent changes merged, never none.
    ensure!(
        min_messages >= changes / 2,
        "a stream stalled: {min_messages} messages for {changes} changes"
    );
    ensure!(
        max_gap < Duration::from_secs(15),
        "a stream went {max_gap:?} without a message during churn"
    );
    Ok(())
}

#[test]
fn a_hundred_agents_sync_through_one_server() -> Result<()> {
    const AGENTS: usize = 100;
    let server = Server::start()?;
    server_support::block_on(async {
        let started = Instant::now();
        let mut streams = Vec::new();
        for n in 0..AGENTS {
            let mut agent = server_support::attest(
                &server,
                Some(&format!("spiffe://example.org/mandate/agent/sync-{n}")),
            )
            .await?;
            let stream = agent.sync(0).await?;
            streams.push((agent, stream));
        }
        let attested = started.elapsed();
        let mut admin = mandate_proto::admin::admin_client::AdminClient::new(
            workload::channel(&server.admin_socket).await?,
        );
        let create = Instant::now();
        for (agent, _) in &streams {
            let request = mandate_proto::admin::CreateEntryRequest {
                spiffe_id: format!("{}/workload", agent.id.replace("/mandate/agent/", "/wl/")),
                parent_id: agent.id.clone(),
                selectors: vec!["unix:uid:1001".into()],
                ..Default::default()
            };
            admin.create_entry(request).await?;
        }
        let mut handles = Vec::new();
        for (agent, mut stream) in streams {
            handles.push(tokio::spawn(async move {
                let deadline = Duration::from_secs(60);
                let mut seen = Vec::new();
                while let Ok(Ok(Some(message))) =
                    tokio::time::timeout(deadline, stream.message()).await
                {
                    match message.event {
                        Some(Event::EntryUpsert(e)) => seen.push(e.parent_id),
                        Some(Event::Snapshot(part)) => {
                            seen.extend(part.entries.into_iter().map(|e| e.parent_id))
                        }
                        _ => {}
                    }
                    if !seen.is_empty() {
                        break;
                    }
                }
                (agent.id, seen, Instant::now())
            }));
        }
        let mut last = create;
        for handle in handles {
            let (id, seen, at) = handle.await?;
            ensure!(!seen.is_empty(), "{id} never got its entry");
            ensure!(
                seen.iter().all(|p| *p == id),
                "{id} was sent another agent's entry: {seen:?}"
            );
            last = last.max(at);
        }
        println!(
            "sync: {AGENTS} agents attested and syncing in {attested:.1?}; {AGENTS} entries created and all \
             delivered to their own agent only in {:.1?}",
            last - create
        );
        assert!(server.cli(&["healthcheck"])?.success());
        Ok(())
    })
}

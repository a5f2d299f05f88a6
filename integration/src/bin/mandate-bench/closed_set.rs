//! Scenario `closed-set`: an agent holding the trust domain's closed set (DESIGN 3.4, 5):
//! its RSS with 100k closed, unexpired tasks (none of them used by its entries), the bytes one
//! close costs each agent on the sync stream (target under 200), and the sync snapshot that
//! carries the set to a restarted agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_integration::{Agent, Server, TRUST_DOMAIN, workload};
use mandate_proto::agent::sync_message::Event;
use mandate_proto::agent::{SyncMessage, SyncRequest};
use mandate_proto::delegation::WatchRequest;
use prost::Message;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::Mode;
use crate::admin::{Admin, MAX_MESSAGE, bulk};
use crate::node::{Attestor, Node};
use crate::stats::{Memory, own_uid, rate, round3};

/// The gRPC length-prefix of each message on the wire.
const GRPC_FRAME: usize = 5;
/// The target of DESIGN 5 per close and agent.
const BYTES_PER_CLOSE_TARGET: f64 = 200.0;
/// The RSS target of DESIGN 5 with 100k closed tasks.
const RSS_TARGET_MIB: f64 = 64.0;

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start, a call fails or the set never reaches the agent.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let tasks = match mode {
        Mode::Quick => 2_000,
        Mode::Full => 100_000,
    };
    let server = Server::start()?;
    let mut agent = Agent::start(&server, "bench-closed")?;
    let admin = rt.block_on(Admin::connect(&server.admin_socket))?;
    let reader = format!("spiffe://{TRUST_DOMAIN}/bench/closed-reader");
    let selector = format!("unix:uid:{}", own_uid()?);
    let node = rt.block_on(async {
        admin
            .create_entry(&reader, &agent.spiffe_id, &[selector], None)
            .await?;
        let attestor = Attestor::connect(&admin, &server.address).await?;
        let id = format!("spiffe://{TRUST_DOMAIN}/mandate/agent/bench/closed-sync");
        attestor.node(&admin, &id).await
    })?;
    rt.block_on(wait_listed(&agent, 0))?;
    let agent_pid = agent.pid().context("agent pid")?;
    let before = Memory::of(agent_pid)?;

    // A pseudo-agent with no entries counts what every close costs it on its sync stream.
    let counted = rt.block_on(open_sync(&node, 0))?;
    let counter = rt.spawn(count_task_ends(counted, tasks));
    let started = Instant::now();
    let closes = rt.block_on(open_and_close(&admin, tasks))?;
    let closed_at = Instant::now();
    let closing = closed_at - started;
    let (ends, end_bytes, other_bytes) = rt.block_on(counter)??;
    rt.block_on(wait_listed(&agent, tasks))?;
    let listed_after = closed_at.elapsed();
    let holding = Memory::of(agent_pid)?;

    let snapshot = rt.block_on(snapshot_size(&node))?;
    agent.restart()?;
    let restart = Instant::now();
    rt.block_on(wait_listed(&agent, tasks))?;
    let relisted = restart.elapsed();
    let restarted = Memory::of(agent.pid().context("agent pid")?)?;

    let per_close = end_bytes as f64 / ends.max(1) as f64;
    let rss_mib = holding.rss_kib as f64 / 1024.0;
    Ok(json!({
        "scenario": "closed-set",
        "closed_tasks": tasks,
        "opens_and_closes_per_s": round3(rate(closes, closing)),
        "agent_memory_before": before.to_json(),
        "agent_memory_holding_set": holding.to_json(),
        "agent_memory_after_restart": restarted.to_json(),
        "set_listed_on_agent_after_last_close_s": round3(listed_after.as_secs_f64()),
        "set_listed_after_agent_restart_s": round3(relisted.as_secs_f64()),
        "sync_bytes_per_close": round3(per_close),
        "sync_task_end_messages": ends,
        "sync_other_bytes_during_closes": other_bytes,
        "snapshot": snapshot,
        "target": "agent RSS < 64 MiB with 100k closed tasks; < 200 bytes of sync per close",
        "met": per_close < BYTES_PER_CLOSE_TARGET && rss_mib < RSS_TARGET_MIB,
    }))
}

/// Opens and closes `count` tasks, 32 at a time; returns how many.
async fn open_and_close(admin: &Admin, count: usize) -> Result<usize> {
    let admin = admin.clone();
    let done = bulk(count, 32, Duration::from_secs(1800), move |_| {
        let admin = admin.clone();
        async move {
            let task = admin.open_task().await?;
            admin.close_task(&task).await
        }
    })
    .await?;
    if done.truncated {
        bail!(
            "only {} of {count} tasks opened and closed in time",
            done.created
        );
    }
    Ok(done.created)
}

/// Reads the sync stream until `expected` task ends arrived; returns their count, their wire
/// bytes (message and gRPC frame) and the bytes of anything else but heartbeats.
async fn count_task_ends(
    mut stream: Streaming<SyncMessage>,
    expected: usize,
) -> Result<(usize, usize, usize)> {
    let (mut ends, mut end_bytes, mut other_bytes) = (0, 0, 0);
    let mut snapshot_done = false;
    while ends < expected {
        let message = next(&mut stream).await?;
        let bytes = message.encoded_len() + GRPC_FRAME;
        match &message.event {
            Some(Event::Snapshot(part)) => snapshot_done |= part.complete,
            Some(Event::TaskEnded(_)) if snapshot_done => {
                ends += 1;
                end_bytes += bytes;
            }
            Some(Event::Heartbeat(_)) => {}
            _ => other_bytes += bytes,
        }
    }
    Ok((ends, end_bytes, other_bytes))
}

/// The full snapshot a (re)starting agent gets: bytes, parts and closed-set members.
async fn snapshot_size(node: &Node) -> Result<Value> {
    let start = Instant::now();
    let mut stream = open_sync(node, 0).await?;
    let (mut bytes, mut parts, mut ended) = (0, 0, 0);
    loop {
        let message = next(&mut stream).await?;
        bytes += message.encoded_len() + GRPC_FRAME;
        if let Some(Event::Snapshot(part)) = &message.event {
            parts += 1;
            ended += part.ended_tasks.len();
            if part.complete {
                break;
            }
        }
    }
    Ok(json!({
        "bytes": bytes,
        "parts": parts,
        "closed_set_members": ended,
        "time_s": round3(start.elapsed().as_secs_f64()),
    }))
}

/// Waits until `agent`'s TaskStatus feed lists at least `count` tasks.
async fn wait_listed(agent: &Agent, count: usize) -> Result<()> {
    let start = Instant::now();
    let seen = Arc::new(AtomicUsize::new(0));
    loop {
        let listed = async {
            let mut client = workload::task_status_client(&agent.socket_path)
                .await?
                .max_decoding_message_size(MAX_MESSAGE);
            let mut feed = client
                .watch(workload::with_header(WatchRequest {}))
                .await?
                .into_inner();
            while let Some(snapshot) = feed.message().await? {
                seen.store(snapshot.closed_task_ids.len(), Ordering::Relaxed);
                if snapshot.closed_task_ids.len() >= count {
                    return Ok(());
                }
            }
            bail!("the task-status feed ended")
        };
        match tokio::time::timeout(Duration::from_secs(600), listed).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) if start.elapsed() < Duration::from_secs(600) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => bail!(
                "the agent lists {} of {count} closed tasks after {:?}",
                seen.load(Ordering::Relaxed),
                start.elapsed()
            ),
        }
    }
}

async fn open_sync(node: &Node, since_revision: u64) -> Result<Streaming<SyncMessage>> {
    let response = node
        .client
        .clone()
        .sync(SyncRequest { since_revision })
        .await
        .context("Sync")?;
    Ok(response.into_inner())
}

async fn next(stream: &mut Streaming<SyncMessage>) -> Result<SyncMessage> {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .context("no sync message within 60 s")?
        .context("sync stream failed")?
        .context("sync stream ended")
}

//! Scenario `scale`: agent RSS with many SVIDs; server RSS and restart time with 100k entries
//! and 10k agents; sync bytes and time when one entry out of 100k changes (DESIGN 4 and 5).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_integration::TRUST_DOMAIN;
use mandate_proto::agent::sync_message::Event;
use mandate_proto::agent::{SyncMessage, SyncRequest};
use prost::Message;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::Mode;
use crate::admin::{Admin, bulk};
use crate::fixture::{Fixture, wait_for_svid_count};
use crate::node::{Attestor, Node};
use crate::stats::{Memory, Samples, rate, round3};

/// How long registration may run before the scenario measures what it has.
const REGISTRATION_BUDGET: Duration = Duration::from_secs(420);

struct Sizes {
    svids: usize,
    agents: usize,
    entries: usize,
    sync_entries: usize,
    resumes: usize,
}

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start or a call fails.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let sizes = match mode {
        Mode::Quick => Sizes {
            svids: 100,
            agents: 100,
            entries: 2_000,
            sync_entries: 500,
            resumes: 3,
        },
        Mode::Full => Sizes {
            svids: 1_000,
            agents: 10_000,
            entries: 100_000,
            sync_entries: 5_000,
            resumes: 10,
        },
    };
    let mut fixture = Fixture::start(rt)?;
    let socket = fixture.agent.socket_path.clone();
    rt.block_on(async {
        fixture.create_own_entries("scale", sizes.svids, 32).await?;
        wait_for_svid_count(&socket, sizes.svids, Duration::from_secs(600)).await
    })?;
    let agent_memory = Memory::of(fixture.agent.pid().context("agent pid")?)?;
    let (registered, sync) = rt.block_on(register_and_sync(&fixture, &sizes))?;
    let server_pid = fixture.server.pid().context("server pid")?;
    let loaded_memory = Memory::of(server_pid)?;
    fixture.server.stop()?;
    let restart_start = Instant::now();
    // Beside the harness's CLI polls, ask the admin API directly every 5 ms: the first answer
    // is the moment the restarted server serves.
    let answered = rt.spawn(first_health(
        fixture.server.admin_socket.clone(),
        restart_start,
    ));
    fixture.server.restart()?;
    let restart_harness = restart_start.elapsed();
    let restart = rt.block_on(answered)??;
    let restarted_pid = fixture.server.pid().context("server pid")?;
    let health = rt.block_on(async {
        Admin::connect(&fixture.server.admin_socket)
            .await?
            .health()
            .await
    })?;
    let restarted_memory = Memory::of(restarted_pid)?;
    let total_entries = health.entries;
    let met = restart_harness < Duration::from_secs(2)
        && loaded_memory.rss_kib.max(restarted_memory.rss_kib) < 1024 * 1024
        && agent_memory.rss_kib < 40 * 1024;
    Ok(json!({
        "scenario": "scale",
        "agent": { "svids": sizes.svids, "memory": agent_memory.to_json(), "target": "RSS < 40 MiB" },
        "registration": registered,
        "server": {
            "entries": total_entries,
            "memory_loaded": loaded_memory.to_json(),
            "restart_s": round3(restart_harness.as_secs_f64()),
            "restart_measured": "SIGTERM'd server spawned again until `mandate-server healthcheck` passes and `bundle show` answers (harness, 10 ms polls)",
            "restart_to_first_admin_answer_s": round3(restart.as_secs_f64()),
            "memory_after_restart": restarted_memory.to_json(),
            "target": "restart < 2 s, RSS < 1 GiB",
        },
        "sync": sync,
        "met": met,
    }))
}

/// Registers the agents and the entries, then measures a full sync and resumed syncs.
async fn register_and_sync(fixture: &Fixture, sizes: &Sizes) -> Result<(Value, Value)> {
    let admin = fixture.admin.clone();
    let attestor = Attestor::connect(&admin, &fixture.server.address).await?;
    let (a, at) = (admin.clone(), attestor.clone());
    let agents = bulk(sizes.agents, 32, REGISTRATION_BUDGET, move |i| {
        let (admin, attestor) = (a.clone(), at.clone());
        async move {
            attestor
                .attest(
                    &admin,
                    &format!("spiffe://{TRUST_DOMAIN}/mandate/agent/bench/node/{i}"),
                )
                .await?;
            Ok(())
        }
    })
    .await?;
    let node = attestor
        .node(
            &admin,
            &format!("spiffe://{TRUST_DOMAIN}/mandate/agent/bench/sync"),
        )
        .await?;
    // The sync agent's own entries, then the rest spread over the registered agents (about
    // ten per node, as on real hosts). One parent per 100k entries would measure the server's
    // per-parent duplicate check instead (see docs/PERFORMANCE.md).
    let sync_entries = bulk_entries(&admin, sizes.sync_entries, 1, "sync", &node.spiffe_id).await?;
    let spread_count = sizes
        .entries
        .saturating_sub(sizes.svids + sizes.sync_entries);
    let spread = bulk_entries(
        &admin,
        spread_count,
        agents.created,
        "spread",
        &node.spiffe_id,
    )
    .await?;
    let registration = json!({
        "agents": agents.created,
        "agents_per_s": round3(rate(agents.created, agents.elapsed)),
        "agents_truncated_by_budget": agents.truncated,
        "entries_for_sync_agent": sync_entries.created,
        "entries_for_sync_agent_per_s": round3(rate(sync_entries.created, sync_entries.elapsed)),
        "entries_spread_over_agents": spread.created,
        "entries_spread_per_s": round3(rate(spread.created, spread.elapsed)),
        "entries_truncated_by_budget": sync_entries.truncated || spread.truncated,
        "budget_s": REGISTRATION_BUDGET.as_secs(),
    });
    let sync = measure_sync(&admin, &node, sizes.resumes).await?;
    Ok((registration, sync))
}

/// Creates `count` entries; with `parents` > 1 the parent of entry `i` is the registered node
/// `i % parents`, otherwise `parent`.
async fn bulk_entries(
    admin: &Admin,
    count: usize,
    parents: usize,
    prefix: &str,
    parent: &str,
) -> Result<crate::admin::Bulk> {
    let (admin, prefix, parent) = (admin.clone(), prefix.to_owned(), parent.to_owned());
    bulk(count, 64, REGISTRATION_BUDGET, move |i| {
        let admin = admin.clone();
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/{prefix}/{i}");
        let parent = if parents > 1 {
            format!(
                "spiffe://{TRUST_DOMAIN}/mandate/agent/bench/node/{}",
                i % parents
            )
        } else {
            parent.clone()
        };
        async move {
            admin
                .create_entry(&spiffe_id, &parent, &["unix:uid:4242".into()], None)
                .await?;
            Ok(())
        }
    })
    .await
}

/// A full snapshot, then `resumes` times: change one entry, resume from the last revision and
/// count what arrives until the change.
async fn measure_sync(admin: &Admin, node: &Node, resumes: usize) -> Result<Value> {
    let start = Instant::now();
    let mut stream = open_sync(node, 0).await?;
    let (mut bytes, mut entries, mut revision) = (0, 0, 0);
    loop {
        let message = next(&mut stream).await?;
        bytes += message.encoded_len();
        revision = revision.max(message.revision);
        if let Some(Event::Snapshot(part)) = &message.event {
            entries += part.entries.len();
            if part.complete {
                break;
            }
        }
    }
    let full_time = start.elapsed();
    drop(stream);
    let (mut resume_bytes, mut resume_time, mut resume_messages) =
        (Vec::new(), Samples::default(), Vec::new());
    for i in 0..resumes {
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/changed/{i}");
        let changed = admin
            .create_entry(&spiffe_id, &node.spiffe_id, &["unix:uid:4242".into()], None)
            .await?;
        let start = Instant::now();
        let mut stream = open_sync(node, revision).await?;
        let (mut bytes, mut messages) = (0, 0);
        loop {
            let message = next(&mut stream).await?;
            bytes += message.encoded_len();
            messages += 1;
            revision = revision.max(message.revision);
            match &message.event {
                Some(Event::EntryUpsert(entry)) if entry.id == changed.id => break,
                Some(Event::Snapshot(_)) => {
                    bail!("the server answered a resume with a full snapshot")
                }
                _ => {}
            }
        }
        resume_time.push(start.elapsed());
        resume_bytes.push(bytes);
        resume_messages.push(messages);
    }
    Ok(json!({
        "full_snapshot": {
            "entries": entries,
            "bytes": bytes,
            "time_s": round3(full_time.as_secs_f64()),
        },
        "resume_after_one_change": {
            "bytes": resume_bytes,
            "messages": resume_messages,
            "time": resume_time.summary(),
            "measured": "Sync(since_revision = last applied) opened until the changed entry's upsert arrives",
        },
    }))
}

/// Polls the admin API's `Health` every 5 ms until it answers; returns the time since `start`.
async fn first_health(socket: std::path::PathBuf, start: Instant) -> Result<Duration> {
    loop {
        if let Ok(admin) = Admin::connect(&socket).await
            && admin.health().await.is_ok()
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the restarted server did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
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

//! Scenario `workload-x509`: time to the first `FetchX509SVID` message for a caller that holds
//! many cached identities, over fresh connections (DESIGN 5: p99 under 5 ms with 1,000),
//! beside a trivial tonic server sending the very same message.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_proto::workload::X509svidResponse;
use prost::Message;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::Mode;
use crate::fixture::{Fixture, wait_for_svid_count, x509_stream};
use crate::stats::{Memory, Samples, round3};
use crate::trivial::TrivialServer;

/// Trials run in this many alternating rounds against the agent and the trivial server.
const ROUNDS: usize = 5;

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start or the agent does not serve the identities.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (identities, trials) = match mode {
        Mode::Quick => (100, 30),
        Mode::Full => (1000, 500),
    };
    let fixture = Fixture::start(rt)?;
    let socket = fixture.agent.socket_path.clone();
    let (cached_after, message) = rt.block_on(async {
        let start = Instant::now();
        fixture.create_own_entries("x509", identities, 32).await?;
        wait_for_svid_count(&socket, identities, Duration::from_secs(600)).await?;
        let cached_after = start.elapsed();
        let (message, _) = first_message(&socket, identities).await?;
        Ok::<_, anyhow::Error>((cached_after, message))
    })?;
    let dir = tempfile::Builder::new()
        .prefix("mandate-bench-")
        .tempdir()?;
    let trivial = TrivialServer::start(dir.path(), "", "", &message)?;
    let (mut agent, mut limit) = (
        Samples::with_capacity(trials),
        Samples::with_capacity(trials),
    );
    rt.block_on(async {
        for _ in 0..ROUNDS {
            for _ in 0..trials / ROUNDS {
                agent.push(first_message(&socket, identities).await?.1);
            }
            for _ in 0..trials / ROUNDS {
                limit.push(first_message(&trivial.socket, identities).await?.1);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    drop(trivial);
    let agent_memory = Memory::of(fixture.agent.pid().context("agent pid")?)?;
    let p99 = agent.quantile_ms(0.99);
    Ok(json!({
        "scenario": "workload-x509",
        "identities": identities,
        "first_message": agent.summary(),
        "limit": {
            "what": "trivial tonic server sending the same first message over a unix socket, child process",
            "first_message": limit.summary(),
        },
        "ratio_p50": round3(limit.quantile_ms(0.5) / agent.quantile_ms(0.5)),
        "first_message_bytes": message.encoded_len(),
        "measured_from": "connect on a fresh unix socket connection to the first decoded message",
        "entries_created_to_all_cached_s": round3(cached_after.as_secs_f64()),
        "agent_memory": agent_memory.to_json(),
        "target": "p99 < 5 ms",
        "met": p99 < 5.0,
    }))
}

/// Connects afresh, opens a stream and reads its first message; returns it with the time that
/// took. Fails unless it holds `identities` SVIDs.
async fn first_message(socket: &Path, identities: usize) -> Result<(X509svidResponse, Duration)> {
    let started = Instant::now();
    let mut stream = x509_stream(socket).await?;
    let first = stream
        .message()
        .await
        .context("first message")?
        .context("stream ended")?;
    let took = started.elapsed();
    if first.svids.len() != identities {
        bail!(
            "first message holds {} SVIDs, expected {identities}",
            first.svids.len()
        );
    }
    Ok((first, took))
}

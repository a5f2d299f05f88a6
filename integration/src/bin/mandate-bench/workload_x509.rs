//! Scenario `workload-x509`: time to the first `FetchX509SVID` message for a caller that holds
//! many cached identities, over fresh connections (DESIGN 5: p99 under 5 ms with 1,000).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::Mode;
use crate::fixture::{Fixture, wait_for_svid_count, x509_stream};
use crate::stats::{Memory, Samples, round3};

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
    let (cached_after, samples, message_bytes) = rt.block_on(async {
        let start = Instant::now();
        fixture.create_own_entries("x509", identities, 32).await?;
        wait_for_svid_count(&socket, identities, Duration::from_secs(600)).await?;
        let cached_after = start.elapsed();
        let mut samples = Samples::with_capacity(trials);
        let mut message_bytes = 0;
        for _ in 0..trials {
            let started = Instant::now();
            let mut stream = x509_stream(&socket).await?;
            let first = stream
                .message()
                .await
                .context("first message")?
                .context("stream ended")?;
            samples.push(started.elapsed());
            if first.svids.len() != identities {
                bail!(
                    "first message holds {} SVIDs, expected {identities}",
                    first.svids.len()
                );
            }
            message_bytes = first.encoded_len();
        }
        Ok::<_, anyhow::Error>((cached_after, samples, message_bytes))
    })?;
    let agent_memory = Memory::of(fixture.agent.pid().context("agent pid")?)?;
    let p99 = samples.quantile_ms(0.99);
    Ok(json!({
        "scenario": "workload-x509",
        "identities": identities,
        "first_message": samples.summary(),
        "first_message_bytes": message_bytes,
        "measured_from": "connect on a fresh unix socket connection to the first decoded message",
        "entries_created_to_all_cached_s": round3(cached_after.as_secs_f64()),
        "agent_memory": agent_memory.to_json(),
        "target": "p99 < 5 ms",
        "met": p99 < 5.0,
    }))
}

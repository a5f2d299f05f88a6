//! Scenario `workload-jwt`: `FetchJWTSVID` with a warm cache from 64 concurrent callers against
//! the real agent, and against a trivial tonic server answering a constant over a unix socket
//! in the same run (DESIGN 5: at least 50% of its rate; p99 under 2 ms).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_integration::TRUST_DOMAIN;
use mandate_integration::workload::with_header;
use mandate_proto::workload::{JwtsvidRequest, X509svidResponse};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::Mode;
use crate::fixture::{Fixture, workload_client};
use crate::stats::{Samples, rate, round3};
use crate::trivial::TrivialServer;

/// Concurrent callers, each on its own connection.
const CALLERS: usize = 64;
/// The audience every call asks for (so the agent's cache stays warm).
const AUDIENCE: &str = "bench";

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start or a call fails.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (rounds, window, warmup) = match mode {
        Mode::Quick => (1, Duration::from_secs(1), Duration::from_millis(200)),
        Mode::Full => (3, Duration::from_secs(5), Duration::from_secs(1)),
    };
    let fixture = Fixture::start(rt)?;
    let socket = fixture.agent.socket_path.clone();
    let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/jwt");
    let token = rt.block_on(async {
        let parent = &fixture.agent.spiffe_id;
        fixture
            .admin
            .create_entry(
                &spiffe_id,
                parent,
                std::slice::from_ref(&fixture.selector),
                None,
            )
            .await?;
        first_token(&socket, Duration::from_secs(60)).await
    })?;
    let dir = tempfile::Builder::new()
        .prefix("mandate-bench-")
        .tempdir()?;
    let trivial =
        TrivialServer::start(dir.path(), &spiffe_id, &token, &X509svidResponse::default())?;
    let (mut agent, mut limit) = (Load::default(), Load::default());
    for _ in 0..rounds {
        // Alternate the two so that background noise hits both alike.
        rt.block_on(load(&trivial.socket, CALLERS, warmup))?;
        limit.add(rt.block_on(load(&trivial.socket, CALLERS, window))?);
        rt.block_on(load(&socket, CALLERS, warmup))?;
        agent.add(rt.block_on(load(&socket, CALLERS, window))?);
    }
    // One caller alone: the service time without queueing behind 63 others.
    let single_limit = rt.block_on(load(&trivial.socket, 1, window))?;
    let single_agent = rt.block_on(load(&socket, 1, window))?;
    drop(trivial);
    let ratio = agent.per_second() / limit.per_second();
    let p99 = agent.latency.quantile_ms(0.99);
    Ok(json!({
        "scenario": "workload-jwt",
        "callers": CALLERS,
        "rounds": rounds,
        "window_s": window.as_secs_f64(),
        "agent": { "req_per_s": round3(agent.per_second()), "latency": agent.latency.summary() },
        "limit": {
            "what": "trivial tonic FetchJWTSVID (constant answer, same token) over a unix socket, child process",
            "req_per_s": round3(limit.per_second()),
            "latency": limit.latency.summary(),
        },
        "single_caller": {
            "agent": { "req_per_s": round3(single_agent.per_second()), "latency": single_agent.latency.summary() },
            "limit": { "req_per_s": round3(single_limit.per_second()), "latency": single_limit.latency.summary() },
        },
        "token_bytes": token.len(),
        "ratio": round3(ratio),
        "target": "ratio >= 0.50 and p99 < 2 ms",
        "met": ratio >= 0.50 && p99 < 2.0,
    }))
}

/// Calls until the agent answers with a token (it must first sync the entry and mint one).
async fn first_token(socket: &Path, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    let mut client = workload_client(socket).await?;
    loop {
        let request = JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: String::new(),
        };
        match client.fetch_jwtsvid(with_header(request)).await {
            Ok(response) => {
                let svids = response.into_inner().svids;
                return Ok(svids
                    .into_iter()
                    .next()
                    .context("FetchJWTSVID answered no SVID")?
                    .svid);
            }
            Err(status) if start.elapsed() > timeout => {
                bail!("FetchJWTSVID never succeeded: {status}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[derive(Debug, Default)]
struct Load {
    calls: usize,
    elapsed: Duration,
    latency: Samples,
}

impl Load {
    fn add(&mut self, other: Self) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.latency.extend(other.latency);
    }

    fn per_second(&self) -> f64 {
        rate(self.calls, self.elapsed)
    }
}

/// `callers` concurrent callers, each on its own connection, calling for `window`.
async fn load(socket: &Path, callers: usize, window: Duration) -> Result<Load> {
    let mut clients = Vec::with_capacity(callers);
    for _ in 0..callers {
        clients.push(workload_client(socket).await?);
    }
    let start = Instant::now();
    let mut callers = Vec::with_capacity(callers);
    for mut client in clients {
        callers.push(tokio::spawn(async move {
            let mut latency = Samples::with_capacity(16 * 1024);
            while start.elapsed() < window {
                let request = JwtsvidRequest {
                    audience: vec![AUDIENCE.into()],
                    spiffe_id: String::new(),
                };
                let call = Instant::now();
                let response = client
                    .fetch_jwtsvid(with_header(request))
                    .await
                    .context("FetchJWTSVID")?;
                latency.push(call.elapsed());
                if response.get_ref().svids.is_empty() {
                    bail!("FetchJWTSVID answered no SVID");
                }
            }
            Ok(latency)
        }));
    }
    let mut total = Samples::default();
    for caller in callers {
        total.extend(caller.await??);
    }
    Ok(Load {
        calls: total.len(),
        elapsed: start.elapsed(),
        latency: total,
    })
}

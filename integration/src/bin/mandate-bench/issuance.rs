//! Scenario `issuance`: batched CSR signing through the agent API (`SignX509Svids`) with the
//! server pinned to one core, against the raw P-256 verify+sign rate on that core (DESIGN 5:
//! at least 70%).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_core::x509::{csr_request, generate_p256_keypair};
use mandate_integration::{Server, ServerOptions, TRUST_DOMAIN};
use mandate_proto::agent::{SignX509SvidRequest, SignX509SvidsRequest};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::admin::{Admin, bulk};
use crate::node::{Attestor, Node};
use crate::stats::{Samples, cpu_time, median, rate, round3};
use crate::{Mode, raw};

/// The core the server and the raw loop share.
pub(crate) const CPU: &str = "0";
/// Calls in flight at once, so the pinned server never waits for the client: each call also
/// waits for its audit records' group commit (an fsync), and with 6 calls the core sat idle
/// 4-5% of the time; with 12 it is busy about 98%.
const IN_FLIGHT: usize = 12;

/// Runs the scenario and returns its JSON report.
///
/// The machine's speed drifts (a shared VM), so raw windows and load windows alternate:
/// raw, load, raw, load, ..., raw. Each load window is divided by the mean of the two raw
/// windows around it, and the report gives the median of those per-round ratios.
///
/// Fails when the server does not start or refuses to sign.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (entries, batch, rounds, load, raw_time) = match mode {
        Mode::Quick => (
            100,
            50,
            1,
            Duration::from_millis(1500),
            Duration::from_millis(500),
        ),
        Mode::Full => (1000, 250, 5, Duration::from_secs(4), Duration::from_secs(2)),
    };
    let options = ServerOptions {
        command_prefix: vec!["taskset".into(), "-c".into(), CPU.into()],
        ..ServerOptions::default()
    };
    let server = Server::start_with(options)?;
    let pid = server.pid().context("server pid")?;
    let node = rt.block_on(prepare(&server, entries, batch))?;
    // Keep the bench's own threads off the server's core while it measures (the raw loop
    // runs in a child pinned to that core).
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus > 1 && set_own_affinity(&format!("1-{}", cpus - 1));
    let measured = measure_rounds(rt, &node, pid, rounds, load, raw_time);
    if pinned {
        set_own_affinity(&format!("0-{}", cpus - 1));
    }
    let (raws, windows) = measured?;
    let ratios: Vec<f64> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| w.svids_per_s / ((raws[i] + raws[i + 1]) / 2.0))
        .collect();
    let ratio = median(&ratios);
    let rates: Vec<f64> = windows.iter().map(|w| w.svids_per_s).collect();
    let mut latency = Samples::default();
    let (mut busy, mut elapsed) = (Duration::ZERO, Duration::ZERO);
    for window in windows {
        latency.extend(window.latency);
        busy += window.server_cpu;
        elapsed += window.elapsed;
    }
    Ok(json!({
        "scenario": "issuance",
        "svids_per_s": round3(median(&rates)),
        "svids_per_s_by_round": rates.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "batch_size": batch,
        "calls_in_flight": IN_FLIGHT,
        "entries": entries,
        "rounds": rounds,
        "load_window_s": load.as_secs_f64(),
        "raw_window_s": raw_time.as_secs_f64(),
        "batch_latency": latency.summary(),
        "server_cpu_busy": round3(busy.as_secs_f64() / elapsed.as_secs_f64()),
        "bench_threads_kept_off_cpu0": pinned,
        "limit": {
            "what": "aws-lc-rs P-256 verify (CSR-sized message) + sign (TBS-sized message), one thread on the same core, in windows alternating with the load",
            "ops_per_s": round3(median(&raws)),
            "ops_per_s_by_window": raws.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        },
        "ratio": round3(ratio),
        "ratio_by_round": ratios.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "target": ">= 0.70",
        "met": ratio >= 0.70,
    }))
}

/// One load window.
pub(crate) struct Window {
    /// SVIDs signed per second.
    pub(crate) svids_per_s: f64,
    /// Its length.
    pub(crate) elapsed: Duration,
    /// Each call's latency.
    pub(crate) latency: Samples,
    /// CPU time the pinned server used in the window.
    pub(crate) server_cpu: Duration,
}

/// A prepared issuer: its agent identity and the CSR batches it signs in a loop.
pub(crate) struct Prepared {
    node: Node,
    batches: Arc<Vec<Vec<SignX509SvidRequest>>>,
}

/// Registers `entries` entries under a fresh node, makes one CSR each, and signs every
/// batch once (warm-up, every result checked).
pub(crate) async fn prepare(server: &Server, entries: usize, batch: usize) -> Result<Prepared> {
    let admin = Admin::connect(&server.admin_socket).await?;
    let attestor = Attestor::connect(&admin, &server.address).await?;
    let node = attestor
        .node(
            &admin,
            &format!("spiffe://{TRUST_DOMAIN}/mandate/agent/bench/issuer"),
        )
        .await?;
    let ids = create_entries(&admin, &node.spiffe_id, entries).await?;
    let mut requests = Vec::with_capacity(ids.len());
    for id in ids {
        let key = generate_p256_keypair()?;
        requests.push(SignX509SvidRequest {
            entry_id: id,
            csr: csr_request(&key)?,
        });
    }
    let batches: Arc<Vec<Vec<SignX509SvidRequest>>> =
        Arc::new(requests.chunks(batch).map(<[_]>::to_vec).collect());
    for requests in batches.iter() {
        sign(&node, requests.clone()).await?;
    }
    Ok(Prepared { node, batches })
}

/// raw, load, raw, ..., load, raw: `rounds + 1` raw rates and `rounds` load windows.
fn measure_rounds(
    rt: &Runtime,
    prepared: &Prepared,
    pid: u32,
    rounds: usize,
    load: Duration,
    raw_time: Duration,
) -> Result<(Vec<f64>, Vec<Window>)> {
    let mut raws = vec![raw::pinned(CPU, raw_time)?];
    let mut windows = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        windows.push(rt.block_on(load_window(prepared, pid, load))?);
        raws.push(raw::pinned(CPU, raw_time)?);
    }
    Ok((raws, windows))
}

/// `IN_FLIGHT` callers sign batches for `load`.
pub(crate) async fn load_window(prepared: &Prepared, pid: u32, load: Duration) -> Result<Window> {
    let cpu_start = cpu_time(pid)?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..IN_FLIGHT {
        let (node, batches) = (prepared.node.clone(), prepared.batches.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Samples::with_capacity(1024);
            let mut signed = 0_usize;
            let mut next = worker;
            while start.elapsed() < load {
                let requests = batches[next % batches.len()].clone();
                next += IN_FLIGHT;
                let call = Instant::now();
                signed += sign(&node, requests).await?;
                latency.push(call.elapsed());
            }
            Ok::<_, anyhow::Error>((signed, latency))
        }));
    }
    let mut signed = 0;
    let mut latency = Samples::default();
    for worker in workers {
        let (n, samples) = worker.await??;
        signed += n;
        latency.extend(samples);
    }
    let elapsed = start.elapsed();
    Ok(Window {
        svids_per_s: rate(signed, elapsed),
        elapsed,
        latency,
        server_cpu: cpu_time(pid)? - cpu_start,
    })
}

/// Sets the CPU affinity of every thread of this process with `taskset -a -p` (no `unsafe`
/// needed); returns whether it worked.
pub(crate) fn set_own_affinity(cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates `count` entries under `parent`; returns their IDs.
async fn create_entries(admin: &Admin, parent: &str, count: usize) -> Result<Vec<String>> {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let (admin, parent, sink) = (admin.clone(), parent.to_owned(), ids.clone());
    bulk(count, 16, Duration::from_secs(600), move |i| {
        let (admin, parent, sink) = (admin.clone(), parent.clone(), sink.clone());
        async move {
            let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/issued/{i}");
            let entry = admin
                .create_entry(&spiffe_id, &parent, &["unix:uid:4242".into()], None)
                .await?;
            sink.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(entry.id);
            Ok(())
        }
    })
    .await?;
    let ids = ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok(ids)
}

/// Signs one batch; fails unless every CSR was signed.
async fn sign(node: &Node, requests: Vec<SignX509SvidRequest>) -> Result<usize> {
    let expected = requests.len();
    let response = node
        .client
        .clone()
        .sign_x509_svids(SignX509SvidsRequest { requests })
        .await
        .context("SignX509Svids")?
        .into_inner();
    if let Some(refused) = response
        .results
        .iter()
        .find(|r| r.code != 0 || r.cert_chain.is_empty())
    {
        bail!(
            "server refused entry {}: code {} {}",
            refused.entry_id,
            refused.code,
            refused.message
        );
    }
    if response.results.len() != expected {
        bail!("asked for {expected} SVIDs, got {}", response.results.len());
    }
    Ok(expected)
}

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
const CPU: &str = "0";
/// Calls in flight at once, so the pinned server never waits for the client.
const IN_FLIGHT: usize = 6;

/// Runs the scenario and returns its JSON report.
///
/// Fails when the server does not start or refuses to sign.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (entries, batch, load, raw_time) = match mode {
        Mode::Quick => (
            100,
            50,
            Duration::from_millis(1500),
            Duration::from_millis(500),
        ),
        Mode::Full => (1000, 250, Duration::from_secs(10), Duration::from_secs(3)),
    };
    let options = ServerOptions {
        command_prefix: vec!["taskset".into(), "-c".into(), CPU.into()],
        ..ServerOptions::default()
    };
    let server = Server::start_with(options)?;
    let pid = server.pid().context("server pid")?;
    let raw_before = raw::pinned(CPU, raw_time)?;
    // Keep the bench's own threads off the server's core while it measures.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus > 1 && set_own_affinity(&format!("1-{}", cpus - 1));
    let measured = rt.block_on(measure(&server, pid, entries, batch, load));
    if pinned {
        set_own_affinity(&format!("0-{}", cpus - 1));
    }
    let measured = measured?;
    let raw_after = raw::pinned(CPU, raw_time)?;
    let limit = median(&[raw_before, raw_after]);
    let ratio = measured.svids_per_s / limit;
    Ok(json!({
        "scenario": "issuance",
        "svids_per_s": round3(measured.svids_per_s),
        "batch_size": batch,
        "calls_in_flight": IN_FLIGHT,
        "entries": entries,
        "duration_s": round3(measured.elapsed.as_secs_f64()),
        "batch_latency": measured.latency.summary(),
        "server_cpu_busy": round3(measured.server_busy),
        "bench_threads_kept_off_cpu0": pinned,
        "limit": {
            "what": "aws-lc-rs P-256 verify (CSR-sized message) + sign (TBS-sized message), one thread on the same core",
            "ops_per_s": round3(limit),
            "before_ops_per_s": round3(raw_before),
            "after_ops_per_s": round3(raw_after),
        },
        "ratio": round3(ratio),
        "target": ">= 0.70",
        "met": ratio >= 0.70,
    }))
}

struct Measured {
    svids_per_s: f64,
    elapsed: Duration,
    latency: Samples,
    /// Share of the run the pinned server spent on the CPU (1.0 = the core was saturated).
    server_busy: f64,
}

async fn measure(
    server: &Server,
    pid: u32,
    entries: usize,
    batch: usize,
    load: Duration,
) -> Result<Measured> {
    let admin = Admin::connect(&server.admin_socket).await?;
    let attestor = Attestor::connect(&admin, &server.address).await?;
    let node = attestor
        .node(&admin, &format!("spiffe://{TRUST_DOMAIN}/bench/issuer"))
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
    // Warm up: every entry signed once, and every result checked.
    for requests in batches.iter() {
        sign(&node, requests.clone()).await?;
    }
    let cpu_start = cpu_time(pid)?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..IN_FLIGHT {
        let (node, batches) = (node.clone(), batches.clone());
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
    let server_busy = (cpu_time(pid)? - cpu_start).as_secs_f64() / elapsed.as_secs_f64();
    Ok(Measured {
        svids_per_s: rate(signed, elapsed),
        elapsed,
        latency,
        server_busy,
    })
}

/// Sets the CPU affinity of every thread of this process with `taskset -a -p` (no `unsafe`
/// needed); returns whether it worked.
fn set_own_affinity(cpus: &str) -> bool {
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

//! Scenario `issuance-pg`: the `issuance` load on a server whose store is PostgreSQL, beside
//! the same load on a sled server in the same run (DESIGN 5: at least 60% of the sled
//! figure). Both servers are pinned to the same core and measured in alternating windows;
//! the database runs on the other cores, as a database on the same machine would. Without
//! PostgreSQL here, the scenario says so and skips.

use std::time::Duration;

use anyhow::{Context, Result};
use mandate_integration::postgres::Postgres;
use mandate_integration::{Server, ServerOptions};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::Mode;
use crate::issuance::{CPU, Window, load_window, prepare, set_own_affinity};
use crate::stats::{Samples, median, round3};

/// Runs the scenario and returns its JSON report.
///
/// Fails when a server does not start or refuses to sign.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (entries, batch, rounds, load) = match mode {
        Mode::Quick => (100, 50, 1, Duration::from_millis(1500)),
        Mode::Full => (1000, 250, 5, Duration::from_secs(4)),
    };
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("mandate-bench: issuance-pg skipped: no PostgreSQL here ({e:#})");
            return Ok(json!({
                "scenario": "issuance-pg",
                "skipped": format!("no PostgreSQL here: {e:#}"),
            }));
        }
    };
    let url = pg.create_database()?;
    let pinned = |config: String| ServerOptions {
        config,
        command_prefix: vec!["taskset".into(), "-c".into(), CPU.into()],
        ..ServerOptions::default()
    };
    let sled = Server::start_with(pinned(String::new()))?;
    let on_pg = Server::start_with(pinned(format!(
        "[store]\nkind = \"postgres\"\nurl = \"{url}\"\n"
    )))?;
    let sled_pid = sled.pid().context("sled server pid")?;
    let pg_pid = on_pg.pid().context("postgres server pid")?;
    let sled_node = rt.block_on(prepare(&sled, entries, batch))?;
    let pg_node = rt.block_on(prepare(&on_pg, entries, batch))?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let kept_off = cpus > 1 && set_own_affinity(&format!("1-{}", cpus - 1));
    let measured = || -> Result<Vec<(Window, Window)>> {
        (0..rounds)
            .map(|_| {
                let sled_window = rt.block_on(load_window(&sled_node, sled_pid, load))?;
                let pg_window = rt.block_on(load_window(&pg_node, pg_pid, load))?;
                Ok((sled_window, pg_window))
            })
            .collect()
    };
    let rounds_measured = measured();
    if kept_off {
        set_own_affinity(&format!("0-{}", cpus - 1));
    }
    let windows = rounds_measured?;
    let sled_rates: Vec<f64> = windows.iter().map(|(s, _)| s.svids_per_s).collect();
    let pg_rates: Vec<f64> = windows.iter().map(|(_, p)| p.svids_per_s).collect();
    let ratios: Vec<f64> = sled_rates
        .iter()
        .zip(&pg_rates)
        .map(|(s, p)| p / s)
        .collect();
    let ratio = median(&ratios);
    let (mut sled_latency, mut pg_latency) = (Samples::default(), Samples::default());
    let mut pg_busy = Duration::ZERO;
    let mut pg_elapsed = Duration::ZERO;
    for (s, p) in windows {
        sled_latency.extend(s.latency);
        pg_busy += p.server_cpu;
        pg_elapsed += p.elapsed;
        pg_latency.extend(p.latency);
    }
    Ok(json!({
        "scenario": "issuance-pg",
        "svids_per_s": round3(median(&pg_rates)),
        "svids_per_s_by_round": pg_rates.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "batch_size": batch,
        "entries": entries,
        "rounds": rounds,
        "load_window_s": load.as_secs_f64(),
        "batch_latency": pg_latency.summary(),
        "server_cpu_busy": round3(pg_busy.as_secs_f64() / pg_elapsed.as_secs_f64()),
        "bench_threads_kept_off_cpu0": kept_off,
        "limit": {
            "what": "the same load on a sled server, same core, windows alternating with PostgreSQL's",
            "svids_per_s": round3(median(&sled_rates)),
            "svids_per_s_by_round": sled_rates.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
            "batch_latency": sled_latency.summary(),
        },
        "ratio": round3(ratio),
        "ratio_by_round": ratios.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "target": ">= 0.60",
        "met": ratio >= 0.60,
    }))
}

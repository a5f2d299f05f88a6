//! `mandate-bench`: measures DESIGN section 5's targets on real `mandate-server` and
//! `mandate-agent` processes, each against a limit measured in the same run.
//!
//! ```text
//! cargo run --release -p mandate-integration --bin mandate-bench -- <scenario> [--quick]
//! ```
//!
//! Scenarios: `issuance`, `issuance-pg`, `workload-jwt`, `workload-x509`, `propagation`,
//! `cross-node`, `scale`, `closed-set`, `subtask`, `all`. Each prints one JSON object on a line of stdout; progress goes to stderr.
//! `--quick` scales
//! everything down (CI runs it on a debug build to keep the harness working; it asserts
//! nothing about speed). See docs/PERFORMANCE.md for the figures.

mod admin;
mod closed_set;
mod cross_node;
mod fixture;
mod issuance;
mod issuance_pg;
mod node;
mod propagation;
mod raw;
mod scale;
mod stats;
mod subtask;
mod trivial;
mod workload_jwt;
mod workload_x509;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Everything scaled down to finish in under a minute.
    Quick,
    /// The sizes DESIGN section 5 names.
    Full,
}

type Scenario = fn(&Runtime, Mode) -> Result<Value>;

const SCENARIOS: [(&str, Scenario); 9] = [
    ("issuance", issuance::run),
    ("issuance-pg", issuance_pg::run),
    ("workload-jwt", workload_jwt::run),
    ("workload-x509", workload_x509::run),
    ("propagation", propagation::run),
    ("cross-node", cross_node::run),
    ("scale", scale::run),
    ("closed-set", closed_set::run),
    ("subtask", subtask::run),
];

const USAGE: &str = "usage: mandate-bench <issuance|issuance-pg|workload-jwt|workload-x509|propagation|cross-node|scale|closed-set|subtask|all> [--quick]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        // Hidden helpers the bench runs as its own child processes.
        Some("serve-trivial") => trivial::child_main(&args[1..]),
        Some("raw-sign") => raw::child_main(&args[1..]),
        _ => run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mandate-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// This very program, for the hidden subcommands it runs as children: `/proc/<our pid>/exe`
/// still names the running image when a rebuild has replaced the file on disk meanwhile (and,
/// unlike `/proc/self/exe`, means us when `taskset` resolves it).
pub(crate) fn own_executable() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/{}/exe", std::process::id()))
}

fn run(args: &[String]) -> Result<()> {
    let mut mode = Mode::Full;
    let mut chosen = None;
    for arg in args {
        match arg.as_str() {
            "--quick" => mode = Mode::Quick,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            name if chosen.is_none() && !name.starts_with('-') => chosen = Some(name.to_owned()),
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let Some(chosen) = chosen else {
        bail!("no scenario given\n{USAGE}")
    };
    let selected: Vec<(&str, Scenario)> = if chosen == "all" {
        SCENARIOS.to_vec()
    } else {
        match SCENARIOS.iter().find(|(name, _)| *name == chosen) {
            Some(found) => vec![*found],
            None => bail!("unknown scenario {chosen:?}\n{USAGE}"),
        }
    };
    // Build the binaries before any clock starts.
    mandate_integration::bin_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut failed = Vec::new();
    for (name, scenario) in selected {
        eprintln!("mandate-bench: running {name} ({mode:?})");
        let start = Instant::now();
        let report = match scenario(&rt, mode) {
            Ok(mut report) => {
                report["profile"] = json!(if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                });
                report["mode"] = json!(if mode == Mode::Quick { "quick" } else { "full" });
                report["wall_s"] = json!(stats::round3(start.elapsed().as_secs_f64()));
                report
            }
            Err(err) => {
                failed.push(name);
                json!({ "scenario": name, "error": format!("{err:#}") })
            }
        };
        println!("{report}");
    }
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

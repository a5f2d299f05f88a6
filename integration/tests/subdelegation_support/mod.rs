//! Helpers for the sub-delegation tests (DESIGN 3.8): delegate entries, the agent CLI's
//! `api delegate`, the SVIDs one agent serves with their delegation, and the closed set a
//! verifier's agent serves.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_core::delegation::{Delegation, from_certificate};
use mandate_integration::cluster::current_uid;
use mandate_integration::workload::{client, task_status_client, with_header};
use mandate_integration::{Agent, CliOutput, Server};
use mandate_proto::delegation::WatchRequest;
use mandate_proto::workload::X509svidRequest;

/// The planner: holds alice's root task on node A.
pub const PLANNER: &str = "spiffe://example.org/ai/planner";
/// The search agent: a delegate entry on node B, delegated to by the planner.
pub const SEARCH: &str = "spiffe://example.org/ai/search";
/// The fetch agent: a delegate entry on node A, delegated to by the search agent.
pub const FETCH: &str = "spiffe://example.org/ai/fetch";

/// Registers a delegate entry for this process's uid on `agent`; returns its ID.
pub fn delegate_entry(
    server: &Server,
    agent: &Agent,
    spiffe_id: &str,
    from: &[&str],
) -> Result<String> {
    let selector = format!("unix:uid:{}", current_uid());
    let mut args = vec!["--selector", selector.as_str()];
    for f in from {
        args.extend(["--delegate-from", f]);
    }
    server.create_entry(spiffe_id, &agent.spiffe_id, &args)
}

/// `mandate-agent api delegate` on `agent` with `args`.
pub fn delegate(agent: &Agent, args: &[&str]) -> Result<CliOutput> {
    let mut all = vec!["api", "delegate"];
    all.extend_from_slice(args);
    agent.cli(&all)
}

/// `api delegate` that must succeed; returns the sub-task ID (all it prints).
pub fn delegate_ok(agent: &Agent, args: &[&str]) -> Result<String> {
    let out = delegate(agent, args)?;
    if !out.success() {
        bail!("api delegate {args:?} failed: {}", out.stderr.trim());
    }
    let id = out.stdout.trim().to_owned();
    if id.is_empty() || id.contains(char::is_whitespace) {
        bail!("api delegate printed {:?}, not one ID", out.stdout);
    }
    Ok(id)
}

/// Asserts `out` is a refusal: non-zero exit, nothing on stdout, one line on stderr that
/// contains `needle`.
pub fn assert_refused(out: &CliOutput, needle: &str) {
    assert!(!out.success(), "accepted: {}", out.stdout);
    assert!(
        out.stdout.trim().is_empty(),
        "stdout on refusal: {:?}",
        out.stdout
    );
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(needle), "{err:?} does not name {needle:?}");
}

/// One X509-SVID the agent serves: SPIFFE ID, hint, delegation.
#[derive(Debug, Clone)]
pub struct Served {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The Workload API hint.
    pub hint: String,
    /// The delegation extension, when present.
    pub delegation: Option<Delegation>,
}

/// The SVIDs `socket` serves this process now (empty when it serves none).
pub async fn served(socket: &Path) -> Result<Vec<Served>> {
    let mut api = client(socket).await?;
    let mut stream = match api.fetch_x509svid(with_header(X509svidRequest {})).await {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == tonic::Code::PermissionDenied => return Ok(Vec::new()),
        Err(s) => return Err(s.into()),
    };
    let first = match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(Some(m))) => m,
        Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => return Ok(Vec::new()),
        other => bail!("no first X509 message: {other:?}"),
    };
    first
        .svids
        .iter()
        .map(|svid| {
            let leaf = leaf(&svid.x509_svid)?;
            Ok(Served {
                spiffe_id: svid.spiffe_id.clone(),
                hint: svid.hint.clone(),
                delegation: from_certificate(&leaf)?,
            })
        })
        .collect()
}

fn leaf(chain: &[u8]) -> Result<Vec<u8>> {
    let (rest, _) = x509_parser::parse_x509_certificate(chain).context("leaf parses")?;
    Ok(chain[..chain.len() - rest.len()].to_vec())
}

/// Polls `socket` until `check` holds on what it serves; returns that.
pub async fn wait_served(
    socket: &Path,
    within: Duration,
    check: impl Fn(&[Served]) -> bool,
) -> Result<Vec<Served>> {
    let deadline = Instant::now() + within;
    loop {
        let now = served(socket).await?;
        if check(&now) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            bail!("not served within {within:?}: {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The SVID with hint `hint`, when served.
pub fn with_hint<'a>(served: &'a [Served], hint: &str) -> Option<&'a Served> {
    served.iter().find(|s| s.hint == hint)
}

/// Waits until the closed set served on `socket` (a verifier's agent) holds every one of
/// `tasks`; returns how long after `since` that was.
pub async fn wait_closed(
    socket: &Path,
    tasks: &[String],
    since: Instant,
    within: Duration,
) -> Result<Duration> {
    let mut status = task_status_client(socket).await?;
    let mut stream = status
        .watch(with_header(WatchRequest {}))
        .await?
        .into_inner();
    let want: BTreeSet<&str> = tasks.iter().map(String::as_str).collect();
    loop {
        let left = within.saturating_sub(since.elapsed());
        let next = tokio::time::timeout(left, stream.message()).await;
        let snapshot = match next {
            Ok(Ok(Some(s))) => s,
            other => bail!("closed set not complete within {within:?}: {other:?}"),
        };
        let have: BTreeSet<&str> = snapshot
            .closed_task_ids
            .iter()
            .map(String::as_str)
            .collect();
        if want.is_subset(&have) {
            return Ok(since.elapsed());
        }
    }
}

//! Scenario `cross-node`: from the `CloseTask` call until `mandate-verify`, fed by the agent
//! of ANOTHER node than the caller's, refuses the caller (DESIGN 5: p99 under 200 ms on
//! loopback with two agents); also from `CloseTask` returning, and the call's own time. The caller's SVIDs come from node A's Workload API; the verifier
//! follows node B's task-status feed and CRLs, as a purchasing service on another host would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_core::x509::split_der_certs;
use mandate_integration::{Agent, Server, TRUST_DOMAIN};
use mandate_proto::workload::X509svidResponse;
use mandate_verify::status::TaskStatusConfig;
use mandate_verify::{CallerIdentity, DelegationPolicy, Refusal, TaskStatusWatcher, Verifier};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::Mode;
use crate::admin::Admin;
use crate::fixture::{holds, read_until, x509_stream};
use crate::stats::{Samples, own_uid};

/// How long one trial may take before the scenario fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the verifier is asked while waiting for the refusal.
const POLL: Duration = Duration::from_micros(250);

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start or a close never reaches the verifier.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let trials = match mode {
        Mode::Quick => 20,
        Mode::Full => 250,
    };
    let server = Server::start()?;
    let caller_node = Agent::start(&server, "bench-a")?;
    let verifier_node = Agent::start(&server, "bench-b")?;
    let admin = rt.block_on(Admin::connect(&server.admin_socket))?;
    let selector = format!("unix:uid:{}", own_uid()?);
    let (samples, calls, from_call, by_crl) = rt.block_on(async {
        // This process needs an identity on node B to read its feeds, and an anchor on node A
        // so that A's stream never ends when a trial's identity goes.
        let reader = format!("spiffe://{TRUST_DOMAIN}/bench/verifier");
        let anchor = format!("spiffe://{TRUST_DOMAIN}/bench/anchor");
        let own = std::slice::from_ref(&selector);
        admin
            .create_entry(&reader, &verifier_node.spiffe_id, own, None)
            .await?;
        admin
            .create_entry(&anchor, &caller_node.spiffe_id, own, None)
            .await?;
        let mut stream = open_stream(&caller_node).await?;
        read_until(&mut stream, TRIAL_TIMEOUT, |m| holds(m, &anchor)).await?;
        let watcher = TaskStatusWatcher::spawn(TaskStatusConfig::new(&verifier_node.socket_path));
        if !watcher.wait_ready(TRIAL_TIMEOUT).await {
            bail!("no task-status snapshot or CRLs from node B within {TRIAL_TIMEOUT:?}");
        }
        let verifier = Verifier::new(DelegationPolicy::require_under(["/bench/task"]), watcher);
        let trial = Trial {
            admin: &admin,
            caller_node: &caller_node,
            selector: &selector,
            verifier: &verifier,
        };
        let mut samples = Samples::with_capacity(trials);
        let mut calls = Samples::with_capacity(trials);
        let mut from_call = Samples::with_capacity(trials);
        let mut by_crl = 0;
        for i in 0..trials {
            let outcome = trial.run(&mut stream, i).await?;
            samples.push(outcome.after_return);
            calls.push(outcome.call);
            from_call.push(outcome.from_call);
            by_crl += usize::from(outcome.by_crl);
        }
        Ok::<_, anyhow::Error>((samples, calls, from_call, by_crl))
    })?;
    Ok(json!({
        "scenario": "cross-node",
        "close_call_to_refusal_on_other_node": from_call.summary(),
        "close_return_to_refusal_on_other_node": samples.summary(),
        "close_task_call": calls.summary(),
        "refused_first_by_crl": by_crl,
        "verifier_poll_interval_ms": POLL.as_secs_f64() * 1000.0,
        "target": "p99 < 200 ms",
        "met": from_call.quantile_ms(0.99) < 200.0,
    }))
}

/// The caller node's `FetchX509SVID` stream, once the anchor's SVID is issued.
async fn open_stream(node: &Agent) -> Result<Streaming<X509svidResponse>> {
    let start = Instant::now();
    loop {
        match x509_stream(&node.socket_path).await {
            Ok(stream) => return Ok(stream),
            Err(err) if start.elapsed() > TRIAL_TIMEOUT => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What one trial measured.
struct Outcome {
    /// From the `CloseTask` call until the refusal.
    from_call: Duration,
    /// From `CloseTask` returning until the refusal (zero when it came before the return).
    after_return: Duration,
    /// How long the `CloseTask` call took (the task end and, after it, the CRL are durable).
    call: Duration,
    /// Whether the CRL, not the task-status feed, refused first.
    by_crl: bool,
}

/// What one trial needs.
struct Trial<'a> {
    admin: &'a Admin,
    caller_node: &'a Agent,
    selector: &'a str,
    verifier: &'a Verifier,
}

impl Trial<'_> {
    /// Opens a task, binds an entry on node A to it, takes its SVID and checks that the
    /// verifier on node B allows it; closes the task and times until the verifier refuses.
    async fn run(&self, stream: &mut Streaming<X509svidResponse>, i: usize) -> Result<Outcome> {
        let task = self.admin.open_task().await?;
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/task/{i}");
        self.admin
            .create_entry(
                &spiffe_id,
                &self.caller_node.spiffe_id,
                &[self.selector.to_owned()],
                Some(&task),
            )
            .await?;
        let (message, _) = read_until(stream, TRIAL_TIMEOUT, |m| holds(m, &spiffe_id)).await?;
        let svid = message
            .svids
            .iter()
            .find(|s| s.spiffe_id == spiffe_id)
            .context("svid vanished")?;
        let leaf = split_der_certs(&svid.x509_svid)?
            .into_iter()
            .next()
            .context("empty x509_svid")?;
        let caller = CallerIdentity::from_certificate(&leaf, self.verifier.policy())?;
        self.verifier
            .authorize(&caller, "po.read", None)
            .context("the open task's SVID was refused on node B")?;
        // The close runs beside the polls, so the refusal is timed from the call's start too:
        // `CloseTask` returns after the task end and then the new CRL are durable, and the
        // verifier on node B usually refuses before it returns.
        let admin = self.admin.clone();
        let closing = task.clone();
        let calling = Instant::now();
        let close = tokio::spawn(async move {
            admin.close_task(&closing).await?;
            Ok::<_, anyhow::Error>(Instant::now())
        });
        let (refused, by_crl) = loop {
            match self.verifier.authorize(&caller, "po.read", None) {
                Ok(_) if calling.elapsed() > TRIAL_TIMEOUT => {
                    bail!("task {task} still allowed on node B after {TRIAL_TIMEOUT:?}")
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(Refusal::TaskClosed { .. }) => break (Instant::now(), false),
                Err(Refusal::CertificateRevoked { .. }) => break (Instant::now(), true),
                Err(other) => bail!("refused for another reason than the closed task: {other}"),
            }
        };
        let returned = close.await??;
        Ok(Outcome {
            from_call: refused - calling,
            after_return: refused.saturating_duration_since(returned),
            call: returned - calling,
            by_crl,
        })
    }
}

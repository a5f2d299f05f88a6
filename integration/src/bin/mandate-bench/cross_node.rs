//! Scenario `cross-node`: from `CloseTask` returning until `mandate-verify`, fed by the agent
//! of ANOTHER node than the caller's, refuses the caller (DESIGN 5: p99 under 200 ms on
//! loopback with two agents). The caller's SVIDs come from node A's Workload API; the verifier
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
    let (samples, by_crl) = rt.block_on(async {
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
        let mut stream = x509_stream(&caller_node.socket_path).await?;
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
        let mut by_crl = 0;
        for i in 0..trials {
            let (latency, crl) = trial.run(&mut stream, i).await?;
            samples.push(latency);
            by_crl += usize::from(crl);
        }
        Ok::<_, anyhow::Error>((samples, by_crl))
    })?;
    Ok(json!({
        "scenario": "cross-node",
        "task_close_to_refusal_on_other_node": samples.summary(),
        "refused_first_by_crl": by_crl,
        "verifier_poll_interval_ms": POLL.as_secs_f64() * 1000.0,
        "target": "p99 < 200 ms",
        "met": samples.quantile_ms(0.99) < 200.0,
    }))
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
    /// Returns the latency and whether the CRL (not the task-status feed) refused first.
    async fn run(
        &self,
        stream: &mut Streaming<X509svidResponse>,
        i: usize,
    ) -> Result<(Duration, bool)> {
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
        self.admin.close_task(&task).await?;
        let closed = Instant::now();
        loop {
            match self.verifier.authorize(&caller, "po.read", None) {
                Ok(_) if closed.elapsed() > TRIAL_TIMEOUT => {
                    bail!("task {task} still allowed on node B after {TRIAL_TIMEOUT:?}")
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(Refusal::TaskClosed { .. }) => return Ok((closed.elapsed(), false)),
                Err(Refusal::CertificateRevoked { .. }) => return Ok((closed.elapsed(), true)),
                Err(other) => bail!("refused for another reason than the closed task: {other}"),
            }
        }
    }
}

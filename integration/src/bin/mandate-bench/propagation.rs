//! Scenario `propagation`: (a) from `CreateEntry` returning until an open `FetchX509SVID`
//! stream holds the new SVID; (b) from `CloseTask` returning until `mandate-verify` refuses the
//! caller on a connection that is already open (DESIGN 5: p99 under 200 ms for both).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_core::x509::split_der_certs;
use mandate_integration::TRUST_DOMAIN;
use mandate_proto::workload::X509svidResponse;
use mandate_verify::status::TaskStatusConfig;
use mandate_verify::{CallerIdentity, DelegationPolicy, Refusal, TaskStatusWatcher, Verifier};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::Mode;
use crate::fixture::{Fixture, holds, read_until, x509_stream};
use crate::stats::Samples;

/// How long one trial may take before the scenario fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the verifier is asked while waiting for the refusal.
const POLL: Duration = Duration::from_micros(250);

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start or a change never arrives.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let trials = match mode {
        Mode::Quick => 20,
        Mode::Full => 250,
    };
    let fixture = Fixture::start(rt)?;
    let (entry, close) = rt.block_on(async {
        // An entry that stays, so the stream never ends when a trial's identity goes.
        let anchor = format!("spiffe://{TRUST_DOMAIN}/bench/anchor");
        fixture
            .admin
            .create_entry(
                &anchor,
                &fixture.agent.spiffe_id,
                std::slice::from_ref(&fixture.selector),
                None,
            )
            .await?;
        let mut stream = open_stream(&fixture).await?;
        read_until(&mut stream, TRIAL_TIMEOUT, |m| holds(m, &anchor)).await?;
        let entry = entry_trials(&fixture, &mut stream, trials).await?;
        let close = close_trials(&fixture, &mut stream, trials).await?;
        Ok::<_, anyhow::Error>((entry, close))
    })?;
    let met = entry.quantile_ms(0.99) < 200.0 && close.quantile_ms(0.99) < 200.0;
    Ok(json!({
        "scenario": "propagation",
        "entry_create_to_workload": entry.summary(),
        "task_close_to_verifier_refusal": close.summary(),
        "verifier_poll_interval_ms": POLL.as_secs_f64() * 1000.0,
        "target": "p99 < 200 ms for both",
        "met": met,
    }))
}

async fn open_stream(fixture: &Fixture) -> Result<Streaming<X509svidResponse>> {
    let start = Instant::now();
    loop {
        match x509_stream(&fixture.agent.socket_path).await {
            Ok(stream) => return Ok(stream),
            Err(err) if start.elapsed() > TRIAL_TIMEOUT => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// (a): create an entry, time until the stream holds it, delete it, wait until it is gone.
async fn entry_trials(
    fixture: &Fixture,
    stream: &mut Streaming<X509svidResponse>,
    trials: usize,
) -> Result<Samples> {
    let mut samples = Samples::with_capacity(trials);
    for i in 0..trials {
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/prop/{i}");
        let parent = &fixture.agent.spiffe_id;
        let entry = fixture
            .admin
            .create_entry(
                &spiffe_id,
                parent,
                std::slice::from_ref(&fixture.selector),
                None,
            )
            .await?;
        let created = Instant::now();
        let (_, arrived) = read_until(stream, TRIAL_TIMEOUT, |m| holds(m, &spiffe_id)).await?;
        samples.push(arrived.duration_since(created));
        fixture.admin.delete_entry(&entry.id).await?;
        read_until(stream, TRIAL_TIMEOUT, |m| !holds(m, &spiffe_id)).await?;
    }
    Ok(samples)
}

/// (b): open a task, bind an entry to it, take the SVID from the stream and check that the
/// verifier allows it; close the task and time until the verifier refuses.
async fn close_trials(
    fixture: &Fixture,
    stream: &mut Streaming<X509svidResponse>,
    trials: usize,
) -> Result<Samples> {
    let policy = DelegationPolicy::require_under(["/bench/task"]);
    let watcher = TaskStatusWatcher::spawn(TaskStatusConfig::new(&fixture.agent.socket_path));
    if !watcher.wait_ready(TRIAL_TIMEOUT).await {
        bail!("no task-status snapshot from the agent within {TRIAL_TIMEOUT:?}");
    }
    let verifier = Verifier::new(policy, watcher);
    let mut samples = Samples::with_capacity(trials);
    for i in 0..trials {
        let task = fixture.admin.open_task().await?;
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/bench/task/{i}");
        let (parent, selector) = (&fixture.agent.spiffe_id, fixture.selector.clone());
        fixture
            .admin
            .create_entry(&spiffe_id, parent, &[selector], Some(&task))
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
        let caller = CallerIdentity::from_certificate(&leaf, verifier.policy())?;
        if caller
            .delegation()
            .is_none_or(|d| d.task.id.as_str() != task)
        {
            bail!("the SVID of {spiffe_id} does not carry task {task}");
        }
        verifier
            .authorize(&caller, "po.read", None)
            .context("the open task's SVID was refused")?;
        fixture.admin.close_task(&task).await?;
        let closed = Instant::now();
        loop {
            match verifier.authorize(&caller, "po.read", None) {
                Ok(_) if closed.elapsed() > TRIAL_TIMEOUT => {
                    bail!("task {task} still allowed after {TRIAL_TIMEOUT:?}")
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(Refusal::TaskClosed { .. }) => break,
                Err(other) => bail!("refused for another reason than the closed task: {other}"),
            }
        }
        samples.push(closed.elapsed());
    }
    Ok(samples)
}

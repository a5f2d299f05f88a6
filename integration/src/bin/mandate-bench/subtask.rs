//! Scenario `subtask` (DESIGN 5, 3.8): (1) from `Delegation/OpenSubtask` on node A until the
//! delegate workload on node B holds the sub-task's SVID (p99 under 200 ms), one trial per
//! sub-task; (2) the cascade: a root with 1,000 sub-tasks bound to node B's delegate is closed,
//! timed until `mandate-verify`, fed by node A (another node than the delegates'), refuses the
//! last sub-task's SVID.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mandate_core::x509::split_der_certs;
use mandate_integration::workload::{channel, with_header};
use mandate_integration::{Agent, Server, TRUST_DOMAIN};
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::admin::{CloseTaskRequest, CreateEntryRequest, OpenTaskRequest};
use mandate_proto::delegation::delegation_client::DelegationClient;
use mandate_proto::delegation::{CloseSubtaskRequest, OpenSubtaskRequest};
use mandate_proto::workload::X509svidResponse;
use mandate_verify::status::TaskStatusConfig;
use mandate_verify::{CallerIdentity, DelegationPolicy, Refusal, TaskStatusWatcher, Verifier};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::Mode;
use crate::fixture::{read_until, x509_stream};
use crate::stats::{Samples, own_uid};

const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_micros(250);

/// Runs the scenario and returns its JSON report.
///
/// Fails when the processes do not start, a sub-task never reaches its delegate, or the
/// cascade never reaches the verifier.
pub(crate) fn run(rt: &Runtime, mode: Mode) -> Result<Value> {
    let (trials, fan_out) = match mode {
        Mode::Quick => (20, 100),
        Mode::Full => (250, 1000),
    };
    let server = Server::start()?;
    let node_a = Agent::start(&server, "bench-a")?;
    let node_b = Agent::start(&server, "bench-b")?;
    rt.block_on(async {
        let bench = Bench::setup(&server, &node_a, &node_b).await?;
        let open = bench.open_latency(trials).await?;
        let (cascade, cascade_open) = bench.cascade(fan_out).await?;
        Ok(json!({
            "scenario": "subtask",
            "subtask_open_to_delegate_svid": open.summary(),
            "target": "p99 < 200 ms",
            "met": open.quantile_ms(0.99) < 200.0,
            "cascade_subtasks": fan_out,
            "cascade_open_s": cascade_open.as_secs_f64(),
            "cascade_close_sent_to_refusal_of_last_on_other_node_ms": cascade.as_secs_f64() * 1000.0,
            "cascade_target": "under 1 s (DESIGN 3.4, 3.8)",
            "cascade_met": cascade < Duration::from_secs(1),
        }))
    })
}

/// The planner of part 1's root and of part 2's root (one entry each: an entry is never
/// rebound to another task).
const PLANNERS: [&str; 2] = ["/bench/planner/open", "/bench/planner/cascade"];
const SEARCH: &str = "/bench/search";

struct Bench {
    admin: AdminClient<Channel>,
    delegation: DelegationClient<Channel>,
    selector: String,
    node_a: String,
    node_b_socket: std::path::PathBuf,
    verifier: Verifier,
    stream: tokio::sync::Mutex<Streaming<X509svidResponse>>,
}

impl Bench {
    async fn setup(server: &Server, node_a: &Agent, node_b: &Agent) -> Result<Self> {
        let mut admin = AdminClient::new(channel(&server.admin_socket).await?);
        let selector = format!("unix:uid:{}", own_uid()?);
        let entry = |spiffe: &str, parent: &str, from: &[&str]| CreateEntryRequest {
            spiffe_id: format!("spiffe://{TRUST_DOMAIN}{spiffe}"),
            parent_id: parent.to_owned(),
            selectors: vec![selector.clone()],
            delegate_from: from
                .iter()
                .map(|f| format!("spiffe://{TRUST_DOMAIN}{f}"))
                .collect(),
            ..CreateEntryRequest::default()
        };
        // Anchors on both nodes: this process reads B's stream and A's feeds throughout.
        admin
            .create_entry(entry("/bench/anchor", &node_a.spiffe_id, &[]))
            .await?;
        admin
            .create_entry(entry("/bench/anchor", &node_b.spiffe_id, &[]))
            .await?;
        admin
            .create_entry(entry(SEARCH, &node_b.spiffe_id, &PLANNERS))
            .await?;
        let watcher = TaskStatusWatcher::spawn(TaskStatusConfig::new(&node_a.socket_path));
        if !watcher.wait_ready(TRIAL_TIMEOUT).await {
            bail!("no task-status snapshot from node A within {TRIAL_TIMEOUT:?}");
        }
        let mut stream = x509_stream(&node_b.socket_path).await?;
        read_until(&mut stream, TRIAL_TIMEOUT, |m| !m.svids.is_empty()).await?;
        Ok(Self {
            admin,
            delegation: DelegationClient::new(channel(&node_a.socket_path).await?),
            selector,
            node_a: node_a.spiffe_id.clone(),
            node_b_socket: node_b.socket_path.clone(),
            verifier: Verifier::new(DelegationPolicy::require_under(["/bench/search"]), watcher),
            stream: tokio::sync::Mutex::new(stream),
        })
    }

    /// Opens a root task for alice, binds the planner on node A to it, and waits until the
    /// planner holds its SVID there.
    async fn root(&self, name: &str, planner: &str) -> Result<String> {
        let mut admin = self.admin.clone();
        let deadline = mandate_core::time::unix_seconds(std::time::SystemTime::now()) + 3600;
        let task = admin
            .open_task(OpenTaskRequest {
                principal: "user:alice@example.org".into(),
                purpose: name.into(),
                actions: vec!["supplier.search".into()],
                deadline_unix: deadline,
                max_depth: 1,
                ..OpenTaskRequest::default()
            })
            .await?
            .into_inner()
            .id;
        admin
            .create_entry(CreateEntryRequest {
                spiffe_id: format!("spiffe://{TRUST_DOMAIN}{planner}"),
                parent_id: self.node_a.clone(),
                selectors: vec![self.selector.clone()],
                task_id: task.clone(),
                ..CreateEntryRequest::default()
            })
            .await?;
        let start = Instant::now();
        loop {
            let mut delegation = self.delegation.clone();
            // Probe with a sub-task the delegator may not open (no action): refused with
            // InvalidArgument once its SVID is there, PermissionDenied before.
            let probe = delegation
                .open_subtask(with_header(OpenSubtaskRequest {
                    target_id: format!("spiffe://{TRUST_DOMAIN}{SEARCH}"),
                    ..OpenSubtaskRequest::default()
                }))
                .await;
            if matches!(&probe, Err(s) if s.code() == tonic::Code::InvalidArgument) {
                return Ok(task);
            }
            if start.elapsed() > TRIAL_TIMEOUT {
                bail!("the planner has no SVID of {task} on node A: {probe:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn open(&self, i: usize) -> Result<String> {
        let mut delegation = self.delegation.clone();
        Ok(delegation
            .open_subtask(with_header(OpenSubtaskRequest {
                target_id: format!("spiffe://{TRUST_DOMAIN}{SEARCH}"),
                actions: vec!["supplier.search".into()],
                purpose: format!("search {i}"),
                ..OpenSubtaskRequest::default()
            }))
            .await
            .context("OpenSubtask")?
            .into_inner()
            .task_id)
    }

    /// Part 1: each trial opens a sub-task and waits for its SVID on node B, then closes it.
    async fn open_latency(&self, trials: usize) -> Result<Samples> {
        let root = self.root("bench sub-task open", PLANNERS[0]).await?;
        let mut samples = Samples::with_capacity(trials);
        let mut stream = self.stream.lock().await;
        for i in 0..trials {
            let start = Instant::now();
            let id = self.open(i).await?;
            let (_, arrived) = read_until(&mut stream, TRIAL_TIMEOUT, |m| {
                m.svids.iter().any(|s| s.hint == id)
            })
            .await?;
            samples.push(arrived - start);
            let mut delegation = self.delegation.clone();
            delegation
                .close_subtask(with_header(CloseSubtaskRequest {
                    task_id: id,
                    ..CloseSubtaskRequest::default()
                }))
                .await
                .context("CloseSubtask")?;
        }
        self.close(&root).await?;
        Ok(samples)
    }

    /// Part 2: a root with `fan_out` sub-tasks; close it, time until node A's verifier
    /// refuses the last sub-task's SVID (held on node B). Returns that and the open time.
    async fn cascade(&self, fan_out: usize) -> Result<(Duration, Duration)> {
        let root = self.root("bench cascade", PLANNERS[1]).await?;
        let opened = Instant::now();
        let mut last = String::new();
        for i in 0..fan_out {
            last = self.open(i).await?;
        }
        let open_time = opened.elapsed();
        let mut stream = self.stream.lock().await;
        let (message, _) = read_until(&mut stream, TRIAL_TIMEOUT * 4, |m| {
            m.svids.iter().any(|s| s.hint == last)
        })
        .await?;
        let svid = message
            .svids
            .iter()
            .find(|s| s.hint == last)
            .context("the last sub-task's SVID vanished")?;
        let leaf = split_der_certs(&svid.x509_svid)?
            .into_iter()
            .next()
            .context("empty x509_svid")?;
        let caller = CallerIdentity::from_certificate(&leaf, self.verifier.policy())?;
        self.verifier
            .authorize(&caller, "supplier.search", None)
            .context("the open sub-task's SVID was refused on node A")?;
        // From the moment CloseTask is sent: the write, the CRL and the push all count.
        let closed = Instant::now();
        self.close(&root).await?;
        loop {
            match self.verifier.authorize(&caller, "supplier.search", None) {
                Ok(_) if closed.elapsed() > TRIAL_TIMEOUT => {
                    bail!("sub-task {last} still allowed after its root closed")
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(Refusal::TaskClosed { .. } | Refusal::CertificateRevoked { .. }) => {
                    return Ok((closed.elapsed(), open_time));
                }
                Err(other) => bail!("refused for another reason than the cascade: {other}"),
            }
        }
    }

    async fn close(&self, task: &str) -> Result<()> {
        let mut admin = self.admin.clone();
        admin
            .close_task(CloseTaskRequest {
                id: task.to_owned(),
                reason: "bench".into(),
            })
            .await
            .context("CloseTask")?;
        Ok(())
    }
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("node_b_socket", &self.node_b_socket)
            .finish_non_exhaustive()
    }
}

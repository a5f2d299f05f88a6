//! Operational HTTP listener (hyper 1): `/metrics` in Prometheus text format, `/live` and
//! `/ready`, plus the counters the services bump.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::context::Context;

/// A counter or gauge.
#[derive(Debug, Default)]
pub struct Counter(AtomicI64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one (gauges).
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// X509- and JWT-SVIDs issued.
    pub svid_issued: Counter,
    /// Issuance refusals.
    pub svid_denied: Counter,
    /// Successful attestations.
    pub attestations: Counter,
    /// Refused attestations.
    pub attest_denied: Counter,
    /// Open sync streams.
    pub sync_streams: Counter,
    /// Set once every listener is up.
    pub ready: AtomicBool,
}

/// Renders the Prometheus text exposition.
pub fn render(ctx: &Context) -> String {
    let m = &ctx.metrics;
    let (entries, tasks, agents, revision) = {
        let state = ctx.registry.read();
        (
            state.index.entry_count(),
            state.index.tasks().count(),
            state.index.agents().count(),
            state.revision,
        )
    };
    let bundle = ctx.ca.bundle();
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    line(
        "mandate_svids_issued_total",
        "counter",
        "SVIDs issued.",
        m.svid_issued.get().to_string(),
    );
    line(
        "mandate_svids_denied_total",
        "counter",
        "SVID requests refused.",
        m.svid_denied.get().to_string(),
    );
    line(
        "mandate_attestations_total",
        "counter",
        "Agents attested.",
        m.attestations.get().to_string(),
    );
    line(
        "mandate_attestations_denied_total",
        "counter",
        "Attestations refused.",
        m.attest_denied.get().to_string(),
    );
    line(
        "mandate_sync_streams",
        "gauge",
        "Open agent sync streams.",
        m.sync_streams.get().to_string(),
    );
    line(
        "mandate_entries",
        "gauge",
        "Registration entries.",
        entries.to_string(),
    );
    line(
        "mandate_tasks",
        "gauge",
        "Tasks in any state.",
        tasks.to_string(),
    );
    line(
        "mandate_agents",
        "gauge",
        "Attested agents.",
        agents.to_string(),
    );
    line(
        "mandate_store_revision",
        "gauge",
        "Current store revision.",
        revision.to_string(),
    );
    line(
        "mandate_bundle_sequence",
        "gauge",
        "Trust bundle sequence.",
        bundle.sequence.to_string(),
    );
    out
}

/// Serves `/metrics`, `/live`, `/ready` on `listener` until the task is dropped.
pub fn spawn(listener: TcpListener, ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(Arc::clone(&ctx), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}

async fn handle(
    ctx: Arc<Context>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, render(&ctx)),
        "/live" => (StatusCode::OK, "live\n".to_owned()),
        "/ready" if ctx.metrics.ready.load(Ordering::SeqCst) => (StatusCode::OK, "ready\n".into()),
        "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// Binds the metrics listener.
///
/// # Errors
/// The address could not be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

//! po-service: a purchase-order service over mTLS (hyper HTTP/1.1, keep-alive) that accepts AI
//! agents acting for a user, and refuses what their delegation does not allow.
//!
//! The caller's identity is read once per connection from the handshake; `authorize` runs on
//! every request, so a task closed while the connection stays open is refused on the next call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mandate_core::SpiffeId;
use mandate_verify::status::socket_path_from_endpoint;
use mandate_verify::{
    CallerIdentity, DelegationPolicy, Refusal, TaskStatusConfig, TaskStatusWatcher, ValueLimit,
    Verifier,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A purchase-order service that authorizes delegated AI agents with mandate-verify.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The Workload API socket of the local agent (`unix:///path`).
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    endpoint: String,
    /// The SVID to serve with when the workload holds several.
    #[arg(long)]
    spiffe_id: Option<SpiffeId>,
    /// SPIFFE ID path prefixes whose callers must carry a delegation (repeatable).
    #[arg(long = "require-delegation-under", default_value = "/ai")]
    require_delegation_under: Vec<String>,
    /// Refuse every delegated caller once the newest task-status snapshot is older than this.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    staleness: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let source = tokio::time::timeout(
        Duration::from_secs(60),
        mandate_verify::tls::x509_source(Some(&args.endpoint), args.spiffe_id.clone()),
    )
    .await
    .context("timed out waiting for an SVID from the Workload API")??;
    let own_id = source
        .svid()
        .context("no SVID from the Workload API")?
        .spiffe_id()
        .clone();
    let tls =
        mandate_verify::tls::server_config(source, own_id.trust_domain().clone(), &[b"http/1.1"])?;

    let status_config = TaskStatusConfig::new(socket_path_from_endpoint(&args.endpoint)?)
        .with_staleness(args.staleness);
    let status = TaskStatusWatcher::spawn(status_config);
    if !status.wait_ready(Duration::from_secs(10)).await {
        tracing::warn!(
            "no task-status snapshot yet: delegated callers are refused until one arrives"
        );
    }
    let policy = DelegationPolicy::require_under(args.require_delegation_under.iter().cloned());
    let verifier = Arc::new(Verifier::new(policy, status));

    let listener = TcpListener::bind(args.listen).await.context("bind")?;
    println!(
        "po-service listening on {} as {own_id}",
        listener.local_addr()?
    );
    let acceptor = TlsAcceptor::from(tls);
    for connection in 1u64.. {
        let (tcp, peer) = listener.accept().await?;
        // Small request/response exchanges: do not let Nagle hold back a write.
        tcp.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        let verifier = verifier.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(acceptor, tcp, verifier, connection).await {
                tracing::info!(%peer, %error, "connection ended");
            }
        });
    }
    Ok(())
}

/// Runs one mTLS connection: the caller is read once, then every request is authorized.
async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    verifier: Arc<Verifier>,
    connection: u64,
) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await.context("tls handshake")?;
    // A refused identity still gets HTTP answers, each one carrying the reason.
    let caller = Arc::new(CallerIdentity::from_tls_stream(&tls, verifier.policy()));
    match caller.as_ref() {
        Ok(c) => {
            tracing::info!(connection, caller = %c.spiffe_id(), delegated = c.delegation().is_some(), "connection")
        }
        Err(refusal) => tracing::warn!(%refusal, "connection from a refused identity"),
    }
    let service = hyper::service::service_fn(move |request| {
        let caller = caller.clone();
        let verifier = verifier.clone();
        async move { Ok::<_, hyper::Error>(handle(request, &caller, &verifier, connection).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .await
        .context("http")
}

/// Answers one request: route to an action, authorize it, and do the (pretend) work.
async fn handle(
    request: Request<Incoming>,
    caller: &Result<CallerIdentity, Refusal>,
    verifier: &Verifier,
    connection: u64,
) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let Some(action) = mandate_examples::action_for(&method, &path) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no route {method} {path}")}),
        );
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return reply(StatusCode::BAD_REQUEST, json!({"error": error.to_string()})),
    };
    let amount = match parse_amount(&body) {
        Ok(amount) => amount,
        Err(error) => return reply(StatusCode::BAD_REQUEST, json!({"error": error})),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(refusal) => {
            tracing::warn!(action, refused = refusal.code(), "refused: {refusal}");
            return refuse(refusal, connection);
        }
    };
    let (principal, task) = caller
        .delegation()
        .map(|d| (d.principal.to_string(), d.task.id.to_string()))
        .unwrap_or_else(|| ("-".into(), "-".into()));
    let amount_text = amount
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into());
    match verifier.authorize(caller, action, amount.as_ref()) {
        Ok(_) => {
            tracing::info!(%principal, %task, action, amount = %amount_text, caller = %caller.spiffe_id(), "allowed");
            let mut body = json!({"ok": true, "action": action, "principal": principal,
                "task": task, "amount": amount.map(|a| a.to_string()), "connection": connection});
            // A sub-task's caller (DESIGN 3.8): who delegated to whom, oldest first.
            if !caller.chain().is_empty() {
                body["depth"] = json!(caller.depth());
                body["chain"] = caller
                    .chain()
                    .iter()
                    .map(|l| json!({"task": l.task_id.as_str(), "actor": l.actor}))
                    .collect();
            }
            reply(StatusCode::OK, body)
        }
        Err(refusal) => {
            tracing::warn!(%principal, %task, action, amount = %amount_text, refused = refusal.code(), "refused: {refusal}");
            refuse(&refusal, connection)
        }
    }
}

/// HTTP 403 with the typed reason, and the connection number to show refusals on one connection.
fn refuse(refusal: &Refusal, connection: u64) -> Response<Full<Bytes>> {
    let mut body = refusal.to_json();
    body["connection"] = json!(connection);
    reply(StatusCode::FORBIDDEN, body)
}

/// Reads `{"amount": "120.00:EUR"}` from a body; an empty body or no `amount` means none.
fn parse_amount(body: &[u8]) -> Result<Option<ValueLimit>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    match value.get("amount") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => text
            .parse()
            .map(Some)
            .map_err(|e| format!("bad amount {text:?}: {e}")),
        Some(other) => Err(format!(
            "amount must be a string like \"120.00:EUR\", got {other}"
        )),
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

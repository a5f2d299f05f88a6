//! task-broker: the system that turns "open a task for user X to do Y" into a Mandate task
//! (DESIGN 3.9). It is itself a workload: it takes its SVID from its local agent and calls the
//! server's admin API over mTLS, where its `[[admin_ids]]` role, `task-broker`, lets it open
//! and close its own tasks and bind entries under its `allowed_paths` to them, nothing else.
//!
//! HTTP (plain, meant for loopback or behind the front end's own TLS):
//! - `POST /tasks` with JSON `{"principal", "purpose", "actions": [..], "deadline": "10m",
//!   "value_limit": "500.00:EUR", "agent": {"spiffe_id", "parent_id", "selectors": [..]}}`
//!   (`value_limit` and `agent` optional) opens the task and, with `agent`, registers the AI
//!   agent's entry bound to it; `201 {"task_id", "state", "entry_id"}`. When the entry is
//!   refused, the task just opened is closed again and the refusal is returned.
//! - `GET /tasks/<id>` shows a task; `DELETE /tasks/<id>` closes it.
//!
//! gRPC refusals map to HTTP: `PermissionDenied` 403, `InvalidArgument` 400, `NotFound` 404,
//! `FailedPrecondition` 409, anything else 502.

use std::net::SocketAddr;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mandate_proto::admin::{self as pb};
use mandate_proto::types;
use mandate_server::cli::Remote;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// An HTTP front for opening Mandate tasks through the remote admin API.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The server's admin_bind_address, HOST:PORT.
    #[arg(long)]
    server_address: String,
    /// The Workload API of the local agent (`unix:///path`).
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    endpoint: String,
    /// The SVID to present when the workload holds several (the one listed as task-broker).
    #[arg(long)]
    spiffe_id: Option<String>,
}

/// `POST /tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskOrder {
    principal: String,
    purpose: String,
    actions: Vec<String>,
    /// Time from now, e.g. `10m`.
    deadline: String,
    /// `<amount>:<currency>`, e.g. `500.00:EUR`.
    value_limit: Option<String>,
    agent: Option<AgentOrder>,
}

/// The AI agent that will act on the task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentOrder {
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
}

type Reply = Response<Full<Bytes>>;

/// A request the broker cannot carry out: the HTTP status and one line for `{"error"}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn into_reply(self) -> Reply {
        reply(self.status, json!({"error": self.message}))
    }
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
    let remote = Remote {
        address: args.server_address,
        endpoint: args.endpoint,
        spiffe_id: args.spiffe_id,
    };
    // Fail at start, in one line, when the SVID or the server is not there.
    remote
        .connect()
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot reach the admin API")?;
    let listener = TcpListener::bind(args.listen).await.context("bind")?;
    println!("task-broker listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let remote = remote.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let remote = remote.clone();
                async move { Ok::<_, hyper::Error>(handle(request, &remote).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(error) = served {
                tracing::info!(%peer, %error, "connection ended");
            }
        });
    }
}

async fn handle(request: Request<Incoming>, remote: &Remote) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let task_id = path.strip_prefix("/tasks/").map(str::to_owned);
    let result = match (method, task_id) {
        (Method::POST, None) if path == "/tasks" => match read_order(request).await {
            Ok(order) => open(remote, order).await,
            Err(refusal) => Err(refusal),
        },
        (Method::GET, Some(id)) => show(remote, id).await,
        (Method::DELETE, Some(id)) => close(remote, id).await,
        _ => return reply(StatusCode::NOT_FOUND, json!({"error": "no such route"})),
    };
    result.unwrap_or_else(Refusal::into_reply)
}

async fn read_order(request: Request<Incoming>) -> Result<TaskOrder, Refusal> {
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| bad_request(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| bad_request(e.to_string()))
}

async fn open(remote: &Remote, order: TaskOrder) -> Result<Reply, Refusal> {
    let deadline = humantime::parse_duration(&order.deadline)
        .map_err(|e| bad_request(format!("invalid deadline: {e}")))?;
    let value_limit = order
        .value_limit
        .as_deref()
        .map(parse_value_limit)
        .transpose()?;
    let mut client = remote.connect().await.map_err(unavailable)?;
    let task = client
        .open_task(pb::OpenTaskRequest {
            principal: order.principal,
            purpose: order.purpose,
            actions: order.actions,
            value_limit,
            deadline_unix: unix_seconds(SystemTime::now() + deadline),
            ..pb::OpenTaskRequest::default()
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut body = json!({"task_id": task.id, "state": state_name(task.state)});
    if let Some(agent) = order.agent {
        let created = client
            .create_entry(pb::CreateEntryRequest {
                spiffe_id: agent.spiffe_id,
                parent_id: agent.parent_id,
                selectors: agent.selectors,
                task_id: task.id.clone(),
                ..pb::CreateEntryRequest::default()
            })
            .await;
        match created {
            Ok(entry) => body["entry_id"] = json!(entry.into_inner().id),
            Err(status) => {
                // Leave nothing half-made behind: the task without its agent is closed.
                let close = pb::CloseTaskRequest {
                    id: task.id,
                    reason: format!("agent entry refused: {}", status.message()),
                };
                if let Err(e) = client.close_task(close).await {
                    tracing::warn!(error = %e.message(), "could not close the task again");
                }
                return Err(refused(status));
            }
        }
    }
    Ok(reply(StatusCode::CREATED, body))
}

async fn show(remote: &Remote, id: String) -> Result<Reply, Refusal> {
    let mut client = remote.connect().await.map_err(unavailable)?;
    let task = client
        .get_task(pb::GetTaskRequest { id })
        .await
        .map_err(refused)?
        .into_inner();
    Ok(reply(StatusCode::OK, task_json(&task)))
}

async fn close(remote: &Remote, id: String) -> Result<Reply, Refusal> {
    let mut client = remote.connect().await.map_err(unavailable)?;
    let request = pb::CloseTaskRequest {
        id,
        reason: "closed through the task broker".into(),
    };
    let task = client
        .close_task(request)
        .await
        .map_err(refused)?
        .into_inner();
    Ok(reply(StatusCode::OK, task_json(&task)))
}

fn task_json(t: &types::Task) -> Value {
    json!({
        "id": t.id,
        "principal": t.principal,
        "purpose": t.purpose,
        "actions": t.actions,
        "deadline": t.deadline_unix,
        "state": state_name(t.state),
    })
}

fn state_name(state: i32) -> &'static str {
    match types::TaskState::try_from(state) {
        Ok(types::TaskState::Pending) => "pending",
        Ok(types::TaskState::Open) => "open",
        Ok(types::TaskState::Closed) => "closed",
        Ok(types::TaskState::Expired) => "expired",
        _ => "unknown",
    }
}

fn parse_value_limit(text: &str) -> Result<types::ValueLimit, Refusal> {
    let limit: mandate_core::task::ValueLimit = text
        .parse()
        .map_err(|e| bad_request(format!("invalid value_limit: {e}")))?;
    Ok(types::ValueLimit {
        amount_minor: limit.amount_minor,
        currency: limit.currency.to_string(),
    })
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn refused(status: tonic::Status) -> Refusal {
    let code = match status.code() {
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    Refusal::new(code, status.message())
}

fn unavailable(message: String) -> Refusal {
    Refusal::new(StatusCode::BAD_GATEWAY, message)
}

fn bad_request(message: String) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, message)
}

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

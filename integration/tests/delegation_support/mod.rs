//! Helpers for the delegation journey tests: a server and an agent, tasks bound to this test
//! process's uid, the real po-service and ai-agent, and raw Workload API fetches.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mandate_integration::{Agent, Process, Server, bin, wait_for};
use mandate_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, X509svidRequest, X509svidResponse,
};

/// The SPIFFE ID the AI agent workload gets.
pub const AI_ID: &str = "spiffe://example.org/ai/procurement";
/// The SPIFFE ID of the purchase-order service.
pub const SERVICE_ID: &str = "spiffe://example.org/po-service";

/// This process's uid (the unix attestor sees the same).
pub fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A server and one agent.
pub fn start() -> Result<(Server, Agent)> {
    let server = Server::start()?;
    let agent = Agent::start(&server, "node1")?;
    Ok((server, agent))
}

/// Opens a task for alice (po.draft, po.read, 500.00 EUR) with `extra` arguments; returns its ID.
pub fn open_task(server: &Server, extra: &[&str]) -> Result<String> {
    let mut args = vec![
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "draft purchase order 4711",
        "--action",
        "po.draft",
        "--action",
        "po.read",
        "--value-limit",
        "500.00:EUR",
    ];
    if !extra.contains(&"--deadline") {
        args.extend(["--deadline", "1h"]);
    }
    args.extend_from_slice(extra);
    server.cli_ok(&args)
}

/// Binds this process's uid on `agent` to `task` as [`AI_ID`]; returns the entry ID.
pub fn bind_to_task(server: &Server, agent: &Agent, task: &str) -> Result<String> {
    let selector = format!("unix:uid:{}", uid());
    server.create_entry(
        AI_ID,
        &agent.spiffe_id,
        &["--selector", &selector, "--task", task],
    )
}

/// The task's deadline in unix seconds, from `task show --output json`.
pub fn task_deadline(server: &Server, task: &str) -> Result<i64> {
    let shown = server.cli_json(&["task", "show", task])?;
    shown["deadline"]
        .as_i64()
        .context("task show has a numeric deadline")
}

/// Unix seconds of `time`.
pub fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs `future` on a fresh runtime.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The first FetchX509SVID message, or `None` when none arrives within `wait` (or the stream
/// is refused, e.g. `PermissionDenied` for a workload with no identity).
pub async fn first_x509(agent: &Agent, wait: Duration) -> Result<Option<X509svidResponse>> {
    let mut client = mandate_integration::workload::client(&agent.socket_path).await?;
    let call = async {
        let mut stream = client
            .fetch_x509svid(mandate_integration::workload::with_header(
                X509svidRequest {},
            ))
            .await?
            .into_inner();
        stream.message().await
    };
    match tokio::time::timeout(wait, call).await {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => Ok(None),
        Ok(Err(status)) => bail!("FetchX509SVID failed: {status}"),
        Err(_) => Ok(None),
    }
}

/// The leaf certificate of a concatenated DER chain.
pub fn leaf_of(chain: &[u8]) -> Result<Vec<u8>> {
    let (rest, _) = x509_parser::parse_x509_certificate(chain).context("chain parses")?;
    Ok(chain[..chain.len() - rest.len()].to_vec())
}

/// A JWT-SVID for `audience` and the trust domain's JWKS, fetched over the Workload API.
pub async fn jwt_and_jwks(
    agent: &Agent,
    audience: &str,
) -> Result<(String, mandate_core::jwt::Jwks)> {
    let mut client = mandate_integration::workload::client(&agent.socket_path).await?;
    let request = JwtsvidRequest {
        audience: vec![audience.to_owned()],
        spiffe_id: AI_ID.to_owned(),
    };
    let response = client
        .fetch_jwtsvid(mandate_integration::workload::with_header(request))
        .await?
        .into_inner();
    let token = response.svids.first().context("one JWT-SVID")?.svid.clone();
    let mut bundles = client
        .fetch_jwt_bundles(mandate_integration::workload::with_header(
            JwtBundlesRequest {},
        ))
        .await?
        .into_inner();
    let first = bundles.message().await?.context("a JWT bundle message")?;
    let jwks = first
        .bundles
        .get("spiffe://example.org")
        .context("bundle for example.org")?;
    Ok((token, mandate_core::jwt::Jwks::from_json_bytes(jwks)?))
}

/// A running po-service with its own entry (uid + path selectors); killed on drop.
pub struct PoService {
    /// `127.0.0.1:<port>`.
    pub address: String,
    process: Process,
}

impl PoService {
    /// Registers the service's entry on `agent` and starts it with `extra` arguments.
    pub fn start(server: &Server, agent: &Agent, extra: &[&str]) -> Result<Self> {
        let exe = std::fs::canonicalize(bin("po-service"))?;
        let (uid, path) = (
            format!("unix:uid:{}", uid()),
            format!("unix:path:{}", exe.display()),
        );
        server.create_entry(
            SERVICE_ID,
            &agent.spiffe_id,
            &["--selector", &uid, "--selector", &path],
        )?;
        let log = agent
            .dir
            .path()
            .join(format!("po-service-{}.log", std::process::id()));
        let mut command = Command::new(&exe);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--spiffe-id",
                SERVICE_ID,
                "--endpoint",
                &agent.endpoint(),
            ])
            .args(extra);
        let process = Process::spawn(command, &log)?;
        let address = wait_for("po-service to listen", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("po-service listening on "))
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        Ok(Self { address, process })
    }

    /// What the service logged.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `ai-agent --stdin`: one open mTLS connection, one JSON line per call; killed on drop.
pub struct AiSession {
    child: Child,
    input: ChildStdin,
    lines: Receiver<String>,
}

impl AiSession {
    /// Starts the agent against `service` over `agent`'s Workload API, as [`AI_ID`].
    pub fn start(agent: &Agent, service: &PoService) -> Result<Self> {
        Self::start_at(agent, &service.address, AI_ID)
    }

    /// Starts the agent as `spiffe_id` over `agent`'s Workload API against the po-service
    /// (Rust, Go or Python) at `address`.
    pub fn start_at(agent: &Agent, address: &str, spiffe_id: &str) -> Result<Self> {
        let mut child = Command::new(bin("ai-agent"))
            .args(["--server", address, "--server-id", SERVICE_ID])
            .args(["--spiffe-id", spiffe_id, "--endpoint", &agent.endpoint()])
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start ai-agent")?;
        let input = child.stdin.take().context("stdin")?;
        let output = child.stdout.take().context("stdout")?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            input,
            lines,
        })
    }

    /// One call (`<action> [<amount>]`); its JSON result.
    pub fn call(&mut self, call: &str) -> Result<serde_json::Value> {
        writeln!(self.input, "{call}")?;
        self.input.flush()?;
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .context("ai-agent answered")?;
        Ok(serde_json::from_str(&line)?)
    }

    /// The refusal code of a result (`None` when allowed).
    pub fn code(result: &serde_json::Value) -> Option<String> {
        if result["allowed"] == true {
            return None;
        }
        Some(result["body"]["refused"].as_str().unwrap_or("?").to_owned())
    }

    /// The po-service connection number a result came on.
    pub fn connection(result: &serde_json::Value) -> Option<u64> {
        result["body"]["connection"].as_u64()
    }
}

impl Drop for AiSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `call` on `session` every 10 ms until it is refused; returns the refusal and when it
/// came. Fails when it is still allowed `limit` after `since`.
pub fn call_until_refused(
    session: &mut AiSession,
    call: &str,
    since: Instant,
    limit: Duration,
) -> Result<(serde_json::Value, Instant)> {
    loop {
        let result = session.call(call)?;
        if result["allowed"] == false {
            return Ok((result, Instant::now()));
        }
        if since.elapsed() > limit {
            bail!("still allowed {limit:?} later: {result}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

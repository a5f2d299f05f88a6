//! ai-agent: an AI agent process that gets its X509-SVID from the Workload API with the standard
//! `spiffe` crate and calls po-service over mTLS (spiffe-rustls), never seeing user credentials.
//!
//! One call: `ai-agent --action po.draft --amount 120.00:EUR`. With `--stdin` it keeps ONE
//! connection open and performs one call per input line (`<action> [<amount>]`), printing one
//! JSON result line per call.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mandate_core::SpiffeId;
use rustls_pki_types::ServerName;
use serde_json::json;
use spiffe::X509Source;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An AI agent that calls the purchase-order service under its task-bound SVID.
#[derive(Debug, Parser)]
struct Args {
    /// po-service address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8443")]
    server: String,
    /// The SPIFFE ID po-service must present.
    #[arg(long, default_value = "spiffe://example.org/po-service")]
    server_id: SpiffeId,
    /// The Workload API socket (`unix:///path`); read by the spiffe crate.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    endpoint: String,
    /// The SVID to call with when the workload holds several.
    #[arg(long)]
    spiffe_id: Option<SpiffeId>,
    /// The action of a single call, e.g. po.draft.
    #[arg(long, required_unless_present = "stdin")]
    action: Option<String>,
    /// The amount of a single call, e.g. 120.00:EUR.
    #[arg(long)]
    amount: Option<String>,
    /// Keep one connection open and read calls (`<action> [<amount>]`) line by line from stdin.
    #[arg(long)]
    stdin: bool,
    /// How long to wait for an SVID.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    svid_timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = X509Source::builder().endpoint(&args.endpoint);
    if let Some(id) = args.spiffe_id.clone() {
        builder = builder.picker(mandate_verify::tls::SpiffeIdPicker(id));
    }
    let source = tokio::time::timeout(args.svid_timeout, builder.build())
        .await
        .context("timed out waiting for an SVID from the Workload API")?
        .context("workload api")?;
    let svid = source.svid().context("no SVID")?;
    let leaf = svid.cert_chain().first().context("empty SVID chain")?;
    match mandate_core::delegation::from_certificate(leaf.as_bytes()) {
        Ok(Some(d)) => eprintln!(
            "ai-agent: SVID {} acting for {} on task {} ({})",
            svid.spiffe_id(),
            d.principal,
            d.task.id,
            d.task.purpose
        ),
        Ok(None) => eprintln!("ai-agent: SVID {} (no delegation)", svid.spiffe_id()),
        Err(error) => eprintln!(
            "ai-agent: SVID {} with a bad delegation: {error}",
            svid.spiffe_id()
        ),
    }

    let tls = mandate_verify::tls::client_config(source, args.server_id.clone(), &[b"http/1.1"])?;
    let mut sender = connect(&args.server, tls).await?;
    if !args.stdin {
        let action = args.action.as_deref().context("--action is required")?;
        let result = call(&mut sender, action, args.amount.as_deref()).await?;
        println!("{result}");
        let allowed = result["allowed"].as_bool().unwrap_or(false);
        std::process::exit(if allowed { 0 } else { 2 });
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let Some(action) = words.next() else { continue };
        let result = call(&mut sender, action, words.next()).await?;
        println!("{result}");
    }
    Ok(())
}

/// Opens the mTLS connection and the HTTP/1.1 session on it.
async fn connect(
    server: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(server)
        .await
        .with_context(|| format!("connect {server}"))?;
    tcp.set_nodelay(true)?;
    // spiffe-rustls checks the server's SPIFFE ID, not this name.
    let host = server
        .rsplit_once(':')
        .map_or(server, |(h, _)| h)
        .to_owned();
    let name = ServerName::try_from(host).context("server name")?;
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .context("tls handshake")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("ai-agent: connection closed: {error}");
        }
    });
    Ok(sender)
}

/// Performs one call and describes it as a JSON line.
async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    action: &str,
    amount: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let (method, path) = mandate_examples::route_for(action);
    let body = match amount {
        Some(a) => json!({ "amount": a }).to_string(),
        None => String::new(),
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(&path)
        .header(hyper::header::HOST, "po-service")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let started = Instant::now();
    sender.ready().await.context("connection is gone")?;
    let response = sender.send_request(request).await.context("request")?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    Ok(json!({
        "action": action,
        "amount": amount,
        "status": status,
        "allowed": status == 200,
        "body": body,
        "elapsed_ms": (elapsed_ms * 100.0).round() / 100.0,
    }))
}

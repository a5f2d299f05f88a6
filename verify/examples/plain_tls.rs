//! A plain mTLS line service with mandate-verify: the caller is read once at the handshake,
//! and every line (`<action> [<amount>]`) is authorized on its own.
//!
//! `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/mandate-agent/public/api.sock cargo run -p mandate-verify --example plain_tls`

use std::sync::Arc;

use mandate_verify::{
    DelegationPolicy, TaskStatusConfig, TaskStatusWatcher, ValueLimit, Verifier, tls,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let source = tls::x509_source(None, None).await?;
    let trust_domain = source.svid()?.spiffe_id().trust_domain().clone();
    let acceptor = TlsAcceptor::from(tls::server_config(source, trust_domain, &[])?);
    let status = TaskStatusWatcher::spawn(TaskStatusConfig::from_env()?);
    let verifier = Arc::new(Verifier::new(
        DelegationPolicy::require_under(["/ai"]),
        status,
    ));

    let listener = TcpListener::bind("127.0.0.1:8444").await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, verifier) = (acceptor.clone(), verifier.clone());
        tokio::spawn(async move {
            // Identity once per connection; a refused identity closes the connection.
            let Ok((stream, caller)) = tls::accept(&acceptor, tcp, verifier.policy()).await else {
                return;
            };
            let (read, mut write) = tokio::io::split(stream);
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split_whitespace();
                let action = words.next().unwrap_or_default();
                let amount: Option<ValueLimit> = words.next().and_then(|a| a.parse().ok());
                // Authorization on every request: a task closed meanwhile is refused here.
                let answer = match verifier.authorize(&caller, action, amount.as_ref()) {
                    Ok(_) => format!("ok {action}\n"),
                    Err(refusal) => format!("refused {}: {refusal}\n", refusal.code()),
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

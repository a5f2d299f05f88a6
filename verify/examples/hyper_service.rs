//! An HTTP/1.1 service (hyper 1) with mandate-verify: `CallerIdentity` is extracted once per
//! connection from the handshake, and `authorize` runs per request (action = `<method> <path>`
//! mapped by the service; here every request is the action `report.read`).
//!
//! `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/mandate-agent/public/api.sock cargo run -p mandate-verify --example hyper_service`

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use mandate_verify::{DelegationPolicy, TaskStatusConfig, TaskStatusWatcher, Verifier, tls};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let source = tls::x509_source(None, None).await?;
    let trust_domain = source.svid()?.spiffe_id().trust_domain().clone();
    let acceptor = TlsAcceptor::from(tls::server_config(source, trust_domain, &[b"http/1.1"])?);
    let status = TaskStatusWatcher::spawn(TaskStatusConfig::from_env()?);
    let verifier = Arc::new(Verifier::new(
        DelegationPolicy::require_under(["/ai"]),
        status,
    ));

    let listener = TcpListener::bind("127.0.0.1:8445").await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, verifier) = (acceptor.clone(), verifier.clone());
        tokio::spawn(async move {
            let Ok((stream, caller)) = tls::accept(&acceptor, tcp, verifier.policy()).await else {
                return;
            };
            let caller = Arc::new(caller);
            let service = hyper::service::service_fn(move |_request| {
                let (caller, verifier) = (caller.clone(), verifier.clone());
                async move {
                    let (status, body) = match verifier.authorize(&caller, "report.read", None) {
                        Ok(_) => (StatusCode::OK, format!("hello {}", caller.spiffe_id())),
                        Err(refusal) => (StatusCode::FORBIDDEN, refusal.to_json().to_string()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    Ok::<_, hyper::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

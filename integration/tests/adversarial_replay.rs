//! Replay of a closed task's X509-SVID: a caller that saved the certificate and key while the
//! task was open presents them on a NEW mTLS connection to po-service after the close. (The
//! same SVID on a connection that was already open is
//! `delegation_revocation::closing_a_task_refuses_the_next_call_on_an_open_connection_within_a_second`;
//! the JWT-SVID replay is in adversarial_jwt.rs.)

mod delegation_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use delegation_support::{AI_ID, PoService, SERVICE_ID, bind_to_task, block_on, open_task, start};
use mandate_core::SpiffeId;
use mandate_core::tls::{SpiffeIdMatcher, SpiffeServerVerifier, shared_roots};
use mandate_core::x509::split_der_certs;
use mandate_integration::workload;
use mandate_proto::workload::X509svidRequest;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The AI agent's SVID as a thief would keep it: chain, PKCS#8 key, bundle.
struct Saved {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    bundle: Vec<Vec<u8>>,
}

async fn save_svid(agent: &mandate_integration::Agent) -> Result<Saved> {
    let mut client = workload::client(&agent.socket_path).await?;
    let mut stream = client
        .fetch_x509svid(workload::with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let message = stream.message().await?.context("an X509-SVID message")?;
    let svid = message
        .svids
        .iter()
        .find(|s| s.spiffe_id == AI_ID)
        .context("the AI agent's SVID")?;
    Ok(Saved {
        chain: split_der_certs(&svid.x509_svid)?,
        key: svid.x509_svid_key.to_vec(),
        bundle: split_der_certs(&svid.bundle)?,
    })
}

/// One `POST /po/read` on a fresh mTLS connection presenting `saved`; (HTTP status, body).
fn call_with(saved: &Saved, address: &str) -> Result<(u16, serde_json::Value)> {
    let roots = shared_roots(
        saved
            .bundle
            .iter()
            .cloned()
            .map(CertificateDer::from)
            .collect(),
    );
    let verifier =
        SpiffeServerVerifier::new(roots, SpiffeIdMatcher::Exact(SpiffeId::new(SERVICE_ID)?));
    let chain = saved
        .chain
        .iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(saved.key.clone()));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_client_auth_cert(chain, key)?;
    let name = ServerName::try_from("localhost")?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    stream.write_all(b"POST /po/read HTTP/1.1\r\nhost: po-service\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // Some servers close without close_notify; what arrived is the response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP status line")?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // A chunked body carries its length line first; take the JSON object inside.
    let json = body
        .find('{')
        .zip(body.rfind('}'))
        .map(|(a, b)| &body[a..=b])
        .unwrap_or("null");
    Ok((
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    ))
}

#[test]
fn a_closed_tasks_saved_svid_is_refused_on_a_new_connection() -> Result<()> {
    let (server, agent) = start()?;
    let task = open_task(&server, &[])?;
    bind_to_task(&server, &agent, &task)?;
    let service = PoService::start(&server, &agent, &[])?;
    let saved =
        mandate_integration::wait_for("the AI agent's SVID", Duration::from_secs(20), || {
            block_on(save_svid(&agent)).ok()
        })?;
    let (status, body) = call_with(&saved, &service.address)?;
    assert_eq!(
        status, 200,
        "the saved SVID works while the task is open: {body}"
    );

    server.cli_ok(&["task", "close", &task, "--reason", "replay test"])?;
    std::thread::sleep(Duration::from_millis(1500));
    // The certificate is still inside its validity period, so the TLS handshake succeeds;
    // the per-request task-status check is what refuses it.
    let (status, body) = call_with(&saved, &service.address)?;
    assert_eq!(status, 403, "replayed after close: {body}");
    assert_eq!(body["refused"], "task_closed", "{body}");
    Ok(())
}

//! mandate-agent through clients we did not write: the PyPI `spiffe` package, go-spiffe v2,
//! and an mTLS handshake between two workloads with spiffe-rustls 0.11 fed by the agent.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod agent_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agent_support::*;
use anyhow::{Context, Result, bail};
use mandate_integration::{Agent, Server, TRUST_DOMAIN, workspace_root};
use spiffe::x509_source::SvidPicker;
use spiffe::{X509Source, X509Svid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A server, an agent, and one entry for this uid, ready to be fetched.
async fn ready(name: &str, path: &str) -> Result<(Server, Agent)> {
    let (server, agent) = server_and_agent(name)?;
    entry_for_me(&server, &agent, path, &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    Ok((server, agent))
}

fn check_client_json(stdout: &str, expected: &str) -> Result<()> {
    let json: serde_json::Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("not JSON: {stdout}"))?;
    for key in [
        "x509_spiffe_id",
        "jwt_spiffe_id",
        "jwt_local_spiffe_id",
        "jwt_remote_spiffe_id",
        "source_spiffe_id",
    ] {
        assert_eq!(json[key], expected, "{key} in {json}");
    }
    assert!(json["chain_length"].as_u64() >= Some(1));
    assert!(json["x509_authorities"].as_u64() >= Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn python_spiffe_package_fetches_and_validates() -> Result<()> {
    let python = std::env::var("MANDATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"));
    if !python.exists() {
        if in_ci() {
            bail!(
                "CI=true but no Python venv at {} (set MANDATE_PYTHON)",
                python.display()
            );
        }
        println!(
            "skipped: no Python venv at {} (python3 -m venv .venv && .venv/bin/pip install -r integration/clients/python/requirements.txt)",
            python.display()
        );
        return Ok(());
    }
    let (_server, agent) = ready("python", "workload/python").await?;
    let script = workspace_root().join("integration/clients/python/workload_client.py");
    let output = Command::new(&python)
        .arg(script)
        .args([TRUST_DOMAIN, "python-audience"])
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_client_json(&stdout, &id("workload/python"))
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffe_fetches_and_validates() -> Result<()> {
    if Command::new("go").arg("version").output().is_err() {
        if in_ci() {
            bail!("CI=true but the go toolchain is missing");
        }
        println!("skipped: the go toolchain is not installed");
        return Ok(());
    }
    let dir = workspace_root().join("integration/clients/go");
    let exe = tempfile::tempdir()?;
    let binary = exe.path().join("workload-client");
    let build = Command::new("go")
        .current_dir(&dir)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .output()?;
    assert!(
        build.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let (_server, agent) = ready("go", "workload/go").await?;
    let output = Command::new(&binary)
        .arg("go-audience")
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "go client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_client_json(&stdout, &id("workload/go"))
}

struct ByHint(&'static str);

impl SvidPicker for ByHint {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        svids.iter().position(|s| s.hint() == Some(self.0))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workloads_complete_an_mtls_handshake_with_spiffe_rustls() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (server, agent) = server_and_agent("mtls")?;
    entry_for_me(&server, &agent, "svc/server", &["--hint", "server"])?;
    entry_for_me(&server, &agent, "svc/client", &["--hint", "client"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 2
    })
    .await?;

    let source = |hint| {
        X509Source::builder()
            .endpoint(agent.endpoint())
            .picker(ByHint(hint))
            .build()
    };
    let server_source = source("server").await?;
    let client_source = source("client").await?;
    let server_cfg = spiffe_rustls::mtls_server(server_source)
        .authorize(spiffe_rustls::authorizer::exact([
            id("svc/client").as_str()
        ])?)
        .build()?;
    let client_cfg = spiffe_rustls::mtls_client(client_source)
        .authorize(spiffe_rustls::authorizer::exact([
            id("svc/server").as_str()
        ])?)
        .build()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .context("client cert")?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        anyhow::Ok(mandate_core::tls::peer_spiffe_id(&peer)?.to_string())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let mut tls = connector.connect(name, tcp).await?;
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .context("server cert")?;
    assert_eq!(
        mandate_core::tls::peer_spiffe_id(&server_cert)?.to_string(),
        id("svc/server")
    );
    tls.write_all(b"ping!").await?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await?;
    assert_eq!(reply, b"pong");
    assert_eq!(served.await??, id("svc/client"));
    Ok(())
}

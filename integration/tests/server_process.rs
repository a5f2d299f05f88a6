//! The `mandate-server` process outside its API: usage and configuration errors with their
//! exit codes, the metrics listener's `/metrics`, `/live` and `/ready`, and a clean exit on
//! SIGTERM.

use anyhow::{Context, Result};
use mandate_integration::{Server, bin, run};
use serde_json::Value;

#[test]
fn usage_and_config_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("admin.sock");
    let socket = socket.to_str().context("utf-8")?;
    let server_bin = bin("mandate-server");
    let out = run(
        &server_bin,
        &["entry", "list", "--admin-socket", socket],
        &[],
    )?;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.is_empty() && out.stderr.trim().lines().count() == 1,
        "{out:?}"
    );
    let out = run(&server_bin, &["entry", "frobnicate"], &[])?;
    assert_eq!(out.code, 64);
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "trust_domain = \"example.org\"\nno_such_key = 1\n")?;
    let data = dir.path().join("data");
    let out = run(
        &server_bin,
        &[
            "run",
            "--config",
            config.to_str().context("utf-8")?,
            "--data-dir",
            data.to_str().context("utf-8")?,
            "--admin-socket",
            socket,
        ],
        &[],
    )?;
    assert_eq!(out.code, 64, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("no_such_key"), "{out:?}");
    assert!(
        !data.exists() && !std::path::Path::new(socket).exists(),
        "nothing opened or bound"
    );
    let out = run(
        &server_bin,
        &[
            "run",
            "--bind-address",
            "http://x:1",
            "--admin-socket",
            socket,
        ],
        &[],
    )?;
    assert_eq!(out.code, 64, "{out:?}");
    // The env var names the socket; global flags may follow the subcommand.
    let server = Server::start()?;
    let env_socket = server.admin_socket.to_str().context("utf-8")?;
    let out = run(
        &server_bin,
        &["healthcheck"],
        &[("MANDATE_ADMIN_SOCKET", env_socket)],
    )?;
    assert!(out.success(), "{out:?}");
    let out = run(
        &server_bin,
        &["entry", "list", "--output", "json"],
        &[("MANDATE_ADMIN_SOCKET", env_socket)],
    )?;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout)?,
        Value::Array(vec![])
    );
    Ok(())
}

fn http_get(address: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address)?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    tcp.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn metrics_live_ready_and_clean_sigterm() -> Result<()> {
    let metrics = format!("127.0.0.1:{}", mandate_integration::free_port());
    let mut server = Server::start_with(mandate_integration::ServerOptions {
        args: vec!["--metrics-address".into(), metrics.clone()],
        ..Default::default()
    })?;
    server.token(None)?;
    let reply = http_get(&metrics, "/metrics")?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("# TYPE mandate_entries gauge"), "{reply}");
    assert!(http_get(&metrics, "/live")?.starts_with("HTTP/1.1 200"));
    assert!(http_get(&metrics, "/ready")?.starts_with("HTTP/1.1 200"));
    assert!(http_get(&metrics, "/nope")?.starts_with("HTTP/1.1 404"));
    assert_eq!(server.stop()?, Some(0), "SIGTERM exits 0");
    assert!(
        !server.admin_socket.exists(),
        "the admin socket is removed on shutdown"
    );
    let health = server.cli(&["healthcheck"])?;
    assert_eq!(health.code, 1, "healthcheck fails once the server is gone");
    Ok(())
}

//! Hostile local callers on the two unix sockets: the Workload API without (or with a wrong)
//! security header on every RPC, oversized messages on the Workload API and the admin API,
//! and the admin socket from a uid that does not own it.

mod agent_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use agent_support::*;
use anyhow::{Context, Result};
use mandate_integration::{bin, workload};
use mandate_proto::admin::CreateEntryRequest;
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::delegation::WatchRequest;
use mandate_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
};

/// A request with `workload.spiffe.io` set to `value`, or without it.
fn request<T>(message: T, value: Option<&'static str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = value {
        request
            .metadata_mut()
            .insert("workload.spiffe.io", value.parse().expect("ascii"));
    }
    request
}

fn code<T>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.err().map_or(tonic::Code::Ok, |s| s.code())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_without_the_security_header_is_refused() -> Result<()> {
    let (server, agent) = server_and_agent("header")?;
    entry_for_me(&server, &agent, "workload/header", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let mut c = workload::client(&agent.socket_path).await?;
    let mut feed = workload::task_status_client(&agent.socket_path).await?;
    // A caller that has an identity, so only the header decides.
    for value in [None, Some("false"), Some("TRUE "), Some("")] {
        let codes = [
            (
                "FetchX509SVID",
                code(c.fetch_x509svid(request(X509svidRequest {}, value)).await),
            ),
            (
                "FetchX509Bundles",
                code(
                    c.fetch_x509_bundles(request(X509BundlesRequest {}, value))
                        .await,
                ),
            ),
            (
                "FetchJWTSVID",
                code(
                    c.fetch_jwtsvid(request(
                        JwtsvidRequest {
                            audience: vec!["a".into()],
                            spiffe_id: String::new(),
                        },
                        value,
                    ))
                    .await,
                ),
            ),
            (
                "FetchJWTBundles",
                code(
                    c.fetch_jwt_bundles(request(JwtBundlesRequest {}, value))
                        .await,
                ),
            ),
            (
                "ValidateJWTSVID",
                code(
                    c.validate_jwtsvid(request(
                        ValidateJwtsvidRequest {
                            audience: "a".into(),
                            svid: "x.y.z".into(),
                        },
                        value,
                    ))
                    .await,
                ),
            ),
            (
                "TaskStatus/Watch",
                code(feed.watch(request(WatchRequest {}, value)).await),
            ),
        ];
        for (rpc, got) in codes {
            assert_eq!(
                got,
                tonic::Code::InvalidArgument,
                "{rpc} with header {value:?}"
            );
        }
    }
    // The same calls with the header succeed, so the refusals above were the header's doing.
    assert_eq!(
        code(
            c.fetch_x509_bundles(request(X509BundlesRequest {}, Some("true")))
                .await
        ),
        tonic::Code::Ok
    );
    assert_eq!(
        code(feed.watch(request(WatchRequest {}, Some("true"))).await),
        tonic::Code::Ok
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_get_a_clear_status_and_both_daemons_survive() -> Result<()> {
    let (server, agent) = server_and_agent("oversized")?;
    entry_for_me(&server, &agent, "workload/oversized", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;

    let mut c = workload::client(&agent.socket_path).await?;
    let huge = ValidateJwtsvidRequest {
        audience: "a".into(),
        svid: "x".repeat(5 << 20),
    };
    let status = c
        .validate_jwtsvid(with_header(huge))
        .await
        .err()
        .context("5 MiB token accepted")?;
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    // Under the message limit but over the 16 KiB token limit: an ordinary refusal.
    let long = ValidateJwtsvidRequest {
        audience: "a".into(),
        svid: "x".repeat(1 << 20),
    };
    let status = c
        .validate_jwtsvid(with_header(long))
        .await
        .err()
        .context("1 MiB token accepted")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let many = JwtsvidRequest {
        audience: vec!["a".repeat(1024); 4096],
        spiffe_id: String::new(),
    };
    let status = c
        .fetch_jwtsvid(with_header(many))
        .await
        .err()
        .context("4 MiB of audiences accepted")?;
    assert_ne!(status.code(), tonic::Code::Ok);
    wait_x509(&agent.socket_path, Duration::from_secs(5), |m| {
        !m.svids.is_empty()
    })
    .await?;

    let mut admin = AdminClient::new(workload::channel(&server.admin_socket).await?);
    let oversized = CreateEntryRequest {
        spiffe_id: "spiffe://example.org/big".into(),
        parent_id: agent.spiffe_id.clone(),
        selectors: vec!["unix:uid:1".into()],
        hint: "h".repeat(5 << 20),
        ..CreateEntryRequest::default()
    };
    let status = admin
        .create_entry(oversized)
        .await
        .err()
        .context("5 MiB entry accepted")?;
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    let selectors = CreateEntryRequest {
        spiffe_id: "spiffe://example.org/many".into(),
        parent_id: agent.spiffe_id.clone(),
        selectors: (0..100_000).map(|i| format!("unix:uid:{i}")).collect(),
        ..CreateEntryRequest::default()
    };
    // 100k selectors fit in 4 MiB; whatever the server decides, it must answer and live on.
    let _ = admin.create_entry(selectors).await;
    assert!(
        server.cli(&["healthcheck"])?.success(),
        "server died:\n{}",
        server.log()
    );
    assert!(
        agent.cli(&["healthcheck"])?.success(),
        "agent died:\n{}",
        agent.log()
    );
    Ok(())
}

#[test]
fn the_admin_socket_refuses_a_uid_that_does_not_own_it() -> Result<()> {
    if my_uid() != 0 {
        println!("skipped: needs root to run a child process as another uid");
        return Ok(());
    }
    let server = mandate_integration::Server::start()?;
    let mode = std::fs::metadata(&server.admin_socket)?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {mode:o}");
    for args in [
        &["entry", "list"][..],
        &["token", "generate"],
        &["task", "list"],
        &["audit", "verify"],
    ] {
        let output = std::process::Command::new(bin("mandate-server"))
            .args(args)
            .arg("--admin-socket")
            .arg(&server.admin_socket)
            .uid(65534)
            .gid(65534)
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "nobody ran {args:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            output.stdout.is_empty(),
            "a refused command prints nothing on stdout"
        );
        assert!(
            !stderr.trim().is_empty() && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
    // Nothing a refused caller did reached the store.
    let tokens = server.cli_json(&["audit", "list"])?;
    let created = tokens
        .as_array()
        .context("array")?
        .iter()
        .filter(|r| r["kind"] == "token.create")
        .count();
    assert_eq!(created, 0);
    Ok(())
}

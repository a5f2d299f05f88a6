//! The agent's Workload API through the Rust `spiffe` crate (0.19), a client we did not write:
//! X509-SVIDs, bundles, JWT-SVIDs and their validation, plus exact status codes on our raw
//! client for what standard clients never send.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod agent_support;

use std::time::Duration;

use agent_support::*;
use anyhow::Result;
use mandate_integration::{TRUST_DOMAIN, workload};
use mandate_proto::workload::{JwtsvidRequest, X509svidRequest};
use spiffe::{TrustDomain, WorkloadApiClient};

#[tokio::test(flavor = "multi_thread")]
async fn rust_spiffe_client_gets_x509_and_jwt_svids() -> Result<()> {
    let (server, agent) = server_and_agent("rust-client")?;
    entry_for_me(&server, &agent, "workload/rust", &["--hint", "main"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;

    let client = WorkloadApiClient::connect_to(agent.endpoint()).await?;
    let svid = client.fetch_x509_svid().await?;
    assert_eq!(svid.spiffe_id().to_string(), id("workload/rust"));
    assert_eq!(svid.hint(), Some("main"));
    assert!(!svid.cert_chain().is_empty());

    let td = TrustDomain::new(TRUST_DOMAIN)?;
    let bundles = client.fetch_x509_bundles().await?;
    let bundle = bundles.get(&td).expect("bundle for the trust domain");
    assert!(!bundle.authorities().is_empty());

    let jwt = client.fetch_jwt_svid(["payments"], None).await?;
    assert_eq!(jwt.spiffe_id().to_string(), id("workload/rust"));
    assert_eq!(jwt.audience(), ["payments".to_string()]);
    assert!(!jwt.key_id().is_empty());
    // A warm fetch returns the cached token.
    let again = client.fetch_jwt_svid(["payments"], None).await?;
    assert_eq!(again.token(), jwt.token());

    let jwt_bundles = client.fetch_jwt_bundles().await?;
    let jwt_bundle = jwt_bundles
        .get(&td)
        .expect("JWT bundle for the trust domain");
    assert!(
        jwt_bundle.find_jwt_authority(jwt.key_id()).is_some(),
        "kid in the JWKS"
    );

    let validated = client.validate_jwt_token("payments", jwt.token()).await?;
    assert_eq!(validated.spiffe_id().to_string(), id("workload/rust"));
    assert!(
        client
            .validate_jwt_token("other-audience", jwt.token())
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_follow_the_workload_api_spec() -> Result<()> {
    let (server, agent) = server_and_agent("codes")?;
    let mut raw = workload::client(&agent.socket_path).await?;

    // No security header: InvalidArgument.
    let err = raw
        .fetch_x509svid(tonic::Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = raw
        .fetch_jwtsvid(tonic::Request::new(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // No entry yet: PermissionDenied, "no identity issued".
    let err = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::PermissionDenied, "no identity issued")
    );

    entry_for_me(&server, &agent, "workload/codes", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;

    // Empty audience: InvalidArgument.
    let err = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A failed validation: InvalidArgument.
    let err = raw
        .validate_jwtsvid(with_header(
            mandate_proto::workload::ValidateJwtsvidRequest {
                audience: "a".into(),
                svid: "not.a.jwt".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // WIT: Unimplemented.
    let err = raw
        .fetch_witsvid(with_header(mandate_proto::workload::WitsvidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_uid_gets_no_identity() -> Result<()> {
    if my_uid() != 0 {
        println!("skipped: needs root to run a child process as another uid");
        return Ok(());
    }
    let (server, agent) = server_and_agent("stranger")?;
    entry_for_me(&server, &agent, "workload/root-only", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    // The agent CLI, run as nobody (65534), is a caller no entry matches.
    use std::os::unix::process::CommandExt;
    let output = std::process::Command::new(mandate_integration::bin("mandate-agent"))
        .args(["api", "fetch", "x509", "--socket-path"])
        .arg(&agent.socket_path)
        .uid(65534)
        .gid(65534)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "nobody got an identity: {stderr}");
    assert!(stderr.contains("no identity issued"), "{stderr}");
    assert!(output.stdout.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_fetch_writes_files_like_spire_agent() -> Result<()> {
    let (server, agent) = server_and_agent("cli")?;
    entry_for_me(&server, &agent, "workload/cli", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let out_dir = tempfile::tempdir()?;
    let dir = out_dir.path().to_string_lossy().into_owned();
    let out = agent.cli(&["api", "fetch", "x509", "--write", &dir])?;
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains(&id("workload/cli")), "{}", out.stdout);
    for file in ["svid.0.pem", "svid.0.key", "bundle.0.pem"] {
        let text = std::fs::read_to_string(out_dir.path().join(file))?;
        assert!(text.starts_with("-----BEGIN "), "{file}: {text}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.path().join("svid.0.key"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file is private");
    let out = agent.cli(&["api", "fetch", "jwt", "--audience", "svc"])?;
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim().split('.').count(),
        3,
        "one JWT: {}",
        out.stdout
    );
    let out = agent.cli(&[
        "api",
        "fetch",
        "jwt",
        "--audience",
        "svc",
        "--output",
        "json",
    ])?;
    let json: serde_json::Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(json[0]["spiffe_id"], id("workload/cli"));
    Ok(())
}

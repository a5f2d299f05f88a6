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

/// `/proc` selectors, read only when an entry needs them: the caller's executable by path and
/// digest, and (as root) a supplementary group of a caller running as another uid.
#[tokio::test(flavor = "multi_thread")]
async fn proc_selectors_match_the_callers_executable_and_groups() -> Result<()> {
    let (server, agent) = server_and_agent("proc-selectors")?;
    let cli = std::fs::canonicalize(mandate_integration::bin("mandate-agent"))?;
    // Another uid and its supplementary groups through python3, since this crate has no
    // unsafe code to call setgroups between fork and exec.
    let fetch = |uid: u32, groups: &[u32]| {
        let mut command = if uid == my_uid() {
            std::process::Command::new(&cli)
        } else {
            let mut python = std::process::Command::new("python3");
            python.arg("-c").arg(format!(
                "import os, sys; os.setgroups({groups:?}); os.setgid({uid}); os.setuid({uid}); \
                 os.execv(sys.argv[1], sys.argv[1:])"
            ));
            python.arg(&cli);
            python
        };
        command
            .args(["api", "fetch", "x509", "--socket-path"])
            .arg(&agent.socket_path)
            .output()
    };
    // Polls until the caller `uid` with `groups` is issued `path`'s SPIFFE ID; its stdout.
    let fetch_until = |uid: u32, groups: &'static [u32], path: &'static str| {
        let fetch = &fetch;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let output = fetch(uid, groups)?;
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                if stdout.contains(&id(path)) || std::time::Instant::now() > deadline {
                    return anyhow::Ok(stdout);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // First alone (so no other entry makes the agent read /proc anyway): a gid selector
    // matches a supplementary group, which only /proc/<pid>/status tells.
    if my_uid() == 0 {
        let selectors = [
            "--selector",
            "unix:uid:65534",
            "--selector",
            "unix:gid:4242",
        ];
        server.create_entry(&id("workload/supplementary"), &agent.spiffe_id, &selectors)?;
        let stdout = fetch_until(65534, &[4242], "workload/supplementary").await?;
        assert!(stdout.contains(&id("workload/supplementary")), "{stdout}");
        let output = fetch(65534, &[4243])?;
        assert!(
            !output.status.success(),
            "without group 4242 there is no identity"
        );
    } else {
        println!("supplementary groups skipped: needs root to run a caller as another uid");
    }

    // The executable, by path and by digest; a wrong digest matches nothing.
    let digest = std::process::Command::new("sha256sum").arg(&cli).output()?;
    let digest = String::from_utf8(digest.stdout)?;
    let digest = digest
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest");
    let path = format!("unix:path:{}", cli.display());
    let sha = format!("unix:sha256:{digest}");
    entry_for_me(
        &server,
        &agent,
        "workload/exe",
        &["--selector", &path, "--selector", &sha],
    )?;
    let zeros = format!("unix:sha256:{}", "0".repeat(64));
    entry_for_me(
        &server,
        &agent,
        "workload/other-exe",
        &["--selector", &zeros],
    )?;
    let mine = fetch_until(my_uid(), &[], "workload/exe").await?;
    assert!(mine.contains(&id("workload/exe")), "{mine}");
    assert!(!mine.contains(&id("workload/other-exe")), "{mine}");
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

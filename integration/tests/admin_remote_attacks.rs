//! Attacks on the mTLS admin API (DESIGN 3.9), each on the real binaries: no client
//! certificate, a certificate of another trust domain, one forged for our trust domain by
//! another CA, an expired SVID signed by the server's own CA, a task broker stepping outside
//! its paths or onto another broker's work, an approver opening a task, and configs with an
//! unknown role or a malformed SPIFFE ID (exit 64, one line, nothing bound).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod admin_support;

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use admin_support::*;
use anyhow::Result;
use mandate_core::TrustDomain;
use mandate_core::x509::{Ca, CaKey, parse_pem_certs};
use mandate_integration::{bin, free_port, run};
use mandate_proto::admin::{self as pb};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn only_current_svids_of_the_trust_domain_get_through_the_handshake() -> Result<()> {
    let setup = RemoteAdmin::start("certs").await?;
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);

    // The control: the server's own CA, a valid SVID of a listed operator, gets through.
    let ca_dir = setup.server.data_dir.join("ca");
    let ca_cert = parse_pem_certs(&std::fs::read_to_string(&setup.server.bundle_pem)?)?
        .pop()
        .unwrap();
    let server_ca = Ca::from_parts(ca_cert, &std::fs::read(ca_dir.join("ca-1.key"))?)?;
    let valid = leaf(&server_ca, &id(OPERATOR), now - hour, now + hour)?;
    health_with(&setup, Some(valid)).await.unwrap();

    // No client certificate.
    let err = health_with(&setup, None).await.unwrap_err();
    assert!(!err.starts_with("Ok"), "{err}");

    // Expired, though signed by the server's own CA for a listed operator.
    let expired = leaf(&server_ca, &id(OPERATOR), now - 2 * hour, now - hour)?;
    health_with(&setup, Some(expired)).await.unwrap_err();

    // Another trust domain, with its own CA.
    let other_td = TrustDomain::new("other.org")?;
    let other = Ca::self_signed(other_td, CaKey::generate()?, now, 24 * hour)?;
    let foreign = leaf(&other, "spiffe://other.org/ops", now, now + hour)?;
    health_with(&setup, Some(foreign)).await.unwrap_err();

    // Our trust domain and a listed ID, but a CA the bundle does not hold.
    let td = TrustDomain::new(mandate_integration::TRUST_DOMAIN)?;
    let forger = Ca::self_signed(td, CaKey::generate()?, now, 24 * hour)?;
    let forged = leaf(&forger, &id(OPERATOR), now, now + hour)?;
    health_with(&setup, Some(forged)).await.unwrap_err();

    // None of these reached the service: no record names them.
    let audit = setup.audit()?;
    assert!(
        !audit.iter().any(|r| r["actor"] == "spiffe://other.org/ops"),
        "a foreign caller reached the service"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_broker_is_held_to_its_paths_and_its_own_tasks() -> Result<()> {
    let setup = RemoteAdmin::start("broker").await?;
    let parent = setup.agent.spiffe_id.clone();
    let mut broker = setup.client(BROKER).await?;
    let mut other = setup.client(OTHER_BROKER).await?;
    let open = pb::OpenTaskRequest {
        principal: "user:alice@example.org".into(),
        purpose: "po 4711".into(),
        actions: vec!["po.draft".into()],
        deadline_unix: mandate_core::time::unix_seconds(
            SystemTime::now() + Duration::from_secs(600),
        ),
        ..pb::OpenTaskRequest::default()
    };
    let mine = broker.open_task(open.clone()).await?.into_inner().id;
    let theirs = other.open_task(open.clone()).await?.into_inner().id;
    let entry = |path: &str, task: &str| pb::CreateEntryRequest {
        spiffe_id: id(path),
        parent_id: parent.clone(),
        selectors: vec!["unix:uid:4242".into()],
        task_id: task.to_owned(),
        ..pb::CreateEntryRequest::default()
    };

    // Inside its paths, bound to its own task: fine.
    let ok = broker
        .create_entry(entry("ai/po-agent", &mine))
        .await?
        .into_inner();
    // Each rule, refused with one line.
    for (request, why) in [
        (
            entry("finance/agent", &mine),
            "is not under the allowed_paths",
        ),
        (entry("ai", &mine), "is not under the allowed_paths"),
        (entry("aix/agent", &mine), "is not under the allowed_paths"),
        (
            entry("ai/po-agent-2", ""),
            "may only create entries bound to one of its tasks",
        ),
        (entry("ai/po-agent-3", &theirs), "was not opened by"),
        (entry("ai/po-agent-4", "no-such-task"), "was not opened by"),
    ] {
        let status = broker.create_entry(request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{why}");
        assert!(status.message().contains(why), "{}", status.message());
        assert_eq!(status.message().lines().count(), 1);
    }
    // The other broker cannot delete, close or show the first one's work.
    let status = other
        .delete_entry(pb::DeleteEntryRequest { id: ok.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = other
        .close_task(pb::CloseTaskRequest {
            id: mine.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = other
        .get_task(pb::GetTaskRequest { id: mine.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut listed = Vec::new();
    let mut stream = other
        .list_tasks(pb::ListTasksRequest::default())
        .await?
        .into_inner();
    while let Some(chunk) = stream.message().await? {
        listed.extend(chunk.tasks.into_iter().map(|t| t.id));
    }
    assert_eq!(listed, vec![theirs.clone()]);
    // Nor an entry the operator made outside any task, even under /ai/.
    let plain =
        setup
            .server
            .create_entry(&id("ai/plain"), &parent, &["--selector", "unix:uid:4242"])?;
    let status = broker
        .delete_entry(pb::DeleteEntryRequest { id: plain })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Its own work it may undo.
    broker
        .delete_entry(pb::DeleteEntryRequest { id: ok.id })
        .await?;
    broker
        .close_task(pb::CloseTaskRequest {
            id: mine.clone(),
            reason: "done".into(),
        })
        .await?;

    // An approver may not open a task; its attempt is audited.
    let mut approver = setup.client(APPROVER).await?;
    let status = approver.open_task(open).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let audit = setup.audit()?;
    let denials = audit
        .iter()
        .filter(|r| r["kind"] == "admin.deny")
        .filter(|r| r["actor"] == id(BROKER).as_str() || r["actor"] == id(OTHER_BROKER).as_str())
        .count();
    assert_eq!(denials, 6 + 3 + 1, "every refused broker call is audited");
    assert!(audit.iter().any(|r| {
        r["kind"] == "admin.deny"
            && r["actor"] == id(APPROVER).as_str()
            && r["detail"]
                .as_str()
                .unwrap()
                .starts_with("OpenTask refused")
    }));
    Ok(())
}

#[test]
fn bad_admin_ids_exit_64_with_one_line_before_anything_binds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let cases = [
        (
            "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/x\"\nrole = \"root\"\n",
            "unknown variant `root`",
        ),
        (
            "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/x/../y\"\nrole = \"operator\"\n",
            "invalid admin_ids",
        ),
        (
            "[[admin_ids]]\nspiffe_id = \"example.org/ops\"\nrole = \"operator\"\n",
            "invalid admin_ids",
        ),
        (
            "[[admin_ids]]\nspiffe_id = \"spiffe://example.org/b\"\nrole = \"task-broker\"\n",
            "needs allowed_paths",
        ),
    ];
    for (i, (toml, want)) in cases.into_iter().enumerate() {
        let config = dir.path().join(format!("server-{i}.toml"));
        std::fs::write(
            &config,
            format!("admin_bind_address = \"127.0.0.1:{port}\"\n{toml}"),
        )?;
        let data = dir.path().join(format!("data-{i}"));
        let socket = dir.path().join(format!("admin-{i}.sock"));
        let out = run(
            &bin("mandate-server"),
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--bind-address",
                &format!("127.0.0.1:{}", free_port()),
                "--admin-socket",
                socket.to_str().unwrap(),
            ],
            &[],
        )?;
        assert_eq!(out.code, 64, "{toml}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(want), "{toml}: {}", out.stderr);
        assert!(out.stdout.is_empty());
        assert!(!socket.exists() && !data.exists(), "something was created");
        // The admin port was never bound.
        TcpListener::bind(("127.0.0.1", port))?;
    }
    Ok(())
}

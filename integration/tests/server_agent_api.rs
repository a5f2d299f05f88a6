//! The server's agent API against the real binary: join tokens, sync push, CSR handling,
//! authorization, task close -> CRL, eviction.

mod server_support;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use mandate_core::delegation::DELEGATION_OID;
use mandate_core::x509::{generate_p256_keypair, validate_leaf};
use mandate_integration::Server;
use mandate_proto::agent::sync_message::Event;
use mandate_proto::agent::{FetchBundleRequest, SyncMessage};
use mandate_proto::types::TaskState;
use server_support::{attest, attest_raw, block_on, cert_serial, crl_serials};

/// Waits up to `secs` for a sync message matching `pick`.
async fn next_matching<T>(
    stream: &mut tonic::Streaming<SyncMessage>,
    secs: u64,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("timed out waiting for a sync message")??
            .context("sync stream ended")?;
        if let Some(found) = msg.event.as_ref().and_then(&mut pick) {
            return Ok(found);
        }
    }
}

fn audit_kinds(server: &Server) -> Result<Vec<(String, String)>> {
    let records = server.cli_json(&["audit", "list"])?;
    Ok(records
        .as_array()
        .context("array")?
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").to_owned(),
                r["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

#[test]
fn a_join_token_is_single_use_and_refusals_are_audited() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let token = server.token(None)?;
        let (id, chain, _) = attest_raw(&server, &token)
            .await?
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        let token_id = &id.rsplit('/').next().unwrap_or_default().to_owned();
        assert!(
            id.starts_with("spiffe://example.org/mandate/agent/join_token/"),
            "{id}"
        );
        assert_eq!(token_id.len(), 16);
        assert_eq!(validate_leaf(&chain[0])?.spiffe_id.to_string(), id);
        let again = attest_raw(&server, &token)
            .await?
            .err()
            .context("second use must fail")?;
        assert_eq!(again.code(), tonic::Code::PermissionDenied);
        assert!(
            again.message().contains("unknown, used or expired"),
            "{}",
            again.message()
        );
        let unknown = attest_raw(&server, "00000000000000000000000000000000")
            .await?
            .err()
            .context("unknown token")?;
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
        let named = server.token(Some("spiffe://example.org/mandate/agent/a"))?;
        let (named_id, _, _) = attest_raw(&server, &named)
            .await?
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        assert_eq!(named_id, "spiffe://example.org/mandate/agent/a");
        Ok::<_, anyhow::Error>(())
    })?;
    let kinds = audit_kinds(&server)?;
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "agent.deny").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "agent.attest").count(),
        2,
        "{kinds:?}"
    );
    let agents = server.cli_json(&["agent", "list"])?;
    assert_eq!(agents.as_array().map(Vec::len), Some(2));
    Ok(())
}

#[test]
fn an_entry_created_by_the_cli_reaches_a_connected_sync_stream() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let mut stream = agent.sync(0).await?;
        let first = next_matching(&mut stream, 10, |e| match e {
            Event::Snapshot(p) => Some(p.clone()),
            _ => None,
        })
        .await?;
        assert!(first.reset && first.complete && first.entries.is_empty());
        assert!(first.bundle.is_some());
        // Another agent's entry is not sent; ours is, quickly.
        server.create_entry(
            "spiffe://example.org/other",
            "spiffe://example.org/someone-else",
            &["--selector", "unix:uid:1"],
        )?;
        let started = std::time::Instant::now();
        let id = server.create_entry(
            "spiffe://example.org/wl",
            &agent.id,
            &["--selector", "unix:uid:1001"],
        )?;
        let got = next_matching(&mut stream, 10, |e| match e {
            Event::EntryUpsert(en) => Some(en.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(got.id, id, "the first entry pushed is ours");
        assert_eq!(got.selectors, vec!["unix:uid:1001".to_owned()]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "push took {:?}",
            started.elapsed()
        );
        server.cli_ok(&["entry", "delete", &id])?;
        let removed = next_matching(&mut stream, 10, |e| match e {
            Event::EntryRemoved(r) => Some(r.entry_id.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(removed, id);
        // A heartbeat arrives within a few seconds when nothing changes.
        next_matching(&mut stream, 6, |e| {
            matches!(e, Event::Heartbeat(_)).then_some(())
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn a_csr_asking_for_more_gets_only_server_values() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let id = server.create_entry(
            "spiffe://example.org/wl",
            &agent.id,
            &["--selector", "unix:uid:1001"],
        )?;
        let key = generate_p256_keypair()?;
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://example.org/admin".try_into()?),
            rcgen::SanType::URI("spiffe://evil.org/x".try_into()?),
        ];
        let oid: Vec<u64> = DELEGATION_OID
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &oid,
                vec![0x30, 0x00],
            ));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let csr = params.serialize_request(&key)?.der().to_vec();
        let (code, chain) = agent.sign_csr(&id, csr).await?;
        assert_eq!(code, 0);
        let leaf = validate_leaf(&chain[0]).context("issued leaf must follow the SVID profile")?;
        assert_eq!(leaf.spiffe_id.to_string(), "spiffe://example.org/wl");
        assert!(leaf.delegation.is_none(), "delegation came from the CSR");
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0])?;
        let uris = cert
            .subject_alternative_name()?
            .map(|s| s.value.general_names.len())
            .unwrap_or(0);
        assert_eq!(uris, 1, "exactly one SAN");
        assert!(!cert.is_ca());
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn cross_agent_signing_is_refused_and_audited() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let owner = attest(&server, None).await?;
        let mut thief = attest(&server, None).await?;
        let id = server.create_entry(
            "spiffe://example.org/wl",
            &owner.id,
            &["--selector", "unix:uid:1001"],
        )?;
        let err = thief.sign(&id).await.err().context("must be refused")?;
        assert!(err.to_string().contains("PermissionDenied"), "{err}");
        let err = thief
            .sign("no-such-entry")
            .await
            .err()
            .context("must be refused")?;
        assert!(err.to_string().contains("PermissionDenied"), "{err}");
        let kinds = audit_kinds(&server)?;
        let denies: Vec<_> = kinds.iter().filter(|(k, _)| k == "svid.deny").collect();
        assert_eq!(denies.len(), 2, "{kinds:?}");
        assert!(denies.iter().all(|(_, actor)| *actor == thief.id));
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn a_closed_tasks_serial_is_in_the_crl_and_pushed() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let task = server.cli_ok(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "po 4711",
            "--action",
            "po.draft",
            "--deadline",
            "10m",
            "--require-approval",
        ])?;
        let entry = server.create_entry(
            "spiffe://example.org/buyer",
            &agent.id,
            &["--selector", "unix:uid:1001", "--task", &task],
        )?;
        let (code, _) = agent.sign(&entry).await?;
        assert_eq!(
            code,
            tonic::Code::PermissionDenied as i32,
            "pending task must not issue"
        );
        server.cli_ok(&["task", "approve", &task, "--approver", "bob"])?;
        let (code, chain) = agent.sign(&entry).await?;
        assert_eq!(code, 0);
        let leaf = validate_leaf(&chain[0])?;
        let delegation = leaf.delegation.context("delegation present")?;
        assert_eq!(delegation.task.id.as_str(), task);
        assert_eq!(delegation.approval.context("approval")?.approver, "bob");
        assert!(leaf.not_after <= SystemTime::now() + Duration::from_secs(600));
        let serial = cert_serial(&chain[0])?;

        let mut stream = agent.sync(0).await?;
        next_matching(&mut stream, 10, |e| {
            matches!(e, Event::Snapshot(p) if p.complete).then_some(())
        })
        .await?;
        server.cli_ok(&["task", "close", &task, "--reason", "done"])?;
        let closed = next_matching(&mut stream, 5, |e| match e {
            Event::TaskUpdate(t) if t.id == task => Some(t.state),
            _ => None,
        })
        .await?;
        assert_eq!(closed, TaskState::Closed as i32);
        let pushed = next_matching(&mut stream, 5, |e| match e {
            Event::BundleUpdate(b) => Some(b.crls.clone()),
            _ => None,
        })
        .await?;
        let listed: Vec<String> = pushed
            .iter()
            .map(|c| crl_serials(c))
            .collect::<Result<Vec<_>>>()?
            .concat();
        assert!(
            listed.contains(&serial),
            "{serial} not in pushed CRL {listed:?}"
        );
        let bundle = agent
            .client
            .fetch_bundle(FetchBundleRequest {})
            .await?
            .into_inner();
        let fetched: Vec<String> = bundle
            .crls
            .iter()
            .map(|c| crl_serials(c))
            .collect::<Result<Vec<_>>>()?
            .concat();
        assert!(fetched.contains(&serial));
        let (code, _) = agent.sign(&entry).await?;
        assert_eq!(
            code,
            tonic::Code::PermissionDenied as i32,
            "closed task must not issue"
        );
        Ok::<_, anyhow::Error>(())
    })?;
    let reopen = server.cli(&[
        "task",
        "open",
        "--principal",
        "user:a",
        "--purpose",
        "p",
        "--action",
        "a",
        "--id",
        "x",
    ])?;
    assert!(reopen.success());
    server.cli_ok(&["task", "close", "x"])?;
    let reuse = server.cli(&[
        "task",
        "open",
        "--principal",
        "user:a",
        "--purpose",
        "p",
        "--action",
        "a",
        "--id",
        "x",
    ])?;
    assert!(
        !reuse.success() && reuse.stdout.is_empty(),
        "closed IDs are never reused"
    );
    Ok(())
}

#[test]
fn an_evicted_agent_can_neither_sync_nor_sign() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let entry = server.create_entry(
            "spiffe://example.org/wl",
            &agent.id,
            &["--selector", "unix:uid:1001"],
        )?;
        let mut stream = agent.sync(0).await?;
        next_matching(&mut stream, 10, |e| {
            matches!(e, Event::Snapshot(_)).then_some(())
        })
        .await?;
        assert_eq!(server.cli_ok(&["agent", "evict", &agent.id])?, agent.id);
        // The open stream ends with PermissionDenied.
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => bail!("stream ended without a status"),
                    Err(s) => return Ok(s),
                }
            }
        })
        .await??;
        assert_eq!(ended.code(), tonic::Code::PermissionDenied);
        let err = agent.sign(&entry).await.err().context("sign must fail")?;
        assert!(err.to_string().contains("agent evicted"), "{err}");
        let status = agent.sync(0).await.err().context("sync must fail")?;
        assert!(status.to_string().contains("agent evicted"), "{status}");
        Ok::<_, anyhow::Error>(())
    })?;
    let agents = server.cli_json(&["agent", "list"])?;
    assert_eq!(agents[0]["banned"], true);
    Ok(())
}

#[test]
fn jwt_svids_renewal_and_resumed_sync() -> Result<()> {
    use mandate_core::jwt::{Jwks, verify};
    use mandate_core::x509::csr_request;
    use mandate_proto::agent::{MintJwtSvidRequest, RenewAgentRequest};
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let task = server.cli_ok(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "p",
            "--action",
            "po.draft",
            "--deadline",
            "2m",
        ])?;
        let entry = server.create_entry(
            "spiffe://example.org/buyer",
            &agent.id,
            &[
                "--selector",
                "unix:uid:1001",
                "--task",
                &task,
                "--jwt-ttl",
                "1h",
            ],
        )?;
        let minted = agent
            .client
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: entry.clone(),
                audience: vec!["erp".into()],
            })
            .await?
            .into_inner();
        let bundle = agent
            .client
            .fetch_bundle(FetchBundleRequest {})
            .await?
            .into_inner();
        let jwks = Jwks::from_json_bytes(&bundle.jwks)?;
        let claims = verify(&minted.token, &jwks, "erp", SystemTime::now())?;
        assert_eq!(claims.sub.to_string(), "spiffe://example.org/buyer");
        let deadline = server.cli_json(&["task", "show", &task])?["deadline"]
            .as_i64()
            .context("deadline")?;
        assert!(
            claims.exp <= deadline,
            "exp {} passes the deadline {deadline}",
            claims.exp
        );
        assert_eq!(
            claims
                .delegation
                .context("delegation claim")?
                .task
                .id
                .as_str(),
            task
        );
        let empty = agent
            .client
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: entry.clone(),
                audience: vec![],
            })
            .await;
        assert_eq!(
            empty.err().context("empty audience")?.code(),
            tonic::Code::InvalidArgument
        );

        // Renewal issues a fresh agent SVID for a new key.
        let key = generate_p256_keypair()?;
        let renewed = agent
            .client
            .renew_agent(RenewAgentRequest {
                csr: csr_request(&key)?,
            })
            .await?
            .into_inner();
        assert_eq!(
            validate_leaf(&renewed.cert_chain[0])?.spiffe_id.to_string(),
            agent.id
        );
        assert_ne!(renewed.cert_chain[0], agent.chain[0]);

        // A resumed stream replays only what changed after the given revision.
        let mut stream = agent.sync(0).await?;
        let revision = loop {
            let msg = stream.message().await?.context("stream")?;
            if matches!(&msg.event, Some(Event::Snapshot(p)) if p.complete) {
                break msg.revision;
            }
        };
        drop(stream);
        let later = server.create_entry(
            "spiffe://example.org/later",
            &agent.id,
            &["--selector", "unix:uid:7"],
        )?;
        let mut resumed = agent.sync(revision).await?;
        let first = tokio::time::timeout(Duration::from_secs(5), resumed.message())
            .await??
            .context("message")?;
        match first.event {
            Some(Event::EntryUpsert(e)) => {
                assert_eq!(e.id, later, "only the new entry is replayed")
            }
            other => bail!("expected the replayed entry first, got {other:?}"),
        }
        assert!(first.revision > revision);
        Ok::<_, anyhow::Error>(())
    })
}

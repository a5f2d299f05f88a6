//! A hostile node agent against the real server's agent API (DESIGN 3.5 "Signing"): minting
//! for another agent's entry, signing or minting under a closed task, a batch that smuggles a
//! foreign entry between its own, oversized batches and messages. The CSR contents (CA=true,
//! extra SANs, a forged delegation) and cross-agent signing are covered in server_agent_api.rs
//! and delegation_svid.rs; this file covers what they do not.

mod server_support;

use anyhow::{Context, Result};
use mandate_core::x509::{csr_request, generate_p256_keypair};
use mandate_integration::Server;
use mandate_proto::agent::{MintJwtSvidRequest, SignX509SvidRequest, SignX509SvidsRequest};
use server_support::{TestAgent, attest, block_on};

fn open_task(server: &Server) -> Result<String> {
    server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "adversarial",
        "--action",
        "po.read",
        "--deadline",
        "1h",
    ])
}

async fn mint(agent: &mut TestAgent, entry_id: &str) -> Result<String, tonic::Status> {
    let request = MintJwtSvidRequest {
        entry_id: entry_id.to_owned(),
        audience: vec!["svc".into()],
    };
    agent
        .client
        .mint_jwt_svid(request)
        .await
        .map(|r| r.into_inner().token)
}

fn csr() -> Result<Vec<u8>> {
    Ok(csr_request(&generate_p256_keypair()?)?)
}

#[test]
fn no_issuance_outside_the_callers_entries_or_after_its_task_closes() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut owner = attest(&server, None).await?;
        let mut thief = attest(&server, None).await?;
        let task = open_task(&server)?;
        let bound = server.create_entry(
            "spiffe://example.org/ai/buyer",
            &owner.id,
            &["--selector", "unix:uid:1001", "--task", &task],
        )?;
        let plain = server.create_entry(
            "spiffe://example.org/wl",
            &owner.id,
            &["--selector", "unix:uid:1001"],
        )?;

        // The owner may mint; another agent may not, for either entry.
        mint(&mut owner, &bound)
            .await
            .map_err(|s| anyhow::anyhow!("owner mint: {s:?}"))?;
        for entry in [&bound, &plain] {
            let status = mint(&mut thief, entry)
                .await
                .err()
                .context("thief minted a JWT-SVID")?;
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        }

        // A batch that hides a foreign entry between the caller's own is refused whole: no
        // certificate for the caller's own entries leaks out of a refused call either.
        let mut thiefs_own = attest(&server, None).await?;
        let own = server.create_entry(
            "spiffe://example.org/own",
            &thiefs_own.id,
            &["--selector", "unix:uid:7"],
        )?;
        let batch = SignX509SvidsRequest {
            requests: vec![
                SignX509SvidRequest {
                    entry_id: own.clone(),
                    csr: csr()?,
                },
                SignX509SvidRequest {
                    entry_id: plain.clone(),
                    csr: csr()?,
                },
                SignX509SvidRequest {
                    entry_id: own.clone(),
                    csr: csr()?,
                },
            ],
        };
        let status = thiefs_own
            .client
            .sign_x509_svids(batch)
            .await
            .err()
            .context("mixed batch signed")?;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

        // After the task closes, neither an X509-SVID nor a JWT-SVID is issued for it.
        let (code, _) = owner.sign(&bound).await?;
        assert_eq!(code, 0, "issues while the task is open");
        server.cli_ok(&["task", "close", &task])?;
        let (code, chain) = owner.sign(&bound).await?;
        assert_eq!(
            code,
            tonic::Code::PermissionDenied as i32,
            "signed under a closed task"
        );
        assert!(chain.is_empty());
        let status = mint(&mut owner, &bound)
            .await
            .err()
            .context("minted under a closed task")?;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        // The plain entry is unaffected.
        assert_eq!(owner.sign(&plain).await?.0, 0);
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn oversized_batches_and_messages_get_a_clear_status_and_the_server_survives() -> Result<()> {
    let server = Server::start()?;
    block_on(async {
        let mut agent = attest(&server, None).await?;
        let entry = server.create_entry(
            "spiffe://example.org/wl",
            &agent.id,
            &["--selector", "unix:uid:1001"],
        )?;
        let one = csr()?;

        // 1,001 CSRs: over the batch limit of 1,000.
        let requests = (0..1001)
            .map(|_| SignX509SvidRequest {
                entry_id: entry.clone(),
                csr: one.clone(),
            })
            .collect();
        let status = agent
            .client
            .sign_x509_svids(SignX509SvidsRequest { requests })
            .await
            .err()
            .context("1001 signed")?;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        // A 5 MiB message: over tonic's 4 MiB decode limit.
        let huge = SignX509SvidsRequest {
            requests: vec![SignX509SvidRequest {
                entry_id: entry.clone(),
                csr: vec![0x30; 5 << 20],
            }],
        };
        let status = agent
            .client
            .sign_x509_svids(huge)
            .await
            .err()
            .context("5 MiB accepted")?;
        assert!(
            matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        );

        // A CSR just under the message limit but over the 8 KiB CSR limit: refused per entry.
        let big = SignX509SvidsRequest {
            requests: vec![SignX509SvidRequest {
                entry_id: entry.clone(),
                csr: vec![0x30; 64 << 10],
            }],
        };
        let reply = agent.client.sign_x509_svids(big).await?.into_inner();
        assert_eq!(
            reply.results[0].code,
            tonic::Code::InvalidArgument as i32,
            "{:?}",
            reply.results[0]
        );

        // An oversized attestation on a fresh, unauthenticated connection.
        let mut anonymous = server_support::channel(&server, None).await?;
        let request = mandate_proto::agent::AttestRequest {
            join_token: "x".repeat(5 << 20),
            csr: one.clone(),
        };
        let status = anonymous
            .attest(request)
            .await
            .err()
            .context("5 MiB attest accepted")?;
        assert!(
            matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        );

        // The server is alive and still signs on the same connection.
        assert!(
            server.cli(&["healthcheck"])?.success(),
            "server died:\n{}",
            server.log()
        );
        assert_eq!(agent.sign(&entry).await?.0, 0);
        Ok::<_, anyhow::Error>(())
    })
}

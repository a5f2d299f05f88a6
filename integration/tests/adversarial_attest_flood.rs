//! An unauthenticated flood of `Attest` calls with bogus join tokens (issue 11, item 10):
//! each refusal once wrote its own fsynced `agent.deny` record, so anyone who could reach the
//! port drove the server's disk. Now the records are bounded (a burst, then about one a
//! second, plus summaries), every refusal is still counted in the audit log, and a real agent
//! attests during the flood.

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use mandate_core::x509::{csr_request, generate_p256_keypair};
use mandate_integration::Server;
use mandate_proto::agent::AttestRequest;
use mandate_server::attest::{RefusalPolicy, refusals_in};

const FLOODERS: usize = 6;
const FLOOD: Duration = Duration::from_secs(4);

/// The `agent.deny` records and the refusals they account for.
fn denials(server: &Server) -> Result<(usize, u64)> {
    let audit = server.cli_json(&["audit", "list"])?;
    let deny: Vec<String> = audit
        .as_array()
        .context("audit array")?
        .iter()
        .filter(|r| r["kind"] == "agent.deny")
        .map(|r| r["detail"].as_str().unwrap_or("").to_owned())
        .collect();
    Ok((deny.len(), deny.iter().map(|d| refusals_in(d)).sum()))
}

#[test]
fn a_bogus_attest_flood_writes_bounded_records_and_a_real_agent_still_attests() -> Result<()> {
    let server = Server::start()?;
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flood_secs = server_support::block_on(async {
        let mut flooders = Vec::new();
        for f in 0..FLOODERS {
            let mut client = server_support::channel(&server, None).await?;
            let csr = csr_request(&generate_p256_keypair()?)?;
            let (refused, stop) = (Arc::clone(&refused), Arc::clone(&stop));
            flooders.push(tokio::spawn(async move {
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let reply = client
                        .attest(AttestRequest {
                            join_token: format!("{f:02x}{n:030x}"),
                            csr: csr.clone(),
                        })
                        .await;
                    match reply {
                        Err(s) if s.code() == tonic::Code::PermissionDenied => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => anyhow::bail!("bogus token: {other:?}"),
                    }
                }
                Ok(())
            }));
        }
        let started = Instant::now();
        // A real agent attests in the middle of the flood.
        tokio::time::sleep(FLOOD / 2).await;
        let token = server.token(Some("spiffe://example.org/mandate/agent/real"))?;
        let attest_start = Instant::now();
        let (id, chain, _) = server_support::attest_raw(&server, &token)
            .await?
            .map_err(|s| anyhow::anyhow!("real attestation during the flood: {s}"))?;
        let took = attest_start.elapsed();
        ensure!(id == "spiffe://example.org/mandate/agent/real" && !chain.is_empty());
        println!("real attestation during the flood took {took:?}");
        ensure!(took < Duration::from_secs(5), "took {took:?}");
        tokio::time::sleep(FLOOD.saturating_sub(started.elapsed())).await;
        stop.store(true, Ordering::Relaxed);
        for f in flooders {
            f.await??;
        }
        Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
    })?;
    let refused = refused.load(Ordering::Relaxed);
    ensure!(
        refused > 100,
        "the flood was too small to prove anything: {refused}"
    );
    // Every refusal is accounted for once the summary is written (within the flush interval).
    let policy = RefusalPolicy::default();
    let wait_until = Instant::now() + policy.flush_after + Duration::from_secs(15);
    let (records, counted) = loop {
        let (records, counted) = denials(&server)?;
        if counted >= refused || Instant::now() > wait_until {
            break (records, counted);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // The burst, about one a second, and a summary per flush interval.
    let bound = f64::from(policy.burst)
        + (flood_secs + 1.0) * policy.per_second
        + (flood_secs / policy.flush_after.as_secs_f64()).ceil()
        + 2.0;
    println!(
        "{refused} refused attestations in {flood_secs:.1} s: {records} agent.deny records \
         (bound {bound:.0}) accounting for {counted}"
    );
    ensure!(
        counted == refused,
        "audit counts {counted} of {refused} refusals"
    );
    ensure!((records as f64) <= bound, "{records} records > {bound}");
    ensure!(!server.log().contains("panicked"));
    Ok(())
}

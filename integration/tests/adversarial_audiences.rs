//! Finding 5 of issue 11: a workload could send `FetchJWTSVID` audiences of any number and
//! size, and they landed in the server's audit `detail` (five 1 MiB audiences broke `audit
//! list`). Both the agent's Workload API and the server's `MintJwtSvid` now bound them.

mod agent_support;
mod server_support;

use std::time::Duration;

use agent_support::*;
use anyhow::{Context, Result};
use mandate_core::jwt::{MAX_AUDIENCE_LEN, MAX_AUDIENCE_TOTAL, MAX_AUDIENCES};
use mandate_proto::agent::MintJwtSvidRequest;
use mandate_proto::workload::JwtsvidRequest;

fn many(count: usize, len: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut audience = i.to_string();
            audience.extend(std::iter::repeat_n('a', len - audience.len()));
            audience
        })
        .collect()
}

/// The hostile audience lists, each with the bound it breaks.
fn hostile() -> Vec<(Vec<String>, &'static str)> {
    vec![
        (many(MAX_AUDIENCES + 1, 8), "too many audiences"),
        (many(1, MAX_AUDIENCE_LEN + 1), "too long"),
        (many(3, 1 << 20), "too long"),
        (many(5, MAX_AUDIENCE_LEN), "in total"),
        (
            vec!["ok".into(), String::new()],
            "audience must be specified",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workload_api_refuses_unbounded_audiences() -> Result<()> {
    let (server, agent) = server_and_agent("audiences")?;
    entry_for_me(&server, &agent, "workload/aud", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let mut client = mandate_integration::workload::client(&agent.socket_path).await?;
    let fetch = |audience: Vec<String>| {
        let mut client = client.clone();
        async move {
            client
                .fetch_jwtsvid(with_header(JwtsvidRequest {
                    audience,
                    spiffe_id: String::new(),
                }))
                .await
        }
    };
    for (audience, why) in hostile() {
        let status = fetch(audience.clone())
            .await
            .err()
            .with_context(|| format!("{} audiences accepted", audience.len()))?;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(why), "{}", status.message());
    }
    // At the bounds, it works.
    let at_bounds = many(MAX_AUDIENCES, MAX_AUDIENCE_TOTAL / MAX_AUDIENCES);
    let svids = fetch(at_bounds).await?.into_inner().svids;
    assert_eq!(svids.len(), 1);
    // No refused audience reached the server's audit log.
    let audit = server.cli_json(&["audit", "list"])?;
    let text = audit.to_string();
    assert!(
        !text.contains(&"a".repeat(MAX_AUDIENCE_LEN)),
        "a refused audience was audited"
    );
    assert!(
        client
            .fetch_jwtsvid(with_header(JwtsvidRequest {
                audience: vec!["after".into()],
                spiffe_id: String::new(),
            }))
            .await
            .is_ok()
    );
    Ok(())
}

#[test]
fn mint_jwt_svid_refuses_unbounded_audiences() -> Result<()> {
    let server = mandate_integration::Server::start()?;
    server_support::block_on(async {
        let mut agent = server_support::attest(&server, None).await?;
        let entry = server.create_entry(
            "spiffe://example.org/aud",
            &agent.id,
            &["--selector", "unix:uid:1001"],
        )?;
        for (audience, why) in hostile() {
            let status = agent
                .client
                .mint_jwt_svid(MintJwtSvidRequest {
                    entry_id: entry.clone(),
                    audience: audience.clone(),
                })
                .await
                .err()
                .with_context(|| format!("{} audiences minted", audience.len()))?;
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(why), "{}", status.message());
        }
        agent
            .client
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: entry.clone(),
                audience: many(MAX_AUDIENCES, 8),
            })
            .await
            .context("sixteen short audiences")?;
        // The audit log holds one issuance and lists fine.
        let audit = server.cli_json(&["audit", "list"])?;
        let issued = audit
            .as_array()
            .context("audit list is an array")?
            .iter()
            .filter(|r| r["kind"] == "svid.issue")
            .count();
        assert_eq!(issued, 1);
        Ok(())
    })
}

//! Hostile and careless input against the real server (issue 11, items 1, 8, 11, 13 and the
//! DESIGN 3.7 input rules): reserved identities, a workload posing as an agent on the agent
//! API, durations and times out of range, malformed IDs, selectors, principals and limits,
//! entries bound to ended tasks. Each refusal is the right gRPC status and one line; the CLI
//! exits non-zero with nothing on stdout; the server never panics.

mod server_support;

use anyhow::{Context, Result, ensure};
use mandate_integration::{CliOutput, Server, workload};
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::admin::{CreateEntryRequest, CreateJoinTokenRequest, OpenTaskRequest};
use tonic::Code;
use tonic::transport::Channel;

const AGENT_A: &str = "spiffe://example.org/mandate/agent/a";
const AGENT_B: &str = "spiffe://example.org/mandate/agent/b";

/// A refused CLI command: non-zero exit, nothing on stdout, one line on stderr that names
/// the problem (`needle`), no panic.
fn refused(out: &CliOutput, needle: &str, what: &str) -> Result<()> {
    ensure!(!out.success(), "{what}: accepted: {out:?}");
    ensure!(
        out.stdout.trim().is_empty(),
        "{what}: stdout {:?}",
        out.stdout
    );
    ensure!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    let first = out.stderr.lines().next().unwrap_or("");
    ensure!(
        first.contains(needle),
        "{what}: first stderr line {first:?} does not say {needle:?}"
    );
    let lines = out.stderr.trim().lines().count();
    ensure!(lines == 1, "{what}: {lines} lines: {:?}", out.stderr);
    Ok(())
}

async fn admin(server: &Server) -> Result<AdminClient<Channel>> {
    Ok(AdminClient::new(
        workload::channel(&server.admin_socket).await?,
    ))
}

#[test]
fn a_workload_cannot_take_an_agent_identity_or_call_the_agent_api() -> Result<()> {
    let server = Server::start()?;
    server_support::block_on(async {
        let mut a = server_support::attest(&server, Some(AGENT_A)).await?;
        let b = server_support::attest(&server, Some(AGENT_B)).await?;
        ensure!(b.id == AGENT_B);
        // The attack of issue 11: an entry under agent A that carries agent B's ID, whose SVID
        // would then call SignX509Svids as B. Refused at registration, for B's ID, the server's
        // and anything else under /mandate/.
        for reserved in [
            AGENT_B,
            "spiffe://example.org/mandate/server",
            "spiffe://example.org/mandate/server/s1",
            "spiffe://example.org/mandate",
            "spiffe://example.org/mandate/other",
        ] {
            let out = server.cli(&[
                "entry",
                "create",
                "--spiffe-id",
                reserved,
                "--parent-id",
                AGENT_A,
                "--selector",
                "unix:uid:1001",
            ])?;
            refused(&out, "reserved", reserved)?;
            let status = admin(&server)
                .await?
                .create_entry(CreateEntryRequest {
                    spiffe_id: reserved.into(),
                    parent_id: AGENT_A.into(),
                    selectors: vec!["unix:uid:1001".into()],
                    ..Default::default()
                })
                .await
                .err()
                .context("reserved ID accepted over gRPC")?;
            ensure!(status.code() == Code::InvalidArgument, "{status:?}");
        }
        // A workload SVID, legitimately issued under agent A, is not an agent: the agent API
        // refuses it on every call, even for an entry that agent B parents.
        let entry_of_b = server.create_entry(
            "spiffe://example.org/ai/of-b",
            AGENT_B,
            &["--selector", "unix:uid:1001"],
        )?;
        let buyer = server.create_entry(
            "spiffe://example.org/ai/buyer",
            AGENT_A,
            &["--selector", "unix:uid:1001"],
        )?;
        let key = mandate_core::x509::generate_p256_keypair()?;
        let (code, chain) = a
            .sign_csr(&buyer, mandate_core::x509::csr_request(&key)?)
            .await?;
        ensure!(code == 0 && !chain.is_empty(), "agent A signs its workload");
        let mut workload = server_support::TestAgent {
            id: "spiffe://example.org/ai/buyer".into(),
            client: server_support::channel(&server, Some((&chain, &key))).await?,
            chain,
            key,
        };
        let denied = workload
            .sign(&entry_of_b)
            .await
            .err()
            .context("a workload SVID signed on the agent API")?;
        ensure!(
            denied.to_string().contains("PermissionDenied")
                && denied.to_string().contains("/mandate/agent/"),
            "{denied}"
        );
        let sync = workload.sync(0).await.err().context("workload synced")?;
        ensure!(sync.to_string().contains("not an agent"), "{sync}");
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(!server.log().contains("panicked"));
    Ok(())
}

#[test]
fn agent_ids_lie_under_mandate_agent() -> Result<()> {
    let server = Server::start()?;
    for bad in [
        "spiffe://example.org/mandate/server",
        "spiffe://example.org/node/1",
        "spiffe://example.org/mandate/agent",
        "spiffe://example.org/mandate/agents/x",
        "spiffe://EXAMPLE.org/mandate/agent/x",
        "spiffe://other.org/mandate/agent/x",
    ] {
        let out = server.cli(&["token", "generate", "--agent-id", bad])?;
        refused(&out, "agent ID", bad)?;
    }
    let token = server.cli_json(&[
        "token",
        "generate",
        "--agent-id",
        "spiffe://example.org/mandate/agent/node-7",
    ])?;
    ensure!(token["agent_id"] == "spiffe://example.org/mandate/agent/node-7");
    server_support::block_on(async {
        let status = admin(&server)
            .await?
            .create_join_token(CreateJoinTokenRequest {
                agent_id: "spiffe://example.org/mandate/server".into(),
                ..Default::default()
            })
            .await
            .err()
            .context("server ID accepted over gRPC")?;
        ensure!(status.code() == Code::InvalidArgument, "{status:?}");
        Ok(())
    })
}

#[test]
fn durations_and_times_have_checked_ranges() -> Result<()> {
    let server = Server::start()?;
    let task = |deadline: &str| {
        server.cli(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "p",
            "--action",
            "po.draft",
            "--deadline",
            deadline,
        ])
    };
    let entry = |flag: &str, ttl: &str| {
        server.cli(&[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/ai/ttl",
            "--parent-id",
            AGENT_A,
            "--selector",
            "unix:uid:7",
            flag,
            ttl,
        ])
    };
    // Zero, one past the maximum, and absurd values: one line each, never a panic.
    for bad in ["0s", "31622401s", "10000y", "500000000000y", "soon"] {
        refused(&task(bad)?, "--deadline", bad)?;
    }
    for bad in ["0s", "2592001s", "500000000000y"] {
        refused(
            &server.cli(&["token", "generate", "--ttl", bad])?,
            "--ttl",
            bad,
        )?;
        refused(&entry("--x509-ttl", bad)?, "--x509-ttl", bad)?;
        refused(&entry("--jwt-ttl", bad)?, "--jwt-ttl", bad)?;
    }
    // The edges themselves are accepted.
    for good in ["1s", "1y", "366days"] {
        let out = task(good)?;
        ensure!(out.success(), "--deadline {good}: {out:?}");
    }
    for good in ["1s", "30days"] {
        server.cli_ok(&["token", "generate", "--ttl", good])?;
    }
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/ai/ttl",
        "--parent-id",
        AGENT_A,
        "--selector",
        "unix:uid:7",
        "--x509-ttl",
        "1s",
        "--jwt-ttl",
        "30days",
    ])?;
    // Task list and show still print every task.
    let list = server.cli_json(&["task", "list"])?;
    ensure!(list.as_array().map(Vec::len) == Some(3), "{list}");
    // The admin API checks what it is sent, whatever the client.
    server_support::block_on(async {
        let mut admin = admin(&server).await?;
        for ttl_seconds in [u64::MAX, 500_000_000_000 * 31_557_600, 2_592_001] {
            let status = admin
                .create_join_token(CreateJoinTokenRequest {
                    ttl_seconds,
                    ..Default::default()
                })
                .await
                .err()
                .context("absurd token TTL accepted")?;
            ensure!(status.code() == Code::InvalidArgument, "{status:?}");
        }
        let now = mandate_core::time::unix_seconds(std::time::SystemTime::now());
        for deadline_unix in [
            i64::MAX,
            i64::MIN,
            now + 31_622_400 + 60,
            -1,
            253_402_300_800,
        ] {
            let status = admin
                .open_task(OpenTaskRequest {
                    principal: "user:alice@example.org".into(),
                    purpose: "p".into(),
                    actions: vec!["po.draft".into()],
                    deadline_unix,
                    ..Default::default()
                })
                .await
                .err()
                .context("absurd deadline accepted")?;
            ensure!(status.code() == Code::InvalidArgument, "{status:?}");
            ensure!(status.message().lines().count() == 1, "{status:?}");
        }
        for seconds in [u64::MAX, 0x0010_0000_0000_0000] {
            let status = admin
                .create_entry(CreateEntryRequest {
                    spiffe_id: "spiffe://example.org/ai/huge".into(),
                    parent_id: AGENT_A.into(),
                    selectors: vec!["unix:uid:7".into()],
                    x509_ttl_seconds: seconds,
                    ..Default::default()
                })
                .await
                .err()
                .context("absurd SVID TTL accepted")?;
            ensure!(status.code() == Code::InvalidArgument, "{status:?}");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    server.cli_ok(&["healthcheck"])?;
    ensure!(!server.log().contains("panicked"), "{}", server.log());
    Ok(())
}

#[test]
fn expired_join_tokens_are_pruned_and_a_used_one_stays_refused() -> Result<()> {
    use mandate_server::attest::{TOKEN_REFUSED, token_hash};
    use mandate_server::store::{SledStore, Store};
    let mut server = Server::start()?;
    let used = server.cli_ok(&["token", "generate", "--ttl", "3s"])?;
    let unused = server.cli_ok(&["token", "generate", "--ttl", "3s"])?;
    let live = server.cli_ok(&["token", "generate", "--ttl", "10m"])?;
    server_support::block_on(server_support::attest_raw(&server, &used))?
        .map_err(|s| anyhow::anyhow!("attest: {s}"))?;
    std::thread::sleep(std::time::Duration::from_secs(4));
    // The server prunes at start and every minute after.
    server.restart()?;
    let start = std::time::Instant::now();
    while !server.log().contains("pruned expired join tokens") {
        ensure!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no pruning: {}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.stop()?;
    {
        let store = SledStore::open(&server.data_dir.join("store"))?;
        let stored = |t: &str| store.token(&token_hash(t));
        ensure!(stored(&used)?.is_none(), "the used, expired token is gone");
        ensure!(
            stored(&unused)?.is_none(),
            "the unused, expired token is gone"
        );
        ensure!(stored(&live)?.is_some(), "the live token stays");
    }
    server.restart()?;
    // Pruned or not, the used token stays refused; the live one still attests.
    let refused = server_support::block_on(server_support::attest_raw(&server, &used))?
        .err()
        .context("a used token attested again")?;
    ensure!(refused.code() == Code::PermissionDenied && refused.message() == TOKEN_REFUSED);
    server_support::block_on(server_support::attest_raw(&server, &live))?
        .map_err(|s| anyhow::anyhow!("live token: {s}"))?;
    Ok(())
}

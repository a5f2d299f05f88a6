//! Revocation reaches every node (DESIGN 1 step 7, 3.4): one server, two agents; the AI agent
//! runs on node A, the po-service that verifies it (mandate-verify) on node B. A task close
//! is refused by B's verifier within 1 s on an already-open connection, also when the task's
//! entry was deleted first and when B was down during the close; B's `ValidateJWTSVID`
//! refuses a JWT-SVID minted on A; B's CRLs list the closed task's serial and verify against
//! the bundle; and the closed set drops a task once its deadline passed.

mod delegation_support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use delegation_support::{AI_ID, AiSession, PoService, block_on, call_until_refused, jwt_and_jwks};
use mandate_integration::cluster::Cluster;
use mandate_integration::{Agent, wait_for, workload};
use mandate_proto::delegation::WatchRequest;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use mandate_proto::workload::{
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest,
};
use tonic::transport::Channel;

/// The ID this test process takes on the verifier's node to read its feeds itself.
const READER_ID: &str = "spiffe://example.org/test-reader";

/// Opens a task, binds the AI agent on node A to it and starts po-service on node B.
fn journey(cluster: &Cluster) -> Result<(String, String, PoService)> {
    let task = cluster.open_task(&[
        "--action",
        "po.read",
        "--action",
        "po.draft",
        "--value-limit",
        "500.00:EUR",
    ])?;
    let entry = cluster.bind_caller(AI_ID, &task)?;
    let service = PoService::start(&cluster.server, &cluster.verifier, &[])?;
    Ok((task, entry, service))
}

/// An open session whose first call is allowed; returns it with its connection number.
fn allowed_session(cluster: &Cluster, service: &PoService) -> Result<(AiSession, u64)> {
    let mut session = AiSession::start(&cluster.caller, service)?;
    let allowed = session.call("po.read")?;
    assert_eq!(AiSession::code(&allowed), None, "allowed before: {allowed}");
    let connection = AiSession::connection(&allowed).context("connection number")?;
    Ok((session, connection))
}

/// Asserts `refused` is `task_closed` on `connection`, `latency` under `bound`.
fn assert_refused(
    refused: &serde_json::Value,
    connection: u64,
    latency: Duration,
    bound: Duration,
) {
    assert_eq!(
        AiSession::code(refused).as_deref(),
        Some("task_closed"),
        "{refused}"
    );
    assert_eq!(
        AiSession::connection(refused),
        Some(connection),
        "refused on the connection that was open before the close"
    );
    assert!(
        latency < bound,
        "refused {latency:?} after close (bound {bound:?})"
    );
}

/// Gives this test process an identity on `agent` (its uid and its own executable) and waits
/// until the agent holds its SVID.
fn reader_on(cluster: &Cluster, agent: &Agent) -> Result<()> {
    let me = std::fs::canonicalize(std::env::current_exe()?)?;
    let path = format!("unix:path:{}", me.display());
    let uid = format!("unix:uid:{}", mandate_integration::cluster::current_uid());
    cluster.server.create_entry(
        READER_ID,
        &agent.spiffe_id,
        &["--selector", &uid, "--selector", &path],
    )?;
    // The agent serves this process only once it holds the reader's SVID.
    wait_for("the reader's SVID", Duration::from_secs(30), || {
        block_on(delegation_support::first_x509(
            agent,
            Duration::from_secs(2),
        ))
        .ok()
        .flatten()
    })?;
    Ok(())
}

/// The closed set in the first snapshot of `agent`'s TaskStatus feed.
async fn closed_set(agent: &Agent) -> Result<Vec<String>> {
    let mut client = workload::task_status_client(&agent.socket_path).await?;
    let mut feed = client
        .watch(workload::with_header(WatchRequest {}))
        .await?
        .into_inner();
    let snapshot = feed.message().await?.context("a task-status snapshot")?;
    Ok(snapshot.closed_task_ids)
}

#[test]
fn a_verifier_on_another_node_refuses_a_closed_task_within_a_second() -> Result<()> {
    let cluster = Cluster::start()?;
    let (task, _entry, service) = journey(&cluster)?;
    let (mut session, connection) = allowed_session(&cluster, &service)?;

    cluster.close_task(&task)?;
    let closed_at = Instant::now();
    let (refused, at) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(5),
    )?;
    assert_refused(&refused, connection, at - closed_at, Duration::from_secs(1));
    Ok(())
}

#[test]
fn a_task_whose_entry_was_deleted_first_is_refused_on_every_node() -> Result<()> {
    let cluster = Cluster::start()?;
    let (task, entry, service) = journey(&cluster)?;
    let (mut session, connection) = allowed_session(&cluster, &service)?;

    // No agent parents an entry of the task any more: the close must reach them all anyway.
    cluster.server.cli_ok(&["entry", "delete", &entry])?;
    cluster.close_task(&task)?;
    let closed_at = Instant::now();
    let (refused, at) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(5),
    )?;
    assert_refused(&refused, connection, at - closed_at, Duration::from_secs(1));
    Ok(())
}

#[test]
fn a_verifier_node_that_was_down_during_the_close_learns_it_from_its_snapshot() -> Result<()> {
    let mut cluster = Cluster::start()?;
    let (task, _entry, service) = journey(&cluster)?;
    let (mut session, connection) = allowed_session(&cluster, &service)?;

    cluster.verifier.kill9();
    cluster.close_task(&task)?;
    cluster.verifier.restart()?;
    let ready_at = Instant::now();
    // po-service's watcher reconnects with a backoff of at most 2 s (mandate-verify's
    // default); until then its last snapshot (fresh for 15 s) does not list the task.
    let (refused, at) = call_until_refused(
        &mut session,
        "po.read",
        Instant::now(),
        Duration::from_secs(10),
    )?;
    assert_refused(&refused, connection, at - ready_at, Duration::from_secs(4));
    Ok(())
}

#[test]
fn validate_jwtsvid_on_another_node_refuses_a_closed_task() -> Result<()> {
    let cluster = Cluster::start()?;
    let task = cluster.open_task(&["--action", "po.read"])?;
    cluster.bind_caller(AI_ID, &task)?;
    reader_on(&cluster, &cluster.verifier)?;
    block_on(async {
        let (token, _) = jwt_and_jwks(&cluster.caller, "po-service").await?;
        let mut verifier = workload::client(&cluster.verifier.socket_path).await?;
        let valid = validate(&mut verifier, &token).await?;
        assert_eq!(valid.spiffe_id, AI_ID, "valid on node B before the close");

        cluster.close_task(&task)?;
        let closed_at = Instant::now();
        let refusal = loop {
            match validate(&mut verifier, &token).await {
                Err(status) => break status,
                Ok(_) if closed_at.elapsed() > Duration::from_secs(5) => {
                    bail!("node B still validates the JWT-SVID 5 s after the close")
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let latency = closed_at.elapsed();
        assert_eq!(refusal.code(), tonic::Code::InvalidArgument, "{refusal:?}");
        assert!(
            refusal.message().contains("closed"),
            "names the closed task: {}",
            refusal.message()
        );
        assert!(
            latency < Duration::from_secs(1),
            "refused {latency:?} after close"
        );
        Ok(())
    })
}

/// `ValidateJWTSVID` of `token` for the audience `po-service`.
async fn validate(
    client: &mut SpiffeWorkloadApiClient<Channel>,
    token: &str,
) -> Result<ValidateJwtsvidResponse, tonic::Status> {
    let request = workload::with_header(ValidateJwtsvidRequest {
        audience: "po-service".into(),
        svid: token.to_owned(),
    });
    Ok(client.validate_jwtsvid(request).await?.into_inner())
}

#[test]
fn the_closed_set_lists_other_nodes_tasks_until_their_deadline() -> Result<()> {
    let cluster = Cluster::start()?;
    reader_on(&cluster, &cluster.verifier)?;
    let short = cluster.open_task(&["--action", "po.read", "--deadline", "4s"])?;
    let long = cluster.open_task(&["--action", "po.read"])?;
    // Neither task has an entry on any node.
    cluster.close_task(&short)?;
    cluster.close_task(&long)?;
    let deadline = Instant::now() + Duration::from_secs(4);
    let listed = wait_for(
        "both closed tasks on node B",
        Duration::from_secs(3),
        || {
            let set = block_on(closed_set(&cluster.verifier)).ok()?;
            (set.contains(&short) && set.contains(&long)).then_some(set)
        },
    )?;
    assert!(listed.contains(&short), "{listed:?}");
    // Past its deadline a task leaves the set (no SVID of it is valid; verifiers check the
    // deadline themselves); the other stays.
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let after = wait_for("the short task to leave", Duration::from_secs(3), || {
        let set = block_on(closed_set(&cluster.verifier)).ok()?;
        (!set.contains(&short)).then_some(set)
    })?;
    assert!(after.contains(&long), "the long task stays: {after:?}");
    // The same after a restart: the snapshot carries unexpired closed tasks only.
    let mut cluster = cluster;
    cluster.verifier.restart()?;
    let restarted = wait_for(
        "node B's feed after restart",
        Duration::from_secs(10),
        || {
            let set = block_on(closed_set(&cluster.verifier)).ok()?;
            set.contains(&long).then_some(set)
        },
    )?;
    assert!(!restarted.contains(&short), "{restarted:?}");
    Ok(())
}

#[test]
fn the_crls_on_the_verifier_node_list_a_closed_tasks_serial_and_verify() -> Result<()> {
    let cluster = Cluster::start()?;
    let task = cluster.open_task(&["--action", "po.read"])?;
    cluster.bind_caller(AI_ID, &task)?;
    reader_on(&cluster, &cluster.verifier)?;
    block_on(async {
        let response = delegation_support::first_x509(&cluster.caller, Duration::from_secs(30))
            .await?
            .context("an X509-SVID on node A")?;
        let svid = response
            .svids
            .iter()
            .find(|s| s.spiffe_id == AI_ID)
            .context("the AI agent's SVID")?;
        let leaf = delegation_support::leaf_of(&svid.x509_svid)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf)?;
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        assert!(
            !crl_lists(&cluster.verifier, &serial).await?.0,
            "not listed while open"
        );

        cluster.close_task(&task)?;
        // `task close` returns after the CRL is signed and committed; node B serves it soon.
        let closed_at = Instant::now();
        loop {
            let (listed, verified) = crl_lists(&cluster.verifier, &serial).await?;
            if listed {
                assert!(
                    verified >= 1,
                    "the server's CRL verifies against the bundle"
                );
                break;
            }
            if closed_at.elapsed() > Duration::from_secs(1) {
                bail!("node B's CRLs do not list the closed task's serial after 1 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })
}

/// Whether the verified CRLs of `agent`'s first `FetchX509Bundles` message list `serial`, and
/// how many CRLs verified against the bundle.
async fn crl_lists(agent: &Agent, serial: &[u8]) -> Result<(bool, usize)> {
    let mut client = workload::client(&agent.socket_path).await?;
    let mut stream = client
        .fetch_x509_bundles(workload::with_header(X509BundlesRequest {}))
        .await?
        .into_inner();
    let message = stream.message().await?.context("an X.509 bundle message")?;
    let mut authorities = Vec::new();
    for concat in message.bundles.values() {
        authorities.extend(mandate_core::x509::split_der_certs(concat)?);
    }
    let revoked = mandate_verify::revocation::revoked_serials(&message.crl, &authorities);
    Ok((revoked.contains(serial), revoked.verified_crls))
}

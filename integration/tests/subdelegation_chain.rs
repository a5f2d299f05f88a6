//! Sub-delegation end to end (DESIGN 3.8), real binaries on two nodes: alice's root task on
//! node A (the planner) delegates to a search agent on node B, which delegates to a fetch
//! agent on node A; every widening attempt is refused with one line naming the rule; only
//! the delegator closes its sub-task; closing the root takes every SVID of the subtree out
//! of the streams and into the closed set of a verifier on the other node within 1 s.

mod subdelegation_support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_integration::cluster::Cluster;
use subdelegation_support::{
    FETCH, PLANNER, SEARCH, assert_refused, delegate, delegate_entry, delegate_ok, wait_closed,
    wait_served, with_hint,
};

const VERIFIER: &str = "spiffe://example.org/po-service";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_deep_chain_narrows_and_dies_with_its_root() -> Result<()> {
    let cluster = Cluster::start()?;
    let (a, b, server) = (&cluster.caller, &cluster.verifier, &cluster.server);
    let root = cluster.open_task(&[
        "--action",
        "po.draft",
        "--action",
        "supplier.search",
        "--action",
        "supplier.fetch",
        "--value-limit",
        "500.00:EUR",
        "--max-depth",
        "2",
    ])?;
    cluster.bind_caller(PLANNER, &root)?;
    // A plain identity on both nodes, for the verifier's task-status feed.
    server.create_entry(VERIFIER, &a.spiffe_id, &["--selector", &uid_selector()])?;
    cluster.bind_verifier(VERIFIER, &[])?;
    delegate_entry(server, b, SEARCH, &[PLANNER])?;
    delegate_entry(server, a, FETCH, &[SEARCH])?;
    wait_served(&a.socket_path, Duration::from_secs(10), |s| {
        s.iter().any(|x| x.spiffe_id == PLANNER)
    })
    .await?;

    // Hop 1: the planner (node A) hands the supplier search to the search agent (node B).
    let hop1 = [
        "--target-id",
        SEARCH,
        "--action",
        "supplier.search",
        "--action",
        "supplier.fetch",
        "--value-limit",
        "50.00:EUR",
        "--deadline",
        "30m",
        "--delegator-id",
        PLANNER,
        "--purpose",
        "find suppliers",
    ];
    let search_task = delegate_ok(a, &hop1)?;
    let on_b = wait_served(&b.socket_path, Duration::from_secs(5), |s| {
        with_hint(s, &search_task).is_some()
    })
    .await?;
    let svid = with_hint(&on_b, &search_task).context("search SVID")?;
    assert_eq!(svid.spiffe_id, SEARCH);
    let d = svid
        .delegation
        .as_ref()
        .context("search SVID carries a delegation")?;
    assert_eq!(d.task.id.as_str(), search_task);
    assert_eq!((d.task.depth, d.task.max_depth), (1, 2));
    assert_eq!(d.principal.to_string(), "user:alice@example.org");
    assert_eq!(d.chain.len(), 1);
    assert_eq!(
        (d.chain[0].task_id.as_str(), d.chain[0].actor.as_str()),
        (root.as_str(), PLANNER)
    );
    assert_eq!(d.value_limit.map(|v| v.amount_minor), Some(5_000));
    // Its JWT-SVID carries the same delegation, hint = the sub-task.
    let jwts = b.cli(&[
        "api",
        "fetch",
        "jwt",
        "--audience",
        "po",
        "--output",
        "json",
    ])?;
    let jwts: serde_json::Value = serde_json::from_str(&jwts.stdout).context("jwt json")?;
    let jwt = jwts
        .as_array()
        .and_then(|all| all.iter().find(|j| j["hint"] == search_task.as_str()))
        .context("a JWT-SVID with the sub-task as hint")?;
    let claim = jwt_claims(jwt["token"].as_str().unwrap_or_default())?;
    assert_eq!(claim["sub"], SEARCH);
    assert_eq!(claim["delegation"]["task"]["id"], search_task.as_str());
    assert_eq!(claim["delegation"]["task"]["depth"], 1);
    assert_eq!(claim["delegation"]["chain"][0]["actor"], PLANNER);

    // Hop 2: the search agent (node B, its only task-bound SVID) hands a fetch to node A.
    let fetch_task = delegate_ok(
        b,
        &[
            "--target-id",
            FETCH,
            "--action",
            "supplier.fetch",
            "--value-limit",
            "5.00:EUR",
        ],
    )?;
    let on_a = wait_served(&a.socket_path, Duration::from_secs(5), |s| {
        with_hint(s, &fetch_task).is_some()
    })
    .await?;
    let d = with_hint(&on_a, &fetch_task)
        .and_then(|s| s.delegation.clone())
        .context("fetch SVID carries a delegation")?;
    assert_eq!(d.task.depth, 2);
    let chain: Vec<(&str, &str)> = d
        .chain
        .iter()
        .map(|l| (l.task_id.as_str(), l.actor.as_str()))
        .collect();
    assert_eq!(
        chain,
        [(root.as_str(), PLANNER), (search_task.as_str(), SEARCH)]
    );

    // Every widening attempt is refused, with one line naming the rule.
    let widen = |extra: &[&str]| {
        let mut args = vec!["--target-id", SEARCH, "--delegator-id", PLANNER];
        args.extend_from_slice(extra);
        delegate(a, &args)
    };
    assert_refused(&widen(&["--action", "po.submit"])?, "actions");
    assert_refused(
        &widen(&["--action", "po.draft", "--value-limit", "500.01:EUR"])?,
        "value limit",
    );
    assert_refused(
        &widen(&["--action", "po.draft", "--value-limit", "5.00:USD"])?,
        "currency",
    );
    assert_refused(
        &widen(&["--action", "po.draft", "--deadline", "2h"])?,
        "deadline",
    );
    let not_delegate = delegate(
        a,
        &[
            "--target-id",
            VERIFIER,
            "--action",
            "po.draft",
            "--delegator-id",
            PLANNER,
        ],
    )?;
    assert_refused(&not_delegate, "not a delegate entry");
    let not_listed = delegate(
        a,
        &[
            "--target-id",
            FETCH,
            "--action",
            "po.draft",
            "--delegator-id",
            PLANNER,
        ],
    )?;
    assert_refused(&not_listed, "delegate_from");
    // The fetch agent sits at depth 2 = max depth: it may not delegate on.
    let too_deep = delegate(
        a,
        &[
            "--target-id",
            SEARCH,
            "--action",
            "supplier.fetch",
            "--delegator-id",
            FETCH,
        ],
    )?;
    assert_refused(&too_deep, "depth");
    let audit = server.cli_json(&["audit", "list", "--task", &root])?;
    let denials = audit
        .as_array()
        .context("audit is a list")?
        .iter()
        .filter(|r| r["kind"] == "task.deny")
        .count();
    assert!(denials >= 6, "refusals are audited as task.deny: {audit}");

    // Only the delegator closes its sub-task: the search agent may not close the planner's.
    let out = b.cli(&["api", "undelegate", &search_task])?;
    assert_refused(&out, "did not open");

    // task show / tree carry the tree.
    let shown = server.cli_json(&["task", "show", &search_task])?;
    assert_eq!(shown["parent_id"], root.as_str());
    assert_eq!(shown["depth"], 1);
    assert_eq!(shown["children"][0], fetch_task.as_str());
    let tree = server.cli_ok(&["task", "tree", &root])?;
    assert_eq!(tree.lines().count(), 3, "{tree}");
    assert!(
        tree.lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("    ") && l.contains(&fetch_task))
    );

    // Close the root: the whole subtree ends, leaves the streams, and the verifier on the
    // other node refuses the search agent's task within 1 s.
    let started = Instant::now();
    cluster.close_task(&root)?;
    let closed = [root.clone(), search_task.clone(), fetch_task.clone()];
    let took = wait_closed(&a.socket_path, &closed, started, Duration::from_secs(1)).await?;
    println!("subtree in node A's closed set {took:?} after close");
    wait_closed(&b.socket_path, &closed, started, Duration::from_secs(1)).await?;
    wait_served(&b.socket_path, Duration::from_secs(1), |s| {
        with_hint(s, &search_task).is_none()
    })
    .await?;
    wait_served(&a.socket_path, Duration::from_secs(1), |s| {
        s.iter()
            .all(|x| x.spiffe_id != PLANNER && x.spiffe_id != FETCH)
    })
    .await?;
    let shown = server.cli_json(&["task", "show", &fetch_task])?;
    assert_eq!(shown["state"], "closed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_withdrawn_closes_every_task_of_the_principal() -> Result<()> {
    let cluster = Cluster::start()?;
    let (a, b, server) = (&cluster.caller, &cluster.verifier, &cluster.server);
    let root = cluster.open_task(&["--action", "supplier.search", "--max-depth", "1"])?;
    let pending = cluster.open_task(&["--action", "po.draft", "--require-approval"])?;
    let bobs = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:bob@example.org",
        "--purpose",
        "other",
        "--action",
        "po.draft",
    ])?;
    cluster.bind_caller(PLANNER, &root)?;
    cluster.bind_verifier(VERIFIER, &[])?;
    delegate_entry(server, b, SEARCH, &[PLANNER])?;
    wait_served(&a.socket_path, Duration::from_secs(10), |s| !s.is_empty()).await?;
    let sub = delegate_ok(a, &["--target-id", SEARCH, "--action", "supplier.search"])?;
    wait_served(&b.socket_path, Duration::from_secs(5), |s| {
        with_hint(s, &sub).is_some()
    })
    .await?;

    let started = Instant::now();
    let out = server.cli_ok(&["task", "close", "--principal", "user:alice@example.org"])?;
    let mut closed: Vec<&str> = out.lines().collect();
    closed.sort_unstable();
    let mut want = vec![root.as_str(), pending.as_str(), sub.as_str()];
    want.sort_unstable();
    assert_eq!(closed, want);
    let ids = [root.clone(), sub.clone()];
    wait_closed(&b.socket_path, &ids, started, Duration::from_secs(1)).await?;
    wait_served(&b.socket_path, Duration::from_secs(1), |s| {
        with_hint(s, &sub).is_none()
    })
    .await?;
    let bob = server.cli_json(&["task", "show", &bobs])?;
    assert_eq!(bob["state"], "open", "another principal's task stays open");
    let listed = server.cli_json(&[
        "task",
        "list",
        "--principal",
        "user:alice@example.org",
        "--state",
        "closed",
    ])?;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    Ok(())
}

fn jwt_claims(token: &str) -> Result<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).context("a JWT has a payload")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn uid_selector() -> String {
    format!("unix:uid:{}", mandate_integration::cluster::current_uid())
}

//! The limits of sub-delegation (DESIGN 3.8) on real binaries: a chain stops at 8 links even
//! when maxDepth allows more, and a parent whose deadline passed delegates nothing.

mod subdelegation_support;

use std::time::Duration;

use anyhow::Result;
use mandate_integration::cluster::Cluster;
use subdelegation_support::{
    PLANNER, assert_refused, delegate, delegate_entry, delegate_ok, wait_served, with_hint,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_stops_at_eight_links() -> Result<()> {
    let cluster = Cluster::start()?;
    let (a, server) = (&cluster.caller, &cluster.server);
    let root = cluster.open_task(&["--action", "supplier.search", "--max-depth", "12"])?;
    cluster.bind_caller(PLANNER, &root)?;
    // Hop k is delegate k, a delegate entry of delegate k-1 (all on node A, this process).
    let hop = |k: usize| format!("spiffe://example.org/ai/hop{k}");
    let mut delegator = PLANNER.to_owned();
    for k in 1..=9 {
        delegate_entry(server, a, &hop(k), &[delegator.as_str()])?;
        delegator = hop(k);
    }
    wait_served(&a.socket_path, Duration::from_secs(10), |s| {
        s.iter().any(|x| x.spiffe_id == PLANNER)
    })
    .await?;
    let mut delegator = PLANNER.to_owned();
    for k in 1..=8 {
        let target = hop(k);
        let args = [
            "--target-id",
            target.as_str(),
            "--action",
            "supplier.search",
            "--delegator-id",
            delegator.as_str(),
        ];
        let sub = delegate_ok(a, &args)?;
        let served = wait_served(&a.socket_path, Duration::from_secs(5), |s| {
            with_hint(s, &sub).is_some()
        })
        .await?;
        let chain = with_hint(&served, &sub)
            .and_then(|s| s.delegation.as_ref())
            .map(|d| (d.task.depth, d.chain.len()));
        assert_eq!(chain, Some((k as u8, k)), "hop {k}");
        delegator = target;
    }
    // Depth 9 <= maxDepth 12, but the chain would have 9 links.
    let ninth = hop(9);
    let out = delegate(
        a,
        &[
            "--target-id",
            &ninth,
            "--action",
            "supplier.search",
            "--delegator-id",
            &delegator,
        ],
    )?;
    assert_refused(&out, "chain");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_parent_delegates_nothing() -> Result<()> {
    let cluster = Cluster::start()?;
    let (a, b, server) = (&cluster.caller, &cluster.verifier, &cluster.server);
    let root = cluster.open_task(&[
        "--action",
        "supplier.search",
        "--max-depth",
        "1",
        "--deadline",
        "3s",
    ])?;
    cluster.bind_caller(PLANNER, &root)?;
    delegate_entry(server, b, subdelegation_support::SEARCH, &[PLANNER])?;
    wait_served(&a.socket_path, Duration::from_secs(10), |s| !s.is_empty()).await?;
    let sub = delegate_ok(
        a,
        &[
            "--target-id",
            subdelegation_support::SEARCH,
            "--action",
            "supplier.search",
        ],
    )?;
    // The sub-task's deadline is its parent's, so it expires with it.
    let shown = server.cli_json(&["task", "show", &sub])?;
    assert_eq!(
        shown["deadline"],
        server.cli_json(&["task", "show", &root])?["deadline"]
    );
    wait_served(&a.socket_path, Duration::from_secs(10), |s| {
        s.iter().all(|x| x.spiffe_id != PLANNER)
    })
    .await?;
    let out = delegate(
        a,
        &[
            "--target-id",
            subdelegation_support::SEARCH,
            "--action",
            "supplier.search",
        ],
    )?;
    assert!(!out.success() && out.stdout.trim().is_empty(), "{out:?}");
    let shown = server.cli_json(&["task", "show", &sub])?;
    assert_eq!(shown["state"], "expired");
    Ok(())
}

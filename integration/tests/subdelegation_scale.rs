//! 1,000 sub-tasks under one root (DESIGN 3.8, issue 12): opening them costs no more at the
//! end than at the start (no quadratic cost), and closing the root ends all of them in one
//! durable write (every task of the tree carries the same store revision) that reaches the closed sets of both
//! nodes' agents within 1 s, and takes the delegate's 1,000 SVIDs out of its stream.

mod subdelegation_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_integration::cluster::Cluster;
use mandate_integration::workload::{channel, with_header};
use mandate_proto::admin::TaskTreeRequest;
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::delegation::OpenSubtaskRequest;
use mandate_proto::delegation::delegation_client::DelegationClient;
use mandate_proto::types::TaskState;
use subdelegation_support::{PLANNER, SEARCH, delegate_entry, wait_closed, wait_served};

const SUBTASKS: usize = 1000;
const VERIFIER: &str = "spiffe://example.org/po-service";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_subtasks_close_in_one_write_within_a_second() -> Result<()> {
    let cluster = Cluster::start()?;
    let (a, b, server) = (&cluster.caller, &cluster.verifier, &cluster.server);
    let root = cluster.open_task(&["--action", "supplier.search", "--max-depth", "1"])?;
    cluster.bind_caller(PLANNER, &root)?;
    cluster.bind_verifier(VERIFIER, &[])?;
    let selector = format!("unix:uid:{}", mandate_integration::cluster::current_uid());
    server.create_entry(VERIFIER, &a.spiffe_id, &["--selector", &selector])?;
    delegate_entry(server, b, SEARCH, &[PLANNER])?;
    wait_served(&a.socket_path, Duration::from_secs(10), |s| {
        s.iter().any(|x| x.spiffe_id == PLANNER)
    })
    .await?;

    let mut delegation = DelegationClient::new(channel(&a.socket_path).await?);
    let mut ids = Vec::with_capacity(SUBTASKS);
    let mut per_hundred = Vec::new();
    let mut lap = Instant::now();
    for i in 0..SUBTASKS {
        let request = OpenSubtaskRequest {
            target_id: SEARCH.into(),
            actions: vec!["supplier.search".into()],
            purpose: format!("search {i}"),
            ..OpenSubtaskRequest::default()
        };
        let subtask = delegation
            .open_subtask(with_header(request))
            .await
            .with_context(|| format!("sub-task {i}"))?
            .into_inner();
        assert_eq!(subtask.parent_id, root);
        assert_eq!(subtask.depth, 1);
        ids.push(subtask.task_id);
        if (i + 1) % 100 == 0 {
            per_hundred.push(lap.elapsed());
            lap = Instant::now();
        }
    }
    println!("open, per 100 sub-tasks: {per_hundred:?}");
    let first = per_hundred.first().copied().unwrap_or_default();
    let last = per_hundred.last().copied().unwrap_or_default();
    assert!(
        last < first * 5 + Duration::from_secs(1),
        "opening slows down with the tree: first 100 {first:?}, last 100 {last:?}"
    );
    let children = server.cli_json(&["task", "show", &root])?;
    assert_eq!(
        children["children"].as_array().map(Vec::len),
        Some(SUBTASKS)
    );
    wait_served(&b.socket_path, Duration::from_secs(60), |s| {
        s.iter().filter(|x| x.spiffe_id == SEARCH).count() == SUBTASKS
    })
    .await?;

    let started = Instant::now();
    cluster.close_task(&root)?;
    let mut all = ids.clone();
    all.push(root.clone());
    let on_a = wait_closed(&a.socket_path, &all, started, Duration::from_secs(1)).await?;
    let on_b = wait_closed(&b.socket_path, &all, started, Duration::from_secs(1)).await?;
    println!("1,000 sub-tasks closed: node A {on_a:?}, node B {on_b:?} after close was sent");
    // One write: every task of the tree was last written at the same store revision.
    let mut admin = AdminClient::new(channel(&server.admin_socket).await?);
    let tree = admin
        .task_tree(TaskTreeRequest { id: root.clone() })
        .await?
        .into_inner()
        .tasks;
    assert_eq!(tree.len(), SUBTASKS + 1);
    let revisions: BTreeSet<u64> = tree.iter().map(|t| t.revision).collect();
    assert_eq!(
        revisions.len(),
        1,
        "the root and its sub-tasks end in one write: {revisions:?}"
    );
    assert!(tree.iter().all(|t| t.state == TaskState::Closed as i32));
    wait_served(&b.socket_path, Duration::from_secs(1), |s| {
        s.iter().all(|x| x.spiffe_id != SEARCH)
    })
    .await?;
    Ok(())
}

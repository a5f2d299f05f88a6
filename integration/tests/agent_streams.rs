//! Workload API streams of the real agent against the real server: entries appearing and
//! going, rotation, task closure, agent restart, and the server going away (cached SVIDs are
//! served until their notAfter and not after it).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod agent_support;

use std::time::{Duration, SystemTime};

use agent_support::*;
use anyhow::{Context, Result};
use mandate_integration::workload;
use mandate_proto::delegation::WatchRequest;

#[tokio::test(flavor = "multi_thread")]
async fn entries_created_and_deleted_show_on_an_open_stream() -> Result<()> {
    let (server, agent) = server_and_agent("streams")?;
    let first = entry_for_me(&server, &agent, "workload/one", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 1
    })
    .await?;
    let mut stream = x509_stream(&agent.socket_path).await?;
    let message = next(&mut stream, Duration::from_secs(5)).await??;
    assert_eq!(ids_of(&message), vec![id("workload/one")]);

    let second = entry_for_me(&server, &agent, "workload/two", &[])?;
    let message = loop {
        let m = next(&mut stream, Duration::from_secs(10)).await??;
        if m.svids.len() == 2 {
            break m;
        }
    };
    assert_eq!(
        ids_of(&message),
        vec![id("workload/one"), id("workload/two")]
    );

    server.cli_ok(&["entry", "delete", &first])?;
    let message = loop {
        let m = next(&mut stream, Duration::from_secs(10)).await??;
        if m.svids.len() == 1 {
            break m;
        }
    };
    assert_eq!(ids_of(&message), vec![id("workload/two")]);

    server.cli_ok(&["entry", "delete", &second])?;
    let end = loop {
        match next(&mut stream, Duration::from_secs(10)).await? {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(
        (end.code(), end.message()),
        (tonic::Code::PermissionDenied, "no identity issued")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_sends_a_new_message() -> Result<()> {
    let (server, agent) = server_and_agent("rotation")?;
    entry_for_me(&server, &agent, "workload/short", &["--x509-ttl", "4s"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let mut stream = x509_stream(&agent.socket_path).await?;
    let first = next(&mut stream, Duration::from_secs(5)).await??;
    let (serial, _) = leaf_info(&first)?;
    // Half-life of a 4 s SVID is 2 s; allow generous slack on a busy machine.
    let rotated = next(&mut stream, Duration::from_secs(15)).await??;
    let (new_serial, _) = leaf_info(&rotated)?;
    assert_ne!(serial, new_serial, "a rotation brings a new certificate");
    assert_eq!(ids_of(&rotated), vec![id("workload/short")]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_keeps_serving_and_resyncs() -> Result<()> {
    let (server, mut agent) = server_and_agent("restart")?;
    entry_for_me(&server, &agent, "workload/before", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 1
    })
    .await?;
    agent.restart()?;
    assert!(
        agent.log().contains("using the stored agent SVID"),
        "{}",
        agent.log()
    );
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 1
    })
    .await?;
    // The restarted agent follows the server, not only its cache.
    entry_for_me(&server, &agent, "workload/after", &[])?;
    let message = wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 2
    })
    .await?;
    assert_eq!(
        ids_of(&message),
        vec![id("workload/after"), id("workload/before")]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_server_down_cached_svids_live_until_expiry_and_no_longer() -> Result<()> {
    let (mut server, agent) = server_and_agent("offline")?;
    entry_for_me(&server, &agent, "workload/offline", &["--x509-ttl", "8s"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    server.kill9();
    // What the agent serves now is the last SVID it will have.
    let message = wait_x509(&agent.socket_path, Duration::from_secs(5), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let (_, not_after) = leaf_info(&message)?;
    let mut stream = x509_stream(&agent.socket_path).await?;
    let first = next(&mut stream, Duration::from_secs(5)).await??;
    assert_eq!(leaf_info(&first)?.1, not_after);
    let end = loop {
        match next(&mut stream, Duration::from_secs(20)).await? {
            Ok(m) => assert_eq!(leaf_info(&m)?.1, not_after, "no new SVID without a server"),
            Err(status) => break status,
        }
    };
    let ended_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs_f64();
    assert_eq!(end.code(), tonic::Code::PermissionDenied);
    assert!(
        ended_at >= not_after as f64 - 0.5,
        "dropped {:.1}s before notAfter",
        not_after as f64 - ended_at
    );
    assert!(
        ended_at <= not_after as f64 + 3.0,
        "served {:.1}s past notAfter",
        ended_at - not_after as f64
    );
    let err = x509_stream(&agent.socket_path)
        .await
        .err()
        .context("a fetch after expiry must fail")?;
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_task_updates_the_feed_and_drops_its_svids() -> Result<()> {
    let (server, agent) = server_and_agent("tasks")?;
    let task = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "draft po 4711",
        "--action",
        "po.draft",
        "--deadline",
        "1h",
    ])?;
    entry_for_me(&server, &agent, "agent/procurement", &["--task", &task])?;
    entry_for_me(&server, &agent, "workload/plain", &[])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        m.svids.len() == 2
    })
    .await?;

    let mut feed = workload::task_status_client(&agent.socket_path).await?;
    let missing = feed
        .watch(tonic::Request::new(WatchRequest {}))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    let mut watch = feed.watch(with_header(WatchRequest {})).await?.into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await??
        .context("first snapshot")?;
    assert!(first.closed_task_ids.is_empty());
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis() as i64;
    assert!(
        (now_ms - first.as_of_unix_ms).abs() < 10_000,
        "as_of is recent: {}",
        first.as_of_unix_ms
    );

    let mut stream = x509_stream(&agent.socket_path).await?;
    next(&mut stream, Duration::from_secs(5)).await??;
    server.cli_ok(&["task", "close", &task])?;
    let closed = loop {
        let snapshot = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await??
            .context("snapshot")?;
        if !snapshot.closed_task_ids.is_empty() {
            break snapshot;
        }
    };
    assert_eq!(closed.closed_task_ids, vec![task.clone()]);
    assert!(closed.sequence > first.sequence);
    let message = loop {
        let m = next(&mut stream, Duration::from_secs(10)).await??;
        if m.svids.len() == 1 {
            break m;
        }
    };
    assert_eq!(ids_of(&message), vec![id("workload/plain")]);
    // A heartbeat follows within the 5 s period.
    let beat = tokio::time::timeout(Duration::from_secs(8), watch.message())
        .await??
        .context("heartbeat")?;
    assert_eq!(beat.closed_task_ids, vec![task]);
    Ok(())
}

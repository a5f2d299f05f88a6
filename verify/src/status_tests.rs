//! Tests of the task-status watcher: the pure freshness rule and a live fake feed served by a
//! tonic server on a temp unix socket.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use mandate_proto::delegation::task_status_server::{TaskStatus, TaskStatusServer};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};

use super::*;

fn snapshot(closed: &[&str], as_of: SystemTime) -> Snapshot {
    Snapshot {
        closed_task_ids: closed.iter().map(|s| (*s).to_owned()).collect(),
        sequence: 1,
        as_of,
    }
}

#[test]
fn no_snapshot_fails_closed() {
    let now = SystemTime::now();
    assert_eq!(
        check_snapshot(None, DEFAULT_STALENESS, "t1", now),
        Err(StatusError::Unavailable)
    );
}

#[test]
fn staleness_counts_from_as_of() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let bound = Duration::from_secs(15);
    let fresh = snapshot(&[], now - Duration::from_secs(15));
    assert_eq!(check_snapshot(Some(&fresh), bound, "t1", now), Ok(()));
    let stale = snapshot(&[], now - Duration::from_millis(15_001));
    assert_eq!(
        check_snapshot(Some(&stale), bound, "t1", now),
        Err(StatusError::Stale {
            age_ms: 15_001,
            bound_ms: 15_000
        })
    );
    let future = snapshot(&[], now + Duration::from_secs(3));
    assert_eq!(check_snapshot(Some(&future), bound, "t1", now), Ok(()));
}

#[test]
fn closed_task_is_refused_and_others_pass() {
    let now = SystemTime::now();
    let snap = snapshot(&["t1"], now);
    assert_eq!(
        check_snapshot(Some(&snap), DEFAULT_STALENESS, "t1", now),
        Err(StatusError::Closed("t1".into()))
    );
    assert_eq!(
        check_snapshot(Some(&snap), DEFAULT_STALENESS, "t2", now),
        Ok(())
    );
}

#[test]
fn endpoint_forms() {
    assert_eq!(
        socket_path_from_endpoint("unix:///a/b.sock"),
        Ok(PathBuf::from("/a/b.sock"))
    );
    assert_eq!(
        socket_path_from_endpoint("unix:/a/b.sock"),
        Ok(PathBuf::from("/a/b.sock"))
    );
    assert_eq!(
        socket_path_from_endpoint("/a/b.sock"),
        Ok(PathBuf::from("/a/b.sock"))
    );
    assert!(socket_path_from_endpoint("tcp://127.0.0.1:1").is_err());
}

/// A fake agent feed: every `Watch` streams the current value of a watch channel.
struct FakeFeed(watch::Receiver<TaskStatusSnapshot>);

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<TaskStatusSnapshot, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl TaskStatus for FakeFeed {
    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        request: tonic::Request<WatchRequest>,
    ) -> Result<tonic::Response<SnapshotStream>, tonic::Status> {
        let header = request.metadata().get(mandate_proto::WORKLOAD_HEADER_KEY);
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            return Err(tonic::Status::invalid_argument("security header missing"));
        }
        let stream = WatchStream::new(self.0.clone()).map(Ok);
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

fn wire(closed: &[&str], sequence: u64) -> TaskStatusSnapshot {
    let as_of = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    TaskStatusSnapshot {
        closed_task_ids: closed.iter().map(|s| (*s).to_owned()).collect(),
        sequence,
        as_of_unix_ms: i64::try_from(as_of).expect("ms fit"),
    }
}

fn serve(path: &Path, feed: watch::Receiver<TaskStatusSnapshot>) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind fake agent socket");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TaskStatusServer::new(FakeFeed(feed)))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    })
}

async fn wait_for_check(
    watcher: &TaskStatusWatcher,
    task: &str,
    expected: Result<(), StatusError>,
) -> Result<(), StatusError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = watcher.check(task, SystemTime::now());
        if got == expected || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn follows_live_feed_and_reconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    let (feed, rx) = watch::channel(wire(&[], 1));
    let server = serve(&path, rx);

    let watcher = TaskStatusWatcher::spawn(TaskStatusConfig::new(&path));
    assert!(
        watcher.wait_task_status(Duration::from_secs(10)).await,
        "first snapshot arrives"
    );
    assert_eq!(watcher.check("t1", SystemTime::now()), Ok(()));

    feed.send_replace(wire(&["t1"], 2));
    assert_eq!(
        wait_for_check(&watcher, "t1", Err(StatusError::Closed("t1".into()))).await,
        Err(StatusError::Closed("t1".into()))
    );
    assert_eq!(watcher.latest().map(|s| s.sequence), Some(2));

    // The agent goes away (its feed ends, its listener closes) and comes back with a new feed:
    // the watcher reconnects on its own.
    drop(feed);
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).expect("remove socket");
    let (_feed2, rx2) = watch::channel(wire(&[], 7));
    let _server2 = serve(&path, rx2);
    assert_eq!(wait_for_check(&watcher, "t1", Ok(())).await, Ok(()));
    assert_eq!(watcher.latest().map(|s| s.sequence), Some(7));
}

#[tokio::test]
async fn silent_feed_goes_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    let (_feed, rx) = watch::channel(wire(&[], 1));
    let _server = serve(&path, rx);
    let config = TaskStatusConfig::new(&path).with_staleness(Duration::from_millis(300));
    let watcher = TaskStatusWatcher::spawn(config);
    assert!(watcher.wait_task_status(Duration::from_secs(10)).await);
    assert_eq!(watcher.check("t1", SystemTime::now()), Ok(()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        watcher.check("t1", SystemTime::now()),
        Err(StatusError::Stale { .. })
    ));
}

#[tokio::test]
async fn unreachable_agent_fails_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let watcher = TaskStatusWatcher::spawn(TaskStatusConfig::new(dir.path().join("none.sock")));
    assert!(!watcher.wait_task_status(Duration::from_millis(300)).await);
    assert_eq!(
        watcher.check("t1", SystemTime::now()),
        Err(StatusError::Unavailable)
    );
}

//! The task-status feed `mandate.delegation.v1.TaskStatus/Watch` (DESIGN 3.4): full snapshots
//! of the closed-task set on every change and a heartbeat every 5 s, stamped with when the agent
//! last heard from the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use mandate_proto::delegation::task_status_server::TaskStatus;
use mandate_proto::delegation::{TaskStatusSnapshot, WatchRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::attestor::UnixAttestor;
use super::caller::{Caller, NO_IDENTITY, check_header};
use crate::cache::snapshot::Snapshot;

/// How often a snapshot goes out when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// The feed.
#[derive(Debug, Clone)]
pub struct TaskStatusService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    attestor: Arc<UnixAttestor>,
    last_heard_ms: Arc<AtomicI64>,
}

impl TaskStatusService {
    /// A feed over the published snapshots; `last_heard_ms` is updated by the sync loop.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        attestor: Arc<UnixAttestor>,
        last_heard_ms: Arc<AtomicI64>,
    ) -> Self {
        Self {
            snapshots,
            attestor,
            last_heard_ms,
        }
    }
}

fn message(snapshot: &Snapshot, as_of: i64) -> TaskStatusSnapshot {
    TaskStatusSnapshot {
        closed_task_ids: snapshot
            .closed_tasks
            .ids()
            .iter()
            .map(|id| id.to_string())
            .collect(),
        sequence: snapshot.closed_sequence,
        as_of_unix_ms: as_of,
    }
}

#[tonic::async_trait]
impl TaskStatus for TaskStatusService {
    type WatchStream = ReceiverStream<Result<TaskStatusSnapshot, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        check_header(&request)?;
        let mut snapshots = self.snapshots.clone();
        let snapshot = snapshots.borrow_and_update().clone();
        let mut caller = Caller::attest(&request, self.attestor.clone(), &snapshot);
        if caller.identities(&snapshot).is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        let heard = self.last_heard_ms.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut sequence = snapshot.closed_sequence;
            if tx
                .send(Ok(message(&snapshot, heard.load(Ordering::SeqCst))))
                .await
                .is_err()
            {
                return;
            }
            let mut ticker = tokio::time::interval(HEARTBEAT);
            ticker.reset();
            loop {
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            let _ = tx.send(Err(Status::unavailable("agent is shutting down"))).await;
                            return;
                        }
                        let snapshot = snapshots.borrow_and_update().clone();
                        if snapshot.closed_sequence == sequence {
                            continue;
                        }
                        sequence = snapshot.closed_sequence;
                        ticker.reset();
                        if tx.send(Ok(message(&snapshot, heard.load(Ordering::SeqCst)))).await.is_err() {
                            return;
                        }
                    }
                    _ = ticker.tick() => {
                        let snapshot = snapshots.borrow().clone();
                        if tx.send(Ok(message(&snapshot, heard.load(Ordering::SeqCst)))).await.is_err() {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_carries_the_closed_set() {
        let snapshot = Snapshot {
            closed_tasks: Arc::new(crate::cache::closed::ClosedTasks::new(["t1"])),
            closed_sequence: 9,
            ..Snapshot::default()
        };
        let m = message(&snapshot, 1234);
        assert_eq!(m.closed_task_ids, vec!["t1"]);
        assert_eq!((m.sequence, m.as_of_unix_ms), (9, 1234));
    }

    #[tokio::test]
    async fn a_caller_without_identity_is_refused() {
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let service = TaskStatusService::new(
            rx,
            Arc::new(UnixAttestor::default()),
            Arc::new(AtomicI64::new(0)),
        );
        let mut request = Request::new(WatchRequest {});
        assert_eq!(
            service.watch(request).await.unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        request = Request::new(WatchRequest {});
        request
            .metadata_mut()
            .insert(mandate_proto::WORKLOAD_HEADER_KEY, "true".parse().unwrap());
        let err = service.watch(request).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (tonic::Code::PermissionDenied, NO_IDENTITY)
        );
    }
}

//! `mandate.delegation.v1.Delegation` on the Workload API socket (DESIGN 3.8): a workload
//! holding a task-bound SVID opens or closes a sub-task. The caller is checked and attested
//! exactly as for the Workload API; the agent forwards the call to the server with the IDs
//! of the entries the caller holds SVIDs for, and the server decides everything else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mandate_proto::agent::{ForwardedCloseSubtask, ForwardedOpenSubtask};
use mandate_proto::delegation::delegation_server::Delegation;
use mandate_proto::delegation::{CloseSubtaskRequest, OpenSubtaskRequest, Subtask};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::attestor::UnixAttestor;
use super::caller::{Caller, NO_IDENTITY, check_header};
use crate::cache::snapshot::Snapshot;
use crate::upstream::node::RPC_TIMEOUT;
use crate::upstream::rpc::ServerRpc;

/// A boxed forwarding call.
pub type ForwardFuture<'a> = Pin<Box<dyn Future<Output = Result<Subtask, Status>> + Send + 'a>>;

/// What the service needs from the server: the two forwarding calls of `AgentApi`.
pub trait SubtaskForwarder: Send + Sync {
    /// Forwards an `OpenSubtask` with the caller's entry IDs.
    fn open(&self, request: ForwardedOpenSubtask) -> ForwardFuture<'_>;
    /// Forwards a `CloseSubtask` with the caller's entry IDs.
    fn close(&self, request: ForwardedCloseSubtask) -> ForwardFuture<'_>;
}

/// The Delegation service.
#[derive(Clone)]
pub struct DelegationService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    attestor: Arc<UnixAttestor>,
    forwarder: Arc<dyn SubtaskForwarder>,
}

impl std::fmt::Debug for DelegationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegationService").finish_non_exhaustive()
    }
}

impl DelegationService {
    /// A service attesting callers against the published snapshots and forwarding through
    /// `forwarder`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        attestor: Arc<UnixAttestor>,
        forwarder: Arc<dyn SubtaskForwarder>,
    ) -> Self {
        Self {
            snapshots,
            attestor,
            forwarder,
        }
    }

    /// The entry IDs of the caller's task-bound SVIDs, as attested now.
    ///
    /// # Errors
    /// `InvalidArgument` without the security header, `PermissionDenied` for a caller
    /// without any identity.
    fn caller_entries<T>(&self, request: &Request<T>) -> Result<Vec<String>, Status> {
        check_header(request)?;
        let snapshot = self.snapshots.borrow().clone();
        let mut caller = Caller::attest(request, self.attestor.clone(), &snapshot);
        let identities = caller.identities(&snapshot);
        if identities.is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        Ok(identities
            .iter()
            .filter(|i| i.task_id.is_some())
            .map(|i| i.entry_id.clone())
            .collect())
    }
}

#[tonic::async_trait]
impl Delegation for DelegationService {
    async fn open_subtask(
        &self,
        request: Request<OpenSubtaskRequest>,
    ) -> Result<Response<Subtask>, Status> {
        let caller_entry_ids = self.caller_entries(&request)?;
        let forwarded = ForwardedOpenSubtask {
            request: Some(request.into_inner()),
            caller_entry_ids,
        };
        self.forwarder.open(forwarded).await.map(Response::new)
    }

    async fn close_subtask(
        &self,
        request: Request<CloseSubtaskRequest>,
    ) -> Result<Response<Subtask>, Status> {
        let caller_entry_ids = self.caller_entries(&request)?;
        let forwarded = ForwardedCloseSubtask {
            request: Some(request.into_inner()),
            caller_entry_ids,
        };
        self.forwarder.close(forwarded).await.map(Response::new)
    }
}

impl SubtaskForwarder for ServerRpc {
    fn open(&self, request: ForwardedOpenSubtask) -> ForwardFuture<'_> {
        Box::pin(async move {
            let mut request = Request::new(request);
            request.set_timeout(RPC_TIMEOUT);
            Ok(self.0.client().open_subtask(request).await?.into_inner())
        })
    }

    fn close(&self, request: ForwardedCloseSubtask) -> ForwardFuture<'_> {
        Box::pin(async move {
            let mut request = Request::new(request);
            request.set_timeout(RPC_TIMEOUT);
            Ok(self.0.client().close_subtask(request).await?.into_inner())
        })
    }
}

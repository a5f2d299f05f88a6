//! What every Workload API call does first: check the security header, read the peer
//! credentials, attest the caller, and find its identities in the current snapshot. Also the
//! stream driver that re-sends the caller's state on every change.

use std::sync::Arc;

use mandate_core::selector::Selector;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use super::attestor::{PeerCred, UnixAttestor};
use crate::cache::snapshot::{Identity, NeededKinds, Snapshot};

/// The message of every "no identity" refusal (DESIGN 3.1).
pub const NO_IDENTITY: &str = "no identity issued";

/// Refuses a request without `workload.spiffe.io: true`.
///
/// # Errors
/// `InvalidArgument` when the header is missing or not `true`.
pub fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(mandate_proto::WORKLOAD_HEADER_KEY) {
        Some(v) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The peer credentials of the connection, when the kernel gave them.
pub fn peer_cred<T>(request: &Request<T>) -> Option<PeerCred> {
    let info = request.extensions().get::<UdsConnectInfo>()?;
    let cred = info.peer_cred?;
    Some(PeerCred {
        pid: cred.pid()?,
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// An attested caller.
#[derive(Debug, Clone)]
pub struct Caller {
    cred: Option<PeerCred>,
    selectors: Vec<Selector>,
    gathered: NeededKinds,
    attestor: Arc<UnixAttestor>,
}

impl Caller {
    /// Attests the caller of `request` for the kinds `snapshot` needs. A caller that cannot be
    /// attested gets no selectors, hence no identity.
    pub fn attest<T>(
        request: &Request<T>,
        attestor: Arc<UnixAttestor>,
        snapshot: &Snapshot,
    ) -> Self {
        let cred = peer_cred(request);
        let mut caller = Self {
            cred,
            selectors: Vec::new(),
            gathered: snapshot.needed,
            attestor,
        };
        caller.refresh(snapshot.needed);
        caller
    }

    fn refresh(&mut self, needed: NeededKinds) {
        self.gathered = needed;
        self.selectors = match self.cred {
            None => Vec::new(),
            Some(cred) => match self.attestor.attest(cred, needed) {
                Ok(selectors) => selectors,
                Err(e) => {
                    tracing::info!(pid = cred.pid, error = %e, "workload attestation failed");
                    Vec::new()
                }
            },
        };
    }

    /// The caller's identities in `snapshot`, re-attesting first when the snapshot needs
    /// selector kinds that were not gathered yet.
    pub fn identities(&mut self, snapshot: &Snapshot) -> Vec<Arc<Identity>> {
        let needed = snapshot.needed;
        let more = (needed.gid && !self.gathered.gid)
            || (needed.user && !self.gathered.user)
            || (needed.group && !self.gathered.group)
            || (needed.path && !self.gathered.path)
            || (needed.sha256 && !self.gathered.sha256);
        if more {
            self.refresh(needed);
        }
        snapshot.matching(&self.selectors)
    }

    /// The pid, for logs.
    pub fn pid(&self) -> Option<i32> {
        self.cred.map(|c| c.pid)
    }
}

/// Builds one stream message from the caller's identities, with a signature that changes
/// whenever the message would.
pub type Render<T> = fn(&Snapshot, &[Arc<Identity>]) -> (Vec<u64>, T);

/// Starts a stream: the first message at once, then one on every change of what the caller
/// would receive; when the caller's last identity goes the stream ends with PermissionDenied.
///
/// # Errors
/// `PermissionDenied` when the caller has no identity now.
pub fn open_stream<T: Send + 'static>(
    mut caller: Caller,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    render: Render<T>,
) -> Result<ReceiverStream<Result<T, Status>>, Status> {
    let snapshot = snapshots.borrow_and_update().clone();
    let identities = caller.identities(&snapshot);
    if identities.is_empty() {
        return Err(Status::permission_denied(NO_IDENTITY));
    }
    let (signature, first) = render(&snapshot, &identities);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut last = signature;
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        let _ = tx.send(Err(Status::unavailable("agent is shutting down"))).await;
                        return;
                    }
                }
                () = tx.closed() => return,
            }
            let snapshot = snapshots.borrow_and_update().clone();
            let identities = caller.identities(&snapshot);
            if identities.is_empty() {
                tracing::debug!(pid = ?caller.pid(), "caller lost its last identity");
                let _ = tx.send(Err(Status::permission_denied(NO_IDENTITY))).await;
                return;
            }
            let (signature, message) = render(&snapshot, &identities);
            if signature != last {
                last = signature;
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_must_be_true() {
        let mut request = Request::new(());
        assert_eq!(
            check_header(&request).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        request
            .metadata_mut()
            .insert(mandate_proto::WORKLOAD_HEADER_KEY, "false".parse().unwrap());
        assert!(check_header(&request).is_err());
        request
            .metadata_mut()
            .insert(mandate_proto::WORKLOAD_HEADER_KEY, "true".parse().unwrap());
        assert!(check_header(&request).is_ok());
    }

    #[test]
    fn a_request_without_credentials_has_no_identity() {
        let request = Request::new(());
        assert!(peer_cred(&request).is_none());
        let mut caller = Caller::attest(
            &request,
            Arc::new(UnixAttestor::default()),
            &Snapshot::default(),
        );
        assert!(caller.identities(&Snapshot::default()).is_empty());
    }
}

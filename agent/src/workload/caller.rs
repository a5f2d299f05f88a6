//! What every Workload API call does first: check the security header, read the peer
//! credentials, attest the caller, and find its identities in the current snapshot. Also the
//! stream driver that re-sends the caller's state on every change.
//!
//! The caller is attested against the process as it was at accept ([`ConnectedPeer`]) and
//! attested again right before an answer goes out, so a process that exec'd another program
//! in between gets nothing (issue 11, finding 3).

use std::sync::Arc;

use mandate_core::selector::Selector;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use super::attestor::{PeerAtAccept, PeerCred, UnixAttestor};
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

/// The connection's peer as the agent saw it at accept: what tonic hands every request of
/// the connection (the endpoint's `Connected` impl makes it).
#[derive(Debug, Clone)]
pub struct ConnectedPeer(pub Option<PeerAtAccept>);

impl ConnectedPeer {
    /// Reads the peer credentials the kernel fixed at `connect`, and the process's start time
    /// and executable from `/proc` now.
    pub fn observe(info: &UdsConnectInfo) -> Self {
        let cred = info.peer_cred.and_then(|cred| {
            Some(PeerCred {
                pid: cred.pid()?,
                uid: cred.uid(),
                gid: cred.gid(),
            })
        });
        Self(cred.map(|cred| PeerAtAccept::observe(std::path::Path::new("/proc"), cred)))
    }
}

/// The peer of the connection as seen at accept, when the kernel gave its credentials.
pub fn peer_at_accept<T>(request: &Request<T>) -> Option<PeerAtAccept> {
    request.extensions().get::<ConnectedPeer>()?.0.clone()
}

/// An attested caller.
#[derive(Debug, Clone)]
pub struct Caller {
    peer: Option<PeerAtAccept>,
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
        let mut caller = Self {
            peer: peer_at_accept(request),
            selectors: Vec::new(),
            gathered: snapshot.needed,
            attestor,
        };
        caller.refresh(snapshot.needed);
        caller
    }

    fn refresh(&mut self, needed: NeededKinds) {
        self.gathered = needed;
        self.selectors = match &self.peer {
            None => Vec::new(),
            Some(peer) => match self.attestor.attest(peer, needed) {
                Ok(selectors) => selectors,
                Err(e) => {
                    tracing::info!(pid = peer.cred.pid, error = %e, "workload attestation failed");
                    Vec::new()
                }
            },
        };
    }

    /// Attests again, for the kinds gathered so far, right before an answer goes out: true
    /// when the caller still has the selectors the answer was built for. Free when only the
    /// peer credentials were needed (the kernel fixed those at connect).
    pub fn unchanged(&mut self) -> bool {
        let gathered = self.gathered;
        let reads_proc = gathered.gid || gathered.group || gathered.path || gathered.sha256;
        if !reads_proc {
            return true;
        }
        let before = std::mem::take(&mut self.selectors);
        self.refresh(gathered);
        if self.selectors == before {
            return true;
        }
        tracing::info!(pid = ?self.pid(), "caller changed between attestation and answer");
        false
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
        self.peer.as_ref().map(|p| p.cred.pid)
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
    if !caller.unchanged() {
        return Err(Status::permission_denied(NO_IDENTITY));
    }
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
                if !caller.unchanged() {
                    let _ = tx.send(Err(Status::permission_denied(NO_IDENTITY))).await;
                    return;
                }
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
        assert!(peer_at_accept(&request).is_none());
        let mut caller = Caller::attest(
            &request,
            Arc::new(UnixAttestor::default()),
            &Snapshot::default(),
        );
        assert!(caller.identities(&Snapshot::default()).is_empty());
    }
}

//! The SPIFFE Workload API (`SpiffeWorkloadAPI`, DESIGN 3.1) over the agent's cache: X.509 and
//! JWT SVIDs, bundles, and JWT validation. Errors map to `tonic::Status` here only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use mandate_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use mandate_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::attestor::UnixAttestor;
use super::caller::{Caller, NO_IDENTITY, check_header, open_stream};
use super::claims::validate;
use super::jwt_cache::{JwtCache, JwtMinter};
use crate::cache::snapshot::{Identity, Snapshot};

/// The metadata key, on the answer to a `ValidateJWTSVID` without a token (the healthcheck's
/// probe), that carries when the agent last heard from the server, in unix milliseconds (0:
/// never since it started).
pub const LAST_HEARD_KEY: &str = "mandate-last-heard-unix-ms";

/// The Workload API service.
#[derive(Clone)]
pub struct WorkloadService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    attestor: Arc<UnixAttestor>,
    jwts: Arc<JwtCache>,
    minter: Arc<dyn JwtMinter>,
    last_heard_ms: Arc<AtomicI64>,
}

impl std::fmt::Debug for WorkloadService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadService").finish_non_exhaustive()
    }
}

impl WorkloadService {
    /// A service over the published snapshots; `last_heard_ms` is updated by the sync loop.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        attestor: Arc<UnixAttestor>,
        jwts: Arc<JwtCache>,
        minter: Arc<dyn JwtMinter>,
        last_heard_ms: Arc<AtomicI64>,
    ) -> Self {
        Self {
            snapshots,
            attestor,
            jwts,
            minter,
            last_heard_ms,
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Arc<Snapshot>), Status> {
        check_header(request)?;
        let snapshot = self.snapshots.borrow().clone();
        Ok((
            Caller::attest(request, self.attestor.clone(), &snapshot),
            snapshot,
        ))
    }

    async fn jwt_for(&self, identity: &Identity, audience: &[String]) -> Result<Jwtsvid, Status> {
        let now = SystemTime::now();
        let key = JwtCache::key(&identity.entry_id, &identity.spiffe_id, audience);
        let token = match self.jwts.fresh(&key, now) {
            Some(token) => token,
            None => match self
                .minter
                .mint(identity.entry_id.clone(), key.2.clone())
                .await
            {
                Ok((token, exp)) => {
                    self.jwts.insert(key, token.clone(), exp, now);
                    token
                }
                Err(status) => match self.jwts.unexpired(&key, now) {
                    Some(token) => token,
                    None => {
                        tracing::warn!(entry = %identity.entry_id, error = %status.message(), "cannot mint JWT-SVID");
                        return Err(Status::unavailable(format!(
                            "cannot mint JWT-SVID: {}",
                            status.message()
                        )));
                    }
                },
            },
        };
        Ok(Jwtsvid {
            spiffe_id: identity.spiffe_id.clone(),
            svid: token,
            hint: identity.hint.clone(),
        })
    }
}

fn render_x509(snapshot: &Snapshot, identities: &[Arc<Identity>]) -> (Vec<u64>, X509svidResponse) {
    let mut signature: Vec<u64> = identities.iter().map(|i| i.version).collect();
    signature.push(snapshot.bundle.version);
    let message = X509svidResponse {
        svids: identities.iter().map(|i| i.x509.clone()).collect(),
        crl: snapshot.bundle.crls.clone(),
        federated_bundles: Default::default(),
    };
    (signature, message)
}

fn render_x509_bundles(
    snapshot: &Snapshot,
    _: &[Arc<Identity>],
) -> (Vec<u64>, X509BundlesResponse) {
    (vec![snapshot.bundle.version], snapshot.bundle.x509.clone())
}

fn render_jwt_bundles(snapshot: &Snapshot, _: &[Arc<Identity>]) -> (Vec<u64>, JwtBundlesResponse) {
    (vec![snapshot.bundle.version], snapshot.bundle.jwt.clone())
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadService {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;
    type FetchWITSVIDStream = Stream<WitsvidResponse>;
    type FetchWITBundlesStream = Stream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let (caller, _) = self.caller(&request)?;
        open_stream(caller, self.snapshots.clone(), render_x509).map(Response::new)
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let (caller, _) = self.caller(&request)?;
        open_stream(caller, self.snapshots.clone(), render_x509_bundles).map(Response::new)
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (mut caller, snapshot) = self.caller(&request)?;
        let request = request.into_inner();
        mandate_core::jwt::check_audience(&request.audience)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let identities: Vec<Arc<Identity>> = caller
            .identities(&snapshot)
            .into_iter()
            .filter(|i| request.spiffe_id.is_empty() || i.spiffe_id == request.spiffe_id)
            .collect();
        if identities.is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        let mut svids = Vec::with_capacity(identities.len());
        for identity in &identities {
            svids.push(self.jwt_for(identity, &request.audience).await?);
        }
        // The process must still be what it was attested as when the answer goes out.
        if !caller.unchanged() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let (caller, _) = self.caller(&request)?;
        open_stream(caller, self.snapshots.clone(), render_jwt_bundles).map(Response::new)
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        check_header(&request)?;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            let mut metadata = tonic::metadata::MetadataMap::new();
            let heard = self.last_heard_ms.load(Ordering::SeqCst).to_string();
            if let Ok(value) = heard.parse() {
                metadata.insert(LAST_HEARD_KEY, value);
            }
            return Err(Status::with_metadata(
                tonic::Code::InvalidArgument,
                "svid must be specified",
                metadata,
            ));
        }
        let snapshot = self.snapshots.borrow().clone();
        let jwks = snapshot
            .bundle
            .data
            .as_ref()
            .map(|b| b.jwks.as_slice())
            .unwrap_or_default();
        let (spiffe_id, claims) = validate(
            &request.svid,
            jwks,
            &request.audience,
            &snapshot.closed_tasks,
            SystemTime::now(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id,
            claims: Some(claims),
        }))
    }

    async fn fetch_witsvid(
        &self,
        _request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented("WIT-SVIDs are not supported"))
    }

    async fn fetch_wit_bundles(
        &self,
        _request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented("WIT-SVIDs are not supported"))
    }
}

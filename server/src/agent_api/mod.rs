//! The agent API (`mandate.agent.v1.AgentApi`, DESIGN 3.5) over TCP + rustls: Attest without
//! a client certificate, everything else with the agent's SVID.

mod delegate_sync;
mod delegation;
mod sign;
mod sync;
pub mod tls;

use std::sync::Arc;
use std::time::SystemTime;

use mandate_proto::agent::agent_api_server::{AgentApi, AgentApiServer};
use mandate_proto::agent::{
    AttestRequest, AttestResponse, FetchBundleRequest, MintJwtSvidRequest, MintJwtSvidResponse,
    RenewAgentRequest, RenewAgentResponse, SignX509SvidsRequest, SignX509SvidsResponse,
    SyncMessage, SyncRequest,
};
use mandate_proto::types::Bundle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::attest;
use crate::context::Context;
use crate::wire;
pub use sign::MAX_BATCH;
pub use sync::HEARTBEAT;
pub use tls::{AgentPeer, incoming, server_config};

/// Largest request the agent API decodes (a full CSR batch fits).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The AgentApi service.
#[derive(Debug, Clone)]
pub struct AgentService {
    ctx: Arc<Context>,
    /// The bounded audit of refused attestations (issue 11, item 10).
    refusals: Arc<attest::RefusalLog>,
}

impl AgentService {
    /// The tonic server for `ctx`.
    pub fn server(ctx: Arc<Context>) -> AgentApiServer<Self> {
        let refusals =
            attest::RefusalLog::new(Arc::clone(&ctx.registry), attest::RefusalPolicy::default());
        AgentApiServer::new(Self { ctx, refusals })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// The calling agent's SPIFFE ID after checking it lies under `/mandate/agent/` (DESIGN
    /// 3.7) and is a known agent that was not evicted.
    fn agent<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let id = req
            .extensions()
            .get::<AgentPeer>()
            .and_then(|p| p.spiffe_id.clone())
            .ok_or_else(|| Status::unauthenticated("an agent client certificate is required"))?;
        attest::authorize_agent(&self.ctx.registry, &id).map_err(wire::status)?;
        Ok(id)
    }
}

#[tonic::async_trait]
impl AgentApi for AgentService {
    async fn attest(
        &self,
        request: Request<AttestRequest>,
    ) -> Result<Response<AttestResponse>, Status> {
        let req = request.into_inner();
        let now = SystemTime::now();
        let ctx = &self.ctx;
        let result = attest::attest(
            &ctx.registry,
            &self.refusals,
            &ctx.ca,
            req.join_token.trim(),
            &req.csr,
            ctx.config.agent_svid_ttl,
            now,
        )
        .await;
        let (spiffe_id, signed) = match result {
            Ok(ok) => ok,
            Err(e) => {
                ctx.metrics.attest_denied.inc();
                return Err(wire::status(e));
            }
        };
        ctx.metrics.attestations.inc();
        Ok(Response::new(AttestResponse {
            spiffe_id,
            cert_chain: signed.chain,
            bundle: Some(wire::bundle(&ctx.ca.bundle())),
        }))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let agent = self.agent(&request)?;
        let ctx = &self.ctx;
        let signed = attest::renew(
            &ctx.registry,
            &ctx.ca,
            &agent,
            &request.get_ref().csr,
            ctx.config.agent_svid_ttl,
            SystemTime::now(),
        )
        .await
        .map_err(wire::status)?;
        Ok(Response::new(RenewAgentResponse {
            cert_chain: signed.chain,
        }))
    }

    type SyncStream = ReceiverStream<Result<SyncMessage, Status>>;

    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let agent = self.agent(&request)?;
        let since = request.get_ref().since_revision;
        Ok(Response::new(sync::open(
            Arc::clone(&self.ctx),
            agent,
            since,
        )))
    }

    async fn sign_x509_svids(
        &self,
        request: Request<SignX509SvidsRequest>,
    ) -> Result<Response<SignX509SvidsResponse>, Status> {
        let agent = self.agent(&request)?;
        let requests = request.into_inner().requests;
        let results = sign::sign_x509(Arc::clone(&self.ctx), &agent, requests, SystemTime::now())
            .await
            .map_err(wire::status)?;
        Ok(Response::new(SignX509SvidsResponse { results }))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        let agent = self.agent(&request)?;
        let req = request.into_inner();
        let (token, expires_at_unix) = sign::mint_jwt(
            &self.ctx,
            &agent,
            &req.entry_id,
            req.audience,
            SystemTime::now(),
        )
        .await
        .map_err(wire::status)?;
        Ok(Response::new(MintJwtSvidResponse {
            token,
            expires_at_unix,
        }))
    }

    async fn open_subtask(
        &self,
        request: Request<mandate_proto::agent::ForwardedOpenSubtask>,
    ) -> Result<Response<mandate_proto::delegation::Subtask>, Status> {
        let agent = self.agent(&request)?;
        let forwarded = request.into_inner();
        delegation::open(&self.ctx, &agent, forwarded, SystemTime::now())
            .await
            .map(Response::new)
            .map_err(wire::status)
    }

    async fn close_subtask(
        &self,
        request: Request<mandate_proto::agent::ForwardedCloseSubtask>,
    ) -> Result<Response<mandate_proto::delegation::Subtask>, Status> {
        let agent = self.agent(&request)?;
        let forwarded = request.into_inner();
        delegation::close(&self.ctx, &agent, forwarded, SystemTime::now())
            .await
            .map(Response::new)
            .map_err(wire::status)
    }

    async fn fetch_bundle(
        &self,
        request: Request<FetchBundleRequest>,
    ) -> Result<Response<Bundle>, Status> {
        self.agent(&request)?;
        Ok(Response::new(wire::bundle(&self.ctx.ca.bundle())))
    }
}

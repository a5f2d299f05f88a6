//! The admin API (`mandate.admin.v1.Admin`, DESIGN 3.6) on a unix socket, and over mTLS to
//! the callers of `[[admin_ids]]` held to their roles (DESIGN 3.9, `remote`, `roles`,
//! `ownership`). Every call's peer credentials (uid, pid), or its caller's SPIFFE ID over the
//! network, become the audit actor.

mod lists;
mod ownership;
mod parse;
pub mod remote;
pub mod roles;
mod task_tree;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_proto::admin::admin_server::{Admin, AdminServer};
use mandate_proto::admin::{
    self as pb, ApproveTaskRequest, CloseTaskRequest, CreateEntryRequest, CreateJoinTokenRequest,
    DeleteEntryRequest, DeleteEntryResponse, EvictAgentRequest, GetEntryRequest, GetTaskRequest,
    HealthRequest, HealthResponse, JoinToken, ListAgentsRequest, ListAgentsResponse,
    ListAuditRequest, ListAuditResponse, ListEntriesRequest, ListEntriesResponse, ListTasksRequest,
    ListTasksResponse, OpenTaskRequest, ShowBundleRequest, VerifyAuditRequest, VerifyAuditResponse,
};
use mandate_proto::types::{Bundle, Entry, Task};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use crate::context::Context;
use crate::entries::{self, parse_entry_id};
use crate::store::{AgentRecord, AuditDraft, AuditRecord};
use crate::tasks::parse_task_id;
use crate::{attest, wire};

/// The Admin service.
#[derive(Debug, Clone)]
pub struct AdminService {
    ctx: Arc<Context>,
}

impl AdminService {
    /// The tonic server for `ctx`.
    pub fn server(ctx: Arc<Context>) -> AdminServer<Self> {
        AdminServer::new(Self { ctx })
    }
}

impl AdminService {
    /// Passes `result` through; a refused change is audited first (`admin.deny`, naming the
    /// call and the status), so the log shows attempts as well as changes.
    async fn audit_refusal<T>(
        &self,
        actor: &str,
        call: &str,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        if let Err(status) = &result {
            let draft = AuditDraft {
                kind: "admin.deny",
                actor: actor.to_owned(),
                detail: format!("{call} refused: {:?}: {}", status.code(), status.message()),
                ..AuditDraft::default()
            };
            if let Err(e) = self
                .ctx
                .registry
                .audit(SystemTime::now(), vec![draft])
                .await
            {
                tracing::warn!(call, error = %e, "could not audit a refused admin call");
            }
        }
        result
    }
}

/// The audit actor of an admin call: `uid:<uid> pid:<pid>` from the socket's peer credentials.
fn actor<T>(req: &Request<T>) -> String {
    if let Some(caller) = req.extensions().get::<roles::RemoteCaller>() {
        return caller.spiffe_id.clone();
    }
    let cred = req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred);
    match cred {
        Some(c) => match c.pid() {
            Some(pid) => format!("uid:{} pid:{pid}", c.uid()),
            None => format!("uid:{}", c.uid()),
        },
        None => "unknown".to_owned(),
    }
}

fn agent(a: &AgentRecord) -> pb::Agent {
    pb::Agent {
        spiffe_id: a.spiffe_id.clone(),
        attested_at_unix: a.attested_at,
        expires_at_unix: a.expires_at,
        banned: a.banned,
        serial: a.serial.clone(),
    }
}

fn audit_record(r: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: r.seq,
        time_unix: r.time,
        kind: r.kind,
        actor: r.actor,
        task_id: r.task_id.unwrap_or_default(),
        spiffe_id: r.spiffe_id.unwrap_or_default(),
        serial: r.serial.unwrap_or_default(),
        detail: r.detail,
        hash: r.hash,
        prev_hash: r.prev_hash,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<JoinToken>, Status> {
        let actor = actor(&request);
        let result = async {
            let req = request.into_inner();
            let ttl = match req.ttl_seconds {
                0 => attest::DEFAULT_TOKEN_TTL,
                s => Duration::from_secs(s),
            };
            let agent_id = (!req.agent_id.is_empty()).then_some(req.agent_id.as_str());
            let ctx = &self.ctx;
            let token = attest::create_token(
                &ctx.registry,
                ctx.ca.trust_domain(),
                agent_id,
                ttl,
                actor.clone(),
                SystemTime::now(),
            )
            .await
            .map_err(wire::status)?;
            Ok(Response::new(JoinToken {
                token: token.token,
                agent_id: token.agent_id,
                expires_at_unix: token.expires_at,
            }))
        }
        .await;
        self.audit_refusal(&actor, "join_token.create", result)
            .await
    }

    async fn show_bundle(
        &self,
        _request: Request<ShowBundleRequest>,
    ) -> Result<Response<Bundle>, Status> {
        Ok(Response::new(wire::bundle(&self.ctx.ca.bundle())))
    }

    async fn create_entry(
        &self,
        request: Request<CreateEntryRequest>,
    ) -> Result<Response<Entry>, Status> {
        let actor = actor(&request);
        let broker = ownership::broker(&request);
        let result = async {
            ownership::check_entry_create(&self.ctx.registry, broker.as_ref(), request.get_ref())?;
            let spec = parse::entry_spec(request.into_inner());
            let ctx = &self.ctx;
            let entry = entries::create_entry(
                &ctx.registry,
                spec,
                ctx.ca.trust_domain(),
                ctx.ttl_defaults(),
                actor.clone(),
                SystemTime::now(),
            )
            .await
            .map_err(wire::status)?;
            Ok(Response::new(wire::entry(&entry)))
        }
        .await;
        self.audit_refusal(&actor, "entry.create", result).await
    }

    type ListEntriesStream = lists::ListStream<ListEntriesResponse>;

    async fn list_entries(
        &self,
        _request: Request<ListEntriesRequest>,
    ) -> Result<Response<Self::ListEntriesStream>, Status> {
        let entries: Vec<_> = self.ctx.registry.read().index.entries().cloned().collect();
        let stream = lists::chunked(
            entries,
            |e| wire::entry(e),
            |entries| ListEntriesResponse { entries },
        );
        Ok(Response::new(stream))
    }

    async fn get_entry(
        &self,
        request: Request<GetEntryRequest>,
    ) -> Result<Response<Entry>, Status> {
        let id = parse_entry_id(&request.get_ref().id).map_err(wire::status)?;
        let state = self.ctx.registry.read();
        let entry = state
            .index
            .entry(&id)
            .ok_or_else(|| Status::not_found(format!("entry {id} not found")))?;
        Ok(Response::new(wire::entry(entry)))
    }

    async fn delete_entry(
        &self,
        request: Request<DeleteEntryRequest>,
    ) -> Result<Response<DeleteEntryResponse>, Status> {
        let actor = actor(&request);
        let broker = ownership::broker(&request);
        let result = async {
            let entry_id = &request.get_ref().id;
            ownership::check_entry_delete(&self.ctx.registry, broker.as_ref(), entry_id)?;
            let id = entries::delete_entry(
                &self.ctx.registry,
                &request.get_ref().id,
                actor.clone(),
                SystemTime::now(),
            )
            .await
            .map_err(wire::status)?;
            Ok(Response::new(DeleteEntryResponse { id: id.to_string() }))
        }
        .await;
        self.audit_refusal(&actor, "entry.delete", result).await
    }

    async fn open_task(&self, request: Request<OpenTaskRequest>) -> Result<Response<Task>, Status> {
        let actor = actor(&request);
        let result = async {
            let now = SystemTime::now();
            let spec = parse::task_spec(request.into_inner(), now).map_err(wire::status)?;
            let task = self
                .ctx
                .tasks
                .open(spec, actor.clone(), now)
                .await
                .map_err(wire::status)?;
            Ok(Response::new(wire::task(&task, SystemTime::now())))
        }
        .await;
        self.audit_refusal(&actor, "task.open", result).await
    }

    async fn approve_task(
        &self,
        request: Request<ApproveTaskRequest>,
    ) -> Result<Response<Task>, Status> {
        let actor = actor(&request);
        let result = async {
            let req = request.into_inner();
            let now = SystemTime::now();
            let task = self
                .ctx
                .tasks
                .approve(&req.id, req.approver, actor.clone(), now)
                .await
                .map_err(wire::status)?;
            Ok(Response::new(wire::task(&task, SystemTime::now())))
        }
        .await;
        self.audit_refusal(&actor, "task.approve", result).await
    }

    async fn close_task(
        &self,
        request: Request<CloseTaskRequest>,
    ) -> Result<Response<Task>, Status> {
        let actor = actor(&request);
        let broker = ownership::broker(&request);
        let result = async {
            let req = request.into_inner();
            ownership::check_task(&self.ctx.registry, broker.as_ref(), &req.id)?;
            let reason = (!req.reason.is_empty()).then_some(req.reason);
            let now = SystemTime::now();
            let task = self
                .ctx
                .tasks
                .close(&req.id, reason, actor.clone(), now)
                .await
                .map_err(wire::status)?;
            Ok(Response::new(wire::task(&task, SystemTime::now())))
        }
        .await;
        self.audit_refusal(&actor, "task.close", result).await
    }

    type ListTasksStream = lists::ListStream<ListTasksResponse>;

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<Self::ListTasksStream>, Status> {
        let now = SystemTime::now();
        let filter = task_tree::TaskFilter::new(request.get_ref())?;
        // A task broker lists only the tasks it opened (DESIGN 3.9).
        let broker = ownership::broker(&request);
        let tasks: Vec<_> = {
            let state = self.ctx.registry.read();
            state
                .index
                .tasks()
                .filter(|t| filter.keeps(t, now) && ownership::owns(broker.as_ref(), t))
                .map(|t| task_tree::with_children(&state.index, t, now))
                .collect()
        };
        let stream = lists::chunked(tasks, Task::clone, |tasks| ListTasksResponse { tasks });
        Ok(Response::new(stream))
    }

    async fn get_task(&self, request: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        let broker = ownership::broker(&request);
        let checked =
            ownership::check_task(&self.ctx.registry, broker.as_ref(), &request.get_ref().id);
        self.audit_refusal(&actor(&request), "task.show", checked)
            .await?;
        let id = parse_task_id(&request.get_ref().id).map_err(wire::status)?;
        let state = self.ctx.registry.read();
        let task = state
            .index
            .task(&id)
            .ok_or_else(|| Status::not_found(format!("task {id} not found")))?;
        let now = SystemTime::now();
        Ok(Response::new(task_tree::with_children(
            &state.index,
            task,
            now,
        )))
    }

    type ListAgentsStream = lists::ListStream<ListAgentsResponse>;

    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<Self::ListAgentsStream>, Status> {
        let agents: Vec<_> = self.ctx.registry.read().index.agents().cloned().collect();
        let stream = lists::chunked(agents, agent, |agents| ListAgentsResponse { agents });
        Ok(Response::new(stream))
    }

    async fn evict_agent(
        &self,
        request: Request<EvictAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let actor = actor(&request);
        let result = async {
            let id = request.into_inner().spiffe_id;
            mandate_core::ids::parse_spiffe_id(&id)
                .map_err(|e| Status::invalid_argument(format!("invalid agent ID: {e}")))?;
            let record = attest::evict(&self.ctx.registry, &id, actor.clone(), SystemTime::now())
                .await
                .map_err(wire::status)?;
            Ok(Response::new(agent(&record)))
        }
        .await;
        self.audit_refusal(&actor, "agent.evict", result).await
    }

    type ListAuditStream = lists::ListStream<ListAuditResponse>;

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<Self::ListAuditStream>, Status> {
        let req = request.into_inner();
        let query = lists::AuditQuery {
            task_id: req.task_id,
            since_seq: req.since_seq,
            limit: req.limit,
        };
        let store = Arc::clone(self.ctx.registry.store());
        Ok(Response::new(lists::audit(store, query, audit_record)))
    }

    async fn verify_audit(
        &self,
        _request: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        Ok(Response::new(lists::verify(&self.ctx.registry).await))
    }

    async fn task_tree(
        &self,
        request: Request<pb::TaskTreeRequest>,
    ) -> Result<Response<pb::TaskTreeResponse>, Status> {
        task_tree::tree(&self.ctx, request.get_ref()).map(Response::new)
    }

    async fn close_tasks_of_principal(
        &self,
        request: Request<pb::CloseTasksOfPrincipalRequest>,
    ) -> Result<Response<pb::CloseTasksOfPrincipalResponse>, Status> {
        let actor = actor(&request);
        let result = task_tree::close_principal(&self.ctx, request.into_inner(), actor.clone())
            .await
            .map(Response::new);
        self.audit_refusal(&actor, "task.close", result).await
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        let state = self.ctx.registry.read();
        Ok(Response::new(HealthResponse {
            trust_domain: self.ctx.ca.trust_domain().to_string(),
            entries: state.index.entry_count() as u64,
            revision: state.revision,
        }))
    }
}

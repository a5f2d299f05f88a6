//! The admin API over mTLS (DESIGN 3.9): the server's SVID, a client certificate that must be
//! an SVID of the trust domain, verified against the live bundle (the roots the CA manager
//! swaps on rotation), and a gate in front of the `Admin` service that lets only the listed
//! SPIFFE IDs through, each to the RPCs of its role. A refusal is `PermissionDenied` and an
//! `admin.deny` audit record.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use mandate_core::tls::{SpiffeClientVerifier, SpiffeIdMatcher};
use rustls::ServerConfig;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

use super::roles::{AdminIds, RemoteCaller};
use crate::agent_api::{AgentPeer, tls::IdentityResolver};
use crate::ca::CaManager;
use crate::registry::Registry;
use crate::store::AuditDraft;

/// The rustls config of the mTLS admin listener: client certificates are mandatory and must
/// be SVIDs of the server's trust domain that chain to the current bundle.
///
/// # Errors
/// rustls refused the protocol setup.
pub fn server_config(ca: Arc<CaManager>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let trust_domain = ca.trust_domain().clone();
    let verifier = SpiffeClientVerifier::new(ca.identity().roots(), false)
        .with_matcher(SpiffeIdMatcher::TrustDomain(trust_domain));
    let mut config = ServerConfig::builder_with_provider(mandate_core::tls::default_provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(IdentityResolver::new(ca)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Lets a request through to `inner` only when its caller's SPIFFE ID is listed and its role
/// may call the RPC; the caller then rides along as a [`RemoteCaller`] extension.
#[derive(Debug, Clone)]
pub struct RoleGate<S> {
    inner: S,
    admin_ids: Arc<AdminIds>,
    registry: Arc<Registry>,
}

impl<S> RoleGate<S> {
    /// Guards `inner` with the roles of `admin_ids`; refusals are audited through `registry`.
    pub fn new(inner: S, admin_ids: Arc<AdminIds>, registry: Arc<Registry>) -> Self {
        Self {
            inner,
            admin_ids,
            registry,
        }
    }

    /// The caller of `request` when it may call `method`, else the one-line refusal.
    fn admit(&self, caller: Option<&str>, method: &str) -> Result<RemoteCaller, String> {
        let Some(id) = caller else {
            return Err("an X509-SVID client certificate is required".into());
        };
        let Some(role) = self.admin_ids.role(id) else {
            return Err(format!("{id} is not listed in admin_ids"));
        };
        if !role.may_call(method) {
            return Err(format!("the {} role may not call {method}", role.name()));
        }
        Ok(RemoteCaller {
            spiffe_id: id.to_owned(),
            role: role.clone(),
        })
    }
}

impl<S> Service<http::Request<Body>> for RoleGate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let caller = request
            .extensions()
            .get::<AgentPeer>()
            .and_then(|p| p.spiffe_id.clone());
        match self.admit(caller.as_deref(), &method) {
            Ok(admitted) => {
                request.extensions_mut().insert(admitted);
                // The clone that was polled ready serves this call (tower's usual swap).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(message) => {
                let registry = Arc::clone(&self.registry);
                let actor = caller.unwrap_or_else(|| "unknown".to_owned());
                Box::pin(async move {
                    tracing::info!(%actor, %method, %message, "admin call refused");
                    let draft = AuditDraft {
                        kind: "admin.deny",
                        actor,
                        detail: format!("{method} refused: PermissionDenied: {message}"),
                        ..AuditDraft::default()
                    };
                    if let Err(e) = registry.audit(SystemTime::now(), vec![draft]).await {
                        tracing::warn!(error = %e, "could not audit a refused admin call");
                    }
                    Ok(Status::permission_denied(message).into_http())
                })
            }
        }
    }
}

impl<S: NamedService> NamedService for RoleGate<S> {
    const NAME: &'static str = S::NAME;
}

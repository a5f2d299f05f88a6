//! The shared server context handed to every service: config, registry, CA, tasks, metrics.

use std::sync::Arc;

use mandate_core::entry::TtlDefaults;

use crate::ca::CaManager;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::tasks::Tasks;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Context {
    /// The checked configuration.
    pub config: Config,
    /// The single writer and in-memory state.
    pub registry: Arc<Registry>,
    /// The CA.
    pub ca: Arc<CaManager>,
    /// The task lifecycle.
    pub tasks: Arc<Tasks>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// The default SVID lifetimes for new entries.
    pub fn ttl_defaults(&self) -> TtlDefaults {
        TtlDefaults {
            x509: self.config.default_x509_svid_ttl,
            jwt: self.config.default_jwt_svid_ttl,
        }
    }
}

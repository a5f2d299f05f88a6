//! mandate-verify: what an mTLS service adds to accept AI agents acting on someone's behalf.
//!
//! - [`tls`]: rustls server and client configs fed by the SPIFFE Workload API (via
//!   `spiffe-rustls`), so SVIDs and bundles rotate without a restart.
//! - [`CallerIdentity`]: the caller's SPIFFE ID and parsed [`Delegation`] (principal, task,
//!   actions, value limit, approval, chain, deadline, depth), read once from the handshake.
//! - [`TaskStatusWatcher`]: a live view of the local agent's closed-task feed that fails closed
//!   when it goes stale, and of the trust domain's CRLs ([`revocation`]).
//! - [`Verifier::authorize`]: the per-request check, returning a typed [`Refusal`] naming the
//!   rule that failed.
//!
//! See `docs/DELEGATION.md` for the model and the wire formats.
#![forbid(unsafe_code)]

pub mod authorize;
pub mod caller;
#[cfg(feature = "cedar")]
pub mod cedar;
pub mod refusal;
pub mod revocation;
pub mod status;
pub mod tls;

#[cfg(test)]
mod test_support;

pub use authorize::{Authorized, Verifier, check_grant};
pub use caller::{CallerIdentity, DelegationPolicy};
pub use mandate_core::delegation::Delegation;
pub use mandate_core::task::ValueLimit;
pub use refusal::Refusal;
pub use status::{DEFAULT_STALENESS, TaskStatusConfig, TaskStatusWatcher};

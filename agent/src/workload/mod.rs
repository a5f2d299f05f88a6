//! The workload side of the agent: unix attestation, the Workload API, the JWT-SVID cache,
//! the task-status feed, and the socket that serves them.

pub mod attestor;
pub mod caller;
pub mod claims;
pub mod delegation;
pub mod endpoint;
pub mod h2_authority;
pub mod jwt_cache;
pub mod names;
pub mod service;
pub mod task_status;

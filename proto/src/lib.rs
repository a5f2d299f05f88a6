//! Generated gRPC code for every wire contract of Mandate (DESIGN 3.1, 3.4, 3.5, 3.6).
//!
//! These types stay at the API edge: the server and the agent convert them to
//! `mandate-core` types before anything else sees them.
#![allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all, clippy::pedantic)]

/// The SPIFFE Workload API (no protobuf package; paths are `/SpiffeWorkloadAPI/<Rpc>`).
pub mod workload {
    tonic::include_proto!("_");
}

/// `mandate.delegation.v1`: the task-status feed served on the agent socket.
pub mod delegation {
    tonic::include_proto!("mandate.delegation.v1");
}

/// `mandate.types.v1`: entries, tasks and bundles as they travel on the wire.
pub mod types {
    tonic::include_proto!("mandate.types.v1");
}

/// `mandate.agent.v1`: the server's API for node agents.
pub mod agent {
    tonic::include_proto!("mandate.agent.v1");
}

/// `mandate.admin.v1`: the server's admin API on its unix socket.
pub mod admin {
    tonic::include_proto!("mandate.admin.v1");
}

/// The metadata key every Workload API request must carry, with value `true`.
pub const WORKLOAD_HEADER_KEY: &str = "workload.spiffe.io";

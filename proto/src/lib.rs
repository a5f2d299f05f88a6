//! Generated gRPC code for every wire contract of Mandate (DESIGN 3.1, 3.4, 3.5, 3.6).
//!
//! These types stay at the API edge: the server and the agent convert them to
//! `mandate-core` types before anything else sees them.
#![allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic
)]

/// The SPIFFE Workload API (no protobuf package; paths are `/SpiffeWorkloadAPI/<Rpc>`).
pub mod workload {
    tonic::include_proto!("_");
}

/// The `mandate.*` protobuf packages, nested as the generated code expects.
pub mod mandate {
    /// `mandate.delegation.*`.
    pub mod delegation {
        /// `mandate.delegation.v1`.
        pub mod v1 {
            tonic::include_proto!("mandate.delegation.v1");
        }
    }
    /// `mandate.types.*`.
    pub mod types {
        /// `mandate.types.v1`.
        pub mod v1 {
            tonic::include_proto!("mandate.types.v1");
        }
    }
    /// `mandate.agent.*`.
    pub mod agent {
        /// `mandate.agent.v1`.
        pub mod v1 {
            tonic::include_proto!("mandate.agent.v1");
        }
    }
    /// `mandate.admin.*`.
    pub mod admin {
        /// `mandate.admin.v1`.
        pub mod v1 {
            tonic::include_proto!("mandate.admin.v1");
        }
    }
}

/// `mandate.admin.v1`: the server's admin API on its unix socket.
pub use mandate::admin::v1 as admin;
/// `mandate.agent.v1`: the server's API for node agents.
pub use mandate::agent::v1 as agent;
/// `mandate.delegation.v1`: the task-status feed served on the agent socket.
pub use mandate::delegation::v1 as delegation;
/// `mandate.types.v1`: entries, tasks and bundles as they travel on the wire.
pub use mandate::types::v1 as types;

/// The metadata key every Workload API request must carry, with value `true`.
pub const WORKLOAD_HEADER_KEY: &str = "workload.spiffe.io";

//! mandate-agent: the Mandate node agent. It attests to mandate-server with a join token,
//! syncs its entries and tasks, keeps X509-SVIDs and JWT-SVIDs for them, attests local
//! workloads by their unix credentials, and serves the SPIFFE Workload API and the
//! task-status feed on a unix socket (DESIGN 3.1, 3.4, 3.5).
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
pub mod delegate_client;
pub mod pem;
pub mod run;
pub mod upstream;
pub mod workload;

//! mandate-server: the CA, registration entries, tasks, node attestation, the agent and admin
//! APIs, the audit log and the operator CLI of Mandate (DESIGN 2).
#![forbid(unsafe_code)]
// Tests may unwrap: a panic is the failure report there (STYLE 4 bans it outside tests).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin_api;
pub mod agent_api;
pub mod attest;
pub mod ca;
pub mod cli;
pub mod config;
pub mod context;
pub mod entries;
pub mod metrics;
pub mod pruning;
pub mod registry;
pub mod server;
pub mod store;
pub mod tasks;
pub mod wire;

#[cfg(test)]
mod testing;

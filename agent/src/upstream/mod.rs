//! Everything the agent says to mandate-server: TLS channels, attestation and renewal, the
//! sync loop, signing and minting, and the proto -> domain conversion at that edge.

pub mod connect;
pub mod convert;
pub mod node;
pub mod rpc;
pub mod sync;

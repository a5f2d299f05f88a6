//! The SVID cache: the domain model, the mutable state, the published snapshot, the manager
//! task that ties them together, and the signer that gets SVIDs from the server.

pub mod closed;
pub mod manager;
pub mod model;
pub mod signer;
pub mod snapshot;
pub mod state;

//! The pure identity core of Mandate: identifiers, selectors, entries, tasks, the delegation
//! extension, the X509-SVID and JWT-SVID profiles, and rotation math. No IO lives here.
#![forbid(unsafe_code)]

pub mod csr;
pub mod delegation;
pub mod entry;
pub mod ids;
pub mod jwt;
pub mod principal;
pub mod selector;
pub mod task;
pub mod time;
pub mod tls;
pub mod x509;

pub use spiffe::{SpiffeId, TrustDomain};

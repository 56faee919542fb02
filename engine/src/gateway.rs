//! The gateway's storage: client keys (issue, list, revoke), the table
//! of streamed calls in flight and what a restart does with them. The
//! journal payloads these write are in [`crate::entries`]; the HTTP side
//! is the `server` crate's `gateway`.

mod keys;
pub mod recovery;
pub mod tables;

pub use keys::{GatewayKey, Issued, KeyListing, Revocation, RevocationListing, issue, list, lookup, revoke};
pub use recovery::{OpenStream, Recovered, recover};

/// Every gateway key's budget account is this prefix and the key's name.
pub const ACCOUNT_PREFIX: &str = "gateway:";

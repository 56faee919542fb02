//! The gateway's storage: client keys (issue, list, revoke), the table
//! of streamed calls in flight and what a restart does with them, and the
//! journal kinds and payloads these write. The HTTP side is the `server`
//! crate's `gateway`.

mod keys;
pub mod recovery;
pub mod tables;

use anyhow::{Context, Result};
use identity::Keypair;
use ledger::Txn;
use serde::Serialize;

pub use keys::{GatewayKey, Issued, KeyListing, Revocation, RevocationListing, issue, list, lookup, revoke};
pub use recovery::{OpenStream, Recovered, recover};

/// Every gateway key's budget account is this prefix and the key's name.
pub const ACCOUNT_PREFIX: &str = "gateway:";
/// The journal kinds the gateway writes; their payloads are the
/// `*Payload` types below, so each is written in one place.
pub mod kind {
    /// An operator issued a client key (signed by the operator).
    pub const KEY_ISSUED: &str = "gateway.key_issued";
    /// An operator revoked a client key (signed by the operator).
    pub const KEY_REVOKED: &str = "gateway.key_revoked";
    /// A streamed call's request and reservation, before its first byte.
    pub const STARTED: &str = "gateway.started";
    /// A call served: text, tokens, cost.
    pub const COMPLETION: &str = "gateway.completion";
    /// A streamed call that stopped after text may have been sent.
    pub const INTERRUPTED: &str = "gateway.interrupted";
    /// One refused call of a valid key.
    pub const REFUSED: &str = "gateway.refused";
    /// Refusals counted, not journaled one by one, in one window.
    pub const REFUSALS: &str = "gateway.refusals";
}

#[derive(Debug, Serialize)]
pub struct KeyIssuedPayload<'a> {
    pub key_id: &'a str,
    pub name: &'a str,
    pub account: &'a str,
    pub limit: u64,
}

#[derive(Debug, Serialize)]
pub struct KeyRevokedPayload<'a> {
    pub key_id: &'a str,
    pub name: &'a str,
    pub account: &'a str,
    pub reason: &'a str,
}

#[derive(Debug, Serialize)]
pub struct InterruptedPayload<'a> {
    pub key_id: &'a str,
    pub account: &'a str,
    pub reservation: u64,
    pub started_seq: u64,
    pub reserved: u64,
    /// What was charged: `reserved`, or 0 if the reservation had expired.
    pub cost: u64,
    pub expired: bool,
    pub reason: &'a str,
}

/// Appends a gateway entry with a typed payload; returns its seq.
pub fn append(t: &mut Txn, signer: &Keypair, kind: &str, payload: &impl Serialize, time_us: i64) -> Result<u64> {
    let value = serde_json::to_value(payload).with_context(|| format!("encoding a {kind} entry"))?;
    Ok(t.append(signer, kind, &value, time_us)?.0)
}

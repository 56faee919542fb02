//! The gateway's tables in the conductor's database. A leaf module: the
//! data directory creates them when it opens (`data.rs`), and the key and
//! recovery modules, which open the data directory, use them; keeping the
//! definitions here keeps that from being a circle of imports.

use anyhow::{Context, Result};
use redb::TableDefinition;

/// BLAKE3 of a key (hex) -> the key's record (JSON).
pub(super) const KEYS: TableDefinition<&str, &str> = TableDefinition::new("gateway_keys");

/// Reservation id -> the streamed call it pays for (`OpenStream`, JSON).
pub(super) const OPEN_STREAMS: TableDefinition<u64, &str> = TableDefinition::new("gateway_open_streams");

/// Creates the gateway's tables if they are missing.
pub fn create(txn: &redb::WriteTransaction) -> Result<()> {
    txn.open_table(KEYS).context("creating the gateway key table")?;
    txn.open_table(OPEN_STREAMS).context("creating the gateway's open-stream table")?;
    Ok(())
}

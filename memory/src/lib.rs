//! Bitemporal memory: facts with a *valid time* (when it is true in the
//! world) and a *transaction time* (when conductor recorded it).
//!
//! - [`assert`] records a [`NewFact`]. If an open-ended fact with the same
//!   subject and predicate is already believed, it is not edited in place:
//!   its row is marked superseded at the new transaction time and a closed
//!   copy (valid until the new fact starts) is recorded beside it, so what
//!   was believed before stays queryable.
//! - [`recall`] / [`recall_in`] return the facts about a subject that held
//!   at a valid time, as known at a transaction time ([`Recall`]).
//!
//! Storage is a set of redb tables inside the caller's transaction, so a
//! fact and the journal entry that records it commit together. This crate
//! knows nothing about wasm, models or HTTP.
//!
//! Worked example: a policy limit of 2400 is asserted at tx=10, valid from
//! t=0. At tx=20 a new limit of 2600 is asserted, valid from t=100.
//! - `recall(valid_at=50, tx_at=now)` → 2400 (valid 0..100).
//! - `recall(valid_at=150, tx_at=now)` → 2600.
//! - `recall(valid_at=150, tx_at=15)` → 2400 (open-ended, as believed then).

mod error;
mod store;

pub use error::MemoryError;
pub use store::{
    Fact, FactId, NewFact, Recall, RECALL_FACTS_MAX, VALUE_BYTES_MAX, assert, create_tables,
    recall, recall_in,
};

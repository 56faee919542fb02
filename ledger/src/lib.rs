//! The ledger: conductor's signed, hash-chained journal and the budget
//! accounts projected from it, both in one redb file.
//!
//! - [`Ledger`] owns the database. [`Ledger::write`] runs a closure in one
//!   write transaction ([`Txn`]) and commits it durably; everything a
//!   closure appends and projects becomes visible together or not at all.
//! - [`Txn::append`] adds an [`Entry`] signed by the acting identity; the
//!   entry's hash chains it to the one before (see [`entry`] for the bytes).
//! - [`Txn::reserve`], [`Txn::settle`] and [`Txn::void`] are the two-phase
//!   budget postings; each is itself a journal entry.
//! - [`Ledger::verify`] re-walks the chain and checks every hash and
//!   signature, naming the first bad sequence number.
//!
//! This crate knows nothing about wasm, models or HTTP. Other crates that
//! keep projections in the same file (memory, the conductor's task state)
//! get the underlying [`redb::WriteTransaction`] through [`Txn::redb`] so their
//! writes commit atomically with the entry that caused them.

mod budget;
pub mod entry;
mod error;
mod journal;
mod verify;

pub use budget::{Account, ReservationId};
pub use entry::{Entry, EntryHash};
pub use error::{BudgetError, LedgerError, VerifyError, VerifyFailure};
pub use journal::{Ledger, Txn};
pub use verify::VerifyReport;

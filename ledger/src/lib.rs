//! The ledger: conductor's signed, hash-chained journal and the budget
//! accounts projected from it, both in one redb file.
//!
//! - [`Ledger`] owns the database. [`Ledger::write`] runs a closure in one
//!   write transaction ([`Txn`]) and commits it durably; everything a
//!   closure appends and projects becomes visible together or not at all.
//! - [`Kind`] is the journal's vocabulary: every kind of entry format 1
//!   knows and the one role that may sign it.
//! - [`Txn::append`] adds an [`Entry`] signed by the acting identity; the
//!   entry's hash chains it to the one before (see [`entry`] for the bytes).
//! - [`Txn::reserve`], [`Txn::settle`] and [`Txn::void`] are the two-phase
//!   budget postings; each is itself a journal entry.
//! - Keys enter the journal only through key events ([`Txn::genesis`],
//!   [`Txn::register_key`], [`Txn::revoke_key`], [`Txn::rotate_key`]);
//!   [`rules`] says which role may sign which kind, and every append is
//!   checked against them.
//! - [`Txn::append_remote`] and [`Txn::extend_remote`] journal entries
//!   signed by a key this process does not hold (a reviewer's, in their
//!   browser), in a capture pass and a signed pass ([`RemoteKey`]).
//! - [`Ledger::verify`] and [`verify_export`] re-walk the chain and check
//!   every hash, link, signer and signature (batch-verified on every
//!   core), replay the budget postings and hold every task and gate to
//!   one outcome (`outcomes`), hold delegations, their children and
//!   their joins to one another (`links`), naming the first bad sequence number;
//!   [`Checkpoint`]s held elsewhere pin the head against truncation and
//!   rewrites. The same key, budget and outcome rules run at append time,
//!   so the ledger never writes an entry its verifier would reject.
//! - [`Ledger::open`] creates a new database atomically (complete under a
//!   temporary name, then renamed into place), and names a file that is
//!   not a database ([`LedgerError::NotADatabase`]) instead of failing
//!   deep inside the storage engine.
//!
//! This crate knows nothing about wasm, models or HTTP. Other crates that
//! keep projections in the same file (memory, the conductor's task state)
//! get the underlying [`redb::WriteTransaction`] through [`Txn::redb`] so their
//! writes commit atomically with the entry that caused them.

mod budget;
mod checkpoint;
pub mod entry;
mod error;
mod export;
mod group;
mod journal;
mod json;
mod kind;
mod links;
mod outcomes;
mod remote;
pub mod rules;
mod signing;
mod verify;

pub use budget::{ACCOUNT_DEPTH_MAX, AMOUNT_MAX, Account, EXPIRE_BATCH_MAX, ReservationId, available_in};
pub use checkpoint::Checkpoint;
pub use entry::{Entry, EntryHash};
pub use error::{BudgetError, CheckpointError, DamagedFile, LedgerError, RemoteSignError, VerifyError, VerifyFailure};
pub use export::{EXPORT_MAGIC, EXPORT_VERSION, ExportSummary, export_database, verify_export};
pub use group::{GROUP_BATCH_DEFAULT, GroupCommitter, GroupStats};
pub use journal::{CHECKPOINT_EVERY_DEFAULT, Ledger, ReadOnly, Sharing, Txn, open_read_only};
pub use kind::Kind;
pub use remote::{PreparedEntry, RemoteKey, SignedEntry};
pub use rules::KeyRecord;
pub use verify::{VerifyReport, read_journal, scan_journal, verify_database};

//! Bitemporal memory: facts with a *valid time* (when they hold in the
//! world) and a *transaction time* (when conductor believed them), kept in
//! named spaces, encrypted per subject so a subject can be erased.
//!
//! Storage is a set of redb tables inside the caller's transaction, so a
//! fact and the journal entry that records it commit together. This crate
//! knows nothing about wasm, models, HTTP or the journal; the conductor
//! decides who may read and write which space and journals every call.
//!
//! # Model
//!
//! A fact *version* is (space, subject, predicate, value, optional source)
//! with a valid interval `[valid_from, valid_to)` and a transaction
//! interval `[recorded_at, superseded_at)`. Both are half-open: a fact
//! valid `[0, 100)` holds at 0 and 99, not at 100; a version superseded at
//! tx 20 is seen as of tx 19, not as of tx 20. `None` ends are open.
//! Times are Unix microseconds (valid times [`TIME_MIN`]..=[`TIME_MAX`],
//! transaction times from 0 and never decreasing).
//!
//! For each (space, subject, predicate) the versions believed at any one
//! transaction time never overlap in valid time, so a query at one valid
//! and one transaction time sees at most one version per predicate.
//! Versions are never edited or deleted: superseding a version ends its
//! transaction interval; its row stays, so every past belief stays
//! queryable. Spaces are independent: an assert in `mission:a` never
//! supersedes anything in `precedent`.
//!
//! # Writes ([`Writer`], at one transaction time `tx`)
//!
//! - [`Writer::assert`] over `[f, t)`: every current version of the same
//!   space/subject/predicate overlapping `[f, t)` is superseded at `tx`; its
//!   parts before `f` and from `t` on are re-recorded at `tx` with the same
//!   value (new ids, [`Change::remainders`]); the new version is recorded.
//! - [`Writer::supersede`] corrects one current version by id: it is
//!   superseded whole (no remainders) and the correction recorded over its
//!   interval (or a new one, splitting other versions as assert does).
//! - [`Writer::retract`] over `[f, t)` is assert without a new version;
//!   [`Writer::retract_fact`] supersedes one version whole.
//! - [`Writer::erase_subject`] crypto-shreds a subject (see below).
//!
//! Several writes at the same `tx` apply in call order, the later winning:
//! a version recorded and superseded at the same `tx` has an empty
//! transaction interval `[tx, tx)` and is never seen by any query (its row
//! stays as a record that it was written).
//!
//! # Reads ([`recall`], [`Query`])
//!
//! `valid_at: Some(v)` keeps versions with `valid_from <= v < valid_to`;
//! `None` keeps every valid time. `known_at: Some(x)` keeps versions
//! believed at `x` (`recorded_at <= x < superseded_at`); `None` keeps what
//! is believed now (not superseded). So: both set = "what did we believe
//! at `x` about time `v`"; valid only = "what holds at `v`, as currently
//! known"; tx only = "everything believed at `x`, across valid time";
//! neither = the current valid-time history. Selection is by subject, by
//! subject and predicate, or by words of the value (BM25-ranked, ties by
//! newest version); only the given spaces are read, and answers are bounded
//! by [`RECALL_FACTS_MAX`] and [`RECALL_BYTES_MAX`] (lower per query).
//!
//! # Worked example
//!
//! A limit of 2400 is asserted at tx 10, valid from 0 (open-ended). At tx
//! 20, 2600 is asserted valid `[100, 200)`. The first version is superseded
//! at tx 20 and re-recorded as two remainders, `[0, 100)` and `[200, ∞)`,
//! both 2400, recorded at 20. Then:
//!
//! | valid_at | known_at | sees |
//! |---|---|---|
//! | 150 | now (None) | 2600 `[100, 200)` |
//! | 50 / 250 | None | 2400 `[0, 100)` / 2400 `[200, ∞)` |
//! | 150 | 15 | 2400 `[0, ∞)` (as believed before the change) |
//! | 150 | 20 | 2600 (tx intervals are half-open: at 20 the new belief holds) |
//! | None | 15 | one version: 2400 `[0, ∞)` |
//! | None | None | three versions, in valid order |
//! | 50 | 5 | nothing: nothing was known before tx 10 |
//!
//! At tx 30, `retract([150, 300))` supersedes 2600 and 2400 `[200, ∞)` and
//! re-records 2600 `[100, 150)` and 2400 `[300, ∞)`: at valid 160 nothing
//! is believed any more, as of tx 25 it was still 2600.
//!
//! # Erasure (crypto-shredding)
//!
//! Values are XChaCha20-Poly1305 ciphertext under a random 32-byte key per
//! subject (associated data binds subject, space and predicate); the key
//! is wiped from process memory after each use ([`zeroize`]). Erasing a
//! subject deletes its word postings and its key; afterwards its facts read
//! as [`Opened::Erased`], word search no longer finds them, [`open`] turns
//! its journal envelopes (made by [`seal`]) into `Erased`, and new asserts
//! or seals about it are refused. Subject, predicate, space, source and
//! times are identifiers and stay in clear: put personal data in values.
//!
//! What erasure cannot promise on its own: redb is copy-on-write, so the
//! pages that held the key before the erasing commit are freed, not
//! overwritten, and keep the key bytes until redb reuses them (and a
//! filesystem or SSD may keep older copies still). redb offers no
//! overwrite-on-free; `Database::compact` moves live pages down and
//! truncates the file, which shortens but does not close that window, and
//! the page cache holds copies until evicted. So the conductor's data
//! directory must be on encrypted storage (LUKS, fscrypt) for erasure to be
//! a guarantee against someone who later reads the disk; against readers of
//! the database through redb, and of journals and backups made with sealed
//! values, it holds as soon as the erasing transaction commits.
//!
//! # Limits
//!
//! Every space holds at most [`SPACE_FACTS_MAX`] versions and
//! [`SPACE_BYTES_MAX`] bytes (history included), lowered per writer with
//! [`Writer::with_limits`]; a write that would exceed them is refused with
//! [`MemoryError::SpaceFull`] before anything is written. Names, values,
//! sources and times are checked ([`MemoryError`]).

mod codec;
mod crypt;
mod error;
mod read;
mod tables;
mod write;

pub use codec::{NAME_BYTES_MAX, SOURCE_BYTES_MAX, TIME_MAX, TIME_MIN, VALUE_BYTES_MAX};
pub use crypt::{ENVELOPE_PREFIX, Opened, SEALED_PLAINTEXT_MAX, open, open_bytes, seal, seal_bytes};
pub use error::MemoryError;
pub use read::{
    Fact, QUERY_SPACES_MAX, QUERY_TEXT_BYTES_MAX, QUERY_WORDS_MAX, Query, RECALL_BYTES_MAX, RECALL_FACTS_MAX, Recalled,
    Select, Snapshot, WORD_POSTINGS_SCANNED_MAX, knows_subject, last_transaction_time, recall, spaces,
};
pub use tables::create_tables;
pub use write::{Change, Correction, Erasure, Interval, Limits, NewFact, SPACE_BYTES_MAX, SPACE_FACTS_MAX, Writer};

/// Identifier of one stored fact version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FactId(pub u64);

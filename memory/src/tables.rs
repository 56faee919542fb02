//! The redb tables (layouts in [`crate::codec`]). Names carry a `v2` so a
//! database written by the first, JSON-based layout is not misread.

use redb::{TableDefinition, WriteTransaction};

use crate::error::{MemoryError, storage};

/// Currently believed versions: fact key -> record. A version leaves this
/// table (for [`HISTORY`]) the moment it is superseded, so "as currently
/// known" reads never step over old versions.
pub(crate) const CURRENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memory.v2.current");
/// Superseded versions: fact key -> record (with its superseded time).
pub(crate) const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memory.v2.history");
/// fact id -> fact key (the version is in [`CURRENT`] or else [`HISTORY`];
/// the row never changes, so superseding does not rewrite it).
pub(crate) const IDS: TableDefinition<u64, &[u8]> = TableDefinition::new("memory.v2.ids");
/// Word postings of current versions: posting key -> posting.
pub(crate) const WORDS_CURRENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memory.v2.words.current");
/// Word postings of superseded versions.
pub(crate) const WORDS_HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memory.v2.words.history");
/// subject -> its 32-byte value key. Deleted on erasure.
pub(crate) const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("memory.v2.keys");
/// subject -> transaction time of its erasure.
pub(crate) const ERASED: TableDefinition<&str, i64> = TableDefinition::new("memory.v2.erased");
/// `subject 0x00 space 0x00`: the spaces holding facts about a subject,
/// so erasure finds them without scanning every space.
pub(crate) const SUBJECT_SPACES: TableDefinition<&[u8], ()> = TableDefinition::new("memory.v2.subject_spaces");
/// space -> usage and word statistics ([`crate::write::SpaceStats`]).
pub(crate) const SPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("memory.v2.spaces");
/// `next_id` and `last_tx`.
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("memory.v2.meta");

/// Creates the memory tables; call once when the database is opened.
pub fn create_tables(txn: &WriteTransaction) -> Result<(), MemoryError> {
    txn.open_table(CURRENT).map_err(storage)?;
    txn.open_table(HISTORY).map_err(storage)?;
    txn.open_table(IDS).map_err(storage)?;
    txn.open_table(WORDS_CURRENT).map_err(storage)?;
    txn.open_table(WORDS_HISTORY).map_err(storage)?;
    txn.open_table(KEYS).map_err(storage)?;
    txn.open_table(ERASED).map_err(storage)?;
    txn.open_table(SUBJECT_SPACES).map_err(storage)?;
    txn.open_table(SPACES).map_err(storage)?;
    txn.open_table(META).map_err(storage)?;
    Ok(())
}

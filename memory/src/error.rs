/// Errors from memory operations. None of them leaves a partial write:
/// the caller's transaction is simply not committed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The storage engine failed.
    #[error("memory storage error: {0}")]
    Storage(#[from] redb::Error),
    /// A fact was refused before it was stored.
    #[error("fact refused: {0}")]
    Invalid(String),
    /// A stored fact did not decode; the database is corrupt.
    #[error("stored fact {id} is corrupt: {reason}")]
    Corrupt { id: u64, reason: String },
}

pub(crate) fn storage<E: Into<redb::Error>>(e: E) -> MemoryError {
    MemoryError::Storage(e.into())
}

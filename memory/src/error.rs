/// Errors from memory operations.
///
/// Refusals (everything but [`MemoryError::Storage`] and
/// [`MemoryError::Corrupt`]) are decided before anything is written. A
/// storage error can come mid-way through an operation; either way the
/// caller must not commit a transaction in which a memory call failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The storage engine failed.
    #[error("memory storage error: {0}")]
    Storage(#[from] redb::Error),
    /// A name, value, source or query was refused before anything was read
    /// or stored.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A time outside [`crate::TIME_MIN`]..=[`crate::TIME_MAX`] (or, for a
    /// transaction time, before the Unix epoch).
    #[error("{field} {value} is out of range")]
    TimeOutOfRange { field: &'static str, value: i64 },
    /// A valid-time interval whose end is not after its start.
    #[error("empty or inverted valid interval [{from}, {to})")]
    EmptyInterval { from: i64, to: i64 },
    /// A transaction time earlier than one already recorded: transaction
    /// time only moves forward, or "as known at" would stop meaning anything.
    #[error("transaction time {at} is before the last recorded one ({last})")]
    TxTimeBehind { at: i64, last: i64 },
    /// No fact version with this id exists in the space named (a version in
    /// another space is reported the same way, so its existence is not leaked).
    #[error("no fact {id} in this space")]
    UnknownFact { id: u64 },
    /// The version was already superseded or retracted; only a currently
    /// believed version can be corrected or retracted.
    #[error("fact {id} is no longer believed (superseded at {superseded_at})")]
    NotCurrent { id: u64, superseded_at: i64 },
    /// The space reached its limit on stored versions or bytes.
    #[error("memory space {space:?} is full: {what} limit of {limit} reached")]
    SpaceFull { space: String, what: &'static str, limit: u64 },
    /// The subject was erased; nothing new can be recorded or sealed about it.
    #[error("subject {subject:?} was erased at {at}")]
    Erased { subject: String, at: i64 },
    /// A sealed envelope that is malformed, was not sealed for this subject,
    /// or was altered.
    #[error("sealed envelope refused: {0}")]
    Envelope(&'static str),
    /// The operating system's random generator failed.
    #[error("no randomness for a key or nonce: {0}")]
    Randomness(String),
    /// Stored data did not decode; the database is corrupt.
    #[error("memory store is corrupt: {0}")]
    Corrupt(String),
}

pub(crate) fn storage<E: Into<redb::Error>>(e: E) -> MemoryError {
    MemoryError::Storage(e.into())
}

pub(crate) fn corrupt(what: impl Into<String>) -> MemoryError {
    MemoryError::Corrupt(what.into())
}

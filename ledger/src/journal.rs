use std::path::{Path, PathBuf};

use identity::Keypair;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::entry::{self, Entry, EntryHash, KIND_BYTES_MAX, PAYLOAD_BYTES_MAX};
use crate::error::{LedgerError, VerifyFailure, storage};

/// seq -> stored record (`canonical ‖ hash ‖ signature`).
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// The chain head, kept beside the entries so a removed tail is noticed:
/// key `head` -> (next seq, hash of the last entry).
pub(crate) const HEAD: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("journal_head");

/// The ledger database: journal plus the projections written with it.
#[derive(Debug)]
pub struct Ledger {
    db: Database,
    path: PathBuf,
}

impl Ledger {
    /// Opens the ledger at `path`, creating an empty one if it does not exist.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Busy(path.to_owned()),
            other => storage(other),
        })?;
        let ledger = Ledger { db, path: path.to_owned() };
        // Create the tables up front so readers never see "table missing".
        ledger.write(|txn| {
            txn.inner.open_table(JOURNAL).map_err(storage)?;
            txn.inner.open_table(HEAD).map_err(storage)?;
            crate::budget::create_tables(&txn.inner)
        })?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction and commits it durably when `f`
    /// returns `Ok`; on `Err` nothing `f` did is kept.
    pub fn write<T, E>(&self, f: impl FnOnce(&mut Txn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<LedgerError>,
    {
        let inner = self.db.begin_write().map_err(storage)?;
        let mut txn = Txn { inner };
        let value = f(&mut txn)?;
        txn.inner.commit().map_err(storage)?;
        Ok(value)
    }

    /// A consistent read-only snapshot.
    pub fn read(&self) -> Result<redb::ReadTransaction, LedgerError> {
        self.db.begin_read().map_err(storage)
    }

    /// Every entry from `from` on, in order, decoded but not verified.
    /// At most `limit` entries, so a caller never loads an unbounded journal.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        let read = self.read()?;
        let table = read.open_table(JOURNAL).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.range(from..).map_err(storage)?.take(limit) {
            let (seq, record) = row.map_err(storage)?;
            let entry = entry::decode(record.value())
                .map_err(|failure| LedgerError::Corrupt { seq: seq.value(), failure })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The number of entries and the hash of the last one.
    pub fn head(&self) -> Result<(u64, EntryHash), LedgerError> {
        let read = self.read()?;
        let table = read.open_table(HEAD).map_err(storage)?;
        read_head(&table)
    }
}

fn read_head(table: &impl ReadableTable<&'static str, (u64, &'static [u8])>) -> Result<(u64, EntryHash), LedgerError> {
    match table.get("head").map_err(storage)? {
        None => Ok((0, EntryHash::default())),
        Some(guard) => {
            let (next, hash) = guard.value();
            let hash: [u8; 32] = hash.try_into().map_err(|_| LedgerError::Corrupt {
                seq: next,
                failure: VerifyFailure::Malformed("stored head hash is not 32 bytes".into()),
            })?;
            Ok((next, EntryHash(hash)))
        }
    }
}

/// One write transaction on the ledger.
pub struct Txn {
    pub(crate) inner: redb::WriteTransaction,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Txn")
    }
}

impl Txn {
    /// The underlying transaction, for projections kept by other crates.
    pub fn redb(&self) -> &redb::WriteTransaction {
        &self.inner
    }

    /// Appends one entry signed by `signer` and returns its sequence number
    /// and hash. The entry is durable when the enclosing [`Ledger::write`]
    /// commits.
    pub fn append(
        &mut self,
        signer: &Keypair,
        kind: &str,
        payload: &serde_json::Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        let payload = serde_json::to_vec(payload)
            .map_err(|e| LedgerError::BadEntry(format!("payload does not serialise: {e}")))?;
        if kind.is_empty()
            || kind.len() > KIND_BYTES_MAX
            || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'-' || b == b'_')
        {
            return Err(LedgerError::BadEntry(format!("kind `{kind}` is not a short dotted name")));
        }
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(LedgerError::BadEntry(format!(
                "payload of {} bytes exceeds {PAYLOAD_BYTES_MAX}",
                payload.len()
            )));
        }
        let mut head = self.inner.open_table(HEAD).map_err(storage)?;
        let (seq, prev) = read_head(&head)?;
        let signer_bytes = signer.public().to_bytes();
        let canonical = entry::canonical_bytes(seq, &prev, time_us, &signer_bytes, kind, &payload);
        let hash = entry::hash_of(&canonical);
        let signature = signer.sign(&entry::signed_message(&hash));
        let mut record = canonical;
        record.extend_from_slice(&hash.0);
        record.extend_from_slice(&signature.to_bytes());
        let mut journal = self.inner.open_table(JOURNAL).map_err(storage)?;
        journal.insert(seq, record.as_slice()).map_err(storage)?;
        head.insert("head", (seq + 1, hash.0.as_slice())).map_err(storage)?;
        Ok((seq, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::Role;
    use serde_json::json;

    pub(crate) fn temp_ledger(name: &str) -> (Ledger, PathBuf) {
        let path = std::env::temp_dir().join(format!("ledger-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (Ledger::open(&path).expect("open"), path)
    }

    #[test]
    fn appends_chain_and_survive_reopen() {
        let (ledger, path) = temp_ledger("chain");
        let key = Keypair::generate(Role::Conductor);
        let (a, ha) = ledger
            .write(|t| t.append(&key, "mission.declared", &json!({"n": 1}), 10))
            .expect("append");
        let (b, _) = ledger
            .write(|t| t.append(&key, "task.started", &json!({"n": 2}), 11))
            .expect("append");
        assert_eq!((a, b), (0, 1));
        drop(ledger);
        let ledger = Ledger::open(&path).expect("reopen");
        let entries = ledger.entries(0, 10).expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].prev, ha);
        assert_eq!(ledger.head().expect("head").0, 2);
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn failed_closure_writes_nothing() {
        let (ledger, path) = temp_ledger("rollback");
        let key = Keypair::generate(Role::Conductor);
        let result: Result<(), LedgerError> = ledger.write(|t| {
            t.append(&key, "task.started", &json!({}), 1)?;
            Err(LedgerError::BadEntry("caller changed its mind".into()))
        });
        assert!(result.is_err());
        assert_eq!(ledger.head().expect("head").0, 0);
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn bad_kinds_and_a_second_open_are_refused() {
        let (ledger, path) = temp_ledger("refusals");
        let key = Keypair::generate(Role::Conductor);
        assert!(ledger.write(|t| t.append(&key, "Task Started", &json!({}), 1)).is_err());
        assert!(matches!(Ledger::open(&path), Err(LedgerError::Busy(_))));
        std::fs::remove_file(path).expect("cleanup");
    }
}

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use identity::{Keypair, PublicKey, Role};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Value, json};

use crate::budget::BudgetCache;
use crate::checkpoint::Checkpoint;
use crate::entry::{self, Entry, EntryHash, KIND_BYTES_MAX, PAYLOAD_BYTES_MAX};
use crate::error::{DamagedFile, LedgerError, RemoteSignError, VerifyFailure, storage};
use crate::remote::{Remote, RemoteKey};
use crate::rules::{self, KeyRecord, KeyStore};

/// seq -> stored record (`canonical ‖ hash ‖ signature`).
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// The chain head, kept beside the entries so a removed tail is noticed:
/// key `head` -> (next seq, hash of the last entry).
pub(crate) const HEAD: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("journal_head");
/// Projection of the key events: public key -> [`KeyRecord`] as JSON.
const KEYS: TableDefinition<&[u8], &str> = TableDefinition::new("journal_keys");
/// `conductor` -> the conductor public key in force.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("journal_meta");
/// seq of every `journal.checkpoint` entry.
const CHECKPOINTS: TableDefinition<u64, ()> = TableDefinition::new("journal_checkpoints");
/// Projection of the outcome entries (see [`crate::outcomes`]): subject
/// key -> seq of the entry that ended the task or decided the gate.
const OUTCOMES: TableDefinition<&[u8], u64> = TableDefinition::new("journal_outcomes");
/// The [`META`] row present once [`OUTCOMES`] holds every outcome in the
/// journal: set when a database is created, or when one written before
/// the table existed is first opened (and the table filled from it).
const OUTCOMES_INDEXED: &str = "outcomes_indexed";

/// How many entries may pass between automatic checkpoints by default.
pub const CHECKPOINT_EVERY_DEFAULT: u64 = 1024;

/// The ledger database: journal plus the projections written with it.
#[derive(Debug)]
pub struct Ledger {
    db: Database,
    path: PathBuf,
    checkpoints: Option<AutoCheckpoint>,
    batch_postings: bool,
    /// The budget rows as the last committed transaction left them, handed
    /// from one write transaction to the next (redb runs one at a time) so
    /// a settle finds its reservation and the accounts in memory. Emptied
    /// whenever a transaction does not commit.
    budget_cache: std::sync::Mutex<BudgetCache>,
}

#[derive(Debug, Clone)]
struct AutoCheckpoint {
    signer: Arc<Keypair>,
    every: u64,
}

/// redb's page cache. Its default (1 GiB) made a conductor holding 100,000
/// parked tasks reach 780 MB resident; appends touch the tail of the
/// journal and the projections' hot rows, which fit well within this.
const CACHE_BYTES: usize = 64 << 20;

/// How long [`Ledger::open`] waits for another process that is creating
/// the same database: creation takes milliseconds, so a process still at
/// it after this long is stuck, and waiting longer helps nobody.
const CREATE_WAIT_MS_MAX: u64 = 10_000;
/// How often the wait above looks again.
const CREATE_POLL_MS: u64 = 10;
/// How much of a file [`Ledger::open`] reads to say what it holds when it
/// is not a database: redb's header lives in the first page.
const HEADER_PROBE_BYTES: u64 = 4096;

impl Ledger {
    /// Opens the ledger at `path`, creating an empty one if it does not
    /// exist. Creation is atomic: the database is built complete under a
    /// temporary name in the same directory, synced, renamed to `path`,
    /// and the directory synced, so a full disk or a crash leaves either
    /// no file or a complete database, never a file that later fails.
    /// An existing file that is not a redb database is
    /// [`LedgerError::NotADatabase`], which says what to do.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Err(e) = std::fs::symlink_metadata(path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            create_database(path)?;
        }
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).open(path).map_err(|e| open_error(path, e))?;
        let ledger = Ledger::over(db, path);
        ledger.write(|txn| create_tables(&txn.inner))?;
        Ok(ledger)
    }

    fn over(db: Database, path: &Path) -> Self {
        Ledger {
            db,
            path: path.to_owned(),
            checkpoints: None,
            batch_postings: false,
            budget_cache: std::sync::Mutex::default(),
        }
    }

    /// From now on, whenever an append brings the journal to a multiple
    /// of `every` entries, a `journal.checkpoint` entry signed by `signer`
    /// (the conductor key in force) follows it in the same transaction.
    pub fn checkpoint_every(&mut self, signer: Arc<Keypair>, every: u64) {
        self.checkpoints = Some(AutoCheckpoint { signer, every: every.max(2) });
    }

    /// With `on`, the conductor's account openings and its reserve,
    /// settle, void and expiry postings made in one transaction are
    /// journaled together as `budget.batch` entries (one signature for up to
    /// [`BATCH_POSTINGS_MAX`] postings, each still naming its reservation
    /// and call) instead of one `budget.reserved`/`budget.settled`/…
    /// entry each. For group commit at high rates, where one Ed25519
    /// signature per posting would cap throughput; off by default so a
    /// journal reads one posting per entry.
    pub fn batch_postings(&mut self, on: bool) {
        self.batch_postings = on;
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
        self.write_with(redb::Durability::Immediate, f)
    }

    /// Like [`Ledger::write`], but the commit is not flushed to disk: it is
    /// visible at once to later transactions of this process (only this
    /// process can open the database) and becomes durable with the next
    /// [`Ledger::write`]. A crash before that loses it, together with every
    /// other deferred commit since the last durable one, never part of
    /// one: the journal on disk is always a prefix of what was appended.
    ///
    /// For entries whose effects stay inside this database until a durable
    /// commit follows (a task's own steps before its outcome: on a crash the
    /// task simply runs again). Never for anything another party acts on
    /// (a decision, a reviewer's verdict, data sent off the host).
    pub fn write_deferred<T, E>(&self, f: impl FnOnce(&mut Txn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<LedgerError>,
    {
        self.write_with(redb::Durability::None, f)
    }

    fn write_with<T, E>(&self, durability: redb::Durability, f: impl FnOnce(&mut Txn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<LedgerError>,
    {
        let mut inner = self.db.begin_write().map_err(storage)?;
        inner.set_durability(durability).map_err(storage)?;
        // Held until this transaction has committed and handed its cache
        // back, so the next transaction (which can begin the moment this
        // one commits) waits for the fresh cache instead of reading a stale
        // one. The cache is taken out, not shared: if this transaction
        // fails or panics, the slot stays empty and the next one starts
        // from the tables again. Lock order is always redb's write lock,
        // then this.
        let mut slot = self.budget_cache.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = BudgetCache::default();
            guard
        });
        let budget = std::mem::take(&mut *slot);
        let mut txn = Txn {
            inner,
            checkpoints: self.checkpoints.clone(),
            staged: Vec::new(),
            head: None,
            keys: RefCell::new(KeyCache::default()),
            budget,
            batching: self.batch_postings,
            batch: None,
        };
        let value = f(&mut txn)?;
        txn.seal()?;
        let Txn { inner, mut budget, .. } = txn;
        inner.commit().map_err(storage)?;
        budget.committed();
        *slot = budget;
        Ok(value)
    }

    /// Lets other work in this process use this open ledger through
    /// [`open_read_only`] while the returned guard is held:
    /// a server runs its local clients' commands in its own process
    /// against the database it holds, which no second handle could open.
    pub fn share(self: &Arc<Self>) -> Result<Sharing, LedgerError> {
        let path = std::fs::canonicalize(&self.path).map_err(|e| storage(redb::StorageError::Io(e)))?;
        let mut list = shared_list();
        list.retain(|(p, _)| *p != path);
        list.push((path.clone(), self.clone()));
        Ok(Sharing { path })
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
            let entry =
                entry::decode(record.value()).map_err(|failure| LedgerError::Corrupt { seq: seq.value(), failure })?;
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

    /// What the journal says about `key`, if it knows it.
    pub fn key(&self, key: &PublicKey) -> Result<Option<KeyRecord>, LedgerError> {
        let read = self.read()?;
        let table = read.open_table(KEYS).map_err(storage)?;
        let row = table.get(key.to_bytes().as_slice()).map_err(storage)?;
        row.map(|g| decode_key_record(g.value())).transpose()
    }

    /// The conductor key in force (the genesis key, or the latest it was
    /// rotated to); `None` before genesis.
    pub fn conductor_key(&self) -> Result<Option<PublicKey>, LedgerError> {
        let read = self.read()?;
        let table = read.open_table(META).map_err(storage)?;
        let Some(row) = table.get("conductor").map_err(storage)? else { return Ok(None) };
        let bytes: [u8; 32] = row.value().try_into().map_err(|_| LedgerError::Corrupt {
            seq: 0,
            failure: VerifyFailure::Malformed("stored conductor key is not 32 bytes".into()),
        })?;
        PublicKey::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| LedgerError::Corrupt { seq: 0, failure: VerifyFailure::BadSigner })
    }

    /// Every key the journal knows, in registration order.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        let read = self.read()?;
        let table = read.open_table(KEYS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage)? {
            let (_, value) = row.map_err(storage)?;
            out.push(decode_key_record(value.value())?);
        }
        out.sort_by_key(|k| k.registered_seq);
        Ok(out)
    }

    /// The most recent `journal.checkpoint`, as a file an auditor can keep.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let read = self.read()?;
        let seqs = read.open_table(CHECKPOINTS).map_err(storage)?;
        let Some(last) = seqs.last().map_err(storage)? else { return Ok(None) };
        let seq = last.0.value();
        let journal = read.open_table(JOURNAL).map_err(storage)?;
        let Some(record) = journal.get(seq).map_err(storage)? else {
            return Err(LedgerError::Corrupt {
                seq,
                failure: VerifyFailure::Malformed("checkpoint index names a missing entry".into()),
            });
        };
        Checkpoint::from_record(record.value().to_vec())
            .map(Some)
            .map_err(|e| LedgerError::Corrupt { seq, failure: VerifyFailure::Malformed(e.to_string()) })
    }
}

/// Opens a database read-only (no lock on writers' work, nothing
/// written, nothing created or repaired), for auditors' commands and read
/// snapshots of projections. A database this process holds open and
/// shares ([`Ledger::share`]) is read through that handle instead: redb
/// lets one handle at a time open a file, even within one process.
pub fn open_read_only(path: &Path) -> Result<ReadOnly, LedgerError> {
    if let Some(ledger) = shared(path) {
        return Ok(ReadOnly::Shared(ledger));
    }
    // The same bounded page cache as a writer: auditors' commands scan
    // journals of millions of entries, and redb's default (1 GiB per
    // open database) grew with every pass.
    let db = redb::Builder::new().set_cache_size(CACHE_BYTES).open_read_only(path).map_err(|e| open_error(path, e))?;
    Ok(ReadOnly::Own(db))
}

/// A database opened for reading only: its own read-only handle, or the
/// writer this process shares (see [`open_read_only`]).
pub enum ReadOnly {
    Own(redb::ReadOnlyDatabase),
    Shared(Arc<Ledger>),
}

impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadOnly::Own(_) => f.write_str("ReadOnly::Own"),
            ReadOnly::Shared(ledger) => f.debug_tuple("ReadOnly::Shared").field(&ledger.path).finish(),
        }
    }
}

impl ReadOnly {
    /// A consistent snapshot of what is committed.
    pub fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            ReadOnly::Own(db) => db.begin_read(),
            ReadOnly::Shared(ledger) => ledger.db.begin_read(),
        }
    }
}

/// The ledgers this process shares with its other work, by canonical
/// path (see [`Ledger::share`]). A handful at most: a list suffices.
static SHARED: std::sync::Mutex<Vec<(PathBuf, Arc<Ledger>)>> = std::sync::Mutex::new(Vec::new());

fn shared_list() -> std::sync::MutexGuard<'static, Vec<(PathBuf, Arc<Ledger>)>> {
    // The list is whole after every push and retain: a panic elsewhere
    // while it was locked leaves nothing half-done.
    SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ledger this process shares for the database at `path`, if any.
pub(crate) fn shared(path: &Path) -> Option<Arc<Ledger>> {
    let path = std::fs::canonicalize(path).ok()?;
    shared_list().iter().find(|(p, _)| *p == path).map(|(_, l)| l.clone())
}

/// While held, [`open_read_only`] answers with this
/// ledger for its path (see [`Ledger::share`]); dropping it stops that.
#[derive(Debug)]
#[must_use = "the ledger is shared only while this is held"]
pub struct Sharing {
    path: PathBuf,
}

impl Drop for Sharing {
    fn drop(&mut self) {
        shared_list().retain(|(p, _)| *p != self.path);
    }
}

/// The error for a database at `path` that redb would not open: a file
/// that is not a redb database is named as such, with what it holds.
fn open_error(path: &Path, e: redb::DatabaseError) -> LedgerError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Busy(path.to_owned()),
        redb::DatabaseError::RepairAborted => LedgerError::NeedsRepair(path.to_owned()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData => {
            // redb's "not a database" (no magic number, or an empty file
            // it was not asked to initialise). Say what the file holds.
            match damage_of(path) {
                Some(found) => LedgerError::NotADatabase { path: path.to_owned(), found },
                None => storage(redb::DatabaseError::Storage(redb::StorageError::Io(io))),
            }
        }
        other => storage(other),
    }
}

/// What the start of a file that redb refused holds; `None` when it
/// cannot be read (the caller reports redb's own error then).
fn damage_of(path: &Path) -> Option<DamagedFile> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut head = Vec::new();
    file.take(HEADER_PROBE_BYTES).read_to_end(&mut head).ok()?;
    Some(if head.is_empty() {
        DamagedFile::Empty
    } else if head.iter().all(|b| *b == 0) {
        DamagedFile::Zeros
    } else {
        DamagedFile::NoHeader
    })
}

/// Every table the ledger keeps, created up front so readers never see
/// "table missing"; and the outcomes projection filled from the journal
/// if this database was written before it existed.
fn create_tables(txn: &redb::WriteTransaction) -> Result<(), LedgerError> {
    txn.open_table(JOURNAL).map_err(storage)?;
    txn.open_table(HEAD).map_err(storage)?;
    txn.open_table(KEYS).map_err(storage)?;
    txn.open_table(CHECKPOINTS).map_err(storage)?;
    txn.open_table(OUTCOMES).map_err(storage)?;
    crate::budget::create_tables(txn)?;
    let mut meta = txn.open_table(META).map_err(storage)?;
    if meta.get(OUTCOMES_INDEXED).map_err(storage)?.is_none() {
        index_outcomes(txn)?;
        meta.insert(OUTCOMES_INDEXED, [1u8].as_slice()).map_err(storage)?;
    }
    Ok(())
}

/// Fills [`OUTCOMES`] from the journal, once per database: the first
/// outcome of each subject. An entry that does not decode, or an outcome
/// that does not name its subject, is skipped: opening must not fail on
/// what `verify` exists to report.
fn index_outcomes(txn: &redb::WriteTransaction) -> Result<(), LedgerError> {
    let journal = txn.open_table(JOURNAL).map_err(storage)?;
    let mut outcomes = txn.open_table(OUTCOMES).map_err(storage)?;
    for row in journal.iter().map_err(storage)? {
        let (seq, record) = row.map_err(storage)?;
        let Ok(entry) = entry::decode(record.value()) else { continue };
        let Some(key) = crate::outcomes::key_of(&entry.kind, &entry.payload) else { continue };
        if outcomes.get(key.as_slice()).map_err(storage)?.is_none() {
            outcomes.insert(key.as_slice(), seq.value()).map_err(storage)?;
        }
    }
    Ok(())
}

/// Creates an empty database at `path` atomically (see [`Ledger::open`]).
/// Creators of the same path take turns under a lock on the directory;
/// one that finds the database made meanwhile returns at once.
fn create_database(path: &Path) -> Result<(), LedgerError> {
    let failed = |cause: redb::Error| LedgerError::CreateFailed { path: path.to_owned(), cause };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let _turn = lock_directory(dir, path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(".creating");
    let temp = dir.join(temp_name);
    // Left by a creator that crashed (the turn is ours, so none is at
    // work on it): it was never renamed into place, so it holds nothing.
    if let Err(e) = std::fs::remove_file(&temp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(failed(e.into()));
    }
    if let Err(cause) = build_database(&temp).and_then(|()| Ok(std::fs::rename(&temp, path)?)) {
        // Not at `path`, so nothing will open it; and should removing it
        // fail too, the next creator removes it first (above).
        std::fs::remove_file(&temp).ok();
        return Err(failed(cause));
    }
    // The database is complete and in place; only whether its name
    // survives a power cut is in doubt until the directory is synced.
    sync_directory(dir).map_err(storage)
}

/// Builds a complete, empty ledger database at `temp`, durably.
fn build_database(temp: &Path) -> Result<(), redb::Error> {
    let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(temp)?;
    let ledger = Ledger::over(db, temp);
    // A durable commit: redb syncs the file before it returns.
    ledger.write(|txn| create_tables(&txn.inner)).map_err(|e| match e {
        LedgerError::Storage(e) => e,
        other => redb::Error::Io(std::io::Error::other(other.to_string())),
    })?;
    drop(ledger);
    std::fs::File::open(temp)?.sync_all()?;
    Ok(())
}

/// Makes a rename in `dir` durable (the directory entry is data too).
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Waits (bounded) for an exclusive lock on `dir`, held while the guard
/// lives, so two processes never build the same database at once; a
/// crashed holder's lock ends with it. Where the directory cannot be
/// locked at all (another OS, some network file systems), creation goes
/// ahead unlocked: it is still atomic, and only two first runs at the same
/// instant could collide.
fn lock_directory(dir: &Path, path: &Path) -> Result<Option<std::fs::File>, LedgerError> {
    let Ok(handle) = std::fs::File::open(dir) else { return Ok(None) };
    let started = std::time::Instant::now();
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(Some(handle)),
            Err(std::fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= std::time::Duration::from_millis(CREATE_WAIT_MS_MAX) {
                    return Err(LedgerError::Busy(path.to_owned()));
                }
                std::thread::sleep(std::time::Duration::from_millis(CREATE_POLL_MS));
            }
            Err(std::fs::TryLockError::Error(_)) => return Ok(None),
        }
    }
}

fn decode_key_record(text: &str) -> Result<KeyRecord, LedgerError> {
    serde_json::from_str(text).map_err(|e| LedgerError::Corrupt {
        seq: 0,
        failure: VerifyFailure::Malformed(format!("key projection row: {e}")),
    })
}

pub(crate) fn read_head(
    table: &impl ReadableTable<&'static str, (u64, &'static [u8])>,
) -> Result<(u64, EntryHash), LedgerError> {
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
    checkpoints: Option<AutoCheckpoint>,
    /// Entries checked, encoded and hashed but not yet signed: signing is
    /// the costly part, so it happens once per transaction, on every core.
    staged: Vec<Staged>,
    /// The head including staged entries, once read.
    head: Option<(u64, EntryHash)>,
    keys: RefCell<KeyCache>,
    pub(crate) budget: BudgetCache,
    /// Whether budget postings go into `budget.batch` entries.
    batching: bool,
    /// Postings waiting to become one `budget.batch` entry.
    batch: Option<PostingBatch>,
}

/// Budget postings buffered for one `budget.batch` entry. The entry is
/// staged before any other entry of the transaction (and at the latest
/// when it is sealed), so the journal keeps the order things happened in.
struct PostingBatch {
    signer: Keypair,
    items: Vec<BatchItem>,
    bytes: usize,
    /// The latest posting's time: the entry's time.
    time_us: i64,
}

/// One buffered posting, its payload serialised. In a batch it is written
/// as `{"kind":…,"time_us":…,"payload":…}` (serde_json's own layout); a
/// lone posting is written as its own entry instead.
struct BatchItem {
    kind: &'static str,
    time_us: i64,
    payload: Vec<u8>,
}

/// The most bytes a batch item adds around its payload: the fixed text
/// (33 bytes), the longest budget kind and the longest i64.
const ITEM_FRAME_BYTES_MAX: usize = 33 + 16 + 20;

impl BatchItem {
    /// Its length in a batch, at most.
    fn bytes_max(&self) -> usize {
        self.payload.len() + ITEM_FRAME_BYTES_MAX
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        // `kind` is one of the budget's own names: nothing to escape.
        out.extend_from_slice(format!(r#"{{"kind":"{}","time_us":{},"payload":"#, self.kind, self.time_us).as_bytes());
        out.extend_from_slice(&self.payload);
        out.push(b'}');
    }
}

/// The most postings one `budget.batch` entry carries: a few signatures a
/// second cover the highest group-commit rates, and one entry stays well
/// under the payload limit.
pub const BATCH_POSTINGS_MAX: usize = 4096;
/// Room kept in a batch entry's payload for `{"postings":[…]}` itself.
const BATCH_FRAME_BYTES: usize = 64;

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Txn")
    }
}

/// What this transaction has read of the key projection: every entry is
/// authorized against it, and re-reading and re-parsing the same key row
/// for each of thousands of entries in one commit is wasted work.
#[derive(Debug, Default)]
struct KeyCache {
    keys: HashMap<[u8; 32], Option<KeyRecord>>,
    conductor: Option<Option<[u8; 32]>>,
}

/// The key book as the redb projection (read through the transaction's
/// cache, written through to both), for checks at append time.
struct RedbKeys<'a> {
    txn: &'a redb::WriteTransaction,
    cache: &'a RefCell<KeyCache>,
}

impl KeyStore for RedbKeys<'_> {
    type Error = LedgerError;
    fn get(&self, public: &[u8; 32]) -> Result<Option<KeyRecord>, LedgerError> {
        if let Some(hit) = self.cache.borrow().keys.get(public) {
            return Ok(hit.clone());
        }
        let table = self.txn.open_table(KEYS).map_err(storage)?;
        let row = table.get(public.as_slice()).map_err(storage)?;
        let record = row.map(|g| decode_key_record(g.value())).transpose()?;
        self.cache.borrow_mut().keys.insert(*public, record.clone());
        Ok(record)
    }
    fn put(&mut self, public: &[u8; 32], record: &KeyRecord) -> Result<(), LedgerError> {
        let text = serde_json::to_string(record)
            .map_err(|e| LedgerError::BadEntry(format!("key record does not serialise: {e}")))?;
        let mut table = self.txn.open_table(KEYS).map_err(storage)?;
        table.insert(public.as_slice(), text.as_str()).map_err(storage)?;
        self.cache.borrow_mut().keys.insert(*public, Some(record.clone()));
        Ok(())
    }
    fn conductor(&self) -> Result<Option<[u8; 32]>, LedgerError> {
        if let Some(hit) = self.cache.borrow().conductor {
            return Ok(hit);
        }
        let table = self.txn.open_table(META).map_err(storage)?;
        let row = table.get("conductor").map_err(storage)?;
        let conductor = row.and_then(|g| g.value().try_into().ok());
        self.cache.borrow_mut().conductor = Some(conductor);
        Ok(conductor)
    }
    fn set_conductor(&mut self, public: &[u8; 32]) -> Result<(), LedgerError> {
        let mut table = self.txn.open_table(META).map_err(storage)?;
        table.insert("conductor", public.as_slice()).map_err(storage)?;
        self.cache.borrow_mut().conductor = Some(Some(*public));
        Ok(())
    }
}

/// The ended tasks and decided gates as the redb projection, for the
/// exactly-once check at append time.
struct RedbOutcomes<'a> {
    txn: &'a redb::WriteTransaction,
}

impl crate::outcomes::OutcomeStore for RedbOutcomes<'_> {
    type Error = LedgerError;
    fn closed_at(&self, key: &crate::outcomes::SubjectKey) -> Result<Option<u64>, LedgerError> {
        let table = self.txn.open_table(OUTCOMES).map_err(storage)?;
        Ok(table.get(key.as_slice()).map_err(storage)?.map(|g| g.value()))
    }
    fn close(&mut self, key: &crate::outcomes::SubjectKey, seq: u64) -> Result<(), LedgerError> {
        let mut table = self.txn.open_table(OUTCOMES).map_err(storage)?;
        table.insert(key.as_slice(), seq).map_err(storage)?;
        Ok(())
    }
}

/// An entry hashed but not yet signed.
struct Staged {
    seq: u64,
    record: Vec<u8>,
    hash: EntryHash,
    signer: Seal,
    checkpoint: bool,
}

/// How a staged entry gets its signature at [`Txn::seal`].
enum Seal {
    /// Signed there with this key.
    Key(Keypair),
    /// Signed already by a [`RemoteKey`], and verified when staged.
    Given([u8; 64]),
    /// Captured for a [`RemoteKey`] to sign: the transaction must not
    /// commit, and sealing it fails.
    Captured,
}

/// Who signs an entry being staged: a key this process holds, or a
/// [`RemoteKey`] that captures the entry or supplies its signature.
#[derive(Clone, Copy)]
pub(crate) enum Signer<'a> {
    Held(&'a Keypair),
    Remote(&'a RemoteKey),
}

impl Signer<'_> {
    fn public(self) -> PublicKey {
        match self {
            Signer::Held(key) => key.public(),
            Signer::Remote(key) => key.public(),
        }
    }

    /// The role the key was issued for.
    pub(crate) fn role(self) -> Role {
        match self {
            Signer::Held(key) => key.role(),
            Signer::Remote(key) => key.role(),
        }
    }
}

impl<'a> From<&'a Keypair> for Signer<'a> {
    fn from(key: &'a Keypair) -> Self {
        Signer::Held(key)
    }
}

/// Below this many entries a batch is signed on the calling thread:
/// waking a helper costs more than signing a few entries (about 13 µs
/// each with AWS-LC). Above it the committing thread signs one share itself
/// and the helpers the rest (`crate::signing`): the group committer is the
/// serial part of a busy conductor, so its signing time is everyone's
/// latency. 16 instead of 64 raised `cargo xtask bench-engine`'s C=1,024
/// run from 3,337 to 3,773 tasks/s on a 2-core host.
const PARALLEL_SIGN_MIN: usize = 16;

impl Txn {
    /// The underlying transaction, for projections kept by other crates.
    pub fn redb(&self) -> &redb::WriteTransaction {
        &self.inner
    }

    /// Appends one entry signed by `signer` and returns its sequence number
    /// and hash. The entry is durable when the enclosing [`Ledger::write`]
    /// commits. The signer must be a key the journal has registered, in
    /// force, with the role the kind requires (see [`crate::rules`]); key
    /// events and checkpoints have their own methods.
    pub fn append(
        &mut self,
        signer: &Keypair,
        kind: &str,
        payload: &Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        refuse_reserved_kind(kind)?;
        require_object(kind, payload)?;
        self.append_one(signer, kind, payload, time_us)
    }

    /// [`Txn::append`] for a key this process does not hold (see
    /// [`crate::RemoteKey`]): with a capturing `key` the entry is checked,
    /// hashed and recorded in `key` for signing, and the transaction must
    /// then be rolled back; with a signed `key` it is written with the next
    /// given signature, which must be for exactly this entry and verify.
    /// The same kinds are refused as by [`Txn::append`].
    pub fn append_remote(
        &mut self,
        key: &RemoteKey,
        kind: &str,
        payload: &Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        refuse_reserved_kind(kind)?;
        require_object(kind, payload)?;
        self.stage(Signer::Remote(key), kind, payload, time_us)
    }

    /// Appends many entries by one signer, hashing them in order and
    /// signing them on every core; returns each entry's seq and hash.
    /// All are durable together when the transaction commits.
    pub fn append_batch(
        &mut self,
        signer: &Keypair,
        items: &[(&str, Value)],
        time_us: i64,
    ) -> Result<Vec<(u64, EntryHash)>, LedgerError> {
        let mut out = Vec::with_capacity(items.len());
        for (kind, payload) in items {
            refuse_reserved_kind(kind)?;
            require_object(kind, payload)?;
            out.push(self.stage(signer.into(), kind, payload, time_us)?);
        }
        Ok(out)
    }

    /// Writes `conductor.genesis`, entry 0, declaring `conductor` as the
    /// conductor key. `extra` fields (a JSON object) are recorded with it.
    pub fn genesis(
        &mut self,
        conductor: &Keypair,
        extra: Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        if conductor.role() != Role::Conductor {
            return Err(LedgerError::BadEntry("genesis must be signed by a conductor key".into()));
        }
        let public = conductor.public();
        let mut payload = object(extra)?;
        payload.insert("format".into(), json!(entry::FORMAT_VERSION));
        payload.insert("conductor_key".into(), json!(public.to_hex()));
        payload.insert("key_id".into(), json!(public.key_id().to_string()));
        self.append_one(conductor, rules::GENESIS, &Value::Object(payload), time_us)
    }

    /// Registers `key` with `role` (`key.registered`, signed by the
    /// conductor key in force). `extra` (a JSON object) says whose key it
    /// is, e.g. `{"mission": …, "agent": …}` or `{"name": "A. Reviewer"}`.
    pub fn register_key(
        &mut self,
        conductor: &Keypair,
        key: &PublicKey,
        role: Role,
        extra: Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        let mut payload = object(extra)?;
        payload.insert("public_key".into(), json!(key.to_hex()));
        payload.insert("key_id".into(), json!(key.key_id().to_string()));
        payload.insert("role".into(), json!(role.as_str()));
        self.append_one(conductor, rules::KEY_REGISTERED, &Value::Object(payload), time_us)
    }

    /// Revokes `key` (`key.revoked`): nothing it signs after this entry
    /// verifies.
    pub fn revoke_key(
        &mut self,
        conductor: &Keypair,
        key: &PublicKey,
        reason: &str,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        let payload = json!({"public_key": key.to_hex(), "key_id": key.key_id().to_string(), "reason": reason});
        self.append_one(conductor, rules::KEY_REVOKED, &payload, time_us)
    }

    /// Replaces `old` by `new` with the same role (`key.rotated`). To
    /// rotate the conductor key, `conductor` must be the old conductor key.
    pub fn rotate_key(
        &mut self,
        conductor: &Keypair,
        old: &PublicKey,
        new: &PublicKey,
        reason: &str,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        let payload = json!({"old_key": old.to_hex(), "new_key": new.to_hex(),
                             "new_key_id": new.key_id().to_string(), "reason": reason});
        self.append_one(conductor, rules::KEY_ROTATED, &payload, time_us)
    }

    /// Appends a `journal.checkpoint` now and returns it as a file an
    /// auditor can keep elsewhere.
    pub fn checkpoint(&mut self, conductor: &Keypair, time_us: i64) -> Result<Checkpoint, LedgerError> {
        self.flush_postings()?;
        let head = self.head()?;
        let payload = json!({"entries": head.0, "head": head.1.to_string()});
        let (seq, _) = self.stage(conductor.into(), rules::CHECKPOINT, &payload, time_us)?;
        self.seal()?;
        let journal = self.inner.open_table(JOURNAL).map_err(storage)?;
        let stored = journal.get(seq).map_err(storage)?.map(|g| g.value().to_vec());
        let stored = stored.ok_or_else(|| LedgerError::BadEntry("checkpoint was not written".into()))?;
        Checkpoint::from_record(stored)
            .map_err(|e| LedgerError::Corrupt { seq, failure: VerifyFailure::Malformed(e.to_string()) })
    }

    /// Journals a balance-changing budget posting, as its own entry or
    /// into the transaction's `budget.batch`; only the budget methods,
    /// which update the balances with it, call this. Either way a posting
    /// the journal would refuse (signer, size) is refused here, before the
    /// caller changes any balance. A remote key's posting is always its
    /// own entry: a batch is signed by one held key.
    pub(crate) fn append_budget(
        &mut self,
        signer: Signer<'_>,
        kind: &'static str,
        payload: &impl serde::Serialize,
        time_us: i64,
    ) -> Result<(), LedgerError> {
        let signer = match signer {
            Signer::Held(key) if self.batching && crate::budget::is_batchable(kind) => key,
            _ => return self.stage(signer, kind, payload, time_us).map(|_| ()),
        };
        let payload = serde_json::to_vec(payload)
            .map_err(|e| LedgerError::BadEntry(format!("payload does not serialise: {e}")))?;
        let item = BatchItem { kind, time_us, payload };
        if item.bytes_max() + BATCH_FRAME_BYTES > PAYLOAD_BYTES_MAX {
            return Err(LedgerError::BadEntry(format!(
                "posting of {} bytes exceeds the payload limit {PAYLOAD_BYTES_MAX}",
                item.bytes_max()
            )));
        }
        let full = self.batch.as_ref().is_some_and(|b| {
            b.signer.public() != signer.public()
                || b.items.len() >= BATCH_POSTINGS_MAX
                || b.bytes + item.bytes_max() + 1 + BATCH_FRAME_BYTES > PAYLOAD_BYTES_MAX
        });
        if full {
            self.flush_postings()?;
        }
        let batch = match self.batch.take() {
            Some(batch) => batch,
            None => {
                // The batch entry will take the seq the head has now
                // (anything staged first flushes it), so the signer can be
                // checked now: a refused signer fails its own posting.
                let (seq, prev) = self.head()?;
                let signer_bytes = signer.public().to_bytes();
                rules::admit(
                    &mut RedbKeys { txn: &self.inner, cache: &self.keys },
                    rules::Head { seq, prev: &prev, signer: &signer_bytes, kind: crate::budget::BATCH, payload: b"{}" },
                )?;
                PostingBatch { signer: signer.clone(), items: Vec::new(), bytes: 0, time_us }
            }
        };
        let mut batch = batch;
        batch.bytes += item.bytes_max() + 1;
        batch.time_us = batch.time_us.max(time_us);
        batch.items.push(item);
        self.batch = Some(batch);
        Ok(())
    }

    /// Stages the buffered postings as one `budget.batch` entry, or a
    /// lone posting as its own entry: a batch of one would only add bytes.
    fn flush_postings(&mut self) -> Result<(), LedgerError> {
        let Some(mut batch) = self.batch.take() else {
            return Ok(());
        };
        if batch.items.len() == 1 {
            let lone = batch.items.swap_remove(0);
            return self.stage_bytes(Signer::Held(&batch.signer), lone.kind, lone.payload, lone.time_us).map(|_| ());
        }
        // The payloads are serde_json's own output; only the items' frames
        // and the array around them are written here, so the payload is
        // `{"postings":[item,…]}`.
        let mut payload = Vec::with_capacity(batch.bytes + BATCH_FRAME_BYTES);
        payload.extend_from_slice(br#"{"postings":["#);
        for (i, item) in batch.items.iter().enumerate() {
            if i > 0 {
                payload.push(b',');
            }
            item.write_to(&mut payload);
        }
        payload.extend_from_slice(b"]}");
        self.stage_bytes(Signer::Held(&batch.signer), crate::budget::BATCH, payload, batch.time_us).map(|_| ())
    }

    fn append_one(
        &mut self,
        signer: &Keypair,
        kind: &str,
        payload: &Value,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        self.stage(signer.into(), kind, payload, time_us)
    }

    fn head(&mut self) -> Result<(u64, EntryHash), LedgerError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let table = self.inner.open_table(HEAD).map_err(storage)?;
        let head = read_head(&table)?;
        self.head = Some(head);
        Ok(head)
    }

    /// Checks, encodes and hashes one entry (and the automatic checkpoint
    /// after it, if one is due); it is signed and written by [`Txn::seal`].
    fn stage(
        &mut self,
        signer: Signer<'_>,
        kind: &str,
        payload: &impl serde::Serialize,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        let payload = serde_json::to_vec(payload)
            .map_err(|e| LedgerError::BadEntry(format!("payload does not serialise: {e}")))?;
        self.stage_bytes(signer, kind, payload, time_us)
    }

    /// [`Txn::stage`] for a payload already serialised.
    fn stage_bytes(
        &mut self,
        signer: Signer<'_>,
        kind: &str,
        payload: Vec<u8>,
        time_us: i64,
    ) -> Result<(u64, EntryHash), LedgerError> {
        if kind != crate::budget::BATCH {
            // Buffered postings happened before this entry.
            self.flush_postings()?;
        }
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
        let (seq, prev) = self.head()?;
        let signer_bytes = signer.public().to_bytes();
        rules::admit(
            &mut RedbKeys { txn: &self.inner, cache: &self.keys },
            rules::Head { seq, prev: &prev, signer: &signer_bytes, kind, payload: &payload },
        )?;
        let record = entry::canonical_bytes(seq, &prev, time_us, &signer_bytes, kind, &payload);
        let hash = entry::hash_of(&record);
        let checkpoint = kind == rules::CHECKPOINT;
        let signer = match signer {
            Signer::Held(key) => Seal::Key(key.clone()),
            Signer::Remote(key) => match key.take(seq, kind, time_us, &record, hash)? {
                Remote::Captured => Seal::Captured,
                Remote::Signed(signature) => Seal::Given(signature),
            },
        };
        // Last before staging: a refusal after it would leave the outcome
        // recorded for an entry that was never staged.
        crate::outcomes::admit(&mut RedbOutcomes { txn: &self.inner }, seq, kind, &payload)?;
        self.staged.push(Staged { seq, record, hash, signer, checkpoint });
        self.head = Some((seq + 1, hash));
        if let Some(auto) = self.checkpoints.clone() {
            // After a conductor rotation the ledger's checkpoint key is no
            // longer in force; skip until it is reopened with the new key
            // rather than refuse the caller's entry.
            let due = !checkpoint && (seq + 1) % auto.every == 0;
            let keys = RedbKeys { txn: &self.inner, cache: &self.keys };
            if due && keys.conductor()? == Some(auto.signer.public().to_bytes()) {
                let payload = json!({"entries": seq + 1, "head": hash.to_string()});
                self.stage(Signer::Held(&auto.signer), rules::CHECKPOINT, &payload, time_us)?;
            }
        }
        Ok((seq, hash))
    }

    /// Signs the staged entries (on every core when there are many) and
    /// writes them and the new head. Refuses, writing nothing, if any entry
    /// was captured for a remote key rather than signed.
    fn seal(&mut self) -> Result<(), LedgerError> {
        if let Some(captured) = self.staged.iter().find(|s| matches!(s.signer, Seal::Captured)) {
            return Err(RemoteSignError::Unsigned { seq: captured.seq }.into());
        }
        self.flush_postings()?;
        self.budget.write_back(&self.inner)?;
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let sign = |chunk: &mut [Staged]| {
            for s in chunk {
                let sig = match &s.signer {
                    Seal::Key(key) => key.sign(&entry::signed_message(&s.hash)).to_bytes(),
                    Seal::Given(signature) => *signature,
                    // Refused above: such an entry is never written.
                    Seal::Captured => continue,
                };
                s.record.extend_from_slice(&s.hash.0);
                s.record.extend_from_slice(&sig);
            }
        };
        let staged = crate::signing::in_shares(staged, PARALLEL_SIGN_MIN, sign).map_err(|_| LedgerError::Io {
            what: "signing the commit's entries",
            source: std::io::Error::other("a signing helper panicked; nothing was committed"),
        })?;
        let mut journal = self.inner.open_table(JOURNAL).map_err(storage)?;
        let mut checkpoints = self.inner.open_table(CHECKPOINTS).map_err(storage)?;
        for s in &staged {
            journal.insert(s.seq, s.record.as_slice()).map_err(storage)?;
            if s.checkpoint {
                checkpoints.insert(s.seq, ()).map_err(storage)?;
            }
        }
        if let Some((next, hash)) = self.head {
            let mut head_table = self.inner.open_table(HEAD).map_err(storage)?;
            head_table.insert("head", (next, hash.0.as_slice())).map_err(storage)?;
        }
        Ok(())
    }
}

/// Every payload of format 1 is a JSON object (`docs/journal-format.md`,
/// section 1); the entries this crate writes itself are built as objects.
fn require_object(kind: &str, payload: &Value) -> Result<(), LedgerError> {
    if !payload.is_object() {
        return Err(LedgerError::BadEntry(format!("the payload of `{kind}` must be a JSON object")));
    }
    Ok(())
}

fn refuse_reserved_kind(kind: &str) -> Result<(), LedgerError> {
    if crate::budget::is_posting(kind) {
        return Err(LedgerError::BadEntry(format!(
            "`{kind}` changes balances and is written only by the budget methods (reserve, settle, …)"
        )));
    }
    if matches!(
        kind,
        rules::GENESIS | rules::KEY_REGISTERED | rules::KEY_REVOKED | rules::KEY_ROTATED | rules::CHECKPOINT
    ) {
        return Err(LedgerError::BadEntry(format!(
            "`{kind}` is written only by its own method (genesis, register_key, revoke_key, rotate_key, checkpoint)"
        )));
    }
    Ok(())
}

fn object(extra: Value) -> Result<serde_json::Map<String, Value>, LedgerError> {
    match extra {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(serde_json::Map::new()),
        other => Err(LedgerError::BadEntry(format!("extra fields must be a JSON object, not {other}"))),
    }
}

/// This host's cores, asked once: `available_parallelism` reads the
/// cgroup's files on every call, which cost about 6% of a task's CPU when
/// every commit asked (`cargo xtask bench-engine`, issue #19).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
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

    fn with_genesis(ledger: &Ledger) -> Keypair {
        let key = Keypair::generate(Role::Conductor);
        ledger.write(|t| t.genesis(&key, json!({"note": "test"}), 1)).expect("genesis");
        key
    }

    #[test]
    fn appends_chain_and_survive_reopen() {
        let (ledger, path) = temp_ledger("chain");
        let key = with_genesis(&ledger);
        let (a, ha) = ledger.write(|t| t.append(&key, "mission.declared", &json!({"n": 1}), 10)).expect("append");
        let (b, _) = ledger.write(|t| t.append(&key, "task.started", &json!({"n": 2}), 11)).expect("append");
        assert_eq!((a, b), (1, 2));
        drop(ledger);
        let ledger = Ledger::open(&path).expect("reopen");
        let entries = ledger.entries(0, 10).expect("entries");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].prev, ha);
        assert_eq!(ledger.head().expect("head").0, 3);
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn failed_closure_writes_nothing() {
        let (ledger, path) = temp_ledger("rollback");
        let key = with_genesis(&ledger);
        let result: Result<(), LedgerError> = ledger.write(|t| {
            t.append(&key, "task.started", &json!({}), 1)?;
            Err(LedgerError::BadEntry("caller changed its mind".into()))
        });
        assert!(result.is_err());
        assert_eq!(ledger.head().expect("head").0, 1);
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn bad_kinds_and_a_second_open_are_refused() {
        let (ledger, path) = temp_ledger("refusals");
        let key = with_genesis(&ledger);
        assert!(ledger.write(|t| t.append(&key, "Task Started", &json!({}), 1)).is_err());
        assert!(ledger.write(|t| t.append(&key, "key.registered", &json!({}), 1)).is_err());
        assert!(ledger.write(|t| t.append(&key, "made.up", &json!({}), 1)).is_err());
        assert!(matches!(Ledger::open(&path), Err(LedgerError::Busy(_))));
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn appends_are_checked_against_the_key_rules() {
        let (ledger, path) = temp_ledger("rules");
        let stranger = Keypair::generate(Role::Conductor);
        // Nothing but genesis may come first.
        assert!(ledger.write(|t| t.append(&stranger, "task.started", &json!({}), 1)).is_err());
        let conductor = with_genesis(&ledger);
        let agent = Keypair::generate(Role::Agent);
        let reviewer = Keypair::generate(Role::Reviewer);
        // Unregistered keys may not sign.
        let refused = ledger.write(|t| t.append(&agent, "host.log", &json!({}), 2));
        assert!(matches!(refused, Err(LedgerError::Unauthorized(VerifyFailure::UnknownKey(_)))));
        ledger
            .write(|t| t.register_key(&conductor, &agent.public(), Role::Agent, json!({"agent": "a"}), 2))
            .expect("register agent");
        ledger
            .write(|t| t.register_key(&conductor, &reviewer.public(), Role::Reviewer, json!({}), 2))
            .expect("register reviewer");
        ledger.write(|t| t.append(&agent, "host.log", &json!({}), 3)).expect("agent logs");
        // Wrong role for the kind.
        let wrong = ledger.write(|t| t.append(&agent, "gate.decided", &json!({"gate_id": "g1"}), 3));
        assert!(matches!(wrong, Err(LedgerError::Unauthorized(VerifyFailure::WrongRole { .. }))));
        ledger.write(|t| t.append(&reviewer, "gate.decided", &json!({"gate_id": "g1"}), 3)).expect("reviewer decides");
        // A second registration, and registering a conductor, are refused.
        assert!(ledger.write(|t| t.register_key(&conductor, &agent.public(), Role::Agent, json!({}), 4)).is_err());
        let other = Keypair::generate(Role::Conductor);
        assert!(ledger.write(|t| t.register_key(&conductor, &other.public(), Role::Conductor, json!({}), 4)).is_err());
        // Revocation ends a key.
        ledger.write(|t| t.revoke_key(&conductor, &reviewer.public(), "left", 5)).expect("revoke");
        let revoked = ledger.write(|t| t.append(&reviewer, "gate.decided", &json!({"gate_id": "g2"}), 6));
        assert!(matches!(revoked, Err(LedgerError::Unauthorized(VerifyFailure::RevokedKey { .. }))));
        // Rotation hands the role on.
        let agent2 = Keypair::generate(Role::Agent);
        ledger.write(|t| t.rotate_key(&conductor, &agent.public(), &agent2.public(), "rotate", 7)).expect("rotate");
        assert!(ledger.write(|t| t.append(&agent, "host.log", &json!({}), 8)).is_err());
        ledger.write(|t| t.append(&agent2, "host.log", &json!({}), 8)).expect("new agent key signs");
        // Conductor rotation: the old conductor key stops, the new one works.
        let conductor2 = Keypair::generate(Role::Conductor);
        ledger
            .write(|t| t.rotate_key(&conductor, &conductor.public(), &conductor2.public(), "yearly", 9))
            .expect("rotate conductor");
        assert!(ledger.write(|t| t.append(&conductor, "task.started", &json!({}), 10)).is_err());
        ledger.write(|t| t.append(&conductor2, "task.started", &json!({}), 10)).expect("new conductor");
        let report = ledger.verify().expect("verifies");
        assert_eq!(report.keys.len(), 5);
        assert_eq!(ledger.keys().expect("keys"), report.keys, "projection equals what verify rebuilt");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn checkpoints_are_automatic_and_on_demand_and_pin_the_head() {
        let (mut ledger, path) = temp_ledger("checkpoints");
        let conductor = Arc::new(with_genesis(&ledger));
        ledger.checkpoint_every(conductor.clone(), 10);
        let items: Vec<(&str, Value)> = (0..25).map(|i| ("task.started", json!({"i": i}))).collect();
        let written = ledger.write(|t| t.append_batch(&conductor, &items, 5)).expect("batch");
        assert_eq!(written.len(), 25);
        // Entries 10 and 20 are automatic checkpoints.
        let kinds: Vec<String> = ledger.entries(0, 100).expect("entries").into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.iter().filter(|k| *k == "journal.checkpoint").count(), 2);
        let held = ledger.write(|t| t.checkpoint(&conductor, 6)).expect("checkpoint");
        let parsed = Checkpoint::parse(&held.to_text()).expect("file round trip");
        assert_eq!(parsed, held);
        assert_eq!(ledger.latest_checkpoint().expect("latest"), Some(held.clone()));
        let report = ledger.verify_against(&[held]).expect("consistent");
        assert_eq!(report.checkpoints_matched, 1);
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_conductor_rotation_never_collides_with_an_automatic_checkpoint() {
        let (mut ledger, path) = temp_ledger("rotate-checkpoint");
        let c1 = Arc::new(with_genesis(&ledger));
        ledger.checkpoint_every(c1.clone(), 4);
        ledger.write(|t| t.append(&c1, "task.started", &json!({}), 2)).expect("1");
        ledger.write(|t| t.append(&c1, "task.started", &json!({}), 2)).expect("2");
        // Entry 3 is the rotation, and a checkpoint would be due after it.
        let c2 = Keypair::generate(Role::Conductor);
        ledger.write(|t| t.rotate_key(&c1, &c1.public(), &c2.public(), "r", 3)).expect("rotation");
        for _ in 0..6 {
            ledger.write(|t| t.append(&c2, "task.started", &json!({}), 4)).expect("new key appends");
        }
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn several_held_checkpoints_at_one_seq_must_all_match() {
        let (ledger, path) = temp_ledger("held-twice");
        let c = with_genesis(&ledger);
        let real = ledger.write(|t| t.checkpoint(&c, 2)).expect("checkpoint");
        let (other, other_path) = temp_ledger("held-twice-other");
        let c_other = with_genesis(&other);
        let foreign = other.write(|t| t.checkpoint(&c_other, 2)).expect("checkpoint");
        assert_eq!(real.seq(), foreign.seq());
        for held in [[real.clone(), foreign.clone()], [foreign, real]] {
            assert!(ledger.verify_against(&held).is_err(), "a conflicting held checkpoint fails in any order");
        }
        std::fs::remove_file(path).expect("cleanup");
        std::fs::remove_file(other_path).expect("cleanup");
    }
}

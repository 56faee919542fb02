//! Verification: one streaming verifier for the database and for exports.
//!
//! Entries are checked in order for everything but their signatures
//! (framing, sequence, hash, chain link, signer authorization, budget
//! postings, exactly-once outcomes, delegation links, held checkpoints); signatures are
//! collected and checked in windows with batch verification on every core.
//! When a batch fails, its entries are checked one by one with strict
//! verification to name the first bad one, and the earliest failure of
//! either kind is what is reported.

use std::collections::{BTreeMap, HashMap};

use identity::{KeyId, PublicKey, Signature};
use redb::ReadableTable;

use crate::budget::{self, Account, BudgetBook};
use crate::checkpoint::Checkpoint;
use crate::entry::{self, Entry, EntryHash};
use crate::error::{VerifyError, VerifyFailure, storage};
use crate::journal::{HEAD, JOURNAL, Ledger, read_head};
use crate::links::LinkBook;
use crate::outcomes::{self, OutcomeBook};
use crate::rules::{self, KeyBook, KeyRecord};

/// Signatures per batch-verification call. Larger batches amortise more
/// (1024 verified ~25% faster per signature than 128 here) but cost more
/// to re-check one by one when a batch fails, which only tampering causes.
const BATCH: usize = 1024;
/// Signatures gathered before a parallel flush: enough to keep every core
/// busy, few enough to bound memory on a journal of any length.
const WINDOW: usize = 16 * 1024;

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry (zeros when empty).
    pub head: EntryHash,
    /// Distinct signers seen, in first-seen order.
    pub signers: Vec<KeyId>,
    /// Every key the journal introduced, in order, with its fate.
    pub keys: Vec<KeyRecord>,
    /// Held checkpoints the journal was found consistent with.
    pub checkpoints_matched: usize,
    /// Every budget account as the journal's postings leave it.
    pub budget: Vec<(String, Account)>,
}

struct PendingSig {
    seq: u64,
    key: PublicKey,
    hash: EntryHash,
    signature: [u8; 64],
}

/// Checks entries pushed in order; see the module docs.
pub(crate) struct Verifier {
    book: KeyBook,
    budget: BudgetBook,
    /// Every ended task and decided gate so far (see [`OutcomeBook`] for
    /// its cost).
    outcomes: OutcomeBook,
    /// Open delegations and their children (see [`LinkBook`] for its cost).
    links: LinkBook,
    next: u64,
    prev: EntryHash,
    pending: Vec<PendingSig>,
    /// Held checkpoints by seq; several may name one seq, and all must match.
    held: BTreeMap<u64, Vec<EntryHash>>,
    matched: usize,
    signers: Vec<KeyId>,
    key_cache: HashMap<[u8; 32], PublicKey>,
}

impl Verifier {
    pub fn new(held: &[Checkpoint]) -> Self {
        Verifier {
            book: KeyBook::default(),
            budget: BudgetBook::default(),
            outcomes: OutcomeBook::default(),
            links: LinkBook::default(),
            next: 0,
            prev: EntryHash::default(),
            pending: Vec::new(),
            held: held.iter().fold(BTreeMap::new(), |mut map, c| {
                map.entry(c.seq()).or_insert_with(Vec::new).push(c.hash());
                map
            }),
            matched: 0,
            signers: Vec::new(),
            key_cache: HashMap::new(),
        }
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Checks the next record. `stored_seq` is the container's own idea of
    /// its position (the database key), if it has one.
    pub fn push(&mut self, stored_seq: Option<u64>, record: &[u8]) -> Result<(), VerifyError> {
        let at = self.next;
        if let Err(failure) = self.structural(stored_seq, record) {
            return Err(self.fail(at, failure));
        }
        if self.pending.len() >= WINDOW {
            self.flush()?;
        }
        Ok(())
    }

    /// Reports `failure` at `seq` unless an earlier signature is bad.
    pub fn fail(&mut self, seq: u64, failure: VerifyFailure) -> VerifyError {
        match self.flush() {
            Err(earlier) => earlier,
            Ok(()) => VerifyError::Bad { seq, failure },
        }
    }

    /// Checks the remaining signatures and the held checkpoints beyond the
    /// end, and reports.
    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        self.finish_with_budget().map(|(report, _)| report)
    }

    /// As [`Verifier::finish`], also returning the replayed budget.
    pub fn finish_with_budget(mut self) -> Result<(VerifyReport, BudgetBook), VerifyError> {
        self.flush()?;
        if let Some((&seq, _)) = self.held.range(self.next..).next() {
            return Err(VerifyError::Bad {
                seq: self.next,
                failure: VerifyFailure::Truncated { expected: seq + 1, found: self.next },
            });
        }
        if self.next == 0 {
            // Nothing to vouch for: a journal always starts with genesis.
            return Err(VerifyError::Bad { seq: 0, failure: VerifyFailure::Empty });
        }
        let mut keys: Vec<KeyRecord> = self.book.records().cloned().collect();
        keys.sort_by_key(|k| k.registered_seq);
        let report = VerifyReport {
            entries: self.next,
            head: self.prev,
            signers: self.signers,
            keys,
            checkpoints_matched: self.matched,
            budget: self.budget.accounts.iter().map(|(n, a)| (n.clone(), a.clone())).collect(),
        };
        Ok((report, self.budget))
    }

    fn structural(&mut self, stored_seq: Option<u64>, record: &[u8]) -> Result<(), VerifyFailure> {
        let expected = self.next;
        let order = |found: u64| {
            if found > expected {
                VerifyFailure::Missing { expected, found }
            } else {
                VerifyFailure::OutOfOrder { expected, found }
            }
        };
        if let Some(found) = stored_seq.filter(|s| *s != expected) {
            return Err(order(found));
        }
        let entry: Entry = entry::decode(record)?;
        if entry.seq != expected {
            return Err(order(entry.seq));
        }
        entry::check_hash(&entry)?;
        if entry.prev != self.prev {
            return Err(VerifyFailure::BrokenLink);
        }
        rules::admit(&mut self.book, rules::Head::from(&entry))?;
        if budget::is_posting(&entry.kind) {
            self.budget.apply_posting(&entry.kind, &entry.payload, entry.time_us).map_err(VerifyFailure::BudgetRule)?;
        }
        outcomes::admit(&mut self.outcomes, entry.seq, &entry.kind, &entry.payload)?;
        self.links.admit(entry.seq, &entry.kind, &entry.payload)?;
        if let Some(held) = self.held.get(&entry.seq) {
            if let Some(other) = held.iter().find(|h| **h != entry.hash) {
                return Err(VerifyFailure::CheckpointMismatch { expected: *other });
            }
            self.matched += held.len();
        }
        let key = match self.key_cache.get(&entry.signer) {
            Some(key) => *key,
            None => {
                let key = PublicKey::from_bytes(&entry.signer).map_err(|_| VerifyFailure::BadSigner)?;
                self.key_cache.insert(entry.signer, key);
                self.signers.push(key.key_id());
                key
            }
        };
        self.pending.push(PendingSig { seq: entry.seq, key, hash: entry.hash, signature: entry.signature });
        self.prev = entry.hash;
        self.next += 1;
        Ok(())
    }

    /// Verifies every pending signature, in batches spread over the cores.
    fn flush(&mut self) -> Result<(), VerifyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let threads = crate::journal::cores();
        let per_thread = pending.len().div_ceil(threads).div_ceil(BATCH) * BATCH;
        let first_bad = if threads == 1 || pending.len() <= BATCH {
            first_bad_signature(&pending)
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> =
                    pending.chunks(per_thread).map(|part| scope.spawn(move || first_bad_signature(part))).collect();
                // Parts are in order, so the first part with a bad
                // signature holds the earliest one. A worker that panicked
                // counts as a failure, never as success.
                workers.into_iter().map(|w| w.join().unwrap_or(Some(0))).find_map(|bad| bad)
            })
        };
        match first_bad {
            None => Ok(()),
            Some(seq) => Err(VerifyError::Bad { seq, failure: VerifyFailure::BadSignature }),
        }
    }
}

/// The seq of the first entry whose signature fails, if any.
fn first_bad_signature(sigs: &[PendingSig]) -> Option<u64> {
    for chunk in sigs.chunks(BATCH) {
        let messages: Vec<Vec<u8>> = chunk.iter().map(|p| entry::signed_message(&p.hash)).collect();
        let items: Vec<(PublicKey, &[u8], Signature)> = chunk
            .iter()
            .zip(&messages)
            .map(|(p, m)| (p.key, m.as_slice(), Signature::from_bytes(p.signature)))
            .collect();
        match identity::verify_batch(&items) {
            Ok(()) => {}
            // verify_batch names the first item that fails strict
            // verification; anything else fails the whole chunk, never
            // passes it.
            Err(identity::IdentityError::BadSignatureInBatch { index, .. }) => {
                return Some(chunk.get(index).map_or(chunk[0].seq, |p| p.seq));
            }
            Err(_) => return Some(chunk[0].seq),
        }
    }
    None
}

impl Ledger {
    /// Verifies the whole journal in the database (see [`Verifier`]), then
    /// that the journal ends where its recorded head says.
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        self.verify_against(&[])
    }

    /// As [`Ledger::verify`], and the journal must also be consistent with
    /// every held checkpoint (a shorter or rewritten journal fails).
    pub fn verify_against(&self, held: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
        verify_snapshot(&self.read()?, held)
    }
}

/// Every entry of the journal at `path`, in order, read without writing
/// (the database is opened read-only). An entry that does not decode is an
/// error naming its sequence number; nothing is skipped or repaired.
pub fn read_journal(path: &std::path::Path) -> Result<Vec<Entry>, crate::LedgerError> {
    let db = crate::journal::open_read_only(path)?;
    let read = db.begin_read().map_err(storage)?;
    let journal = read.open_table(JOURNAL).map_err(storage)?;
    let mut out = Vec::new();
    for row in journal.iter().map_err(storage)? {
        let (seq, record) = row.map_err(storage)?;
        let entry = crate::entry::decode(record.value())
            .map_err(|failure| crate::LedgerError::Corrupt { seq: seq.value(), failure })?;
        out.push(entry);
    }
    Ok(out)
}

/// Calls `each` with every entry of the journal at `path`, in order, one
/// at a time, so memory stays flat however long the journal is; read-only
/// like [`read_journal`]. `each` returns `Ok(false)` to stop early.
pub fn scan_journal<E: From<crate::LedgerError>>(
    path: &std::path::Path,
    mut each: impl FnMut(Entry) -> Result<bool, E>,
) -> Result<(), E> {
    let db = crate::journal::open_read_only(path)?;
    let read = db.begin_read().map_err(storage)?;
    let journal = read.open_table(JOURNAL).map_err(storage)?;
    for row in journal.iter().map_err(storage)? {
        let (seq, record) = row.map_err(storage)?;
        let entry = crate::entry::decode(record.value())
            .map_err(|failure| crate::LedgerError::Corrupt { seq: seq.value(), failure })?;
        if !each(entry)? {
            break;
        }
    }
    Ok(())
}

/// Verifies the journal in the database file at `path` without writing to
/// it: the file is opened read-only, so evidence on write-protected media
/// can be checked, and nothing an auditor runs can change it.
pub fn verify_database(path: &std::path::Path, held: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
    let db = crate::journal::open_read_only(path)?;
    let read = db.begin_read().map_err(storage)?;
    verify_snapshot(&read, held)
}

fn verify_snapshot(read: &redb::ReadTransaction, held: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
    let journal = read.open_table(JOURNAL).map_err(storage)?;
    let head = read.open_table(HEAD).map_err(storage)?;
    let mut verifier = Verifier::new(held);
    for row in journal.iter().map_err(storage)? {
        let (key, record) = match row {
            Ok(row) => row,
            Err(e) => {
                let at = verifier.next_seq();
                return Err(verifier.fail(at, VerifyFailure::Malformed(format!("unreadable record: {e}"))));
            }
        };
        verifier.push(Some(key.value()), record.value())?;
    }
    let (recorded_next, recorded_hash) = match read_head(&head) {
        Ok(head) => head,
        Err(e) => {
            let at = verifier.next_seq();
            return Err(verifier.fail(at, VerifyFailure::Malformed(e.to_string())));
        }
    };
    let found = verifier.next_seq();
    if recorded_next != found {
        let failure = VerifyFailure::Truncated { expected: recorded_next, found };
        return Err(verifier.fail(found.min(recorded_next), failure));
    }
    let (report, budget) = verifier.finish_with_budget()?;
    if recorded_hash != report.head {
        return Err(VerifyError::Bad { seq: found.saturating_sub(1), failure: VerifyFailure::BrokenLink });
    }
    // Balances are a projection: recompute them from the postings and
    // require the database's tables to agree.
    budget.compare(read).map_err(|why| VerifyError::Bad {
        seq: found.saturating_sub(1),
        failure: VerifyFailure::ProjectionDiffers(why),
    })?;
    Ok(report)
}

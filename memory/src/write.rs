//! Writes: assert, supersede, retract, erase. Each operation first reads
//! and plans everything it will write (and checks the space's limits),
//! then writes, so a refusal leaves the transaction untouched.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::FactId;
use crate::codec::{
    self, OPEN, POSTING_BYTES, Posting, Record, check_interval, check_name, check_source, check_value, decode_key,
    decode_record, encode_record, fact_key, posting_key, prefix, prefix_end, time_bytes,
};
use crate::crypt::{self, SubjectKey};
use crate::error::{MemoryError, corrupt, storage};
use crate::tables::{CURRENT, ERASED, HISTORY, IDS, KEYS, META, SPACES, SUBJECT_SPACES, WORDS_CURRENT, WORDS_HISTORY};

/// Most fact versions one space may hold (history included, since it is
/// never deleted). Far above a mission's working memory, low enough that
/// scans of one space stay in memory-sized territory.
pub const SPACE_FACTS_MAX: u64 = 4 << 20;
/// Most bytes one space may hold: keys, records and word postings, as
/// written when each version was recorded. 1 GiB: a disk-sized bound no
/// agent reaches by honest use.
pub const SPACE_BYTES_MAX: u64 = 1 << 30;

/// Per-space limits for one [`Writer`]. The conductor passes its own
/// (lower) limits per mission; they can only lower [`Limits::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most fact versions in the space.
    pub facts: u64,
    /// Most stored bytes in the space.
    pub bytes: u64,
}

impl Limits {
    /// The crate's own ceiling.
    pub const MAX: Limits = Limits { facts: SPACE_FACTS_MAX, bytes: SPACE_BYTES_MAX };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::MAX
    }
}

/// A fact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFact {
    /// The space it is recorded in (e.g. `mission:<uuid>`, `precedent`).
    pub space: String,
    pub subject: String,
    pub predicate: String,
    /// Stored encrypted under the subject's key.
    pub value: String,
    /// Where the fact came from (a journal entry, a document id). Stored in
    /// clear and not shredded by erasure: a reference, not content.
    pub source: Option<String>,
    /// Unix µs from which the fact holds in the world (inclusive).
    pub valid_from: i64,
    /// Unix µs at which it stops holding (exclusive); `None`: until further notice.
    pub valid_to: Option<i64>,
}

/// A valid-time interval [from, to); `to: None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub from: i64,
    pub to: Option<i64>,
}

/// A correction of one version ([`Writer::supersede`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub value: String,
    pub source: Option<String>,
    /// The corrected valid interval; `None` keeps the corrected version's.
    pub valid: Option<Interval>,
}

/// What a write did, for the journal entry that records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The version recorded (assert, supersede); `None` for a retraction.
    pub id: Option<FactId>,
    /// Versions no longer believed from this transaction time on, in key order.
    pub superseded: Vec<FactId>,
    /// Re-recorded parts of superseded versions outside the written
    /// interval (same value, new ids), in key order.
    pub remainders: Vec<FactId>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Erasure {
    /// Versions of the subject whose values are now unreadable.
    pub versions: u64,
    /// Word postings deleted.
    pub postings: u64,
    /// Whether the subject had already been erased (nothing was done).
    pub already: bool,
    /// Whether the subject had a key to delete: it had facts, or values
    /// sealed with [`crate::seal`]. `false`: memory never heard of it.
    pub keyed: bool,
}

/// Usage and word statistics of one space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SpaceStats {
    /// Versions stored (counted against [`Limits::facts`]).
    pub versions: u64,
    /// Bytes stored (counted against [`Limits::bytes`]).
    pub bytes: u64,
    /// Current versions with word postings (BM25's document count).
    pub indexed: u64,
    /// Words in those versions (BM25's average length).
    pub indexed_words: u64,
}

impl SpaceStats {
    pub(crate) fn decode(bytes: &[u8]) -> Result<SpaceStats, MemoryError> {
        if bytes.len() != 32 {
            return Err(corrupt("space statistics do not decode"));
        }
        let at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Ok(SpaceStats { versions: at(0), bytes: at(1), indexed: at(2), indexed_words: at(3) })
    }

    fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, n) in [self.versions, self.bytes, self.indexed, self.indexed_words].iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
        }
        out
    }
}

type Words = (BTreeMap<String, u16>, u16);
/// A stored (fact key, record) pair.
type Row = (Vec<u8>, Vec<u8>);

struct Tables<'t> {
    current: Table<'t, &'static [u8], &'static [u8]>,
    history: Table<'t, &'static [u8], &'static [u8]>,
    ids: Table<'t, u64, &'static [u8]>,
    words_current: Table<'t, &'static [u8], &'static [u8]>,
    words_history: Table<'t, &'static [u8], &'static [u8]>,
    keys: Table<'t, &'static str, &'static [u8]>,
    erased: Table<'t, &'static str, i64>,
    subject_spaces: Table<'t, &'static [u8], ()>,
    spaces: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, i64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, MemoryError> {
        Ok(Tables {
            current: txn.open_table(CURRENT).map_err(storage)?,
            history: txn.open_table(HISTORY).map_err(storage)?,
            ids: txn.open_table(IDS).map_err(storage)?,
            words_current: txn.open_table(WORDS_CURRENT).map_err(storage)?,
            words_history: txn.open_table(WORDS_HISTORY).map_err(storage)?,
            keys: txn.open_table(KEYS).map_err(storage)?,
            erased: txn.open_table(ERASED).map_err(storage)?,
            subject_spaces: txn.open_table(SUBJECT_SPACES).map_err(storage)?,
            spaces: txn.open_table(SPACES).map_err(storage)?,
            meta: txn.open_table(META).map_err(storage)?,
        })
    }

    fn meta(&self, name: &str) -> Result<i64, MemoryError> {
        Ok(self.meta.get(name).map_err(storage)?.map(|g| g.value()).unwrap_or(0))
    }

    fn stats(&self, space: &str) -> Result<SpaceStats, MemoryError> {
        match self.spaces.get(space).map_err(storage)? {
            Some(g) => SpaceStats::decode(g.value()),
            None => Ok(SpaceStats::default()),
        }
    }

    /// The fact key of a version id.
    fn locate(&self, id: u64) -> Result<Option<Vec<u8>>, MemoryError> {
        Ok(self.ids.get(id).map_err(storage)?.map(|g| g.value().to_vec()))
    }

    /// The words of a stored version, when its subject still has a key
    /// (an erased subject's versions have no postings left).
    fn words_of(&self, key: Option<&SubjectKey>, fact_key: &[u8], record: &[u8]) -> Result<Option<Words>, MemoryError> {
        let Some(subject_key) = key else { return Ok(None) };
        let k = decode_key(fact_key)?;
        let r = decode_record(record)?;
        let ad = crypt::fact_ad(k.space, k.subject, k.predicate);
        let value = zeroize::Zeroizing::new(crypt::open_value(subject_key, &ad, r.sealed)?);
        Ok(Some(codec::terms(&value)))
    }
}

/// A version about to be written, fully encoded, so its cost is known
/// before anything is stored.
struct Planned {
    id: u64,
    key: Vec<u8>,
    record: Vec<u8>,
    postings: Vec<(Vec<u8>, [u8; POSTING_BYTES])>,
    words: Option<u16>,
}

impl Planned {
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u64,
        (space, subject, predicate): (&str, &str, &str),
        valid_from: i64,
        valid_to: i64,
        recorded_at: i64,
        source: Option<&str>,
        sealed: &[u8],
        words: Option<&Words>,
    ) -> Planned {
        let key = fact_key(space, subject, predicate, valid_from, id);
        let record = encode_record(&Record { recorded_at, valid_to, superseded_at: OPEN, source, sealed });
        let postings = words
            .map(|(counts, len)| {
                counts
                    .iter()
                    .map(|(term, tf)| {
                        let posting =
                            Posting { tf: *tf, len: *len, valid_from, valid_to, recorded_at, superseded_at: OPEN };
                        (posting_key(term, space, id), posting.encode())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Planned { id, key, record, postings, words: words.map(|(_, len)| *len) }
    }

    /// Bytes counted against the space: the fact row, its id row and its postings.
    fn cost(&self) -> u64 {
        let rows = 2 * self.key.len() + 1 + 8 + self.record.len();
        let postings: usize = self.postings.iter().map(|(k, _)| k.len() + POSTING_BYTES).sum();
        (rows + postings) as u64
    }
}

/// A current version about to be superseded.
struct Retiring {
    id: u64,
    key: Vec<u8>,
    record: Vec<u8>,
    words: Option<Words>,
}

/// Writes to memory at one transaction time, inside the caller's redb
/// transaction (so a fact and the journal entry recording it commit
/// together). Transaction time never goes backwards: [`Writer::new`]
/// refuses a time before the last one written.
pub struct Writer<'t> {
    txn: &'t WriteTransaction,
    at: i64,
    limits: Limits,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("at", &self.at).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl<'t> Writer<'t> {
    /// A writer at transaction time `at` (Unix µs, 0..=[`codec::TIME_MAX`],
    /// not before the last transaction time written), with [`Limits::MAX`].
    pub fn new(txn: &'t WriteTransaction, at: i64) -> Result<Writer<'t>, MemoryError> {
        if !(0..=codec::TIME_MAX).contains(&at) {
            return Err(MemoryError::TimeOutOfRange { field: "transaction time", value: at });
        }
        let meta = txn.open_table(META).map_err(storage)?;
        let last = meta.get("last_tx").map_err(storage)?.map(|g| g.value()).unwrap_or(0);
        if at < last {
            return Err(MemoryError::TxTimeBehind { at, last });
        }
        Ok(Writer { txn, at, limits: Limits::MAX })
    }

    /// Lowers the per-space limits (never above [`Limits::MAX`]).
    pub fn with_limits(mut self, limits: Limits) -> Writer<'t> {
        self.limits = Limits { facts: limits.facts.min(Limits::MAX.facts), bytes: limits.bytes.min(Limits::MAX.bytes) };
        self
    }

    /// Records `fact` as believed from now on over its valid interval. The
    /// currently believed versions of the same space, subject and predicate
    /// that overlap it in valid time are superseded at this transaction
    /// time, and their parts outside the interval are re-recorded (same
    /// value, new ids), so the valid-time history is split, not lost.
    pub fn assert(&self, fact: NewFact) -> Result<Change, MemoryError> {
        check_name("space", &fact.space)?;
        check_name("subject", &fact.subject)?;
        check_name("predicate", &fact.predicate)?;
        check_value(&fact.value)?;
        check_source(fact.source.as_deref())?;
        let to = check_interval(fact.valid_from, fact.valid_to)?;
        let mut t = Tables::open(self.txn)?;
        let names = (fact.space.as_str(), fact.subject.as_str(), fact.predicate.as_str());
        self.overlay(&mut t, names, (fact.valid_from, to), Some((&fact.value, fact.source.as_deref())), None)
    }

    /// Corrects version `id` (which must be in `space` and currently
    /// believed): it is superseded as a whole at this transaction time and
    /// the correction is recorded in its place, over the corrected
    /// interval (the version's own when [`Correction::valid`] is `None`).
    /// Other current versions overlapped by a changed interval are split as
    /// by [`Writer::assert`]. What was believed before stays queryable as
    /// of earlier transaction times.
    pub fn supersede(&self, space: &str, id: FactId, correction: Correction) -> Result<Change, MemoryError> {
        check_name("space", space)?;
        check_value(&correction.value)?;
        check_source(correction.source.as_deref())?;
        let mut t = Tables::open(self.txn)?;
        let (key, record) = current_version(&t, space, id.0)?;
        let k = decode_key(&key)?;
        let (from, to) = match correction.valid {
            Some(i) => (i.from, check_interval(i.from, i.to)?),
            None => (k.valid_from, decode_record(&record)?.valid_to),
        };
        let names = (k.space.to_owned(), k.subject.to_owned(), k.predicate.to_owned());
        let names = (names.0.as_str(), names.1.as_str(), names.2.as_str());
        self.overlay(
            &mut t,
            names,
            (from, to),
            Some((&correction.value, correction.source.as_deref())),
            Some((id.0, key, record)),
        )
    }

    /// Stops believing `subject`/`predicate` in `space` over `valid`, as of
    /// this transaction time: overlapping current versions are superseded
    /// and their parts outside `valid` re-recorded. Retracting where
    /// nothing is believed is not an error (nothing changes).
    pub fn retract(&self, space: &str, subject: &str, predicate: &str, valid: Interval) -> Result<Change, MemoryError> {
        check_name("space", space)?;
        check_name("subject", subject)?;
        check_name("predicate", predicate)?;
        let to = check_interval(valid.from, valid.to)?;
        let mut t = Tables::open(self.txn)?;
        self.overlay(&mut t, (space, subject, predicate), (valid.from, to), None, None)
    }

    /// Stops believing version `id` (in `space`, currently believed) over
    /// its whole valid interval, as of this transaction time.
    pub fn retract_fact(&self, space: &str, id: FactId) -> Result<Change, MemoryError> {
        check_name("space", space)?;
        let mut t = Tables::open(self.txn)?;
        let (key, record) = current_version(&t, space, id.0)?;
        let subject_key = crypt::load_key(&t.keys, decode_key(&key)?.subject)?;
        let words = t.words_of(subject_key.as_ref(), &key, &record)?;
        let mut stats = t.stats(space)?;
        self.retire(&mut t, space, Retiring { id: id.0, key, record, words }, &mut stats)?;
        t.spaces.insert(space, stats.encode().as_slice()).map_err(storage)?;
        t.meta.insert("last_tx", self.at).map_err(storage)?;
        Ok(Change { id: None, superseded: vec![id], remainders: Vec::new() })
    }

    /// Crypto-shreds `subject` in every space: deletes its word postings
    /// and then its key, and records the erasure. From then on every read
    /// of its facts yields [`crate::Opened::Erased`], word search never
    /// finds them, [`crate::open`] of its envelopes yields `Erased`, and
    /// asserting or sealing about it is refused. Versions and their times
    /// stay (the history that something was known remains, not what).
    /// Erasing twice is not an error.
    pub fn erase_subject(&self, subject: &str) -> Result<Erasure, MemoryError> {
        check_name("subject", subject)?;
        let mut t = Tables::open(self.txn)?;
        if t.erased.get(subject).map_err(storage)?.is_some() {
            return Ok(Erasure { already: true, ..Erasure::default() });
        }
        let mut done = Erasure::default();
        if let Some(subject_key) = crypt::load_key(&t.keys, subject)? {
            done.keyed = true;
            let by_subject = prefix(&[subject]);
            let spaces: Vec<String> = {
                let mut spaces = Vec::new();
                for item in t
                    .subject_spaces
                    .range::<&[u8]>(by_subject.as_slice()..prefix_end(&by_subject).as_slice())
                    .map_err(storage)?
                {
                    let (k, _) = item.map_err(storage)?;
                    let rest = &k.value()[by_subject.len()..];
                    let space =
                        rest.strip_suffix(&[0]).ok_or_else(|| corrupt("a subject-space row does not decode"))?;
                    spaces.push(String::from_utf8(space.to_vec()).map_err(|_| corrupt("a space name is not UTF-8"))?);
                }
                spaces
            };
            for space in &spaces {
                let mut stats = t.stats(space)?;
                let p = prefix(&[space, subject]);
                for current in [true, false] {
                    let table = if current { &t.current } else { &t.history };
                    let mut versions = Vec::new();
                    for item in table.range::<&[u8]>(p.as_slice()..prefix_end(&p).as_slice()).map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        versions.push((k.value().to_vec(), v.value().to_vec()));
                    }
                    for (key, record) in versions {
                        let id = decode_key(&key)?.id;
                        let Some((counts, len)) = t.words_of(Some(&subject_key), &key, &record)? else { continue };
                        let words = if current { &mut t.words_current } else { &mut t.words_history };
                        for term in counts.keys() {
                            if words.remove(posting_key(term, space, id).as_slice()).map_err(storage)?.is_some() {
                                done.postings += 1;
                            }
                        }
                        if current {
                            stats.indexed = stats.indexed.saturating_sub(1);
                            stats.indexed_words = stats.indexed_words.saturating_sub(u64::from(len));
                        }
                        done.versions += 1;
                    }
                }
                t.spaces.insert(space.as_str(), stats.encode().as_slice()).map_err(storage)?;
            }
            t.keys.remove(subject).map_err(storage)?;
        }
        t.erased.insert(subject, self.at).map_err(storage)?;
        t.meta.insert("last_tx", self.at).map_err(storage)?;
        Ok(done)
    }

    /// The core of assert, supersede and retract: supersedes the current
    /// versions overlapping [from, to), re-records their remainders outside
    /// it, and records `new` over it. `whole` is a version superseded
    /// entirely (no remainders), whether or not it overlaps.
    fn overlay(
        &self,
        t: &mut Tables<'_>,
        names: (&str, &str, &str),
        (from, to): (i64, i64),
        new: Option<(&str, Option<&str>)>,
        whole: Option<(u64, Vec<u8>, Vec<u8>)>,
    ) -> Result<Change, MemoryError> {
        let (space, subject, predicate) = names;
        // A new subject's key is only stored once the write is sure to happen.
        let (subject_key, new_key) = match new {
            Some(_) => {
                let (key, is_new) = crypt::key_for_writing(&t.keys, &t.erased, subject)?;
                (Some(key), is_new)
            }
            None => (crypt::load_key(&t.keys, subject)?, false),
        };
        let mut next_id = u64::try_from(t.meta("next_id")?).map_err(|_| corrupt("next fact id is negative"))?;
        let mut take_id = || {
            let id = next_id;
            next_id += 1;
            id
        };

        let mut overlapped = overlapping(&t.current, names, from, to)?;
        let whole_id = whole.as_ref().map(|(id, _, _)| *id);
        if let Some((_, key, record)) = whole
            && !overlapped.iter().any(|(k, _)| *k == key)
        {
            overlapped.push((key, record));
            overlapped.sort();
        }
        let mut retiring = Vec::with_capacity(overlapped.len());
        let mut planned = Vec::new();
        let mut change = Change::default();
        for (key, record) in overlapped {
            let k = decode_key(&key)?;
            let r = decode_record(&record)?;
            let words = t.words_of(subject_key.as_ref(), &key, &record)?;
            if Some(k.id) != whole_id {
                if k.valid_from < from {
                    planned.push(Planned::new(
                        take_id(),
                        names,
                        k.valid_from,
                        from,
                        self.at,
                        r.source,
                        r.sealed,
                        words.as_ref(),
                    ));
                }
                if r.valid_to > to {
                    planned.push(Planned::new(
                        take_id(),
                        names,
                        to,
                        r.valid_to,
                        self.at,
                        r.source,
                        r.sealed,
                        words.as_ref(),
                    ));
                }
            }
            change.superseded.push(FactId(k.id));
            retiring.push(Retiring { id: k.id, key: key.clone(), record: record.clone(), words });
        }
        change.remainders = planned.iter().map(|p| FactId(p.id)).collect();
        if let (Some((value, source)), Some(subject_key)) = (new, subject_key.as_ref()) {
            let sealed = crypt::encrypt(subject_key, &crypt::fact_ad(space, subject, predicate), value.as_bytes())?;
            let words = codec::terms(value);
            let id = take_id();
            planned.push(Planned::new(id, names, from, to, self.at, source, &sealed, Some(&words)));
            change.id = Some(FactId(id));
        }

        let mut stats = t.stats(space)?;
        let added = planned.len() as u64;
        let cost: u64 = planned.iter().map(Planned::cost).sum();
        if stats.versions + added > self.limits.facts {
            return Err(MemoryError::SpaceFull { space: space.to_owned(), what: "facts", limit: self.limits.facts });
        }
        if stats.bytes + cost > self.limits.bytes {
            return Err(MemoryError::SpaceFull { space: space.to_owned(), what: "bytes", limit: self.limits.bytes });
        }

        if new_key && let Some(key) = subject_key.as_ref() {
            t.keys.insert(subject, key.as_slice()).map_err(storage)?;
        }
        for r in retiring {
            self.retire(t, space, r, &mut stats)?;
        }
        for p in &planned {
            t.current.insert(p.key.as_slice(), p.record.as_slice()).map_err(storage)?;
            t.ids.insert(p.id, p.key.as_slice()).map_err(storage)?;
            for (k, v) in &p.postings {
                t.words_current.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
            }
            if let Some(len) = p.words {
                stats.indexed += 1;
                stats.indexed_words += u64::from(len);
            }
        }
        stats.versions += added;
        stats.bytes += cost;
        let row = prefix(&[subject, space]);
        // Checked first: rewriting an existing row would still copy its page.
        if !planned.is_empty() && t.subject_spaces.get(row.as_slice()).map_err(storage)?.is_none() {
            t.subject_spaces.insert(row.as_slice(), ()).map_err(storage)?;
        }
        t.spaces.insert(space, stats.encode().as_slice()).map_err(storage)?;
        t.meta
            .insert("next_id", i64::try_from(next_id).map_err(|_| corrupt("fact ids exhausted"))?)
            .map_err(storage)?;
        t.meta.insert("last_tx", self.at).map_err(storage)?;
        Ok(change)
    }

    /// Moves a current version (and its postings) to history, superseded now.
    fn retire(&self, t: &mut Tables<'_>, space: &str, r: Retiring, stats: &mut SpaceStats) -> Result<(), MemoryError> {
        t.current.remove(r.key.as_slice()).map_err(storage)?;
        t.history.insert(r.key.as_slice(), codec::with_superseded(&r.record, self.at).as_slice()).map_err(storage)?;
        if let Some((counts, len)) = r.words {
            for term in counts.keys() {
                let pk = posting_key(term, space, r.id);
                let posting = match t.words_current.remove(pk.as_slice()).map_err(storage)? {
                    Some(g) => Posting::decode(g.value())?,
                    None => return Err(corrupt(format!("fact {} lacks a posting for one of its words", r.id))),
                };
                let moved = Posting { superseded_at: self.at, ..posting };
                t.words_history.insert(pk.as_slice(), moved.encode().as_slice()).map_err(storage)?;
            }
            stats.indexed = stats.indexed.saturating_sub(1);
            stats.indexed_words = stats.indexed_words.saturating_sub(u64::from(len));
        }
        Ok(())
    }
}

/// The current versions of (space, subject, predicate) that overlap
/// [from, to), in key order. Current versions never overlap each other,
/// so only the last one starting before `from` can reach into it.
fn overlapping(
    current: &Table<'_, &'static [u8], &'static [u8]>,
    (space, subject, predicate): (&str, &str, &str),
    from: i64,
    to: i64,
) -> Result<Vec<Row>, MemoryError> {
    let p = prefix(&[space, subject, predicate]);
    let mut start = p.clone();
    start.extend_from_slice(&time_bytes(from));
    start.extend_from_slice(&[0u8; 8]);
    let end = prefix_end(&p);
    let mut out = Vec::new();
    if let Some(item) = current.range::<&[u8]>(p.as_slice()..start.as_slice()).map_err(storage)?.next_back() {
        let (k, v) = item.map_err(storage)?;
        if decode_record(v.value())?.valid_to > from {
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
    }
    for item in current.range::<&[u8]>(start.as_slice()..end.as_slice()).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        if decode_key(k.value())?.valid_from >= to {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

/// The key and record of version `id`, which must be in `space` and current.
fn current_version(t: &Tables<'_>, space: &str, id: u64) -> Result<Row, MemoryError> {
    let Some(key) = t.locate(id)? else { return Err(MemoryError::UnknownFact { id }) };
    if decode_key(&key)?.space != space {
        return Err(MemoryError::UnknownFact { id });
    }
    if let Some(g) = t.current.get(key.as_slice()).map_err(storage)? {
        let record = g.value().to_vec();
        return Ok((key, record));
    }
    match t.history.get(key.as_slice()).map_err(storage)? {
        Some(g) => Err(MemoryError::NotCurrent { id, superseded_at: decode_record(g.value())?.superseded_at }),
        None => Err(corrupt(format!("fact {id} is indexed but missing"))),
    }
}

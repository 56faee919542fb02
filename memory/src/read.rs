//! Reads: recall by subject, by subject and predicate, and by words, as of
//! any valid and transaction time, in a read or a write transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::iter::{Peekable, Rev};

use redb::{Key, Range, ReadTransaction, ReadableTable, TableDefinition, Value, WriteTransaction};

use crate::FactId;
use crate::codec::{
    self, Posting, check_name, check_time, decode_key, decode_record, open_to_option, posting_id, prefix, prefix_end,
    visible,
};
use crate::crypt::{self, Opened, SubjectKey};
use crate::error::{MemoryError, corrupt, storage};
use crate::tables::{CURRENT, ERASED, HISTORY, IDS, KEYS, META, SPACES, WORDS_CURRENT, WORDS_HISTORY};
use crate::write::SpaceStats;

/// A recall returns at most this many facts, so an agent cannot make the
/// host build (and journal) an unbounded answer.
pub const RECALL_FACTS_MAX: usize = 64;
/// ... and at most this many bytes ([`Fact::bytes`]): about 16k tokens,
/// a large but bounded share of a model's context, and one journal entry.
pub const RECALL_BYTES_MAX: usize = 64 << 10;
/// A query reads at most this many spaces (an agent reads its mission's
/// and a few shared ones; the bound keeps the per-space scans few).
pub const QUERY_SPACES_MAX: usize = 64;
/// A word search uses at most this many distinct words of its text.
pub const QUERY_WORDS_MAX: usize = 16;
/// A word search text is at most this long.
pub const QUERY_TEXT_BYTES_MAX: usize = 1 << 10;
/// A word search reads at most this many postings per word, newest
/// version first, so a word present in a million facts costs a bounded
/// scan (about a millisecond). Older versions beyond it are not ranked
/// for that word: such a word is common, so its BM25 weight is low anyway.
pub const WORD_POSTINGS_SCANNED_MAX: usize = 5_000;

/// BM25 term-frequency saturation and length normalisation, the usual values.
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;
/// Scores are reported and ranked in millionths, as integers, so a
/// journaled ranking replays exactly.
const SCORE_SCALE: f64 = 1_000_000.0;
/// Fixed part of [`Fact::bytes`]: id and four times.
const FACT_FIXED_BYTES: usize = 48;

mod sealed {
    pub trait Sealed {}
    impl Sealed for redb::ReadTransaction {}
    impl Sealed for redb::WriteTransaction {}
}

/// A transaction memory can be read in: a [`ReadTransaction`] (a snapshot)
/// or a [`WriteTransaction`] (so an answer can be journaled in the same
/// commit that observed it). Sealed: implemented only for those two.
pub trait Snapshot: sealed::Sealed {
    #[doc(hidden)]
    type Table<'a, K: Key + 'static, V: Value + 'static>: ReadableTable<K, V>
    where
        Self: 'a;
    #[doc(hidden)]
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'_, K, V>, MemoryError>;
}

impl Snapshot for ReadTransaction {
    type Table<'a, K: Key + 'static, V: Value + 'static> = redb::ReadOnlyTable<K, V>;
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::ReadOnlyTable<K, V>, MemoryError> {
        self.open_table(def).map_err(storage)
    }
}

impl Snapshot for WriteTransaction {
    type Table<'a, K: Key + 'static, V: Value + 'static> = redb::Table<'a, K, V>;
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::Table<'_, K, V>, MemoryError> {
        self.open_table(def).map_err(storage)
    }
}

/// One stored fact version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub id: FactId,
    pub space: String,
    pub subject: String,
    pub predicate: String,
    /// The value, or [`Opened::Erased`] once the subject was erased.
    pub value: Opened,
    pub source: Option<String>,
    /// Valid time [valid_from, valid_to), Unix µs; `None`: open-ended.
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    /// Transaction time [recorded_at, superseded_at) during which this
    /// version was believed; `None`: still believed.
    pub recorded_at: i64,
    pub superseded_at: Option<i64>,
}

impl Fact {
    /// The weight [`Query::max_bytes`] bounds: the text fields plus
    /// 48 bytes for the id and times.
    pub fn bytes(&self) -> usize {
        let value = self.value.plain().map_or(0, str::len);
        FACT_FIXED_BYTES
            + self.space.len()
            + self.subject.len()
            + self.predicate.len()
            + value
            + self.source.as_ref().map_or(0, String::len)
    }
}

/// What to recall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Every predicate of a subject, in (space, predicate, valid_from, id) order.
    Subject(String),
    /// One predicate of a subject, in (space, valid_from, id) order.
    Predicate { subject: String, predicate: String },
    /// Facts whose values contain any of the words of the text, best
    /// BM25 score first, ties by newest version (highest id) first.
    Words(String),
}

/// A bitemporal query over the spaces the caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The spaces the caller may read; nothing outside them is returned.
    pub spaces: Vec<String>,
    pub select: Select,
    /// The valid time asked about; `None`: every valid time.
    pub valid_at: Option<i64>,
    /// The transaction time asked about (what was believed then); `None`:
    /// as currently known.
    pub known_at: Option<i64>,
    /// At most this many facts (clamped to [`RECALL_FACTS_MAX`]).
    pub max_facts: usize,
    /// At most this many bytes (clamped to [`RECALL_BYTES_MAX`]).
    pub max_bytes: usize,
}

impl Query {
    /// A query as currently known, over every valid time, with the
    /// largest bounds.
    pub fn new<S: Into<String>>(spaces: impl IntoIterator<Item = S>, select: Select) -> Query {
        Query {
            spaces: spaces.into_iter().map(Into::into).collect(),
            select,
            valid_at: None,
            known_at: None,
            max_facts: RECALL_FACTS_MAX,
            max_bytes: RECALL_BYTES_MAX,
        }
    }
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recalled {
    pub facts: Vec<Fact>,
    /// For [`Select::Words`], the BM25 score of each fact in millionths
    /// (same order as `facts`); empty otherwise.
    pub scores: Vec<u64>,
    /// Whether more facts matched than the bounds let through.
    pub truncated: bool,
}

impl Recalled {
    /// Adds a fact unless a bound is reached; false once it is.
    fn push(&mut self, fact: Fact, score: Option<u64>, bytes: &mut usize, q: &Bounds) -> bool {
        let size = fact.bytes();
        if self.facts.len() >= q.facts || *bytes + size > q.bytes {
            self.truncated = true;
            return false;
        }
        *bytes += size;
        self.facts.push(fact);
        if let Some(score) = score {
            self.scores.push(score);
        }
        true
    }
}

struct Bounds {
    facts: usize,
    bytes: usize,
}

/// Answers `q` from `txn` (a read or a write transaction). The order of
/// the answer is fully determined by the stored data (see [`Select`]),
/// so a journaled answer replays byte for byte.
pub fn recall<S: Snapshot>(txn: &S, q: &Query) -> Result<Recalled, MemoryError> {
    if q.spaces.len() > QUERY_SPACES_MAX {
        return Err(MemoryError::Invalid {
            field: "spaces",
            reason: format!("{} spaces exceeds {QUERY_SPACES_MAX}", q.spaces.len()),
        });
    }
    for space in &q.spaces {
        check_name("space", space)?;
    }
    if let Some(t) = q.valid_at {
        check_time("valid_at", t)?;
    }
    if let Some(t) = q.known_at {
        check_time("known_at", t)?;
    }
    let spaces: BTreeSet<&str> = q.spaces.iter().map(String::as_str).collect();
    let bounds = Bounds { facts: q.max_facts.min(RECALL_FACTS_MAX), bytes: q.max_bytes.min(RECALL_BYTES_MAX) };
    match &q.select {
        Select::Subject(subject) => {
            check_name("subject", subject)?;
            by_names(txn, q, &spaces, &bounds, subject, None)
        }
        Select::Predicate { subject, predicate } => {
            check_name("subject", subject)?;
            check_name("predicate", predicate)?;
            by_names(txn, q, &spaces, &bounds, subject, Some(predicate))
        }
        Select::Words(text) => by_words(txn, q, &spaces, &bounds, text),
    }
}

/// The latest transaction time written (0 before any write): a [`crate::Writer`]
/// refuses earlier times, so a caller whose clock stepped back can wait or
/// write at this time instead.
pub fn last_transaction_time<S: Snapshot>(txn: &S) -> Result<i64, MemoryError> {
    let meta = txn.table(META)?;
    Ok(meta.get("last_tx").map_err(storage)?.map(|g| g.value()).unwrap_or(0))
}

/// Whether memory has ever heard of `subject`: it has a key (facts, or
/// sealed values) or was erased. `false` usually means a mistyped id.
pub fn knows_subject<S: Snapshot>(txn: &S, subject: &str) -> Result<bool, MemoryError> {
    let keys = txn.table(crate::tables::KEYS)?;
    if keys.get(subject).map_err(storage)?.is_some() {
        return Ok(true);
    }
    let erased = txn.table(crate::tables::ERASED)?;
    Ok(erased.get(subject).map_err(storage)?.is_some())
}

/// The names of every space that has held a fact, in order (for an
/// operator's query across all of them).
pub fn spaces<S: Snapshot>(txn: &S) -> Result<Vec<String>, MemoryError> {
    let table = txn.table(crate::tables::SPACES)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(storage)? {
        let (name, _) = row.map_err(storage)?;
        out.push(name.value().to_owned());
    }
    Ok(out)
}

/// The decryption state of one subject, looked up once per query.
enum KeyState {
    Key(SubjectKey),
    Erased,
}

fn key_state<S: Snapshot>(
    txn: &S,
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    subject: &str,
) -> Result<KeyState, MemoryError> {
    if let Some(key) = crypt::load_key(keys, subject)? {
        return Ok(KeyState::Key(key));
    }
    let erased = txn.table(ERASED)?;
    if erased.get(subject).map_err(storage)?.is_some() {
        Ok(KeyState::Erased)
    } else {
        Err(corrupt(format!("facts about {subject:?} exist but its key does not")))
    }
}

fn build_fact(key: &[u8], record: &[u8], state: &KeyState) -> Result<Fact, MemoryError> {
    let k = decode_key(key)?;
    let r = decode_record(record)?;
    let value = match state {
        KeyState::Key(subject_key) => {
            Opened::Plain(crypt::open_value(subject_key, &crypt::fact_ad(k.space, k.subject, k.predicate), r.sealed)?)
        }
        KeyState::Erased => Opened::Erased,
    };
    Ok(Fact {
        id: FactId(k.id),
        space: k.space.to_owned(),
        subject: k.subject.to_owned(),
        predicate: k.predicate.to_owned(),
        value,
        source: r.source.map(str::to_owned),
        valid_from: k.valid_from,
        valid_to: open_to_option(r.valid_to),
        recorded_at: r.recorded_at,
        superseded_at: open_to_option(r.superseded_at),
    })
}

type Rows<'a> = Peekable<Range<'a, &'static [u8], &'static [u8]>>;
type Row<'a> = (redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>);

/// The next row of two key-ordered scans merged in key order.
fn next_merged<'a>(a: &mut Rows<'a>, b: &mut Option<Rows<'a>>) -> Option<Result<Row<'a>, MemoryError>> {
    let take_b = match (a.peek(), b.as_mut().and_then(Peekable::peek)) {
        (Some(Ok((ka, _))), Some(Ok((kb, _)))) => kb.value() < ka.value(),
        (None, Some(_)) | (Some(Ok(_)), Some(Err(_))) => true,
        _ => false,
    };
    let next = if take_b { b.as_mut().and_then(Iterator::next) } else { a.next() };
    next.map(|r| r.map_err(storage))
}

fn by_names<S: Snapshot>(
    txn: &S,
    q: &Query,
    spaces: &BTreeSet<&str>,
    bounds: &Bounds,
    subject: &str,
    predicate: Option<&str>,
) -> Result<Recalled, MemoryError> {
    let mut out = Recalled::default();
    if spaces.is_empty() {
        return Ok(out);
    }
    let current = txn.table(CURRENT)?;
    // As currently known, superseded versions cannot match: skip their table.
    let history = match q.known_at {
        Some(_) => Some(txn.table(HISTORY)?),
        None => None,
    };
    let keys = txn.table(KEYS)?;
    let mut state = None;
    let mut bytes = 0;
    for space in spaces {
        let p = match predicate {
            Some(predicate) => prefix(&[space, subject, predicate]),
            None => prefix(&[space, subject]),
        };
        let end = prefix_end(&p);
        let mut a = current.range::<&[u8]>(p.as_slice()..end.as_slice()).map_err(storage)?.peekable();
        let mut b = match &history {
            Some(h) => Some(h.range::<&[u8]>(p.as_slice()..end.as_slice()).map_err(storage)?.peekable()),
            None => None,
        };
        while let Some(row) = next_merged(&mut a, &mut b) {
            let (k, v) = row?;
            let key = decode_key(k.value())?;
            let r = decode_record(v.value())?;
            if !visible(key.valid_from, r.valid_to, r.recorded_at, r.superseded_at, q.valid_at, q.known_at) {
                continue;
            }
            if state.is_none() {
                state = Some(key_state(txn, &keys, subject)?);
            }
            let Some(state) = state.as_ref() else { continue };
            if !out.push(build_fact(k.value(), v.value(), state)?, None, &mut bytes, bounds) {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

type PostingRows<'a> = Peekable<Rev<Range<'a, &'static [u8], &'static [u8]>>>;

/// A version matched by a word search.
struct Hit {
    len: u16,
    current: bool,
    /// (word index, occurrences)
    tfs: Vec<(usize, u16)>,
}

fn by_words<S: Snapshot>(
    txn: &S,
    q: &Query,
    spaces: &BTreeSet<&str>,
    bounds: &Bounds,
    text: &str,
) -> Result<Recalled, MemoryError> {
    if text.is_empty() || text.len() > QUERY_TEXT_BYTES_MAX {
        return Err(MemoryError::Invalid {
            field: "words",
            reason: format!("must be 1..={QUERY_TEXT_BYTES_MAX} bytes, got {}", text.len()),
        });
    }
    let (words, _) = codec::terms(text);
    if words.is_empty() {
        return Err(MemoryError::Invalid { field: "words", reason: "contains no word to search for".into() });
    }
    if words.len() > QUERY_WORDS_MAX {
        return Err(MemoryError::Invalid {
            field: "words",
            reason: format!("{} distinct words exceeds {QUERY_WORDS_MAX}", words.len()),
        });
    }
    let mut out = Recalled::default();
    if spaces.is_empty() {
        return Ok(out);
    }
    let words_current = txn.table(WORDS_CURRENT)?;
    let words_history = match q.known_at {
        Some(_) => Some(txn.table(WORDS_HISTORY)?),
        None => None,
    };

    // Gather postings per word, newest version first across every space
    // and both tables, up to the scan bound.
    let mut hits: BTreeMap<u64, Hit> = BTreeMap::new();
    let mut df = vec![0u64; words.len()];
    for (wi, word) in words.keys().enumerate() {
        let mut sources: Vec<(bool, PostingRows<'_>)> = Vec::new();
        for space in spaces {
            let p = prefix(&[word, space]);
            let end = prefix_end(&p);
            sources.push((
                true,
                words_current.range::<&[u8]>(p.as_slice()..end.as_slice()).map_err(storage)?.rev().peekable(),
            ));
            if let Some(h) = &words_history {
                sources
                    .push((false, h.range::<&[u8]>(p.as_slice()..end.as_slice()).map_err(storage)?.rev().peekable()));
            }
        }
        for _ in 0..WORD_POSTINGS_SCANNED_MAX {
            // The source whose next posting has the highest id.
            let mut best: Option<(usize, u64)> = None;
            for (si, (_, rows)) in sources.iter_mut().enumerate() {
                match rows.peek() {
                    Some(Ok((k, _))) => {
                        let id = posting_id(k.value())?;
                        if best.is_none_or(|(_, b)| id > b) {
                            best = Some((si, id));
                        }
                    }
                    Some(Err(_)) => {
                        best = Some((si, u64::MAX));
                        break;
                    }
                    None => {}
                }
            }
            let Some((si, id)) = best else { break };
            let Some((is_current, rows)) = sources.get_mut(si) else { break };
            let Some(row) = rows.next() else { break };
            let (_, v) = row.map_err(storage)?;
            let posting = Posting::decode(v.value())?;
            if !visible(
                posting.valid_from,
                posting.valid_to,
                posting.recorded_at,
                posting.superseded_at,
                q.valid_at,
                q.known_at,
            ) {
                continue;
            }
            df[wi] += 1;
            hits.entry(id)
                .or_insert_with(|| Hit { len: posting.len, current: *is_current, tfs: Vec::new() })
                .tfs
                .push((wi, posting.tf));
        }
    }
    if hits.is_empty() {
        return Ok(out);
    }

    // BM25 over the currently indexed versions of the queried spaces.
    let stats_table = txn.table(SPACES)?;
    let (mut docs, mut total_words) = (0u64, 0u64);
    for space in spaces {
        if let Some(g) = stats_table.get(*space).map_err(storage)? {
            let stats = SpaceStats::decode(g.value())?;
            docs += stats.indexed;
            total_words += stats.indexed_words;
        }
    }
    let n = docs.max(df.iter().copied().max().unwrap_or(0)) as f64;
    let average = if docs > 0 { (total_words as f64 / docs as f64).max(1.0) } else { 1.0 };
    let idf: Vec<f64> = df.iter().map(|&d| (1.0 + (n - d as f64 + 0.5) / (d as f64 + 0.5)).ln()).collect();
    let mut ranked: Vec<(u64, u64)> = hits
        .iter()
        .map(|(id, hit)| {
            let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * f64::from(hit.len) / average);
            let score: f64 = hit
                .tfs
                .iter()
                .map(|&(wi, tf)| {
                    let tf = f64::from(tf);
                    idf.get(wi).copied().unwrap_or(0.0) * tf * (BM25_K1 + 1.0) / (tf + norm)
                })
                .sum();
            ((score * SCORE_SCALE).round() as u64, *id)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));

    let ids = txn.table(IDS)?;
    let current = txn.table(CURRENT)?;
    let history = txn.table(HISTORY)?;
    let keys = txn.table(KEYS)?;
    let mut states: BTreeMap<String, KeyState> = BTreeMap::new();
    let mut bytes = 0;
    for (score, id) in ranked {
        let located = ids.get(id).map_err(storage)?.ok_or_else(|| corrupt(format!("posting for unknown fact {id}")))?;
        let fact_key = located.value();
        let is_current = hits.get(&id).is_some_and(|h| h.current);
        let record = if is_current {
            current.get(fact_key).map_err(storage)?
        } else {
            history.get(fact_key).map_err(storage)?
        };
        let record = record.ok_or_else(|| corrupt(format!("fact {id} is indexed but missing")))?;
        let subject = decode_key(fact_key)?.subject;
        if !states.contains_key(subject) {
            states.insert(subject.to_owned(), key_state(txn, &keys, subject)?);
        }
        let Some(state) = states.get(subject) else { continue };
        if !out.push(build_fact(fact_key, record.value(), state)?, Some(score), &mut bytes, bounds) {
            break;
        }
    }
    Ok(out)
}

//! Memory benchmark: builds a redb file of N facts and prints one table of
//! write throughput, recall latencies, erasure latency and file size.
//!
//! ```text
//! CARGO_TARGET_DIR=$HOME/.cache/conductor/target-memory \
//!     cargo run --release -p memory --example bench_memory -- --facts 1000000 \
//!     [--batch 1000] [--recalls 20000] [--searches 2000] [--erasures 200] [--dir /real/disk]
//! ```
//!
//! The data is generated from a fixed seed, so runs are comparable:
//! N/10 subjects (100k at 1M), 8 predicates, 9 spaces (8 missions, each
//! subject in one, and a shared `precedent` space holding a tenth of the
//! subjects); each assert picks a random subject and predicate with a
//! later valid-from than anything before, so re-asserting a (subject,
//! predicate) supersedes the open version and re-records its remainder
//! (about a third of the asserts at 1M). Values are 3 to 6 words from a
//! 2,000-word vocabulary with a skewed (Zipf-like) frequency.
//!
//! Asserts run in write transactions of `--batch` facts, committed with
//! redb's default durability (fsync), as a mission's host calls would be
//! grouped. Every recall opens a fresh read transaction, as the conductor
//! does, for a random subject, reading the subject's mission space and
//! `precedent`; the latency includes opening the transaction.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use memory::{NewFact, Query, Select, Writer};
use redb::{Database, ReadableDatabase};

// The conductor binary's allocator, so the figures are what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PREDICATES: [&str; 8] = ["status", "owner", "address", "limit", "note", "tier", "region", "contact"];
const MISSION_SPACES: u64 = 8;
const VOCABULARY: usize = 2_000;
const SYLLABLES: [&str; 20] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fe", "gu", "ha", "ji", "be", "co", "wy", "xi",
    "qu",
];
/// Valid times and transaction times start at 2024-01-01 (Unix µs).
const EPOCH: i64 = 1_704_067_200_000_000;

struct Args {
    facts: u64,
    batch: u64,
    recalls: usize,
    searches: usize,
    erasures: usize,
    dir: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        facts: 1_000_000,
        batch: 1_000,
        recalls: 20_000,
        searches: 2_000,
        erasures: 200,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--facts" => a.facts = number()?,
            "--batch" => a.batch = number()?.max(1),
            "--recalls" => a.recalls = number()? as usize,
            "--searches" => a.searches = number()? as usize,
            "--erasures" => a.erasures = number()? as usize,
            "--dir" => a.dir = PathBuf::from(&value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// SplitMix64: a fixed-seed generator, so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards low indices: P(i < k) = sqrt(k / n).
    fn zipfish(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as usize % n
    }
}

fn vocabulary() -> Vec<String> {
    (0..VOCABULARY)
        .map(|i| {
            let s = SYLLABLES.len();
            format!("{}{}{}", SYLLABLES[i % s], SYLLABLES[(i / s) % s], SYLLABLES[(i / (s * s)) % s])
        })
        .collect()
}

fn subject_name(i: u64) -> String {
    format!("customer:{i:06}")
}

fn space_of(i: u64) -> String {
    if i.is_multiple_of(10) { "precedent".to_owned() } else { format!("mission:{}", i % MISSION_SPACES) }
}

fn spaces_for(i: u64) -> Vec<String> {
    vec![format!("mission:{}", i % MISSION_SPACES), "precedent".to_owned()]
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn at(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
        v.get(i).copied().unwrap_or_default()
    }

    fn row(&self, name: &str, note: &str) {
        println!(
            "| {name} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {note} |",
            self.0.len(),
            self.at(0.50).as_secs_f64() * 1e6,
            self.at(0.99).as_secs_f64() * 1e6,
            self.at(1.0).as_secs_f64() * 1e6,
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let dir = tempfile::tempdir_in(&a.dir)?;
    let path = dir.path().join("memory.redb");
    let db = Database::create(&path)?;
    let txn = db.begin_write()?;
    memory::create_tables(&txn)?;
    txn.commit()?;

    let words = vocabulary();
    let subjects = (a.facts / 10).max(1);
    let mut rng = Rng(7);

    // Asserts, in batches.
    let started = Instant::now();
    let (mut superseded, mut versions) = (0u64, 0u64);
    let mut done = 0u64;
    let mut tx = EPOCH;
    while done < a.facts {
        let n = a.batch.min(a.facts - done);
        let txn = db.begin_write()?;
        {
            let w = Writer::new(&txn, tx)?;
            for k in done..done + n {
                let s = rng.below(subjects);
                let len = 3 + rng.below(4) as usize;
                let value: Vec<&str> = (0..len).map(|_| words[rng.zipfish(VOCABULARY)].as_str()).collect();
                let change = w.assert(NewFact {
                    space: space_of(s),
                    subject: subject_name(s),
                    predicate: PREDICATES[rng.below(PREDICATES.len() as u64) as usize].to_owned(),
                    value: value.join(" "),
                    source: (k % 4 == 0).then(|| format!("journal:{k}")),
                    valid_from: EPOCH + k as i64 * 1_000,
                    valid_to: None,
                })?;
                superseded += change.superseded.len() as u64;
                versions += 1 + change.remainders.len() as u64;
            }
        }
        txn.commit()?;
        done += n;
        tx += 1_000_000;
    }
    let write_time = started.elapsed();
    let last_tx = tx;
    let size = std::fs::metadata(&path)?.len();

    println!(
        "memory benchmark: {} asserts, {subjects} subjects, {} predicates, {} spaces",
        a.facts,
        PREDICATES.len(),
        MISSION_SPACES + 1
    );
    println!("{versions} versions stored ({superseded} superseded), batches of {} facts per durable commit", a.batch);
    println!();
    println!("| measure | n | p50 | p99 | max | note |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| assert throughput | {} | {:.0} facts/s | | | {:.1} s total, {:.1} µs/fact incl. commit |",
        a.facts,
        a.facts as f64 / write_time.as_secs_f64(),
        write_time.as_secs_f64(),
        write_time.as_secs_f64() * 1e6 / a.facts as f64
    );

    let mut run = |name: &str,
                   note: &str,
                   n: usize,
                   make: &mut dyn FnMut(&mut Rng) -> Query|
     -> Result<(), Box<dyn std::error::Error>> {
        let mut lat = Vec::with_capacity(n);
        let mut facts = 0usize;
        for _ in 0..n {
            let q = make(&mut rng);
            let t = Instant::now();
            let read = db.begin_read()?;
            let got = memory::recall(&read, &q)?;
            drop(read);
            lat.push(t.elapsed());
            facts += got.facts.len();
        }
        Latencies(lat).row(name, &format!("{note}; {:.1} facts/answer", facts as f64 / n.max(1) as f64));
        Ok(())
    };
    run("recall by subject (now)", "fresh read txn each", a.recalls, &mut |rng| {
        let s = rng.below(subjects);
        Query::new(spaces_for(s), Select::Subject(subject_name(s)))
    })?;
    run("recall by subject, valid_at", "one version per predicate", a.recalls, &mut |rng| {
        let s = rng.below(subjects);
        let mut q = Query::new(spaces_for(s), Select::Subject(subject_name(s)));
        q.valid_at = Some(EPOCH + rng.below(a.facts) as i64 * 1_000);
        q
    })?;
    run("recall by subject, as of past tx", "reads history too", a.recalls, &mut |rng| {
        let s = rng.below(subjects);
        let mut q = Query::new(spaces_for(s), Select::Subject(subject_name(s)));
        q.known_at = Some(EPOCH + (rng.below((last_tx - EPOCH) as u64)) as i64);
        q
    })?;
    run("recall by subject+predicate", "", a.recalls, &mut |rng| {
        let s = rng.below(subjects);
        let predicate = PREDICATES[rng.below(PREDICATES.len() as u64) as usize].to_owned();
        Query::new(spaces_for(s), Select::Predicate { subject: subject_name(s), predicate })
    })?;
    let searches = a.searches;
    let vocab = &words;
    run("recall by 2 words (BM25)", "Zipf-like words, top 64", searches, &mut |rng| {
        let text = format!("{} {}", vocab[rng.zipfish(VOCABULARY)], vocab[rng.zipfish(VOCABULARY)]);
        let s = rng.below(subjects);
        Query::new(spaces_for(s), Select::Words(text))
    })?;
    run("recall by 2 rare words", "from the rarer half", searches, &mut |rng| {
        let text = format!(
            "{} {}",
            vocab[VOCABULARY / 2 + rng.below(VOCABULARY as u64 / 2) as usize],
            vocab[VOCABULARY / 2 + rng.below(VOCABULARY as u64 / 2) as usize]
        );
        let s = rng.below(subjects);
        Query::new(spaces_for(s), Select::Words(text))
    })?;

    // Erasures, one per durable transaction.
    let mut lat = Vec::with_capacity(a.erasures);
    let mut erased_versions = 0u64;
    for tx in (last_tx..).take(a.erasures) {
        let s = rng.below(subjects);
        let t = Instant::now();
        let txn = db.begin_write()?;
        let e = Writer::new(&txn, tx)?.erase_subject(&subject_name(s))?;
        txn.commit()?;
        lat.push(t.elapsed());
        erased_versions += e.versions;
    }
    Latencies(lat).row(
        "erase subject + commit",
        &format!("{:.1} versions each, durable commit included", erased_versions as f64 / a.erasures.max(1) as f64),
    );
    println!(
        "| DB size | | {:.1} MiB | | | {:.0} bytes/version, as written |",
        size as f64 / (1 << 20) as f64,
        size as f64 / versions.max(1) as f64
    );
    // redb keeps freed pages in the file; compaction shows the live size.
    let mut db = db;
    let t = Instant::now();
    while db.compact()? {}
    let compacted = std::fs::metadata(&path)?.len();
    println!(
        "| DB size after compact | | {:.1} MiB | | | {:.0} bytes/version; compaction took {:.1} s |",
        compacted as f64 / (1 << 20) as f64,
        compacted as f64 / versions.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

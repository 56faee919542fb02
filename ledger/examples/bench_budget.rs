//! Budget posting benchmark: reserve+settle pairs per second, durably
//! committed, printed as one table that can be compared run to run.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-budget cargo run --release -p ledger --example bench_budget -- \
//!     [--dir /path/on/a/real/disk] [--seconds 5] [--callers 64,1024,8192] [--batch 4096] [--rows sign,a,b1,b2,b3,c1,c2]
//! ```
//!
//! - `--dir`: where the temporary databases go (default: the system temp
//!   dir; it must be a real disk, not tmpfs, or durable commits are not
//!   durable).
//! - `--seconds`: time per row (default 5).
//! - `--callers`: concurrent callers for the group-commit rows.
//! - `--batch`: the committer's largest batch (default
//!   [`ledger::GROUP_BATCH_DEFAULT`]).
//!
//! Rows:
//!
//! - Ed25519 signatures per second on one core and on every core: with
//!   one signed entry per posting, half the all-core rate caps rows a, b1
//!   and c1.
//! - (a) one durable commit per posting: reserve, commit, settle, commit.
//! - (b1) the same pairs through a [`GroupCommitter`] from many threads,
//!   one journal entry per posting.
//! - (b2) as b1 with `Ledger::batch_postings`: a transaction's postings
//!   share `budget.batch` entries (one signature per up to 4,096).
//! - (b3) as b2 from async tasks on one runtime thread
//!   (`GroupCommitter::submit_async`), as the conductor's host calls are.
//! - (c1, c2) many pairs in one transaction by a single caller, per-posting
//!   entries and batched: the upper bound for this storage and signing.
//!
//! Every transaction is committed with redb's default durability (fsync).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::{Keypair, Role};
use ledger::{AMOUNT_MAX, GroupCommitter, GroupStats, Ledger, LedgerError, ReservationId, Txn};
use serde_json::json;

// The conductor binary's allocator, so the figures are what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What group commit should reach (pairs per second).
const GROUP_TARGET: f64 = 100_000.0;
/// The reference cost of one durable redb commit.
const REDB_COMMIT_ANCHOR: &str = "redb ~0.5 ms per durable commit";
/// Pairs per transaction in row (c).
const PAIRS_PER_TXN: usize = 5_000;
const ACCOUNT: &str = "bench";

/// Reserve + settle pairs per second: one commit each, group commit, and
/// one big transaction.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Where the temporary databases go (use the real disk, not tmpfs).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Seconds per row.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent callers for the group-commit rows.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,8192")]
    callers: Vec<usize>,
    /// Most operations per group commit.
    #[arg(long, default_value_t = ledger::GROUP_BATCH_DEFAULT)]
    batch: usize,
    /// Which rows to run (default: all). `sign` is the signing rows.
    #[arg(long, value_delimiter = ',', default_value = "sign,a,b1,b2,b3,c1,c2")]
    rows: Vec<String>,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A fresh ledger in `dir` with one account large enough for any run,
/// automatic checkpoints at the production default.
fn fresh(dir: &tempfile::TempDir, name: &str, batched: bool) -> (Arc<Ledger>, Arc<Keypair>) {
    let key = Arc::new(Keypair::generate(Role::Conductor));
    let mut ledger = Ledger::open(&dir.path().join(name)).expect("open ledger");
    ledger.checkpoint_every(key.clone(), ledger::CHECKPOINT_EVERY_DEFAULT);
    ledger.batch_postings(batched);
    ledger
        .write(|t| {
            t.genesis(&key, json!({"bench": "budget"}), now_us())?;
            t.open_account(&key, ACCOUNT, None, Some(AMOUNT_MAX), now_us())
        })
        .expect("set up");
    (Arc::new(ledger), key)
}

/// A reservation like a real call's: a few tokens' worth, a minute to run.
fn reserve(t: &mut Txn, key: &Keypair, i: u64) -> Result<ReservationId, LedgerError> {
    let now = now_us();
    t.reserve(key, ACCOUNT, 1_000, now + 60_000_000, json!({"call": i, "model": "mistral-7b"}), now)
}

fn settle(t: &mut Txn, key: &Keypair, id: ReservationId) -> Result<(), LedgerError> {
    t.settle(key, id, 700, now_us()).map(|_| ())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line of the table.
struct Row {
    what: String,
    rate: f64,
    unit: &'static str,
    p50: Option<Duration>,
    p99: Option<Duration>,
    note: String,
}

impl Row {
    fn print(&self) {
        let lat = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), ms);
        println!(
            "{:<34} {:>10} {:<7} {:>10} {:>10}  {}",
            self.what,
            thousands(self.rate),
            self.unit,
            lat(self.p50),
            lat(self.p99),
            self.note
        );
    }
}

/// Ed25519 signatures per second on `threads` threads.
fn signatures(seconds: f64, threads: usize) -> Row {
    let key = Keypair::generate(Role::Conductor);
    let message = [7u8; 63];
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let key = &key;
                s.spawn(move || {
                    let mut n = 0u64;
                    while started.elapsed().as_secs_f64() < seconds {
                        for _ in 0..64 {
                            std::hint::black_box(key.sign(std::hint::black_box(&message)));
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signer")).sum()
    });
    let rate = total as f64 / started.elapsed().as_secs_f64();
    Row {
        what: format!("Ed25519 sign, {threads} thread{}", if threads == 1 { "" } else { "s" }),
        rate,
        unit: "sigs/s",
        p50: None,
        p99: None,
        note: format!("{:.1} µs/signature/thread", threads as f64 * 1e6 / rate),
    }
}

/// (a) reserve, commit, settle, commit.
fn one_commit_per_posting(dir: &tempfile::TempDir, seconds: f64) -> Row {
    let (ledger, key) = fresh(dir, "single.redb", false);
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        let t0 = Instant::now();
        let id = ledger.write(|t| reserve(t, &key, i)).expect("reserve");
        ledger.write(|t| settle(t, &key, id)).expect("settle");
        latencies.push(t0.elapsed());
        i += 1;
    }
    let elapsed = started.elapsed();
    ledger.verify().expect("benchmark journal verifies");
    latencies.sort_unstable();
    Row {
        what: "(a) one durable commit per posting".into(),
        rate: i as f64 / elapsed.as_secs_f64(),
        unit: "pairs/s",
        p50: Some(percentile(&latencies, 0.50)),
        p99: Some(percentile(&latencies, 0.99)),
        note: format!("{} commits, {:.3} ms each on average", 2 * i, elapsed.as_secs_f64() * 1e3 / (2 * i) as f64),
    }
}

/// (b) `callers` threads, each submitting reserve then settle through one
/// committer, for `seconds`.
fn group_commit(
    dir: &tempfile::TempDir,
    seconds: f64,
    callers: usize,
    batch: usize,
    batched: bool,
    tasks: bool,
) -> Row {
    let (ledger, key) = fresh(dir, &format!("group-{callers}-{batched}-{tasks}.redb"), batched);
    let group = Arc::new(GroupCommitter::new(ledger.clone(), batch));
    let before = group.stats();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = if tasks {
        async_callers(&group, &key, callers, seconds, started)
    } else {
        thread_callers(&group, &key, callers, seconds, started)
    };
    let elapsed = started.elapsed();
    let stats = group.stats();
    drop(group);
    ledger.verify().expect("benchmark journal verifies");
    latencies.sort_unstable();
    let delta = GroupStats {
        commits: stats.commits - before.commits,
        ops: stats.ops - before.ops,
        largest: stats.largest,
        failed: stats.failed - before.failed,
    };
    let row = match (batched, tasks) {
        (false, false) => "b1",
        (true, false) => "b2",
        (_, true) => "b3",
    };
    Row {
        what: format!("({row}) group commit, {callers:>4} {}", if tasks { "tasks" } else { "threads" }),
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        unit: "pairs/s",
        p50: Some(percentile(&latencies, 0.50)),
        p99: Some(percentile(&latencies, 0.99)),
        note: format!(
            "{} commits, batch mean {:.1} max {}{}",
            delta.commits,
            delta.ops as f64 / delta.commits.max(1) as f64,
            delta.largest,
            if delta.failed > 0 { format!(", {} failed", delta.failed) } else { String::new() },
        ),
    }
}

/// `callers` async tasks on one runtime thread, each submitting reserve
/// then settle and awaiting each durable answer; returns each pair's
/// latency.
fn async_callers(
    group: &Arc<GroupCommitter>,
    key: &Arc<Keypair>,
    callers: usize,
    seconds: f64,
    started: Instant,
) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = (0..callers as u64)
            .map(|c| {
                let (group, key) = (group.clone(), key.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut i = c << 32;
                    while started.elapsed().as_secs_f64() < seconds {
                        let t0 = Instant::now();
                        let k = key.clone();
                        let id = group.submit_async(move |t| reserve(t, &k, i)).await.expect("reserve");
                        let k = key.clone();
                        group.submit_async(move |t| settle(t, &k, id)).await.expect("settle");
                        latencies.push(t0.elapsed());
                        i += 1;
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("caller task"));
        }
        all
    })
}

/// `callers` threads, each blocking in reserve then settle.
fn thread_callers(
    group: &Arc<GroupCommitter>,
    key: &Arc<Keypair>,
    callers: usize,
    seconds: f64,
    started: Instant,
) -> Vec<Duration> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers as u64)
            .map(|c| {
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let mut latencies = Vec::new();
                        let mut i = c << 32;
                        while started.elapsed().as_secs_f64() < seconds {
                            let t0 = Instant::now();
                            let k = key.clone();
                            let id = group.submit(move |t| reserve(t, &k, i)).expect("reserve");
                            let k = key.clone();
                            group.submit(move |t| settle(t, &k, id)).expect("settle");
                            latencies.push(t0.elapsed());
                            i += 1;
                        }
                        latencies
                    })
                    .expect("spawn caller")
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("caller")).collect()
    })
}

/// (c) many pairs in one transaction, one caller.
fn one_transaction(dir: &tempfile::TempDir, seconds: f64, batched: bool) -> Row {
    let (ledger, key) = fresh(dir, &format!("one-{batched}.redb"), batched);
    let started = Instant::now();
    let mut pairs = 0u64;
    let mut latencies = Vec::new();
    let mut staging = Duration::ZERO;
    while started.elapsed().as_secs_f64() < seconds {
        let t0 = Instant::now();
        ledger
            .write(|t| {
                for i in 0..PAIRS_PER_TXN as u64 {
                    let id = reserve(t, &key, pairs + i)?;
                    settle(t, &key, id)?;
                }
                staging += t0.elapsed();
                Ok::<_, LedgerError>(())
            })
            .expect("batch");
        latencies.push(t0.elapsed());
        pairs += PAIRS_PER_TXN as u64;
    }
    let elapsed = started.elapsed();
    ledger.verify().expect("benchmark journal verifies");
    latencies.sort_unstable();
    Row {
        what: format!(
            "({}) {} pairs per transaction",
            if batched { "c2" } else { "c1" },
            thousands(PAIRS_PER_TXN as f64)
        ),
        rate: pairs as f64 / elapsed.as_secs_f64(),
        unit: "pairs/s",
        p50: None,
        p99: None,
        note: format!(
            "{} transactions, each p50 {}; per pair {:.1} µs checking+hashing, {:.1} µs signing+commit",
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            staging.as_secs_f64() * 1e6 / pairs as f64,
            (elapsed.as_secs_f64() - staging.as_secs_f64()) * 1e6 / pairs as f64,
        ),
    }
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let dir = tempfile::Builder::new().prefix("bench-budget-").tempdir_in(&args.dir).expect("temp dir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench_budget: reserve+settle pairs; every posting is a signed journal entry, every commit durable (fsync)"
    );
    println!(
        "dir {}, {cores} cores, {:.0} s per row, committer batch ≤ {}",
        args.dir.display(),
        args.seconds,
        args.batch
    );
    println!();
    println!("{:<34} {:>10} {:<7} {:>10} {:>10}  notes", "row", "rate", "", "p50 pair", "p99 pair");
    let run = |row: &str| args.rows.iter().any(|r| r == row);
    let mut ceiling = None;
    if run("sign") {
        signatures(args.seconds.min(2.0), 1).print();
        let all = signatures(args.seconds.min(2.0), cores);
        ceiling = Some(all.rate / 2.0);
        Row { note: format!("{}; {} pairs/s if every posting is signed", all.note, thousands(all.rate / 2.0)), ..all }
            .print();
    }
    let mut a = None;
    if run("a") {
        let row = one_commit_per_posting(&dir, args.seconds);
        row.print();
        a = Some(row.rate);
    }
    for (row, batched, tasks) in [("b1", false, false), ("b2", true, false), ("b3", true, true)] {
        if run(row) {
            for &callers in &args.callers {
                group_commit(&dir, args.seconds, callers, args.batch, batched, tasks).print();
            }
        }
    }
    for (row, batched) in [("c1", false), ("c2", true)] {
        if run(row) {
            one_transaction(&dir, args.seconds, batched).print();
        }
    }
    println!();
    if let Some(a) = a {
        println!(
            "anchor: {REDB_COMMIT_ANCHOR}; (a) measured {:.3} ms per commit (a pair is two commits)",
            1e3 / (2.0 * a)
        );
    }
    println!("target: ≥ {} pairs/s with group commit (rows b)", thousands(GROUP_TARGET));
    if let Some(ceiling) = ceiling {
        println!("one signature per posting caps rows a, b1 and c1 at {} pairs/s here", thousands(ceiling));
    }
}

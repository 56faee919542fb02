//! Journal benchmark: durable appends, verification and export, printed as
//! one table that can be compared run to run.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-tamper cargo run --release -p ledger --example bench_journal -- \
//!     [--entries 200000] [--dir /path/on/a/real/disk] [--commits 1000] [--seconds 10]
//! ```
//!
//! - `--entries`: size of the journal that is verified and exported (default 200,000).
//! - `--dir`: where the temporary databases go (default: the system temp dir;
//!   it must be a real disk, not tmpfs, or durable commits are not durable).
//! - `--commits`: transactions timed for the one-entry-per-commit rows (default 1,000).
//! - `--seconds`: soft time cap per append row (default 10).
//! - `--only appends|verify|primitives`: run one section (e.g. under a profiler).
//!
//! Every transaction is committed with redb's default durability (fsync).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::{Keypair, PublicKey, Role, Signature};
use ledger::{Ledger, LedgerError, Txn};
use serde_json::{Value, json};

const DURABLE_TARGET: f64 = 50_000.0;
const VERIFY_TARGET: f64 = 100_000.0;
// Taken from docs/journal-format.md rather than the ledger: the baseline
// is what an independent, one-signature-at-a-time verifier would do.
const SIGNATURE_DOMAIN: &[u8] = b"conductor journal signature v1\0";
const HASH_CONTEXT: &str = "conductor journal entry v1";

/// Durable appends and verification of the signed journal.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Entries in the journal that is verified.
    #[arg(long, default_value_t = 200_000)]
    entries: u64,
    /// Where the temporary databases go (use the real disk, not tmpfs).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Commits in the one-entry-per-commit rows.
    #[arg(long, default_value_t = 1_000)]
    commits: usize,
    /// Seconds per timed row at most.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Run one section only.
    #[arg(long, value_parser = ["appends", "verify", "primitives"])]
    only: Option<String>,
}

/// The keys of one benchmark journal.
struct Keys {
    conductor: Arc<Keypair>,
    agent: Keypair,
}

/// A fresh ledger with genesis, one registered agent and automatic
/// checkpoints at the production default.
fn fresh(dir: &Path, name: &str) -> (Ledger, Keys) {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut ledger = Ledger::open(&path).expect("open ledger");
    let keys = Keys { conductor: Arc::new(Keypair::generate(Role::Conductor)), agent: Keypair::generate(Role::Agent) };
    ledger.checkpoint_every(keys.conductor.clone(), ledger::CHECKPOINT_EVERY_DEFAULT);
    let c = keys.conductor.clone();
    ledger
        .write(|t| {
            t.genesis(&c, json!({"bench": true}), now_us())?;
            t.register_key(&c, &keys.agent.public(), Role::Agent, json!({"mission": "bench", "agent": "a"}), now_us())
        })
        .expect("genesis");
    (ledger, keys)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A host.infer payload like a real call's: about 200 bytes of JSON.
fn infer_payload(i: u64) -> Value {
    json!({
        "mission": "m-2024-017",
        "task": format!("t-{:05}", i / 16),
        "model": "mistral-7b-instruct-v0.3-q4k",
        "prompt_blake3": format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
        "prompt_tokens": 812 + i % 97,
        "completion_tokens": 143,
        "latency_ms": 2311,
        "stop": "eos",
    })
}

fn write<T>(ledger: &Ledger, f: impl FnOnce(&mut Txn) -> Result<T, LedgerError>) -> T {
    ledger.write(f).expect("ledger write")
}

/// One line of the table.
struct Row {
    what: String,
    entries: u64,
    elapsed: Duration,
    target: Option<f64>,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
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

/// Durable commits of `batch` entries each (append_batch), until `commits`
/// transactions or the time cap; returns the row with commit latencies.
fn durable_batches(args: &Args, batch: usize, commits: usize) -> Row {
    let (ledger, keys) = fresh(&args.dir, &format!("bench-batch-{batch}.redb"));
    let payloads: Vec<Value> = (0..batch as u64).map(infer_payload).collect();
    let items: Vec<(&str, Value)> = payloads.into_iter().map(|p| ("host.infer", p)).collect();
    let mut latencies = Vec::with_capacity(commits);
    let started = Instant::now();
    let mut entries = 0u64;
    for _ in 0..commits {
        let t0 = Instant::now();
        let written = write(&ledger, |t| t.append_batch(&keys.agent, &items, now_us()));
        latencies.push(t0.elapsed());
        entries += written.len() as u64;
        if started.elapsed().as_secs_f64() > args.seconds {
            break;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    ledger.verify().expect("benchmark journal verifies");
    let note = format!(
        "{} commits; per commit p50 {} p99 {}",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
    drop(ledger);
    let _ = std::fs::remove_file(args.dir.join(format!("bench-batch-{batch}.redb")));
    Row { what: format!("durable append_batch, B = {batch}"), entries, elapsed, target: Some(DURABLE_TARGET), note }
}

/// One `append` per durable transaction.
fn single_appends(args: &Args) -> Row {
    let (ledger, keys) = fresh(&args.dir, "bench-single.redb");
    let mut latencies = Vec::with_capacity(args.commits);
    let started = Instant::now();
    for i in 0..args.commits as u64 {
        let payload = infer_payload(i);
        let t0 = Instant::now();
        write(&ledger, |t| t.append(&keys.agent, "host.infer", &payload, now_us()));
        latencies.push(t0.elapsed());
        if started.elapsed().as_secs_f64() > args.seconds {
            break;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let note = format!(
        "{} commits; per commit p50 {} p99 {}",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
    let entries = latencies.len() as u64;
    drop(ledger);
    let _ = std::fs::remove_file(args.dir.join("bench-single.redb"));
    Row { what: "durable append, 1 per transaction".into(), entries, elapsed, target: Some(DURABLE_TARGET), note }
}

/// Many `append`s in one durable transaction (each signed in turn).
fn many_appends_one_txn(args: &Args, count: u64) -> Row {
    let (ledger, keys) = fresh(&args.dir, "bench-many.redb");
    let payloads: Vec<Value> = (0..count).map(infer_payload).collect();
    let started = Instant::now();
    write(&ledger, |t| {
        for p in &payloads {
            t.append(&keys.agent, "host.infer", p, now_us())?;
        }
        Ok(())
    });
    let elapsed = started.elapsed();
    drop(ledger);
    let _ = std::fs::remove_file(args.dir.join("bench-many.redb"));
    Row {
        what: format!("durable: {count} x append, 1 transaction"),
        entries: count,
        elapsed,
        target: Some(DURABLE_TARGET),
        note: "sequential signing on the calling thread".into(),
    }
}

/// The single-threaded strict baseline: decode, re-hash, check the link,
/// and verify every signature alone with strict verification. No key
/// rules: it does less than the real verifier.
fn strict_baseline(export: &[u8]) -> (u64, Duration) {
    let started = Instant::now();
    let mut at = 20;
    let mut prev = ledger::EntryHash::default();
    let mut keys: std::collections::HashMap<[u8; 32], PublicKey> = std::collections::HashMap::new();
    let mut n = 0u64;
    while at < export.len() {
        let len = u32::from_be_bytes(export[at..at + 4].try_into().expect("4 bytes")) as usize;
        let record = &export[at + 4..at + 4 + len];
        at += 4 + len;
        let entry = ledger::entry::decode(record).expect("decodes");
        let canonical = &record[..record.len() - 96];
        let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT);
        hasher.update(canonical);
        assert_eq!(hasher.finalize().as_bytes(), &entry.hash.0, "hash of entry {}", entry.seq);
        assert_eq!(entry.prev, prev, "link of entry {}", entry.seq);
        assert_eq!(entry.seq, n);
        let key =
            *keys.entry(entry.signer).or_insert_with(|| PublicKey::from_bytes(&entry.signer).expect("valid signer"));
        let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 32);
        message.extend_from_slice(SIGNATURE_DOMAIN);
        message.extend_from_slice(&entry.hash.0);
        key.verify(&message, &Signature::from_bytes(entry.signature)).expect("signature verifies");
        prev = entry.hash;
        n += 1;
    }
    (n, started.elapsed())
}

/// The signature primitives alone, on one thread: what bounds the rows
/// above on this machine.
fn primitives() -> Vec<Row> {
    const N: usize = 8192;
    let key = Keypair::generate(Role::Agent);
    let messages: Vec<Vec<u8>> = (0..N as u64)
        .map(|i| {
            let mut m = SIGNATURE_DOMAIN.to_vec();
            m.extend_from_slice(blake3::hash(&i.to_be_bytes()).as_bytes());
            m
        })
        .collect();
    // Warm up (caches, clock frequency) before timing.
    for m in &messages[..512] {
        let _ = key.public().verify(m, &key.sign(m));
    }
    let t0 = Instant::now();
    let signatures: Vec<Signature> = messages.iter().map(|m| key.sign(m)).collect();
    let sign = t0.elapsed();
    let public = key.public();
    let t0 = Instant::now();
    for (m, s) in messages.iter().zip(&signatures) {
        public.verify(m, s).expect("verifies");
    }
    let strict = t0.elapsed();
    let items: Vec<(PublicKey, &[u8], Signature)> =
        messages.iter().zip(&signatures).map(|(m, s)| (public, m.as_slice(), *s)).collect();
    let t0 = Instant::now();
    for chunk in items.chunks(128) {
        identity::verify_batch(chunk).expect("batch verifies");
    }
    let batch = t0.elapsed();
    // Larger batches amortise the multiscalar multiplication further.
    let t0 = Instant::now();
    for chunk in items.chunks(1024) {
        identity::verify_batch(chunk).expect("batch verifies");
    }
    let batch_1024 = t0.elapsed();
    // The same batches split over every core, as the verifier does.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for part in items.chunks(N.div_ceil(cores)) {
            scope.spawn(move || {
                for chunk in part.chunks(128) {
                    identity::verify_batch(chunk).expect("batch verifies");
                }
            });
        }
    });
    let batch_parallel = t0.elapsed();
    let row = |what: &str, elapsed| Row {
        what: what.into(),
        entries: N as u64,
        elapsed,
        target: None,
        note: "primitive, 1 thread (bounds the rows above)".into(),
    };
    vec![
        row("primitive: Keypair::sign", sign),
        row("primitive: PublicKey::verify (strict)", strict),
        row("primitive: identity::verify_batch, 128/batch", batch),
        row("primitive: identity::verify_batch, 1024/batch", batch_1024),
        Row {
            what: format!("primitive: verify_batch, 128/batch, {cores} threads"),
            entries: N as u64,
            elapsed: batch_parallel,
            target: Some(VERIFY_TARGET),
            note: "the ceiling for any verifier built on verify_batch here".into(),
        },
    ]
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    if args.dir.starts_with("/dev/shm") || args.dir.starts_with("/run") {
        eprintln!("warning: {} looks like tmpfs; durable commits will not touch a disk", args.dir.display());
    }
    let work = tempfile::Builder::new().prefix("bench-journal-").tempdir_in(&args.dir).expect("temp dir");
    let args = Args { dir: work.path().to_owned(), ..args };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = Instant::now();
    eprintln!("bench_journal: {cores} cores, databases under {}", args.dir.display());

    let section = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let mut rows = Vec::new();
    if section("appends") {
        for (batch, commits) in [(1usize, args.commits), (64, 400), (1024, 60), (8192, 12)] {
            eprintln!("  durable append_batch, B = {batch} ...");
            rows.push(durable_batches(&args, batch, commits));
        }
        eprintln!("  single appends ...");
        rows.push(single_appends(&args));
        eprintln!("  many appends in one transaction ...");
        rows.push(many_appends_one_txn(&args, 8192));
    }
    let mut n = 0;
    let mut speedups = None;
    if section("verify") {
        // The verification journal: at least `entries`, written in durable
        // batches of 8192 alternating between the agent and the conductor.
        eprintln!("  building a {}-entry journal ...", args.entries);
        let (ledger, keys) = fresh(&args.dir, "bench-verify.redb");
        let build = Instant::now();
        let agent_items: Vec<(&str, Value)> = (0..8192).map(|i| ("host.infer", infer_payload(i))).collect();
        let conductor_items: Vec<(&str, Value)> = (0..8192u64)
            .map(|i| {
                (
                    "task.started",
                    json!({"mission": "m-2024-017", "task": format!("t-{i:05}"), "cell": "summarise", "attempt": 1}),
                )
            })
            .collect();
        let mut round = 0;
        while ledger.head().expect("head").0 < args.entries {
            if round % 2 == 0 {
                write(&ledger, |t| t.append_batch(&keys.agent, &agent_items, now_us()));
            } else {
                write(&ledger, |t| t.append_batch(&keys.conductor, &conductor_items, now_us()));
            }
            round += 1;
        }
        n = ledger.head().expect("head").0;
        let build = build.elapsed();
        rows.push(Row {
            what: "durable append_batch, B = 8192 (verify journal)".into(),
            entries: n,
            elapsed: build,
            target: Some(DURABLE_TARGET),
            note: "alternating agent / conductor batches".into(),
        });
        let held = ledger.latest_checkpoint().expect("checkpoint").expect("an automatic checkpoint");

        eprintln!("  Ledger::verify ...");
        let t0 = Instant::now();
        let report = ledger.verify_against(std::slice::from_ref(&held)).expect("journal verifies");
        let db_verify = Row {
            what: "Ledger::verify (database)".into(),
            entries: report.entries,
            elapsed: t0.elapsed(),
            target: Some(VERIFY_TARGET),
            note: "batch + parallel signatures, key rules, held checkpoint".into(),
        };

        eprintln!("  export ...");
        let mut export = Vec::with_capacity(64 << 20);
        let t0 = Instant::now();
        let summary = ledger.export(&mut export, |_, _| {}).expect("export");
        let export_elapsed = t0.elapsed();
        let mb = summary.bytes as f64 / 1e6;
        let export_row = Row {
            what: "export to memory".into(),
            entries: summary.entries,
            elapsed: export_elapsed,
            target: None,
            note: format!("{mb:.1} MB, {:.0} MB/s", mb / export_elapsed.as_secs_f64()),
        };
        let file_path = args.dir.join("bench.export");
        let t0 = Instant::now();
        {
            let file = std::fs::File::create(&file_path).expect("export file");
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            ledger.export(&mut out, |_, _| {}).expect("export to file");
            out.flush().expect("flush");
            out.get_ref().sync_all().expect("sync");
        }
        let file_elapsed = t0.elapsed();
        let export_file_row = Row {
            what: "export to file (fsync)".into(),
            entries: summary.entries,
            elapsed: file_elapsed,
            target: None,
            note: format!("{mb:.1} MB, {:.0} MB/s", mb / file_elapsed.as_secs_f64()),
        };

        eprintln!("  verify_export ...");
        let t0 = Instant::now();
        let report = ledger::verify_export(&mut &export[..], std::slice::from_ref(&held)).expect("export verifies");
        let export_verify = Row {
            what: "verify_export (in memory)".into(),
            entries: report.entries,
            elapsed: t0.elapsed(),
            target: Some(VERIFY_TARGET),
            note: "batch + parallel signatures, key rules, held checkpoint".into(),
        };
        eprintln!("  strict single-threaded baseline ...");
        let (baseline_n, baseline_elapsed) = strict_baseline(&export);
        let baseline = Row {
            what: "baseline: 1 thread, strict verify each".into(),
            entries: baseline_n,
            elapsed: baseline_elapsed,
            target: Some(VERIFY_TARGET),
            note: "decode + blake3 + link + verify_strict; no key rules".into(),
        };
        speedups = Some((db_verify.rate() / baseline.rate(), export_verify.rate() / baseline.rate()));
        rows.extend([db_verify, export_verify, baseline, export_row, export_file_row]);
        drop(ledger);
    }
    if section("primitives") {
        eprintln!("  signature primitives ...");
        rows.extend(primitives());
    }

    println!();
    println!(
        "conductor journal benchmark: {cores} cores, {} entries verified, payload ~{} B JSON, dir {}",
        n,
        serde_json::to_vec(&infer_payload(12_345)).map_or(0, |v| v.len()),
        args.dir.display()
    );
    println!();
    println!(
        "| {:<48} | {:>9} | {:>8} | {:>11} | {:>14} | {:<80} |",
        "measurement", "entries", "seconds", "entries/s", "target", "notes"
    );
    println!("|{:-<50}|{:->11}|{:->10}|{:->13}|{:->16}|{:-<82}|", "", "", "", "", "", "");
    for r in &rows {
        let target = match r.target {
            Some(t) if r.rate() >= t => format!("≥{:.0}k  met", t / 1e3),
            Some(t) => format!("≥{:.0}k  MISSED", t / 1e3),
            None => "-".into(),
        };
        println!(
            "| {:<48} | {:>9} | {:>8.3} | {:>11.0} | {:>14} | {:<80} |",
            r.what,
            r.entries,
            r.elapsed.as_secs_f64(),
            r.rate(),
            target,
            r.note
        );
    }
    println!();
    if let Some((db, export)) = speedups {
        println!(
            "batch+parallel speedup over the strict 1-thread baseline: Ledger::verify {db:.2}x, verify_export {export:.2}x"
        );
    }
    println!("total run time {:.1} s", total.elapsed().as_secs_f64());
}

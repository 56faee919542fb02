//! `cargo xtask bench-delegation`: the cost of delegation itself, with
//! the scripted model backend (no inference time), on the real binary
//! (`conductor run`) through the product's own paths: every child is a
//! real cell under its own key, on a budget account under its parent's,
//! and every step is a signed, durable journal entry.
//!
//! - **Round trip**: cases whose agent delegates one sub-task to a child
//!   that decides at once, one cell at a time. From the parent's `task.delegated` (it parks)
//!   to its `task.proposed` (the child ran, its `task.joined` was
//!   written, the parent was resumed by replay and decided): p50, p99.
//! - **Fan-out**: one parent delegates N children (default 1,000) in one
//!   call: from `task.delegated` to `task.joined` and to the parent's
//!   decision; the whole process's wall time and peak RSS.
//! - **Parked**: many parents each delegate to children that wait for a
//!   reviewer (`await-review`), so that every child ends parked: the
//!   whole process's peak RSS with N children (default 100,000) parked.
//!
//! Times inside the run come from the journal's timestamps (`audit log
//! --json`); whole-process figures from GNU time. `audit verify` runs on
//! every data directory afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

const MODEL: &str = "smollm2-135m";

#[derive(Debug, Clone)]
pub struct Options {
    /// Cases of the round-trip part (one child each).
    pub round_trips: usize,
    /// Children of the one parent of the fan-out part.
    pub fan_out: usize,
    /// Children parked at once in the parked part.
    pub parked: usize,
    pub concurrency: u16,
    pub no_build: bool,
    pub dir: PathBuf,
}

struct Bench {
    bin: PathBuf,
    registry: PathBuf,
    module: PathBuf,
    dir: PathBuf,
}

/// One `conductor run`, whole-process.
struct Timed {
    wall_s: f64,
    rss_kib: u64,
    summary: Value,
}

pub fn delegation(root: &Path, opts: &Options) -> Result<()> {
    ensure!(Path::new("/usr/bin/time").is_file(), "GNU time (/usr/bin/time, Debian package `time`) is needed");
    ensure!((1..=4096).contains(&opts.fan_out), "--fan-out must be 1..=4096 (the mission's fan-out limit)");
    ensure!(opts.parked >= 1_000 && opts.parked.is_multiple_of(1_000), "--parked must be a multiple of 1,000");
    let (dir, bin, registry) = crate::bench_engine::prepare(root, opts.no_build, &opts.dir)?;
    let module = root.join("cells/guests/delegate-agent/delegate.wasm");
    ensure!(module.is_file(), "{} is missing: run `cargo xtask build-agents`", module.display());
    let bench = Bench { bin, registry, module, dir };

    println!("machine: {}", crate::bench_engine::machine());
    println!(
        "\nround trip: {} cases one after another, each delegating one sub-task (concurrency 1)",
        opts.round_trips
    );
    let (trip, trips) = round_trip(&bench, opts)?;
    let mut sorted = trips.clone();
    sorted.sort_unstable();
    println!(
        "  p50 {:.2} ms, p99 {:.2} ms, worst {:.2} ms (parent parks → child runs → task.joined → parent resumed by replay \
         and decides); whole run {:.2} s, peak RSS {} MB",
        pct(&sorted, 0.50) as f64 / 1e3,
        pct(&sorted, 0.99) as f64 / 1e3,
        sorted.last().copied().unwrap_or(0) as f64 / 1e3,
        trip.wall_s,
        trip.rss_kib / 1024
    );

    println!("\nfan-out: one parent, {} children in one call (concurrency {})", opts.fan_out, opts.concurrency);
    let (fan, spans) = fan_out(&bench, opts)?;
    println!(
        "  delegated → joined {:.3} s; delegated → parent decided {:.3} s; whole process {:.2} s (start-up, \
         declaration, verify-free), peak RSS {} MB",
        spans.0 as f64 / 1e6,
        spans.1 as f64 / 1e6,
        fan.wall_s,
        fan.rss_kib / 1024
    );

    let parents = opts.parked / 1_000;
    println!(
        "\nparked: {parents} parents × 1,000 children, every child parked on a review (concurrency {})",
        opts.concurrency
    );
    let parked = parked(&bench, opts, parents)?;
    let tasks = parked.summary["tasks"].as_array().map_or(0, Vec::len);
    println!(
        "  {} children parked, {tasks} tasks in all: whole process {:.1} s ({:.0} children/s), peak RSS {} MB \
         ({:.0} bytes per parked child)",
        opts.parked,
        parked.wall_s,
        opts.parked as f64 / parked.wall_s,
        parked.rss_kib / 1024,
        parked.rss_kib as f64 * 1024.0 / opts.parked as f64
    );
    Ok(())
}

impl Bench {
    fn mission(&self, name: &str, extra: &str, cases: &str) -> Result<PathBuf> {
        let module = self.module.display();
        let text = format!(
            "name: {name}\n\
             budget: {{ limit: 1000000000 }}\n\
             models: {{ {MODEL}: {{ prompt_price: 1, completion_price: 1 }} }}\n\
             agents:\n\
             \x20 - {{ name: lead, module: {module}, model: {MODEL}, delegates_to: [child] }}\n\
             \x20 - {{ name: child, module: {module}, model: {MODEL} }}\n\
             {extra}\
             tasks:\n  agent: lead\n  dir: cases\n"
        );
        let dir = self.dir.join(name);
        std::fs::create_dir_all(dir.join("cases"))?;
        for (i, case) in cases.lines().enumerate() {
            std::fs::write(dir.join(format!("cases/c{i:06}.json")), case)?;
        }
        let path = dir.join("mission.yaml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn run(&self, mission: &Path, concurrency: u16) -> Result<Timed> {
        let data = mission.with_file_name("data");
        let report = mission.with_file_name("time.txt");
        let stdout = mission.with_file_name("summary.json");
        let stderr = mission.with_file_name("stderr.txt");
        let start = Instant::now();
        let status = Command::new("/usr/bin/time")
            .args(["-f", "%M %e", "-o"])
            .arg(&report)
            .arg(&self.bin)
            .arg("run")
            .arg(mission)
            .arg("--data")
            .arg(&data)
            .arg("--models")
            .arg(&self.registry)
            .arg("--module-cache")
            .arg(self.dir.join("modules"))
            .args(["--json", "--concurrency", &concurrency.to_string()])
            .env_remove("CONDUCTOR_DATA")
            .env_remove("CONDUCTOR_MODELS")
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .status()?;
        let wall_s = start.elapsed().as_secs_f64();
        let summary: Value = serde_json::from_slice(&std::fs::read(&stdout)?)
            .with_context(|| format!("the run's summary; see {}", stderr.display()))?;
        ensure!(
            status.success() || summary["status"] == "awaiting_review",
            "conductor run failed ({status}); see {}",
            stderr.display()
        );
        let timing = std::fs::read_to_string(&report)?;
        let rss_kib = timing.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|f| f.parse().ok());
        let verified = Command::new(&self.bin).args(["audit", "verify", "--data"]).arg(&data).output()?;
        ensure!(verified.status.success(), "the journal in {} does not verify", data.display());
        Ok(Timed { wall_s, rss_kib: rss_kib.unwrap_or(0), summary })
    }

    /// `(task, time_us)` of every entry of `kind` in `data`.
    fn times(&self, data: &Path, kind: &str) -> Result<Vec<(u64, i64, Value)>> {
        let out =
            Command::new(&self.bin).args(["audit", "log", "--json", "--kind", kind, "--data"]).arg(data).output()?;
        ensure!(out.status.success(), "audit log failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| -> Result<(u64, i64, Value)> {
                let e: Value = serde_json::from_str(l)?;
                let task = e["payload"]["task"].as_u64().context("an entry without its task")?;
                let time = e["time_us"].as_i64().context("an entry without its time")?;
                Ok((task, time, e["payload"].clone()))
            })
            .collect()
    }
}

fn round_trip(bench: &Bench, opts: &Options) -> Result<(Timed, Vec<u64>)> {
    let cases: String = (0..opts.round_trips)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"delegate\": [{{\"agent\": \"child\", \"input\": {{\"outcome\": \"ok\"}}}}]}}\n"
            )
        })
        .collect();
    let mission = bench.mission("round-trip", "", &cases)?;
    // One cell at a time: the latency of the path, not of a queue.
    let timed = bench.run(&mission, 1)?;
    ensure!(
        timed.summary["status"] == "completed",
        "the round-trip mission did not complete: {}",
        timed.summary["status"]
    );
    let data = mission.with_file_name("data");
    let delegated: BTreeMap<u64, i64> =
        bench.times(&data, "task.delegated")?.into_iter().map(|(t, at, _)| (t, at)).collect();
    let mut trips = Vec::new();
    for (task, at, _) in bench.times(&data, "task.proposed")? {
        if let Some(start) = delegated.get(&task) {
            trips.push(u64::try_from(at - start).unwrap_or(0));
        }
    }
    ensure!(trips.len() == opts.round_trips, "{} round trips measured of {}", trips.len(), opts.round_trips);
    Ok((timed, trips))
}

fn fan_out(bench: &Bench, opts: &Options) -> Result<(Timed, (i64, i64))> {
    let children: Vec<String> =
        (0..opts.fan_out).map(|i| format!("{{\"agent\": \"child\", \"input\": {{\"outcome\": \"ok{i}\"}}}}")).collect();
    let case = format!("{{\"id\": \"wide\", \"delegate\": [{}]}}\n", children.join(", "));
    let extra = format!("delegation: {{ fan_out: {0}, children_per_task: {0} }}\n", opts.fan_out.max(64));
    let mission = bench.mission("fan-out", &extra, &case)?;
    let timed = bench.run(&mission, opts.concurrency)?;
    ensure!(
        timed.summary["status"] == "completed",
        "the fan-out mission did not complete: {}",
        timed.summary["status"]
    );
    let data = mission.with_file_name("data");
    let delegated = bench.times(&data, "task.delegated")?.first().map(|(_, at, _)| *at).context("no task.delegated")?;
    let joined = bench.times(&data, "task.joined")?.first().map(|(_, at, _)| *at).context("no task.joined")?;
    let decided = bench
        .times(&data, "task.proposed")?
        .iter()
        .find(|(t, ..)| *t == 0)
        .map(|(_, at, _)| *at)
        .context("no decision")?;
    Ok((timed, (joined - delegated, decided - delegated)))
}

fn parked(bench: &Bench, opts: &Options, parents: usize) -> Result<Timed> {
    let children: Vec<String> = (0..1_000)
        .map(|i| format!("{{\"agent\": \"child\", \"input\": {{\"await\": \"hold\", \"n\": {i}}}}}"))
        .collect();
    let case = format!("{{\"delegate\": [{}]}}", children.join(", "));
    let cases: String = (0..parents).map(|_| format!("{case}\n")).collect();
    let extra = "delegation: { fan_out: 1000, children_per_task: 1000 }\n\
                 gates:\n  - { name: hold, when: { field: decision.outcome, equals: never-proposed } }\n";
    let mission = bench.mission("parked", extra, &cases)?;
    let timed = bench.run(&mission, opts.concurrency)?;
    ensure!(timed.summary["status"] == "awaiting_review", "the children did not all park: {}", timed.summary["status"]);
    let waiting =
        timed.summary["tasks"].as_array().map_or(0, |t| t.iter().filter(|t| t["status"] == "awaiting_review").count());
    ensure!(waiting == opts.parked, "{waiting} of {} children parked", opts.parked);
    Ok(timed)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

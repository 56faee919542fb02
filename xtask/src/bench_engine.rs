//! `cargo xtask bench-engine`: orchestration throughput with the scripted
//! model backend (no model file, no inference time), measured on the real
//! binary through the product's own paths:
//!
//! - **Tasks**: `conductor run MISSION --models SCRIPTED.yaml --concurrency
//!   C --json` over a mission of `bench-agent` cases: each task is one
//!   wasm cell, one metered `infer` (reserve, scripted call, settle) and
//!   its signed, durable journal entries. Whole-process wall time and
//!   peak RSS (GNU time), the in-process span from the journal's
//!   timestamps, and `conductor audit verify` afterwards.
//! - **Gateway**: `conductor serve --models SCRIPTED.yaml`, driven over
//!   HTTP/1.1 keep-alive by the load generator below (one OS thread per
//!   connection, std only), `POST /v1/chat/completions` with a client
//!   key; then a key with a tight limit is driven past it, and `conductor
//!   gateway list` must show no overspend.
//! - **Where the time goes**: each part once more under `strace -c`
//!   (durable syncs and page writes per task or request), and the
//!   journal's per-phase timestamps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

pub(crate) use gpu_kit::http::Conn;

use crate::{cargo_command, run, step, target_dir};

/// Prices in the scripted registry (and the missions): one unit a token.
const PROMPT_PRICE: u64 = 1;
const COMPLETION_PRICE: u64 = 1;
/// Every task and request asks for at most this many tokens.
const MAX_TOKENS: u64 = 8;
const MODEL: &str = "smollm2-135m";

#[derive(Debug, Clone)]
pub struct Options {
    /// Cases per `conductor run`.
    pub tasks: usize,
    pub concurrency: Vec<u16>,
    /// Seconds of timed gateway load.
    pub seconds: u64,
    pub connections: usize,
    /// Budget units of the tight key.
    pub tight_limit: u64,
    /// Requests sent on the tight key (enough to exhaust it).
    pub tight_requests: usize,
    /// Skip the `strace -c` runs.
    pub no_syscalls: bool,
    pub skip_tasks: bool,
    pub skip_gateway: bool,
    /// Use the binary and agents already built.
    pub no_build: bool,
    /// Extra environment for every conductor process (a knob to measure,
    /// e.g. MIMALLOC_ALLOW_THP=0).
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

/// A fresh bench directory `dir` holding a copy of the release conductor
/// (so a rebuild during the run changes nothing) and a registry whose
/// model is scripted; builds the agents and the conductor first unless
/// `no_build`. Returns (the directory, canonical; the binary; the registry).
pub(crate) fn prepare(root: &Path, no_build: bool, dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    if !no_build {
        step("building the agents and the conductor (release, the workspace's one feature set)");
        crate::build_agents(root)?;
        run(cargo_command().args(["build", "--release", "--workspace", "--locked"]))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let bin = dir.join("conductor");
    std::fs::copy(target_dir(root).join("release/conductor"), &bin).context("copying the conductor binary")?;
    let registry = dir.join("scripted.yaml");
    std::fs::write(
        &registry,
        format!(
            "models:\n  {MODEL}:\n    kind: scripted\n    context_tokens: 2048\n    prompt_price: {PROMPT_PRICE}\n    \
             completion_price: {COMPLETION_PRICE}\n"
        ),
    )?;
    Ok((dir, bin, registry))
}

pub fn engine(root: &Path, opts: &Options) -> Result<()> {
    ensure!((1..=100_000).contains(&opts.tasks), "--tasks must be 1..=100000 (one mission's case limit)");
    ensure!(opts.concurrency.iter().all(|c| (1..=1024).contains(c)), "--concurrency values must be 1..=1024");
    ensure!((1..=1024).contains(&opts.connections), "--connections must be 1..=1024");
    ensure!(Path::new("/usr/bin/time").is_file(), "GNU time (/usr/bin/time, Debian package `time`) is needed");
    let (dir, bin, registry) = prepare(root, opts.no_build, &opts.dir)?;
    let bench =
        Bench { bin, registry, dir: dir.clone(), strace: !opts.no_syscalls && which("strace"), env: opts.env.clone() };
    if !opts.no_syscalls && !bench.strace {
        step("strace not found: skipping the syscall counts");
    }
    let module = root.join("cells/guests/bench-agent/bench.wasm");
    ensure!(module.is_file(), "{} is missing: run `cargo xtask build-agents`", module.display());

    let machine = machine();
    let tasks = if opts.skip_tasks { None } else { Some(tasks_part(&bench, &module, opts)?) };
    let gateway = if opts.skip_gateway { None } else { Some(gateway_part(&bench, opts)?) };

    println!("\nbench-engine: scripted backend ({MODEL}, kind: scripted), {machine}");
    if !opts.env.is_empty() {
        let env: Vec<String> = opts.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("environment of every conductor process: {}", env.join(" "));
    }
    if let Some(t) = &tasks {
        t.print(opts);
    }
    if let Some(g) = &gateway {
        g.print(opts);
    }
    println!(
        "\ntargets (#19): >= 5,000 tasks/s with the journal verifying; >= 5,000 metered gateway requests/s, zero overspend"
    );
    Ok(())
}

pub(crate) struct Bench {
    pub(crate) bin: PathBuf,
    pub(crate) registry: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) strace: bool,
    pub(crate) env: Vec<(String, String)>,
}

impl Bench {
    pub(crate) fn conductor(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("CONDUCTOR_DATA").env_remove("CONDUCTOR_MODELS").env_remove("RUST_LOG");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// A conductor command that must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str], data: &Path) -> Result<String> {
        let out = self.conductor().args(args).arg("--data").arg(data).output().context("running the conductor")?;
        ensure!(out.status.success(), "conductor {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `audit verify`: (passed, seconds, its first line).
    pub(crate) fn verify(&self, data: &Path) -> Result<(bool, f64, String)> {
        let start = Instant::now();
        let out = self.conductor().args(["audit", "verify", "--data"]).arg(data).output()?;
        let secs = start.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        Ok((out.status.success(), secs, text.lines().next().unwrap_or("").to_owned()))
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores, load {}", load_average())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A field of `/proc/PID/status` (`VmHWM`, `Threads`), as its number.
pub(crate) fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds a process (all its threads) has used.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The one child of a wrapper process (GNU time, strace): the conductor.
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?.split_whitespace().next()?.parse().ok()
}

pub(crate) fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<i64>) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// `strace -c` totals: syscall name -> (calls, microseconds per call).
fn strace_counts(path: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || !fields[0].chars().next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            continue;
        }
        if let (Ok(usecs), Ok(calls)) = (fields[2].parse::<u64>(), fields[3].parse::<u64>()) {
            counts.insert(name.to_owned(), (calls, usecs));
        }
    }
    Ok(counts)
}

const TRACED: &str = "trace=fdatasync,fsync,pwrite64";

// ---------------------------------------------------------------- tasks

/// One `conductor run`.
#[derive(Debug, Default, Clone)]
struct TaskRun {
    concurrency: u16,
    tasks: usize,
    wall_s: f64,
    rss_kib: u64,
    cpu_s: f64,
    peak_threads: u64,
    /// First `task.started` to last `task.decided`, from the journal.
    span_s: f64,
    entries: u64,
    /// Medians over tasks, microseconds, from entry timestamps.
    started_to_reserved: i64,
    reserved_to_infer: i64,
    infer_to_decided: i64,
    started_to_decided: i64,
    verify_ok: bool,
    verify_s: f64,
    verify_line: String,
}

#[derive(Debug, Default)]
struct TasksReport {
    runs: Vec<TaskRun>,
    /// The 1-task run: start-up and shutdown with nothing to do.
    startup: TaskRun,
    /// From `strace -c` of a run at the profile concurrency.
    syscalls: Option<Syscalls>,
}

#[derive(Debug, Clone)]
struct Syscalls {
    what: String,
    /// The concurrency of the profiled run (tasks only).
    concurrency: u16,
    units: u64,
    fdatasync: (u64, u64),
    pwrite: (u64, u64),
}

fn write_cases(dir: &Path, tasks: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..tasks {
        let case = serde_json::json!({"id": format!("t{i:06}"), "prompt": format!("case {i}: is the applicant eligible"),
                                      "max_tokens": MAX_TOKENS});
        std::fs::write(dir.join(format!("t{i:06}.json")), case.to_string())?;
    }
    Ok(())
}

fn write_mission(path: &Path, name: &str, module: &Path, cases: &str) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "name: {name}\n\
             budget: {{ limit: 1000000000 }}\n\
             models: {{ {MODEL}: {{ prompt_price: {PROMPT_PRICE}, completion_price: {COMPLETION_PRICE} }} }}\n\
             agents:\n  - name: bench\n    module: {}\n    model: {MODEL}\n    \
             limits: {{ max_tokens: {MAX_TOKENS}, host_calls: 4 }}\n\
             tasks: {{ agent: bench, dir: {cases} }}\n",
            module.display()
        ),
    )?;
    Ok(())
}

/// Runs `conductor run` under GNU time (and optionally strace), polling the
/// conductor's thread count. Returns the run's figures (journal ones left
/// for `journal_figures`) and the summary.
fn timed_run(
    bench: &Bench,
    mission: &Path,
    data: &Path,
    concurrency: u16,
    tasks: usize,
    strace_out: Option<&Path>,
) -> Result<(TaskRun, Value)> {
    let report = data.with_extension("time");
    let stdout = data.with_extension("json");
    let stderr = data.with_extension("stderr");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M %e %U %S", "-o"]).arg(&report);
    if let Some(out) = strace_out {
        cmd.args(["strace", "-f", "-c", "--seccomp-bpf", "-e", TRACED, "-o"]).arg(out);
    }
    cmd.arg(&bench.bin)
        .arg("run")
        .arg(mission)
        .arg("--data")
        .arg(data)
        .arg("--models")
        .arg(&bench.registry)
        .arg("--module-cache")
        .arg(bench.dir.join("modules"))
        .args(["--json", "--concurrency", &concurrency.to_string()])
        .env_remove("CONDUCTOR_DATA")
        .env_remove("CONDUCTOR_MODELS")
        .env_remove("RUST_LOG")
        .envs(bench.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting /usr/bin/time conductor run")?;
    let mut peak_threads = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // time -> conductor, or time -> strace -> conductor.
        let mut pid = child_of(child.id());
        if strace_out.is_some() {
            pid = pid.and_then(child_of);
        }
        if let Some(threads) = pid.and_then(|p| proc_status(p, "Threads")) {
            peak_threads = peak_threads.max(threads);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall_s = start.elapsed().as_secs_f64();
    ensure!(status.success(), "conductor run (concurrency {concurrency}) failed ({status}); see {}", stderr.display());
    let timing = std::fs::read_to_string(&report)?;
    let fields: Vec<f64> =
        timing.lines().last().unwrap_or("").split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    ensure!(fields.len() == 4, "GNU time printed {timing:?}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&stdout)?).context("run summary")?;
    ensure!(summary["status"] == "completed", "the mission did not complete: {}", summary["status"]);
    let decided = summary["counts"]["decided"].as_u64().unwrap_or(0);
    ensure!(decided == tasks as u64, "{decided} of {tasks} tasks decided");
    let calls = summary["tokens"]["model_calls"].as_u64().unwrap_or(0);
    ensure!(calls == tasks as u64, "{calls} metered model calls for {tasks} tasks");
    Ok((
        TaskRun {
            concurrency,
            tasks,
            wall_s,
            rss_kib: fields[0] as u64,
            cpu_s: fields[2] + fields[3],
            peak_threads,
            ..TaskRun::default()
        },
        summary,
    ))
}

/// Per-task timestamps from `audit log --json`: the in-process span and
/// the median of each phase. An entry's time is taken as it is staged,
/// before its commit, so a phase includes the commit of the entry before.
/// An `audit log --json` entry as `(kind, time_us, payload)`: each posting
/// of a `budget.batch` on its own, any other entry whole.
pub(crate) fn postings_or_entry(e: &Value) -> Vec<(&str, i64, &Value)> {
    let (kind, at) = (e["kind"].as_str().unwrap_or(""), e["time_us"].as_i64().unwrap_or(0));
    match e["payload"]["postings"].as_array() {
        Some(items) if kind == "budget.batch" => items
            .iter()
            .map(|item| (item["kind"].as_str().unwrap_or(""), item["time_us"].as_i64().unwrap_or(at), &item["payload"]))
            .collect(),
        _ => vec![(kind, at, &e["payload"])],
    }
}

fn journal_figures(bench: &Bench, data: &Path, run: &mut TaskRun) -> Result<()> {
    #[derive(Default)]
    struct Task {
        started: Option<i64>,
        reserved: Option<i64>,
        inferred: Option<i64>,
        decided: Option<i64>,
    }
    let mut child = bench
        .conductor()
        .args(["audit", "log", "--json", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let reader = BufReader::new(child.stdout.take().context("stdout")?);
    let mut tasks: BTreeMap<u64, Task> = BTreeMap::new();
    let mut entries = 0;
    for line in reader.lines() {
        let e: Value = serde_json::from_str(&line?)?;
        entries += 1;
        for (kind, at, p) in postings_or_entry(&e) {
            let slot = match kind {
                "task.started" => p["task"].as_u64().map(|t| &mut tasks.entry(t).or_default().started),
                "budget.reserved" => p["for"]["task"].as_u64().map(|t| &mut tasks.entry(t).or_default().reserved),
                "host.infer" => p["task"].as_u64().map(|t| &mut tasks.entry(t).or_default().inferred),
                "task.decided" => p["task"].as_u64().map(|t| &mut tasks.entry(t).or_default().decided),
                _ => None,
            };
            if let Some(slot) = slot {
                slot.get_or_insert(at);
            }
        }
    }
    ensure!(child.wait()?.success(), "audit log failed");
    ensure!(tasks.len() == run.tasks, "the journal has {} tasks, expected {}", tasks.len(), run.tasks);
    type Span = fn(&Task) -> (Option<i64>, Option<i64>);
    let phase = |f: Span| {
        median(
            tasks
                .values()
                .filter_map(|t| match f(t) {
                    (Some(a), Some(b)) => Some(b - a),
                    _ => None,
                })
                .collect(),
        )
    };
    run.started_to_reserved = phase(|t| (t.started, t.reserved));
    run.reserved_to_infer = phase(|t| (t.reserved, t.inferred));
    run.infer_to_decided = phase(|t| (t.inferred, t.decided));
    run.started_to_decided = phase(|t| (t.started, t.decided));
    let first = tasks.values().filter_map(|t| t.started).min().unwrap_or(0);
    let last = tasks.values().filter_map(|t| t.decided).max().unwrap_or(0);
    run.span_s = (last - first) as f64 / 1e6;
    run.entries = entries;
    Ok(())
}

fn tasks_part(bench: &Bench, module: &Path, opts: &Options) -> Result<TasksReport> {
    let root = bench.dir.join("tasks");
    step(&format!("writing {} case files", opts.tasks));
    write_cases(&root.join("cases"), opts.tasks)?;
    write_cases(&root.join("one"), 1)?;
    let mut report = TasksReport::default();

    // Start-up and shutdown alone (this also fills the module cache).
    let one = root.join("one.yaml");
    write_mission(&one, "bench-engine-one", module, "one")?;
    for attempt in 0..2 {
        let data = root.join(format!("data-one-{attempt}"));
        let (run, _) = timed_run(bench, &one, &data, 1, 1, None)?;
        report.startup = run;
    }
    step(&format!("1-task run (start-up and shutdown): {:.3} s", report.startup.wall_s));

    for &c in &opts.concurrency {
        let mission = root.join(format!("c{c}.yaml"));
        write_mission(&mission, &format!("bench-engine-c{c}"), module, "cases")?;
        let data = root.join(format!("data-c{c}"));
        step(&format!("conductor run: {} tasks at concurrency {c}", opts.tasks));
        let (mut run, _) = timed_run(bench, &mission, &data, c, opts.tasks, None)?;
        journal_figures(bench, &data, &mut run)?;
        let (ok, secs, line) = bench.verify(&data)?;
        (run.verify_ok, run.verify_s, run.verify_line) = (ok, secs, line);
        step(&format!(
            "  {:.0} tasks/s whole process, {:.0} in-process, peak RSS {:.0} MB, verify {}",
            run.tasks as f64 / run.wall_s,
            run.tasks as f64 / run.span_s,
            run.rss_kib as f64 / 1024.0,
            if ok { "passed" } else { "FAILED" }
        ));
        report.runs.push(run);
        // The database is several MB per thousand tasks; keep the disk clear.
        if ok {
            std::fs::remove_dir_all(&data)?;
        }
    }

    if bench.strace {
        let c = opts.concurrency.iter().copied().find(|&c| c == 64).or(opts.concurrency.last().copied()).unwrap_or(64);
        let n = opts.tasks.min(2_000);
        let cases = root.join("cases-profile");
        write_cases(&cases, n)?;
        let mission = root.join("profile.yaml");
        write_mission(&mission, "bench-engine-profile", module, "cases-profile")?;
        let data = root.join("data-profile");
        let out = root.join("strace-tasks.txt");
        step(&format!("syscall counts: {n} tasks at concurrency {c} under strace -c"));
        timed_run(bench, &mission, &data, c, n, Some(&out))?;
        let counts = strace_counts(&out)?;
        report.syscalls = Some(Syscalls {
            what: format!("{n} tasks at C={c}"),
            concurrency: c,
            units: n as u64,
            fdatasync: counts.get("fdatasync").copied().unwrap_or((0, 0)),
            pwrite: counts.get("pwrite64").copied().unwrap_or((0, 0)),
        });
    }
    Ok(report)
}

impl TasksReport {
    fn print(&self, opts: &Options) {
        println!(
            "\nTasks: `conductor run` of {} bench-agent cases (one cell, one metered infer, signed durable journal each); \
             scripted model",
            opts.tasks
        );
        println!(
            "{:<7} {:>9} {:>10} {:>11} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8}",
            "C", "wall s", "tasks/s", "in-process", "RSS MB", "threads", "CPU ms/t", "entries/t", "verify", "verify s"
        );
        for r in &self.runs {
            println!(
                "{:<7} {:>9.2} {:>10.0} {:>11.0} {:>9.1} {:>8} {:>9.3} {:>9.1} {:>8} {:>8.2}",
                r.concurrency,
                r.wall_s,
                r.tasks as f64 / r.wall_s,
                r.tasks as f64 / r.span_s,
                r.rss_kib as f64 / 1024.0,
                r.peak_threads,
                r.cpu_s * 1000.0 / r.tasks as f64,
                r.entries as f64 / r.tasks as f64,
                if r.verify_ok { "passed" } else { "FAILED" },
                r.verify_s,
            );
        }
        let s = &self.startup;
        println!(
            "start-up + shutdown (a 1-task run): {:.3} s wall, {:.1} MB peak RSS; `tasks/s` is tasks / whole-process wall, \
             `in-process` is tasks / (first task.started .. last task.decided)",
            s.wall_s,
            s.rss_kib as f64 / 1024.0
        );
        println!(
            "\nper task, medians from the journal's timestamps (µs; an entry is stamped when staged, before its commit):"
        );
        println!(
            "{:<7} {:>18} {:>18} {:>18} {:>18}",
            "C", "started→reserved", "reserved→infer", "infer→decided", "started→decided"
        );
        for r in &self.runs {
            println!(
                "{:<7} {:>18} {:>18} {:>18} {:>18}",
                r.concurrency, r.started_to_reserved, r.reserved_to_infer, r.infer_to_decided, r.started_to_decided
            );
        }
        for r in &self.runs {
            if !r.verify_ok {
                println!("C={}: audit verify FAILED: {}", r.concurrency, r.verify_line);
            }
        }
        if let Some(s) = &self.syscalls {
            let per = |n: u64| n as f64 / s.units as f64;
            println!(
                "syscalls ({}, strace -c): {:.2} fdatasync per task ({} µs each under strace), {:.1} pwrite64 per task",
                s.what,
                per(s.fdatasync.0),
                s.fdatasync.1,
                per(s.pwrite.0)
            );
            if let Some(r) = self.runs.iter().find(|r| r.concurrency == s.concurrency) {
                let syncs = per(s.fdatasync.0);
                if syncs > 0.0 {
                    println!(
                        "  at C={} that is {:.0} durable commits/s, {:.0} µs of wall time per commit (commits are serialised: one writer)",
                        r.concurrency,
                        r.tasks as f64 * syncs / r.span_s,
                        r.span_s * 1e6 / (r.tasks as f64 * syncs)
                    );
                }
            }
        }
    }
}

// -------------------------------------------------------------- gateway

#[derive(Debug, Clone)]
struct Sample {
    status: u16,
    /// The error `code` of a refusal; empty for a 200.
    code: String,
    latency_us: u64,
    /// Budget units charged (from `usage`) for a 200.
    cost: u64,
}

fn chat_body(conn: usize, i: usize) -> Vec<u8> {
    serde_json::json!({"model": MODEL, "max_tokens": MAX_TOKENS,
                       "messages": [{"role": "user", "content": format!("request {i} on connection {conn}: is the applicant eligible")}]})
    .to_string()
    .into_bytes()
}

/// Runs `connections` threads, each on its own keep-alive connection,
/// sending until `until` passes or `remaining` runs out.
fn drive(
    addr: &str,
    key: &str,
    connections: usize,
    until: Option<Instant>,
    remaining: Option<usize>,
) -> Result<(Vec<Sample>, u64, f64)> {
    let remaining = Arc::new(AtomicUsize::new(remaining.unwrap_or(usize::MAX)));
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, key, remaining) = (addr.to_owned(), key.to_owned(), remaining.clone());
            std::thread::spawn(move || -> (Vec<Sample>, u64) {
                let mut conn = Conn::new(&addr);
                let mut samples = Vec::with_capacity(4096);
                let mut errors = 0;
                let mut i = 0;
                loop {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        break;
                    }
                    if remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err() {
                        break;
                    }
                    let body = chat_body(c, i);
                    i += 1;
                    let sent = Instant::now();
                    match conn.post("/v1/chat/completions", &key, &body) {
                        Ok((status, body)) => {
                            let latency_us = sent.elapsed().as_micros() as u64;
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let (code, cost) = if status == 200 {
                                let u = &v["usage"];
                                let cost = u["prompt_tokens"].as_u64().unwrap_or(0) * PROMPT_PRICE
                                    + u["completion_tokens"].as_u64().unwrap_or(0) * COMPLETION_PRICE;
                                (String::new(), cost)
                            } else {
                                (v["error"]["code"].as_str().unwrap_or("?").to_owned(), 0)
                            };
                            samples.push(Sample { status, code, latency_us, cost });
                        }
                        Err(_) => errors += 1,
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (s, e) = t.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        samples.extend(s);
        errors += e;
    }
    Ok((samples, errors, start.elapsed().as_secs_f64()))
}

/// `conductor serve` on a free loopback port.
pub(crate) struct Server {
    /// The process started: the conductor, or strace around it.
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(bench: &Bench, data: &Path, strace_out: Option<&Path>) -> Result<Server> {
        Server::start_with(bench, data, strace_out, &[])
    }

    /// [`Server::start`] with more arguments for `serve` (`--run FILE`).
    pub(crate) fn start_with(
        bench: &Bench,
        data: &Path,
        strace_out: Option<&Path>,
        extra: &[&std::ffi::OsStr],
    ) -> Result<Server> {
        let mut cmd = match strace_out {
            Some(out) => {
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-c", "--seccomp-bpf", "-e", TRACED, "-o"]).arg(out).arg(&bench.bin);
                cmd
            }
            None => bench.conductor(),
        };
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--models")
            .arg(&bench.registry)
            .args(extra)
            .env_remove("CONDUCTOR_DATA")
            .env_remove("CONDUCTOR_MODELS")
            .env_remove("RUST_LOG")
            .envs(bench.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.with_extension("serve.stderr"))?);
        let mut child = cmd.spawn().context("starting conductor serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            bail!("conductor serve printed {line:?} first");
        };
        let pid =
            if strace_out.is_some() { child_of(child.id()).context("conductor under strace")? } else { child.id() };
        Ok(Server { addr: addr.to_owned(), child, pid })
    }

    /// SIGTERM, as an operator stops it, and a clean exit.
    pub(crate) fn stop(mut self) -> Result<()> {
        run(Command::new("kill").args(["-TERM", &self.pid.to_string()]))?;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "conductor serve exited {status} on SIGTERM");
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                bail!("conductor serve did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Debug, Default)]
struct GatewayReport {
    connections: usize,
    requests: usize,
    errors: u64,
    seconds: f64,
    ok: usize,
    statuses: BTreeMap<String, usize>,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    rss_kib: u64,
    /// The throughput key: charged in responses vs settled in the ledger.
    bench_charged: u64,
    bench_settled: u64,
    bench_pending: u64,
    tight_limit: u64,
    tight_sent: usize,
    tight_ok: usize,
    tight_statuses: BTreeMap<String, usize>,
    tight_errors: u64,
    tight_charged: u64,
    tight_settled: u64,
    tight_pending: u64,
    verify_ok: bool,
    verify_line: String,
    syscalls: Option<Syscalls>,
}

fn status_counts(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        let label = if s.code.is_empty() { s.status.to_string() } else { format!("{} {}", s.status, s.code) };
        *counts.entry(label).or_default() += 1;
    }
    counts
}

fn gateway_part(bench: &Bench, opts: &Options) -> Result<GatewayReport> {
    let root = bench.dir.join("gateway");
    std::fs::create_dir_all(&root)?;
    let data = root.join("data");
    let op = root.join("operator.key");
    let op_arg = op.display().to_string();
    step("gateway: operator key, client keys");
    run(bench.conductor().args(["keys", "new", "--role", "operator", "--out", &op_arg]).stdout(Stdio::null()))?;
    bench.ok(&["keys", "register", "--init", &op_arg], &data)?;
    let issue = |name: &str, limit: u64| -> Result<String> {
        let out = bench.ok(
            &["gateway", "issue", "--json", "--name", name, "--limit", &limit.to_string(), "--key", &op_arg],
            &data,
        )?;
        let v: Value = serde_json::from_str(&out).context("gateway issue --json")?;
        Ok(v["key"].as_str().context("key")?.to_owned())
    };
    let bench_key = issue("bench", 1_000_000_000_000)?;
    let tight_key = issue("tight", opts.tight_limit)?;

    let server = Server::start(bench, &data, None)?;
    let mut report =
        GatewayReport { connections: opts.connections, tight_limit: opts.tight_limit, ..Default::default() };
    step(&format!("gateway at {}: warm-up, then {} s at {} connections", server.addr, opts.seconds, opts.connections));
    let (warm, warm_errors, _) = drive(&server.addr, &bench_key, opts.connections, None, Some(opts.connections * 20))?;
    ensure!(
        warm_errors == 0 && warm.iter().all(|s| s.status == 200),
        "warm-up requests failed: {:?}, {warm_errors} transport errors",
        status_counts(&warm)
    );
    let server_cpu = cpu_seconds(&server.pid.to_string()).unwrap_or(0.0);
    let client_cpu = cpu_seconds("self").unwrap_or(0.0);
    let until = Instant::now() + Duration::from_secs(opts.seconds);
    let (timed, errors, seconds) = drive(&server.addr, &bench_key, opts.connections, Some(until), None)?;
    report.server_cpu_s = cpu_seconds(&server.pid.to_string()).unwrap_or(0.0) - server_cpu;
    report.client_cpu_s = cpu_seconds("self").unwrap_or(0.0) - client_cpu;
    report.requests = timed.len();
    report.errors = errors;
    report.seconds = seconds;
    report.ok = timed.iter().filter(|s| s.status == 200).count();
    report.statuses = status_counts(&timed);
    let mut lat: Vec<u64> = timed.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    (report.p50_us, report.p90_us, report.p99_us, report.max_us) =
        (pct(&lat, 0.50), pct(&lat, 0.90), pct(&lat, 0.99), lat.last().copied().unwrap_or(0));
    report.bench_charged = warm.iter().chain(&timed).map(|s| s.cost).sum();
    step(&format!(
        "  {:.0} requests/s ({} in {seconds:.1} s), p50 {:.2} ms, p99 {:.2} ms",
        report.ok as f64 / seconds,
        report.requests,
        report.p50_us as f64 / 1e3,
        report.p99_us as f64 / 1e3
    ));

    step(&format!(
        "tight key: {} requests at {} connections against a limit of {} units",
        opts.tight_requests, opts.connections, opts.tight_limit
    ));
    let (tight, tight_errors, _) = drive(&server.addr, &tight_key, opts.connections, None, Some(opts.tight_requests))?;
    report.tight_sent = tight.len();
    report.tight_ok = tight.iter().filter(|s| s.status == 200).count();
    report.tight_statuses = status_counts(&tight);
    report.tight_errors = tight_errors;
    report.tight_charged = tight.iter().map(|s| s.cost).sum();
    report.rss_kib = proc_status(server.pid, "VmHWM").unwrap_or(0);
    server.stop()?;

    let list: Value =
        serde_json::from_str(&bench.ok(&["gateway", "list", "--json"], &data)?).context("gateway list")?;
    let account = |name: &str| -> Result<(u64, u64)> {
        let k = list.as_array().and_then(|l| l.iter().find(|k| k["name"] == name)).context("key in gateway list")?;
        Ok((k["settled"].as_u64().unwrap_or(0), k["pending"].as_u64().unwrap_or(0)))
    };
    (report.bench_settled, report.bench_pending) = account("bench")?;
    (report.tight_settled, report.tight_pending) = account("tight")?;
    let (ok, _, line) = bench.verify(&data)?;
    (report.verify_ok, report.verify_line) = (ok, line);

    if bench.strace {
        let n = 2_000;
        let data = root.join("data-profile");
        let op2 = root.join("operator-profile.key");
        let op2_arg = op2.display().to_string();
        run(bench.conductor().args(["keys", "new", "--role", "operator", "--out", &op2_arg]).stdout(Stdio::null()))?;
        bench.ok(&["keys", "register", "--init", &op2_arg], &data)?;
        let out = bench.ok(
            &["gateway", "issue", "--json", "--name", "profile", "--limit", "1000000000", "--key", &op2_arg],
            &data,
        )?;
        let key: Value = serde_json::from_str(&out)?;
        let key = key["key"].as_str().context("key")?.to_owned();
        let trace = root.join("strace-gateway.txt");
        step(&format!("syscall counts: {n} gateway requests at {} connections under strace -c", opts.connections));
        let server = Server::start(bench, &data, Some(&trace))?;
        let (samples, _, _) = drive(&server.addr, &key, opts.connections, None, Some(n))?;
        let served = samples.iter().filter(|s| s.status == 200).count() as u64;
        server.stop()?;
        let counts = strace_counts(&trace)?;
        report.syscalls = Some(Syscalls {
            concurrency: 0,
            what: format!(
                "{served} requests (200) at {} connections, start-up and shutdown included",
                opts.connections
            ),
            units: served.max(1),
            fdatasync: counts.get("fdatasync").copied().unwrap_or((0, 0)),
            pwrite: counts.get("pwrite64").copied().unwrap_or((0, 0)),
        });
    }
    Ok(report)
}

impl GatewayReport {
    fn print(&self, _opts: &Options) {
        let rate = self.ok as f64 / self.seconds;
        println!(
            "\nGateway: `conductor serve`, POST /v1/chat/completions (scripted, max_tokens {MAX_TOKENS}), {} keep-alive \
             connections from a Rust load generator on the same machine, {:.1} s",
            self.connections, self.seconds
        );
        println!("{:<58} {:>14}", "row", "value");
        println!("{:<58} {:>14.0}", "metered requests/s (200 OK)", rate);
        println!("{:<58} {:>14}", "requests (status counts)", format!("{:?}", self.statuses));
        println!("{:<58} {:>14}", "transport errors", self.errors);
        println!(
            "{:<58} {:>14}",
            "latency p50 / p90 / p99 / max (ms)",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.1}",
                self.p50_us as f64 / 1e3,
                self.p90_us as f64 / 1e3,
                self.p99_us as f64 / 1e3,
                self.max_us as f64 / 1e3
            )
        );
        println!("{:<58} {:>14.1}", "server peak RSS (MB)", self.rss_kib as f64 / 1024.0);
        let per = |cpu: f64| if self.ok > 0 { cpu * 1e6 / self.ok as f64 } else { 0.0 };
        println!(
            "{:<58} {:>14}",
            "CPU µs per request: server / load generator",
            format!("{:.0} / {:.0}", per(self.server_cpu_s), per(self.client_cpu_s))
        );
        println!(
            "{:<58} {:>14}",
            "throughput key: charged in responses / settled / pending",
            format!("{} / {} / {}", self.bench_charged, self.bench_settled, self.bench_pending)
        );
        println!(
            "{:<58} {:>14}",
            format!("tight key (limit {}): sent / 200 / transport errors", self.tight_limit),
            format!("{} / {} / {}", self.tight_sent, self.tight_ok, self.tight_errors)
        );
        println!("{:<58} {:>14}", "tight key: status counts", format!("{:?}", self.tight_statuses));
        let overspend = self.tight_settled.saturating_sub(self.tight_limit);
        println!(
            "{:<58} {:>14}",
            "tight key: charged in responses / settled / pending",
            format!("{} / {} / {}", self.tight_charged, self.tight_settled, self.tight_pending)
        );
        let exact = self.tight_errors == 0 && self.tight_charged == self.tight_settled;
        println!(
            "{:<58} {:>14}",
            "tight key: overspend (settled - limit, after SIGTERM)",
            if overspend == 0 && self.tight_pending == 0 {
                format!("0{}", if exact { ", exact" } else { "" })
            } else {
                format!("{overspend} OVERSPENT")
            }
        );
        let refused = self.tight_statuses.keys().any(|k| k.contains("insufficient_quota"));
        if !refused {
            println!("  (the tight key was never refused for budget: raise --tight-requests or lower --tight-limit)");
        }
        println!("{:<58} {:>14}", "audit verify afterwards", if self.verify_ok { "passed" } else { "FAILED" });
        if !self.verify_ok {
            println!("  {}", self.verify_line);
        }
        if let Some(s) = &self.syscalls {
            let per = |n: u64| n as f64 / s.units as f64;
            println!(
                "syscalls ({}, strace -c): {:.2} fdatasync per request ({} µs each under strace), {:.1} pwrite64 per request",
                s.what,
                per(s.fdatasync.0),
                s.fdatasync.1,
                per(s.pwrite.0)
            );
            if per(s.fdatasync.0) > 0.0 && rate > 0.0 {
                println!(
                    "  at {rate:.0} requests/s that is {:.0} durable commits/s, {:.0} µs of wall time per commit",
                    rate * per(s.fdatasync.0),
                    1e6 / (rate * per(s.fdatasync.0))
                );
            }
        }
    }
}

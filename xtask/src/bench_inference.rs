//! `cargo xtask bench-inference`: one GGUF file, one prompt, greedy
//! decoding, measured through llama.cpp (llama-cpp-python), mistral.rs
//! called directly (`inference/examples/bench_mistralrs.rs`) and the real
//! conductor binary running a mission of `bench-agent` cells at several
//! concurrencies. Prints one table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{MODEL_FILE, cargo_command, python, run, step, target_dir, test_build_args};

/// The user message every engine gets. With SmolLM2's chat template (its
/// default system message included) it renders to 56 prompt tokens, and
/// greedy decoding runs past 56 completion tokens.
pub const PROMPT: &str = "Write a short story about a lighthouse keeper who finds a message in a bottle. \
                          Describe the storm, the bottle and his feelings.";
pub const MAX_TOKENS: u32 = 56;

/// llama-cpp-python, pinned; built from source with the host's CPU
/// features (GGML_NATIVE), as the conductor is built with target-cpu=native.
pub const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";
const LLAMA_CMAKE_ARGS: &str = "-DGGML_NATIVE=ON";
const LLAMA_SCRIPT: &str = "xtask/bench/llama_cpp_bench.py";
/// llama.cpp's threads: this machine's two cores, as the issue measured.
const LLAMA_THREADS: usize = 2;

#[derive(Debug, Clone)]
pub struct Options {
    pub requests: usize,
    pub warmup: usize,
    pub concurrency: Vec<u16>,
    /// Cases per conductor run at concurrency C > 1: `queue × C`.
    pub queue: usize,
    /// Also send this many requests at once to mistral.rs directly
    /// (batched by its scheduler) and check the answers (0: skip).
    pub batched: usize,
    pub skip_llama: bool,
    /// Extra environment for mistral.rs direct and the conductor (tuning
    /// knobs such as RAYON_NUM_THREADS or CANDLE_DEQUANTIZE_ALL).
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

/// One row of the table.
#[derive(Debug, Default, Clone)]
struct Row {
    name: String,
    prompt_tokens: f64,
    completion_tokens: f64,
    /// Seconds from request to answer, queueing included.
    latency_s: f64,
    /// The engine's own decode timing (n-1 decode steps over their time);
    /// None where the engine's timings are not visible (through the conductor).
    decode_tok_s: Option<f64>,
    /// Completion tokens over the wall time of the whole measured run.
    aggregate_tok_s: f64,
    note: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// Runs a command and parses the last line of its stdout as JSON.
fn json_of(cmd: &mut Command) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        eprintln!("    {line}");
    }
    ensure!(out.status.success(), "{cmd:?} failed ({})", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("no JSON line on stdout")?;
    serde_json::from_str(last).with_context(|| format!("parsing {last}"))
}

fn install_llama_cpp(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".cache/bench-venv");
    let python_bin = venv.join("bin/python");
    let marker = venv.join(".installed");
    let wanted = format!("{LLAMA_CPP_PYTHON} CMAKE_ARGS={LLAMA_CMAKE_ARGS}");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        step(&format!("{LLAMA_CPP_PYTHON} present in {}", venv.display()));
        return Ok(python_bin);
    }
    step(&format!(
        "installing {LLAMA_CPP_PYTHON} from PyPI into {} (compiles llama.cpp with {LLAMA_CMAKE_ARGS}: minutes)",
        venv.display()
    ));
    if !python_bin.is_file() {
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&python_bin)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir", LLAMA_CPP_PYTHON])
        .env("CMAKE_ARGS", LLAMA_CMAKE_ARGS)
        .env("CMAKE_BUILD_PARALLEL_LEVEL", std::thread::available_parallelism().map_or(2, usize::from).to_string()))?;
    std::fs::write(&marker, wanted)?;
    Ok(python_bin)
}

fn sequential_row(name: &str, v: &Value) -> Row {
    let s = &v["sequential"];
    Row {
        name: name.to_owned(),
        prompt_tokens: f(s, "prompt_tokens"),
        completion_tokens: f(s, "completion_tokens"),
        latency_s: f(s, "wall_s_per_request"),
        decode_tok_s: Some(f(s, "decode_tok_s")),
        aggregate_tok_s: f(s, "aggregate_tok_s"),
        note: format!(
            "prompt {:.3} s, decode {:.3} s, {:.2} cores busy, load {} -> {}",
            f(s, "prompt_s"),
            f(s, "decode_s"),
            f(s, "cpu_cores_used"),
            s["load_before"].as_str().unwrap_or(""),
            s["load_after"].as_str().unwrap_or("")
        ),
    }
}

/// One conductor run of `cases` bench-agent tasks at `concurrency`.
fn conductor_run(
    bin: &Path,
    dir: &Path,
    module: &Path,
    model_dir: &Path,
    env: &[(String, String)],
    concurrency: u16,
    cases: usize,
) -> Result<Row> {
    let run_dir = dir.join(format!("c{concurrency}"));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let case_dir = run_dir.join("cases");
    std::fs::create_dir_all(&case_dir)?;
    for i in 0..cases {
        let case = json!({"id": format!("b{i:03}"), "prompt": PROMPT, "max_tokens": MAX_TOKENS});
        std::fs::write(case_dir.join(format!("b{i:03}.json")), case.to_string())?;
    }
    let mission = run_dir.join("mission.yaml");
    std::fs::write(
        &mission,
        format!(
            "name: bench-inference-c{concurrency}\n\
             budget: {{ limit: 100000000 }}\n\
             models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 1 }} }}\n\
             agents:\n  - name: bench\n    module: {}\n    model: smollm2-135m\n    \
             limits: {{ wall_ms: 3600000, max_tokens: {MAX_TOKENS}, host_calls: 4 }}\n\
             tasks: {{ agent: bench, dir: cases }}\n",
            module.display()
        ),
    )?;
    let data = run_dir.join("data");
    let load_before = load_average();
    let start = std::time::Instant::now();
    let out = Command::new(bin)
        .arg("run")
        .arg(&mission)
        .arg("--data")
        .arg(&data)
        .args(["--json", "--concurrency", &concurrency.to_string()])
        .arg("--model-dir")
        .arg(model_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .context("running the conductor")?;
    let wall = start.elapsed().as_secs_f64();
    ensure!(out.status.success(), "conductor run failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).context("run summary")?;
    let decided = summary["counts"]["decided"].as_u64().unwrap_or(0);
    ensure!(decided == cases as u64, "{decided} of {cases} tasks decided: {summary}");

    // Per task, from the journal's timestamps: task.started -> task.decided
    // (the whole task: cell, prompt count, reservation, call, journal) and
    // budget.reserved -> host.infer (the model call alone, queueing for the
    // model included).
    let log = Command::new(bin).args(["audit", "log", "--json", "--data"]).arg(&data).output()?;
    ensure!(log.status.success(), "audit log failed: {}", String::from_utf8_lossy(&log.stderr));
    #[derive(Default, Debug)]
    struct Task {
        started: Option<i64>,
        reserved: Option<i64>,
        inferred: Option<i64>,
        decided: Option<i64>,
        prompt_tokens: u64,
        completion_tokens: u64,
        text: String,
    }
    let mut tasks: BTreeMap<u64, Task> = BTreeMap::new();
    for line in String::from_utf8_lossy(&log.stdout).lines() {
        let e: Value = serde_json::from_str(line)?;
        let task_of = |v: &Value| v["task"].as_u64();
        for (kind, at, p) in crate::bench_engine::postings_or_entry(&e) {
            match kind {
                "task.started" => tasks.entry(task_of(p).context("task")?).or_default().started = Some(at),
                "budget.reserved" => {
                    if let Some(t) = task_of(&p["for"]) {
                        tasks.entry(t).or_default().reserved = Some(at);
                    }
                }
                "host.infer" => {
                    let t = tasks.entry(task_of(p).context("task")?).or_default();
                    t.inferred = Some(at);
                    t.prompt_tokens = p["prompt_tokens"].as_u64().unwrap_or(0);
                    t.completion_tokens = p["completion_tokens"].as_u64().unwrap_or(0);
                    t.text = p["text"].as_str().unwrap_or("").to_owned();
                }
                "task.decided" => tasks.entry(task_of(p).context("task")?).or_default().decided = Some(at),
                _ => {}
            }
        }
    }
    ensure!(tasks.len() == cases, "the journal has {} tasks, expected {cases}", tasks.len());
    // At concurrency 1 the first task also waits for the model to load
    // (its prompt count loads it): it is the warm-up, left out.
    let measured: Vec<&Task> =
        if concurrency == 1 { tasks.values().skip(1).collect() } else { tasks.values().collect() };
    ensure!(!measured.is_empty(), "no measured tasks");
    let secs = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e6,
        _ => 0.0,
    };
    let n = measured.len() as f64;
    let task_s = measured.iter().map(|t| secs(t.started, t.decided)).sum::<f64>() / n;
    let call_s = measured.iter().map(|t| secs(t.reserved, t.inferred)).sum::<f64>() / n;
    let first = if concurrency == 1 {
        measured.iter().filter_map(|t| t.started).min()
    } else {
        // The first call made: the model was loaded by then.
        measured.iter().filter_map(|t| t.reserved).min()
    };
    let last = measured.iter().filter_map(|t| t.decided).max();
    let span = secs(first, last);
    let completion: u64 = measured.iter().map(|t| t.completion_tokens).sum();
    let texts: std::collections::BTreeSet<&str> = measured.iter().map(|t| t.text.as_str()).collect();
    Ok(Row {
        name: format!("conductor C={concurrency} ({cases} cases)"),
        prompt_tokens: measured.iter().map(|t| t.prompt_tokens as f64).sum::<f64>() / n,
        completion_tokens: completion as f64 / n,
        latency_s: task_s,
        decode_tok_s: None,
        aggregate_tok_s: completion as f64 / span,
        note: format!(
            "model call {call_s:.3} s (reserve -> settle), task {task_s:.3} s, {} distinct answers, process wall {wall:.1} s, load {load_before} -> {}",
            texts.len(),
            load_average()
        ),
    })
}

pub fn inference(root: &Path, opts: &Options) -> Result<()> {
    if opts.requests == 0 {
        bail!("--requests must be at least 1");
    }
    crate::fetch_model(root)?;
    step("building the bench agent and the conductor (release, native CPU features)");
    crate::build_agents(root)?;
    run(cargo_command().args(test_build_args(&["--no-run"])))?;
    run(cargo_command().args(["build", "--release", "--locked", "-p", "inference", "--example", "bench_mistralrs"]))?;
    let llama_python = if opts.skip_llama { None } else { Some(install_llama_cpp(root)?) };

    if opts.dir.exists() {
        std::fs::remove_dir_all(&opts.dir)?;
    }
    std::fs::create_dir_all(&opts.dir)?;
    let dir = std::fs::canonicalize(&opts.dir)?;
    // Copies, so rebuilding the project during a long run changes nothing.
    let bin = dir.join("conductor");
    std::fs::copy(target_dir(root).join("release/conductor"), &bin)?;
    let direct = dir.join("bench_mistralrs");
    std::fs::copy(target_dir(root).join("release/examples/bench_mistralrs"), &direct)?;
    let model_dir = root.join(".cache/models");
    let model = model_dir.join(MODEL_FILE);
    let module = root.join("cells/guests/bench-agent/bench.wasm");

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut rows = Vec::new();
    let mut texts = Vec::new();

    if let Some(python_bin) = &llama_python {
        step(&format!(
            "llama.cpp ({LLAMA_CPP_PYTHON}, {LLAMA_THREADS} threads): {} warm-up, {} timed",
            opts.warmup, opts.requests
        ));
        let v = json_of(
            Command::new(python_bin)
                .arg(root.join(LLAMA_SCRIPT))
                .arg("--model")
                .arg(&model)
                .args(["--prompt", PROMPT, "--max-tokens", &MAX_TOKENS.to_string()])
                .args(["--threads", &LLAMA_THREADS.to_string()])
                .args(["--warmup", &opts.warmup.to_string(), "--requests", &opts.requests.to_string()]),
        )?;
        texts.push(("llama.cpp", v["text"].as_str().unwrap_or("").to_owned()));
        rows.push(sequential_row("llama.cpp direct", &v));
    }

    step(&format!("mistral.rs direct: {} warm-up, {} timed", opts.warmup, opts.requests));
    let mut cmd = Command::new(&direct);
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    cmd.arg("--model")
        .arg(&model)
        .args(["--prompt", PROMPT, "--max-tokens", &MAX_TOKENS.to_string(), "--json"])
        .args(["--warmup", &opts.warmup.to_string(), "--requests", &opts.requests.to_string()]);
    if opts.batched > 0 {
        cmd.args(["--concurrent", &opts.batched.to_string()]);
    }
    let v = json_of(&mut cmd)?;
    texts.push(("mistral.rs", v["text"].as_str().unwrap_or("").to_owned()));
    rows.push(sequential_row("mistral.rs direct", &v));
    let c = &v["concurrent"];
    if c.is_object() {
        rows.push(Row {
            name: format!("mistral.rs direct, {} at once", opts.batched),
            prompt_tokens: f(c, "prompt_tokens"),
            completion_tokens: f(c, "completion_tokens"),
            latency_s: f(c, "wall_s_per_request"),
            decode_tok_s: Some(f(c, "decode_tok_s")),
            aggregate_tok_s: f(c, "aggregate_tok_s"),
            note: format!(
                "batched by mistral.rs: {} of {} answers differ from the sequential one, {} errors, {:.2} cores busy",
                c["mismatches"],
                opts.batched,
                c["errors"],
                f(c, "cpu_cores_used")
            ),
        });
    }

    for &concurrency in &opts.concurrency {
        let cases = if concurrency == 1 { opts.requests + 1 } else { opts.queue.max(1) * usize::from(concurrency) };
        step(&format!("conductor run, concurrency {concurrency}, {cases} cases"));
        rows.push(conductor_run(&bin, &dir, &module, &model_dir, &opts.env, concurrency, cases)?);
    }

    let llama = rows.iter().find(|r| r.name == "llama.cpp direct").map(|r| r.aggregate_tok_s);
    let mistral = rows.iter().find(|r| r.name == "mistral.rs direct").cloned();
    println!(
        "\nbench-inference: {MODEL_FILE}, greedy, max_tokens {MAX_TOKENS}; {cpu}, {cores} cores; {} timed requests after {} warm-up",
        opts.requests, opts.warmup
    );
    if !opts.env.is_empty() {
        let env: Vec<String> = opts.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("environment for mistral.rs direct and the conductor: {}", env.join(" "));
    }
    println!(
        "{:<34} {:>7} {:>7} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "row", "prompt", "compl", "s/request", "decode/s", "aggr tok/s", "x llama", "x mrs"
    );
    for r in &rows {
        let ratio = |base: Option<f64>| {
            base.filter(|b| *b > 0.0).map_or("-".to_owned(), |b| format!("{:.2}", r.aggregate_tok_s / b))
        };
        println!(
            "{:<34} {:>7.1} {:>7.1} {:>10.3} {:>9} {:>10.1} {:>9} {:>9}",
            r.name,
            r.prompt_tokens,
            r.completion_tokens,
            r.latency_s,
            r.decode_tok_s.map_or("-".to_owned(), |d| format!("{d:.1}")),
            r.aggregate_tok_s,
            ratio(llama),
            ratio(mistral.as_ref().map(|m| m.aggregate_tok_s)),
        );
    }
    println!();
    for r in &rows {
        println!("  {}: {}", r.name, r.note);
    }
    if let (Some(m), Some(c1)) = (&mistral, rows.iter().find(|r| r.name.starts_with("conductor C=1 "))) {
        let per_request = 1.0 - m.latency_s / c1.latency_s;
        let throughput = 1.0 - c1.aggregate_tok_s / m.aggregate_tok_s;
        println!(
            "\nconductor overhead at C=1 vs mistral.rs direct: {:.1}% per request (task time vs request time), {:.1}% in aggregate tok/s (target: <= 3%)",
            per_request * 100.0,
            throughput * 100.0
        );
    }
    if let (Some(l), Some(m)) = (rows.iter().find(|r| r.name == "llama.cpp direct"), &mistral) {
        println!(
            "mistral.rs direct vs llama.cpp: {:.2}x the time per request, {:.2}x the decode tok/s",
            m.latency_s / l.latency_s,
            m.decode_tok_s.unwrap_or(0.0) / l.decode_tok_s.unwrap_or(1.0)
        );
    }
    for (engine, text) in &texts {
        println!("{engine} answer: {text:?}");
    }
    Ok(())
}

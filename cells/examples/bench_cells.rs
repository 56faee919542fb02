//! Cell benchmark: start (instantiate a compiled module and run a task),
//! host-call round trip, and density (cells held alive at once, resident
//! memory per cell). Prints one table to compare run to run.
//!
//! ```text
//! cargo xtask build-agents   # builds cells/guests/*/…wasm
//! cargo run --release -p cells --example bench_cells -- [--iterations 20000] [--live 10000] [--rows start,calls,density]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cells::{CellEngine, CellEnv, CellHost, CellLimits, Completion, EngineSettings, Fact, InferRequest};

// The allocator the conductor binary runs cells under.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A host that answers at once, so the figures are the cell's own cost.
struct NullHost;

impl CellHost for NullHost {
    fn infer(&mut self, _: InferRequest) -> Result<Completion, String> {
        Err("none".into())
    }
    fn recall(&mut self, _: String, _: Option<i64>) -> Result<Vec<Fact>, String> {
        Ok(Vec::new())
    }
    fn remember(&mut self, _: String, _: String, _: String, _: Option<i64>) -> Result<(), String> {
        Ok(())
    }
    fn request_review(&mut self, _: String, _: String) -> Result<(), String> {
        Ok(())
    }
    fn log(&mut self, _: String) {}
}

#[derive(Debug, clap::Parser)]
struct Args {
    /// Tasks per row.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Rows to run: any of start, calls, density.
    #[arg(long, value_delimiter = ',', default_value = "start,calls,density")]
    rows: Vec<String>,
    /// Cells to hold alive at once for the density row.
    #[arg(long, default_value_t = 10_000)]
    live: u32,
}

/// This process's resident memory, from /proc (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    // At run time: `cargo run` sets it, and a shared target directory may
    // hold a binary built in another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo");
    let guests = PathBuf::from(manifest).join("guests");
    let engine = CellEngine::new().expect("engine");
    let echo = engine.load_file(&guests.join("echo-agent/echo.wasm")).expect("build agents first");
    let hostile = engine.load_file(&guests.join("hostile-agent/hostile.wasm")).expect("build agents first");
    let limits = CellLimits {
        memory_bytes: 16 << 20,
        fuel: 100_000_000,
        wall_ms: 10_000,
        host_calls: 100_000,
        call_arg_bytes_max: CellLimits::CALL_ARG_BYTES_DEFAULT,
        output_bytes_max: CellLimits::OUTPUT_BYTES_DEFAULT,
    };
    let env = CellEnv { clock_start_us: 0, seed: [1; 32] };
    println!("bench_cells: wasmtime pooling allocator, one store per task, {} tasks per row", args.iterations);
    println!("{:<44} {:>10} {:>10} {:>10}", "row", "p50", "p99", "mean");
    let row = |what: &str, mut v: Vec<Duration>| {
        v.sort_unstable();
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!("{what:<44} {:>10.1?} {:>10.1?} {:>10.1?}", percentile(&v, 0.5), percentile(&v, 0.99), mean);
    };
    let wanted = |row: &str| args.rows.iter().any(|r| r == row);
    // Warm up.
    for _ in 0..100 {
        let _ = engine.run(&echo, Box::new(NullHost), &limits, &env, "{}");
    }
    if wanted("start") {
        let all = Instant::now();
        let starts: Vec<Duration> = (0..args.iterations)
            .map(|_| {
                let t = Instant::now();
                engine.run(&echo, Box::new(NullHost), &limits, &env, "{}").expect("echo");
                t.elapsed()
            })
            .collect();
        let sustained = args.iterations as f64 / all.elapsed().as_secs_f64();
        row("cell start: instantiate + echo task (1 call)", starts);
        let bare: Vec<Duration> = (0..args.iterations)
            .map(|_| {
                let t = Instant::now();
                drop(engine.start(&echo, Box::new(NullHost), &limits, &env).expect("echo"));
                t.elapsed()
            })
            .collect();
        row("  instantiate only (no task)", bare);
        println!("{:<44} {sustained:>10.0} cells/s, one thread (teardown on its own)", "  sustained, back to back");
    }
    // Host-call round trip: spin-calls floods `log` until the call limit;
    // the per-call cost is the difference between N and 0 calls.
    if wanted("calls") {
        let calls = 1000u32;
        let flood = CellLimits { host_calls: calls, ..limits.clone() };
        let input = "{\"behave\":\"spin-calls\"}";
        let floods: Vec<Duration> = (0..(args.iterations / 20).max(10))
            .map(|_| {
                let t = Instant::now();
                let _ = engine.run(&hostile, Box::new(NullHost), &flood, &env, input);
                t.elapsed() / calls
            })
            .collect();
        row("host call round trip (log, 1000 per task)", floods);
    }
    if wanted("density") {
        density(&guests, args.live, &limits, &env);
    }
    println!();
    println!("targets (#5): start p50 <= 10 µs, p99 <= 50 µs; >= 10,000 live cells in <= 4 GiB resident");
}

/// Starts `live` echo cells in an engine sized for them and holds them all,
/// then runs each one's task. Resident memory is read before and after.
fn density(guests: &std::path::Path, live: u32, limits: &CellLimits, env: &CellEnv) {
    let settings = EngineSettings { live_cells: live, cell_memory_max: limits.memory_bytes, module_cache: None };
    let engine = CellEngine::with_settings(&settings).expect("a pool for the live cells");
    let echo = engine.load_file(&guests.join("echo-agent/echo.wasm")).expect("build agents first");
    // One task first, so the one-off costs (code pages, the first slot)
    // are in the baseline rather than charged to the cells.
    engine.run(&echo, Box::new(NullHost), limits, env, "{}").expect("echo");
    let before = rss_bytes();
    let t = Instant::now();
    let cells: Vec<_> = (0..live)
        .map(|i| engine.start(&echo, Box::new(NullHost), limits, env).unwrap_or_else(|e| panic!("cell {i}: {e}")))
        .collect();
    let started = t.elapsed();
    let held = rss_bytes();
    let per_cell = held.saturating_sub(before) / u64::from(live.max(1));
    let t = Instant::now();
    let decided = cells.into_iter().map(|c| c.run("{}")).filter(Result::is_ok).count();
    let ran = t.elapsed();
    assert_eq!(decided, live as usize, "every held cell ran its task");
    println!("{:<44} {:>10} {:>10} {:>10}", "density", "cells", "RSS", "per cell");
    println!(
        "{:<44} {:>10} {:>9.2}G {:>9.1}K",
        format!("held at once (start {started:.0?}, run {ran:.0?})"),
        live,
        held as f64 / f64::from(1u32 << 30),
        per_cell as f64 / 1024.0
    );
}

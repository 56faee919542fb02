//! Cell benchmark: start (instantiate a compiled module and run a task)
//! and host-call round trip. Prints one table to compare run to run.
//! (Live-cell density is not measured yet: the engine's pool holds 128.)
//!
//! ```text
//! cargo xtask build-agents   # builds cells/guests/*/…wasm
//! cargo run --release -p cells --example bench_cells -- [--iterations 2000]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cells::{CellEngine, CellEnv, CellHost, CellLimits, Completion, Fact, InferRequest};

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
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
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
    // Warm up.
    for _ in 0..100 {
        let _ = engine.run(&echo, Box::new(NullHost), &limits, &env, "{}");
    }
    let starts: Vec<Duration> = (0..args.iterations)
        .map(|_| {
            let t = Instant::now();
            engine.run(&echo, Box::new(NullHost), &limits, &env, "{}").expect("echo");
            t.elapsed()
        })
        .collect();
    row("cell start: instantiate + echo task (1 call)", starts);
    // Host-call round trip: spin-calls floods `log` until the call limit;
    // the per-call cost is the difference between N and 0 calls.
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
    println!();
    println!("targets (#5): start p50 <= 10 µs, p99 <= 50 µs");
}

//! Engine sizing: an engine holds exactly as many live cells as it was
//! sized for, refuses the next one with a failure rather than a crash,
//! and a dense pool (slots shrunk to the cell memory cap) still enforces
//! that cap and runs tasks correctly.

mod common;

use cells::{CellEngine, CellEnv, CellFailure, CellLimits, EngineSettings};
use common::{NullHost, guest};

fn limits(memory_bytes: u64) -> CellLimits {
    CellLimits {
        memory_bytes,
        fuel: 200_000_000,
        wall_ms: 20_000,
        host_calls: 20,
        call_arg_bytes_max: CellLimits::CALL_ARG_BYTES_DEFAULT,
        output_bytes_max: CellLimits::OUTPUT_BYTES_DEFAULT,
    }
}

const ENV: CellEnv = CellEnv { clock_start_us: 0, seed: [7; 32] };

#[test]
fn an_engine_holds_its_live_cells_and_refuses_one_more_without_crashing() {
    // 3,000 cells with two memory slots each would reserve 24 TiB at
    // 4 GiB a slot, so this pool is a dense one: 16 MiB slots.
    let live = 3_000;
    let settings = EngineSettings { live_cells: live, cell_memory_max: 16 << 20, module_cache: None };
    let engine = CellEngine::with_settings(&settings).expect("engine");
    let echo = engine.load_file(&guest("echo-agent/echo.wasm")).expect("echo");
    let limits = limits(16 << 20);
    let cells: Vec<_> = (0..live)
        .map(|i| engine.start(&echo, Box::new(NullHost), &limits, &ENV).unwrap_or_else(|e| panic!("cell {i}: {e}")))
        .collect();
    match engine.start(&echo, Box::new(NullHost), &limits, &ENV) {
        Err(CellFailure::Instantiation(message)) => {
            assert!(message.contains("maximum concurrent") || message.contains("limit"), "{message}")
        }
        other => panic!("cell {} should not fit: {other:?}", live + 1),
    }
    let decided = cells.into_iter().map(|c| c.run("hi")).filter(|d| d.as_ref().is_ok_and(|d| d.reason == "hi")).count();
    assert_eq!(decided, live as usize, "every held cell runs its task");
    // The slots are free again.
    let d = engine.run(&echo, Box::new(NullHost), &limits, &ENV, "again").expect("a slot is free");
    assert_eq!(d.reason, "again");
}

#[test]
fn a_dense_pool_still_enforces_the_memory_cap() {
    let settings = EngineSettings { live_cells: 5_000, cell_memory_max: 16 << 20, module_cache: None };
    let engine = CellEngine::with_settings(&settings).expect("engine");
    let hostile = engine.load_file(&guest("hostile-agent/hostile.wasm")).expect("hostile");
    // The agent's own limit is above the pool's slot: the slot wins.
    let failure = engine
        .run(&hostile, Box::new(NullHost), &limits(64 << 20), &ENV, r#"{"behave":"grow"}"#)
        .expect_err("growth past the slot is refused");
    assert_eq!(failure, CellFailure::MemoryExceeded, "{failure}");
    let failure = engine
        .run(&hostile, Box::new(NullHost), &limits(8 << 20), &ENV, r#"{"behave":"grow"}"#)
        .expect_err("growth past the cell limit is refused");
    assert_eq!(failure, CellFailure::MemoryExceeded, "{failure}");
}

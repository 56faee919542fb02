//! The hostile suite at the cell level: each way a module can misbehave
//! ends its own task with a distinct, named failure, the engine stays
//! usable, and what a cell can observe (clocks, randomness) comes from its
//! `CellEnv` alone. Uses the guest modules `cargo xtask build-agents`
//! builds, and a scripted host (no model, no journal).

mod common;

use std::sync::{Arc, Mutex};

use cells::{
    AgentModule, CellEngine, CellEnv, CellError, CellFailure, CellHost, CellLimits, Completion, Decision, Fact,
    InferRequest,
};
use common::guest;

/// Answers host calls without a model: inference is refused, memory is
/// empty, logs are kept.
#[derive(Clone, Default)]
struct ScriptedHost {
    logs: Arc<Mutex<Vec<String>>>,
}

impl CellHost for ScriptedHost {
    fn infer(&mut self, _: InferRequest) -> Result<Completion, String> {
        Err("no model in this test".into())
    }
    fn recall(&mut self, _: String, _: Option<i64>) -> Result<Vec<Fact>, String> {
        Ok(Vec::new())
    }
    fn remember(&mut self, _: String, _: String, _: String, _: Option<i64>) -> Result<(), String> {
        Ok(())
    }
    fn request_review(&mut self, gate: String, _: String) -> Result<(), String> {
        Err(format!("no gate `{gate}` here"))
    }
    fn log(&mut self, message: String) {
        self.logs.lock().expect("logs").push(message);
    }
}

fn limits() -> CellLimits {
    CellLimits {
        memory_bytes: 16 << 20,
        fuel: 200_000_000,
        wall_ms: 20_000,
        host_calls: 20,
        call_arg_bytes_max: CellLimits::CALL_ARG_BYTES_DEFAULT,
        output_bytes_max: CellLimits::OUTPUT_BYTES_DEFAULT,
    }
}

fn env(seed: u8) -> CellEnv {
    CellEnv { clock_start_us: 1_800_000_000_000_000, seed: [seed; 32] }
}

fn run(engine: &CellEngine, module: &AgentModule, behave: &str, env: &CellEnv) -> Result<Decision, CellFailure> {
    let input = format!("{{\"id\":\"t\",\"behave\":\"{behave}\"}}");
    engine.run(module, Box::new(ScriptedHost::default()), &limits(), env, &input)
}

fn details(d: &Decision) -> serde_json::Value {
    serde_json::from_str(&d.details).expect("details are JSON")
}

#[test]
fn every_hostile_behaviour_fails_alone_with_its_own_reason() {
    let engine = CellEngine::new().expect("engine");
    let hostile = engine.load_file(&guest("hostile-agent/hostile.wasm")).expect("hostile module");
    let env = env(1);
    let expect: &[(&str, &str)] = &[
        ("trap", "trap"),
        ("panic", "trap"),
        ("spin", "fuel_exhausted"),
        ("spin-calls", "host_calls_exceeded"),
        ("grow", "memory_exceeded"),
        ("recurse", "stack_overflow"),
        ("huge-arg", "call_argument_too_large"),
    ];
    for (behave, code) in expect {
        let failure = run(&engine, &hostile, behave, &env).expect_err(behave);
        assert_eq!(failure.code(), *code, "{behave}: {failure}");
        // The engine is unharmed: a good task right after succeeds.
        let ok = run(&engine, &hostile, "echo", &env).expect("echo after a hostile task");
        assert_eq!(ok.outcome, "echo");
    }
}

#[test]
fn wasi_gives_no_files_sockets_names_environment_or_arguments() {
    let engine = CellEngine::new().expect("engine");
    let hostile = engine.load_file(&guest("hostile-agent/hostile.wasm")).expect("hostile module");
    let d = run(&engine, &hostile, "escape", &env(1)).expect("escape attempts are errors, not traps");
    let got = details(&d);
    for key in ["file_read", "file_write", "dir_list", "tcp", "udp", "dns"] {
        let text = got[key].as_str().unwrap_or_default();
        assert!(text.starts_with("refused"), "{key} was not refused: {got}");
    }
    assert_eq!(got["env_vars"], 0, "{got}");
    assert_eq!(got["args"], 0, "{got}");
}

#[test]
fn clocks_and_randomness_come_from_the_cell_env_alone() {
    let engine = CellEngine::new().expect("engine");
    let hostile = engine.load_file(&guest("hostile-agent/hostile.wasm")).expect("hostile module");
    let first = details(&run(&engine, &hostile, "clock-random", &env(7)).expect("observe"));
    // The wall clock's first reading is the env's start.
    assert_eq!(first["wall_us"], 1_800_000_000_000_000u64, "{first}");
    // Same env, same observations, however the host's clock moved.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = details(&run(&engine, &hostile, "clock-random", &env(7)).expect("observe again"));
    assert_eq!(first, again);
    // Another seed, other random numbers (same clock).
    let other = details(&run(&engine, &hostile, "clock-random", &env(8)).expect("other seed"));
    assert_ne!(first["random"], other["random"]);
    assert_eq!(first["wall_us"], other["wall_us"]);
    // Seeds differ per task and mission, and are stable.
    assert_eq!(CellEnv::seed_for("m", 1), CellEnv::seed_for("m", 1));
    assert_ne!(CellEnv::seed_for("m", 1), CellEnv::seed_for("m", 2));
    assert_ne!(CellEnv::seed_for("m", 1), CellEnv::seed_for("n", 1));
}

#[test]
fn any_bytes_offered_as_a_module_are_an_error_never_a_crash() {
    let engine = CellEngine::new().expect("engine");
    let echo = std::fs::read(guest("echo-agent/echo.wasm")).expect("echo bytes");
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("text".into(), b"hello, not wasm".to_vec()),
        ("core module".into(), core_module),
        ("truncated component".into(), echo[..echo.len() / 2].to_vec()),
    ];
    // Every single-byte corruption of the header and a spread of the body.
    for i in (0..echo.len()).step_by((echo.len() / 64).max(1)).chain(0..16) {
        let mut bytes = echo.clone();
        bytes[i] ^= 0xA5;
        cases.push((format!("byte {i} flipped"), bytes));
    }
    let mut refused = 0;
    for (what, bytes) in &cases {
        match engine.load(what, bytes) {
            Err(CellError::NotAComponent { .. } | CellError::Link { .. }) => refused += 1,
            Err(other) => panic!("{what}: unexpected error kind {other}"),
            // A flip inside a string or a custom section can still leave a
            // valid component; it must then run or fail as a task.
            Ok(module) => {
                let _ = run(&engine, &module, "echo", &env(1));
            }
        }
    }
    assert!(refused >= 4, "the plainly broken inputs are refused ({refused} of {})", cases.len());
    let core = engine.load("core", b"\0asm\x01\0\0\0").expect_err("core module");
    assert!(core.to_string().contains("core wasm module"), "{core}");
}

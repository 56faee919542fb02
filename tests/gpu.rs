//! GPU models on a host that cannot run them, and the GPU package's device
//! script in its CPU mode, here where CI runs (no GPU, the normal CPU
//! build; `cargo xtask build-cuda` checks the CUDA build on this host too).
//!
//! - `conductor models check` reports each model: the CPU model is ready,
//!   a `device: cuda` entry is refused with its cause, exit 7.
//! - `conductor run` with an agent on that cuda model stops before any
//!   task (exit 7): nothing run, nothing charged.
//! - The device script (`gpu-kit/device-bench.sh`, the package's run.sh),
//!   staged as the package lays it out, runs end to end with `--cpu`:
//!   models made by `gpu-kit make-model` from a tokenizer-only file load in
//!   mistral.rs and answer through the metered gateway, parity holds, the
//!   sample mission runs and its journal verifies, and the table is
//!   written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `gpu-kit`, built beside the conductor by the same `cargo test
/// --workspace`.
fn gpu_kit() -> PathBuf {
    let kit = Path::new(env!("CARGO_BIN_EXE_conductor")).with_file_name("gpu-kit");
    assert!(kit.is_file(), "{} is missing: `cargo test --workspace` builds it", kit.display());
    kit
}

fn cuda_entry(name: &str) -> String {
    format!(
        "  {name}:\n    file: {}\n    sha256: {MODEL_SHA256}\n    context_tokens: 2048\n    device: cuda\n",
        model_file().display()
    )
}

#[test]
fn a_cuda_model_on_a_cpu_build_is_refused_by_name_and_the_cpu_model_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("models.yaml");
    priced_registry(&registry, 1, 1, &cuda_entry("smollm2-cuda"));
    let out = run(conductor().args(["models", "check", "--json", "--models"]).arg(&registry));
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = |name: &str| rows.as_array().and_then(|r| r.iter().find(|r| r["model"] == name)).cloned().expect(name);
    assert_eq!(row("smollm2-135m")["ok"], true, "{rows}");
    assert_eq!(row("smollm2-135m")["device"], "cpu");
    let cuda = row("smollm2-cuda");
    assert_eq!(cuda["ok"], false);
    assert!(cuda["error"].as_str().is_some_and(|e| e.contains("built without the `cuda` feature")), "{cuda}");

    // A mission whose agent calls it stops before its first task.
    let mission = dir.path().join("mission.yaml");
    let casework = repo_root().join("missions/examples/casework");
    let yaml = std::fs::read_to_string(casework.join("mission.yaml"))
        .expect("sample mission")
        .replace("smollm2-135m", "smollm2-cuda")
        .replace(
            "module: agent/eligibility.wasm",
            &format!("module: {}", casework.join("agent/eligibility.wasm").display()),
        )
        .replace("dir: cases", &format!("dir: {}", casework.join("cases").display()));
    std::fs::write(&mission, yaml).expect("mission");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--models").arg(&registry));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("cannot use model `smollm2-cuda`") && stderr.contains("cuda"), "{stderr}");
    let log = run(conductor().args(["audit", "log", "--json", "--kind", "task.", "--data"]).arg(&data));
    assert!(!String::from_utf8_lossy(&log.stdout).contains("task.started"), "no task may start");
}

#[test]
fn the_device_script_runs_end_to_end_in_cpu_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The package's layout (cargo xtask build-cuda --package), with this
    // build's binaries.
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("bin")).expect("bin");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_conductor"), pkg.join("bin/conductor")).expect("link");
    std::os::unix::fs::symlink(gpu_kit(), pkg.join("bin/gpu-kit")).expect("link");
    let made = run(Command::new(gpu_kit())
        .args(["make-model", "--tokenizer-only", "--tokenizer-from"])
        .arg(model_file())
        .arg("--out")
        .arg(pkg.join("tokenizer.gguf")));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let casework = repo_root().join("missions/examples/casework");
    let mission = pkg.join("missions/casework");
    std::fs::create_dir_all(mission.join("agent")).expect("dirs");
    std::fs::copy(casework.join("mission.yaml"), mission.join("mission.yaml")).expect("mission");
    std::fs::copy(module("missions/examples/casework/agent/eligibility.wasm"), mission.join("agent/eligibility.wasm"))
        .expect("agent");
    std::fs::create_dir_all(mission.join("cases")).expect("cases");
    for case in std::fs::read_dir(casework.join("cases")).expect("cases") {
        let case = case.expect("case").path();
        std::fs::copy(&case, mission.join("cases").join(case.file_name().expect("name"))).expect("case");
    }
    std::fs::copy(repo_root().join("gpu-kit/device-bench.sh"), pkg.join("run.sh")).expect("script");

    let results = dir.path().join("results");
    let out = run(Command::new("bash")
        .arg(pkg.join("run.sh"))
        .arg("--cpu")
        .arg("--out")
        .arg(&results)
        .arg("--work")
        .arg(dir.path().join("work"))
        .env_remove("CONDUCTOR_DATA")
        .env_remove("CONDUCTOR_MODELS"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));

    let table = std::fs::read_to_string(results.join("table.md")).expect("table.md");
    for model in ["tiny-q4k", "tiny-f16"] {
        let lines = std::fs::read_to_string(results.join(format!("load-{model}.jsonl"))).expect("load results");
        let levels: Vec<serde_json::Value> =
            lines.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        assert_eq!(levels.len(), 2, "concurrency 1 and 8: {lines}");
        for level in &levels {
            assert!(level["completion_tokens"].as_u64().is_some_and(|t| t > 0), "{level}");
            assert!(level["aggregate_tok_s"].as_f64().is_some_and(|t| t > 0.0), "{level}");
        }
        assert!(table.contains(&format!("| {model} |")), "{table}");
    }
    // The same file on the same device: greedy answers are identical.
    assert!(table.contains("4 of 4 prompts agree"), "{table}");
    let mission_line = std::fs::read_to_string(results.join("mission.txt")).expect("mission.txt");
    assert!(mission_line.contains("audit verify exit 0"), "{mission_line}");
    assert!(mission_line.contains("conductor run exit 0"), "{mission_line}");
}

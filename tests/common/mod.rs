//! Shared helpers for the black-box tests: they run the real `conductor`
//! binary against real files in a fresh temporary directory.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// Read at run time (cargo sets it for every test it runs), not with
// `env!`: a target directory shared between checkouts (CI keeps one)
// can reuse a test binary built in another checkout.
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&manifest).parent().expect("conductor/ has a parent").to_owned()
}

pub fn conductor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conductor"));
    cmd.env("CONDUCTOR_MODEL_DIR", repo_root().join(".cache/models"));
    cmd.env_remove("CONDUCTOR_DATA");
    cmd.env_remove("CONDUCTOR_MODELS");
    cmd
}

/// A built guest module; the tests need `cargo xtask setup` to have run.
pub fn module(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` (the README's test command does) first",
        path.display()
    );
    path
}

pub fn model_file() -> PathBuf {
    let path = repo_root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `cargo xtask setup` first", path.display());
    path
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("conductor starts");
    eprintln!(
        "$ {cmd:?}\n-- status {:?}\n-- stdout\n{}\n-- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a mission file whose agent runs `module`, with inline cases.
pub fn write_mission(dir: &Path, name: &str, module: &Path, budget: u64, limits: &str, cases: &str, gates: &str) -> PathBuf {
    let text = format!(
        "name: {name}\n\
         budget:\n  limit: {budget}\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 2\n\
         agents:\n  - name: worker\n    module: {module}\n    model: smollm2-135m\n    limits: {limits}\n\
         tasks:\n  agent: worker\n  inline:\n{cases}\
         {gates}",
        module = module.display(),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write mission");
    path
}

pub fn tasks(summary: &serde_json::Value) -> &Vec<serde_json::Value> {
    summary["tasks"].as_array().expect("tasks array")
}

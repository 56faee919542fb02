//! The scripted model backend (issue #19): a registry entry of `kind:
//! scripted` runs whole missions with no model file on the host, the same
//! way every time, through the product's own router, metering and
//! journal; and it is never chosen unless a registry says so.

mod common;

use std::path::Path;

use common::*;

/// A registry whose `smollm2-135m` is scripted (no file), priced.
fn scripted_registry(path: &Path, reply: Option<&str>) {
    let reply = reply.map(|r| format!("    reply: \"{r}\"\n")).unwrap_or_default();
    std::fs::write(
        path,
        format!(
            "models:\n  smollm2-135m:\n    kind: scripted\n    context_tokens: 2048\n    prompt_price: 1\n    \
             completion_price: 1\n{reply}"
        ),
    )
    .expect("registry");
}

fn bench_mission(dir: &Path, name: &str, cases: usize) -> std::path::PathBuf {
    let bench = module("cells/guests/bench-agent/bench.wasm");
    let cases: String = (0..cases)
        .map(|i| format!("    - {{id: c{i}, prompt: \"case {i}: is the applicant eligible\", max_tokens: 8}}\n"))
        .collect();
    write_mission(dir, name, &bench, 100_000, "{}", &cases, "")
}

/// Runs `mission` on a fresh data dir with the scripted registry and no
/// model directory at all; returns the data dir.
fn run_scripted(dir: &Path, mission: &Path, registry: &Path, data: &str) -> std::path::PathBuf {
    let data = dir.join(data);
    let out = run(conductor()
        .env("CONDUCTOR_MODEL_DIR", dir.join("no-models-here"))
        .arg("run")
        .arg(mission)
        .arg("--models")
        .arg(registry)
        .arg("--data")
        .arg(&data)
        .arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["status"], "completed");
    data
}

#[test]
fn a_scripted_registry_runs_a_mission_with_no_model_file_the_same_way_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry.yaml");
    scripted_registry(&registry, None);
    let mission = bench_mission(dir.path(), "scripted", 6);
    let first = run_scripted(dir.path(), &mission, &registry, "first");
    let second = run_scripted(dir.path(), &mission, &registry, "second");

    let calls = |data: &Path| {
        let mut calls: Vec<(String, u64, u64, u64)> = journal(data, "host.infer")
            .iter()
            .map(|e| {
                let p = &e["payload"];
                let n = |f: &str| p[f].as_u64().unwrap_or_else(|| panic!("{f} in {p}"));
                (p["text"].as_str().expect("text").to_owned(), n("prompt_tokens"), n("completion_tokens"), n("cost"))
            })
            .collect();
        calls.sort();
        calls
    };
    let (a, b) = (calls(&first), calls(&second));
    assert_eq!(a.len(), 6, "one metered call per task");
    assert_eq!(a, b, "the scripted backend is deterministic");
    for (text, prompt, completion, cost) in &a {
        assert!(text.starts_with("scripted reply "), "{text}");
        // 4 framing + 6 words, plus 2 for the generation prompt; the
        // mission prices a prompt token at 1 and a completion token at 2.
        assert_eq!((*prompt, *completion, *cost), (12, 3, 12 + 2 * 3), "{text}");
    }
    let texts: std::collections::BTreeSet<_> = a.iter().map(|c| &c.0).collect();
    assert_eq!(texts.len(), 6, "different prompts get different replies");
    for data in [&first, &second] {
        assert_eq!(run(conductor().args(["audit", "verify", "--data"]).arg(data)).status.code(), Some(0));
        let settled = postings(data, "budget.settled").len();
        assert!(settled > 0, "calls are settled in the journal");
    }
}

#[test]
fn a_scripted_reply_is_cut_at_max_tokens_and_charged_for_what_was_produced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry.yaml");
    scripted_registry(&registry, Some("eligible because the income is under the monthly limit"));
    let mission = bench_mission(dir.path(), "cut", 2);
    let data = run_scripted(dir.path(), &mission, &registry, "data");
    for e in journal(&data, "host.infer") {
        let p = &e["payload"];
        assert_eq!(p["text"], "eligible because the income is under the monthly", "{p}");
        assert_eq!((p["completion_tokens"].as_u64(), p["cost"].as_u64()), (Some(8), Some(12 + 2 * 8)), "{p}");
    }
}

#[test]
fn without_a_registry_that_says_so_nothing_is_scripted() {
    // The embedded registry's model is the real GGUF: with no model
    // directory the run stops before anything is written (exit 7), rather
    // than falling back to anything scripted.
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = bench_mission(dir.path(), "real", 1);
    let data = dir.path().join("data");
    let out = run(conductor()
        .env("CONDUCTOR_MODEL_DIR", dir.path().join("no-models-here"))
        .arg("run")
        .arg(&mission)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));

    // A scripted entry cannot carry a file, and a misspelt kind is named.
    let registry = dir.path().join("bad.yaml");
    std::fs::write(&registry, "models:\n  m:\n    kind: scriptd\n    context_tokens: 64\n").expect("write");
    let out = run(conductor().arg("run").arg(&mission).arg("--models").arg(&registry).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("scriptd"), "{}", stderr(&out));
}

//! Concurrent requests to one model batch: the router admits requests
//! whose prompts render to the same number of tokens as one cohort, which
//! mistral.rs runs as one batch, and the batched answers are exactly the
//! answers the same requests get one at a time (greedy decoding, real
//! model, through the gateway with the official `openai` client).

mod common;

use std::process::Command;

use common::*;

#[test]
fn same_length_requests_run_as_one_batch_and_answer_as_they_would_alone() {
    let python = repo_root().join(".cache/venv-openai/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` installs the openai client", python.display());
    let model = model_file();
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("models.yaml");
    std::fs::write(
        &registry,
        format!(
            "models:\n  smollm2-135m:\n    file: {}\n    sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53\n    \
             context_tokens: 2048\n    prompt_price: 1\n    completion_price: 1\n",
            model.display()
        ),
    )
    .expect("registry");
    let data = dir.path().join("data");
    let operator = dir.path().join("operator.key");
    assert_eq!(run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&operator)).status.code(), Some(0));
    assert_eq!(run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&operator)).status.code(), Some(0));
    let out = run(conductor()
        .args(["gateway", "issue", "--json", "--name", "batch", "--limit", "100000", "--key"])
        .arg(&operator)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = stdout_json(&out)["key"].as_str().expect("key").to_owned();

    let log = dir.path().join("serve.log");
    let server = Served::start_logging(&data, &["--models".as_ref(), registry.as_os_str()], &log);
    let out = run(Command::new(&python)
        .arg(repo_root().join("tests/clients/openai_batch.py"))
        .arg(format!("http://{}/v1", server.addr))
        .arg(&key));
    server.stop();
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(out.status.code(), Some(0), "{}\n{log}", stderr(&out));
    let got = stdout_json(&out);
    let (together, alone) = (got["together"].as_array().expect("together"), got["alone"].as_array().expect("alone"));
    assert_eq!(together.len(), 5, "{got}");

    // The premise: four prompts of one length, one of another.
    let lengths: Vec<u64> = alone.iter().map(|a| a["prompt_tokens"].as_u64().expect("prompt tokens")).collect();
    assert!(lengths[..4].iter().all(|&n| n == lengths[0]) && lengths[4] != lengths[0], "{lengths:?}");
    // Different prompts, so the comparison below means something.
    assert_ne!(alone[0]["text"], alone[1]["text"], "{got}");

    // Batched or alone, every answer is the same, token for token.
    for (i, (t, a)) in together.iter().zip(alone).enumerate() {
        assert_eq!(t, a, "request {i}: batched {t} vs alone {a}");
    }

    // And they were batched: the four same-length requests arrived while
    // the model was busy, and were admitted together.
    let cohorts: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("model cohort admitted"))
        .map(|l| (field(l, "requests"), field(l, "prompt_tokens")))
        .collect();
    assert!(
        cohorts.contains(&(4, lengths[0])),
        "the four {}-token prompts formed one cohort: {cohorts:?}\n{log}",
        lengths[0]
    );
    // Nothing of another length ever joined them.
    assert!(cohorts.contains(&(1, lengths[4])), "{cohorts:?}");
}

/// `name=N` in a log line.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

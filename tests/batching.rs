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
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("models.yaml");
    priced_registry(&registry, 1, 1, "");
    let data = dir.path().join("data");
    let operator = dir.path().join("operator.key");
    registered_operator(&data, &operator);
    let key = issue_gateway_key(&data, &operator, "batch", 100_000);

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
    let cohorts = cohorts_admitted(&log);
    assert!(
        cohorts.contains(&(4, lengths[0])),
        "the four {}-token prompts formed one cohort: {cohorts:?}\n{log}",
        lengths[0]
    );
    // Nothing of another length ever joined them.
    assert!(cohorts.contains(&(1, lengths[4])), "{cohorts:?}");
}

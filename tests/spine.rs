//! The spine end to end on the real model: SmolLM2-135M (GGUF, pinned
//! hash) through mistral.rs, agents in wasm cells, budget in redb, every
//! action signed into the journal.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn the_sample_mission_runs_on_the_real_model_and_a_reviewer_decides_a_gate() {
    model_file();
    module("missions/examples/casework/agent/eligibility.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mission = repo_root().join("missions/examples/casework/mission.yaml");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "sample mission completes");
    let summary = stdout_json(&out);
    let all = tasks(&summary);
    assert!(all.len() >= 20, "at least 20 cases");

    // Every case was handled by the model in its own cell; none failed.
    for t in all {
        assert!(t["status"] == "decided" || t["status"] == "awaiting_review", "task ended {}: {t}", t["status"]);
        assert_eq!(t["model_calls"], 1, "one real model call per case: {t}");
        assert!(t["tokens_settled"].as_u64().expect("settled") > 0);
    }
    // Metering: settled spend is what the tasks were charged, within budget,
    // and nothing is left reserved.
    let limit = summary["budget"]["limit"].as_u64().expect("limit");
    let settled = summary["budget"]["settled"].as_u64().expect("settled");
    assert_eq!(settled, summary["tokens"]["settled"].as_u64().expect("sum"));
    assert!(settled > 0 && settled <= limit);
    assert_eq!(summary["budget"]["pending"], 0);
    assert!(summary["tokens"]["reserved"].as_u64().expect("reserved") >= settled);

    // Large awards went to the gate, whatever the model said.
    let cases_dir = repo_root().join("missions/examples/casework/cases");
    let mut large = Vec::new();
    for entry in std::fs::read_dir(&cases_dir).expect("cases") {
        let case: Value =
            serde_json::from_slice(&std::fs::read(entry.expect("entry").path()).expect("read")).expect("json");
        if case["requested_amount"].as_f64().unwrap_or(0.0) > 5000.0 {
            large.push(case["id"].as_str().expect("id").to_owned());
        }
    }
    assert!(!large.is_empty(), "the sample has large-award cases");
    for id in &large {
        let t = all.iter().find(|t| t["case_id"] == id.as_str()).expect("task for case");
        assert_eq!(t["status"], "awaiting_review", "{id} is gated: {t}");
    }
    assert_eq!(summary["status"], "awaiting_review");

    // A reviewer decides one gate with their own key.
    let key = dir.path().join("reviewer.key");
    assert_eq!(run(conductor().args(["keys", "new", "--out"]).arg(&key)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&key));
    assert_eq!(out.status.code(), Some(0), "an operator registers the reviewer's key");
    let gate = all.iter().find_map(|t| t["gate"].as_str()).expect("a gate").to_owned();
    let out = run(conductor().args(["gates", "approve", &gate, "--key"]).arg(&key).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let decided = stdout_json(&out);
    let g = decided.as_array().expect("gates").iter().find(|g| g["id"] == gate.as_str()).expect("gate");
    assert_eq!(g["status"], "approved");

    // The whole journal verifies: every hash and every signature.
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let report = stdout_json(&out);
    assert!(report["entries"].as_u64().expect("entries") > 24 * 5);
    // Every entry reads back as its typed payload, exactly.
    let kinds = assert_entries_typed(&data);
    for kind in ["mission.declared", "memory.asserted", "task.started", "host.recall", "host.infer", "task.decided"] {
        assert!(kinds.contains_key(kind), "the sample mission writes `{kind}`: {kinds:?}");
    }

    // Every task replays from the journal alone, with no model to be had:
    // each host call and decision matches, and nothing is written.
    let no_models = dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).expect("dir");
    let out = run(conductor()
        .args(["audit", "replay", "--json", "--data"])
        .arg(&data)
        .env("CONDUCTOR_MODEL_DIR", &no_models));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let replays = stdout_json(&out);
    let replays = replays.as_array().expect("list");
    assert_eq!(replays.len(), all.len(), "one replay per task");
    for r in replays {
        assert_eq!(r["verdict"], "match", "{r}");
        assert!(r["host_calls"].as_u64().expect("calls") >= 4, "recall, recall, infer and logs: {r}");
    }
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(stdout_json(&out)["entries"], report["entries"], "replay wrote nothing");
}

#[test]
fn a_budget_too_small_stops_the_mission_within_budget_and_says_why() {
    model_file();
    let agent = module("missions/examples/casework/agent/eligibility.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases_dir = repo_root().join("missions/examples/casework/cases");
    let mission = dir.path().join("tight.yaml");
    // About one call's worth: the first reservation fits, the next cannot.
    let limit = 330;
    std::fs::write(
        &mission,
        format!(
            "name: tight\nbudget:\n  limit: {limit}\n\
             models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 2\n\
             agents:\n  - name: eligibility\n    module: {}\n    model: smollm2-135m\n    limits: {{max_tokens: 48}}\n\
             tasks:\n  agent: eligibility\n  dir: {}\n\
             memory:\n{}",
            agent.display(),
            cases_dir.display(),
            [("income-limit-monthly", "2400"), ("income-limit-per-extra-member", "350"), ("min-residency-months", "12")]
                .iter()
                .map(|(p, v)| format!("  - {{subject: 'policy:housing-support', predicate: {p}, value: '{v}', valid_from: 2026-01-01T00:00:00Z}}\n"))
                .collect::<String>()
        ),
    )
    .expect("write");
    let data = dir.path().join("data");
    let out =
        run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json").args(["--concurrency", "1"]));
    assert_eq!(out.status.code(), Some(3), "budget exhaustion has its own exit status");
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "budget_exhausted");
    let settled = summary["budget"]["settled"].as_u64().expect("settled");
    assert!(settled > 0 && settled <= limit, "spend {settled} within {limit}");
    assert_eq!(summary["budget"]["pending"], 0);
    let all = tasks(&summary);
    let calls: u64 = all.iter().map(|t| t["model_calls"].as_u64().expect("calls")).sum();
    assert!(calls >= 1, "the budget paid for at least one call");
    assert!(
        all.iter().any(|t| t["failure"].as_str().is_some_and(|f| f.contains("budget exhausted"))),
        "a task says the budget refused it"
    );
    assert!(all.iter().any(|t| t["status"] == "skipped"), "later tasks were not started");

    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    assert!(assert_entries_typed(&data).contains_key("task.skipped"));
}

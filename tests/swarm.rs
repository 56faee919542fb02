//! The sample swarm (`missions/examples/claims`) on the real model:
//! SmolLM2-135M through mistral.rs, an intake agent in Rust delegating
//! two checks per claim in one call to specialists in Python and Rust,
//! each in its own cell under its own key, then combining their findings.
//! Driven through the real binary, as `cargo xtask demo` runs it.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const MISSION: &str = "missions/examples/claims/mission.yaml";
/// The intake agent and the specialists it delegates to, as the mission
/// names them.
const INTAKE: &str = "intake";
const SPECIALISTS: [&str; 2] = ["coverage", "risk"];

/// How each claim was designed to end: (case id, the intake's outcome,
/// the coverage check's, the risk check's). `refer` cases wait on the
/// `disagreement` gate.
const DESIGNED: [(&str, &str, &str, &str); 5] = [
    ("CL-2026-0001", "approve", "pass", "pass"),
    ("CL-2026-0002", "approve", "pass", "pass"),
    ("CL-2026-0003", "deny", "fail", "fail"),
    ("CL-2026-0004", "refer", "pass", "fail"),
    ("CL-2026-0005", "refer", "fail", "pass"),
];

#[test]
fn the_claims_swarm_fans_out_to_specialists_on_the_real_model_and_refers_disagreements() {
    model_file();
    for m in ["intake/intake.wasm", "risk/risk.wasm", "coverage/coverage.wasm"] {
        module(&format!("missions/examples/claims/{m}"));
    }
    let mission = repo_root().join(MISSION);
    let out = run(conductor().args(["mission", "validate"]).arg(&mission));
    assert_eq!(out.status.code(), Some(0), "the sample swarm validates: {}", stderr(&out));

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "the swarm completes up to its gates: {}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "awaiting_review", "the referred claims wait for a handler: {summary}");
    let mission_id = summary["mission_id"].as_str().expect("mission id").to_owned();
    let all = tasks(&summary);
    assert_eq!(all.len(), DESIGNED.len() * 3, "each claim and its two checks: {summary}");
    assert_eq!(summary["budget"]["pending"], 0, "every reservation settled");

    let gates = stdout_json(&run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data)));
    let gates = gates.as_array().expect("gates").clone();
    for (case, outcome, coverage, risk) in DESIGNED {
        let parent = all.iter().find(|t| t["case_id"] == case).unwrap_or_else(|| panic!("no task for {case}"));
        assert_eq!(parent["agent"], INTAKE, "{parent}");
        assert!(parent["model_calls"].as_u64().unwrap_or(0) >= 1, "the intake asked the model itself: {parent}");
        if outcome == "refer" {
            assert_eq!(parent["status"], "awaiting_review", "{case} is referred: {parent}");
            let gate = gates
                .iter()
                .find(|g| g["case_id"] == case && g["task"] == parent["index"])
                .unwrap_or_else(|| panic!("no gate for {case}: {gates:?}"));
            assert_eq!(gate["gate"], "disagreement", "{gate}");
            assert_eq!(gate["status"], "pending", "{gate}");
            assert_eq!(gate["proposed_outcome"], "refer", "{gate}");
            assert_eq!(gate["proposed_details"]["disagreement"], true, "{gate}");
        } else {
            assert_eq!((parent["status"].as_str(), parent["outcome"].as_str()), (Some("decided"), Some(outcome)));
        }
        // Its two checks: children of this task, one per specialist, each
        // decided by rule (never gated) after one real model call.
        let children: Vec<&Value> = all.iter().filter(|t| t["parent"] == parent["index"]).collect();
        assert_eq!(children.len(), 2, "{case}: {children:?}");
        for (agent, expected) in [("coverage", coverage), ("risk", risk)] {
            let child = children
                .iter()
                .find(|t| t["agent"] == agent)
                .unwrap_or_else(|| panic!("{case} has no {agent} check: {children:?}"));
            assert_eq!(child["status"], "decided", "{child}");
            assert_eq!(child["outcome"], expected, "{case} {agent}: {child}");
            assert_eq!(child["model_calls"], 1, "{agent} reached the real model: {child}");
            assert!(child["tokens_settled"].as_u64().unwrap_or(0) > 0, "{child}");
        }
    }
    let open: Vec<&Value> = gates.iter().filter(|g| g["status"] == "pending").collect();
    assert_eq!(open.len(), 2, "only the two disagreements wait: {gates:?}");

    // The journal: one accepted delegation of two children per claim, one
    // join each, and every child's start naming its parent.
    let delegated = journal(&data, "task.delegated");
    assert_eq!(delegated.len(), DESIGNED.len(), "{delegated:?}");
    let mut parents = BTreeSet::new();
    for d in &delegated {
        let p = &d["payload"];
        assert!(p["refused"].is_null() && p["delegation"].is_string(), "{p}");
        assert_eq!(p["depth"], 1, "{p}");
        let asked: Vec<&str> =
            p["children"].as_array().expect("children").iter().filter_map(|c| c["agent"].as_str()).collect();
        assert_eq!(asked, SPECIALISTS, "both checks in one call: {p}");
        parents.insert(p["task"].as_u64().expect("parent task"));
    }
    let joined = journal(&data, "task.joined");
    assert_eq!(joined.len(), DESIGNED.len(), "{joined:?}");
    for j in &joined {
        let results = j["payload"]["results"].as_array().expect("results");
        assert_eq!(results.len(), 2, "{j}");
        assert!(results.iter().all(|r| r["status"] == "decided"), "{j}");
    }
    let started = journal(&data, "task.started");
    let children: Vec<&Value> = started.iter().filter(|e| !e["payload"]["parent"].is_null()).collect();
    assert_eq!(children.len(), DESIGNED.len() * 2, "every check's start names its parent");
    for c in &children {
        let link = &c["payload"]["parent"];
        assert!(parents.contains(&link["task"].as_u64().expect("parent task")), "{c}");
        assert_eq!(link["depth"], 1, "{c}");
        assert!(SPECIALISTS.contains(&c["payload"]["agent"].as_str().unwrap_or_default()), "{c}");
    }

    // Every entry verifies, and every task (parents resumed by replay,
    // children in Python and Rust) replays from the journal alone.
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
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
    }

    // The report names every agent and the trees' shape.
    let out = run(conductor().args(["mission", "report", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    let agents = report["agents"].as_array().expect("agents");
    for agent in [INTAKE].iter().chain(&SPECIALISTS) {
        let a = agents.iter().find(|a| a["agent"] == *agent).unwrap_or_else(|| panic!("no {agent}: {report}"));
        assert_eq!(a["started"], DESIGNED.len(), "{a}");
    }
    assert_eq!(report["trees"]["deepest"], 1, "{report}");
    assert_eq!(report["trees"]["children"], DESIGNED.len() * 2, "{report}");
    assert_eq!(report["trees"]["cases_that_delegated"], DESIGNED.len(), "{report}");

    // A referred claim's provenance holds its checks' own.
    let out =
        run(conductor().args(["audit", "show", &format!("{mission_id}/CL-2026-0004"), "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout_json(&out);
    assert_eq!(shown["agent"]["name"], INTAKE, "{shown}");
    let shown_children = shown["children"].as_array().expect("children");
    let names: BTreeSet<&str> = shown_children.iter().filter_map(|c| c["agent"]["name"].as_str()).collect();
    assert_eq!(names, SPECIALISTS.into_iter().collect::<BTreeSet<&str>>(), "{shown}");
    for c in shown_children {
        assert_eq!(c["task"]["parent"]["task"], shown["task"]["index"], "{c}");
        assert!(
            c["host_calls"].as_array().is_some_and(|calls| !calls.is_empty()),
            "the child's own calls are shown: {c}"
        );
    }

    assert_entries_typed(&data);
}

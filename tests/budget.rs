//! Budget policies on the real model: a mission that runs out of budget
//! pauses or waits for a reviewer's signed extension, then resumes and
//! finishes, never spending past what it was given.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A three-case mission whose budget pays for about one model call.
fn tight_mission(dir: &Path, policy: &str) -> PathBuf {
    model_file();
    let agent = module("missions/examples/casework/agent/eligibility.wasm");
    let cases = dir.join("cases");
    std::fs::create_dir_all(&cases).expect("cases dir");
    for n in 1..=3 {
        let name = format!("case-0{n}.json");
        std::fs::copy(repo_root().join("missions/examples/casework/cases").join(&name), cases.join(&name))
            .expect("copy case");
    }
    let mission = dir.join(format!("{policy}.yaml"));
    std::fs::write(
        &mission,
        format!(
            "name: tight-{policy}\nbudget:\n  limit: 330\n  on_exhausted: {policy}\n\
             models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 2\n\
             agents:\n  - name: eligibility\n    module: {}\n    model: smollm2-135m\n    limits: {{max_tokens: 48}}\n\
             tasks:\n  agent: eligibility\n  dir: {}\n\
             memory:\n{}",
            agent.display(),
            cases.display(),
            policy_facts()
        ),
    )
    .expect("write mission");
    mission
}

fn statuses(summary: &Value) -> Vec<String> {
    tasks(summary).iter().map(|t| t["status"].as_str().expect("status").to_owned()).collect()
}

#[test]
fn a_gated_budget_waits_for_a_signed_extension_then_resumes_and_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = tight_mission(dir.path(), "gate");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).args(["--json", "--concurrency", "1"]));
    assert_eq!(out.status.code(), Some(3));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "awaiting_budget");
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();
    let settled = summary["budget"]["settled"].as_u64().expect("settled");
    assert!(settled > 0 && settled <= 330, "spent {settled} of 330");
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");
    assert!(statuses(&summary).iter().any(|s| s == "pending"), "unfinished tasks wait: {:?}", statuses(&summary));

    // The account tree: the mission and its agent.
    let out = run(conductor().args(["ledger", "show", "--json", "--data"]).arg(&data));
    let accounts = stdout_json(&out);
    let names: Vec<&str> =
        accounts.as_array().expect("accounts").iter().map(|a| a["account"].as_str().expect("name")).collect();
    assert!(names.contains(&mission_id.as_str()));
    assert!(names.contains(&format!("{mission_id}/eligibility").as_str()), "{names:?}");

    // The mission waits on its budget gate, asking for its limit again.
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let gates = stdout_json(&out);
    let gate =
        gates.as_array().expect("gates").iter().find(|g| g["status"] == "pending").expect("a budget gate").clone();
    assert_eq!(gate["gate"], "budget", "{gate}");
    assert_eq!(gate["budget"]["account"], mission_id.as_str(), "{gate}");
    assert_eq!(gate["budget"]["amount"], 330, "{gate}");
    let gate_id = gate["id"].as_str().expect("id").to_owned();

    // Only a registered reviewer may grant it, and it is their signature.
    let reviewer = dir.path().join("reviewer.key");
    run(conductor().args(["keys", "new", "--role", "reviewer", "--out"]).arg(&reviewer));
    let approve = |key: &Path| {
        run(conductor()
            .args([
                "gates",
                "approve",
                &gate_id,
                "--amount",
                "5000",
                "--note",
                "approved",
                "--json",
                "--concurrency",
                "1",
                "--key",
            ])
            .arg(key)
            .arg("--data")
            .arg(&data))
    };
    assert_ne!(approve(&reviewer).status.code(), Some(0), "unregistered reviewer refused");
    let operator = dir.path().join("operator.key");
    run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&operator));
    run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&operator));
    assert_ne!(approve(&operator).status.code(), Some(0), "an operator key cannot extend");
    run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&reviewer));
    // The gate is the way: a direct extension is refused while it waits.
    let out = run(conductor()
        .args(["ledger", "extend", &mission_id, "--amount", "5000", "--reason", "r", "--key"])
        .arg(&reviewer)
        .arg("--data")
        .arg(&data));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("budget gate"), "{}", stderr(&out));
    // Amounts go with approvals of budget gates only.
    let out = run(conductor()
        .args(["gates", "reject", &gate_id, "--amount", "5", "--key"])
        .arg(&reviewer)
        .arg("--data")
        .arg(&data));
    assert_ne!(out.status.code(), Some(0));

    // Approving grants the extension and continues the mission at once.
    let out = approve(&reviewer);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("extended by 5000"), "{}", stderr(&out));
    let reviewer_public = identity::read_public(&reviewer).expect("public").1.to_hex();
    for kind in ["gate.decided", "budget.extended"] {
        let lines = journal(&data, kind);
        assert_eq!(lines.len(), 1, "{kind}: {lines:?}");
        assert_eq!(lines[0]["signer"], reviewer_public.as_str(), "{kind} is signed by the reviewer: {lines:?}");
    }
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "completed", "{summary}");
    assert!(statuses(&summary).iter().all(|s| s == "decided"), "{:?}", statuses(&summary));
    let settled = summary["budget"]["settled"].as_u64().expect("settled");
    assert!(settled <= 5330, "spent {settled} within the extended 5330");
    assert_eq!(summary["budget"]["limit"], 5330);

    // Resuming a finished mission is refused.
    let out = run(conductor().args(["mission", "resume", &mission_id, "--data"]).arg(&data));
    assert_ne!(out.status.code(), Some(0));

    // The journal verifies, balances recomputed from its postings.
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let report = stdout_json(&out);
    let root = report["budget"]
        .as_array()
        .expect("budget")
        .iter()
        .find(|row| row["account"] == mission_id.as_str())
        .expect("mission account")
        .clone();
    assert_eq!(root["limit"], 5330);
    assert_eq!(root["settled"], settled);
}

#[test]
fn a_paused_mission_stays_within_budget_until_given_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = tight_mission(dir.path(), "pause");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).args(["--json", "--concurrency", "1"]));
    assert_eq!(out.status.code(), Some(3));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "paused");
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();
    let before = summary["budget"]["settled"].as_u64().expect("settled");

    // Resuming with nothing new pauses again at once and spends nothing.
    let out =
        run(conductor().args(["mission", "resume", &mission_id, "--json", "--concurrency", "1", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(3));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "paused");
    assert_eq!(summary["budget"]["settled"].as_u64().expect("settled"), before);
    assert!(before <= 330);

    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    assert_entries_typed(&data);
}

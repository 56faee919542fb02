//! Nothing in a mission needs the network: the sample mission's agent,
//! run on the real model inside a network namespace with no interfaces
//! (`unshare -n`: not even loopback is up), decides, answers and spends
//! exactly as it does on the host, case for case and token for token.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A copy of the sample mission over its first three cases.
fn three_case_mission(dir: &Path) -> std::path::PathBuf {
    let example = repo_root().join("missions/examples/casework");
    module("missions/examples/casework/agent/eligibility.wasm");
    let cases = dir.join("cases");
    std::fs::create_dir_all(&cases).expect("cases dir");
    for name in ["case-01.json", "case-02.json", "case-03.json"] {
        std::fs::copy(example.join("cases").join(name), cases.join(name)).expect("copy case");
    }
    let text = std::fs::read_to_string(example.join("mission.yaml")).expect("sample mission");
    let agent = example.join("agent/eligibility.wasm");
    let text = text.replace("module: agent/eligibility.wasm", &format!("module: {}", agent.display()));
    let path = dir.join("mission.yaml");
    std::fs::write(&path, text).expect("write mission");
    path
}

/// (case, status, outcome, reason, tokens settled) per task, and every
/// completion the model gave, in task order.
fn results(data: &Path, summary: &Value) -> (Vec<(String, String, String, String, u64)>, Vec<(u64, String)>) {
    let mut tasks: Vec<_> = tasks(summary)
        .iter()
        .map(|t| {
            let text = |f: &str| t[f].as_str().unwrap_or_default().to_owned();
            (
                text("case_id"),
                text("status"),
                text("outcome"),
                text("reason"),
                t["tokens_settled"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    tasks.sort();
    (tasks, completions(data))
}

#[test]
fn a_mission_runs_the_same_inside_a_network_namespace_with_no_interfaces() {
    model_file();
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = three_case_mission(dir.path());

    let host_data = dir.path().join("host");
    let out = run(conductor().arg("run").arg(&mission).args(["--json", "--data"]).arg(&host_data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let on_host = results(&host_data, &stdout_json(&out));

    // The same binary, environment and files, in a namespace with no
    // network at all.
    let sealed_data = dir.path().join("sealed");
    let inner = conductor();
    let mut cmd = std::process::Command::new("unshare");
    cmd.arg("-n").arg(inner.get_program()).args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.arg("run").arg(&mission).args(["--json", "--data"]).arg(&sealed_data);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "unshare -n (needs CAP_SYS_ADMIN; CI runs as root): {}", stderr(&out));
    let sealed = results(&sealed_data, &stdout_json(&out));

    assert_eq!(on_host.0.len(), 3, "{:?}", on_host.0);
    assert_eq!(on_host.1.len(), 3, "one model call per case: {:?}", on_host.1);
    assert!(on_host.0.iter().all(|t| t.4 > 0), "every case paid for a real call: {:?}", on_host.0);
    assert_eq!(sealed, on_host, "inside the namespace the mission decides, answers and spends exactly the same");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&sealed_data));
    assert_eq!(out.status.code(), Some(0));
}

//! Delegation (issue #20): an agent hands sub-tasks to other agents of
//! its mission. Each child runs in its own cell under its own agent's key,
//! on a budget account under its parent task's; the parent parks while
//! they run and is resumed by replay with their results. Driven through
//! the real binary, on the scripted model backend (orchestration, not
//! inference, is what is tested here).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn run_mission(dir: &Path, mission: &Path, data: &Path) -> Value {
    let registry = scripted_registry(dir);
    let out = run(conductor()
        .env("CONDUCTOR_MODEL_DIR", dir.join("no-models-here"))
        .arg("run")
        .arg(mission)
        .arg("--models")
        .arg(&registry)
        .arg("--data")
        .arg(data)
        .arg("--json"));
    // 6: completed, but a child failed (the trapping one).
    assert!(matches!(out.status.code(), Some(0) | Some(6)), "{}", stderr(&out));
    stdout_json(&out)
}

#[test]
fn a_parent_fans_out_parks_and_resumes_with_its_childrens_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = "    - id: claim-1\n      delegate:\n\
                 \x20       - { agent: checker, input: { outcome: covered, reason: policy ok, spend: 4 } }\n\
                 \x20       - { agent: checker, input: { outcome: excluded, reason: flood clause, details: { clause: 7 } } }\n\
                 \x20       - { agent: checker, input: { trap: true } }\n\
                 \x20       - { agent: lead, input: { delegate: [ { agent: checker, input: { outcome: deep } } ] } }\n\
                 \x20     then_delegate:\n\
                 \x20       - { agent: checker, input: { outcome: second-round } }\n\
                 \x20   - { id: claim-2, outcome: alone }\n";
    let mission = swarm_mission(dir.path(), "fan-out", 10_000, cases, "");
    let data = dir.path().join("data");
    let summary = run_mission(dir.path(), &mission, &data);

    let parent = by_case(&summary, "claim-1");
    assert_eq!(parent["status"], "decided", "{parent}");
    assert_eq!(parent["outcome"], "combined", "{parent}");
    assert_eq!(by_case(&summary, "claim-2")["outcome"], "alone");
    // Two cases, five children of claim-1 (one of which has a child), and
    // the second round's one.
    assert_eq!(tasks(&summary).len(), 2 + 4 + 1 + 1, "{summary}");
    let trapped: Vec<&Value> = tasks(&summary).iter().filter(|t| t["status"] == "failed").collect();
    assert_eq!(trapped.len(), 1, "the trapping child fails alone: {summary}");

    // The parent's decision carries each child's answer, in order, the
    // trap as a typed error it could handle.
    let proposed = journal(&data, "task.proposed");
    let combined = proposed
        .iter()
        .find(|e| e["payload"]["decision"]["outcome"] == "combined" && e["payload"]["task"] == 0)
        .expect("the parent's proposal");
    let results = combined["payload"]["decision"]["details"]["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 5, "{results:?}");
    assert_eq!((results[0]["outcome"].as_str(), results[0]["reason"].as_str()), (Some("covered"), Some("policy ok")));
    assert_eq!(results[1]["outcome"], "excluded");
    assert_eq!(results[2]["error"], "failed", "{results:?}");
    assert_eq!(results[3]["outcome"], "combined", "the grandchild's answer went up through its parent");
    assert_eq!(results[4]["outcome"], "second-round");

    // One journal: task.delegated per call, task.joined per delegation,
    // children started naming their parent.
    let delegated = journal(&data, "task.delegated");
    assert_eq!(delegated.len(), 3, "claim-1 twice, its lead child once");
    let joined = journal(&data, "task.joined");
    assert_eq!(joined.len(), 3);
    let started = journal(&data, "task.started");
    let children: Vec<&Value> = started.iter().filter(|e| !e["payload"]["parent"].is_null()).collect();
    assert_eq!(children.len(), 6, "every child's task.started names its parent");
    let first = &delegated[0]["payload"];
    assert_eq!(first["task"], 0);
    assert_eq!(first["depth"], 1);
    assert_eq!(first["children"].as_array().map(Vec::len), Some(4));
    // The checker's task_limit caps its children's accounts.
    assert_eq!(first["children"][0]["budget"], 40, "{first}");
    assert!(first["children"][3]["budget"].is_null(), "lead has no task_limit: {first}");

    // A child's spend reached its parent's account: the budget tree holds
    // every child's account under its parent task's. Accounts opened in
    // one group commit share its `budget.batch` entry.
    let opened = postings(&data, "budget.opened");
    let parent_account = opened
        .iter()
        .map(|e| &e["payload"])
        .find(|p| p["account"].as_str().is_some_and(|a| a.ends_with("/lead/task-0")))
        .expect("the parent task's account")["account"]
        .as_str()
        .expect("name")
        .to_owned();
    let under_parent =
        opened.iter().filter(|e| e["payload"]["parent"].as_str() == Some(parent_account.as_str())).count();
    assert_eq!(under_parent, 5, "each of claim-1's children has its account under claim-1's");

    assert_verifies_and_replays(&data);
    let kinds = assert_entries_typed(&data);
    assert_eq!(kinds.get("task.joined"), Some(&3));
}

#[test]
fn bad_delegations_are_refused_before_any_spend_and_journaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = "x".repeat(300);
    let cases = format!(
        "    - {{ id: not-allowed, delegate: [ {{ agent: other, input: {{}} }} ] }}\n\
         \x20   - {{ id: unknown, delegate: [ {{ agent: nobody, input: {{}} }} ] }}\n\
         \x20   - {{ id: too-wide, delegate: [ {{ agent: checker, input: {{}} }}, {{ agent: checker, input: {{}} }}, {{ agent: checker, input: {{}} }} ] }}\n\
         \x20   - {{ id: too-deep, delegate: [ {{ agent: lead, input: {{ delegate: [ {{ agent: lead, input: {{ delegate: [ {{ agent: checker, input: {{}} }} ] }} }} ] }} }} ] }}\n\
         \x20   - {{ id: too-big, delegate: [ {{ agent: checker, input: {{ pad: {big} }} }} ] }}\n\
         \x20   - {{ id: too-rich, delegate: [ {{ agent: checker, input: {{}}, budget: 999999 }} ] }}\n"
    );
    let extra = "delegation: { depth: 2, fan_out: 2, children_per_task: 8, input_bytes: 256 }\n";
    let mission = swarm_mission(dir.path(), "refusals", 5_000, &cases, extra);
    let data = dir.path().join("data");
    let summary = run_mission(dir.path(), &mission, &data);

    let refused = |id: &str| {
        let t = by_case(&summary, id);
        assert_eq!(t["outcome"], "refused", "{t}");
        t["reason"].as_str().unwrap_or_default().to_owned()
    };
    assert!(refused("not-allowed").contains("not among"), "{}", refused("not-allowed"));
    assert!(refused("unknown").contains("not among"), "{}", refused("unknown"));
    assert!(refused("too-wide").contains("fan_out"), "{}", refused("too-wide"));
    assert!(refused("too-big").contains("input_bytes"), "{}", refused("too-big"));
    assert!(refused("too-rich").contains("left"), "{}", refused("too-rich"));
    // too-deep: its child (depth 1) may delegate, its grandchild (depth 2)
    // may not, and the refusal comes back up as a decision.
    let deep = by_case(&summary, "too-deep");
    assert_eq!(deep["outcome"], "combined", "{deep}");

    let delegated = journal(&data, "task.delegated");
    let refusals: Vec<&Value> = delegated.iter().filter(|e| e["payload"]["refused"].is_string()).collect();
    assert_eq!(refusals.len(), 6, "every refusal is journaled");
    assert!(refusals.iter().any(|e| e["payload"]["refused"].as_str().unwrap_or_default().contains("depth")));
    for r in &refusals {
        assert!(r["payload"]["delegation"].is_null(), "{r}");
        assert!(r["payload"]["children"].as_array().expect("children").iter().all(|c| c["task"].is_null()));
    }
    // Only too-deep's two accepted calls created tasks.
    assert_eq!(tasks(&summary).len(), 6 + 2, "{summary}");
    assert_verifies_and_replays(&data);
}

#[test]
fn a_gated_child_waits_for_its_reviewer_and_the_parent_gets_the_reviewed_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = "    - id: claim-9\n      delegate:\n\
                 \x20       - { agent: checker, input: { outcome: disputed, reason: needs a person } }\n\
                 \x20       - { agent: checker, input: { outcome: covered } }\n";
    let gates = "gates:\n  - { name: dispute, when: { field: decision.outcome, equals: disputed } }\n";
    let mission = swarm_mission(dir.path(), "gated", 5_000, cases, gates);
    let data = dir.path().join("data");
    let summary = run_mission(dir.path(), &mission, &data);
    assert_eq!(summary["status"], "awaiting_review", "{summary}");
    assert_eq!(by_case(&summary, "claim-9")["status"], "awaiting_children");
    let gated = tasks(&summary).iter().find(|t| t["status"] == "awaiting_review").expect("the gated child").clone();

    let key = dir.path().join("reviewer.key");
    assert_eq!(run(conductor().args(["keys", "new", "--out"]).arg(&key)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gate = gated["gate"].as_str().expect("gate id");
    let out = run(conductor()
        .args(["gates", "reject", gate, "--note", "not disputed", "--json", "--key"])
        .arg(&key)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let parent = by_case(&summary, "claim-9");
    assert_eq!(parent["status"], "decided", "the parent resumed with the reviewed decision: {summary}");
    assert_eq!(summary["status"], "completed", "{summary}");
    let proposed = journal(&data, "task.proposed");
    let combined = proposed.iter().find(|e| e["payload"]["task"] == 0).expect("parent's proposal");
    let results = &combined["payload"]["decision"]["details"]["results"];
    assert_eq!(results[0]["outcome"], "rejected", "the reviewer's verdict, not the child's proposal: {results}");
    assert_eq!(results[1]["outcome"], "covered");
    assert_verifies_and_replays(&data);
}

#[test]
fn a_child_that_spins_or_runs_out_of_its_budget_fails_alone_and_the_parent_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = "    - id: claim-3\n      delegate:\n\
                 \x20       - { agent: checker, input: { spin: true } }\n\
                 \x20       - { agent: checker, budget: 3, input: { spend: 50, outcome: thrifty } }\n\
                 \x20     then_delegate:\n\
                 \x20       - { agent: checker, input: { outcome: still-running } }\n";
    let mission = swarm_mission(dir.path(), "alone", 10_000, cases, "");
    let data = dir.path().join("data");
    let summary = run_mission(dir.path(), &mission, &data);
    let parent = by_case(&summary, "claim-3");
    assert_eq!(parent["outcome"], "combined", "the parent got every answer and went on: {summary}");
    let proposed = journal(&data, "task.proposed");
    let combined = proposed.iter().find(|e| e["payload"]["task"] == 0).expect("parent's proposal");
    let results = combined["payload"]["decision"]["details"]["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 3, "{results:?}");
    // Stopped by its wall clock or its fuel, whichever came first.
    let spun = results[0]["error"].as_str().unwrap_or_default();
    assert!(spun == "timed_out" || spun == "failed", "{results:?}");
    // Its own cap refused the call; the child decided without it, and the
    // mission's budget was never at stake.
    assert_eq!(results[1]["outcome"], "thrifty", "{results:?}");
    assert_eq!(results[2]["outcome"], "still-running", "the second round ran: {results:?}");
    let refused = journal(&data, "host.infer");
    assert!(
        refused.iter().any(|e| e["payload"]["refused"].as_str().is_some_and(|r| r.contains("task-2"))),
        "the child's own account refused: {refused:?}"
    );
    assert_verifies_and_replays(&data);
}

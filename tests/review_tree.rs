//! The reviewer page shows the delegation tree under a gated decision
//! (issue #20): `GET /api/gates/{id}` carries `tree`, the task that
//! delegated the gated case (`parent`) and the tasks it delegated
//! (`children`, each with its own), built from the task records. Driven
//! through the real binary: missions run on the scripted model with the
//! delegating test agent, then `conductor serve` answers a signed-in
//! reviewer over HTTP.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// Runs `mission` to where it waits for review; returns the summary.
fn run_to_review(dir: &Path, mission: &Path, data: &Path) -> Value {
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
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "awaiting_review", "{summary}");
    summary
}

/// A reviewer key registered on `data`, loaded to sign in with.
fn reviewer(dir: &Path, data: &Path) -> (PathBuf, identity::Keypair) {
    let key = dir.join("reviewer.key");
    assert_eq!(run(conductor().args(["keys", "new", "--out"]).arg(&key)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pair = identity::Keypair::load(&key).expect("reviewer key");
    (key, pair)
}

/// `GET /api/gates/{id}` as the signed-in reviewer.
fn gate(addr: &str, cookie: &str, id: &str) -> Value {
    let (status, _, body) = http(addr, "GET", &format!("/api/gates/{id}"), Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// The tree of the gate `id` in `GET /api/gates`'s queue.
fn listed_tree(addr: &str, cookie: &str, id: &str) -> Value {
    let (status, _, body) = http(addr, "GET", "/api/gates", Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    let gates = body["gates"].as_array().expect("gates");
    gates.iter().find(|g| g["id"] == id).unwrap_or_else(|| panic!("gate {id} not listed: {body}"))["tree"].clone()
}

#[test]
fn a_gated_childs_card_names_the_case_that_delegated_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = "    - id: claim-9\n      delegate:\n\
                 \x20       - { agent: checker, input: { outcome: disputed, reason: needs a person } }\n\
                 \x20       - { agent: checker, input: { outcome: covered } }\n\
                 \x20   - { id: claim-10, outcome: disputed, reason: on its own }\n";
    let gates = "gates:\n  - { name: dispute, when: { field: decision.outcome, equals: disputed } }\n";
    let mission = swarm_mission(dir.path(), "gated-child", 5_000, cases, gates);
    let data = dir.path().join("data");
    let summary = run_to_review(dir.path(), &mission, &data);
    assert_eq!(by_case(&summary, "claim-9")["status"], "awaiting_children", "{summary}");
    let child = tasks(&summary)
        .iter()
        .find(|t| t["status"] == "awaiting_review" && t["case_id"] != "claim-10")
        .expect("the gated child")
        .clone();
    let child_gate = child["gate"].as_str().expect("gate id").to_owned();
    let alone_gate = by_case(&summary, "claim-10")["gate"].as_str().expect("claim-10's gate").to_owned();
    let (_, key) = reviewer(dir.path(), &data);

    let server = Served::start(&data, &[]);
    let cookie = sign_in(&server.addr, &key);
    let view = gate(&server.addr, &cookie, &child_gate);
    assert_eq!(view["case_id"], child["case_id"], "{view}");
    let tree = &view["tree"];
    assert_eq!(tree["parent"]["case_id"], "claim-9", "the card says who delegated the case: {view}");
    assert_eq!(tree["parent"]["agent"], "lead", "{tree}");
    assert_eq!(tree["parent"]["status"], "awaiting_children", "{tree}");
    assert_eq!(tree["parent"]["task"], by_case(&summary, "claim-9")["index"], "{tree}");
    assert_eq!(tree["children"], json!([]), "the child delegated nothing: {tree}");
    assert!(tree.get("truncated").is_none(), "{tree}");
    assert_eq!(listed_tree(&server.addr, &cookie, &child_gate), *tree, "the queue shows the same tree");

    // A case that neither delegated nor was delegated: an empty tree.
    let alone = gate(&server.addr, &cookie, &alone_gate);
    assert_eq!(alone["tree"], json!({"parent": null, "children": []}), "{alone}");
    server.stop();
}

#[test]
fn a_gated_parents_card_lists_every_child_and_grandchild_with_its_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    // claim-5 combines three children, one of which (a lead) combines its
    // own. Only claim-5's decision is gated: its reason counts three
    // children, its lead child's counts one.
    let cases = "    - id: claim-5\n      delegate:\n\
                 \x20       - { agent: checker, input: { outcome: covered, reason: policy ok } }\n\
                 \x20       - { agent: checker, input: { outcome: excluded, reason: flood clause } }\n\
                 \x20       - { agent: lead, input: { delegate: [ { agent: checker, input: { outcome: deep, reason: two down } } ] } }\n\
                 \x20   - { id: claim-6, outcome: alone }\n";
    let gates = "gates:\n  - { name: combined, when: { field: decision.reason, equals: \"3 children: 3 decided\" } }\n";
    let mission = swarm_mission(dir.path(), "gated-parent", 5_000, cases, gates);
    let data = dir.path().join("data");
    let summary = run_to_review(dir.path(), &mission, &data);
    let parent = by_case(&summary, "claim-5");
    assert_eq!(parent["status"], "awaiting_review", "the parent's combined decision is gated: {summary}");
    let parent_gate = parent["gate"].as_str().expect("gate id").to_owned();
    let waiting = tasks(&summary).iter().filter(|t| t["status"] == "awaiting_review").count();
    assert_eq!(waiting, 1, "only the parent waits: {summary}");
    let (key_file, key) = reviewer(dir.path(), &data);

    let check = |tree: &Value| {
        assert!(tree["parent"].is_null(), "an entry case has no parent: {tree}");
        assert!(tree.get("truncated").is_none(), "{tree}");
        let children = tree["children"].as_array().unwrap_or_else(|| panic!("children: {tree}"));
        assert_eq!(children.len(), 3, "{tree}");
        let seen: Vec<(&str, &str, &str, &str)> = children
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} of {c}"));
                (s("agent"), s("status"), s("outcome"), s("reason"))
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("checker", "decided", "covered", "policy ok"),
                ("checker", "decided", "excluded", "flood clause"),
                ("lead", "decided", "combined", "1 child: 1 decided"),
            ],
            "every child, in order, with its outcome: {tree}"
        );
        for c in children {
            assert!(c["case_id"].as_str().is_some_and(|id| id.starts_with("claim-5/")), "{c}");
            assert_eq!(c["decided_by"], "agent", "{c}");
            assert!(c["gate"].is_null(), "{c}");
            assert!(c["task"].is_u64(), "{c}");
        }
        assert_eq!(children[0]["children"], json!([]), "{tree}");
        let grandchildren = children[2]["children"].as_array().unwrap_or_else(|| panic!("grandchildren: {tree}"));
        assert_eq!(grandchildren.len(), 1, "the lead child's own child is nested below it: {tree}");
        assert_eq!(grandchildren[0]["agent"], "checker");
        assert_eq!(grandchildren[0]["outcome"], "deep");
        assert_eq!(grandchildren[0]["reason"], "two down");
        assert_eq!(grandchildren[0]["children"], json!([]));
    };

    let server = Served::start(&data, &[]);
    let cookie = sign_in(&server.addr, &key);
    let view = gate(&server.addr, &cookie, &parent_gate);
    assert_eq!(view["case_id"], "claim-5", "{view}");
    assert_eq!(view["proposal"]["outcome"], "combined", "{view}");
    check(&view["tree"]);
    assert_eq!(listed_tree(&server.addr, &cookie, &parent_gate), view["tree"], "the queue shows the same tree");
    server.stop();

    // Once decided, the gate still shows what the decision combined.
    let out = run(conductor()
        .args(["gates", "approve", &parent_gate, "--json", "--key"])
        .arg(&key_file)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let server = Served::start(&data, &[]);
    let cookie = sign_in(&server.addr, &key);
    let decided = gate(&server.addr, &cookie, &parent_gate);
    assert_eq!(decided["status"], "approved", "{decided}");
    check(&decided["tree"]);
    server.stop();
}

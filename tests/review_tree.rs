//! The reviewer page shows the delegation tree under a gated decision
//! (issue #20): `GET /api/gates/{id}` carries `tree`, the task that
//! delegated the gated case (`parent`) and the tasks it delegated
//! (`children`, each with its own), built from the task records. Driven
//! through the real binary: missions run on the scripted model with the
//! delegating test agent, then `conductor serve` answers a signed-in
//! reviewer over HTTP.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A registry whose `smollm2-135m` is scripted (no file), priced.
fn scripted_registry(dir: &Path) -> PathBuf {
    let path = dir.join("registry.yaml");
    std::fs::write(
        &path,
        "models:\n  smollm2-135m:\n    kind: scripted\n    context_tokens: 2048\n    prompt_price: 1\n    \
         completion_price: 1\n",
    )
    .expect("registry");
    path
}

/// A mission of three agents on the delegating test agent (as in
/// tests/delegation.rs): `lead` may delegate to `checker` and to itself,
/// `checker` to nobody. `extra` is appended (gates).
fn swarm_mission(dir: &Path, name: &str, budget: u64, cases: &str, extra: &str) -> PathBuf {
    let module = module("cells/guests/delegate-agent/delegate.wasm");
    let module = module.display();
    let text = format!(
        "name: {name}\n\
         budget:\n  limit: {budget}\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 1\n\
         agents:\n\
         \x20 - {{ name: lead, module: {module}, model: smollm2-135m, delegates_to: [checker, lead] }}\n\
         \x20 - {{ name: checker, module: {module}, model: smollm2-135m, budget: {{ task_limit: 40 }},\n\
         \x20     limits: {{ wall_ms: 2000 }} }}\n\
         \x20 - {{ name: other, module: {module}, model: smollm2-135m }}\n\
         tasks:\n  agent: lead\n  inline:\n{cases}\
         {extra}"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write mission");
    path
}

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

fn by_case<'s>(summary: &'s Value, id: &str) -> &'s Value {
    tasks(summary).iter().find(|t| t["case_id"] == id).unwrap_or_else(|| panic!("no task {id} in {summary}"))
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

/// One HTTP/1.1 request on loopback; returns status, headers and body
/// (tests/browser.rs's helper).
fn http(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: Option<&Value>) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let json_text = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        rest.split_once("\r\n")
            .map(|(_, chunk)| chunk.rsplit_once("\r\n0\r\n").map_or(chunk, |(c, _)| c))
            .unwrap_or(rest)
    } else {
        rest
    };
    let value = serde_json::from_str(json_text.trim()).unwrap_or(Value::Null);
    (status, head.to_owned(), value)
}

/// Signs in over the API with `key` (tests/browser.rs's helper); returns
/// the session cookie.
fn sign_in(addr: &str, key: &identity::Keypair) -> String {
    let (status, _, challenge) = http(addr, "GET", "/api/challenge", None, None);
    assert_eq!(status, 200, "{challenge}");
    let challenge = challenge["challenge"].as_str().expect("challenge").to_owned();
    let mut message = b"conductor sign-in v1\0".to_vec();
    message.extend_from_slice(&hex::decode(&challenge).expect("hex"));
    let body = json!({"public_key": key.public().to_hex(), "challenge": challenge,
                      "signature": key.sign(&message).to_hex()});
    let (status, head, me) = http(addr, "POST", "/api/session", None, Some(&body));
    assert_eq!(status, 200, "{me}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_owned()
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

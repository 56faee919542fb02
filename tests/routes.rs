//! Who may use which route (#21 item 3): every route of `conductor serve`
//! × {no credentials, operator, reviewer, auditor, an operator token scoped
//! to another mission} against the status each must get. A refusal is
//! 401 (no credentials) or 403 (a known caller, journaled); "passes" means
//! the request got past authentication and the role check (its own answer,
//! 2xx or a 4xx about the request itself, depends on what it asked).

mod common;

use std::time::{Duration, Instant};

use common::*;
use identity::Keypair;
use serde_json::{Value, json};

/// What a cell of the table expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Got past authentication and the role check: neither 401 nor 403.
    Passes,
    /// Exactly this status.
    Status(u16),
}

use Expect::{Passes, Status};

/// How a caller of the table authenticates.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Cookie(String),
    /// An `Authorization` header's value (`Bearer cdt_…`).
    Authorization(String),
}

impl Auth {
    fn caller(&self) -> Caller<'_> {
        match self {
            Auth::None => Caller::Nobody,
            Auth::Cookie(cookie) => Caller::Cookie(cookie),
            Auth::Authorization(value) => Caller::Authorization(value),
        }
    }
}

/// One request of the table: its status and body.
fn ask(addr: &str, method: &str, path: &str, auth: &Auth, body: Option<&Value>) -> (u16, Value) {
    let (status, _, answer) = request(addr, method, path, auth.caller(), body);
    (status, answer)
}

fn key(dir: &std::path::Path, data: &std::path::Path, role: &str) -> Keypair {
    let path = dir.join(format!("{role}.key"));
    let out = run(conductor().args(["keys", "new", "--role", role, "--out"]).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["keys", "register", "--init", "--data"]).arg(data).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Keypair::load(&path).expect("a key")
}

fn open_mission(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let module = module("cells/guests/delegate-agent/delegate.wasm");
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "name: {name}\nbudget:\n  limit: 100000\nmodels:\n  smollm2-135m: {{ prompt_price: 1, completion_price: 1 }}\n\
         agents:\n  - {{ name: clerk, module: {}, model: smollm2-135m }}\nintake:\n  agent: clerk\n",
        module.display()
    );
    std::fs::write(&path, text).expect("write the mission");
    path
}

#[test]
fn every_route_answers_each_kind_of_caller_as_its_roles_say() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let operator = key(dir.path(), &data, "operator");
    let reviewer = key(dir.path(), &data, "reviewer");
    let auditor = key(dir.path(), &data, "auditor");
    let registry = scripted_registry(dir.path());
    let (one, other) = (open_mission(dir.path(), "one"), open_mission(dir.path(), "other"));
    let served = Served::start(
        &data,
        &[
            "--models".as_ref(),
            registry.as_os_str(),
            "--run".as_ref(),
            one.as_os_str(),
            "--run".as_ref(),
            other.as_os_str(),
        ],
    );
    let addr = served.addr.clone();
    let cookies: Vec<(&str, Auth)> = vec![
        ("operator", Auth::Cookie(sign_in(&addr, &operator))),
        ("reviewer", Auth::Cookie(sign_in(&addr, &reviewer))),
        ("auditor", Auth::Cookie(sign_in(&addr, &auditor))),
    ];
    let Auth::Cookie(op_cookie) = cookies[0].1.clone() else { unreachable!("the operator signs in with a cookie") };
    let start = Instant::now();
    let ids = loop {
        let (status, listed) = ask(&addr, "GET", "/api/missions", &Auth::Cookie(op_cookie.clone()), None);
        assert_eq!(status, 200, "{listed}");
        let id_of = |name: &str| {
            listed["missions"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == name))
                .and_then(|m| m["id"].as_str())
                .map(String::from)
        };
        if let (Some(a), Some(b)) = (id_of("one"), id_of("other")) {
            break (a, b);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the missions start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (m1, m2) = ids;
    // An operator token that may touch the other mission only.
    let (status, issued) = ask(
        &addr,
        "POST",
        "/api/tokens",
        &Auth::Cookie(op_cookie.clone()),
        Some(&json!({"role": "operator", "mission": m2, "name": "scoped"})),
    );
    assert_eq!(status, 201, "{issued}");
    let scoped = Auth::Authorization(format!("Bearer {}", issued["token"].as_str().expect("a token")));
    let scoped_id = issued["id"].as_str().expect("a token id").to_owned();

    let case = json!({"input": {"outcome": "ok"}});
    let mission = format!("/api/missions/{m1}");
    #[rustfmt::skip]
    let table: Vec<(&str, String, Option<Value>, [Expect; 5])> = vec![
        //                                                          none         operator      reviewer      auditor       scoped token
        ("GET",    "/api/me".into(), None,                         [Status(401), Status(200), Status(200), Status(200), Passes]),
        ("GET",    "/api/gates".into(), None,                      [Status(401), Status(200), Status(200), Status(200), Status(403)]),
        ("GET",    "/api/gates/no-such-gate".into(), None,         [Status(401), Passes,      Passes,      Passes,      Passes]),
        ("POST",   "/api/gates/no-such-gate/prepare".into(), Some(json!({"verdict": "approve"})),
                                                                   [Status(401), Status(403), Passes,      Status(403), Status(403)]),
        ("POST",   "/api/gates/no-such-gate/decide".into(), Some(json!({"token": "00".repeat(32), "signatures": []})),
                                                                   [Status(401), Status(403), Passes,      Status(403), Status(403)]),
        ("GET",    "/api/events".into(), None,                     [Status(401), Status(200), Status(200), Status(200), Status(403)]),
        ("GET",    "/api/missions".into(), None,                   [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("GET",    mission.clone(), None,                          [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("GET",    format!("/api/tasks?mission={m1}"), None,       [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("POST",   format!("{mission}/cases"), Some(case.clone()), [Status(401), Status(201), Status(403), Status(403), Status(403)]),
        ("POST",   format!("{mission}/pause"), None,               [Status(401), Status(200), Status(403), Status(403), Status(403)]),
        ("POST",   format!("{mission}/resume"), None,              [Status(401), Passes,      Status(403), Status(403), Status(403)]),
        ("POST",   "/api/missions".into(), Some(json!({"yaml": "name: x"})),
                                                                   [Status(401), Passes,      Status(403), Status(403), Status(403)]),
        ("GET",    "/api/tokens".into(), None,                     [Status(401), Status(200), Status(403), Status(403), Status(403)]),
        ("POST",   "/api/tokens".into(), Some(json!({"role": "auditor", "name": "t"})),
                                                                   [Status(401), Status(201), Status(403), Status(403), Status(403)]),
        ("DELETE", "/api/tokens/no-such-token".into(), None,       [Status(401), Passes,      Status(403), Status(403), Status(403)]),
        ("GET",    format!("{mission}/series"), None,              [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("GET",    "/dashboard".into(), None,                      [Status(200), Status(200), Status(200), Status(200), Status(200)]),
        ("GET",    "/metrics".into(), None,                        [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("GET",    format!("{mission}/events"), None,              [Status(401), Status(200), Status(403), Status(200), Status(403)]),
        ("POST",   format!("{mission}/close"), None,               [Status(401), Status(200), Status(403), Status(403), Status(403)]),
        // After the close the mission may have ended (409), or not (200).
        ("POST",   format!("{mission}/cancel"), None,              [Status(401), Passes,      Status(403), Status(403), Status(403)]),
    ];
    let mut callers = vec![("none", Auth::None)];
    callers.extend(cookies);
    callers.push(("scoped token", scoped.clone()));
    let mut wrong = Vec::new();
    // A known caller's refusals are journaled one by one up to a rate (ten
    // a minute, gate refusals included); past it the same refusal is
    // answered 429 and counted instead, saying why it was refused.
    for (method, path, body, expected) in &table {
        for ((who, auth), expect) in callers.iter().zip(expected) {
            let (status, answer) = ask(&addr, method, path, auth, body.as_ref());
            let refused_past_rate =
                status == 429 && answer["error"].as_str().is_some_and(|e| e.contains("too many refused attempts"));
            let ok = match expect {
                Passes => status != 401 && status != 403 && (status != 429 || !refused_past_rate),
                Status(403) => status == 403 || refused_past_rate,
                Status(s) => status == *s,
            };
            if !ok {
                wrong.push(format!("{method} {path} as {who}: {status} {answer}, expected {expect:?}"));
            }
            if matches!(status, 401 | 403 | 429) {
                assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path} as {who}: {answer}");
            }
        }
    }
    // The scoped token does what it may on its own mission.
    let (status, answer) = ask(&addr, "POST", &format!("/api/missions/{m2}/cases"), &scoped, Some(&case));
    assert_eq!(status, 201, "the scoped token on its own mission: {answer}");
    let (status, _) = ask(&addr, "GET", &format!("/api/missions/{m2}"), &scoped, None);
    assert_eq!(status, 200);
    assert!(wrong.is_empty(), "{} cells of the table differ:\n{}", wrong.len(), wrong.join("\n"));
    let (status, _) = ask(&addr, "DELETE", &format!("/api/tokens/{scoped_id}"), &Auth::Cookie(op_cookie.clone()), None);
    assert_eq!(status, 200);
    let (status, answer) = ask(&addr, "GET", &format!("/api/missions/{m2}"), &scoped, None);
    let message = answer["error"].as_str().unwrap_or_default();
    // 429 once the token's refusals passed the rate; it says why all the same.
    assert!((status == 401 || status == 429) && message.contains("revoked"), "a revoked token: {status} {answer}");
    served.stop();
    // Every 403 of a known caller was journaled.
    let refused = journal(&data, "request.refused");
    assert!(refused.len() >= 20, "{} refusals journaled", refused.len());
    assert!(refused.iter().any(|e| e["payload"]["by"]["token"] == scoped_id.as_str()));
    assert!(refused.iter().all(|e| e["payload"]["status"] != 401 || e["payload"]["by"]["token"].is_string()));
}

//! API tokens for scripts (issue #21, item 3), through the real binary:
//! issued with `conductor tokens issue`, used as `Authorization: Bearer`
//! on `conductor serve`'s API within their role and mission, refused once
//! revoked, issued and revoked over the API by a signed-in operator, and
//! never stored: neither the journal nor the database file holds a
//! secret, only its hash. Every issue, revocation and refusal of a known
//! caller is journaled, and the journal verifies.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Issues a token with the command line; returns its `--json` record.
fn issue(data: &Path, operator: &Path, args: &[&str]) -> Value {
    let out =
        run(conductor().args(["tokens", "issue", "--json", "--key"]).arg(operator).arg("--data").arg(data).args(args));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let issued = stdout_json(&out);
    assert!(issued["token"].as_str().is_some_and(|t| t.starts_with("cdt_")), "{issued}");
    issued
}

/// The secret part of a token (after `cdt_<id>_`).
fn secret_hex(token: &str) -> &str {
    token.rsplit_once('_').expect("cdt_<id>_<secret>").1
}

/// Runs a mission to its gate (the scripted model, so no model file);
/// returns the mission id and the gate id.
fn gated_mission(dir: &Path, data: &Path, registry: &Path, name: &str) -> (String, String) {
    let cases = "    - { id: claim-1, outcome: disputed, reason: needs a person }\n";
    let gates = "gates:\n  - { name: dispute, when: { field: decision.outcome, equals: disputed } }\n";
    let mission = swarm_mission(dir, name, 5_000, cases, gates);
    let out =
        run(conductor().arg("run").arg(&mission).arg("--models").arg(registry).arg("--data").arg(data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "awaiting_review", "{summary}");
    let gate = by_case(&summary, "claim-1")["gate"].as_str().expect("a gate").to_owned();
    (summary["mission_id"].as_str().expect("mission id").to_owned(), gate)
}

#[test]
fn tokens_work_within_their_role_and_mission_until_revoked_and_are_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let operator_key = dir.path().join("operator.key");
    registered_operator(&data, &operator_key);
    let registry = scripted_registry(dir.path());
    let (mission_a, gate_a) = gated_mission(dir.path(), &data, &registry, "first");
    let (mission_b, _) = gated_mission(dir.path(), &data, &registry, "second");

    // Issued on the command line, each naming the operator's key.
    let reviewer = issue(&data, &operator_key, &["--role", "reviewer", "--name", "triage-bot"]);
    let operator = issue(&data, &operator_key, &["--role", "operator", "--name", "nightly", "--expires", "30d"]);
    let scoped_a = issue(&data, &operator_key, &["--role", "reviewer", "--mission", &mission_a, "--name", "a-only"]);
    let scoped_b = issue(&data, &operator_key, &["--role", "reviewer", "--mission", &mission_b, "--name", "b-only"]);
    assert_eq!(scoped_a["mission"], mission_a.as_str(), "{scoped_a}");
    let token = |v: &Value| v["token"].as_str().expect("token").to_owned();
    let (reviewer_t, operator_t, scoped_a_t, scoped_b_t) =
        (token(&reviewer), token(&operator), token(&scoped_a), token(&scoped_b));

    // What no token may be: exit 2, nothing issued.
    for bad in [
        &["--role", "reviewer", "--mission", "no-such-mission", "--name", "x"][..],
        &["--role", "reviewer", "--name", "has space"],
        &["--role", "reviewer", "--name", "x", "--expires", "5s"],
        &["--role", "reviewer", "--name", "x", "--expires", "400d"],
    ] {
        let out =
            run(conductor().args(["tokens", "issue", "--key"]).arg(&operator_key).arg("--data").arg(&data).args(bad));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    // Only a registered operator key issues tokens.
    let stranger = dir.path().join("stranger.key");
    assert_eq!(
        run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&stranger)).status.code(),
        Some(0)
    );
    let out = run(conductor()
        .args(["tokens", "issue", "--role", "reviewer", "--name", "x", "--key"])
        .arg(&stranger)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not registered"), "{}", stderr(&out));

    let auditor_key = dir.path().join("auditor.key");
    assert_eq!(
        run(conductor().args(["keys", "new", "--role", "auditor", "--out"]).arg(&auditor_key)).status.code(),
        Some(0)
    );
    let out = run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&auditor_key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A module for missions sent over HTTP, inside DATA/missions/.
    std::fs::create_dir_all(data.join("missions")).expect("uploads dir");
    std::fs::copy(module("cells/guests/delegate-agent/delegate.wasm"), data.join("missions/delegate.wasm"))
        .expect("module");
    let server = Served::start(&data, &[std::ffi::OsStr::new("--models"), registry.as_os_str()]);
    let addr = server.addr.clone();

    // A reviewer token reads the gate queue, as a signed-in reviewer does.
    let (status, _, body) = request(&addr, "GET", "/api/gates", Caller::Authorization(&bearer(&reviewer_t)), None);
    assert_eq!(status, 200, "{body}");
    assert!(body["gates"].as_array().expect("gates").iter().any(|g| g["id"] == gate_a.as_str()), "{body}");
    let (status, _, me) = request(&addr, "GET", "/api/me", Caller::Authorization(&bearer(&reviewer_t)), None);
    assert_eq!((status, &me["role"], &me["token"]), (200, &json!("reviewer"), &reviewer["id"]), "{me}");
    // It holds no key, so it cannot sign a decision.
    let (status, _, body) = request(
        &addr,
        "POST",
        &format!("/api/gates/{gate_a}/prepare"),
        Caller::Authorization(&bearer(&reviewer_t)),
        Some(&json!({"verdict": "approve"})),
    );
    assert_eq!(status, 403, "{body}");

    // An operator token starts a mission; a reviewer token may not.
    let yaml = "name: uploaded\nbudget:\n  limit: 1000\nmodels:\n  smollm2-135m:\n    prompt_price: 1\n    \
                completion_price: 1\nagents:\n  - { name: lead, module: delegate.wasm, model: smollm2-135m }\n\
                tasks:\n  agent: lead\n  inline:\n    - { id: c-1, outcome: fine, reason: ok }\n";
    let (status, _, body) = request(
        &addr,
        "POST",
        "/api/missions",
        Caller::Authorization(&bearer(&operator_t)),
        Some(&json!({"yaml": yaml})),
    );
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = request(
        &addr,
        "POST",
        "/api/missions",
        Caller::Authorization(&bearer(&reviewer_t)),
        Some(&json!({"yaml": yaml})),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("reviewer tokens cannot")), "{body}");

    // A token scoped to mission A sees A's gate; one scoped to B does not,
    // and neither may use a route about every mission.
    let (status, _, body) =
        request(&addr, "GET", &format!("/api/gates/{gate_a}"), Caller::Authorization(&bearer(&scoped_a_t)), None);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        request(&addr, "GET", &format!("/api/gates/{gate_a}"), Caller::Authorization(&bearer(&scoped_b_t)), None);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains(&mission_b)), "{body}");
    let (status, _, body) = request(&addr, "GET", "/api/gates", Caller::Authorization(&bearer(&scoped_a_t)), None);
    assert_eq!(status, 403, "{body}");

    // Tokens that prove nothing: 401, and nothing journaled for them.
    let unknown = format!("cdt_{}_{}", "0".repeat(16), secret_hex(&reviewer_t));
    let wrong_secret = format!("cdt_{}_{}", reviewer["id"].as_str().expect("id"), "0".repeat(64));
    for auth in [bearer("nonsense"), bearer(&unknown), bearer(&wrong_secret), "Basic abc".to_owned()] {
        let (status, _, body) = request(&addr, "GET", "/api/gates", Caller::Authorization(&auth), None);
        assert_eq!(status, 401, "{auth}: {body}");
    }

    // Over the API, only an operator signed in with their own key issues
    // and revokes tokens; an operator token may list them.
    let operator_pair = identity::Keypair::load(&operator_key).expect("operator key");
    let cookie = sign_in(&addr, &operator_pair);
    let (status, _, body) = request(
        &addr,
        "POST",
        "/api/tokens",
        Caller::Authorization(&bearer(&operator_t)),
        Some(&json!({"role": "operator", "name": "minted"})),
    );
    assert_eq!(status, 403, "a token cannot mint tokens: {body}");
    let (status, _, api_issued) = request(
        &addr,
        "POST",
        "/api/tokens",
        Caller::Cookie(&cookie),
        Some(&json!({"role": "auditor", "name": "exporter", "expires_in_s": 3600})),
    );
    assert_eq!(status, 201, "{api_issued}");
    let api_t = token(&api_issued);
    let (status, _, body) =
        request(&addr, "POST", "/api/tokens", Caller::Cookie(&cookie), Some(&json!({"role": "agent", "name": "x"})));
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = request(
        &addr,
        "POST",
        "/api/tokens",
        Caller::Cookie(&cookie),
        Some(&json!({"role": "reviewer", "name": "x", "mission": "no-such-mission"})),
    );
    assert_eq!(status, 422, "{body}");
    let (status, listing_text, listing) =
        request(&addr, "GET", "/api/tokens", Caller::Authorization(&bearer(&operator_t)), None);
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["tokens"].as_array().expect("tokens").len(), 5, "{listing}");
    for secret in [&reviewer_t, &operator_t, &scoped_a_t, &scoped_b_t, &api_t] {
        assert!(!listing_text.contains(secret_hex(secret)), "a listing shows no secret");
    }
    assert!(!listing_text.contains("secret_blake3"), "a listing shows no hash: {listing}");
    let (status, _, body) = request(&addr, "GET", "/api/me", Caller::Authorization(&bearer(&api_t)), None);
    assert_eq!((status, &body["role"]), (200, &json!("auditor")), "{body}");

    // Sessions keep their ways: an operator sees the queue; an auditor
    // sees a gate once decided, and the refusal is journaled as the key's.
    let (status, _, body) = request(&addr, "GET", "/api/gates", Caller::Cookie(&cookie), None);
    assert_eq!(status, 200, "{body}");
    assert!(body["gates"].as_array().expect("gates").iter().any(|g| g["id"] == gate_a.as_str()), "{body}");
    let auditor = identity::Keypair::load(&auditor_key).expect("auditor key");
    let auditor_cookie = sign_in(&addr, &auditor);
    let (status, _, body) =
        request(&addr, "GET", &format!("/api/gates/{gate_a}"), Caller::Cookie(&auditor_cookie), None);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("still pending")), "{body}");

    // Revoked: refused at once (401), and the refusal is journaled as the
    // token's. A script looping on it is cut to 429 and counted.
    let reviewer_id = reviewer["id"].as_str().expect("id");
    let (status, _, body) =
        request(&addr, "DELETE", &format!("/api/tokens/{reviewer_id}"), Caller::Cookie(&cookie), None);
    assert_eq!((status, &body["status"]), (200, &json!("revoked")), "{body}");
    let (status, _, body) =
        request(&addr, "DELETE", &format!("/api/tokens/{reviewer_id}"), Caller::Cookie(&cookie), None);
    assert_eq!(status, 409, "revoked twice: {body}");
    let (status, _, body) = request(&addr, "GET", "/api/gates", Caller::Authorization(&bearer(&reviewer_t)), None);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("revoked")), "{body}");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(request(&addr, "GET", "/api/gates", Caller::Authorization(&bearer(&reviewer_t)), None).0);
    }
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "a loop is cut to 429: {statuses:?}");
    server.stop();

    // Offline, the command line revokes and lists.
    let operator_id = operator["id"].as_str().expect("id");
    let out =
        run(conductor().args(["tokens", "revoke", operator_id, "--key"]).arg(&operator_key).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out =
        run(conductor().args(["tokens", "revoke", operator_id, "--key"]).arg(&operator_key).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(1), "revoked twice: {}", stderr(&out));
    let out = run(conductor().args(["tokens", "list", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = stdout_json(&out);
    let status_of = |id: &Value| {
        listed.as_array().expect("list").iter().find(|t| t["id"] == *id).expect("listed")["status"].clone()
    };
    assert_eq!(status_of(&reviewer["id"]), "revoked");
    assert_eq!(status_of(&operator["id"]), "revoked");
    assert_eq!(status_of(&scoped_a["id"]), "in_force");

    // The journal: every issue and revocation, naming who did it.
    let issued = journal(&data, "token.issued");
    assert_eq!(issued.len(), 5, "{issued:?}");
    assert_eq!(issued[0]["payload"]["by"]["via"], "cli");
    assert_eq!(issued[0]["payload"]["by"]["key"], operator_pair.public().key_id().to_string());
    assert_eq!(issued[4]["payload"]["by"]["via"], "api");
    assert_eq!(issued[4]["payload"]["role"], "auditor");
    let revoked = journal(&data, "token.revoked");
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert_eq!(revoked[0]["payload"]["token"], reviewer["id"]);

    // Refusals of known callers, by route pattern; none for the tokens
    // that proved nothing.
    let refused = journal(&data, "request.refused");
    let by_token = |id: &Value| -> Vec<&Value> {
        refused.iter().filter(|e| e["payload"]["by"]["token"] == *id).map(|e| &e["payload"]).collect()
    };
    let scoped_b_refusals = by_token(&scoped_b["id"]);
    assert!(
        scoped_b_refusals
            .iter()
            .any(|p| p["route"] == "/api/gates/{id}" && p["status"] == 403 && p["mission"] == mission_a.as_str()),
        "{refused:?}"
    );
    assert!(by_token(&operator["id"]).iter().any(|p| p["route"] == "/api/tokens" && p["status"] == 403));
    let reviewer_refusals = by_token(&reviewer["id"]);
    assert!(reviewer_refusals.iter().any(|p| p["route"] == "/api/missions" && p["status"] == 403));
    assert!(reviewer_refusals.iter().any(|p| p["route"] == "/api/gates/{id}/prepare"));
    // Those two only: the wrong secret presented with its id proved nothing.
    assert_eq!(reviewer_refusals.iter().filter(|p| p["status"] == 403).count(), 2, "{reviewer_refusals:?}");
    let after_revocation: Vec<&&Value> = reviewer_refusals.iter().filter(|p| p["status"] == 401).collect();
    // Ten a minute one by one (two went before), and one summary.
    assert!(
        !after_revocation.is_empty() && after_revocation.len() <= 9,
        "the loop was journaled within the limit, not once per request: {after_revocation:?}"
    );
    assert!(
        after_revocation.iter().any(|p| p["repeated"].as_u64().is_some_and(|n| n > 0) && p["first_us"].is_i64()),
        "the counted ones are summed up when the server stops: {after_revocation:?}"
    );
    assert!(
        refused.iter().all(|e| e["payload"]["by"]["token"] != "0000000000000000"),
        "an unknown token journals nothing"
    );
    let auditor_id = auditor.public().key_id().to_string();
    assert!(
        refused.iter().any(|e| e["payload"]["by"]["key"] == auditor_id.as_str()
            && e["payload"]["by"]["token"].is_null()
            && e["payload"]["route"] == "/api/gates/{id}"
            && e["payload"]["status"] == 403),
        "a session's refusal names its key: {refused:?}"
    );
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
    let kinds = assert_entries_typed(&data);
    assert_eq!(kinds.get("token.issued"), Some(&5), "{kinds:?}");

    // No secret anywhere on disk: not in the database file (as text or as
    // bytes), not in the journal's export; only its hash.
    let db = std::fs::read(data.join("conductor.redb")).expect("database file");
    let export = dir.path().join("journal.cjx");
    let out = run(conductor().args(["audit", "export", "--data"]).arg(&data).arg("--out").arg(&export));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let exported = std::fs::read(&export).expect("export");
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for secret in [&reviewer_t, &operator_t, &scoped_a_t, &scoped_b_t, &api_t] {
        let hex_secret = secret_hex(secret);
        let raw = hex::decode(hex_secret).expect("hex secret");
        for (what, bytes) in [("the database", &db), ("the export", &exported)] {
            assert!(!contains(bytes, hex_secret.as_bytes()), "{what} holds a token secret");
            assert!(!contains(bytes, &raw), "{what} holds a token secret's bytes");
        }
        let hash = blake3::hash(&raw).to_hex().to_string();
        assert!(contains(&db, hash.as_bytes()), "the database keeps the secret's hash");
    }
}

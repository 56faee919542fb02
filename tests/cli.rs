//! Black-box tests that need no model: validation, containment of hostile
//! agents, tamper detection, keys and gates.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn malformed_mission_files_get_located_errors_and_never_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str, &str)] = &[
        ("empty.yaml", "", "1:1"),
        ("syntax.yaml", "name: [unclosed\n", "mission"),
        ("type.yaml", "name: x\nbudget:\n  limit: lots\n", "3:10"),
        ("unknown.yaml", "name: x\nbudgte: 5\n", "2:1"),
        ("binary.yaml", "\u{0}\u{1}\u{2}garbage\u{7f}", "1:"),
    ];
    for (file, text, location) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        let out = run(conductor().args(["mission", "validate"]).arg(&path));
        assert_eq!(out.status.code(), Some(2), "{file}: invalid input exits 2");
        let err = stderr(&out);
        assert!(err.contains(&format!("{}:", path.display())), "{file}: names the file: {err}");
        assert!(err.contains(location), "{file}: expected location {location} in: {err}");
        assert!(!err.contains("panicked"), "{file}: panicked: {err}");
    }
    // Several semantic problems are all reported at once, each located.
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let path = dir.path().join("many.yaml");
    std::fs::write(
        &path,
        format!(
            "name: Bad Name\nbudget:\n  limit: 0\nmodels:\n  m:\n    prompt_price: 1\n    completion_price: 1\n\
             agents:\n  - name: a\n    module: {}\n    model: nope\n\
             tasks:\n  agent: zzz\n  inline:\n    - {{x: 1}}\n",
            echo.display()
        ),
    )
    .expect("write");
    let out = run(conductor().args(["mission", "validate"]).arg(&path));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for needle in ["1:7", "3:10", "11:12", "13:10", "help:"] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    // `run` refuses the same file before doing anything.
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&path).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(2));
    assert!(!data.exists(), "nothing is created for an invalid mission");
}

#[test]
fn the_sample_mission_validates() {
    module("missions/examples/casework/agent/eligibility.wasm");
    let path = repo_root().join("missions/examples/casework/mission.yaml");
    let out = run(conductor().args(["mission", "validate"]).arg(&path));
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("eligibility-casework"), "{text}");
}

#[test]
fn trapping_and_looping_agents_are_contained_and_other_tasks_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let cases = "    - {id: ok-1, behave: echo}\n\
                 \x20   - {id: trap, behave: trap}\n\
                 \x20   - {id: ok-2, behave: echo}\n\
                 \x20   - {id: spin, behave: spin}\n\
                 \x20   - {id: sleepy, behave: spin-calls}\n\
                 \x20   - {id: hog, behave: grow}\n\
                 \x20   - {id: panicky, behave: panic}\n\
                 \x20   - {id: deep, behave: recurse}\n\
                 \x20   - {id: shouty, behave: huge-arg}\n\
                 \x20   - {id: escapee, behave: escape}\n\
                 \x20   - {id: ok-3, behave: echo}\n";
    let mission = write_mission(
        dir.path(),
        "hostile",
        &hostile,
        1000,
        "{fuel: 200000000, wall_ms: 20000, memory_bytes: 16777216, host_calls: 20}",
        cases,
        "",
    );
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    // Exit 6: the mission ran to its end, and some tasks failed.
    assert_eq!(out.status.code(), Some(6), "the conductor survives hostile agents: {}", stderr(&out));
    let summary = stdout_json(&out);
    let by_case = |id: &str| tasks(&summary).iter().find(|t| t["case_id"] == id).cloned().expect("task present");
    for ok in ["ok-1", "ok-2", "ok-3"] {
        let t = by_case(ok);
        assert_eq!(t["status"], "decided", "{ok}: {t}");
        assert_eq!(t["outcome"], "echo");
    }
    let failure = |id: &str| by_case(id)["failure"].as_str().unwrap_or_default().to_owned();
    assert_eq!(by_case("trap")["status"], "failed");
    assert!(failure("trap").contains("trapped"), "{}", failure("trap"));
    assert!(failure("spin").contains("fuel"), "{}", failure("spin"));
    assert!(failure("sleepy").contains("host-call limit"), "{}", failure("sleepy"));
    assert!(failure("hog").contains("memory limit"), "{}", failure("hog"));
    assert!(failure("panicky").contains("trapped"), "{}", failure("panicky"));
    assert!(failure("deep").contains("stack"), "{}", failure("deep"));
    assert!(failure("shouty").contains("argument bytes"), "{}", failure("shouty"));
    // Files, sockets and names are refused inside the cell; the agent
    // carries on and decides.
    assert_eq!(by_case("escapee")["outcome"], "contained", "{}", by_case("escapee"));
    assert_eq!(summary["status"], "completed_with_failures");
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");
    let out = run(conductor().args(["ledger", "show", "--json", "--data"]).arg(&data));
    let accounts = stdout_json(&out);
    assert_eq!(accounts[0]["account"], summary["mission_id"]);
    assert_eq!(accounts[0]["pending"], 0);
    assert_eq!(accounts[0]["available"], 1000);

    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_agent_may_ask_for_review_under_a_declared_gate_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    // The gate's own condition never holds: only the agent's request
    // sends a task to it.
    let gates = "gates:\n  - name: second-look\n    when: { field: case.id, equals: no-case-has-this-id }\n";
    let cases = "    - {id: asks, behave: review}\n\
                 \x20   - {id: asks-wrong, behave: review, gate: undeclared}\n\
                 \x20   - {id: quiet, behave: echo}\n";
    let mission = write_mission(dir.path(), "review", &hostile, 1000, "{}", cases, gates);
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let by_case = |id: &str| tasks(&summary).iter().find(|t| t["case_id"] == id).cloned().expect("task");
    assert_eq!(by_case("asks")["status"], "awaiting_review", "{}", by_case("asks"));
    assert_eq!(by_case("quiet")["status"], "decided");
    let wrong = by_case("asks-wrong");
    assert_eq!(wrong["outcome"], "review-refused", "{wrong}");
    assert!(wrong["reason"].as_str().unwrap_or_default().contains("not declared"), "{wrong}");
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let gates = stdout_json(&out);
    let listed = gates.as_array().expect("gates");
    assert_eq!(listed.len(), 1, "{gates}");
    assert_eq!(listed[0]["gate"], "second-look");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the agent's request is a valid signed entry");
}

/// Creates an operator key and returns (key file, public key hex).
fn operator_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let public =
        text.lines().find_map(|l| l.strip_prefix("public key ")).expect("the public key is printed").trim().to_owned();
    (path, public)
}

#[test]
fn a_mission_that_requires_signed_modules_refuses_anything_else_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("echo.wasm");
    std::fs::copy(common::module("cells/guests/echo-agent/echo.wasm"), &module).expect("copy module");
    let (key, public) = operator_key(dir.path(), "operator.key");
    let (stranger, _) = operator_key(dir.path(), "stranger.key");
    let trust = format!("trust:\n  modules_signed_by: [\"{public}\"]\n");
    let mission = write_mission(dir.path(), "signed", &module, 1000, "{}", "    - {id: a}\n", &trust);
    let data = dir.path().join("data");
    let try_run = || run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));

    // Unsigned: refused by validate and by run, and nothing is created.
    let out = run(conductor().args(["mission", "validate"]).arg(&mission));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not signed"), "{}", stderr(&out));
    let out = try_run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!data.exists(), "nothing runs or is journaled for an untrusted module");

    // Signed by a key the mission does not trust: refused.
    let out = run(conductor().args(["modules", "sign"]).arg(&module).arg("--key").arg(&stranger));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = try_run();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not trust"), "{}", stderr(&out));

    // Signed by the trusted operator: verifies and runs.
    let out = run(conductor().args(["modules", "sign"]).arg(&module).arg("--key").arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["modules", "verify"]).arg(&module).args(["--trusted", &public]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = try_run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Changed after signing: refused with the reason.
    let mut bytes = std::fs::read(&module).expect("read");
    bytes.push(0);
    std::fs::write(&module, bytes).expect("write");
    let out = run(conductor().args(["modules", "verify"]).arg(&module));
    assert_eq!(out.status.code(), Some(4));
    let data2 = dir.path().join("data2");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data2));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("changed after signing"), "{}", stderr(&out));
}

/// Runs a quick mission and returns (tempdir, data dir).
fn quick_mission(gates: &str, cases: &str) -> (tempfile::TempDir, std::path::PathBuf, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let mission = write_mission(dir.path(), "quick", &echo, 1000, "{}", cases, gates);
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let summary = stdout_json(&out);
    (dir, data, summary)
}

#[test]
fn a_tampered_journal_is_detected_and_the_sequence_named() {
    let (_dir, data, _) = quick_mission("", "    - {id: a}\n    - {id: b}\n    - {id: c}\n");
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let entries = stdout_json(&out)["entries"].as_u64().expect("entries");
    assert!(entries > 10, "a mission writes many entries: {entries}");

    let db_path = data.join("conductor.redb");
    let original = std::fs::read(&db_path).expect("read db");
    let journal: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");
    let tamper = |f: &dyn Fn(&mut redb::Table<u64, &[u8]>)| {
        std::fs::write(&db_path, &original).expect("restore");
        let db = redb::Database::open(&db_path).expect("open db");
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(journal).expect("table");
            f(&mut table);
        }
        txn.commit().expect("commit");
    };
    let read_entry = |table: &redb::Table<u64, &[u8]>, seq: u64| -> Vec<u8> {
        use redb::ReadableTable;
        table.get(seq).expect("get").expect("present").value().to_vec()
    };
    let verify = || {
        let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
        assert_eq!(out.status.code(), Some(4), "tampering is detected");
        stdout_json(&out)
    };

    // 1. Change one byte of an entry's payload (its last payload byte).
    let target = entries / 2;
    tamper(&|t| {
        let mut rec = read_entry(t, target);
        let at = rec.len() - 96 - 2;
        rec[at] ^= 0x20;
        t.insert(target, rec.as_slice()).expect("insert");
    });
    let report = verify();
    assert_eq!(report["seq"], target, "{report}");

    // 2. Remove an entry.
    tamper(&|t| {
        t.remove(target).expect("remove");
    });
    assert_eq!(verify()["seq"], target);

    // 3. Swap two entries.
    tamper(&|t| {
        let (a, b) = (read_entry(t, target), read_entry(t, target + 1));
        t.insert(target, b.as_slice()).expect("insert");
        t.insert(target + 1, a.as_slice()).expect("insert");
    });
    assert_eq!(verify()["seq"], target);

    // 4. Cut the tail.
    tamper(&|t| {
        t.remove(entries - 1).expect("remove");
    });
    assert_eq!(verify()["seq"], entries - 1);

    // The untouched database still verifies.
    std::fs::write(&db_path, &original).expect("restore");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_gate_is_decided_by_a_reviewer_key_and_the_case_completes() {
    let gates = "gates:\n  - name: big\n    when: { field: case.amount, greater_than: 100 }\n";
    let (dir, data, summary) = quick_mission(
        gates,
        "    - {id: small, amount: 5}\n    - {id: big, amount: 500}\n    - {id: big2, amount: 900}\n",
    );
    assert_eq!(summary["status"], "awaiting_review");
    assert_eq!(summary["counts"]["awaiting_review"], 2);
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();

    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let gates = stdout_json(&out);
    let pending: Vec<&Value> = gates.as_array().expect("list").iter().filter(|g| g["status"] == "pending").collect();
    assert_eq!(pending.len(), 2);
    let first = pending[0]["id"].as_str().expect("gate id").to_owned();
    let second = pending[1]["id"].as_str().expect("gate id").to_owned();

    // A non-reviewer key is refused and changes nothing.
    let operator_key = dir.path().join("operator.key");
    run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&operator_key));
    let out = run(conductor().args(["gates", "approve", &first, "--key"]).arg(&operator_key).arg("--data").arg(&data));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("reviewer key"), "{}", stderr(&out));

    let key = dir.path().join("reviewer.key");
    let out = run(conductor().args(["keys", "new", "--role", "reviewer", "--out"]).arg(&key));
    assert_eq!(out.status.code(), Some(0));
    let key_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("key id").map(|s| s.trim().to_owned()))
        .expect("key id printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key files are owner-only");
    }

    let out = run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&key));
    assert_eq!(out.status.code(), Some(0));
    let out = run(conductor().args(["gates", "approve", &first, "--key"]).arg(&key).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0));
    // Deciding twice is refused.
    let out = run(conductor().args(["gates", "reject", &first, "--key"]).arg(&key).arg("--data").arg(&data));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("already approved"), "{}", stderr(&out));
    // An unknown gate is refused.
    let out = run(conductor().args(["gates", "approve", "no-such-gate", "--key"]).arg(&key).arg("--data").arg(&data));
    assert_ne!(out.status.code(), Some(0));

    let out = run(conductor()
        .args(["gates", "reject", &second, "--note", "income proof missing", "--key"])
        .arg(&key)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0));

    let out = run(conductor().args(["mission", "show", &mission_id, "--json", "--data"]).arg(&data));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "completed");
    let decided_by: Vec<&str> = tasks(&summary).iter().filter_map(|t| t["decided_by"].as_str()).collect();
    assert_eq!(decided_by.iter().filter(|d| **d == format!("reviewer:{key_id}")).count(), 2);
    let rejected = tasks(&summary).iter().find(|t| t["gate"] == second.as_str()).expect("task");
    assert_eq!(rejected["outcome"], "rejected");

    // The reviewer's signature is in the verified journal.
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let signers = stdout_json(&out)["signers"].clone();
    assert!(signers.as_array().expect("signers").iter().any(|s| s == key_id.as_str()), "{signers}");
}

#[test]
fn help_explains_every_command() {
    let out = run(conductor().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "mission", "audit", "gates", "keys", "Exit status"] {
        assert!(text.contains(cmd), "--help mentions {cmd}");
    }
    for sub in [&["run", "--help"][..], &["gates", "approve", "--help"], &["audit", "verify", "--help"]] {
        let out = run(conductor().args(sub));
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("--data"));
    }
}

/// The triage agent in Rust, Python (componentize-py) and JavaScript
/// (componentize-js), one task group each in one mission: every language
/// reaches the real model, memory and gates through the same WIT world,
/// and all three decide each case the same way.
#[test]
fn rust_python_and_javascript_agents_run_side_by_side_and_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let langs = [
        ("rust", module("cells/guests/triage/rust/triage-rs.wasm")),
        ("python", module("cells/guests/triage/python/triage-py.wasm")),
        ("js", module("cells/guests/triage/js/triage-js.wasm")),
    ];
    let mut agents = String::new();
    let mut groups = String::new();
    for (lang, path) in &langs {
        // The Python and JavaScript runtimes start with 9 to 13 MiB of
        // linear memory and spend millions of fuel units booting.
        agents.push_str(&format!(
            "  - {{ name: {lang}, module: {}, model: smollm2-135m, limits: {{ memory_bytes: 67108864, fuel: 5000000000, host_calls: 16, max_tokens: 8 }} }}\n",
            path.display()
        ));
        groups.push_str(&format!(
            "  - {{ agent: {lang}, inline: [{{ id: {lang}-small, amount: 120 }}, {{ id: {lang}-large, amount: 9000 }}, {{ id: {lang}-bad, amount: lots }}] }}\n"
        ));
    }
    let text = format!(
        "name: triage\n\
         budget: {{ limit: 100000 }}\n\
         models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
         agents:\n{agents}\
         tasks:\n{groups}\
         memory:\n  - {{ subject: \"policy:triage\", predicate: review-above, value: \"5000\", valid_from: 2026-01-01T00:00:00Z }}\n\
         gates:\n  - {{ name: large-amount, when: {{ field: case.amount, greater_than: 1000000000 }} }}\n"
    );
    let mission = dir.path().join("triage.yaml");
    std::fs::write(&mission, text).expect("mission");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let by_case = |id: &str| tasks(&summary).iter().find(|t| t["case_id"] == id).cloned().expect("task");
    for (lang, _) in &langs {
        let small = by_case(&format!("{lang}-small"));
        assert_eq!(small["agent"], *lang, "{small}");
        assert_eq!(small["status"], "decided", "{small}");
        assert_eq!(small["outcome"], "accept", "{small}");
        assert_eq!(small["reason"], "amount 120 vs limit 5000", "{small}");
        assert_eq!(small["model_calls"], 1, "{lang} reached the real model: {small}");
        assert!(small["tokens_settled"].as_u64().unwrap_or(0) > 0, "{small}");

        let large = by_case(&format!("{lang}-large"));
        assert_eq!(large["status"], "awaiting_review", "{lang} asked for review: {large}");
        assert!(large["gate"].is_string(), "a gate was opened: {large}");

        let bad = by_case(&format!("{lang}-bad"));
        assert_eq!(bad["status"], "failed", "{bad}");
        let failure = bad["failure"].as_str().unwrap_or_default();
        assert!(failure.contains("input: `amount` is not an integer"), "{lang}: {failure}");
    }
    assert_eq!(summary["budget"]["pending"], 0, "every reservation settled");

    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let gates = stdout_json(&out);
    let listed = gates.as_array().expect("gates");
    assert_eq!(listed.len(), 3, "one review per language: {gates}");
    assert!(listed.iter().all(|g| g["gate"] == "large-amount"), "{gates}");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "every language's host calls are valid signed entries");
}

/// `await-review` parks a task: its cell is gone while the gate is open.
/// Deciding the gate makes it runnable; `mission resume` replays it from
/// the journal to the await, hands it the reviewer's answer and lets it
/// finish live. The whole attempt then replays from the journal.
#[test]
fn a_parked_task_resumes_with_the_reviewers_answer_when_its_gate_is_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let gates = "gates:\n  - name: second-look\n    when: { field: case.id, equals: no-case-has-this-id }\n";
    let cases = "    - {id: waits, behave: await}\n\
                 \x20   - {id: waits-too, behave: await}\n\
                 \x20   - {id: quiet, behave: echo}\n";
    let mission = write_mission(dir.path(), "parked", &hostile, 1000, "{}", cases, gates);
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();
    let by_case = |s: &Value, id: &str| tasks(s).iter().find(|t| t["case_id"] == id).cloned().expect("task");
    let waits = by_case(&summary, "waits");
    assert_eq!(waits["status"], "awaiting_review", "{waits}");
    assert_eq!(by_case(&summary, "quiet")["status"], "decided");
    assert_eq!(summary["status"], "awaiting_review");

    // A reviewer answers one of the two.
    let key = dir.path().join("reviewer.key");
    assert_eq!(run(conductor().args(["keys", "new", "--out"]).arg(&key)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(&key).args(["--name", "Ada"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gate = waits["gate"].as_str().expect("gate id").to_owned();
    // Deciding the gate continues the mission at once: the task is
    // replayed to its await and finishes with the answer.
    let out = run(conductor()
        .args(["gates", "approve", &gate, "--note", "fine by me", "--json", "--key"])
        .arg(&key)
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("continuing its mission"), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let waits = by_case(&summary, "waits");
    assert_eq!(waits["status"], "decided", "{waits}");
    assert_eq!(waits["outcome"], "approved", "the agent got the reviewer's answer: {waits}");
    assert!(waits["reason"].as_str().unwrap_or_default().ends_with(": fine by me"), "{waits}");
    assert_eq!(by_case(&summary, "waits-too")["status"], "awaiting_review", "its gate is still open");
    assert_eq!(summary["status"], "awaiting_review");

    // `--no-resume` only records the decision; `mission resume` continues.
    let other = by_case(&summary, "waits-too")["gate"].as_str().expect("gate").to_owned();
    let out =
        run(conductor().args(["gates", "reject", &other, "--no-resume", "--key"]).arg(&key).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mission resume"), "says how to continue");
    let out = run(conductor().args(["mission", "resume", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(by_case(&summary, "waits-too")["outcome"], "rejected");
    assert_eq!(summary["status"], "completed");

    // The log before the gate ran once live; after resuming, the replay
    // answered it from the journal, and only the log after the gate is new.
    let out = run(conductor().args(["audit", "log", "--json", "--kind", "host.log", "--data"]).arg(&data));
    let logs: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let of_waits: Vec<&str> = logs
        .iter()
        .filter(|e| e["payload"]["task"] == 0)
        .map(|e| e["payload"]["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(of_waits, ["before the gate", "after the gate"]);

    // The report counts from the journal: two tasks went to a gate, one
    // approved, one rejected, each with a time to decision.
    let out = run(conductor().args(["mission", "report", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["tasks"]["started"], 3, "{report}");
    assert_eq!(report["tasks"]["decided"], 3, "{report}");
    assert_eq!(report["exceptions"]["tasks_sent_to_a_gate"], 2, "{report}");
    let gate = &report["gates"][0];
    assert_eq!((gate["gate"].as_str(), gate["requested"].as_u64()), (Some("second-look"), Some(2)), "{report}");
    assert_eq!(
        (gate["approved"].as_u64(), gate["rejected"].as_u64(), gate["pending"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    let worst = gate["time_to_decision_us"]["worst"].as_i64().expect("a worst wait");
    assert!(worst > 0 && worst >= gate["time_to_decision_us"]["median"].as_i64().expect("median"), "{report}");
    assert_eq!(report["timeouts"], 0);
    let out = run(conductor().args(["mission", "report", "no-such-mission", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no mission `no-such-mission`"), "{}", stderr(&out));

    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let out = run(conductor().args(["audit", "replay", "--json", "--task", "0", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)[0]["verdict"], "match");

    // Its provenance names the reviewer who answered.
    let out =
        run(conductor().args(["audit", "show", "--json", "--data"]).arg(&data).arg(format!("{mission_id}/waits")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = stdout_json(&out);
    assert_eq!(doc["task"]["case"], "waits");
    assert_eq!(doc["signatures"]["all_valid"], true);
    let decided =
        doc["gates"].as_array().expect("gates").iter().find(|g| g["kind"] == "gate.decided").cloned().expect("decided");
    assert_eq!(decided["entry"]["signed_by"]["name"], "Ada", "{decided}");
    assert!(doc["host_calls"].as_array().expect("calls").iter().any(|c| c["kind"] == "host.await"));
}

/// Gates with named reviewers and a quorum: outsiders are refused, each
/// approval before the quorum is its own signed vote, a reviewer counts
/// once, edits to the proposal are recorded as a signed diff and decide
/// the case, and one rejection decides.
#[test]
fn a_quorum_gate_needs_distinct_listed_reviewers_and_records_edits_as_a_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let key = dir.path().join(format!("{name}.key"));
        let out = run(conductor().args(["keys", "new", "--out"]).arg(&key));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = text.lines().find_map(|l| l.strip_prefix("key id")).expect("key id line").trim().to_owned();
        ids.push(id);
    }
    let gates = format!(
        "reviewer_groups:\n  claims: [{}, {}]\n\
         gates:\n  - {{ name: second-look, when: {{ field: decision.outcome, equals: echo }}, reviewers: [claims], quorum: 2 }}\n",
        ids[0], ids[1]
    );
    let cases = "    - {id: c1, behave: echo}\n    - {id: c2, behave: echo}\n";
    let mission = write_mission(dir.path(), "quorum", &hostile, 1000, "{}", cases, &gates);
    let out = run(conductor().arg("run").arg(&mission).arg("--json").arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();
    let gate_of = |case: &str| {
        tasks(&summary)
            .iter()
            .find(|t| t["case_id"] == case)
            .and_then(|t| t["gate"].as_str())
            .expect("gated")
            .to_owned()
    };
    for name in ["a", "b", "c"] {
        let out = run(conductor()
            .args(["keys", "register", "--data"])
            .arg(&data)
            .arg(dir.path().join(format!("{name}.key"))));
        assert_eq!(out.status.code(), Some(0));
    }
    let decide = |verb: &str, gate: &str, key: &str, extra: &[&str]| {
        run(conductor()
            .args(["gates", verb, gate, "--key"])
            .arg(dir.path().join(format!("{key}.key")))
            .args(extra)
            .arg("--data")
            .arg(&data))
    };
    let g1 = gate_of("c1");
    let out = decide("approve", &g1, "c", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not among gate `second-look`'s reviewers"), "{}", stderr(&out));
    let out = decide("approve", &g1, "a", &["--edit", r#"{"outcome": "eligible", "reason": "checked by hand"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 more approval(s) needed"));
    let out = decide("approve", &g1, "a", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already approved"), "{}", stderr(&out));
    let out = decide("approve", &g1, "b", &["--edit", "[1]"]);
    assert_eq!(out.status.code(), Some(2), "an edit that is not a JSON object is a usage error");
    let out = decide("approve", &g1, "b", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = run(conductor().args(["mission", "show", &mission_id, "--json", "--data"]).arg(&data));
    let shown = stdout_json(&out);
    let c1 = tasks(&shown).iter().find(|t| t["case_id"] == "c1").cloned().expect("c1");
    assert_eq!((c1["status"].as_str(), c1["outcome"].as_str()), (Some("decided"), Some("eligible")), "{c1}");
    assert_eq!(c1["reason"], "checked by hand");
    let out = run(conductor().args(["audit", "log", "--json", "--kind", "gate.", "--data"]).arg(&data));
    let entries: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let voted: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "gate.voted").collect();
    assert_eq!(voted.len(), 1, "{entries:#?}");
    let decided = entries.iter().find(|e| e["kind"] == "gate.decided").expect("decided");
    assert_eq!(decided["payload"]["edits"]["outcome"], serde_json::json!({"from": "echo", "to": "eligible"}));
    assert_eq!(decided["payload"]["votes"], serde_json::json!([voted[0]["seq"]]));
    assert_ne!(decided["signer"], voted[0]["signer"], "two different reviewers signed");

    // One rejection decides, whatever the quorum; edits go only with
    // approvals (`gates reject` has no --edit: a usage error).
    let g2 = gate_of("c2");
    let out = decide("reject", &g2, "b", &["--edit", r#"{"outcome": "x"}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--edit"), "{}", stderr(&out));
    let out = decide("reject", &g2, "b", &["--note", "missing documents"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = decide("approve", &g2, "a", &[]);
    assert_eq!(out.status.code(), Some(1), "a decided gate takes no more votes");
    // Every refused attempt (outsider, second approval, closed gate) is
    // journaled by the conductor with who tried and why.
    let out = run(conductor().args(["audit", "log", "--json", "--kind", "gate.refused", "--data"]).arg(&data));
    let refused: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let reasons: Vec<&str> = refused.iter().map(|e| e["payload"]["reason"].as_str().unwrap_or_default()).collect();
    assert_eq!(refused.len(), 3, "{reasons:#?}");
    assert!(
        reasons[0].contains("not among")
            && reasons[1].contains("already approved")
            && reasons[2].contains("decided once"),
        "{reasons:#?}"
    );
    assert_eq!(refused[0]["payload"]["key_id"], ids[2].as_str());
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
}

/// Deadlines: "timed out" is its own outcome; `on_timeout: approve` lets
/// the proposal stand; `escalate` hands the gate to another group with a
/// fresh deadline; a parked agent gets "not approved, timed out"; each
/// step is a conductor-signed entry, and the report counts them.
#[test]
fn gates_time_out_escalate_and_remind_on_their_deadlines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let key = dir.path().join(format!("{name}.key"));
        let out = run(conductor().args(["keys", "new", "--out"]).arg(&key));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ids.push(text.lines().find_map(|l| l.strip_prefix("key id")).expect("key id").trim().to_owned());
    }
    let gates = format!(
        "reviewer_groups:\n  first: [{}]\n  second: [{}]\n\
         gates:\n\
         \x20 - {{ name: deny-late, when: {{ field: case.kind, equals: d }}, deadline: 2s, remind_before: 1s }}\n\
         \x20 - {{ name: approve-late, when: {{ field: case.kind, equals: a }}, deadline: 2s, on_timeout: approve }}\n\
         \x20 - {{ name: escalating, when: {{ field: case.kind, equals: e }}, reviewers: [first], deadline: 2s,\n\
         \x20     on_timeout: escalate, escalate_to: second }}\n\
         \x20 - {{ name: second-look, when: {{ field: case.id, equals: no-case-has-this-id }}, deadline: 2s }}\n\
         \x20 - {{ name: remind-me, when: {{ field: case.kind, equals: r }}, deadline: 1d, remind_before: 86399s }}\n",
        ids[0], ids[1]
    );
    // Every case has the `kind` the gates read (a case without it would be
    // sent to review as an exception); no gate takes kind `p`.
    let cases = "    - {id: d1, kind: d}\n    - {id: a1, kind: a}\n    - {id: e1, kind: e}\n    - {id: p1, kind: p, behave: await}\n\
                 \x20   - {id: r1, kind: r}\n";
    let mission = write_mission(dir.path(), "deadlines", &hostile, 1000, "{}", cases, &gates);
    let out = run(conductor().arg("run").arg(&mission).arg("--json").arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mission_id = stdout_json(&out)["mission_id"].as_str().expect("id").to_owned();
    let show = || {
        let out = run(conductor().args(["mission", "show", &mission_id, "--json", "--data"]).arg(&data));
        stdout_json(&out)
    };
    let task = |s: &Value, case: &str| tasks(s).iter().find(|t| t["case_id"] == case).cloned().expect("task");
    assert!(tasks(&show()).iter().all(|t| t["status"] == "awaiting_review"), "all five wait");

    std::thread::sleep(std::time::Duration::from_millis(2300));
    let out = run(conductor().args(["gates", "sweep", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let swept = stdout_json(&out);
    assert_eq!(swept["timed_out"].as_array().map(Vec::len), Some(3), "{swept}");
    assert_eq!(swept["escalated"].as_array().map(Vec::len), Some(1), "{swept}");
    assert_eq!(swept["reminded"].as_array().map(Vec::len), Some(1), "r1's reminder was due after 1 s: {swept}");
    assert_eq!(swept["to_resume"], serde_json::json!([mission_id]));
    let shown = show();
    let d1 = task(&shown, "d1");
    assert_eq!((d1["outcome"].as_str(), d1["decided_by"].as_str()), (Some("timed_out"), Some("timeout")), "{d1}");
    let a1 = task(&shown, "a1");
    assert_eq!((a1["outcome"].as_str(), a1["decided_by"].as_str()), (Some("echo"), Some("timeout")), "{a1}");
    assert_eq!(task(&shown, "e1")["status"], "awaiting_review", "escalated, still open");
    assert_eq!(task(&shown, "p1")["status"], "pending", "its agent gets the answer on resume");
    let out = run(conductor().args(["gates", "sweep", "--json", "--data"]).arg(&data));
    assert_eq!(stdout_json(&out)["timed_out"], serde_json::json!([]), "a sweep is idempotent");

    // The parked agent hears "not approved" from the timeout.
    let out = run(conductor().args(["mission", "resume", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p1 = task(&stdout_json(&out), "p1");
    assert_eq!((p1["outcome"].as_str(), p1["reason"].as_str()), (Some("rejected"), Some("timeout: timed out")), "{p1}");

    // The escalation group lets its fresh deadline pass too.
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    assert!(stderr(&out).contains("timed out"), "`gates list` sweeps first: {}", stderr(&out));
    let e1 = task(&show(), "e1");
    assert_eq!(e1["outcome"], "timed_out", "{e1}");

    let out = run(conductor().args(["audit", "log", "--json", "--kind", "gate.", "--data"]).arg(&data));
    let kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!((count("gate.timed_out"), count("gate.escalated"), count("gate.reminder")), (4, 1, 1), "{kinds:?}");
    assert_eq!(count("gate.decided"), 0, "a timeout is never recorded as a decision");
    let out = run(conductor().args(["mission", "report", &mission_id, "--json", "--data"]).arg(&data));
    let report = stdout_json(&out);
    assert_eq!((report["timeouts"].as_u64(), report["escalations"].as_u64()), (Some(4), Some(1)), "{report}");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn mission_schema_prints_the_committed_schema_that_the_examples_name() {
    let out = run(conductor().args(["mission", "schema"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    let committed = std::fs::read(repo_root().join("missions/schema/mission.schema.json")).expect("committed schema");
    let committed: Value = serde_json::from_slice(&committed).expect("committed schema is JSON");
    assert_eq!(printed, committed, "regenerate it: conductor mission schema > missions/schema/mission.schema.json");
    assert_eq!(printed["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(printed["properties"]["agents"].is_object(), "{printed}");
}

//! Issue #18 (items 2 and 3): gate fields and allowed decisions. A gate on
//! a misspelt field, a case that does not meet the mission's cases schema
//! and a reviewer's outcome the mission does not list are each refused,
//! with a message that says where and what would be right.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Where `needle` first appears in `text`, as "LINE:COLUMN" (1-based).
fn line_column(text: &str, needle: &str) -> String {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the mission"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!("{line}:{column}")
}

fn validate(mission: &Path) -> std::process::Output {
    run(conductor().args(["mission", "validate"]).arg(mission))
}

/// A gate on `case.requested_amout` (one letter short) used to validate
/// and never fire, so large awards were decided with no review.
#[test]
fn mission_validate_refuses_a_gate_on_a_field_no_case_has_and_names_the_nearest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let cases = "    - {id: small, requested_amount: 100}\n    - {id: large, requested_amount: 9000}\n";
    let gate =
        |field: &str| format!("gates:\n  - name: large-award\n    when: {{ field: {field}, greater_than: 5000 }}\n");
    let good = write_mission(dir.path(), "good", &echo, 1000, "{}", cases, &gate("case.requested_amount"));
    assert_eq!(validate(&good).status.code(), Some(0), "the right field validates");

    let typo = write_mission(dir.path(), "typo", &echo, 1000, "{}", cases, &gate("case.requested_amout"));
    let out = validate(&typo);
    assert_eq!(out.status.code(), Some(2), "invalid input: {}", stderr(&out));
    let text = std::fs::read_to_string(&typo).expect("mission");
    let at = format!("{}:{}", typo.display(), line_column(&text, "case.requested_amout"));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{at}: error: gate `large-award` reads `case.requested_amout`, which no case has")),
        "file:line:column of the field: {err}"
    );
    assert!(err.contains("help: did you mean `case.requested_amount`?"), "{err}");
}

/// With `cases_schema`, every case file is checked against it when the
/// mission is loaded, and the refusal names the case file and the field.
#[test]
fn mission_validate_refuses_a_case_that_does_not_meet_the_cases_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).expect("cases dir");
    std::fs::write(cases.join("a.json"), r#"{"id": "a", "requested_amount": 100}"#).expect("case");
    std::fs::write(cases.join("b.json"), r#"{"id": "b", "requested_amount": "a lot"}"#).expect("case");
    std::fs::write(
        dir.path().join("cases.schema.json"),
        r#"{"type": "object", "required": ["requested_amount"],
            "properties": {"id": {"type": "string"}, "requested_amount": {"type": "integer"}}}"#,
    )
    .expect("schema");
    let mission = dir.path().join("schema.yaml");
    let text = |gate_field: &str| {
        format!(
            "name: schema\nbudget: {{ limit: 1000 }}\n\
             models:\n  smollm2-135m: {{ prompt_price: 1, completion_price: 2 }}\n\
             agents:\n  - {{ name: worker, module: {}, model: smollm2-135m }}\n\
             cases_schema: cases.schema.json\n\
             tasks: {{ agent: worker, dir: cases }}\n\
             gates:\n  - {{ name: large-award, when: {{ field: {gate_field}, greater_than: 5000 }} }}\n",
            echo.display()
        )
    };
    std::fs::write(&mission, text("case.requested_amount")).expect("mission");
    let out = validate(&mission);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let b = cases.join("b.json").display().to_string();
    assert!(
        err.contains(&format!("{b}:1:1: error: case `b` does not match the cases schema at `/requested_amount`")),
        "names the case file and the field: {err}"
    );
    let a = cases.join("a.json").display().to_string();
    assert!(!err.contains(&a), "the good case is not reported: {err}");

    // Once the case is fixed the mission validates; and a gate field the
    // schema does not declare is refused like one no case has.
    std::fs::write(cases.join("b.json"), r#"{"id": "b", "requested_amount": 9000}"#).expect("case");
    assert_eq!(validate(&mission).status.code(), Some(0));
    std::fs::write(&mission, text("case.requested_amout")).expect("mission");
    let out = validate(&mission);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("which the cases schema does not declare"), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `case.requested_amount`?"), "{}", stderr(&out));
}

/// A new reviewer key registered on `data`, and its path.
fn reviewer(dir: &Path, data: &Path) -> PathBuf {
    let key = dir.join("reviewer.key");
    let out = run(conductor().args(["keys", "new", "--role", "reviewer", "--out"]).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    key
}

/// How many entries the journal holds.
fn entries(data: &Path) -> u64 {
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_entries_typed(data);
    stdout_json(&out)["entries"].as_u64().expect("entries")
}

/// `gates approve --edit '{"outcome": "eligble"}'` used to be accepted and
/// was then permanent. With `decisions:` the edit is refused, with the
/// allowed outcomes, before anything is journaled; an allowed one passes.
#[test]
fn a_reviewer_cannot_record_an_outcome_or_detail_the_mission_does_not_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The echo agent proposes `echo` without calling the model; the gate
    // sends every proposal to a reviewer.
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let gates = "gates:\n  - { name: second-look, when: { field: decision.outcome, equals: echo } }\n\
                 decisions:\n  outcomes: [echo, eligible, ineligible]\n  details: { amount: integer }\n";
    let mission = write_mission(dir.path(), "outcomes", &echo, 1000, "{}", "    - {id: c1}\n", gates);
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["status"], "awaiting_review");
    let listed = stdout_json(&run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data)));
    let gate = listed.as_array().and_then(|g| g.first()).cloned().expect("one gate");
    assert_eq!(gate["decision_rules"]["outcomes"], serde_json::json!(["echo", "eligible", "ineligible"]), "{gate}");
    let gate_id = gate["id"].as_str().expect("gate id").to_owned();
    let key = reviewer(dir.path(), &data);
    let approve = |edit: &str| {
        run(conductor()
            .args(["gates", "approve", &gate_id, "--key"])
            .arg(&key)
            .args(["--edit", edit, "--data"])
            .arg(&data))
    };

    let before = entries(&data);
    let out = approve(r#"{"outcome": "eligble"}"#);
    assert_ne!(out.status.code(), Some(0), "a misspelt outcome is refused");
    let err = stderr(&out);
    assert!(
        err.contains("outcome `eligble` is not one of this mission's outcomes: echo, eligible, ineligible"),
        "{err}"
    );
    let out = approve(r#"{"outcome": "eligible", "details": {"amount": "lots"}}"#);
    assert_ne!(out.status.code(), Some(0), "a detail of the wrong type is refused");
    assert!(stderr(&out).contains("`details.amount` must be a whole number"), "{}", stderr(&out));
    let out = approve(r#"{"outcome": "eligible", "details": {"amuont": 1}}"#);
    assert_ne!(out.status.code(), Some(0), "an undeclared detail is refused");
    assert!(stderr(&out).contains("`details.amuont` is not a field"), "{}", stderr(&out));
    assert_eq!(entries(&data), before, "nothing was journaled for the refused edits");
    let listed = stdout_json(&run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data)));
    assert_eq!(listed[0]["status"], "pending", "the gate still waits: {listed}");

    // An outcome the mission lists is recorded.
    let out = approve(r#"{"outcome": "eligible", "details": {"amount": 12}}"#);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decided = journal(&data, "task.decided");
    let outcomes: Vec<&Value> = decided.iter().map(|e| &e["payload"]["outcome"]).collect();
    assert_eq!(outcomes, [&Value::from("eligible")]);
}

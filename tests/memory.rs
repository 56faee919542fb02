//! Memory end to end, on the real binary (no model needed): scopes from
//! the mission file, every read and write journaled with sealed values,
//! the operator's query, replay, and erasure by crypto-shredding.

mod common;

use common::*;
use serde_json::Value;

const VALUE: &str = "late payment twice in 2025";

fn by_case<'a>(summary: &'a Value, case: &str) -> &'a Value {
    tasks(summary).iter().find(|t| t["case_id"] == case).unwrap_or_else(|| panic!("no case {case}: {summary}"))
}

/// Journal entries whose kind starts with `prefix`, as JSON lines.
fn journal(data: &std::path::Path, prefix: &str) -> Vec<Value> {
    let out = run(conductor().args(["audit", "log", "--json", "--kind", prefix, "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn query(data: &std::path::Path, args: &[&str]) -> Value {
    let out = run(conductor().args(["memory", "query", "--json", "--data"]).arg(data).args(args));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout_json(&out)
}

#[test]
fn scopes_are_enforced_values_are_sealed_in_the_journal_and_erasure_reaches_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let mission = dir.path().join("intake.yaml");
    std::fs::write(
        &mission,
        format!(
            "name: intake\n\
             budget: {{ limit: 1000 }}\n\
             models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
             agents:\n\
             \x20 - {{ name: writer, module: {m}, model: smollm2-135m,\n\
             \x20     memory: {{ read: [mission, precedent], write: precedent }} }}\n\
             \x20 - {{ name: reader, module: {m}, model: smollm2-135m, memory: {{ write: none }} }}\n\
             tasks:\n\
             \x20 - agent: writer\n\
             \x20   inline:\n\
             \x20     - {{ id: w-remember, behave: memory, space: precedent, subject: claimant-4411, predicate: history, remember: {VALUE} }}\n\
             \x20     - {{ id: w-words, behave: memory, space: precedent, words: late payment }}\n\
             \x20     - {{ id: w-seeded, behave: memory, space: precedent, subject: claimant-9, predicate: outcome }}\n\
             \x20 - agent: reader\n\
             \x20   inline:\n\
             \x20     - {{ id: r-outside, behave: memory, space: precedent, subject: claimant-4411 }}\n\
             \x20     - {{ id: r-write, behave: memory, subject: claimant-5, predicate: note, remember: anything }}\n\
             memory:\n\
             \x20 - {{ space: precedent, subject: claimant-9, predicate: outcome, value: denied over the income limit,\n\
             \x20     source: decision-77, valid_from: 2026-01-01T00:00:00Z }}\n",
            m = hostile.display()
        ),
    )
    .expect("write mission");
    let data = dir.path().join("data");
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros().to_string();
    let out = run(conductor().arg("run").arg(&mission).args(["--json", "--concurrency", "1", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let mission_id = summary["mission_id"].as_str().expect("mission id").to_owned();

    // Scopes: the writer reads and writes the shared space; the reader
    // may neither read it nor write at all, and is told why.
    let w = by_case(&summary, "w-remember");
    assert_eq!((w["outcome"].as_str(), w["reason"].as_str()), (Some("recalled"), Some(VALUE)), "{w}");
    let words = by_case(&summary, "w-words");
    assert_eq!(words["outcome"], "recalled", "{words}");
    assert!(words["reason"].as_str().expect("reason").contains(VALUE), "ranked word search finds it: {words}");
    let seeded = by_case(&summary, "w-seeded");
    assert_eq!(seeded["reason"], "denied over the income limit", "{seeded}");
    let outside = by_case(&summary, "r-outside");
    assert_eq!(outside["outcome"], "memory-refused", "{outside}");
    assert!(outside["reason"].as_str().expect("reason").contains("outside this agent's scope"), "{outside}");
    let write = by_case(&summary, "r-write");
    assert_eq!(write["outcome"], "memory-refused", "{write}");
    assert!(write["reason"].as_str().expect("reason").contains("may not write"), "{write}");

    // Every read and write is journaled, refusals included, and the values
    // in those entries are sealed, never plain.
    let queries = journal(&data, "host.query");
    assert_eq!(queries.len(), 4, "three answered queries and one refused: {queries:#?}");
    assert!(queries.iter().any(|q| q["payload"]["refused"].as_str().is_some_and(|r| r.contains("outside"))));
    let memory_entries: Vec<Value> =
        ["host.query", "host.remember", "memory.asserted"].iter().flat_map(|k| journal(&data, k)).collect();
    let text = serde_json::to_string(&memory_entries).expect("json");
    assert!(!text.contains(VALUE) && !text.contains("denied over the income limit"), "a value in clear: {text}");
    assert!(text.contains("sealed:v1:"), "values are sealed envelopes: {text}");

    // The operator's query: by subject, by words, and as of a transaction
    // time before the mission (nothing was known then).
    let found = query(&data, &["--subject", "claimant-4411"]);
    assert_eq!(found["facts"][0]["value"], VALUE, "{found}");
    assert_eq!(found["facts"][0]["space"], "precedent", "{found}");
    let found = query(&data, &["--words", "late payment", "--space", "precedent"]);
    assert_eq!(found["facts"][0]["subject"], "claimant-4411", "{found}");
    let found = query(&data, &["--subject", "claimant-4411", "--as-of-tx", &before]);
    assert_eq!(found["facts"], serde_json::json!([]), "{found}");
    let found = query(&data, &["--subject", "claimant-9", "--as-of-valid", "2025-06-01T00:00:00Z"]);
    assert_eq!(found["facts"], serde_json::json!([]), "not yet valid in 2025: {found}");
    let bad =
        run(conductor().args(["memory", "query", "--subject", "x", "--as-of-tx", "yesterday", "--data"]).arg(&data));
    assert_eq!(bad.status.code(), Some(2), "a malformed time is a usage error");
    assert!(stderr(&bad).contains("RFC 3339"), "{}", stderr(&bad));

    // Provenance and replay open the sealed values.
    let out =
        run(conductor().args(["audit", "show", "--json", "--data"]).arg(&data).arg(format!("{mission_id}/w-words")));
    assert_eq!(out.status.code(), Some(0));
    let doc = stdout_json(&out);
    let call = doc["host_calls"].as_array().expect("calls").iter().find(|c| c["kind"] == "host.query").expect("query");
    assert_eq!(call["facts"][0]["value"], VALUE, "{call}");
    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verdicts = stdout_json(&out);
    assert!(verdicts.as_array().expect("list").iter().all(|v| v["verdict"] == "match"), "{verdicts:#}");

    // Erasure: an operator's signed entry; a reviewer's key is refused.
    let op = dir.path().join("op.key");
    let reviewer = dir.path().join("reviewer.key");
    run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&op));
    run(conductor().args(["keys", "new", "--role", "reviewer", "--out"]).arg(&reviewer));
    for key in [&op, &reviewer] {
        assert_eq!(run(conductor().args(["keys", "register", "--data"]).arg(&data).arg(key)).status.code(), Some(0));
    }
    let erase = |key: &std::path::Path| {
        run(conductor()
            .args(["memory", "erase", "--subject", "claimant-4411", "--key"])
            .arg(key)
            .arg("--data")
            .arg(&data))
    };
    let unknown = run(conductor()
        .args(["memory", "erase", "--subject", "claimant-44II", "--key"])
        .arg(&op)
        .arg("--data")
        .arg(&data));
    assert_ne!(unknown.status.code(), Some(0));
    assert!(stderr(&unknown).contains("nothing about subject `claimant-44II`"), "{}", stderr(&unknown));
    let refused = erase(&reviewer);
    assert_ne!(refused.status.code(), Some(0));
    assert!(stderr(&refused).contains("operator key"), "{}", stderr(&refused));
    assert_eq!(erase(&op).status.code(), Some(0));
    let again = erase(&op);
    assert_ne!(again.status.code(), Some(0));
    assert!(stderr(&again).contains("already erased"), "{}", stderr(&again));
    assert_eq!(journal(&data, "memory.erased").len(), 1);

    // Gone from memory, from word search, from the journal's entries as
    // auditors read them; the journal still verifies; replay says which
    // runs can no longer be re-run and why, and the others still match.
    let found = query(&data, &["--subject", "claimant-4411"]);
    assert_eq!(
        (found["facts"][0]["value"].clone(), found["facts"][0]["erased"].clone()),
        (Value::Null, Value::Bool(true))
    );
    let found = query(&data, &["--words", "late payment"]);
    assert!(found["facts"].as_array().expect("facts").iter().all(|f| f["subject"] != "claimant-4411"), "{found}");
    let verify = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(verify.status.code(), Some(0), "the journal verifies after erasure");
    assert!(assert_entries_typed(&data).contains_key("memory.erased"));
    let out =
        run(conductor().args(["audit", "show", "--json", "--data"]).arg(&data).arg(format!("{mission_id}/w-remember")));
    let doc = stdout_json(&out);
    let remembered =
        doc["host_calls"].as_array().expect("calls").iter().find(|c| c["kind"] == "host.remember").expect("remember");
    assert_eq!(
        (remembered["value"].clone(), remembered["erased"].clone()),
        (Value::Null, Value::Bool(true)),
        "{remembered}"
    );
    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "erased runs are reported, not divergences");
    let verdicts = stdout_json(&out);
    let verdict = |case: &str| {
        verdicts.as_array().expect("list").iter().find(|v| v["case"] == case).expect("case")["verdict"].clone()
    };
    assert_eq!(verdict("w-remember"), "erased");
    assert_eq!(verdict("w-words"), "erased");
    assert_eq!(verdict("w-seeded"), "match");
    assert_eq!(verdict("r-outside"), "match");
}

/// What an agent sends cannot grow memory past the mission's limits: a
/// write over `memory_limits` is refused (and journaled), not stored.
#[test]
fn memory_limits_bound_what_agents_can_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let cases = "    - {id: first, behave: memory, subject: s-1, predicate: note, remember: one}\n\
                 \x20   - {id: second, behave: memory, subject: s-2, predicate: note, remember: two}\n";
    let mission = write_mission(dir.path(), "bounded", &hostile, 1000, "{}", cases, "memory_limits: { facts: 1 }\n");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).args(["--json", "--concurrency", "1", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(by_case(&summary, "first")["outcome"], "recalled");
    let second = by_case(&summary, "second");
    assert_eq!(second["outcome"], "memory-refused", "{second}");
    assert!(second["reason"].as_str().expect("reason").contains("limit"), "{second}");
    let refused: Vec<Value> =
        journal(&data, "host.remember").into_iter().filter(|e| e["payload"]["refused"].is_string()).collect();
    assert_eq!(refused.len(), 1, "the refusal is journaled: {refused:#?}");
    let found = query(&data, &["--subject", "s-2"]);
    assert_eq!(found["facts"], serde_json::json!([]), "nothing was stored");
    // A subject memory never heard of is said to be unknown, not just empty.
    let out = run(conductor().args(["memory", "query", "--subject", "s-3", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("memory holds nothing about subject `s-3`"), "{}", stderr(&out));
    let out = run(conductor().args(["memory", "query", "--subject", "s-1", "--data"]).arg(&data));
    assert!(!stderr(&out).contains("nothing about"), "s-1 is known: {}", stderr(&out));
}

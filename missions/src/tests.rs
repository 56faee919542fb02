//! End-to-end tests through `parse` and `load`, on real files in temporary
//! directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::*;

/// A scratch directory removed on drop; unique per process and call so
/// tests can run in parallel.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("missions-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// A directory with the module and case files the sample mission names.
    fn with_sample_files() -> Scratch {
        let scratch = Scratch::new();
        scratch.write("agent/eligibility.wasm", b"\0asm");
        scratch.write("cases/b.json", r#"{"id": "case-b", "requested_amount": 6000}"#);
        scratch.write("cases/a.json", r#"{"requested_amount": 100}"#);
        scratch.write("cases/notes.txt", "not a case");
        scratch
    }

    fn parse(&self, text: &str) -> Result<Mission, Diagnostics> {
        parse("mission.yaml", &self.0, text)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SAMPLE: &str = "\
name: eligibility-casework
description: Housing-support eligibility queue
budget:
  limit: 60000
  on_exhausted: stop
models:
  smollm2-135m:
    prompt_price: 1
    completion_price: 2
agents:
  - name: eligibility
    module: agent/eligibility.wasm
    model: smollm2-135m
    limits:
      memory_bytes: 67108864
      max_tokens: 96
tasks:
  agent: eligibility
  dir: cases
memory:
  - subject: \"policy:housing-support\"
    predicate: income-limit-monthly
    value: \"2400\"
    valid_from: 2026-01-01T00:00:00Z
    valid_to: 2027-01-01T00:00:00Z
gates:
  - name: large-award
    when: { field: case.requested_amount, greater_than: 5000 }
  - name: model-unsure
    when: { field: decision.outcome, equals: undetermined }
";

/// The minimal valid mission the table tests break one line at a time.
const MINIMAL: &str = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 } }
agents:
  - { name: a, module: agent/eligibility.wasm, model: tiny }
tasks:
  agent: a
  inline:
    - { x: 1 }
";

fn errors(result: Result<Mission, Diagnostics>) -> Vec<Diagnostic> {
    match result {
        Ok(mission) => panic!("expected diagnostics, got {mission:#?}"),
        Err(diagnostics) => diagnostics.iter().cloned().collect(),
    }
}

#[test]
fn sample_mission_parses_into_plain_values() {
    let scratch = Scratch::with_sample_files();
    let mission = scratch.parse(SAMPLE).unwrap_or_else(|d| panic!("{d}"));

    assert_eq!(mission.name, "eligibility-casework");
    assert_eq!(mission.description.as_deref(), Some("Housing-support eligibility queue"));
    assert_eq!(
        mission.budget,
        Budget {
            limit: 60_000,
            on_exhausted: OnExhausted::Stop,
            reservation_ttl_ms: Budget::DEFAULT_RESERVATION_TTL_MS,
            extension: None,
        }
    );
    assert_eq!(mission.models.get("smollm2-135m"), Some(&ModelPrice { prompt_price: 1, completion_price: 2 }));
    let agent = mission.agents.first().expect("one agent");
    assert_eq!(agent.name, "eligibility");
    assert_eq!(agent.module, scratch.0.join("agent/eligibility.wasm"));
    assert_eq!(agent.limits, Limits { max_tokens: 96, ..Limits::DEFAULT });

    assert!(mission.tasks.cases.iter().all(|c| c.agent == "eligibility"));
    let ids: Vec<&str> = mission.tasks.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "case-b"], "sorted by file name, .txt ignored, id field wins");
    let first = mission.tasks.cases.first().expect("a case");
    assert_eq!(first.input, json!({"requested_amount": 100}));
    assert_eq!(first.origin, scratch.0.join("cases/a.json").display().to_string());

    assert_eq!(
        mission.memory,
        [SeedFact {
            space: OWN_SPACE.into(),
            subject: "policy:housing-support".into(),
            predicate: "income-limit-monthly".into(),
            value: "2400".into(),
            valid_from: 1_767_225_600_000_000,
            valid_to: Some(1_798_761_600_000_000),
            source: None,
        }]
    );

    let [large, unsure] = mission.gates.as_slice() else { panic!("two gates expected: {:?}", mission.gates) };
    assert_eq!(large.name, "large-award");
    assert_eq!(large.when.field.as_str(), "case.requested_amount");
    assert_eq!(large.when.test, Test::GreaterThan(5000.0));
    assert_eq!(unsure.when.test, Test::Equals(json!("undetermined")));
    let decision = json!({"outcome": "undetermined"});
    assert!(large.when.matches(&json!({"requested_amount": 6000}), &decision));
    assert!(unsure.when.matches(&json!({}), &decision));
}

#[test]
fn optional_sections_default() {
    let scratch = Scratch::with_sample_files();
    let mission = scratch.parse(MINIMAL).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.budget.on_exhausted, OnExhausted::Stop);
    assert_eq!(mission.budget.reservation_ttl_ms, 600_000);
    assert_eq!(mission.agents.first().map(|a| a.budget), Some(AgentBudget { limit: None, task_limit: None }));
    assert_eq!(mission.description, None);
    assert!(mission.memory.is_empty() && mission.gates.is_empty());
    assert_eq!(mission.memory_limits, MemoryLimits::DEFAULT);
    assert_eq!(mission.agents.first().map(|a| a.memory.clone()), Some(MemoryScope::default()));
    assert_eq!(mission.agents.first().map(|a| a.limits), Some(Limits::DEFAULT));
    let case = mission.tasks.cases.first().expect("one inline case");
    assert_eq!(case.id, "case-1");
    assert_eq!(case.origin, "mission.yaml:9");
}

#[test]
fn budget_policies_caps_and_prices_parse_into_typed_values() {
    let scratch = Scratch::with_sample_files();
    let text = "\
name: m
budget: { limit: 1000, on_exhausted: gate, reservation_ttl_ms: 1000 }
models:
  cheap-prompt: { prompt_price: 0, completion_price: 3 }
  quoted: { prompt_price: \"2\", completion_price: 1000000 }
agents:
  - name: capped
    module: agent/eligibility.wasm
    model: cheap-prompt
    budget: { limit: 1000, task_limit: 1000 }
  - { name: per-task, module: agent/eligibility.wasm, model: quoted, budget: { task_limit: 50 } }
  - { name: overall, module: agent/eligibility.wasm, model: quoted, budget: { limit: 400 } }
  - { name: uncapped, module: agent/eligibility.wasm, model: quoted, budget: {} }
tasks: { agent: capped, inline: [{ x: 1 }] }
";
    let mission = scratch.parse(text).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        mission.budget,
        Budget {
            limit: 1000,
            on_exhausted: OnExhausted::Gate,
            reservation_ttl_ms: Budget::MIN_RESERVATION_TTL_MS,
            // The default budget gate: anyone, once, the limit again.
            extension: Some(Extension { amount: 1000, reviewers: Vec::new(), quorum: 1, deadline: None }),
        }
    );
    assert_eq!(mission.models.get("cheap-prompt"), Some(&ModelPrice { prompt_price: 0, completion_price: 3 }));
    assert_eq!(
        mission.models.get("quoted"),
        Some(&ModelPrice { prompt_price: 2, completion_price: ModelPrice::MAX_PER_TOKEN })
    );
    let budgets: Vec<(&str, AgentBudget)> = mission.agents.iter().map(|a| (a.name.as_str(), a.budget)).collect();
    assert_eq!(
        budgets,
        [
            ("capped", AgentBudget { limit: Some(1000), task_limit: Some(1000) }),
            ("per-task", AgentBudget { limit: None, task_limit: Some(50) }),
            ("overall", AgentBudget { limit: Some(400), task_limit: None }),
            ("uncapped", AgentBudget::default()),
        ]
    );

    #[rustfmt::skip]
    let policies = [
        ("stop", OnExhausted::Stop),
        ("pause", OnExhausted::Pause),
        ("gate", OnExhausted::Gate),
    ];
    for (written, policy) in policies {
        let text =
            MINIMAL.replace("limit: 10", &format!("limit: 10, on_exhausted: {written}, reservation_ttl_ms: 86400000"));
        let budget = scratch.parse(&text).unwrap_or_else(|d| panic!("{d}")).budget;
        assert_eq!(budget.on_exhausted, policy, "{written}");
        assert_eq!(budget.reservation_ttl_ms, Budget::MAX_RESERVATION_TTL_MS);
    }
}

#[test]
fn unknown_policy_help_lists_every_choice() {
    let scratch = Scratch::with_sample_files();
    let text = MINIMAL.replace("limit: 10", "limit: 10, on_exhausted: wait");
    let found = errors(scratch.parse(&text));
    let help = found.first().and_then(|d| d.help.clone()).unwrap_or_default();
    for choice in ["`stop`", "`pause`", "`gate`"] {
        assert!(help.contains(choice), "{help}");
    }
}

/// Each wrong cap is reported once, for its most basic fault: a zero
/// mission limit is not also blamed on every agent cap above it, and a cap
/// over the mission limit is not also compared with the other cap.
#[test]
fn agent_caps_are_reported_once_each() {
    let scratch = Scratch::with_sample_files();
    let caps = |mission_limit: u64, caps: &str| {
        let text = MINIMAL
            .replace("limit: 10", &format!("limit: {mission_limit}"))
            .replace("model: tiny }", &format!("model: tiny, budget: {{ {caps} }} }}"));
        let found = scratch.parse(&text).err();
        found.iter().flatten().map(|d| d.message.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        caps(0, "limit: 5, task_limit: 6"),
        ["budget limit is zero", "agent `a` budget `task_limit` is 6, more than its `limit` of 5"]
    );
    assert_eq!(
        caps(10, "limit: 20, task_limit: 15"),
        [
            "agent `a` budget `limit` is 20, more than the mission budget limit of 10",
            "agent `a` budget `task_limit` is 15, more than the mission budget limit of 10",
        ]
    );
    assert_eq!(caps(10, "limit: 0, task_limit: 5"), ["agent `a` budget `limit` is zero"]);
    assert!(caps(10, "limit: 10, task_limit: 10").is_empty());
}

#[test]
fn display_is_file_line_column_error_and_help() {
    let scratch = Scratch::with_sample_files();
    let text = MINIMAL.replace("name: m\n", "name: M\n").replace("limit: 10", "limit: 0");
    let shown = errors(scratch.parse(&text)).iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        shown,
        [
            "mission.yaml:1:7: error: mission name `M` is not valid\n  \
             help: use 1 to 64 lowercase letters (a-z), digits and `-`",
            "mission.yaml:2:18: error: budget limit is zero\n  \
             help: set `limit` to the most budget units the mission may spend",
        ]
    );
    let all = scratch.parse(&text).expect_err("invalid");
    assert_eq!(all.len(), 2);
    assert_eq!(all.to_string(), shown.join("\n"));
}

/// Each row replaces one fragment of [`MINIMAL`] and names where the first
/// resulting error must point and what it must say. (Some breaks rightly
/// cause a second error, e.g. no models also leaves the agent's model
/// undefined; `all_value_problems_are_reported_together` checks full lists.)
#[test]
fn each_broken_rule_is_located() {
    #[rustfmt::skip]
    let table: &[(&str, &str, (usize, usize), &str)] = &[
        // Shape errors from the parser.
        ("name: m\n", "name: m\nnmae: x\n", (2, 1), "unknown field `nmae`"),
        ("name: m\n", "", (5, 1), "missing required field `name`"),
        (", model: tiny }", " }", (5, 16), "missing required field `model`"),
        ("  agent: a\n", "", (7, 3), "missing required field `agent`"),
        ("limit: 10", "limit: ten", (2, 18), "non-negative whole number"),
        ("limit: 10", "limit: -1", (2, 18), "non-negative whole number"),
        ("{ x: 1 }", "{ x: 1 ", (9, 7), "unclosed bracket"),
        ("budget: { limit: 10 }", "budget: { limit: 10, on_exhausted: stop, extra: 1 }", (2, 42), "unknown field `extra`"),
        ("model: tiny }", "model: tiny, limits: { cpu: 1 } }", (5, 71), "unknown field `cpu`"),
        ("  agent: a\n", "  agent: a\n  agent: a\n", (8, 3), "duplicate mapping key `agent`"),
        // Value rules, reported at the offending value.
        ("name: m\n", "name: Mission_1\n", (1, 7), "mission name `Mission_1` is not valid"),
        ("limit: 10", "limit: 0", (2, 18), "budget limit is zero"),
        ("limit: 10", "limit: 10, on_exhausted: halt", (2, 36), "unknown `on_exhausted` policy `halt`"),
        ("limit: 10", "limit: 10, on_exhausted: Stop", (2, 36), "unknown `on_exhausted` policy `Stop`"),
        ("limit: 10", "limit: 10, reservation_ttl_ms: 999", (2, 42), "`reservation_ttl_ms` is 999; it must be between 1000 and 86400000"),
        ("limit: 10", "limit: 10, reservation_ttl_ms: 0", (2, 42), "`reservation_ttl_ms` is 0"),
        ("limit: 10", "limit: 10, reservation_ttl_ms: 86400001", (2, 42), "`reservation_ttl_ms` is 86400001"),
        ("limit: 10", "limit: 10, reservation_ttl_ms: 1.5", (2, 42), "non-negative whole number"),
        ("models: { tiny: { prompt_price: 1, completion_price: 1 } }", "models: {}", (3, 9), "no models"),
        ("prompt_price: 1, completion_price: 1", "prompt_price: 0, completion_price: 0", (3, 17), "both prices are zero"),
        ("prompt_price: 1, completion_price: 1", "prompt_price: 1", (3, 19), "missing required field `completion_price`"),
        ("prompt_price: 1, completion_price: 1", "completion_price: 1", (3, 19), "missing required field `prompt_price`"),
        ("prompt_price: 1,", "prompt_price: 1.5,", (3, 33), "`prompt_price` must be an integer, not 1.5"),
        ("prompt_price: 1,", "prompt_price: 1.0,", (3, 33), "`prompt_price` must be an integer, not 1.0"),
        ("completion_price: 1", "completion_price: 0.25", (3, 54), "`completion_price` must be an integer, not 0.25"),
        ("prompt_price: 1,", "prompt_price: 1000001,", (3, 33), "`prompt_price` is 1000001 units per token; it must be at most 1000000"),
        ("completion_price: 1", "completion_price: 99999999999999999999", (3, 54), "it must be at most 1000000"),
        ("prompt_price: 1,", "prompt_price: -1,", (3, 33), "`prompt_price` is -1; a price cannot be negative"),
        ("prompt_price: 1,", "prompt_price: 'ten',", (3, 33), "`prompt_price` is `ten`, not a whole number"),
        ("prompt_price: 1,", "prompt_price: true,", (3, 33), "`prompt_price` is `true`, not a whole number"),
        ("prompt_price: 1,", "prompt_price: ,", (3, 31), "`prompt_price` has no value"),
        ("prompt_price: 1,", "prompt_price: [1],", (3, 19), "expected a whole number of budget units per token"),
        ("  - { name: a, module: agent/eligibility.wasm, model: tiny }\n", "  []\n", (5, 3), "no agents"),
        ("{ name: a,", "{ name: A,", (5, 13), "agent name `A` is not valid"),
        ("model: tiny }", "model: huge }", (5, 55), "uses model `huge`, which is not in `models`"),
        ("agent/eligibility.wasm", "agent/missing.wasm", (5, 24), "agent module not found"),
        ("model: tiny }", "model: tiny, limits: { memory_bytes: 0 } }", (5, 85), "`memory_bytes` is 0"),
        ("model: tiny }", "model: tiny, limits: { memory_bytes: 4294967297 } }", (5, 85), "between 1 and 4294967296"),
        ("model: tiny }", "model: tiny, limits: { fuel: 1000000000001 } }", (5, 77), "`fuel` is 1000000000001"),
        ("model: tiny }", "model: tiny, limits: { wall_ms: 86400001 } }", (5, 80), "`wall_ms` is 86400001"),
        ("model: tiny }", "model: tiny, limits: { host_calls: 100001 } }", (5, 83), "`host_calls` is 100001"),
        ("model: tiny }", "model: tiny, limits: { max_tokens: 4294967296 } }", (5, 83), "between 1 and 32768"),
        ("model: tiny }", "model: tiny, budget: { limit: 11 } }", (5, 78), "agent `a` budget `limit` is 11, more than the mission budget limit of 10"),
        ("model: tiny }", "model: tiny, budget: { task_limit: 11 } }", (5, 83), "agent `a` budget `task_limit` is 11, more than the mission budget limit of 10"),
        ("model: tiny }", "model: tiny, budget: { limit: 5, task_limit: 6 } }", (5, 93), "agent `a` budget `task_limit` is 6, more than its `limit` of 5"),
        ("model: tiny }", "model: tiny, budget: { limit: 0 } }", (5, 78), "agent `a` budget `limit` is zero"),
        ("model: tiny }", "model: tiny, budget: { task_limit: 0 } }", (5, 83), "agent `a` budget `task_limit` is zero"),
        ("model: tiny }", "model: tiny, budget: { limit: -1 } }", (5, 78), "non-negative whole number"),
        ("model: tiny }", "model: tiny, budget: { cap: 1 } }", (5, 71), "unknown field `cap`"),
        ("  agent: a\n", "  agent: b\n", (7, 10), "`tasks.agent` names `b`"),
        ("  inline:\n    - { x: 1 }\n", "  dir: cases\n  inline:\n    - { x: 1 }\n", (7, 3), "both `dir` and `inline`"),
        ("  inline:\n    - { x: 1 }\n", "", (7, 3), "neither `dir` nor `inline`"),
        ("  inline:\n    - { x: 1 }\n", "  dir: nowhere\n", (8, 8), "cannot read case directory"),
        ("  inline:\n    - { x: 1 }\n", "  dir: agent\n", (8, 8), "no `*.json` case files"),
        ("    - { x: 1 }\n", "    []\n", (9, 5), "`inline` lists no cases"),
        ("    - { x: 1 }\n", "    - 42\n", (9, 7), "inline case 1 is a number, not a mapping"),
        ("    - { x: 1 }\n", "    - { id: 7 }\n", (9, 7), "case `id` is a number"),
        ("    - { x: 1 }\n", "    - { id: dup }\n    - { id: dup }\n", (10, 7), "duplicate case id `dup`"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: amount, equals: 1 } }\n", (11, 31), "must start with `case.` or `decision.`"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case, equals: 1 } }\n", (11, 31), "names no field after `case`"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case.x } }\n", (11, 22), "condition has no test"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case.x, equals: 1, less_than: 2 } }\n", (11, 61), "`less_than` is extra"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case.x, one_of: [] } }\n", (11, 47), "`one_of` lists no values"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case.x, less_than: .inf } }\n", (11, 50), "not a finite number"),
        ("{ x: 1 }\n", "{ x: 1 }\ngates:\n  - { name: g, when: { field: case.x, equals: 1 } }\n  - { name: g, when: { field: case.x, equals: 2 } }\n", (12, 13), "duplicate gate name `g`"),
        ("{ x: 1 }\n", "{ x: 1 }\nmemory:\n  - { subject: ' ', predicate: p, value: v, valid_from: 2026-01-01T00:00:00Z }\n", (11, 16), "empty `subject`"),
        ("{ x: 1 }\n", "{ x: 1 }\nmemory:\n  - { subject: s, predicate: '', value: v, valid_from: 2026-01-01T00:00:00Z }\n", (11, 30), "empty `predicate`"),
        ("{ x: 1 }\n", "{ x: 1 }\nmemory:\n  - { subject: s, predicate: p, value: v, valid_from: 2026-02-30T00:00:00Z }\n", (11, 55), "day 30 does not exist in 2026-02"),
        ("{ x: 1 }\n", "{ x: 1 }\nmemory:\n  - { subject: s, predicate: p, value: v, valid_from: yesterday }\n", (11, 55), "`valid_from`: `yesterday` is not an RFC 3339 timestamp"),
        ("{ x: 1 }\n", "{ x: 1 }\nmemory:\n  - { subject: s, predicate: p, value: v, valid_from: 2026-01-01T00:00:00Z, valid_to: 2026-01-01T01:00:00+01:00 }\n", (11, 87), "`valid_to` is not after `valid_from`"),
    ];
    let scratch = Scratch::with_sample_files();
    // Check every row before failing, so one run shows all mismatches.
    let mut mismatches = Vec::new();
    for (from, to, (line, column), fragment) in table {
        assert!(MINIMAL.contains(from), "row {from:?} does not match MINIMAL");
        let text = MINIMAL.replacen(from, to, 1);
        let found = errors(scratch.parse(&text));
        let as_expected = found.first().is_some_and(|first| {
            (first.line, first.column) == (*line, *column)
                && first.message.contains(fragment)
                && first.file == "mission.yaml"
                && first.help.as_deref().is_some_and(|h| !h.is_empty())
        });
        if !as_expected {
            mismatches.push(format!("{to:?}: want {line}:{column} {fragment:?}, got {found:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn all_value_problems_are_reported_together() {
    let scratch = Scratch::with_sample_files();
    let text = "\
name: Bad Name
budget: { limit: 0, on_exhausted: halt }
models:
  free: { prompt_price: 0, completion_price: 0 }
agents:
  - { name: a, module: agent/nope.wasm, model: paid, limits: { host_calls: 0 } }
  - { name: a, module: agent/eligibility.wasm, model: free }
tasks: { agent: z, dir: missing }
memory:
  - { subject: '', predicate: p, value: v, valid_from: 2026-13-01T00:00:00Z }
gates:
  - { name: g, when: { field: x.y, greater_than: 1, one_of: [1] } }
";
    let found = errors(scratch.parse(text));
    let located: Vec<(usize, usize)> = found.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        located,
        [
            (1, 7),   // name
            (2, 18),  // limit 0
            (2, 35),  // halt
            (4, 9),   // free model
            (6, 48),  // unknown model
            (6, 24),  // module missing
            (6, 76),  // host_calls 0
            (7, 13),  // duplicate agent
            (8, 17),  // unknown tasks.agent
            (8, 25),  // case dir missing
            (10, 16), // empty subject
            (10, 56), // month 13
            (12, 31), // field path
            (12, 61), // two tests
        ],
        "{found:#?}"
    );
    let module = found.iter().find(|d| d.message.contains("module")).expect("module error");
    assert!(module.help.as_deref().is_some_and(|h| h.contains("cargo xtask build-agents")));
}

#[test]
fn case_file_problems_point_into_the_case_file() {
    let scratch = Scratch::with_sample_files();
    scratch.write("cases/c.json", "{\n  \"x\": 1,\n  \"y\" 2\n}");
    scratch.write("cases/d.json", "\n  [1, 2]");
    scratch.write("cases/e.json", r#"{"id": "case-b"}"#);
    scratch.write("cases/f.json", vec![b' '; 1024 * 1024 + 1]);
    scratch.write("cases/g.json", "");
    let found = errors(scratch.parse(SAMPLE));
    let file = |name: &str| scratch.0.join("cases").join(name).display().to_string();
    let summary: Vec<(String, usize, usize)> = found.iter().map(|d| (d.file.clone(), d.line, d.column)).collect();
    assert_eq!(
        summary,
        [
            (file("c.json"), 3, 7),
            (file("d.json"), 2, 3),
            (file("f.json"), 1, 1),
            (file("g.json"), 1, 1),
            (file("e.json"), 1, 1),
        ],
        "{found:#?}"
    );
    let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages.first(), Some(&"invalid JSON: expected `:`"));
    assert!(messages.iter().any(|m| m.contains("a list, not a JSON object")));
    assert!(messages.iter().any(|m| m.contains("larger than 1048576 bytes")));
    assert!(messages.iter().any(|m| m.contains("EOF")));
    let duplicate = found.last().expect("duplicate id error");
    assert!(duplicate.message.contains("duplicate case id `case-b`"));
    assert!(duplicate.help.as_deref().is_some_and(|h| h.contains("b.json")));
}

/// The shipped example must stay valid, and its commented-out options
/// must not change what it does.
#[test]
fn casework_example_loads_with_default_policies() {
    // At run time, not `env!`: a shared target directory may reuse this
    // binary from another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = std::path::Path::new(&manifest).join("examples/casework/mission.yaml");
    let mission = load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        mission.budget,
        Budget {
            limit: 40_000,
            on_exhausted: OnExhausted::Stop,
            reservation_ttl_ms: Budget::DEFAULT_RESERVATION_TTL_MS,
            extension: None,
        }
    );
    assert_eq!(mission.agents.iter().map(|a| a.budget).collect::<Vec<_>>(), [AgentBudget::default()]);
    assert_eq!(mission.tasks.cases.len(), 24);
    // The outcomes its agent proposes (see agent/src/lib.rs).
    let decisions = mission.decisions.clone().expect("the sample declares its decisions");
    assert_eq!(decisions.outcomes, ["eligible", "ineligible", "undetermined"]);
    assert_eq!(decisions.details.map(|d| d.len()), Some(9));

    // The options shown in comments are valid once uncommented.
    let text = std::fs::read_to_string(&path).expect("read example");
    let uncommented = text
        .replace("  # reservation_ttl_ms:", "  reservation_ttl_ms:")
        .replace("    # budget:", "    budget:")
        .replace("# cases_schema:", "cases_schema:")
        .replace("on_exhausted: stop", "on_exhausted: pause");
    assert_ne!(uncommented, text);
    let dir = path.parent().expect("example dir");
    let mission = parse("mission.yaml", dir, &uncommented).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.budget.on_exhausted, OnExhausted::Pause);
    assert_eq!(mission.budget.reservation_ttl_ms, 600_000);
    assert_eq!(mission.cases_schema, Some(dir.join("cases.schema.json")), "every sample case meets the schema");
    assert_eq!(
        mission.agents.first().map(|a| a.budget),
        Some(AgentBudget { limit: Some(30_000), task_limit: Some(2000) })
    );
}

#[test]
fn load_resolves_paths_against_the_mission_file() {
    let scratch = Scratch::with_sample_files();
    let path = scratch.write("mission.yaml", SAMPLE);
    let mission = load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.tasks.cases.len(), 2);
    assert_eq!(mission.agents.first().map(|a| a.module.clone()), Some(scratch.0.join("agent/eligibility.wasm")));

    let missing = scratch.0.join("absent.yaml");
    let found = errors(load(&missing));
    assert_eq!(found.first().map(|d| (d.file.clone(), d.line)), Some((missing.display().to_string(), 1)));
    assert!(found.first().is_some_and(|d| d.message.starts_with("cannot read mission file")));

    let binary = scratch.write("binary.yaml", [0xff, 0xfe, 0x00, 0x80]);
    assert_eq!(errors(load(&binary)).len(), 1);
}

#[test]
fn user_text_in_messages_is_escaped_and_shortened() {
    let scratch = Scratch::with_sample_files();
    let long = "x".repeat(500);
    let text = MINIMAL.replace("name: m\n", &format!("name: \"a\\u001b[31m{long}\"\n"));
    let found = errors(scratch.parse(&text));
    let message = &found.first().expect("name error").message;
    assert!(!message.contains('\u{1b}'), "{message:?}");
    assert!(message.contains("\\u{1b}"), "{message:?}");
    assert!(message.chars().count() < 150, "{message:?}");
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn garbage_and_truncated_input_never_panics() {
    let scratch = Scratch::with_sample_files();
    // Every prefix of a valid file: cuts mid-token, mid-mapping, mid-string.
    for (cut, _) in SAMPLE.char_indices() {
        let prefix = SAMPLE.get(..cut).unwrap_or_default();
        if let Err(diagnostics) = scratch.parse(prefix) {
            assert!(diagnostics.len() >= 1);
        }
    }
    // Random bytes, and random bytes biased towards YAML punctuation.
    const YAML_BYTES: &[u8] = b"{}[]:,-'\"\n #&*!|>?%@`\t0123abc.";
    for seed in 0..300 {
        let bytes = noise(seed, 1 + (seed as usize * 7) % 400);
        scratch.parse(&String::from_utf8_lossy(&bytes)).ok();
        let punctuation: Vec<u8> =
            bytes.iter().map(|b| YAML_BYTES.get(usize::from(*b) % YAML_BYTES.len()).copied().unwrap_or(b' ')).collect();
        scratch.parse(&String::from_utf8_lossy(&punctuation)).ok();
    }
    // Lines of the sample shuffled in or out: valid YAML, wrong shape.
    let lines: Vec<&str> = SAMPLE.lines().collect();
    for seed in 0..200 {
        let keep = noise(seed + 1000, lines.len());
        let text: String =
            lines.iter().zip(&keep).filter(|(_, k)| **k % 4 != 0).map(|(line, _)| format!("{line}\n")).collect();
        scratch.parse(&text).ok();
    }
    // Deep nesting and alias bombs are refused by the parser's budgets.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(scratch.parse(&MINIMAL.replace("{ x: 1 }", &format!("{{ x: {deep} }}"))).is_err());
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    assert!(scratch.parse(&bomb).is_err());
}

#[test]
fn equals_null_is_a_test_not_a_missing_one() {
    let scratch = Scratch::with_sample_files();
    let text = format!("{MINIMAL}gates:\n  - {{ name: g, when: {{ field: decision.note, equals: null }} }}\n");
    let mission = scratch.parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let gate = mission.gates.first().expect("gate");
    assert_eq!(gate.when.test, Test::Equals(serde_json::Value::Null));
    assert!(gate.when.matches(&json!({}), &json!({"note": null})));
}

#[test]
fn alias_values_are_reported_where_used() {
    let scratch = Scratch::with_sample_files();
    let text = MINIMAL.replace("name: m\n", "name: &n Bad\n").replace("{ name: a,", "{ name: *n,");
    let found = errors(scratch.parse(&text));
    let located: Vec<(usize, usize)> = found.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(located, [(1, 10), (5, 13), (7, 10)], "{found:#?}");
}

#[test]
fn task_groups_send_each_queue_to_its_own_agent_and_ids_stay_unique_across_them() {
    let scratch = Scratch::with_sample_files();
    let head = "\
name: m
budget: { limit: 1000 }
models: { free: { prompt_price: 0, completion_price: 1 } }
agents:
  - { name: rust, module: agent/eligibility.wasm, model: free }
  - { name: python, module: agent/eligibility.wasm, model: free }
";
    let text = format!(
        "{head}tasks:\n  - {{ agent: rust, inline: [{{ id: a }}, {{ id: b }}] }}\n  - {{ agent: python, inline: [{{ id: c }}] }}\n"
    );
    let mission = scratch.parse(&text).unwrap_or_else(|d| panic!("{d}"));
    let routed: Vec<(&str, &str)> = mission.tasks.cases.iter().map(|c| (c.id.as_str(), c.agent.as_str())).collect();
    assert_eq!(routed, [("a", "rust"), ("b", "rust"), ("c", "python")]);

    let text = format!(
        "{head}tasks:\n  - {{ agent: rust, inline: [{{ id: a }}] }}\n  - {{ agent: nobody, inline: [{{ id: a }}] }}\n  - {{ agent: python }}\n"
    );
    let found = errors(scratch.parse(&text));
    let summary: Vec<(usize, &str)> = found.iter().map(|d| (d.line, d.message.as_str())).collect();
    let has = |line: usize, text: &str| summary.iter().any(|(l, m)| *l == line && m.contains(text));
    assert!(has(9, "`tasks[1].agent` names `nobody`"), "{found:#?}");
    assert!(has(9, "duplicate case id `a`"), "{found:#?}");
    assert!(has(10, "`tasks[2]` has neither `dir` nor `inline`"), "{found:#?}");

    let text = format!("{head}tasks: []\n");
    let found = errors(scratch.parse(&text));
    assert!(found.iter().any(|d| d.message.contains("`tasks` is an empty list")), "{found:#?}");
}

#[test]
fn memory_scopes_spaces_and_limits_parse_and_bad_ones_are_located() {
    let scratch = Scratch::with_sample_files();
    let good = MINIMAL.replace(
        "  - { name: a, module: agent/eligibility.wasm, model: tiny }",
        "  - { name: a, module: agent/eligibility.wasm, model: tiny,\n      memory: { read: [mission, precedent], write: none } }\n  \
         - { name: b, module: agent/eligibility.wasm, model: tiny, memory: { write: precedent } }",
    ) + "memory:\n  - { space: precedent, subject: claim-1, predicate: outcome, value: denied, source: decision-7, valid_from: 2026-01-01T00:00:00Z }\n\
         memory_limits: { facts: 500, bytes: 65536 }\n";
    let mission = scratch.parse(&good).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.agents[0].memory, MemoryScope { read: vec!["mission".into(), "precedent".into()], write: None });
    assert_eq!(mission.agents[1].memory, MemoryScope { read: vec!["mission".into()], write: Some("precedent".into()) });
    assert_eq!(mission.memory[0].space, "precedent");
    assert_eq!(mission.memory[0].source.as_deref(), Some("decision-7"));
    assert_eq!(mission.memory_limits, MemoryLimits { facts: 500, bytes: 65536 });

    let bad = MINIMAL.replace(
        "  - { name: a, module: agent/eligibility.wasm, model: tiny }",
        "  - { name: a, module: agent/eligibility.wasm, model: tiny, memory: { read: [Mission:x, mission, mission] } }",
    ) + "memory:\n  - { space: \"no way\", subject: s, predicate: p, value: v, valid_from: 2026-01-01T00:00:00Z }\n\
         memory_limits: { facts: 0, bytes: 99999999999999 }\n";
    let found = errors(scratch.parse(&bad));
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("memory space name `Mission:x` is not valid"), "{messages:#?}");
    assert!(has("duplicate memory space name `mission`"), "{messages:#?}");
    assert!(has("memory space name `no way` is not valid"), "{messages:#?}");
    assert!(has("`memory_limits.facts` is 0"), "{messages:#?}");
    assert!(has("`memory_limits.bytes` is 99999999999999"), "{messages:#?}");
    assert_eq!(found.len(), 5, "{messages:#?}");
}

#[test]
fn gate_reviewers_groups_and_quorums_parse_and_bad_ones_are_located() {
    let scratch = Scratch::with_sample_files();
    let a = "0123456789abcdef0123456789abcdef";
    let b = "fedcba9876543210fedcba9876543210";
    let good = format!(
        "{MINIMAL}reviewer_groups:\n  claims: [{a}, {b}]\n\
         gates:\n  - {{ name: big, when: {{ field: case.x, greater_than: 5 }}, reviewers: [claims, {a}], quorum: 2 }}\n\
         \x20 - {{ name: any, when: {{ field: case.x, equals: 1 }} }}\n"
    );
    let mission = scratch.parse(&good).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.gates[0].reviewers, [a, b], "groups resolved, duplicates dropped");
    assert_eq!(mission.gates[0].quorum, 2);
    assert_eq!((mission.gates[1].reviewers.len(), mission.gates[1].quorum), (0, 1), "defaults: anyone, one approval");

    let bad = format!(
        "{MINIMAL}reviewer_groups:\n  claims: [{a}, not-a-key]\n\
         gates:\n  - {{ name: big, when: {{ field: case.x, greater_than: 5 }}, reviewers: [claims, nobody], quorum: 3 }}\n\
         \x20 - {{ name: zero, when: {{ field: case.x, equals: 1 }}, quorum: 0 }}\n"
    );
    let found = errors(scratch.parse(&bad));
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("`not-a-key` is neither a reviewer group nor a key id"), "{messages:#?}");
    assert!(has("`nobody` is neither a reviewer group nor a key id"), "{messages:#?}");
    assert!(has("asks for a quorum of 3, outside 1..=1"), "{messages:#?}");
    assert!(has("asks for a quorum of 0, outside 1..=16"), "{messages:#?}");
    assert_eq!(found.len(), 4, "{messages:#?}");
}

#[test]
fn gate_deadlines_parse_and_bad_ones_are_located() {
    let scratch = Scratch::with_sample_files();
    let a = "0123456789abcdef0123456789abcdef";
    let good = format!(
        "{MINIMAL}reviewer_groups:\n  seniors: [{a}]\n\
         gates:\n  - {{ name: g, when: {{ field: case.x, equals: 1 }}, deadline: 48h, remind_before: 4h,\n      \
         on_timeout: escalate, escalate_to: seniors }}\n"
    );
    let mission = scratch.parse(&good).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        mission.gates[0].deadline,
        Some(Deadline {
            after_us: 48 * 3_600_000_000,
            on_timeout: OnTimeout::Escalate(vec![a.into()]),
            remind_before_us: Some(4 * 3_600_000_000)
        })
    );
    let bad = format!(
        "{MINIMAL}gates:\n\
         \x20 - {{ name: g1, when: {{ field: case.x, equals: 1 }}, deadline: soon }}\n\
         \x20 - {{ name: g2, when: {{ field: case.x, equals: 1 }}, deadline: 1h, on_timeout: escalate }}\n\
         \x20 - {{ name: g3, when: {{ field: case.x, equals: 1 }}, deadline: 1h, remind_before: 2h }}\n\
         \x20 - {{ name: g4, when: {{ field: case.x, equals: 1 }}, on_timeout: approve }}\n\
         \x20 - {{ name: g5, when: {{ field: case.x, equals: 1 }}, deadline: 1h, on_timeout: maybe }}\n"
    );
    let found = errors(scratch.parse(&bad));
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("`deadline`: `soon` is not a duration"), "{messages:#?}");
    assert!(has("`on_timeout: escalate` needs `escalate_to: GROUP`"), "{messages:#?}");
    assert!(has("`remind_before` is not shorter than the `deadline`"), "{messages:#?}");
    assert!(has("`on_timeout` needs a `deadline`"), "{messages:#?}");
    assert!(has("`on_timeout` is `maybe`"), "{messages:#?}");
    assert_eq!(found.len(), 5, "{messages:#?}");
}

#[test]
fn a_budget_gate_takes_a_gates_policy_and_refuses_a_timeout_approval() {
    let scratch = Scratch::with_sample_files();
    let a = "0123456789abcdef0123456789abcdef";
    let b = "fedcba9876543210fedcba9876543210";
    let with_budget = |budget: &str| MINIMAL.replacen("budget: { limit: 10 }", budget, 1);
    let good = format!(
        "{}reviewer_groups:\n  finance: [{a}, {b}]\n",
        with_budget(
            "budget: { limit: 1000, on_exhausted: gate, extension: { amount: 250, reviewers: [finance], quorum: 2, deadline: 4h, on_timeout: deny } }"
        )
    );
    let mission = scratch.parse(&good).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        mission.budget.extension,
        Some(Extension {
            amount: 250,
            reviewers: vec![a.into(), b.into()],
            quorum: 2,
            deadline: Some(Deadline {
                after_us: 4 * 3_600_000_000,
                on_timeout: OnTimeout::Deny,
                remind_before_us: None
            }),
        })
    );
    let bad = with_budget(
        "budget: { limit: 1000, on_exhausted: gate, extension: { amount: 0, quorum: 0, deadline: 1h, on_timeout: approve } }",
    );
    let found = errors(scratch.parse(&bad));
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("extension amount 0 is out of range"), "{messages:#?}");
    assert!(has("asks for a quorum of 0"), "{messages:#?}");
    assert!(has("a budget extension cannot be approved by a timeout"), "{messages:#?}");
    assert_eq!(found.len(), 3, "{messages:#?}");
    let stray = with_budget("budget: { limit: 1000, extension: { amount: 5 } }");
    let found = errors(scratch.parse(&stray));
    assert!(
        found.iter().any(|d| d.to_string().contains("`extension` is only used with `on_exhausted: gate`")),
        "{found:?}"
    );
}

#[test]
fn routing_tiers_and_agent_models_parse_and_bad_ones_are_located() {
    let scratch = Scratch::with_sample_files();
    let good = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 }, big: { prompt_price: 5, completion_price: 9 } }
agents:
  - { name: a, module: agent/eligibility.wasm, model: tiny, models: [big, tiny] }
tasks:
  agent: a
  tier: internal
  inline:
    - { id: one, kind: appeal }
    - { id: two, _tier: public }
routing:
  failover:
    - { when: { field: case.kind, equals: appeal }, to: big }
";
    let mission = scratch.parse(good).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.agents[0].models, ["tiny", "big"]);
    let tiers: Vec<DataTier> = mission.tasks.cases.iter().map(|c| c.tier).collect();
    assert_eq!(tiers, [DataTier::Internal, DataTier::Public]);
    assert_eq!(mission.routing.failover.len(), 1);
    assert_eq!(mission.routing.failover[0].to, "big");
    // By default nothing fails over, and every case is restricted.
    let plain = scratch.parse(MINIMAL).unwrap_or_else(|d| panic!("{d}"));
    assert!(plain.routing.failover.is_empty());
    assert!(plain.tasks.cases.iter().all(|c| c.tier == DataTier::Restricted));

    let bad = good
        .replace("models: [big, tiny]", "models: [huge]")
        .replace("tier: internal", "tier: secret")
        .replace("_tier: public", "_tier: 7")
        .replace("to: big", "to: nowhere");
    let found = errors(scratch.parse(&bad));
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("may use model `huge`, which is not in `models`"), "{messages:#?}");
    assert!(has("`tier` is `secret`"), "{messages:#?}");
    assert!(has("`_tier` is 7"), "{messages:#?}");
    assert!(has("failover goes to model `nowhere`"), "{messages:#?}");
    assert_eq!(found.len(), 4, "{messages:#?}");
}

/// Where `needle` first appears in `text`, as a 1-based (line, column).
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, column)
}

#[test]
fn a_gate_on_a_field_no_case_has_is_refused_with_the_nearest_field() {
    let scratch = Scratch::with_sample_files();
    let typo = SAMPLE.replace("field: case.requested_amount", "field: case.requested_amout");
    let found = errors(scratch.parse(&typo));
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!((d.line, d.column), position_of(&typo, "case.requested_amout"), "{d}");
    assert_eq!(d.file, "mission.yaml");
    assert_eq!(d.message, "gate `large-award` reads `case.requested_amout`, which no case has");
    assert!(d.help.as_deref().is_some_and(|h| h.starts_with("did you mean `case.requested_amount`?")), "{d}");

    // Nothing close: the help lists the fields the cases do have.
    let far = SAMPLE.replace("field: case.requested_amount", "field: case.colour");
    let found = errors(scratch.parse(&far));
    let help = found[0].help.clone().unwrap_or_default();
    assert!(help.contains("`case.id`") && help.contains("`case.requested_amount`"), "{help}");

    // A field one case has is known (the other case goes to review at
    // run time); so is a nested one. Fields of any task group count.
    let groups = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 } }
agents:
  - { name: a, module: agent/eligibility.wasm, model: tiny }
tasks:
  - { agent: a, inline: [ { id: one, amount: 1 } ] }
  - { agent: a, inline: [ { id: two, applicant: { income: 3 } } ] }
gates:
  - { name: big, when: { field: case.amount, greater_than: 5 } }
  - { name: rich, when: { field: case.applicant.income, greater_than: 5 } }
";
    let mission = scratch.parse(groups).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.gates.len(), 2);
    let nested_typo = groups.replace("case.applicant.income", "case.applicant.incme");
    let found = errors(scratch.parse(&nested_typo));
    assert!(found[0].to_string().contains("did you mean `case.applicant.income`?"), "{found:#?}");
    // Inside a value that is not an object there is no field.
    let too_deep = groups.replace("case.amount,", "case.amount.value,");
    assert_eq!(errors(scratch.parse(&too_deep)).len(), 1);
}

#[test]
fn a_failover_rule_reads_only_case_fields_the_cases_have() {
    let scratch = Scratch::with_sample_files();
    let mission = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 }, big: { prompt_price: 5, completion_price: 9 } }
agents:
  - { name: a, module: agent/eligibility.wasm, model: tiny }
tasks:
  agent: a
  inline:
    - { id: one, kind: appeal }
routing:
  failover:
    - { when: { field: case.kind, equals: appeal }, to: big }
";
    scratch.parse(mission).unwrap_or_else(|d| panic!("{d}"));
    let typo = mission.replace("case.kind", "case.knd");
    let found = errors(scratch.parse(&typo));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].to_string().contains("a failover rule reads `case.knd`, which no case has"), "{}", found[0]);
    assert!(found[0].to_string().contains("did you mean `case.kind`?"), "{}", found[0]);
    let decision = mission.replace("case.kind", "decision.outcome");
    let found = errors(scratch.parse(&decision));
    assert!(found[0].message.contains("failover is chosen before the agent decides"), "{}", found[0]);
}

const SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["requested_amount"],
  "properties": {
    "id": { "type": "string" },
    "requested_amount": { "type": "integer", "minimum": 0 },
    "applicant": { "$ref": "#/$defs/applicant" }
  },
  "$defs": {
    "applicant": { "type": "object", "properties": { "income": { "type": "number" } } }
  }
}"##;

#[test]
fn a_cases_schema_checks_every_case_and_the_gate_fields() {
    let scratch = Scratch::with_sample_files();
    scratch.write("cases.schema.json", SCHEMA);
    let with_schema = SAMPLE.replace("tasks:\n", "cases_schema: cases.schema.json\ntasks:\n");
    let mission = scratch.parse(&with_schema).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.cases_schema, Some(scratch.0.join("cases.schema.json")));

    // A field the schema declares is known even if no case has it yet;
    // one the schema does not declare is refused, with a suggestion.
    let declared = with_schema.replace("case.requested_amount", "case.applicant.income");
    scratch.parse(&declared).unwrap_or_else(|d| panic!("{d}"));
    let typo = with_schema.replace("case.requested_amount", "case.requested_amout");
    let found = errors(scratch.parse(&typo));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), position_of(&typo, "case.requested_amout"));
    assert_eq!(
        found[0].message,
        "gate `large-award` reads `case.requested_amout`, which the cases schema does not declare"
    );
    assert!(
        found[0].help.as_deref().is_some_and(|h| h.starts_with("did you mean `case.requested_amount`?")),
        "{}",
        found[0]
    );

    // Each case is checked, and a failure names the case file and where.
    scratch.write("cases/c.json", r#"{"id": "case-c", "requested_amount": "lots"}"#);
    scratch.write("cases/d.json", r#"{"id": "case-d"}"#);
    let found = errors(scratch.parse(&with_schema));
    let case_file = |name: &str| scratch.0.join("cases").join(name).display().to_string();
    let summary: Vec<(String, String)> = found.iter().map(|d| (d.file.clone(), d.message.clone())).collect();
    assert_eq!(summary.len(), 2, "{found:#?}");
    assert_eq!(summary[0].0, case_file("c.json"));
    assert!(
        summary[0].1.starts_with("case `case-c` does not match the cases schema at `/requested_amount`: "),
        "{summary:?}"
    );
    assert!(summary[0].1.contains("integer"), "{summary:?}");
    assert_eq!(summary[1].0, case_file("d.json"));
    assert!(summary[1].1.contains("requested_amount"), "{summary:?}");
    std::fs::remove_file(scratch.0.join("cases/c.json")).expect("remove");
    std::fs::remove_file(scratch.0.join("cases/d.json")).expect("remove");

    // Inline cases are reported where they are written.
    let inline = MINIMAL.replace("tasks:\n", "cases_schema: cases.schema.json\ntasks:\n");
    let found = errors(scratch.parse(&inline));
    assert_eq!(
        (found[0].file.as_str(), found[0].line),
        ("mission.yaml", position_of(&inline, "{ x: 1 }").0),
        "{found:#?}"
    );
}

#[test]
fn a_cases_schema_that_cannot_be_used_is_located() {
    let scratch = Scratch::with_sample_files();
    let with_schema = SAMPLE.replace("tasks:\n", "cases_schema: cases.schema.json\ntasks:\n");
    let at = position_of(&with_schema, "cases.schema.json");
    let first = |scratch: &Scratch| {
        let found = errors(scratch.parse(&with_schema));
        found.first().cloned().expect("a diagnostic")
    };

    // Missing: reported at `cases_schema:`, and the gate is not refused
    // on top of it (there is nothing to check it against).
    let found = errors(scratch.parse(&with_schema));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), at);
    assert!(found[0].message.starts_with("cannot read cases schema"), "{}", found[0]);

    // Not JSON: reported in the schema file, at the position.
    scratch.write("cases.schema.json", "{\n  \"type\": }");
    let d = first(&scratch);
    assert_eq!((d.file.clone(), d.line), (scratch.0.join("cases.schema.json").display().to_string(), 2), "{d}");

    // Not a schema; and a reference outside the file, which is not loaded.
    scratch.write("cases.schema.json", r#"{"type": "objekt"}"#);
    let d = first(&scratch);
    assert!(d.message.contains("is not a valid JSON Schema"), "{d}");
    scratch.write("cases.schema.json", r#"{"properties": {"a": {"$ref": "/etc/passwd"}}}"#);
    let d = first(&scratch);
    assert!(d.message.contains("is not a valid JSON Schema") && d.message.contains("refer only within itself"), "{d}");

    // A directory is not a schema file.
    std::fs::remove_file(scratch.0.join("cases.schema.json")).expect("remove");
    std::fs::create_dir(scratch.0.join("cases.schema.json")).expect("dir");
    let d = first(&scratch);
    assert!(d.message.contains("a directory, not a regular file"), "{d}");
}

const DECISIONS: &str = "\
decisions:
  outcomes: [eligible, ineligible, undetermined]
  details: { requested_amount: integer, eligible_by_rule: boolean, note: string, extra: object }
";

#[test]
fn decisions_declare_outcomes_and_detail_types() {
    let scratch = Scratch::with_sample_files();
    let declared = format!("{SAMPLE}{DECISIONS}");
    let mission = scratch.parse(&declared).unwrap_or_else(|d| panic!("{d}"));
    let decisions = mission.decisions.expect("decisions");
    assert_eq!(decisions.outcomes, ["eligible", "ineligible", "undetermined"]);
    let details = decisions.details.expect("details");
    assert_eq!(details.get("requested_amount"), Some(&FieldType::Integer));
    assert_eq!(details.get("extra"), Some(&FieldType::Object));
    // Without the section, anything goes, as before.
    assert_eq!(scratch.parse(SAMPLE).map(|m| m.decisions), Ok(None));
    // Without `details`, only outcomes are closed.
    let outcomes_only = format!("{SAMPLE}decisions: {{ outcomes: [undetermined, done] }}\n");
    let mission = scratch.parse(&outcomes_only).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.decisions.and_then(|d| d.details), None);

    // Gate fields are checked against the decision's shape.
    // SAMPLE ends with its gates: one more goes after them.
    let gate = |field: &str, test: &str| {
        format!("{SAMPLE}  - {{ name: extra-gate, when: {{ field: {field}, {test} }} }}\n{DECISIONS}")
    };
    for (field, test) in [
        ("decision.details.requested_amount", "greater_than: 5000"),
        ("decision.details.extra.anything", "equals: 1"),
        ("decision.reason", "equals: x"),
        ("decision.outcome", "one_of: [eligible, ineligible]"),
        ("decision.outcome", "not_equals: eligible"),
    ] {
        scratch.parse(&gate(field, test)).unwrap_or_else(|d| panic!("{field} {test}: {d}"));
    }
    let refused = [
        ("decision.outcom", "equals: eligible", "which a decision does not have", "did you mean `decision.outcome`?"),
        (
            "decision.details.requested_amout",
            "greater_than: 1",
            "which `decisions.details` does not declare",
            "did you mean `decision.details.requested_amount`?",
        ),
        ("decision.details.note.deeper", "equals: 1", "which `decisions.details` does not declare", ""),
        (
            "decision.outcome",
            "equals: undetermind",
            "compares `decision.outcome` with `undetermind`, which is not one of the mission's outcomes",
            "did you mean `undetermined`?",
        ),
        (
            "decision.outcome",
            "one_of: [eligible, maybe]",
            "`maybe`, which is not one of the mission's outcomes",
            "the outcomes are `eligible`, `ineligible`, `undetermined`",
        ),
        ("decision.outcome", "equals: 7", "`7`, which is not one of", ""),
    ];
    for (field, test, message, help) in refused {
        let text = gate(field, test);
        let found = errors(scratch.parse(&text));
        assert_eq!(found.len(), 1, "{field} {test}: {found:#?}");
        let d = &found[0];
        assert!(d.message.contains(message), "{field} {test}: {d}");
        assert!(d.help.as_deref().is_some_and(|h| h.contains(help)), "{field} {test}: {d}");
        assert_eq!(d.line, position_of(&text, "extra-gate").0, "{d}");
    }
}

#[test]
fn each_broken_decisions_rule_is_located() {
    let scratch = Scratch::with_sample_files();
    let table = [
        ("outcomes: []", "`decisions.outcomes` lists no outcomes", "[]"),
        ("outcomes: [eligible, eligible]", "duplicate outcome name `eligible`", "eligible]"),
        ("outcomes: [rejected]", "outcome `rejected` is one the conductor records itself", "rejected"),
        ("outcomes: [timed_out]", "outcome `timed_out` is one the conductor records itself", "timed_out"),
        ("outcomes: [\"not ok\"]", "outcome `not ok` is not a valid name", "\"not ok\""),
        (
            "outcomes: [a], details: { amount: float }",
            "details field `amount` has type `float`, which is not a type",
            "float",
        ),
        ("outcomes: [a], details: { \"a b\": string }", "details field `a b` is not a valid name", "string"),
    ];
    for (body, message, at) in table {
        let text = format!("{MINIMAL}decisions: {{ {body} }}\n");
        let found = errors(scratch.parse(&text));
        assert_eq!(found.len(), 1, "{body}: {found:#?}");
        let d = &found[0];
        assert_eq!(d.message, message, "{body}: {d}");
        assert_eq!((d.line, d.column), position_of(&text, at), "{body}: {d}");
    }
    let many: Vec<String> = (0..=Decisions::OUTCOMES_MAX).map(|i| format!("o{i}")).collect();
    let text = format!("{MINIMAL}decisions: {{ outcomes: [{}] }}\n", many.join(", "));
    assert!(errors(scratch.parse(&text))[0].message.contains("more than 64"));
    let unknown = format!("{MINIMAL}decisions: {{ outcomes: [a], kinds: [b] }}\n");
    assert!(errors(scratch.parse(&unknown))[0].message.contains("unknown field `kinds`"));
}

#[test]
fn field_types_admit_their_values_and_null() {
    let table = [
        (FieldType::String, json!("x"), true),
        (FieldType::String, json!(1), false),
        (FieldType::Integer, json!(3), true),
        (FieldType::Integer, json!(-3), true),
        (FieldType::Integer, json!(3.0), true),
        (FieldType::Integer, json!(3.5), false),
        (FieldType::Integer, json!("3"), false),
        (FieldType::Number, json!(3.5), true),
        (FieldType::Boolean, json!(false), true),
        (FieldType::Boolean, json!("false"), false),
        (FieldType::List, json!([1]), true),
        (FieldType::Object, json!({}), true),
        (FieldType::Object, json!([]), false),
    ];
    for (field_type, value, want) in table {
        assert_eq!(field_type.admits(&value), want, "{field_type:?} {value}");
    }
    for field_type in FieldType::ALL {
        assert!(field_type.admits(&serde_json::Value::Null), "null is no value, as an absent field");
        assert_eq!(FieldType::parse(field_type.as_str()), Some(field_type));
    }
    assert_eq!(FieldType::parse("float"), None);
}

/// Runs `f` on another thread and waits for it, so a read that blocks
/// (the bug under test) fails the test instead of hanging it.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    finished.recv_timeout(std::time::Duration::from_secs(60)).expect("the read returned instead of blocking")
}

#[cfg(unix)]
fn fifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn mission_and_case_files_are_read_as_regular_files_within_a_limit() {
    let scratch = Scratch::with_sample_files();
    let message = |path: PathBuf| within_a_minute(move || errors(load(&path))[0].message.clone());

    // A device that never ends, a FIFO nobody writes to and a directory
    // are refused at once, from their metadata.
    assert_eq!(message("/dev/zero".into()), "cannot read mission file: it is a device, not a regular file");
    let pipe = scratch.0.join("pipe.yaml");
    fifo(&pipe);
    assert_eq!(message(pipe), "cannot read mission file: it is a FIFO (named pipe), not a regular file");
    assert_eq!(message(scratch.0.join("cases")), "cannot read mission file: it is a directory, not a regular file");
    // A file over the limit is refused without reading past it.
    let large = scratch.write("large.yaml", vec![b'#'; usize::try_from(MISSION_FILE_BYTES_MAX).expect("fits") + 1]);
    assert_eq!(message(large), format!("cannot read mission file: it is larger than {MISSION_FILE_BYTES_MAX} bytes"));
    let text = "#".repeat(usize::try_from(MISSION_FILE_BYTES_MAX).expect("fits") + 1);
    assert!(errors(scratch.parse(&text))[0].message.contains("larger than"));

    // A case file that is a FIFO or a directory is reported where it is.
    let path = scratch.write("mission.yaml", SAMPLE);
    fifo(&scratch.0.join("cases/pipe.json"));
    std::fs::create_dir(scratch.0.join("cases/folder.json")).expect("dir");
    let found = within_a_minute(move || errors(load(&path)));
    let summary: Vec<(String, String)> = found.iter().map(|d| (d.file.clone(), d.message.clone())).collect();
    let case_file = |name: &str| scratch.0.join("cases").join(name).display().to_string();
    assert_eq!(
        summary,
        [
            (case_file("folder.json"), "cannot read case file: it is a directory, not a regular file".to_owned()),
            (case_file("pipe.json"), "cannot read case file: it is a FIFO (named pipe), not a regular file".to_owned()),
        ]
    );
}

#[test]
fn diagnostics_can_withhold_what_would_quote_the_file() {
    let scratch = Scratch::with_sample_files();
    let secret = scratch.write("shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n");
    let found = load(&secret).expect_err("not a mission");
    assert!(found.to_string().contains("root"), "the command line shows the problem: {found}");
    let withheld = found.without_source_text();
    assert_eq!(withheld.len(), found.len());
    let text = withheld.to_string();
    assert!(!text.contains("root") && !text.contains("19000") && !text.contains("daemon"), "{text}");
    for (kept, full) in withheld.iter().zip(found.iter()) {
        assert_eq!((&kept.file, kept.line, kept.column), (&full.file, full.line, full.column));
        assert!(kept.message.contains("withheld"), "{kept}");
    }

    // What quotes nothing from the file stays as it is.
    let missing = errors(load(&scratch.0.join("absent.yaml")));
    assert!(!missing[0].echoes_input());
    let empty = scratch.write("empty.yaml", "");
    let found = load(&empty).expect_err("empty");
    assert_eq!(found.without_source_text(), found);
    // Values from a mission are withheld too, unless the caller sent the
    // mission's text (its own words); a case file's are withheld still.
    let typo = SAMPLE.replace("case.requested_amount", "case.requested_amout");
    let found = scratch.parse(&typo).expect_err("typo");
    assert!(!found.without_source_text().to_string().contains("requested_amout"));
    assert_eq!(found.without_source_text_except("mission.yaml"), found);
    scratch.write("cases.schema.json", r#"{"properties": {"requested_amount": {"type": "string"}}}"#);
    let with_schema = SAMPLE.replace("tasks:\n", "cases_schema: cases.schema.json\ntasks:\n");
    let found = scratch.parse(&with_schema).expect_err("cases are not strings");
    assert!(found.to_string().contains("case-b"), "{found}");
    assert!(!found.without_source_text_except("mission.yaml").to_string().contains("case-b"));
}

#[test]
fn delegation_defaults_and_a_full_block_parse() {
    let scratch = Scratch::with_sample_files();
    let plain = scratch.parse(MINIMAL).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        plain.delegation,
        Delegation { depth: 4, fan_out: 64, children_per_task: 256, input_bytes: 64 * 1024 },
        "the documented defaults"
    );
    assert_eq!(plain.delegation, Delegation::default());
    assert!(plain.agents.iter().all(|a| a.delegates_to.is_empty()), "no agent may delegate by default");

    let full = format!(
        "{MINIMAL}delegation:\n  depth: 16\n  fan_out: 4096\n  children_per_task: 100000\n  input_bytes: 1048576\n"
    );
    let mission = scratch.parse(&full).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        mission.delegation,
        Delegation {
            depth: DELEGATION_DEPTH_MAX,
            fan_out: DELEGATION_FAN_OUT_MAX,
            children_per_task: DELEGATION_CHILDREN_MAX,
            input_bytes: DELEGATION_INPUT_BYTES_MAX,
        }
    );
    let least = format!("{MINIMAL}delegation: {{ depth: 1, fan_out: 1, children_per_task: 1, input_bytes: 2 }}\n");
    let mission = scratch.parse(&least).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.delegation, Delegation { depth: 1, fan_out: 1, children_per_task: 1, input_bytes: 2 });
    // A field left out keeps its default; fan-out may equal the children's limit.
    let partial = format!("{MINIMAL}delegation: {{ depth: 2, children_per_task: 64 }}\n");
    let mission = scratch.parse(&partial).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(mission.delegation, Delegation { depth: 2, children_per_task: 64, ..Delegation::DEFAULT });
    let empty = format!("{MINIMAL}delegation: {{}}\n");
    assert_eq!(scratch.parse(&empty).map(|m| m.delegation).ok(), Some(Delegation::DEFAULT));
}

/// Each row is the body of a `delegation:` block after [`MINIMAL`] (whose
/// 9 lines put the block's first field on line 11, column 3) and the one
/// error it must give, at the exact line and column of the value.
#[test]
fn each_broken_delegation_rule_is_located() {
    #[rustfmt::skip]
    let table: &[(&str, (usize, usize), &str)] = &[
        ("depth: 0", (11, 10), "`delegation.depth` is 0; it must be between 1 and 16"),
        ("depth: 17", (11, 10), "`delegation.depth` is 17; it must be between 1 and 16"),
        ("depth: 4294967296", (11, 10), "`delegation.depth` is 4294967296; it must be between 1 and 16"),
        ("fan_out: 0", (11, 12), "`delegation.fan_out` is 0; it must be between 1 and 4096"),
        ("fan_out: 4097", (11, 12), "`delegation.fan_out` is 4097; it must be between 1 and 4096"),
        ("children_per_task: 0", (11, 22), "`delegation.children_per_task` is 0; it must be between 1 and 100000"),
        ("children_per_task: 100001", (11, 22), "`delegation.children_per_task` is 100001; it must be between 1 and 100000"),
        ("input_bytes: 0", (11, 16), "`delegation.input_bytes` is 0; it must be between 2 and 1048576"),
        ("input_bytes: 1", (11, 16), "`delegation.input_bytes` is 1; it must be between 2 and 1048576"),
        ("input_bytes: 1048577", (11, 16), "`delegation.input_bytes` is 1048577; it must be between 2 and 1048576"),
        ("fan_out: 65\n  children_per_task: 64", (11, 12), "`delegation.fan_out` is 65, more than `delegation.children_per_task` of 64"),
        ("children_per_task: 64\n  fan_out: 65", (12, 12), "`delegation.fan_out` is 65, more than `delegation.children_per_task` of 64"),
        // The default fan-out (64) cannot exceed what one task may start.
        ("children_per_task: 10", (11, 22), "`delegation.fan_out` is 64, more than `delegation.children_per_task` of 10"),
        ("depth: -1", (11, 10), "non-negative whole number"),
        ("width: 3", (11, 3), "unknown field `width`"),
    ];
    let scratch = Scratch::with_sample_files();
    let mut mismatches = Vec::new();
    for (body, (line, column), message) in table {
        let text = format!("{MINIMAL}delegation:\n  {body}\n");
        let found = errors(scratch.parse(&text));
        let as_expected = matches!(found.as_slice(), [only]
            if (only.line, only.column) == (*line, *column)
                && only.message.contains(message)
                && only.file == "mission.yaml"
                && only.help.as_deref().is_some_and(|h| !h.is_empty()));
        if !as_expected {
            mismatches.push(format!("{body:?}: want {line}:{column} {message:?}, got {found:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    let text = format!("{MINIMAL}delegation:\n  depth: 0\n");
    assert_eq!(
        errors(scratch.parse(&text))[0].to_string(),
        "mission.yaml:11:10: error: `delegation.depth` is 0; it must be between 1 and 16\n  \
         help: the default is 4; leave `delegation.depth` out to use it"
    );
    let text = format!("{MINIMAL}delegation:\n  children_per_task: 10\n");
    let help = errors(scratch.parse(&text))[0].help.clone().unwrap_or_default();
    assert!(help.starts_with("`fan_out` defaults to 64"), "{help}");
    // Every bad value is reported together, once each.
    let text = format!("{MINIMAL}delegation: {{ depth: 0, fan_out: 0, children_per_task: 0, input_bytes: 1 }}\n");
    assert_eq!(errors(scratch.parse(&text)).len(), 4);
}

const DELEGATING: &str = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 } }
agents:
  - { name: lead, module: agent/eligibility.wasm, model: tiny, delegates_to: [checker, lead] }
  - name: checker
    module: agent/eligibility.wasm
    model: tiny
tasks:
  agent: lead
  inline:
    - { x: 1 }
";

#[test]
fn delegates_to_names_agents_of_the_mission_once_each() {
    let scratch = Scratch::with_sample_files();
    // A target defined further down, and the agent itself, are accepted.
    let mission = scratch.parse(DELEGATING).unwrap_or_else(|d| panic!("{d}"));
    let lists: Vec<(&str, &[String])> =
        mission.agents.iter().map(|a| (a.name.as_str(), a.delegates_to.as_slice())).collect();
    assert_eq!(lists, [("lead", &["checker".to_owned(), "lead".to_owned()][..]), ("checker", &[][..])]);
    let none = DELEGATING.replace("[checker, lead]", "[]");
    assert!(scratch.parse(&none).unwrap_or_else(|d| panic!("{d}")).agents[0].delegates_to.is_empty());

    let typo = DELEGATING.replace("[checker, lead]", "[chekcer]");
    let found = errors(scratch.parse(&typo));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), position_of(&typo, "chekcer"));
    assert_eq!((found[0].line, found[0].column), (5, 79));
    assert_eq!(found[0].message, "agent `lead` delegates to `chekcer`, which is not in `agents`");
    assert_eq!(
        found[0].help.as_deref(),
        Some("did you mean `checker`? Otherwise use one of `checker`, `lead` or define it under `agents`")
    );

    let far = DELEGATING.replace("[checker, lead]", "[lead, auditor]");
    let found = errors(scratch.parse(&far));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), position_of(&far, "auditor"));
    assert_eq!(found[0].help.as_deref(), Some("use one of `checker`, `lead` or define it under `agents`"));

    let twice = DELEGATING.replace("[checker, lead]", "[checker, lead, checker]");
    let found = errors(scratch.parse(&twice));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].line, found[0].column), (5, 94));
    assert_eq!(found[0].message, "agent `lead` lists `checker` in `delegates_to` twice");
    assert_eq!(found[0].help.as_deref(), Some("list each agent once; the first is at line 5, column 79"));

    let misspelt_key = DELEGATING.replace("delegates_to:", "delegate_to:");
    assert!(errors(scratch.parse(&misspelt_key))[0].message.contains("unknown field `delegate_to`"));
}

/// MINIMAL without its `tasks`: an open mission may start with no cases.
const OPEN: &str = "\
name: m
budget: { limit: 10 }
models: { tiny: { prompt_price: 1, completion_price: 1 } }
agents:
  - { name: a, module: agent/eligibility.wasm, model: tiny }
";

#[test]
fn intake_makes_tasks_optional_and_takes_its_defaults() {
    let scratch = Scratch::with_sample_files();
    let found = errors(scratch.parse(OPEN));
    assert!(found.iter().any(|d| d.message.contains("neither `tasks` nor `intake`")), "{found:?}");
    let mission = scratch.parse(&format!("{OPEN}intake: {{ agent: a }}\n")).unwrap_or_else(|d| panic!("{d}"));
    assert!(mission.tasks.cases.is_empty());
    let intake = mission.intake.expect("intake");
    assert_eq!(intake.agent, "a");
    assert_eq!(intake.queue, crate::INTAKE_QUEUE_DEFAULT);
    assert_eq!(intake.documents, crate::DocumentLimits::default());
    assert_eq!(intake.inbox, None);
    scratch.write("inbox/.keep", "");
    let full = format!(
        "{OPEN}intake:\n  agent: a\n  queue: 5\n  inbox: inbox\n  tier: public\n  \
         documents: {{ count: 0, bytes: 10, types: [text/plain] }}\n"
    );
    let intake = scratch.parse(&full).unwrap_or_else(|d| panic!("{d}")).intake.expect("intake");
    assert_eq!((intake.queue, intake.tier), (5, crate::DataTier::Public));
    assert_eq!(intake.documents, crate::DocumentLimits { count: 0, bytes: 10, types: vec!["text/plain".into()] });
    assert_eq!(intake.inbox, Some(scratch.0.join("inbox")));
    // Both: the mission's own cases first, then what arrives.
    let both = scratch.parse(&format!("{MINIMAL}intake: {{ agent: a }}\n")).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(both.tasks.cases.len(), 1);
}

#[test]
fn each_broken_intake_rule_is_located() {
    #[rustfmt::skip]
    let table: &[(&str, usize, &str)] = &[
        ("agent: b", 7, "`intake.agent` names `b`, which is not in `agents`"),
        ("agent: a\n  queue: 0", 8, "`intake.queue` is 0; it must be between 1 and 1000000"),
        ("agent: a\n  inbox: nowhere", 8, "`intake.inbox` is `nowhere`, which is not a directory"),
        ("agent: a\n  tier: secret", 8, "`intake.tier` is `secret`"),
        ("agent: a\n  documents: { bytes: 0 }", 8, "`intake.documents.bytes` is 0"),
        ("agent: a\n  documents: { count: 257 }", 8, "`intake.documents.count` is 257"),
        ("agent: a\n  documents: { types: [PDF] }", 8, "`intake.documents.types` lists `PDF`, which is not a media type"),
        ("agent: a\n  watch: x", 8, "unknown field `watch`"),
    ];
    let scratch = Scratch::with_sample_files();
    for (body, line, message) in table {
        let found = errors(scratch.parse(&format!("{OPEN}intake:\n  {body}\n")));
        assert!(
            found.iter().any(|d| d.line == *line && d.message.contains(message)),
            "{body}: expected line {line} `{message}`, got {found:?}"
        );
    }
}

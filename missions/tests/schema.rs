//! The mission file's JSON Schema (`missions::mission_schema`): the
//! committed copy is current, every example mission meets it, and broken
//! missions do not. Validation uses `boon`, which shares no code with
//! `schemars` (which generates the schema), so a schema that says something
//! other than what was meant is caught rather than agreed with.
//!
//! The committed schema is regenerated with
//! `UPDATE_SCHEMA=1 cargo test -p missions --test schema`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Where the committed schema lives, relative to this crate.
const SCHEMA_FILE: &str = "schema/mission.schema.json";

/// The first line of every example mission: the YAML language server reads
/// it to find the schema (relative to the mission file).
const SCHEMA_COMMENT: &str = "# yaml-language-server: $schema=../../schema/mission.schema.json";

/// How boon knows the schema while compiling; its own `$id` would do, but a
/// fixed name keeps the test independent of what `$id` says.
const SCHEMA_URL: &str = "urn:conductor:mission-schema";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema, compiled by boon.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Validator {
        let mut compiler = boon::Compiler::new();
        let mut schemas = boon::Schemas::new();
        compiler.add_resource(SCHEMA_URL, schema).expect("the schema is added");
        let index = compiler.compile(SCHEMA_URL, &mut schemas).unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        Validator { schemas, index }
    }

    /// `Ok` or boon's message.
    fn check(&self, instance: &Value) -> Result<(), String> {
        self.schemas.validate(instance, self.index).map_err(|e| format!("{e:#}"))
    }
}

/// Every `examples/*/mission.yaml`, found by listing, so a new example is
/// checked without being named here.
fn example_missions() -> Vec<PathBuf> {
    let examples = crate_dir().join("examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap_or_else(|e| panic!("listing {}: {e}", examples.display()))
        .map(|entry| entry.expect("a directory entry").path().join("mission.yaml"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found
}

/// A YAML file as the JSON value an editor validates against the schema.
fn yaml_to_json(text: &str, shown: &Path) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", shown.display()))
}

fn casework() -> (PathBuf, Value) {
    let path = crate_dir().join("examples/casework/mission.yaml");
    let text = std::fs::read_to_string(&path).expect("the casework example is readable");
    let value = yaml_to_json(&text, &path);
    (path, value)
}

/// Whether `missions::parse` accepts `value` (written as JSON, which is
/// YAML) as a mission in the casework example's directory.
fn parses(value: &Value) -> Result<(), String> {
    let (path, _) = casework();
    let dir = path.parent().expect("the example has a directory");
    missions::parse("variant.yaml", dir, &value.to_string()).map(|_| ()).map_err(|d| d.to_string())
}

/// `UPDATE_SCHEMA=1`: rewrite the committed schema instead of comparing.
fn updating() -> bool {
    std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1")
}

#[test]
fn committed_schema_is_current() {
    let path = crate_dir().join(SCHEMA_FILE);
    let generated = format!("{}\n", serde_json::to_string_pretty(&missions::mission_schema()).expect("JSON"));
    if updating() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    // Compared as JSON values: key order differs between builds (the
    // workspace's serde_json keeps insertion order, this crate's alone
    // sorts), the document does not.
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
    assert!(
        committed == missions::mission_schema(),
        "{} is not the schema the mission types generate; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p missions --test schema` (or \
         `conductor mission schema > missions/{SCHEMA_FILE}`) and commit it",
        path.display()
    );
}

#[test]
fn schema_is_a_draft_2020_12_document_with_an_id() {
    let schema = missions::mission_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["$id"], missions::MISSION_SCHEMA_ID);
    assert_eq!(schema["title"], "Conductor mission");
    // `deny_unknown_fields` carried over, at the top and in a nested type.
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["$defs"]["Agent"]["additionalProperties"], false);
}

/// Every property of every object in the schema says what it is for: the
/// descriptions are what an editor shows while the file is written.
#[test]
fn every_property_has_a_description() {
    fn walk(at: &str, node: &Value, missing: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::Object(properties)) = map.get("properties") {
                    for (name, property) in properties {
                        let described =
                            property.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
                        if !described {
                            missing.push(format!("{at}/properties/{name}"));
                        }
                    }
                }
                for (key, child) in map {
                    walk(&format!("{at}/{key}"), child, missing);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{at}/{i}"), child, missing);
                }
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk("#", &missions::mission_schema(), &mut missing);
    assert!(missing.is_empty(), "properties without a description: {missing:?}");
}

#[test]
fn every_example_mission_meets_the_schema() {
    let validator = Validator::new(missions::mission_schema());
    let committed = crate_dir().join(SCHEMA_FILE);
    let examples = example_missions();
    // Both shipped examples, at least: an empty listing would pass vacuously.
    assert!(examples.len() >= 2, "expected the example missions, found {examples:?}");
    for path in examples {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert_eq!(
            text.lines().next(),
            Some(SCHEMA_COMMENT),
            "{} must start with the YAML language server's schema comment",
            path.display()
        );
        let target = path.parent().expect("a directory").join(SCHEMA_COMMENT.rsplit_once('=').expect("a path").1);
        let resolved = target.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert_eq!(
            resolved,
            committed.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", committed.display())),
            "{}: the schema comment must name the committed schema",
            path.display()
        );
        let value = yaml_to_json(&text, &path);
        if let Err(e) = validator.check(&value) {
            panic!("{} does not meet the schema: {e}", path.display());
        }
    }
}

/// The committed file is what editors read: it must accept the examples
/// too (this also holds while `committed_schema_is_current` fails).
#[test]
fn committed_schema_accepts_the_examples() {
    if updating() {
        // `committed_schema_is_current` is rewriting the file meanwhile.
        return;
    }
    let path = crate_dir().join(SCHEMA_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let validator = Validator::new(serde_json::from_str(&text).expect("the committed schema is JSON"));
    for path in example_missions() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let value = yaml_to_json(&text, &path);
        if let Err(e) = validator.check(&value) {
            panic!("{} does not meet {SCHEMA_FILE}: {e}", path.display());
        }
    }
}

/// Each broken mission is refused by the schema and by the parser alike,
/// so the schema is no looser than the file format.
#[test]
fn broken_missions_are_refused() {
    let validator = Validator::new(missions::mission_schema());
    let (_, valid) = casework();
    assert_eq!(validator.check(&valid), Ok(()), "the starting point is valid");
    assert_eq!(parses(&valid), Ok(()), "the starting point parses");

    type Breakage = fn(&mut Value);
    let cases: [(&str, Breakage); 11] = [
        ("an unknown top-level key", |m| {
            m["colour"] = json!("blue");
        }),
        ("a string for budget.limit", |m| m["budget"]["limit"] = json!("lots")),
        ("a negative budget.limit", |m| m["budget"]["limit"] = json!(-5)),
        ("an unknown key in an agent", |m| m["agents"][0]["colour"] = json!("blue")),
        ("an agent without a module", |m| {
            m["agents"][0].as_object_mut().expect("an agent is a mapping").remove("module");
        }),
        ("tasks as a string", |m| m["tasks"] = json!("cases")),
        ("an unknown key in a task group", |m| m["tasks"]["colour"] = json!("blue")),
        ("a list of models", |m| m["models"] = json!(["smollm2-135m"])),
        ("a null agent name", |m| m["agents"][0]["name"] = Value::Null),
        ("a quoted number with a leading zero", |m| m["budget"]["limit"] = json!("060000")),
        ("a mapping for a threshold", |m| {
            m["gates"] = json!([{ "name": "large", "when": { "field": "case.requested_amount", "greater_than": {} } }]);
        }),
    ];
    for (what, breakage) in cases {
        let mut broken = valid.clone();
        breakage(&mut broken);
        assert!(validator.check(&broken).is_err(), "the schema accepts {what}");
        assert!(parses(&broken).is_err(), "the parser accepts {what}");
    }
}

/// Shapes the parser accepts that the examples do not show: the schema
/// must accept them too.
#[test]
fn other_accepted_shapes_meet_the_schema() {
    let validator = Validator::new(missions::mission_schema());
    let (_, valid) = casework();

    type Variation = fn(&mut Value);
    let cases: [(&str, Variation); 9] = [
        ("a list of task groups", |m| {
            let group = m["tasks"].clone();
            m["tasks"] = json!([group]);
        }),
        ("a quoted price", |m| {
            let models = m["models"].as_object_mut().expect("models is a mapping");
            for price in models.values_mut() {
                price["prompt_price"] = json!("2");
            }
        }),
        ("a gate testing for null", |m| {
            m["gates"] = json!([{ "name": "no-amount", "when": { "field": "case.requested_amount", "equals": null } }]);
        }),
        ("null for an optional section", |m| m["routing"] = Value::Null),
        // serde-saphyr reads any scalar but null as text, and quoted
        // numbers as numbers: the schema must not flag what it reads.
        ("a number for a text field", |m| m["description"] = json!(2026)),
        ("a boolean for a text field", |m| m["description"] = json!(true)),
        ("a quoted whole number", |m| m["budget"]["limit"] = json!(" 60_000 ")),
        ("a quoted hexadecimal number", |m| m["budget"]["reservation_ttl_ms"] = json!("0x927C0")),
        ("a quoted threshold", |m| {
            m["gates"] =
                json!([{ "name": "large", "when": { "field": "case.requested_amount", "greater_than": "5e3" } }]);
        }),
    ];
    for (what, variation) in cases {
        let mut varied = valid.clone();
        variation(&mut varied);
        assert_eq!(parses(&varied), Ok(()), "the parser refuses {what}");
        if let Err(e) = validator.check(&varied) {
            panic!("the schema refuses {what}: {e}");
        }
    }
}

/// A price the parser reads but validation refuses is refused by the
/// schema already (see `RawPrice`'s schema), so an editor flags it.
#[test]
fn prices_that_validation_refuses_are_refused() {
    let validator = Validator::new(missions::mission_schema());
    let (_, valid) = casework();
    for price in [json!(1.5), json!(-1), json!("cheap"), json!(true), Value::Null, json!(1_000_001)] {
        let mut broken = valid.clone();
        let models = broken["models"].as_object_mut().expect("models is a mapping");
        for model in models.values_mut() {
            model["prompt_price"] = price.clone();
        }
        assert!(validator.check(&broken).is_err(), "the schema accepts price {price}");
        assert!(parses(&broken).is_err(), "validation accepts price {price}");
    }
}

/// The limits the descriptions quote are the ones validation applies: a
/// changed constant must change its description too.
#[test]
fn descriptions_quote_the_current_limits() {
    use missions::{
        Budget, DELEGATION_CHILDREN_MAX, DELEGATION_CHILDREN_PER_TASK_DEFAULT, DELEGATION_DEPTH_DEFAULT,
        DELEGATION_DEPTH_MAX, DELEGATION_FAN_OUT_DEFAULT, DELEGATION_FAN_OUT_MAX, DELEGATION_INPUT_BYTES_DEFAULT,
        DELEGATION_INPUT_BYTES_MAX, DELEGATION_INPUT_BYTES_MIN, Decisions, MemoryLimits, ModelPrice, QUORUM_MAX,
    };
    let schema = missions::mission_schema();
    let defs = &schema["$defs"];
    let quoted: [(&Value, Vec<u64>); 12] = [
        (
            &defs["Delegation"]["properties"]["depth"],
            vec![DELEGATION_DEPTH_MAX.into(), DELEGATION_DEPTH_DEFAULT.into()],
        ),
        (
            &defs["Delegation"]["properties"]["fan_out"],
            vec![DELEGATION_FAN_OUT_MAX.into(), DELEGATION_FAN_OUT_DEFAULT.into()],
        ),
        (
            &defs["Delegation"]["properties"]["children_per_task"],
            vec![DELEGATION_CHILDREN_MAX.into(), DELEGATION_CHILDREN_PER_TASK_DEFAULT.into()],
        ),
        (
            &defs["Delegation"]["properties"]["input_bytes"],
            vec![DELEGATION_INPUT_BYTES_MIN, DELEGATION_INPUT_BYTES_MAX, DELEGATION_INPUT_BYTES_DEFAULT],
        ),
        (
            &defs["Budget"]["properties"]["reservation_ttl_ms"],
            vec![Budget::MIN_RESERVATION_TTL_MS, Budget::MAX_RESERVATION_TTL_MS, Budget::DEFAULT_RESERVATION_TTL_MS],
        ),
        (&defs["MemoryLimits"]["properties"]["facts"], vec![MemoryLimits::MAX.facts, MemoryLimits::DEFAULT.facts]),
        (&defs["MemoryLimits"]["properties"]["bytes"], vec![MemoryLimits::MAX.bytes, MemoryLimits::DEFAULT.bytes]),
        (&defs["ModelPrice"]["properties"]["prompt_price"], vec![ModelPrice::MAX_PER_TOKEN]),
        (&defs["ModelPrice"]["properties"]["completion_price"], vec![ModelPrice::MAX_PER_TOKEN]),
        (&defs["Price"], vec![ModelPrice::MAX_PER_TOKEN]),
        (&defs["Gate"]["properties"]["quorum"], vec![QUORUM_MAX.into()]),
        (&defs["Decisions"]["properties"]["outcomes"], vec![Decisions::OUTCOMES_MAX as u64]),
    ];
    for (property, numbers) in quoted {
        let description = property["description"].as_str().unwrap_or_else(|| panic!("no description in {property}"));
        for number in numbers {
            let written = number.to_string();
            let found = description.split(|c: char| !c.is_ascii_digit()).any(|word| word == written);
            assert!(found, "{description:?} does not say {number}");
        }
    }
}

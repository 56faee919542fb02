//! The JSON Schema of the mission file, generated from the raw serde types
//! (`raw`), which are the file's shape: editors (the YAML language server)
//! use it to complete and check mission files as they are written.
//!
//! The schema says what the parser accepts, field by field and type by type
//! (unknown keys are refused, as `deny_unknown_fields` refuses them; text
//! and number fields take the scalars serde-saphyr converts: see `Text`,
//! `Whole` and `Real`), so an editor never flags a file the parser reads.
//! The one place it is stricter is a price (see `RawPrice`'s schema). The
//! rules about values (name formats, ranges, references between sections,
//! the files named) are `conductor mission validate`'s; the descriptions
//! state them so an editor can show them.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use crate::ModelPrice;
use crate::raw::{RawMission, RawPrice, RawTaskGroups, RawTasks};

/// The schema's identifier. `.invalid` (RFC 2606) because the schema is
/// not served anywhere: it is printed by `conductor mission schema` and
/// committed as `missions/schema/mission.schema.json`, and editors find it
/// by the path in a file's `# yaml-language-server: $schema=` comment.
pub const MISSION_SCHEMA_ID: &str = "https://conductor.invalid/schema/mission.json";

/// The JSON Schema (draft 2020-12) of a mission file.
///
/// Print it with `conductor mission schema`; a mission file whose first
/// line is `# yaml-language-server: $schema=PATH/mission.schema.json` is
/// then checked and completed by editors using the YAML language server.
pub fn mission_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<RawMission>();
    schema.insert("$id".to_owned(), MISSION_SCHEMA_ID.into());
    // The root's title would otherwise be the type's name.
    schema.insert("title".to_owned(), "Conductor mission".into());
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    value
}

/// Joins the lines of each description that the doc comments it came from
/// were wrapped into (at 120 columns, a matter of source layout), keeping
/// blank-line paragraph breaks: editors show descriptions as flowing text.
fn unwrap_descriptions(node: &mut Value) {
    match node {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => {
                        *text = text.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Spaces, tabs and line breaks around a quoted number, which serde-saphyr
/// trims (`yaml_trim`) before reading it.
const PADDING: &str = "[ \\t\\r\\n]*";

/// A text field (`String` in `raw`). serde-saphyr reads any scalar but
/// null as text (`name: 2026`, `value: 2400`, `value: true`), so the
/// schema accepts numbers and booleans too: an editor must not flag a file
/// the parser takes.
pub(crate) struct Text;

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// A whole-number field (`u64` in `raw`): a non-negative integer, or one
/// quoted, which serde-saphyr also reads (`parse_int_unsigned`: an optional
/// `+`, decimal without leading zeros, or `0x`/`0o`/`0b`, with single `_`
/// between digits).
pub(crate) struct Whole;

impl JsonSchema for Whole {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Whole".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let pattern = format!(
            "^{PADDING}\\+?(0|[1-9](_?[0-9])*|0[xX][0-9a-fA-F](_?[0-9a-fA-F])*|0[oO][0-7](_?[0-7])*|0[bB][01](_?[01])*){PADDING}$"
        );
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": pattern }
            ]
        })
    }
}

/// A number field (`f64` in `raw`): a number, or one quoted, which
/// serde-saphyr also reads (YAML 1.2 spellings, `.inf` and `.nan`
/// included).
pub(crate) struct Real;

impl JsonSchema for Real {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Real".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let pattern = format!(
            "^{PADDING}([-+]?([0-9][0-9_]*(\\.[0-9_]*)?|\\.[0-9][0-9_]*)([eE][-+]?[0-9]+)?|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)){PADDING}$"
        );
        json_schema!({
            "anyOf": [
                { "type": "number" },
                { "type": "string", "pattern": pattern }
            ]
        })
    }
}

/// A price is read leniently (`RawPrice` takes any scalar) only so that a
/// wrong one gets a located message; what a valid file may hold is a whole
/// number within `ModelPrice::MAX_PER_TOKEN`, or such a number quoted
/// (quoted prices were accepted when prices were read as `u64`). The schema
/// says that, so an editor flags `1.5` as it is typed rather than leaving it
/// to `conductor mission validate`.
impl JsonSchema for RawPrice {
    fn schema_name() -> Cow<'static, str> {
        "Price".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "Whole budget units per token, at most {} (a quoted whole number is read as one).",
                ModelPrice::MAX_PER_TOKEN
            ),
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": ModelPrice::MAX_PER_TOKEN },
                // `str::parse::<u64>` after `trim`: an optional `+`, then digits.
                { "type": "string", "pattern": "^\\s*\\+?[0-9]+\\s*$" }
            ]
        })
    }
}

/// `tasks:` is one group (a mapping) or a list of groups: exactly the two
/// shapes `RawTaskGroups`'s visitor accepts (`visit_map`, `visit_seq`).
impl JsonSchema for RawTaskGroups {
    fn schema_name() -> Cow<'static, str> {
        "Tasks".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let group = generator.subschema_for::<RawTasks>();
        json_schema!({
            "oneOf": [
                group,
                { "type": "array", "items": group }
            ]
        })
    }
}

//! What a decision may say: the outcomes a mission allows and the types of
//! a decision's `details` fields (`decisions:` in the mission file).
//! Agents' proposals and reviewers' edits outside them are refused: an
//! outcome such as `eligble` recorded by mistake would otherwise be
//! permanent, signed and counted as a decision.

use std::collections::BTreeMap;

use missions::FieldType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A mission's rules for decisions, as copied into a gate's record when it
/// is requested (so a reviewer's edit is checked against the rules the
/// gate was raised under, even if the file changes later).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecisionRules {
    /// The outcomes a decision may have, in the mission's order; empty: any.
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// The fields a decision's `details` may carry and their types, as the
    /// mission file writes them (`string`, `integer`, `number`, `boolean`,
    /// `list`, `object`); `None`: any details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<BTreeMap<String, String>>,
}

/// Why a decision is outside its mission's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The decision is not a JSON object, or has no text `outcome`.
    #[error("the decision has no outcome; give one of: {}", .allowed.join(", "))]
    NoOutcome { allowed: Vec<String> },
    /// The outcome is not one the mission lists.
    #[error("outcome `{outcome}` is not one of this mission's outcomes: {}", .allowed.join(", "))]
    Outcome { outcome: String, allowed: Vec<String> },
    /// A field other than `outcome`, `reason` and `details`.
    #[error("a decision has `outcome`, `reason` and `details`, not `{field}`")]
    UnknownPart { field: String },
    /// `reason` is not text or `details` not an object.
    #[error("`{part}` must be {expected}, not {found}")]
    PartType { part: &'static str, expected: &'static str, found: &'static str },
    /// A `details` field the mission does not declare.
    #[error("`details.{field}` is not a field of this mission's decisions; they have: {}", .known.join(", "))]
    UnknownField { field: String, known: Vec<String> },
    /// A `details` field of the wrong type.
    #[error("`details.{field}` must be {expected} (or null), not {found}")]
    FieldType { field: String, expected: &'static str, found: &'static str },
    /// The rules name a type this conductor does not know (a record from a
    /// newer version): nothing is accepted rather than everything.
    #[error("the gate's rules give `details.{field}` the type `{type_name}`, which this conductor does not know")]
    UnknownType { field: String, type_name: String },
}

/// Longest piece of a decision quoted in an error: an agent's outcome can
/// be as long as its output, and a message is read by a person.
const QUOTED_CHARS_MAX: usize = 64;

impl DecisionRules {
    /// The rules a mission declares; `None` when it declares none (any
    /// decision then stands, as before `decisions:` existed).
    pub fn from_mission(mission: &missions::Mission) -> Option<DecisionRules> {
        let decisions = mission.decisions.as_ref()?;
        Some(DecisionRules {
            outcomes: decisions.outcomes.clone(),
            details: decisions
                .details
                .as_ref()
                .map(|types| types.iter().map(|(name, t)| (name.clone(), t.as_str().to_owned())).collect()),
        })
    }

    /// Checks a whole decision, `{"outcome", "reason", "details"}` as an
    /// agent proposes it or as a reviewer's edits leave it.
    pub fn check(&self, decision: &Value) -> Result<(), DecisionError> {
        let Some(parts) = decision.as_object() else {
            return Err(DecisionError::NoOutcome { allowed: self.outcomes.clone() });
        };
        let Some(outcome) = parts.get("outcome").and_then(Value::as_str) else {
            return Err(DecisionError::NoOutcome { allowed: self.outcomes.clone() });
        };
        if !self.outcomes.is_empty() && !self.outcomes.iter().any(|o| o == outcome) {
            return Err(DecisionError::Outcome { outcome: shown(outcome), allowed: self.outcomes.clone() });
        }
        for (part, value) in parts {
            match (part.as_str(), value) {
                ("outcome", _) | ("reason", Value::String(_)) => {}
                ("details", Value::Object(details)) => self.check_details(details)?,
                ("reason", other) => {
                    return Err(DecisionError::PartType { part: "reason", expected: "text", found: kind(other) });
                }
                ("details", other) => {
                    return Err(DecisionError::PartType { part: "details", expected: "an object", found: kind(other) });
                }
                (other, _) => return Err(DecisionError::UnknownPart { field: shown(other) }),
            }
        }
        Ok(())
    }

    fn check_details(&self, details: &Map<String, Value>) -> Result<(), DecisionError> {
        let Some(types) = &self.details else { return Ok(()) };
        for (field, value) in details {
            let Some(type_name) = types.get(field) else {
                return Err(DecisionError::UnknownField {
                    field: shown(field),
                    known: types.keys().cloned().collect(),
                });
            };
            let Some(field_type) = FieldType::parse(type_name) else {
                return Err(DecisionError::UnknownType { field: field.clone(), type_name: type_name.clone() });
            };
            if !field_type.admits(value) {
                return Err(DecisionError::FieldType {
                    field: field.clone(),
                    expected: type_phrase(field_type),
                    found: kind(value),
                });
            }
        }
        Ok(())
    }
}

/// `text` as an error quotes it: control characters escaped, cut short.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(QUOTED_CHARS_MAX).flat_map(char::escape_debug).collect();
    if text.chars().count() > QUOTED_CHARS_MAX {
        shown.push('…');
    }
    shown
}

/// How an error names what a field of this type holds.
fn type_phrase(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "text",
        FieldType::Integer => "a whole number",
        FieldType::Number => "a number",
        FieldType::Boolean => "true or false",
        FieldType::List => "a list",
        FieldType::Object => "an object",
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a whole number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> DecisionRules {
        DecisionRules {
            outcomes: vec!["eligible".into(), "ineligible".into()],
            details: Some(BTreeMap::from([("amount".into(), "integer".into()), ("note".into(), "string".into())])),
        }
    }

    #[test]
    fn decisions_inside_the_rules_pass() {
        let rules = rules();
        for decision in [
            json!({"outcome": "eligible"}),
            json!({"outcome": "ineligible", "reason": "income", "details": {"amount": 5, "note": null}}),
            json!({"outcome": "eligible", "details": {}}),
        ] {
            assert_eq!(rules.check(&decision), Ok(()), "{decision}");
        }
        // No outcomes and no details listed: any decision with an outcome.
        let open = DecisionRules::default();
        assert_eq!(open.check(&json!({"outcome": "anything", "details": {"x": [1]}})), Ok(()));
    }

    #[test]
    fn each_way_out_of_the_rules_is_named() {
        let rules = rules();
        let allowed = vec!["eligible".to_owned(), "ineligible".to_owned()];
        let table = [
            (
                json!({"outcome": "eligble"}),
                DecisionError::Outcome { outcome: "eligble".into(), allowed: allowed.clone() },
            ),
            (json!({"reason": "x"}), DecisionError::NoOutcome { allowed: allowed.clone() }),
            (json!([1]), DecisionError::NoOutcome { allowed: allowed.clone() }),
            (json!({"outcome": "eligible", "amount": 1}), DecisionError::UnknownPart { field: "amount".into() }),
            (
                json!({"outcome": "eligible", "reason": 1}),
                DecisionError::PartType { part: "reason", expected: "text", found: "a whole number" },
            ),
            (
                json!({"outcome": "eligible", "details": "x"}),
                DecisionError::PartType { part: "details", expected: "an object", found: "text" },
            ),
            (
                json!({"outcome": "eligible", "details": {"amuont": 1}}),
                DecisionError::UnknownField { field: "amuont".into(), known: vec!["amount".into(), "note".into()] },
            ),
            (
                json!({"outcome": "eligible", "details": {"amount": "lots"}}),
                DecisionError::FieldType { field: "amount".into(), expected: "a whole number", found: "text" },
            ),
            (
                json!({"outcome": "eligible", "details": {"amount": 1.5}}),
                DecisionError::FieldType {
                    field: "amount".into(),
                    expected: "a whole number",
                    found: "a fractional number",
                },
            ),
        ];
        for (decision, want) in table {
            assert_eq!(rules.check(&decision), Err(want), "{decision}");
        }
        let message = rules.check(&json!({"outcome": "eligble"})).expect_err("refused").to_string();
        assert_eq!(message, "outcome `eligble` is not one of this mission's outcomes: eligible, ineligible");
        // A type this version does not know refuses the field.
        let newer = DecisionRules { details: Some(BTreeMap::from([("at".into(), "date".into())])), ..rules };
        assert!(matches!(
            newer.check(&json!({"outcome": "eligible", "details": {"at": "2026-01-01"}})),
            Err(DecisionError::UnknownType { .. })
        ));
    }

    #[test]
    fn quoted_text_is_escaped_and_short() {
        let rules = rules();
        let long = format!("\u{1b}[31m{}", "x".repeat(500));
        let message = rules.check(&json!({"outcome": long})).expect_err("refused").to_string();
        assert!(!message.contains('\u{1b}') && message.chars().count() < 200, "{message}");
    }

    #[test]
    fn rules_round_trip_through_the_gate_record() {
        let rules = rules();
        let text = serde_json::to_string(&rules).expect("serialize");
        assert_eq!(text, r#"{"outcomes":["eligible","ineligible"],"details":{"amount":"integer","note":"string"}}"#);
        assert_eq!(serde_json::from_str::<DecisionRules>(&text).expect("deserialize"), rules);
        let older: DecisionRules = serde_json::from_str(r#"{"outcomes":["a"]}"#).expect("no details");
        assert_eq!(older.details, None);
    }
}

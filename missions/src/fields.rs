//! What fields a condition may read: those the mission's cases (or its
//! cases schema) and its decisions have. A gate on a misspelt field would
//! otherwise validate and never fire, so a large award could be decided
//! with no review; validation refuses it and suggests the nearest field.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::diagnostic::quoted;
use crate::mission::{Case, Decisions, FieldType};
use crate::schema::{CasesSchema, FIELD_PATHS_MAX};

/// How deep case fields are listed for suggestions.
const CASE_FIELD_DEPTH_MAX: usize = 8;

/// How many known fields a help line lists when none is close.
const LISTED_FIELDS_MAX: usize = 8;

/// Longest text compared for a suggestion: edit distance costs the
/// product of the lengths, and no field name is this long.
const COMPARED_CHARS_MAX: usize = 256;

/// What `case.*` fields are checked against.
pub(crate) enum CaseFields<'a> {
    /// The properties the cases schema declares.
    Schema(&'a CasesSchema),
    /// The fields of the cases loaded: a field is known if any case has it.
    Cases(&'a [Case]),
    /// Nothing to check against: no case loaded (which is reported on its own).
    Unknown,
}

impl CaseFields<'_> {
    /// Whether the case field at `keys` (after `case.`) is known.
    pub(crate) fn knows(&self, keys: &[String]) -> bool {
        match self {
            CaseFields::Schema(schema) => schema.declares(keys),
            CaseFields::Cases(cases) => cases
                .iter()
                .any(|case| keys.iter().try_fold(&case.input, |value, key| value.get(key.as_str())).is_some()),
            CaseFields::Unknown => true,
        }
    }

    /// What is wrong with `field`, which [`CaseFields::knows`] refused,
    /// read by `reader` (e.g. "gate `large-award`"), and what to do.
    pub(crate) fn unknown(&self, reader: &str, field: &str) -> (String, String) {
        match self {
            CaseFields::Schema(schema) => (
                format!("{reader} reads {}, which the cases schema does not declare", quoted(field)),
                match suggestion(field, &schema.field_paths()) {
                    Some(hint) => {
                        format!("{hint}, or declare the field under `properties` in {}", quoted(&schema.shown))
                    }
                    None => {
                        format!("declare the field under `properties` in {}, or fix the name", quoted(&schema.shown))
                    }
                },
            ),
            CaseFields::Cases(cases) => (
                format!("{reader} reads {}, which no case has", quoted(field)),
                match suggestion(field, &case_paths(cases)) {
                    Some(hint) => format!("{hint} (field names are case-sensitive)"),
                    None => format!(
                        "the cases have {}; fix the name, or give the cases a `cases_schema` that declares it",
                        listed(&case_paths(cases))
                    ),
                },
            ),
            CaseFields::Unknown => (format!("{reader} reads {}", quoted(field)), String::new()),
        }
    }
}

/// Whether a decision has the field at `keys` (after `decision.`): its
/// `outcome`, `reason`, `details`, and with typed details only the fields
/// they declare.
pub(crate) fn decision_knows(decisions: &Decisions, keys: &[String]) -> bool {
    match keys {
        [] => false,
        [top] => ["outcome", "reason", "details"].contains(&top.as_str()),
        [top, field, deeper @ ..] if top == "details" => match &decisions.details {
            None => true,
            Some(types) => match types.get(field) {
                None => false,
                // Inside an object field nothing more is declared.
                Some(FieldType::Object) => true,
                Some(_) => deeper.is_empty(),
            },
        },
        // `outcome` and `reason` are text: nothing is inside them.
        _ => false,
    }
}

/// What is wrong with the decision `field` [`decision_knows`] refused.
pub(crate) fn decision_unknown(decisions: &Decisions, reader: &str, field: &str) -> (String, String) {
    let mut paths: BTreeSet<String> =
        ["decision.outcome", "decision.reason", "decision.details"].into_iter().map(str::to_owned).collect();
    if let Some(types) = &decisions.details {
        paths.extend(types.keys().map(|name| format!("decision.details.{name}")));
    }
    let what = if decisions.details.is_some() && field.starts_with("decision.details.") {
        "which `decisions.details` does not declare"
    } else {
        "which a decision does not have"
    };
    (
        format!("{reader} reads {}, {what}", quoted(field)),
        match suggestion(field, &paths) {
            Some(hint) => hint,
            None => format!("a decision has {}", listed(&paths)),
        },
    )
}

/// Whether `value` names one of `outcomes`, and if not what to say.
pub(crate) fn unknown_outcome(outcomes: &[String], value: &Value) -> Option<(String, String)> {
    let text = match value {
        Value::String(text) if outcomes.contains(text) => return None,
        Value::String(text) => quoted(text),
        other => quoted(&other.to_string()),
    };
    let all: BTreeSet<String> = outcomes.iter().cloned().collect();
    let choices = outcomes.iter().map(|o| quoted(o)).collect::<Vec<_>>().join(", ");
    let help = match value.as_str().and_then(|t| nearest(t, all.iter().map(String::as_str))) {
        Some(near) => format!("did you mean {}? The outcomes are {choices}", quoted(near)),
        None => format!("the outcomes are {choices} (`decisions.outcomes`)"),
    };
    Some((format!("{text}, which is not one of the mission's outcomes"), help))
}

/// "did you mean `x`?" when a known path is close to `field`.
fn suggestion(field: &str, known: &BTreeSet<String>) -> Option<String> {
    nearest(field, known.iter().map(String::as_str)).map(|near| format!("did you mean {}?", quoted(near)))
}

/// Up to [`LISTED_FIELDS_MAX`] of `paths`, quoted.
fn listed(paths: &BTreeSet<String>) -> String {
    if paths.is_empty() {
        return "no fields".to_owned();
    }
    let mut shown: Vec<String> = paths.iter().take(LISTED_FIELDS_MAX).map(|p| quoted(p)).collect();
    if paths.len() > LISTED_FIELDS_MAX {
        shown.push(format!("and {} more", paths.len() - LISTED_FIELDS_MAX));
    }
    shown.join(", ")
}

/// Every field path of the cases (`case.a`, `case.a.b`), bounded.
fn case_paths(cases: &[Case]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for case in cases {
        if paths.len() >= FIELD_PATHS_MAX {
            break;
        }
        collect_paths(&case.input, "case", 0, &mut paths);
    }
    paths
}

fn collect_paths(value: &Value, prefix: &str, depth: usize, paths: &mut BTreeSet<String>) {
    let Value::Object(fields) = value else { return };
    for (name, inner) in fields {
        if depth >= CASE_FIELD_DEPTH_MAX || paths.len() >= FIELD_PATHS_MAX {
            return;
        }
        let path = format!("{prefix}.{name}");
        collect_paths(inner, &path, depth + 1, paths);
        paths.insert(path);
    }
}

/// The candidate closest to `word` by edit distance, if close enough to be
/// a likely typo: at most a quarter of the word's length (and at least 2)
/// edits. Ties go to the first candidate.
pub(crate) fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word: Vec<char> = word.chars().take(COMPARED_CHARS_MAX).collect();
    let most = (word.len() / 4).max(2);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let chars: Vec<char> = candidate.chars().collect();
        if chars.len() > COMPARED_CHARS_MAX || chars.len().abs_diff(word.len()) > most {
            continue;
        }
        let distance = edit_distance(&word, &chars);
        if distance <= most && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        let d = |a: &str, b: &str| edit_distance(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(d("", ""), 0);
        assert_eq!(d("amout", "amount"), 1);
        assert_eq!(d("amount", "amuont"), 2);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
    }

    #[test]
    fn nearest_suggests_only_close_names() {
        let known = ["case.requested_amount", "case.household_size", "case.id"];
        assert_eq!(nearest("case.requested_amout", known), Some("case.requested_amount"));
        assert_eq!(nearest("case.Household_Size", known), Some("case.household_size"));
        assert_eq!(nearest("case.colour", known), None);
        assert_eq!(nearest("eligble", ["eligible", "ineligible"]), Some("eligible"));
    }
}

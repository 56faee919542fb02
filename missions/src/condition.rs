//! Gate conditions: a field of the case or decision, and a test on its value.

use serde_json::Value;

/// A dotted path into the case (`case.a.b`) or the agent's decision
/// (`decision.outcome`, `decision.details.x`). Each key after the root
/// selects a field of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    root: Root,
    keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Case,
    Decision,
}

/// Why a field path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FieldPathError {
    #[error("field path `{0}` must start with `case.` or `decision.`")]
    Root(String),
    #[error("field path `{0}` names no field after `{1}`")]
    NoField(String, &'static str),
    #[error("field path `{0}` has an empty segment")]
    EmptySegment(String),
}

impl FieldPath {
    pub(crate) fn parse(text: &str) -> Result<FieldPath, FieldPathError> {
        let mut segments = text.split('.');
        let root = match segments.next() {
            Some("case") => Root::Case,
            Some("decision") => Root::Decision,
            _ => return Err(FieldPathError::Root(text.to_owned())),
        };
        let keys: Vec<String> = segments.map(str::to_owned).collect();
        if keys.is_empty() {
            let root_name = match root {
                Root::Case => "case",
                Root::Decision => "decision",
            };
            return Err(FieldPathError::NoField(text.to_owned(), root_name));
        }
        if keys.iter().any(String::is_empty) {
            return Err(FieldPathError::EmptySegment(text.to_owned()));
        }
        Ok(FieldPath { text: text.to_owned(), root, keys })
    }

    /// The path as written in the mission, e.g. `case.requested_amount`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path reads the case (`case.*`) rather than the decision.
    pub fn reads_case(&self) -> bool {
        self.root == Root::Case
    }

    /// The keys after the root: `["a", "b"]` for `case.a.b`.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The value at this path, or `None` where any step is missing or not
    /// an object.
    pub fn lookup<'a>(&self, case: &'a Value, decision: &'a Value) -> Option<&'a Value> {
        let start = match self.root {
            Root::Case => case,
            Root::Decision => decision,
        };
        self.keys.iter().try_fold(start, |value, key| value.get(key.as_str()))
    }
}

/// A test on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: FieldPath,
    pub test: Test,
}

/// How a field's value is tested.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    NotEquals(Value),
    /// Only JSON numbers can be greater; anything else does not match.
    GreaterThan(f64),
    /// Only JSON numbers can be less; anything else does not match.
    LessThan(f64),
    OneOf(Vec<Value>),
}

/// Why a condition could not say true or false: the data it tests is not
/// there, or not of a kind the test can compare. For a gate this is an
/// exception in its own right: the case goes to review rather than be
/// decided on a test that never ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unevaluable {
    /// A step of the path is absent (or not an object to step into).
    #[error("`{field}` is missing")]
    Missing { field: String },
    /// `greater_than` / `less_than` found a value that is not a number
    /// (`found` says what it is, e.g. "a string").
    #[error("`{field}` is {found}, not a number")]
    NotANumber { field: String, found: &'static str },
}

impl Unevaluable {
    /// The field path the condition reads, as written in the mission.
    pub fn field(&self) -> &str {
        match self {
            Unevaluable::Missing { field } | Unevaluable::NotANumber { field, .. } => field,
        }
    }
}

impl Condition {
    /// Whether the condition holds, or why it cannot be told: a missing
    /// field (`Unevaluable::Missing`, even for `not_equals`) or a
    /// comparison with something that is not a number. A gate treats
    /// both as a reason for review, never as "does not hold".
    pub fn evaluate(&self, case: &Value, decision: &Value) -> Result<bool, Unevaluable> {
        let field = || self.field.as_str().to_owned();
        let Some(actual) = self.field.lookup(case, decision) else {
            return Err(Unevaluable::Missing { field: field() });
        };
        let number = || actual.as_f64().ok_or_else(|| Unevaluable::NotANumber { field: field(), found: kind(actual) });
        Ok(match &self.test {
            Test::Equals(expected) => same(actual, expected),
            Test::NotEquals(expected) => !same(actual, expected),
            Test::GreaterThan(bound) => number()? > *bound,
            Test::LessThan(bound) => number()? < *bound,
            Test::OneOf(options) => options.iter().any(|option| same(actual, option)),
        })
    }

    /// Whether the condition holds, where anything [`Condition::evaluate`]
    /// cannot tell counts as "no". Right only where not acting is the safe
    /// side: frontier failover keeps a case on the host.
    pub fn matches(&self, case: &Value, decision: &Value) -> bool {
        self.evaluate(case, decision).unwrap_or(false)
    }
}

/// What a JSON value is, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// JSON equality, except that `5000` and `5000.0` are the same number: a
/// mission author should not need to match the case file's number style.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(field: &str, test: Test) -> Condition {
        let field = FieldPath::parse(field).expect("valid path in test");
        Condition { field, test }
    }

    #[test]
    fn parses_and_rejects_paths() {
        assert_eq!(FieldPath::parse("case.a.b").map(|p| p.as_str().to_owned()), Ok("case.a.b".to_owned()));
        assert!(FieldPath::parse("decision.outcome").is_ok());
        assert!(matches!(FieldPath::parse("outcome"), Err(FieldPathError::Root(_))));
        assert!(matches!(FieldPath::parse("cases.x"), Err(FieldPathError::Root(_))));
        assert!(matches!(FieldPath::parse(""), Err(FieldPathError::Root(_))));
        assert!(matches!(FieldPath::parse("case"), Err(FieldPathError::NoField(..))));
        assert!(matches!(FieldPath::parse("case..x"), Err(FieldPathError::EmptySegment(_))));
        assert!(matches!(FieldPath::parse("decision.x."), Err(FieldPathError::EmptySegment(_))));
    }

    #[test]
    fn looks_up_nested_fields() {
        let case = json!({"a": {"b": 7}, "list": [1]});
        let decision = json!({"outcome": "approve", "details": {"x": true}});
        let path = |p: &str| FieldPath::parse(p).expect("valid path in test");
        assert_eq!(path("case.a.b").lookup(&case, &decision), Some(&json!(7)));
        assert_eq!(path("decision.details.x").lookup(&case, &decision), Some(&json!(true)));
        assert_eq!(path("case.a.missing").lookup(&case, &decision), None);
        assert_eq!(path("case.a.b.deeper").lookup(&case, &decision), None);
        assert_eq!(path("case.list.0").lookup(&case, &decision), None);
    }

    #[test]
    fn tests_match_as_documented() {
        let case = json!({"amount": 6000, "ratio": 0.5, "name": "x"});
        let decision = json!({"outcome": "undetermined"});
        let table = [
            ("case.amount", Test::GreaterThan(5000.0), true),
            ("case.amount", Test::GreaterThan(6000.0), false),
            ("case.amount", Test::LessThan(6000.5), true),
            ("case.ratio", Test::LessThan(0.5), false),
            ("case.name", Test::GreaterThan(0.0), false),
            ("case.missing", Test::LessThan(1.0), false),
            ("decision.outcome", Test::Equals(json!("undetermined")), true),
            ("decision.outcome", Test::Equals(json!("approve")), false),
            ("decision.outcome", Test::NotEquals(json!("approve")), true),
            ("decision.missing", Test::NotEquals(json!("approve")), false),
            ("case.amount", Test::Equals(json!(6000.0)), true),
            ("case.amount", Test::Equals(json!("6000")), false),
            ("decision.outcome", Test::OneOf(vec![json!("deny"), json!("undetermined")]), true),
            ("decision.outcome", Test::OneOf(vec![json!("deny")]), false),
        ];
        for (field, test, want) in table {
            let c = condition(field, test);
            assert_eq!(c.matches(&case, &decision), want, "{c:?}");
        }
    }

    #[test]
    fn evaluation_tells_a_missing_or_non_numeric_field_from_false() {
        let case = json!({"amount": 6000, "name": "x", "nested": {"n": null}});
        let decision = json!({"outcome": "eligible"});
        let missing = |f: &str| Err(Unevaluable::Missing { field: f.to_owned() });
        let table = [
            ("case.amount", Test::GreaterThan(5000.0), Ok(true)),
            ("case.amount", Test::GreaterThan(7000.0), Ok(false)),
            ("case.requested_amout", Test::GreaterThan(5000.0), missing("case.requested_amout")),
            ("case.requested_amout", Test::NotEquals(json!(1)), missing("case.requested_amout")),
            ("case.amount.deeper", Test::Equals(json!(1)), missing("case.amount.deeper")),
            ("decision.details.x", Test::Equals(json!(1)), missing("decision.details.x")),
            (
                "case.name",
                Test::LessThan(1.0),
                Err(Unevaluable::NotANumber { field: "case.name".into(), found: "a string" }),
            ),
            (
                "case.nested.n",
                Test::GreaterThan(0.0),
                Err(Unevaluable::NotANumber { field: "case.nested.n".into(), found: "null" }),
            ),
            ("case.nested.n", Test::Equals(Value::Null), Ok(true)),
            ("decision.outcome", Test::OneOf(vec![json!("eligible")]), Ok(true)),
        ];
        for (field, test, want) in table {
            let c = condition(field, test);
            let got = c.evaluate(&case, &decision);
            assert_eq!(got, want, "{c:?}");
            if let Err(e) = &got {
                assert_eq!(e.field(), field);
                assert!(!c.matches(&case, &decision), "matches stays false where evaluate cannot tell");
            }
        }
    }
}

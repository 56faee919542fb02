//! The mission file as written: serde shapes that keep each value's source
//! location, so validation can point at the offending value.
//!
//! Only shape is checked here (types, required and unknown fields); every
//! rule about values lives in `validate`, where all problems are collected.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMission {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub budget: RawBudget,
    pub models: Spanned<BTreeMap<String, Spanned<RawModelPrice>>>,
    pub agents: Spanned<Vec<Spanned<RawAgent>>>,
    pub tasks: Spanned<RawTasks>,
    pub memory: Option<Vec<RawSeedFact>>,
    pub gates: Option<Vec<RawGate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub limit: Spanned<u64>,
    /// A string rather than an enum so that planned policies get a
    /// "not supported yet" message instead of "unknown variant".
    pub on_exhausted: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelPrice {
    pub prompt_price: u64,
    pub completion_price: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub name: Spanned<String>,
    pub module: Spanned<String>,
    pub model: Spanned<String>,
    pub limits: Option<RawLimits>,
}

/// Limits are read as `u64` even where the result is `u32`, so an oversized
/// value gets the located "at most N" message rather than a type error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory_bytes: Option<Spanned<u64>>,
    pub fuel: Option<Spanned<u64>>,
    pub wall_ms: Option<Spanned<u64>>,
    pub host_calls: Option<Spanned<u64>>,
    pub max_tokens: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    pub agent: Spanned<String>,
    pub dir: Option<Spanned<String>>,
    pub inline: Option<Spanned<Vec<Spanned<Value>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSeedFact {
    pub subject: Spanned<String>,
    pub predicate: Spanned<String>,
    pub value: String,
    pub valid_from: Spanned<String>,
    pub valid_to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGate {
    pub name: Spanned<String>,
    pub when: Spanned<RawCondition>,
}

/// Every test is optional here; validation requires exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    pub field: Spanned<String>,
    #[serde(default, deserialize_with = "present")]
    pub equals: Option<Spanned<Value>>,
    #[serde(default, deserialize_with = "present")]
    pub not_equals: Option<Spanned<Value>>,
    pub greater_than: Option<Spanned<f64>>,
    pub less_than: Option<Spanned<f64>>,
    pub one_of: Option<Spanned<Vec<Value>>>,
}

/// `Some` whenever the key is written, even as `equals: null`: plain
/// `Option` would read that as "no test" and hide the author's intent.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

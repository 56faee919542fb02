//! The mission file as written: serde shapes that keep each value's source
//! location, so validation can point at the offending value.
//!
//! Only shape is checked here (types, required and unknown fields); every
//! rule about values lives in `validate`, where all problems are collected.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
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
    pub tasks: Spanned<RawTaskGroups>,
    pub memory: Option<Vec<RawSeedFact>>,
    pub memory_limits: Option<RawMemoryLimits>,
    pub reviewer_groups: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    pub gates: Option<Vec<RawGate>>,
    pub trust: Option<RawTrust>,
    pub routing: Option<RawRouting>,
    pub decisions: Option<Spanned<RawDecisions>>,
    pub cases_schema: Option<Spanned<String>>,
    pub delegation: Option<RawDelegation>,
}

/// `delegation: { depth, fan_out, children_per_task, input_bytes }`, read
/// as `u64` so an oversized value gets the located "between" message
/// rather than a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelegation {
    pub depth: Option<Spanned<u64>>,
    pub fan_out: Option<Spanned<u64>>,
    pub children_per_task: Option<Spanned<u64>>,
    pub input_bytes: Option<Spanned<u64>>,
}

/// `decisions: { outcomes: [...], details: { field: type, ... } }`. Types
/// are strings here so an unknown one gets a located message listing the
/// choices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDecisions {
    pub outcomes: Spanned<Vec<Spanned<String>>>,
    pub details: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub failover: Option<Vec<RawFailover>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailover {
    pub when: Spanned<RawCondition>,
    pub to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrust {
    pub modules_signed_by: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub limit: Spanned<u64>,
    /// A string rather than an enum so that an unknown policy gets a
    /// located message listing the choices, reported with every other
    /// problem, instead of a parse error that stops at the first.
    pub on_exhausted: Option<Spanned<String>>,
    pub reservation_ttl_ms: Option<Spanned<u64>>,
    /// The budget gate (`on_exhausted: gate`): who may extend, and by how much.
    pub extension: Option<Spanned<RawExtension>>,
}

/// A budget gate's policy: a gate's reviewers, quorum and deadline, and
/// the amount reviewers are asked to grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtension {
    pub amount: Option<Spanned<u64>>,
    pub reviewers: Option<Vec<Spanned<String>>>,
    pub quorum: Option<Spanned<u64>>,
    pub deadline: Option<Spanned<String>>,
    pub on_timeout: Option<Spanned<String>>,
    pub escalate_to: Option<Spanned<String>>,
    pub remind_before: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelPrice {
    pub prompt_price: Spanned<RawPrice>,
    pub completion_price: Spanned<RawPrice>,
}

/// A price as written. Any scalar is accepted here, so that a fraction, a
/// negative or a missing price gets a located message saying why prices are
/// whole numbers, rather than the parser's generic type error (which would
/// also point at the enclosing mapping, not the value).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawPrice {
    Whole(u64),
    Negative(i64),
    /// Written with a fraction or exponent, or too large for `u64`.
    Fraction(f64),
    /// A string or boolean: not a number at all.
    Text(String),
    /// The key with no value (`prompt_price:`), which YAML reads as null.
    Empty,
}

impl<'de> Deserialize<'de> for RawPrice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PriceVisitor)
    }
}

struct PriceVisitor;

impl Visitor<'_> for PriceVisitor {
    type Value = RawPrice;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number of budget units per token")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPrice, E> {
        Ok(RawPrice::Whole(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPrice, E> {
        Ok(u64::try_from(v).map_or(RawPrice::Negative(v), RawPrice::Whole))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawPrice, E> {
        Ok(RawPrice::Fraction(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawPrice, E> {
        Ok(RawPrice::Text(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawPrice, E> {
        Ok(RawPrice::Empty)
    }

    /// Quoted numbers were accepted when prices were read as `u64`; they
    /// still are.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPrice, E> {
        Ok(v.trim().parse().map_or_else(|_| RawPrice::Text(v.to_owned()), RawPrice::Whole))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub name: Spanned<String>,
    pub module: Spanned<String>,
    pub model: Spanned<String>,
    /// Models the agent may call (default: just `model`).
    pub models: Option<Vec<Spanned<String>>>,
    pub limits: Option<RawLimits>,
    pub budget: Option<RawAgentBudget>,
    pub memory: Option<RawMemoryScope>,
    /// Agents of the mission this one may delegate to (default: none).
    pub delegates_to: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemoryScope {
    pub read: Option<Vec<Spanned<String>>>,
    pub write: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemoryLimits {
    pub facts: Option<Spanned<u64>>,
    pub bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgentBudget {
    pub limit: Option<Spanned<u64>>,
    pub task_limit: Option<Spanned<u64>>,
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
    pub call_arg_bytes: Option<Spanned<u64>>,
    pub output_bytes: Option<Spanned<u64>>,
}

/// `tasks:` is one group (a mapping) or a list of groups. Written as a
/// visitor rather than an untagged enum so that the spans inside each
/// group survive (an untagged enum buffers the input and loses them).
#[derive(Debug)]
pub(crate) enum RawTaskGroups {
    /// `tasks: { agent, dir | inline }`: its span is the `tasks` value's.
    One(RawTasks),
    /// `tasks: [ { agent, dir | inline }, ... ]`.
    Many(Vec<Spanned<RawTasks>>),
}

impl<'de> Deserialize<'de> for RawTaskGroups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Groups;
        impl<'de> Visitor<'de> for Groups {
            type Value = RawTaskGroups;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a task group (`agent` with `dir` or `inline`) or a list of them")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawTasks::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawTaskGroups::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<Spanned<RawTasks>>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawTaskGroups::Many)
            }
        }
        deserializer.deserialize_any(Groups)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    pub agent: Spanned<String>,
    pub dir: Option<Spanned<String>>,
    pub inline: Option<Spanned<Vec<Spanned<Value>>>>,
    /// The data tier of the group's cases (a case's `_tier` overrides).
    pub tier: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSeedFact {
    pub space: Option<Spanned<String>>,
    pub source: Option<String>,
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
    pub reviewers: Option<Vec<Spanned<String>>>,
    pub quorum: Option<Spanned<u64>>,
    pub deadline: Option<Spanned<String>>,
    pub on_timeout: Option<Spanned<String>>,
    pub escalate_to: Option<Spanned<String>>,
    pub remind_before: Option<Spanned<String>>,
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

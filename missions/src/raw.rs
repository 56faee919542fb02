//! The mission file as written: serde shapes that keep each value's source
//! location, so validation can point at the offending value.
//!
//! Only shape is checked here (types, required and unknown fields); every
//! rule about values lives in `validate`, where all problems are collected.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::json_schema::{Real, Text, Whole};

/// A conductor mission: the budget, the models agents may call and their prices, the agents, the cases to work through,
/// facts to seed memory with, and gates on decisions. `conductor mission validate FILE` checks everything this schema
/// cannot (names, ranges, references between sections, the files named).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mission")]
pub(crate) struct RawMission {
    /// The mission name: lowercase letters, digits and `-`, 1 to 64 characters.
    #[schemars(with = "Text")]
    pub name: Spanned<String>,
    /// Free text for people reading the mission.
    #[schemars(with = "Option<Text>")]
    pub description: Option<String>,
    /// The mission-wide spending limit and what happens when it is reached.
    pub budget: RawBudget,
    /// The models agents may call, each with its price per token; at least one.
    #[schemars(with = "BTreeMap<String, RawModelPrice>")]
    pub models: Spanned<BTreeMap<String, Spanned<RawModelPrice>>>,
    /// The agents; at least one, names unique.
    #[schemars(with = "Vec<RawAgent>")]
    pub agents: Spanned<Vec<Spanned<RawAgent>>>,
    /// The cases to work: one group (`agent` with `dir` or `inline`) or a list of groups, so that different queues go
    /// to different agents. Case ids are unique across groups.
    /// Optional when the mission declares `intake`: an open mission may start with no cases.
    #[schemars(with = "Option<RawTaskGroups>")]
    pub tasks: Option<Spanned<RawTaskGroups>>,
    /// Facts loaded into memory before any task runs.
    pub memory: Option<Vec<RawSeedFact>>,
    /// Bounds on how far this mission's writes may grow each memory space.
    pub memory_limits: Option<RawMemoryLimits>,
    /// Named groups of reviewer key ids (32 hex characters), for gates' `reviewers` and `escalate_to`.
    #[schemars(with = "Option<BTreeMap<String, Vec<Text>>>")]
    pub reviewer_groups: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    /// Gates: conditions on a case and its decision under which reviewers must decide.
    pub gates: Option<Vec<RawGate>>,
    /// Who must have signed the agents' modules.
    pub trust: Option<RawTrust>,
    /// Opt-in failover of model calls to frontier (off-host) models; nothing leaves the host without it.
    pub routing: Option<RawRouting>,
    /// What a decision may say; without it, any outcome and any details.
    #[schemars(with = "Option<RawDecisions>")]
    pub decisions: Option<Spanned<RawDecisions>>,
    /// A JSON Schema file every case must meet, relative to the mission file; gate `case.*` fields are checked against
    /// its properties.
    #[schemars(with = "Option<Text>")]
    pub cases_schema: Option<Spanned<String>>,
    /// Bounds on agents delegating sub-tasks to each other.
    pub delegation: Option<RawDelegation>,
    /// Cases that arrive while the mission runs (an open mission): through the API, `conductor cases add`, or a
    /// watched inbox directory. The mission stays open until an operator closes it.
    #[schemars(with = "Option<RawIntake>")]
    pub intake: Option<Spanned<RawIntake>>,
}

/// How an open mission takes cases as they arrive.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Intake")]
pub(crate) struct RawIntake {
    /// The agent that works arriving cases: one of `agents`.
    #[schemars(with = "Text")]
    pub agent: Spanned<String>,
    /// The most cases received and not yet started; past it, submissions are refused (HTTP 429 with `Retry-After`)
    /// until the queue drains. 1 to 1000000; default 10000.
    #[schemars(with = "Option<Whole>")]
    pub queue: Option<Spanned<u64>>,
    /// A directory, relative to the mission file, watched for case files (`*.json`, one JSON object each, written
    /// atomically: files starting with `.` or ending in `.tmp` or `.part` are left alone). A case's documents are the
    /// files of a directory of the same name without `.json`.
    #[schemars(with = "Option<Text>")]
    pub inbox: Option<Spanned<String>>,
    /// The data tier of arriving cases: `public`, `internal` or `restricted` (the default); a case's `_tier`
    /// overrides it.
    #[schemars(with = "Option<Text>")]
    pub tier: Option<Spanned<String>>,
    /// Bounds on the documents a case may carry.
    pub documents: Option<RawDocumentLimits>,
}

/// Bounds on the documents one case may carry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DocumentLimits")]
pub(crate) struct RawDocumentLimits {
    /// Documents per case: 0 to 256; default 16.
    #[schemars(with = "Option<Whole>")]
    pub count: Option<Spanned<u64>>,
    /// Bytes per document: 1 to 67108864 (64 MiB); default 8388608 (8 MiB).
    #[schemars(with = "Option<Whole>")]
    pub bytes: Option<Spanned<u64>>,
    /// The media types accepted; default `application/pdf`, `text/plain`, `text/csv`, `application/json`,
    /// `image/png` and `image/jpeg`.
    #[schemars(with = "Option<Vec<Text>>")]
    pub types: Option<Vec<Spanned<String>>>,
}

// `delegation: { depth, fan_out, children_per_task, input_bytes }`, read
// as `u64` so an oversized value gets the located "between" message
// rather than a type error.
/// Bounds on agents delegating sub-tasks to each other; any field left out takes its default. Which agent may delegate
/// to which is each agent's `delegates_to`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Delegation")]
pub(crate) struct RawDelegation {
    /// How deep a tree of delegations may grow: entry tasks are depth 0, their children 1, and so on. 1 to 16; default
    /// 4.
    #[schemars(with = "Option<Whole>")]
    pub depth: Option<Spanned<u64>>,
    /// Requests in one `delegate` call: 1 to 4096, at most `children_per_task`; default 64.
    #[schemars(with = "Option<Whole>")]
    pub fan_out: Option<Spanned<u64>>,
    /// Children one task may start in all its calls together: 1 to 100000; default 256.
    #[schemars(with = "Option<Whole>")]
    pub children_per_task: Option<Spanned<u64>>,
    /// The largest input (bytes of JSON text) one child may be given: 2 to 1048576; default 65536.
    #[schemars(with = "Option<Whole>")]
    pub input_bytes: Option<Spanned<u64>>,
}

// `decisions: { outcomes: [...], details: { field: type, ... } }`. Types
// are strings here so an unknown one gets a located message listing the
// choices.
/// What a decision may say: the outcomes an agent may propose and a reviewer may record, and the types of the
/// decision's `details` fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Decisions")]
pub(crate) struct RawDecisions {
    /// The outcomes a decision may have: at least one, unique, at most 64; never `rejected` or `timed_out`, which the
    /// conductor records itself.
    #[schemars(with = "Vec<Text>")]
    pub outcomes: Spanned<Vec<Spanned<String>>>,
    /// The fields a decision's `details` may carry, each with its type: `string`, `integer`, `number`, `boolean`,
    /// `list` or `object`. Without it, any details.
    #[schemars(with = "Option<BTreeMap<String, Text>>")]
    pub details: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// Where a mission's model calls go besides its agents' own models.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Routing")]
pub(crate) struct RawRouting {
    /// Failover rules, per kind of case.
    pub failover: Option<Vec<RawFailover>>,
}

/// One failover rule: a case matching `when` has its agent's model calls sent to the frontier model `to` instead.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Failover")]
pub(crate) struct RawFailover {
    /// The cases this rule applies to.
    #[schemars(with = "RawCondition")]
    pub when: Spanned<RawCondition>,
    /// A key of `models` that the model registry names as a frontier model.
    #[schemars(with = "Text")]
    pub to: Spanned<String>,
}

/// Module trust: who must have signed the agents' modules.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Trust")]
pub(crate) struct RawTrust {
    /// Ed25519 public keys (64 hex characters each); with any listed, every agent's module must carry a valid detached
    /// signature (`<module>.sig`) by one of them.
    #[schemars(with = "Option<Vec<Text>>")]
    pub modules_signed_by: Option<Vec<Spanned<String>>>,
}

/// How much the whole mission may spend, in budget units, and what happens when it runs out.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Budget")]
pub(crate) struct RawBudget {
    /// The mission-wide spending limit in budget units; greater than zero.
    #[schemars(with = "Whole")]
    pub limit: Spanned<u64>,
    // A string rather than an enum so that an unknown policy gets a
    // located message listing the choices, reported with every other
    // problem, instead of a parse error that stops at the first.
    /// What happens when the budget runs out: `stop` (the default), `pause` or `gate` (wait for a reviewer to extend
    /// it).
    #[schemars(with = "Option<Text>")]
    pub on_exhausted: Option<Spanned<String>>,
    /// How long a reservation against the budget may stay pending before its funds return, in milliseconds: 1000 to
    /// 86400000; default 600000 (ten minutes).
    #[schemars(with = "Option<Whole>")]
    pub reservation_ttl_ms: Option<Spanned<u64>>,
    /// With `on_exhausted: gate`: who may extend the budget, and by how much.
    #[schemars(with = "Option<RawExtension>")]
    pub extension: Option<Spanned<RawExtension>>,
}

/// The budget gate (`on_exhausted: gate`): who may extend the budget, and by how much. Approving it is a
/// reviewer-signed extension, after which the mission resumes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Extension")]
pub(crate) struct RawExtension {
    /// Budget units asked for; reviewers may grant another amount. Default: the mission's `limit`.
    #[schemars(with = "Option<Whole>")]
    pub amount: Option<Spanned<u64>>,
    /// Who may approve: reviewer key ids or `reviewer_groups` names. Default: any registered reviewer.
    #[schemars(with = "Option<Vec<Text>>")]
    pub reviewers: Option<Vec<Spanned<String>>>,
    /// How many distinct reviewers must approve; at least 1. Default 1.
    #[schemars(with = "Option<Whole>")]
    pub quorum: Option<Spanned<u64>>,
    /// How long reviewers have. A duration: a whole number and a unit (`90s`, `30m`, `48h` or `7d`), at most a year.
    /// Default: no limit.
    #[schemars(with = "Option<Text>")]
    pub deadline: Option<Spanned<String>>,
    /// What happens at the deadline: `deny` (the default) or `escalate` (`approve` is refused for an extension).
    #[schemars(with = "Option<Text>")]
    pub on_timeout: Option<Spanned<String>>,
    /// With `on_timeout: escalate`: the `reviewer_groups` name the gate passes to.
    #[schemars(with = "Option<Text>")]
    pub escalate_to: Option<Spanned<String>>,
    /// A reminder this long before the deadline. A duration: a whole number and a unit (`90s`, `30m`, `48h` or `7d`),
    /// at most a year.
    #[schemars(with = "Option<Text>")]
    pub remind_before: Option<Spanned<String>>,
}

/// Whole budget units charged per token; not both zero.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ModelPrice")]
pub(crate) struct RawModelPrice {
    /// Budget units per prompt token: a whole number up to 1000000.
    #[schemars(with = "RawPrice")]
    pub prompt_price: Spanned<RawPrice>,
    /// Budget units per completion token: a whole number up to 1000000.
    #[schemars(with = "RawPrice")]
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

/// An agent: a wasm module and the model and limits it runs with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Agent")]
pub(crate) struct RawAgent {
    /// The agent name, unique within the mission: lowercase letters, digits and `-`, 1 to 64 characters.
    #[schemars(with = "Text")]
    pub name: Spanned<String>,
    /// The agent's wasm component, relative to the mission file.
    #[schemars(with = "Text")]
    pub module: Spanned<String>,
    /// The model the agent calls: a key of `models`.
    #[schemars(with = "Text")]
    pub model: Spanned<String>,
    /// Further models the agent may call, each a key of `models`. Default: just `model`.
    #[schemars(with = "Option<Vec<Text>>")]
    pub models: Option<Vec<Spanned<String>>>,
    /// Per-task resource limits for the agent's cell.
    pub limits: Option<RawLimits>,
    /// Spending caps for this agent within the mission budget.
    pub budget: Option<RawAgentBudget>,
    /// Which memory spaces the agent may read and write. Default: its own mission's.
    pub memory: Option<RawMemoryScope>,
    /// Agents of this mission this one may delegate sub-tasks to (itself included). Default: none, it may not delegate.
    #[schemars(with = "Option<Vec<Text>>")]
    pub delegates_to: Option<Vec<Spanned<String>>>,
}

/// Which memory spaces the agent may read and write: `mission` (the mission's own space) or a shared space's name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MemoryScope")]
pub(crate) struct RawMemoryScope {
    /// Spaces the agent may recall from. Default: its own mission's (`mission`).
    #[schemars(with = "Option<Vec<Text>>")]
    pub read: Option<Vec<Spanned<String>>>,
    /// The one space its `remember` writes to, or `none`. Default: its own mission's (`mission`).
    #[schemars(with = "Option<Text>")]
    pub write: Option<Spanned<String>>,
}

/// How far this mission's writes may grow each memory space (history included); any field left out takes its default.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MemoryLimits")]
pub(crate) struct RawMemoryLimits {
    /// Fact versions per space: at most 4194304; default 100000.
    #[schemars(with = "Option<Whole>")]
    pub facts: Option<Spanned<u64>>,
    /// Bytes of values, sources and names per space: at most 1073741824; default 67108864.
    #[schemars(with = "Option<Whole>")]
    pub bytes: Option<Spanned<u64>>,
}

/// Spending caps for one agent within the mission budget, in budget units; each at most the mission's `budget.limit`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AgentBudget")]
pub(crate) struct RawAgentBudget {
    /// What all of the agent's tasks together may spend.
    #[schemars(with = "Option<Whole>")]
    pub limit: Option<Spanned<u64>>,
    /// What any one of the agent's tasks may spend; at most `limit`.
    #[schemars(with = "Option<Whole>")]
    pub task_limit: Option<Spanned<u64>>,
}

// Limits are read as `u64` even where the result is `u32`, so an oversized
// value gets the located "at most N" message rather than a type error.
/// Per-task resource limits for the agent's cell; each greater than zero, and any field left out takes its default.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(crate) struct RawLimits {
    /// Linear memory the cell may grow to, in bytes.
    #[schemars(with = "Option<Whole>")]
    pub memory_bytes: Option<Spanned<u64>>,
    /// Wasm fuel per task (roughly, instructions executed).
    #[schemars(with = "Option<Whole>")]
    pub fuel: Option<Spanned<u64>>,
    /// Wall-clock time per task, in milliseconds.
    #[schemars(with = "Option<Whole>")]
    pub wall_ms: Option<Spanned<u64>>,
    /// Calls from the cell into the host (model, memory, ...) per task.
    #[schemars(with = "Option<Whole>")]
    pub host_calls: Option<Spanned<u64>>,
    /// Completion tokens per model call.
    #[schemars(with = "Option<Whole>")]
    pub max_tokens: Option<Spanned<u64>>,
    /// Bytes of all arguments of one host call together.
    #[schemars(with = "Option<Whole>")]
    pub call_arg_bytes: Option<Spanned<u64>>,
    /// Bytes of the decision the agent returns.
    #[schemars(with = "Option<Whole>")]
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

/// A group of cases worked by one agent: `agent` with `dir` or `inline` (exactly one of the two).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TaskGroup")]
pub(crate) struct RawTasks {
    /// The agent that works these cases: one of `agents`.
    #[schemars(with = "Text")]
    pub agent: Spanned<String>,
    /// A directory of case files (`*.json`, one JSON object each), relative to the mission file.
    #[schemars(with = "Option<Text>")]
    pub dir: Option<Spanned<String>>,
    /// The cases themselves: a list of mappings, each one case.
    #[schemars(with = "Option<Vec<Value>>")]
    pub inline: Option<Spanned<Vec<Spanned<Value>>>>,
    /// The data tier of the group's cases: `public`, `internal` or `restricted` (the default); a case's `_tier`
    /// overrides it.
    #[schemars(with = "Option<Text>")]
    pub tier: Option<Spanned<String>>,
}

/// A fact in memory before the mission starts, valid from `valid_from` until `valid_to`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SeedFact")]
pub(crate) struct RawSeedFact {
    /// The memory space: `mission` (the default, the mission's own) or a shared space's name.
    #[schemars(with = "Option<Text>")]
    pub space: Option<Spanned<String>>,
    /// Where the fact comes from (a document, a decision).
    #[schemars(with = "Option<Text>")]
    pub source: Option<String>,
    /// What the fact is about; not empty.
    #[schemars(with = "Text")]
    pub subject: Spanned<String>,
    /// Which property of the subject; not empty.
    #[schemars(with = "Text")]
    pub predicate: Spanned<String>,
    /// The value, as text.
    #[schemars(with = "Text")]
    pub value: String,
    /// When the fact starts to hold: an RFC 3339 timestamp (`2026-01-01T00:00:00Z`).
    #[schemars(with = "Text")]
    pub valid_from: Spanned<String>,
    /// When it stops holding: an RFC 3339 timestamp after `valid_from`. Default: still valid.
    #[schemars(with = "Option<Text>")]
    pub valid_to: Option<Spanned<String>>,
}

/// A named condition on a case and the agent's decision; a case that matches waits for reviewers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Gate")]
pub(crate) struct RawGate {
    /// The gate name: lowercase letters, digits and `-`, 1 to 64 characters.
    #[schemars(with = "Text")]
    pub name: Spanned<String>,
    /// The condition on the case or the decision under which the gate applies.
    #[schemars(with = "RawCondition")]
    pub when: Spanned<RawCondition>,
    /// Who may decide: reviewer key ids or `reviewer_groups` names. Default: any registered reviewer.
    #[schemars(with = "Option<Vec<Text>>")]
    pub reviewers: Option<Vec<Spanned<String>>>,
    /// How many distinct reviewers must approve (one rejection decides): 1 to 16, at most the number of reviewers
    /// listed. Default 1.
    #[schemars(with = "Option<Whole>")]
    pub quorum: Option<Spanned<u64>>,
    /// How long reviewers have. A duration: a whole number and a unit (`90s`, `30m`, `48h` or `7d`), at most a year.
    /// Default: no limit.
    #[schemars(with = "Option<Text>")]
    pub deadline: Option<Spanned<String>>,
    /// What happens at the deadline: `deny` (the default: the case is decided `timed_out`), `approve` (the proposal
    /// stands) or `escalate`.
    #[schemars(with = "Option<Text>")]
    pub on_timeout: Option<Spanned<String>>,
    /// With `on_timeout: escalate`: the `reviewer_groups` name the gate passes to, with a fresh deadline.
    #[schemars(with = "Option<Text>")]
    pub escalate_to: Option<Spanned<String>>,
    /// A reminder this long before the deadline. A duration: a whole number and a unit (`90s`, `30m`, `48h` or `7d`),
    /// at most a year.
    #[schemars(with = "Option<Text>")]
    pub remind_before: Option<Spanned<String>>,
}

// Every test is optional here; validation requires exactly one.
/// A test on one field: `field` and exactly one of `equals`, `not_equals`, `greater_than`, `less_than` or `one_of`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Condition")]
pub(crate) struct RawCondition {
    /// The field tested: `case.NAME` (a field of the case) or `decision.NAME` (a field of the decision), dotted for
    /// nested fields.
    #[schemars(with = "Text")]
    pub field: Spanned<String>,
    /// True when the field equals this value.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub equals: Option<Spanned<Value>>,
    /// True when the field does not equal this value.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub not_equals: Option<Spanned<Value>>,
    /// True when the field is a number greater than this.
    #[schemars(with = "Option<Real>")]
    pub greater_than: Option<Spanned<f64>>,
    /// True when the field is a number less than this.
    #[schemars(with = "Option<Real>")]
    pub less_than: Option<Spanned<f64>>,
    /// True when the field equals one of these values.
    #[schemars(with = "Option<Vec<Value>>")]
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

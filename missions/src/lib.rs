//! Mission files: what a conductor run does, parsed and checked up front.
//!
//! A mission is a YAML file naming a budget, the models agents may call and
//! their prices, the agents (wasm modules with resource limits), the cases
//! to work through, facts to seed memory with, and gates on decisions:
//!
//! ```yaml
//! name: eligibility-casework
//! budget:
//!   limit: 60000
//!   on_exhausted: stop                # the default; or pause, or gate
//!   reservation_ttl_ms: 600000        # the default: 10 minutes
//! models:                             # whole budget units per token
//!   smollm2-135m: { prompt_price: 1, completion_price: 2 }
//! agents:
//!   - name: eligibility
//!     module: agent/eligibility.wasm  # relative to the mission file
//!     model: smollm2-135m
//!     limits: { max_tokens: 96 }      # any field left out uses Limits::DEFAULT
//!     budget: { limit: 30000, task_limit: 2000 }  # optional caps
//!     delegates_to: [eligibility]     # optional: agents it may hand sub-tasks to
//! tasks:
//!   agent: eligibility
//!   dir: cases                        # *.json case files; or `inline:` a list of mappings
//!                                     # (or a list of such groups, one agent each)
//! memory:
//!   - { subject: "policy:housing-support", predicate: income-limit-monthly,
//!       value: "2400", valid_from: 2026-01-01T00:00:00Z }
//! cases_schema: cases.schema.json    # optional: a JSON Schema every case must meet
//! gates:
//!   - name: large-award
//!     when: { field: case.requested_amount, greater_than: 5000 }
//! decisions:                          # optional: what a decision may say
//!   outcomes: [eligible, ineligible, undetermined]
//!   details: { requested_amount: integer, eligible_by_rule: boolean }
//! delegation:                         # optional; any field left out uses Delegation::DEFAULT
//!   depth: 4                          # entry tasks are depth 0, their children 1, ...
//!   fan_out: 64                       # requests in one `delegate` call
//!   children_per_task: 256            # children one task may start in all
//!   input_bytes: 65536                # largest JSON input one child may be given
//! ```
//!
//! An agent may delegate only to the agents its `delegates_to` lists
//! (itself included: `delegation.depth` bounds the recursion); without
//! it, the agent may not delegate.
//!
//! A condition's `case.*` field must be one the cases have (or, with
//! `cases_schema`, one the schema declares), and with `decisions` a
//! `decision.*` field one a decision has: a misspelt field would otherwise
//! make a gate that never fires. At run time [`Condition::evaluate`] tells
//! a field missing from a case from a test that is false.
//!
//! Files are read as regular files only, each within a named limit
//! ([`MISSION_FILE_BYTES_MAX`], [`MAX_CASE_FILE_BYTES`],
//! [`CASES_SCHEMA_FILE_BYTES_MAX`]); [`Diagnostics::without_source_text`]
//! gives problems without the file text they would quote, for a caller
//! who may not read the file.
//!
//! [`mission_schema`] is the file's JSON Schema, generated from the same
//! serde types the parser reads; editors using the YAML language server
//! check and complete mission files against it (the examples name the
//! committed copy, `missions/schema/mission.schema.json`, in their first
//! line).
//!
//! [`load`] and [`parse`] either return a fully validated [`Mission`] or
//! [`Diagnostics`] listing every problem found, each as
//! `file:line:column: error: ...` with a `help:` line. A YAML syntax or
//! shape error (wrong type, unknown or missing field) stops parsing, so it
//! is reported alone; once the file has the right shape, every broken rule
//! about its values is reported together.

mod cases;
mod condition;
mod diagnostic;
mod fields;
mod json_schema;
mod load;
mod mission;
mod raw;
mod read;
mod schema;
mod time;
mod validate;

#[cfg(test)]
mod tests;

pub use condition::{Condition, FieldPath, Test, Unevaluable};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use json_schema::{MISSION_SCHEMA_ID, mission_schema};
pub use load::{load, parse};
#[allow(deprecated)]
pub use mission::ExhaustionPolicy;
pub use mission::{
    Agent, AgentBudget, Budget, CASES_SCHEMA_FILE_BYTES_MAX, Case, DELEGATION_CHILDREN_MAX,
    DELEGATION_CHILDREN_PER_TASK_DEFAULT, DELEGATION_DEPTH_DEFAULT, DELEGATION_DEPTH_MAX, DELEGATION_FAN_OUT_DEFAULT,
    DELEGATION_FAN_OUT_MAX, DELEGATION_INPUT_BYTES_DEFAULT, DELEGATION_INPUT_BYTES_MAX, DELEGATION_INPUT_BYTES_MIN,
    DOCUMENT_BYTES_DEFAULT, DOCUMENT_BYTES_MAX, DOCUMENT_TYPES_DEFAULT, DOCUMENTS_PER_CASE_DEFAULT,
    DOCUMENTS_PER_CASE_MAX, DataTier, Deadline, Decisions, Delegation, DocumentLimits, Extension, Failover, FieldType,
    Gate, INTAKE_QUEUE_DEFAULT, INTAKE_QUEUE_MAX, Intake, Limits, MAX_CASE_FILE_BYTES, MAX_CASES,
    MISSION_FILE_BYTES_MAX, MemoryLimits, MemoryScope, Mission, ModelPrice, OWN_SPACE, OnExhausted, OnTimeout,
    QUORUM_MAX, Routing, SeedFact, TaskSource, Trust,
};

/// Parses an RFC 3339 timestamp (`2026-01-01T00:00:00Z`) into Unix
/// microseconds, as mission files are read; the error says what is wrong.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    time::parse_rfc3339(text).map_err(|e| e.to_string())
}

/// Unix microseconds as an RFC 3339 UTC timestamp that
/// [`parse_timestamp`] reads back exactly.
pub fn format_timestamp(micros: i64) -> String {
    time::format_rfc3339(micros)
}

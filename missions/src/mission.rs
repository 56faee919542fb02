//! The validated mission: plain data, every invariant already checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::condition::Condition;

/// Most cases one mission may hold. A queue larger than this is better split
/// into several missions, each with its own budget and audit trail.
pub const MAX_CASES: usize = 100_000;

/// Largest case file read from a task directory. A case is one applicant's
/// record, not a document store; the cap keeps a stray large file from
/// being loaded into memory and prompts.
pub const MAX_CASE_FILE_BYTES: u64 = 1024 * 1024;

/// A validated mission.
#[derive(Debug, Clone, PartialEq)]
pub struct Mission {
    /// Lowercase letters, digits and `-`, 1 to 64 characters.
    pub name: String,
    pub description: Option<String>,
    pub budget: Budget,
    /// Model name to price; at least one.
    pub models: BTreeMap<String, ModelPrice>,
    /// At least one; names are unique.
    pub agents: Vec<Agent>,
    pub tasks: TaskSource,
    /// Facts loaded into memory before any task runs.
    pub memory: Vec<SeedFact>,
    pub gates: Vec<Gate>,
}

/// How much the whole mission may spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Greater than zero, in budget units (see [`ModelPrice`]).
    pub limit: u64,
    pub on_exhausted: ExhaustionPolicy,
}

/// What happens when the budget runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExhaustionPolicy {
    /// Stop starting tasks; tasks already running finish or are cut off by
    /// their own limits.
    #[default]
    Stop,
}

/// Budget units charged per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub prompt_price: u64,
    pub completion_price: u64,
}

/// An agent: a wasm module and the model and limits it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Unique within the mission; same format as the mission name.
    pub name: String,
    /// Resolved against the mission file's directory; the file exists.
    pub module: PathBuf,
    /// A key of [`Mission::models`].
    pub model: String,
    pub limits: Limits,
}

/// Per-task resource limits for an agent's cell. Every limit is greater
/// than zero and at most the matching field of [`Limits::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the cell may grow to.
    pub memory_bytes: u64,
    /// Wasm fuel (roughly, instructions executed).
    pub fuel: u64,
    /// Wall-clock time per task, in milliseconds.
    pub wall_ms: u64,
    /// Calls from the cell into the host (model, memory, ...) per task.
    pub host_calls: u32,
    /// Completion tokens per model call.
    pub max_tokens: u32,
}

impl Limits {
    /// Limits used for any field a mission leaves out.
    pub const DEFAULT: Limits = Limits {
        // Small agents need a few MiB of heap plus their JSON; 64 MiB leaves
        // headroom while letting many cells run side by side.
        memory_bytes: 64 * 1024 * 1024,
        // A few seconds of CPU on current hardware: ample for prompt
        // building and parsing, small enough to stop a runaway loop early.
        fuel: 5_000_000_000,
        // Two minutes covers several local model calls on a CPU.
        wall_ms: 120_000,
        // A task reads a few facts and calls the model a few times; 64
        // calls is generous without allowing a chatty loop.
        host_calls: 64,
        // Decisions are short structured answers, not essays.
        max_tokens: 128,
    };

    /// Upper bounds, so a typo (an extra zero or three) is caught before it
    /// lets one task monopolise the machine.
    pub const MAX: Limits = Limits {
        // Wasm32 linear memory cannot exceed 4 GiB.
        memory_bytes: 4 * 1024 * 1024 * 1024,
        // Hundreds of times the default: long enough for any real task.
        fuel: 1_000_000_000_000,
        // One day; anything longer is a stuck task, not a slow one.
        wall_ms: 24 * 60 * 60 * 1000,
        host_calls: 100_000,
        // Beyond the context window of the models the conductor runs.
        max_tokens: 32_768,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The cases one agent works through.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSource {
    /// The name of one of [`Mission::agents`].
    pub agent: String,
    /// At least one, at most [`MAX_CASES`]; ids are unique.
    pub cases: Vec<Case>,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's `"id"` string, else the file stem (directory cases) or
    /// `case-N`, 1-based (inline cases).
    pub id: String,
    /// Always a JSON object.
    pub input: serde_json::Value,
    /// Where the case came from: the case file's path, or
    /// `mission-file:LINE` for an inline case.
    pub origin: String,
}

/// A fact in memory before the mission starts, valid over `[valid_from, valid_to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFact {
    /// Not empty.
    pub subject: String,
    /// Not empty.
    pub predicate: String,
    pub value: String,
    /// Unix microseconds.
    pub valid_from: i64,
    /// Unix microseconds, after `valid_from`; `None` means still valid.
    pub valid_to: Option<i64>,
}

/// A named condition on a case and the agent's decision for it; what a
/// matching gate does is the conductor's business.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    pub when: Condition,
}

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

/// Largest mission file read. A mission is configuration plus, at most, a
/// queue of inline cases; 8 MiB holds tens of thousands of them (a larger
/// queue belongs in a case directory). The YAML parser builds structures
/// several times the text's size, so the text itself must be bounded: a
/// path such as `/dev/zero` would otherwise be read until memory runs out.
pub const MISSION_FILE_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Largest `cases_schema` file read. A JSON Schema for one kind of case is
/// a few kilobytes; 1 MiB, like a case file, leaves room for a generated
/// one while bounding what one mistaken path can load.
pub const CASES_SCHEMA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// A validated mission.
#[derive(Debug, Clone, PartialEq)]
pub struct Mission {
    /// Lowercase letters, digits and `-`, 1 to 64 characters.
    pub name: String,
    pub description: Option<String>,
    /// The mission-wide spending limit, what happens when it is reached,
    /// and how long a reservation against it may stay pending.
    pub budget: Budget,
    /// Model name to price; at least one.
    pub models: BTreeMap<String, ModelPrice>,
    /// At least one; names are unique. Each agent's [`AgentBudget`] caps
    /// are within [`Budget::limit`].
    pub agents: Vec<Agent>,
    pub tasks: TaskSource,
    /// Facts loaded into memory before any task runs.
    pub memory: Vec<SeedFact>,
    /// How far this mission's writes may grow each memory space.
    pub memory_limits: MemoryLimits,
    /// Named groups of reviewer key ids, for gates' `reviewers`.
    pub reviewer_groups: BTreeMap<String, Vec<String>>,
    pub gates: Vec<Gate>,
    /// Who must have signed the agents' modules.
    pub trust: Trust,
    /// Opt-in frontier failover; empty by default.
    pub routing: Routing,
    /// What a decision may say (`decisions:`): the outcomes an agent may
    /// propose and a reviewer may record, and the types of the decision's
    /// `details`. `None`: any outcome, any details (as before it existed).
    pub decisions: Option<Decisions>,
    /// The JSON Schema every case was checked against when the mission was
    /// loaded (`cases_schema:`), resolved against the mission file's
    /// directory; gate fields were checked against its properties.
    pub cases_schema: Option<PathBuf>,
    /// Bounds on agents delegating sub-tasks to each other (`delegation:`);
    /// [`Delegation::DEFAULT`] when the file gives none. Which agent may
    /// delegate to which is each agent's [`Agent::delegates_to`].
    pub delegation: Delegation,
    /// Cases that arrive while the mission runs (`intake:`); `None`: the
    /// mission works its `tasks` and ends.
    pub intake: Option<Intake>,
}

/// Default [`Intake::queue`]: minutes of work at the rates one host runs,
/// small enough that a stalled mission pushes back on its callers soon.
pub const INTAKE_QUEUE_DEFAULT: u32 = 10_000;
/// Largest [`Intake::queue`]: each queued case is a task record and a
/// journal entry held until it starts.
pub const INTAKE_QUEUE_MAX: u32 = 1_000_000;
/// Default [`DocumentLimits::count`].
pub const DOCUMENTS_PER_CASE_DEFAULT: u32 = 16;
/// Largest [`DocumentLimits::count`].
pub const DOCUMENTS_PER_CASE_MAX: u32 = 256;
/// Default [`DocumentLimits::bytes`]: a scanned form or a long PDF.
pub const DOCUMENT_BYTES_DEFAULT: u64 = 8 << 20;
/// Largest [`DocumentLimits::bytes`]: a document is read whole into
/// memory when it is stored and hashed.
pub const DOCUMENT_BYTES_MAX: u64 = 64 << 20;
/// The media types a case's documents may have unless the mission lists
/// its own: documents people send in casework, nothing executable.
pub const DOCUMENT_TYPES_DEFAULT: [&str; 6] =
    ["application/pdf", "text/plain", "text/csv", "application/json", "image/png", "image/jpeg"];

/// How an open mission takes cases as they arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// The agent that works arriving cases.
    pub agent: String,
    /// The most cases received and not yet started.
    pub queue: u32,
    /// A watched inbox directory (resolved against the mission file's).
    pub inbox: Option<PathBuf>,
    /// The tier of arriving cases without a `_tier` of their own.
    pub tier: DataTier,
    pub documents: DocumentLimits,
}

/// Bounds on one case's documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Documents per case, at most [`DOCUMENTS_PER_CASE_MAX`].
    pub count: u32,
    /// Bytes per document, 1 to [`DOCUMENT_BYTES_MAX`].
    pub bytes: u64,
    /// Accepted media types (lowercase `type/subtype`).
    pub types: Vec<String>,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            count: DOCUMENTS_PER_CASE_DEFAULT,
            bytes: DOCUMENT_BYTES_DEFAULT,
            types: DOCUMENT_TYPES_DEFAULT.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

/// Default [`Delegation::depth`]: an entry task, its children and three
/// more levels, enough for a coordinator, specialists and their helpers.
pub const DELEGATION_DEPTH_DEFAULT: u32 = 4;
/// Most [`Delegation::depth`]: every level parks a parent task and holds a
/// child account, so a deeper tree is a runaway recursion, not a design.
pub const DELEGATION_DEPTH_MAX: u32 = 16;
/// Default [`Delegation::fan_out`]: a batch of sub-tasks one agent can
/// reasonably hand out and read back in one call.
pub const DELEGATION_FAN_OUT_DEFAULT: u32 = 64;
/// Most [`Delegation::fan_out`]: one call's results come back together in
/// one `task.joined` entry and one host-call answer, which must stay bounded.
pub const DELEGATION_FAN_OUT_MAX: u32 = 4096;
/// Default [`Delegation::children_per_task`]: four full default fan-outs.
pub const DELEGATION_CHILDREN_PER_TASK_DEFAULT: u32 = 256;
/// Most [`Delegation::children_per_task`]: as many tasks as a whole
/// mission may hold ([`MAX_CASES`]), so one task cannot outgrow a mission.
pub const DELEGATION_CHILDREN_MAX: u32 = 100_000;
/// Default [`Delegation::input_bytes`]: the default [`Limits::call_arg_bytes`],
/// so a child's input is the size of one ordinary host call's arguments.
pub const DELEGATION_INPUT_BYTES_DEFAULT: u64 = 64 * 1024;
/// Fewest [`Delegation::input_bytes`]: `{}`, the smallest JSON object.
pub const DELEGATION_INPUT_BYTES_MIN: u64 = 2;
/// Most [`Delegation::input_bytes`]: a child's input is a case, and a case
/// file may hold at most [`MAX_CASE_FILE_BYTES`].
pub const DELEGATION_INPUT_BYTES_MAX: u64 = MAX_CASE_FILE_BYTES;

/// How far delegation may go in a mission: limits checked when an agent
/// calls `delegate`, before anything runs. Every field is at least 1 (at
/// least [`DELEGATION_INPUT_BYTES_MIN`] for `input_bytes`) and at most its
/// maximum, and `fan_out` is at most `children_per_task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delegation {
    /// How deep a tree of delegations may grow: entry tasks are depth 0,
    /// their children 1, and so on; a task at depth `depth` may not
    /// delegate. At most [`DELEGATION_DEPTH_MAX`].
    pub depth: u32,
    /// Requests in one `delegate` call. At most [`DELEGATION_FAN_OUT_MAX`].
    pub fan_out: u32,
    /// Children one task may start in all its calls together. At most
    /// [`DELEGATION_CHILDREN_MAX`].
    pub children_per_task: u32,
    /// The largest input (bytes of JSON text) one child may be given. At
    /// most [`DELEGATION_INPUT_BYTES_MAX`].
    pub input_bytes: u64,
}

impl Delegation {
    /// The limits used for any field a mission leaves out.
    pub const DEFAULT: Delegation = Delegation {
        depth: DELEGATION_DEPTH_DEFAULT,
        fan_out: DELEGATION_FAN_OUT_DEFAULT,
        children_per_task: DELEGATION_CHILDREN_PER_TASK_DEFAULT,
        input_bytes: DELEGATION_INPUT_BYTES_DEFAULT,
    };
}

impl Default for Delegation {
    fn default() -> Self {
        Delegation::DEFAULT
    }
}

/// The allowed decisions of a mission. A decision is `{outcome, reason,
/// details}`: `outcome` must be one of [`Decisions::outcomes`]; `reason`
/// is free text; with [`Decisions::details`], `details` may hold only
/// those fields, each null or of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decisions {
    /// At least one, unique, at most [`Decisions::OUTCOMES_MAX`]; never
    /// `rejected` or `timed_out`, which the conductor itself records.
    pub outcomes: Vec<String>,
    /// The fields `details` may carry and their types; `None`: any.
    pub details: Option<BTreeMap<String, FieldType>>,
}

impl Decisions {
    /// A reviewer picks one outcome from a list: a closed set of labels,
    /// not a vocabulary.
    pub const OUTCOMES_MAX: usize = 64;
    /// A decision's details are a few typed fields, not a document.
    pub const DETAILS_FIELDS_MAX: usize = 64;
    /// Outcomes the conductor records itself: a reviewer's rejection
    /// (`rejected`) and a gate nobody decided in time (`timed_out`). An
    /// agent proposing one would be indistinguishable from them.
    pub const RESERVED_OUTCOMES: [&str; 2] = ["rejected", "timed_out"];
}

/// The type of one decision `details` field, from a small closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldType {
    String,
    /// A whole number (`3` or `3.0`).
    Integer,
    Number,
    Boolean,
    /// A JSON array.
    List,
    /// A JSON object.
    Object,
}

impl FieldType {
    /// Every type, in the order help texts list them.
    pub const ALL: [FieldType; 6] = [
        FieldType::String,
        FieldType::Integer,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::List,
        FieldType::Object,
    ];

    /// The type written `name` in a mission file.
    pub fn parse(name: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// How the type is written in a mission file.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::List => "list",
            FieldType::Object => "object",
        }
    }

    /// Whether `value` may stand in a field of this type. `null` may stand
    /// in any: it says "no value", as leaving the field out does.
    pub fn admits(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, value) {
            (_, Value::Null) => true,
            (FieldType::String, Value::String(_)) => true,
            (FieldType::Integer, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            (FieldType::Number, Value::Number(_)) => true,
            (FieldType::Boolean, Value::Bool(_)) => true,
            (FieldType::List, Value::Array(_)) => true,
            (FieldType::Object, Value::Object(_)) => true,
            _ => false,
        }
    }
}

/// Module trust. With signers listed, every agent's module must carry a
/// valid detached signature (`<module>.sig`, made by `conductor modules
/// sign`) by one of them, checked before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    /// Ed25519 public keys, 64 hex characters each; empty: modules need
    /// no signature.
    pub modules_signed_by: Vec<String>,
}

/// How much the whole mission may spend, and what happens when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Greater than zero, in budget units (see [`ModelPrice`]).
    pub limit: u64,
    pub on_exhausted: OnExhausted,
    /// How long a reservation may stay pending before it expires and its
    /// funds return to the budget, in milliseconds. A task reserves funds
    /// before a model call and settles after it; if the process dies in
    /// between, expiry is what gives the reserved funds back. Between
    /// [`Budget::MIN_RESERVATION_TTL_MS`] and [`Budget::MAX_RESERVATION_TTL_MS`];
    /// [`Budget::DEFAULT_RESERVATION_TTL_MS`] when left out.
    pub reservation_ttl_ms: u64,
    /// With [`OnExhausted::Gate`]: the budget gate's policy (the default
    /// when the file gives none: any reviewer, one approval, no deadline,
    /// asking for the mission's `limit` again). `None` for other policies.
    pub extension: Option<Extension>,
}

/// The gate a mission waits on when its budget runs out under
/// [`OnExhausted::Gate`]. Approving it is a reviewer-signed extension of
/// the mission's budget (by `amount`, or what the approving reviewer
/// enters), after which the mission resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Budget units asked for; reviewers may grant another amount.
    pub amount: u64,
    /// As [`Gate::reviewers`].
    pub reviewers: Vec<String>,
    pub quorum: u32,
    /// `on_timeout: approve` is refused: an extension is a reviewer's
    /// signed posting, which no timeout can make.
    pub deadline: Option<Deadline>,
}

impl Budget {
    /// Ten minutes: far longer than one model call takes (a reservation is
    /// normally settled within seconds), short enough that funds held by a
    /// crashed run come back before an operator would restart it.
    pub const DEFAULT_RESERVATION_TTL_MS: u64 = 10 * 60 * 1000;

    /// One second: a shorter time would expire reservations while their
    /// model call is still running, letting the mission overspend.
    pub const MIN_RESERVATION_TTL_MS: u64 = 1000;

    /// One day, like [`Limits::MAX`]'s `wall_ms`: a reservation pending for
    /// longer belongs to a stuck or dead task, and its funds should return.
    pub const MAX_RESERVATION_TTL_MS: u64 = 24 * 60 * 60 * 1000;
}

/// What happens when the budget runs out, i.e. when a reservation for the
/// next model call is refused. Written `stop`, `pause` or `gate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExhausted {
    /// No new task starts once a reservation is refused; tasks already
    /// running finish or are cut off by their own limits, and the mission
    /// ends as "budget exhausted". The safe choice when nobody is watching.
    #[default]
    Stop,
    /// The mission pauses, keeping its progress. Running it again resumes
    /// it with the same budget: useful once funds come back (expired
    /// reservations return theirs) or the operator has raised the limit.
    Pause,
    /// The mission waits for a reviewer, who may extend the budget by an
    /// amount (a signed posting in the ledger, so the extension is
    /// attributable); then it continues.
    Gate,
}

/// The policy's former name, kept so existing code still compiles.
#[deprecated(note = "renamed to `OnExhausted`")]
pub type ExhaustionPolicy = OnExhausted;

/// Budget units charged per token. Integers, so that spending adds up
/// exactly; at most [`ModelPrice::MAX_PER_TOKEN`] each, and not both zero
/// (a model that costs nothing would let a mission spend without limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// May be zero if `completion_price` is not.
    pub prompt_price: u64,
    /// May be zero if `prompt_price` is not.
    pub completion_price: u64,
}

impl ModelPrice {
    /// Highest price per token. Budgets are in whatever unit the operator
    /// picks, but a million units per token is beyond any sensible scale:
    /// one short call would cost billions, so such a price is a typo.
    pub const MAX_PER_TOKEN: u64 = 1_000_000;
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
    /// Every model the agent may call: `model` first, then any others the
    /// file lists under `models` (each a key of [`Mission::models`]).
    pub models: Vec<String>,
    pub limits: Limits,
    /// Spending caps for this agent within the mission budget.
    pub budget: AgentBudget,
    /// Which memory spaces the agent may read and write.
    pub memory: MemoryScope,
    /// The agents of the mission this agent may delegate sub-tasks to, in
    /// the order written, each once; it may list itself (the mission's
    /// [`Delegation::depth`] bounds the recursion). Empty (the default):
    /// it may not delegate.
    pub delegates_to: Vec<String>,
}

/// The memory space a mission calls its own: its tasks' facts, unseen by
/// other missions. Every other space name is shared between missions
/// (e.g. `precedent`), and a mission touches one only where it says so.
pub const OWN_SPACE: &str = "mission";

/// What one agent may do with memory. Space names are [`OWN_SPACE`] or a
/// shared space's name (same format as agent names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryScope {
    /// Spaces the agent may recall from; by default its own mission's.
    pub read: Vec<String>,
    /// The one space its `remember` writes to; `None` (`write: none`):
    /// it may not write. By default its own mission's.
    pub write: Option<String>,
}

impl Default for MemoryScope {
    fn default() -> MemoryScope {
        MemoryScope { read: vec![OWN_SPACE.into()], write: Some(OWN_SPACE.into()) }
    }
}

/// Bounds on what a mission's writes may grow one memory space to
/// (history included), so nothing an agent sends grows memory without
/// bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Fact versions.
    pub facts: u64,
    /// Bytes of values, sources and names.
    pub bytes: u64,
}

impl MemoryLimits {
    /// 100,000 versions and 64 MiB per space unless the mission says otherwise.
    pub const DEFAULT: MemoryLimits = MemoryLimits { facts: 100_000, bytes: 64 << 20 };
    /// The most a mission may ask for: the memory store's own per-space bounds.
    pub const MAX: MemoryLimits = MemoryLimits { facts: 4 << 20, bytes: 1 << 30 };
}

/// Caps on what one agent may spend, in budget units, on top of the
/// mission's [`Budget::limit`]. Several agents share one mission budget;
/// these keep one of them (or one runaway task) from using it all. `None`
/// means no cap beyond the mission's own. A cap, when set, is greater than
/// zero and at most the mission limit, and `task_limit` is at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentBudget {
    /// What all of the agent's tasks together may spend.
    pub limit: Option<u64>,
    /// What any one of the agent's tasks may spend.
    pub task_limit: Option<u64>,
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
    /// Bytes of all arguments of one host call together.
    pub call_arg_bytes: u64,
    /// Bytes of the decision the agent returns.
    pub output_bytes: u64,
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
        // A long prompt (a small model's whole context is a few thousand
        // tokens) fits; megabytes per call into the journal do not.
        call_arg_bytes: 64 * 1024,
        // A decision is a label, a reason and a few fields.
        output_bytes: 64 * 1024,
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
        // Every call argument and decision is journaled: 16 MiB is far
        // beyond any prompt and keeps one call from bloating the journal.
        call_arg_bytes: 16 * 1024 * 1024,
        output_bytes: 16 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Every case of the mission, in the order they were declared. `tasks:`
/// in the YAML is one group (`agent` plus `dir` or `inline`) or a list of
/// such groups, so one mission can send different queues to different
/// agents (say, the same work to a Rust and a Python implementation).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSource {
    /// At most [`MAX_CASES`] in all, ids unique across every group; at
    /// least one unless the mission has [`Mission::intake`].
    pub cases: Vec<Case>,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's `"id"` string, else the file stem (directory cases) or
    /// `case-N`, 1-based (inline cases).
    pub id: String,
    /// The name of the one of [`Mission::agents`] that works this case.
    pub agent: String,
    /// Always a JSON object.
    pub input: serde_json::Value,
    /// Where the case came from: the case file's path, or
    /// `mission-file:LINE` for an inline case.
    pub origin: String,
    /// How sensitive the case's data is: the case's `_tier`, else its
    /// group's `tier`, else [`DataTier::Restricted`] (the safe default).
    pub tier: DataTier,
}

/// How sensitive a case's data is. A model sees a case only if it is
/// cleared for the case's tier (the model registry says up to which), and
/// restricted data never leaves the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataTier {
    Public,
    Internal,
    #[default]
    Restricted,
}

impl DataTier {
    pub fn parse(text: &str) -> Option<DataTier> {
        match text {
            "public" => Some(DataTier::Public),
            "internal" => Some(DataTier::Internal),
            "restricted" => Some(DataTier::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataTier::Public => "public",
            DataTier::Internal => "internal",
            DataTier::Restricted => "restricted",
        }
    }
}

/// Where a mission's model calls go besides its agents' own models.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// Opt-in, per kind of case: a case matching `when` has its agent's
    /// model calls sent to `to` (a frontier model off the host) instead.
    /// Empty by default: nothing leaves the host.
    pub failover: Vec<Failover>,
}

/// One failover rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    pub when: Condition,
    /// A key of [`Mission::models`] (priced like any model); the registry
    /// must name a frontier model by it.
    pub to: String,
}

/// A fact in memory before the mission starts, valid over `[valid_from, valid_to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFact {
    /// [`OWN_SPACE`] (the default) or a shared space's name.
    pub space: String,
    /// Not empty.
    pub subject: String,
    /// Not empty.
    pub predicate: String,
    pub value: String,
    /// Unix microseconds.
    pub valid_from: i64,
    /// Unix microseconds, after `valid_from`; `None` means still valid.
    pub valid_to: Option<i64>,
    /// Where the fact comes from (a document, a decision), when known.
    pub source: Option<String>,
}

/// A named condition on a case and the agent's decision for it; what a
/// matching gate does is the conductor's business.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    pub when: Condition,
    /// Who may decide: reviewer key ids (32 hex characters), group names
    /// already resolved to their members, deduplicated. Empty: any
    /// registered reviewer.
    pub reviewers: Vec<String>,
    /// How many distinct reviewers must approve (n of m); one rejection
    /// decides. At least 1, at most the number of `reviewers` when listed.
    pub quorum: u32,
    /// How long reviewers have, and what happens then; `None`: no limit.
    pub deadline: Option<Deadline>,
}

/// A gate's time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Microseconds from the request.
    pub after_us: i64,
    pub on_timeout: OnTimeout,
    /// A reminder this long before the deadline, if any (shorter than it).
    pub remind_before_us: Option<i64>,
}

/// What a gate nobody decided in time does. "Timed out" is its own
/// outcome in the journal, never recorded as a denial or approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnTimeout {
    /// The case is decided `timed_out` (not `rejected`).
    Deny,
    /// The agent's proposal stands, decided by the timeout.
    Approve,
    /// The gate passes to these reviewers (key ids) with a fresh deadline;
    /// if they too let it run out, the case is decided `timed_out`.
    Escalate(Vec<String>),
}

/// A gate can ask for at most this many approvals: a quorum is a few
/// people, and each vote is a signed entry someone must give.
pub const QUORUM_MAX: u32 = 16;

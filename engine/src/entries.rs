//! The journal's payloads as types: one struct per kind the engine and
//! the server write, used both to write entries ([`append`]) and to read
//! them back ([`decode`]), so a field's name and type are stated once.
//!
//! Each struct serializes to exactly the JSON the conductor writes: the
//! same names and types, and the same choice between a field that is
//! `null` and one that is absent. Where a kind has several shapes (a call
//! answered, refused or failed; a case's gate or a budget gate) the fields
//! only some shapes have are `Option`s, documented with the shape that
//! has them. A field that one shape writes as `null` and another leaves
//! out is an `Option<Option<T>>` ([`present`]): `None` absent, `Some(None)`
//! null. Unknown fields are ignored on read, so a reader of this version
//! still reads an entry a later version wrote with more fields.
//!
//! [`round_trip`] checks an entry against its struct: decoded and encoded
//! again, it must be the payload the journal holds.

use std::collections::BTreeMap;

use identity::Keypair;
use ledger::{Entry, EntryHash, Kind, LedgerError, Txn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::MissionStatus;

/// A journal payload: the struct of one kind.
pub trait Payload: Serialize + DeserializeOwned {
    /// The kind of entry this payload is written as.
    const KIND: Kind;
}

/// Why an entry could not be read as the payload asked for.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("entry {seq} is a `{found}`, not a `{expected}`")]
    WrongKind { seq: u64, expected: Kind, found: String },
    #[error("entry {seq} (`{kind}`): its payload does not match the format: {source}")]
    Payload {
        seq: u64,
        kind: Kind,
        #[source]
        source: serde_json::Error,
    },
    #[error("entry {seq} (`{kind}`) is not a kind of journal format 1")]
    UnknownKind { seq: u64, kind: String },
    #[error("entry {seq} (`{kind}`): encoded again, its payload differs: stored {stored}, encoded {encoded}")]
    Differs { seq: u64, kind: Kind, stored: String, encoded: String },
}

/// Appends `payload` as an entry of its kind signed by `signer`.
pub fn append<P: Payload>(
    t: &mut Txn,
    signer: &Keypair,
    payload: &P,
    time_us: i64,
) -> Result<(u64, EntryHash), LedgerError> {
    // These structs hold strings, numbers and JSON values only, so this
    // cannot fail; an error is still an entry refused, never a panic.
    let value = serde_json::to_value(payload)
        .map_err(|e| LedgerError::BadEntry(format!("encoding a `{}` payload: {e}", P::KIND)))?;
    t.append(signer, P::KIND.as_str(), &value, time_us)
}

/// Reads `entry`'s payload as `P`, refusing an entry of another kind.
pub fn decode<P: Payload>(entry: &Entry) -> Result<P, EntryError> {
    if entry.kind != P::KIND {
        return Err(EntryError::WrongKind { seq: entry.seq, expected: P::KIND, found: entry.kind.clone() });
    }
    serde_json::from_slice(&entry.payload).map_err(|source| EntryError::Payload {
        seq: entry.seq,
        kind: P::KIND,
        source,
    })
}

/// [`decode`] for a payload already read as JSON (and perhaps changed:
/// replay opens sealed memory values in place): `kind` is the entry's.
pub fn decode_json<P: Payload>(seq: u64, kind: &str, payload: &Value) -> Result<P, EntryError> {
    if kind != P::KIND {
        return Err(EntryError::WrongKind { seq, expected: P::KIND, found: kind.to_owned() });
    }
    P::deserialize(payload).map_err(|source| EntryError::Payload { seq, kind: P::KIND, source })
}

/// Decodes `entry` by its kind, encodes it again and checks the result is
/// the payload the journal holds (as JSON values: field order aside). The
/// ledger's own kinds (genesis, keys, checkpoints, budget postings) have
/// their payloads checked by the ledger and are not decoded here.
pub fn round_trip(entry: &Entry) -> Result<(), EntryError> {
    let Some(kind) = Kind::parse(&entry.kind) else {
        return Err(EntryError::UnknownKind { seq: entry.seq, kind: entry.kind.clone() });
    };
    // No wildcard: a kind added to the format without a struct here does
    // not compile.
    match kind {
        Kind::Genesis
        | Kind::KeyRegistered
        | Kind::KeyRevoked
        | Kind::KeyRotated
        | Kind::JournalCheckpoint
        | Kind::BudgetOpened
        | Kind::BudgetReserved
        | Kind::BudgetSettled
        | Kind::BudgetVoided
        | Kind::BudgetExpired
        | Kind::BudgetRefused
        | Kind::BudgetBatch
        | Kind::BudgetExtended => Ok(()),
        Kind::MissionDeclared => again::<MissionDeclared>(entry),
        Kind::MissionFinished => again::<MissionFinished>(entry),
        Kind::MissionCompleted => again::<MissionCompleted>(entry),
        Kind::MissionResumed => again::<MissionResumed>(entry),
        Kind::MissionRecovered => again::<MissionRecovered>(entry),
        Kind::MemoryAsserted => again::<MemoryAsserted>(entry),
        Kind::MemoryErased => again::<MemoryErased>(entry),
        Kind::TaskStarted => again::<TaskStarted>(entry),
        Kind::TaskDecided => again::<TaskDecided>(entry),
        Kind::TaskFailed => again::<TaskFailed>(entry),
        Kind::TaskSkipped => again::<TaskSkipped>(entry),
        Kind::TaskDeferred => again::<TaskDeferred>(entry),
        Kind::TaskRecovered => again::<TaskRecovered>(entry),
        Kind::TaskParked => again::<TaskParked>(entry),
        Kind::TaskProposed => again::<TaskProposed>(entry),
        Kind::TaskDelegated => again::<TaskDelegated>(entry),
        Kind::TaskJoined => again::<TaskJoined>(entry),
        Kind::GateRequested => again::<GateRequested>(entry),
        Kind::GateReminder => again::<GateReminder>(entry),
        Kind::GateEscalated => again::<GateEscalated>(entry),
        Kind::GateTimedOut => again::<GateTimedOut>(entry),
        Kind::GateRefused => again::<GateRefused>(entry),
        Kind::GateDecided => again::<GateDecided>(entry),
        Kind::GateVoted => again::<GateVoted>(entry),
        Kind::HostInfer => again::<HostInfer>(entry),
        Kind::HostRecall => again::<HostRecall>(entry),
        Kind::HostRemember => again::<HostRemember>(entry),
        Kind::HostQuery => again::<HostQuery>(entry),
        Kind::HostLog => again::<HostLog>(entry),
        Kind::HostReview => again::<HostReview>(entry),
        Kind::HostAwait => again::<HostAwait>(entry),
        Kind::GatewayKeyIssued => again::<GatewayKeyIssued>(entry),
        Kind::GatewayKeyRevoked => again::<GatewayKeyRevoked>(entry),
        Kind::GatewayStarted => again::<GatewayStarted>(entry),
        Kind::GatewayCompletion => again::<GatewayCompletion>(entry),
        Kind::GatewayInterrupted => again::<GatewayInterrupted>(entry),
        Kind::GatewayRefused => again::<GatewayRefused>(entry),
        Kind::GatewayRefusals => again::<GatewayRefusals>(entry),
        Kind::DataLeftHost => again::<DataLeftHost>(entry),
        Kind::CaseReceived => again::<CaseReceived>(entry),
        Kind::MissionControl => again::<MissionControl>(entry),
        Kind::TokenIssued => again::<TokenIssued>(entry),
        Kind::TokenRevoked => again::<TokenRevoked>(entry),
        Kind::RequestRefused => again::<RequestRefused>(entry),
        Kind::HostDocument => again::<HostDocument>(entry),
    }
}

fn again<P: Payload>(entry: &Entry) -> Result<(), EntryError> {
    let decoded: P = decode(entry)?;
    let payload = |source| EntryError::Payload { seq: entry.seq, kind: P::KIND, source };
    let stored: Value = serde_json::from_slice(&entry.payload).map_err(payload)?;
    let encoded = serde_json::to_value(&decoded).map_err(payload)?;
    if stored != encoded {
        return Err(EntryError::Differs {
            seq: entry.seq,
            kind: P::KIND,
            stored: stored.to_string(),
            encoded: encoded.to_string(),
        });
    }
    Ok(())
}

/// A field some shapes of a payload write as `null` and others leave out:
/// `None` when absent, `Some(None)` when `null`. Use with
/// `#[serde(default, skip_serializing_if = "Option::is_none", with = "present")]`.
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            // Unreachable behind `skip_serializing_if`; null is the
            // closest a serializer that ignores it can write.
            None | Some(None) => s.serialize_none(),
            Some(Some(v)) => v.serialize(s),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

macro_rules! payload {
    ($($ty:ident => $kind:ident),+ $(,)?) => {
        $(impl Payload for $ty {
            const KIND: Kind = Kind::$kind;
        })+
    };
}

payload! {
    MissionDeclared => MissionDeclared,
    MissionFinished => MissionFinished,
    MissionCompleted => MissionCompleted,
    MissionResumed => MissionResumed,
    MissionRecovered => MissionRecovered,
    MemoryAsserted => MemoryAsserted,
    MemoryErased => MemoryErased,
    TaskStarted => TaskStarted,
    TaskDecided => TaskDecided,
    TaskFailed => TaskFailed,
    TaskSkipped => TaskSkipped,
    TaskDeferred => TaskDeferred,
    TaskRecovered => TaskRecovered,
    TaskParked => TaskParked,
    TaskProposed => TaskProposed,
    TaskDelegated => TaskDelegated,
    TaskJoined => TaskJoined,
    GateRequested => GateRequested,
    GateReminder => GateReminder,
    GateEscalated => GateEscalated,
    GateTimedOut => GateTimedOut,
    GateRefused => GateRefused,
    GateDecided => GateDecided,
    GateVoted => GateVoted,
    HostInfer => HostInfer,
    HostRecall => HostRecall,
    HostRemember => HostRemember,
    HostQuery => HostQuery,
    HostLog => HostLog,
    HostReview => HostReview,
    HostAwait => HostAwait,
    GatewayKeyIssued => GatewayKeyIssued,
    GatewayKeyRevoked => GatewayKeyRevoked,
    GatewayStarted => GatewayStarted,
    GatewayCompletion => GatewayCompletion,
    GatewayInterrupted => GatewayInterrupted,
    GatewayRefused => GatewayRefused,
    GatewayRefusals => GatewayRefusals,
    DataLeftHost => DataLeftHost,
    CaseReceived => CaseReceived,
    MissionControl => MissionControl,
    TokenIssued => TokenIssued,
    TokenRevoked => TokenRevoked,
    RequestRefused => RequestRefused,
    HostDocument => HostDocument,
}

// ---------------------------------------------------------------- shared

/// An account's totals at a moment (`ledger::Account`'s numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTotals {
    /// `None`: the account has no limit of its own.
    pub limit: Option<u64>,
    pub settled: u64,
    pub pending: u64,
}

/// One chat message as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A message as an agent asked (`host.infer`'s request).
impl From<&cells::Message> for Message {
    fn from(m: &cells::Message) -> Self {
        Message { role: m.role.clone(), content: m.content.clone() }
    }
}

/// A message as the model's template saw it (answered calls, the gateway).
impl From<&models::ChatMessage> for Message {
    fn from(m: &models::ChatMessage) -> Self {
        Message { role: m.role.clone(), content: m.content.clone() }
    }
}

/// What a budget gate asks (or a vote or decision grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetGrant {
    pub account: String,
    pub amount: u64,
}

// ---------------------------------------------------------------- mission.*

/// `mission.declared`: the mission file's policy as it was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionDeclared {
    pub mission: String,
    pub name: String,
    /// The mission file's absolute path, for `mission resume`.
    pub file: String,
    pub file_blake3: String,
    pub budget: DeclaredBudget,
    /// Model name → its prices and registry hash.
    pub models: BTreeMap<String, DeclaredModel>,
    pub agents: Vec<DeclaredAgent>,
    pub memory_limits: DeclaredMemoryLimits,
    pub gates: Vec<DeclaredGate>,
    /// How many tasks (cases) the mission has.
    pub tasks: u32,
    /// An open mission's intake; absent for a mission that works only
    /// its own cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<DeclaredIntake>,
}

/// `mission.declared`'s `intake`: how the mission takes cases as they
/// arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredIntake {
    pub agent: String,
    /// The most received cases not yet started.
    pub queue: u32,
    /// The tier of arriving cases without a `_tier`.
    pub tier: String,
    pub documents: DeclaredDocuments,
    /// Whether an inbox directory is watched.
    pub inbox: bool,
}

/// Bounds on one case's documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredDocuments {
    pub count: u32,
    pub bytes: u64,
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredBudget {
    pub limit: u64,
    /// `stop`, `pause` or `gate`.
    pub on_exhausted: String,
    pub reservation_ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredModel {
    pub prompt_price: u64,
    pub completion_price: u64,
    /// `None` when the registry had no such model.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredAgent {
    pub name: String,
    pub model: String,
    pub module_blake3: String,
    pub limits: DeclaredLimits,
    pub budget: DeclaredAgentBudget,
    pub memory: DeclaredScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredLimits {
    pub memory_bytes: u64,
    pub fuel: u64,
    pub wall_ms: u64,
    pub host_calls: u32,
    pub max_tokens: u32,
    pub call_arg_bytes: u64,
    pub output_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredAgentBudget {
    pub limit: Option<u64>,
    pub task_limit: Option<u64>,
}

/// The stored memory spaces an agent reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredScope {
    pub read: Vec<String>,
    pub write: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredMemoryLimits {
    pub facts: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredGate {
    pub name: String,
    /// The condition's field (`case.amount`, `decision.outcome`).
    pub field: String,
    /// The condition's test, in Rust debug notation.
    pub test: String,
    pub reviewers: Vec<String>,
    pub quorum: u32,
    pub deadline: Option<DeclaredDeadline>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredDeadline {
    pub after_us: i64,
    /// `Deny`, `Approve` or `Escalate([...])`, in Rust debug notation.
    pub on_timeout: String,
    pub remind_before_us: Option<i64>,
}

/// `mission.finished`: the end of one run or resume of a mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionFinished {
    pub mission: String,
    pub status: MissionStatus,
    pub budget: AccountTotals,
}

/// `mission.completed`: the last open gate of the mission was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionCompleted {
    pub mission: String,
}

/// `mission.resumed`: `mission resume` continues a stopped mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionResumed {
    pub mission: String,
    pub budget: AccountTotals,
    /// Reservations voided (none on a plain resume).
    pub voided: Vec<u64>,
    /// Tasks that were running, continued from the journal.
    pub recovering: Vec<u32>,
}

/// `mission.recovered`: a run found the mission interrupted; the same
/// fields as [`MissionResumed`], `voided` naming the orphaned reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionRecovered {
    pub mission: String,
    pub budget: AccountTotals,
    pub voided: Vec<u64>,
    pub recovering: Vec<u32>,
}

// ---------------------------------------------------------------- memory.*

/// `memory.asserted`: a seed fact of a mission file, its value sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryAsserted {
    pub mission: String,
    pub space: String,
    pub subject: String,
    pub predicate: String,
    /// `sealed:v1:<hex>` under the subject's key.
    pub value: String,
    pub source: Option<String>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    /// The new fact's id; `None` when nothing new was stored.
    pub fact: Option<u64>,
    pub superseded: Vec<u64>,
    pub remainders: Vec<u64>,
}

/// `memory.erased`: a data subject crypto-shredded (operator-signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryErased {
    pub subject: String,
    pub versions: u64,
    pub postings: u64,
    pub reason: String,
}

// ---------------------------------------------------------------- task.*

/// `task.started`: everything a replay needs besides the host calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub origin: String,
    pub agent: String,
    pub module_blake3: String,
    /// The case as the agent got it (with `_model`): free-form.
    pub input: Value,
    pub clock_start_us: i64,
    /// The cell's random seed, hex.
    pub seed: String,
    /// A child task: the delegation that started it. Absent for a case's
    /// own (entry) task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
}

/// Where a child task comes from (`task.started`'s `parent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent task's index.
    pub task: u32,
    /// The `task.delegated` entry's `delegation` id.
    pub delegation: String,
    /// How deep the child sits: a case's own task is 0, its children 1.
    pub depth: u32,
}

/// `task.delegated`: a task asked other agents of the mission to handle
/// sub-tasks (its `delegate` host call, signed by its agent's key). With
/// a `delegation` id the children were created, each on a budget account
/// under the parent task's; with `refused`, nothing was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDelegated {
    pub mission: String,
    pub task: u32,
    pub case: String,
    /// `None` (written null) when refused.
    pub delegation: Option<String>,
    /// The children's depth.
    pub depth: u32,
    pub children: Vec<DelegatedChild>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One request of a `task.delegated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedChild {
    pub agent: String,
    /// blake3 of the input text exactly as the agent sent it.
    pub input_blake3: String,
    /// The cap the agent asked for.
    pub cap: Option<u64>,
    /// The child's task index; `None` when the call was refused.
    pub task: Option<u32>,
    /// The limit of the child's budget account (`None`: bounded only by
    /// the accounts above it).
    pub budget: Option<u64>,
}

/// `task.joined`: the last child of a delegation ended; these are the
/// answers the parent's `delegate` call returns when it resumes.
/// Conductor-signed, committed with (after) the last child's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskJoined {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub delegation: String,
    pub delegated_seq: u64,
    pub results: Vec<ChildResult>,
}

/// How one child ended, as its parent learns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildResult {
    pub task: u32,
    pub agent: String,
    /// `decided`, `failed` or `skipped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Failed: `task.failed`'s code; skipped: the skip's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `task.decided`: a task's outcome. Decided by the agent (no gate):
/// `proposal_seq`. After a gate: `gate_seq`, and `edited` when a
/// reviewer decided it (not when its deadline did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDecided {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub outcome: String,
    /// `agent`, `reviewer:<key id>` or `timeout`.
    pub decided_by: String,
    /// Decided by the agent: its `task.proposed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_seq: Option<u64>,
    /// Decided after a gate: its `gate.decided` or `gate.timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_seq: Option<u64>,
    /// Decided by a reviewer: whether they edited the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<bool>,
}

/// `task.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub code: String,
    pub message: String,
}

/// `task.skipped`: not run (the budget ran out before it started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSkipped {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub reason: String,
}

/// `task.deferred`: its result discarded, to run again on resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeferred {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub reason: String,
    /// What the discarded attempt spent (it stays spent).
    pub settled: u64,
    /// The discarded attempt's outcome, or its failure code.
    pub result: String,
}

/// `task.recovered`: an interrupted attempt continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecovered {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub started_seq: u64,
    /// How many calls the journal answers before live calls resume.
    pub replaying: u64,
}

/// `task.parked`: waiting on a reviewer's answer (`host.await`) or on
/// its children (`task.delegated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskParked {
    pub mission: String,
    pub task: u32,
    pub case: String,
    /// Waiting on a reviewer: the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_id: Option<String>,
    /// Waiting on its children: the delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

/// `task.proposed`: the agent's decision (agent-signed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProposed {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub decision: Proposal,
}

/// An agent's decision as the journal and the gates see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub outcome: String,
    pub reason: String,
    /// The JSON object the agent gave (empty if none): free-form, checked
    /// against the mission's `decisions:` when it has them.
    pub details: Value,
}

// ---------------------------------------------------------------- gate.*

/// `gate.requested`. A case's gate has `task`, `case` and, when raised on
/// a proposal, `proposal_seq`; an agent's `await-review` has neither
/// `proposal_seq` nor `budget`; a budget gate has `budget` and no task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRequested {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    pub why: GateWhy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_seq: Option<u64>,
    /// A budget gate: the extension asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetGrant>,
    /// Key ids; empty for any registered reviewer.
    pub reviewers: Vec<String>,
    pub quorum: u32,
}

/// Why a gate was raised: the agent asked (`requested_by`, `reason`, and
/// `waiting` for `await-review`), a condition met (`field`, with
/// `unevaluable` when it could not be tested), or a budget ran out
/// (`budget_exhausted`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWhy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unevaluable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exhausted: Option<AccountTotals>,
}

/// `gate.reminder`: the gate's deadline is near. `task` and `case` for a
/// case's gate, not a budget gate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReminder {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    pub deadline_us: i64,
    pub reviewers: Vec<String>,
}

/// `gate.escalated`: the deadline passed; new reviewers, a new deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEscalated {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub deadline_us: i64,
}

/// `gate.timed_out`: decided by its deadline, never by a reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateTimedOut {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    /// `approve` or `deny`.
    pub then: String,
    pub deadline_us: i64,
}

/// `gate.refused`: an attempt to decide that was refused. A summary of
/// counted refusals also has `repeated`, `first_us` and `last_us`; its
/// other fields describe the last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRefused {
    pub gate_id: String,
    pub key_id: String,
    pub public_key: String,
    /// `approved` or `rejected`: what the attempt would have decided.
    pub verdict: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_us: Option<i64>,
}

/// `gate.decided` (reviewer-signed): the approval that reached the
/// quorum, or a rejection. A case's gate has `task`, `case` and `edits`;
/// a budget gate has `budget` (null when rejected) instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecided {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    /// `approved` or `rejected`.
    pub verdict: String,
    pub note: Option<String>,
    pub requested_seq: u64,
    /// The seqs of the earlier approvals (`gate.voted`).
    pub votes: Vec<u64>,
    pub quorum: u32,
    /// A case's gate: field → what the approvals changed in the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<BTreeMap<String, Edit>>,
    /// A budget gate: what was granted; `Some(None)` (null) when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub budget: Option<Option<BudgetGrant>>,
}

/// One field of a proposal changed by reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// The agent's value (free-form: an outcome, a reason or details).
    pub from: Value,
    pub to: Value,
}

/// `gate.voted` (reviewer-signed): an approval before the quorum. A
/// case's gate has `task`, `case` and `edits`; a budget gate `budget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVoted {
    pub mission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub gate_id: String,
    pub gate: String,
    /// Always `approved`: a rejection decides the gate.
    pub verdict: String,
    pub note: Option<String>,
    /// A case's gate: this reviewer's edits (field → new value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<Map<String, Value>>,
    pub approvals: u32,
    pub quorum: u32,
    pub requested_seq: u64,
    /// A budget gate: the amount this approval would grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetGrant>,
}

// ---------------------------------------------------------------- host.*

/// `host.infer`. Every shape has the request (`model`, `messages`,
/// `max_tokens`). Refused before a reservation: `refused`. Otherwise
/// `routed_to`, `failover_refused` and `reservation`, then either the
/// answer (`text`, tokens, `cost`, `cost_uncapped`) or `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfer {
    pub mission: String,
    pub task: u32,
    /// The model the agent asked for.
    pub model: String,
    /// The model the call went to instead (failover); null if none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub routed_to: Option<Option<String>>,
    /// Why a failover did not happen; null if none was refused.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub failover_refused: Option<Option<String>>,
    /// As asked (refused) or as the model's template saw them.
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Posted: at most the reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    /// At the quoted prices; null if it does not fit a u64.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub cost_uncapped: Option<Option<u64>>,
}

/// A fact as a memory read journals it, its value sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledFact {
    pub id: u64,
    pub space: String,
    pub subject: String,
    pub predicate: String,
    /// `sealed:v1:<hex>` under the subject's key.
    pub value: String,
    pub source: Option<String>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub recorded_at: i64,
    pub superseded_at: Option<i64>,
    /// Word queries: BM25 in millionths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u64>,
}

/// `host.recall`: the request (`subject`, `asked_valid_at`, null: now),
/// then the answer (`spaces`, `valid_at`, `known_at`, `facts`,
/// `truncated`, `erased` when some facts' subjects were erased) or
/// `refused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecall {
    pub mission: String,
    pub task: u32,
    pub subject: String,
    /// The valid time asked for (null: now); absent in entries written
    /// before requests were recorded whole.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub asked_valid_at: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub valid_at: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub known_at: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Vec<JournaledFact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// Facts left out because their subject was erased (only when some were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `host.query`: the request (`query`, as the agent asked), then the
/// answer as for [`HostRecall`] or `refused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostQuery {
    pub mission: String,
    pub task: u32,
    pub query: AskedQuery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub valid_at: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub known_at: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Vec<JournaledFact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A memory query as the agent asked it (`cells::MemoryQuery`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedQuery {
    pub space: String,
    pub subject: String,
    pub predicate: String,
    pub words: String,
    pub valid_at: Option<i64>,
    pub known_at: Option<i64>,
    pub limit: u32,
}

impl From<&cells::MemoryQuery> for AskedQuery {
    fn from(q: &cells::MemoryQuery) -> Self {
        AskedQuery {
            space: q.space.clone(),
            subject: q.subject.clone(),
            predicate: q.predicate.clone(),
            words: q.words.clone(),
            valid_at: q.valid_at,
            known_at: q.known_at,
            limit: q.limit,
        }
    }
}

/// `host.remember`: the request (`subject`, `predicate`, `value`,
/// `asked_valid_from`), then the answer (`valid_from`, `space`, `fact`,
/// `superseded`, `remainders`) or `refused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRemember {
    pub mission: String,
    pub task: u32,
    pub subject: String,
    pub predicate: String,
    /// The valid time given (null: now); absent in entries written before
    /// requests were recorded whole.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub asked_valid_from: Option<Option<i64>>,
    /// Sealed; null on a refusal for a subject already erased.
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// The new fact's id (null when nothing new was stored).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub fact: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remainders: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `host.log`: a message of the agent's, cut to its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLog {
    pub mission: String,
    pub task: u32,
    pub message: String,
}

/// `host.review`: the agent asks for its proposal to be reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReview {
    pub mission: String,
    pub task: u32,
    pub gate: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `host.await`: the agent waits for a reviewer's answer; `gate_id` when
/// the gate was raised, `refused` when it was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAwait {
    pub mission: String,
    pub task: u32,
    pub gate: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `data.left_host`: a prompt about to be sent to a frontier model,
/// recorded before a byte is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLeftHost {
    pub mission: String,
    pub task: u32,
    pub model: String,
    pub endpoint: String,
    pub remote_model: String,
    /// The case's data tier.
    pub tier: String,
    pub prompt_bytes: u64,
    pub prompt_blake3: String,
    pub reservation: u64,
}

// ---------------------------------------------------------------- gateway.*

/// `gateway.key_issued` (operator-signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayKeyIssued {
    pub key_id: String,
    pub name: String,
    pub account: String,
    pub limit: u64,
}

/// `gateway.key_revoked` (operator-signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayKeyRevoked {
    pub key_id: String,
    pub name: String,
    pub account: String,
    pub reason: String,
}

/// `gateway.started`: a streamed call's request and reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStarted {
    pub key_id: String,
    pub account: String,
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub prompt_tokens: u32,
    pub reservation: u64,
    /// The reservation's amount: what the call costs if it is interrupted.
    pub reserved: u64,
}

/// `gateway.completion`: a call served. A whole call has `messages`; a
/// streamed one `started_seq` (its messages are in `gateway.started`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCompletion {
    pub key_id: String,
    pub account: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_seq: Option<u64>,
    pub max_tokens: u32,
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cost: u64,
    pub reservation: u64,
}

/// `gateway.interrupted`: a streamed call stopped after text may have
/// been sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInterrupted {
    pub key_id: String,
    pub account: String,
    pub reservation: u64,
    pub started_seq: u64,
    pub reserved: u64,
    /// What was charged: `reserved`, or 0 if the reservation had expired.
    pub cost: u64,
    pub expired: bool,
    pub reason: String,
}

/// `gateway.refused`: one refused call of a valid key; `reservation` when
/// the model failed after the call was paid for (and voided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRefused {
    pub key_id: String,
    pub account: String,
    /// The HTTP status answered.
    pub status: u16,
    pub code: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<u64>,
}

/// `gateway.refusals`: refusals counted, not journaled one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRefusals {
    pub from_us: i64,
    pub to_us: i64,
    /// Refusals each key had journaled one by one before counting began.
    pub journaled_per_key_max: u32,
    /// Refusals counted in this window, all keys together.
    pub count: u64,
    pub keys: Vec<KeyRefusals>,
    /// Refusals of keys past the window's bound on keys tracked.
    pub untracked: u64,
}

/// One key's counted refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRefusals {
    pub key_id: String,
    pub account: String,
    pub count: u64,
    /// By the code each refusal would have had.
    pub codes: BTreeMap<String, u64>,
}

// ---------------------------------------------------------------- operators

/// Who asked the server (or the command line) for something: how the
/// request came, and the identity it proved. Never a secret: a key's id
/// and a token's id only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// `api` (a session or a token), `cli` (on this host, with the data
    /// directory), or `inbox` (a file left in a mission's watched inbox).
    pub via: String,
    /// The role the request was made in (`operator`, `reviewer`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The signed-in key's id (a session, or a command given `--key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The API token's id (a script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The name the key was registered with, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One document of a case, as `case.received` records it: the bytes are
/// in the data directory's document store under their BLAKE3 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// The name the submitter gave it (a file name, no directories).
    pub name: String,
    pub media_type: String,
    pub bytes: u64,
    /// BLAKE3 of the bytes, hex.
    pub blake3: String,
    /// The case's data subject (its `_subject`): the bytes are sealed
    /// under that subject's key, and erasing it shreds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// `case.received`: a case taken into an open mission. Written (and
/// durable) before the submitter is told the case was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseReceived {
    pub mission: String,
    /// The task index the case runs as.
    pub task: u32,
    pub case: String,
    pub agent: String,
    /// The case as submitted: a JSON object.
    pub input: Value,
    pub documents: Vec<DocumentRef>,
    pub submitted_by: Requester,
    /// The submitter's idempotency key: the same key again is answered
    /// with this case, not a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `mission.control`: an operator paused, resumed, cancelled or closed a
/// mission (`action`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionControl {
    pub mission: String,
    /// `pause`, `resume`, `cancel` or `close`.
    pub action: String,
    pub by: Requester,
}

/// `token.issued`: an API token for scripts. The secret itself is shown
/// once, to whoever issued it; the journal and the database keep its
/// BLAKE3 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// The token's public id (the part before the secret).
    pub token: String,
    /// What the token may do: `operator`, `reviewer` or `auditor`.
    pub role: String,
    /// The one mission it may touch; `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission: Option<String>,
    /// When it stops working (microseconds since the epoch); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_us: Option<i64>,
    /// BLAKE3 of the secret, hex.
    pub secret_blake3: String,
    /// A label for people (`nightly-intake`).
    pub name: String,
    pub by: Requester,
}

/// `token.revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub token: String,
    pub by: Requester,
}

/// `request.refused`: the server refused a request by a known identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRefused {
    pub method: String,
    /// The route's pattern (`/api/missions/{id}/cases`), not the path:
    /// no caller-chosen text beyond the mission id below.
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission: Option<String>,
    pub status: u16,
    pub reason: String,
    pub by: Requester,
    /// A summary of refusals counted rather than journaled one by one (a
    /// caller past its rate): how many, and the first and last one's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_us: Option<i64>,
}

/// `host.document`: a task read part of one of its case's documents
/// (agent-signed, like its other host calls). The bytes are not in the
/// journal: they are in the document store under `blake3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDocument {
    pub mission: String,
    pub task: u32,
    pub name: String,
    pub offset: u64,
    /// What the agent asked for (the host may cap it).
    pub max_bytes: u32,
    /// The document's hash; absent when the read was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The data subject the document is sealed under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Bytes returned.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(kind: Kind, payload: &Value) -> Entry {
        Entry {
            seq: 7,
            prev: EntryHash([0; 32]),
            time_us: 1,
            signer: [0; 32],
            kind: kind.as_str().to_owned(),
            payload: serde_json::to_vec(payload).expect("a JSON value encodes"),
            hash: EntryHash([0; 32]),
            signature: [0; 64],
        }
    }

    /// Decodes `sample` as `P`, encodes it again, and checks both the
    /// struct's JSON and [`round_trip`] against the sample.
    fn same<P: Payload + std::fmt::Debug>(sample: Value) -> P {
        let e = entry(P::KIND, &sample);
        let decoded: P = decode(&e).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(serde_json::to_value(&decoded).expect("encodes"), sample, "{decoded:?}");
        round_trip(&e).unwrap_or_else(|err| panic!("{err}"));
        decoded
    }

    fn messages() -> Value {
        json!([{"role": "system", "content": "You triage cases."}, {"role": "user", "content": "case 1"}])
    }

    #[test]
    fn mission_payloads_read_and_write_as_journaled() {
        let declared: MissionDeclared = same(json!({
            "mission": "m-1", "name": "housing", "file": "/missions/housing.yaml", "file_blake3": "ab12",
            "budget": {"limit": 100000, "on_exhausted": "stop", "reservation_ttl_ms": 600000},
            "models": {"smollm2-135m": {"prompt_price": 1, "completion_price": 2, "sha256": null},
                       "qwen": {"prompt_price": 3, "completion_price": 4, "sha256": "cd34"}},
            "agents": [{"name": "worker", "model": "smollm2-135m", "module_blake3": "ef56",
                        "limits": {"memory_bytes": 67108864, "fuel": 1000, "wall_ms": 30000, "host_calls": 64,
                                   "max_tokens": 256, "call_arg_bytes": 65536, "output_bytes": 65536},
                        "budget": {"limit": null, "task_limit": 500},
                        "memory": {"read": ["mission:m-1"], "write": null}}],
            "memory_limits": {"facts": 100000, "bytes": 67108864},
            "gates": [{"name": "big", "field": "case.amount", "test": "GreaterThan(100.0)", "reviewers": [],
                       "quorum": 1, "deadline": null},
                      {"name": "slow", "field": "decision.outcome", "test": "Equals(\"refer\")",
                       "reviewers": ["k1", "k2"], "quorum": 2,
                       "deadline": {"after_us": 60000000, "on_timeout": "Escalate([\"k3\"])",
                                    "remind_before_us": null}}],
            "tasks": 3,
        }));
        assert_eq!(declared.agents[0].budget.task_limit, Some(500));
        let finished: MissionFinished = same(json!({"mission": "m-1", "status": "completed_with_failures",
            "budget": {"limit": 100000, "settled": 42, "pending": 0}}));
        assert_eq!(finished.status, MissionStatus::CompletedWithFailures);
        same::<MissionCompleted>(json!({"mission": "m-1"}));
        same::<MissionResumed>(json!({"mission": "m-1", "budget": {"limit": null, "settled": 10, "pending": 0},
            "voided": [], "recovering": []}));
        same::<MissionRecovered>(json!({"mission": "m-1", "budget": {"limit": 900, "settled": 10, "pending": 5},
            "voided": [3, 4], "recovering": [0, 2]}));
    }

    #[test]
    fn memory_payloads_read_and_write_as_journaled() {
        same::<MemoryAsserted>(json!({"mission": "m-1", "space": "mission:m-1", "subject": "policy:housing",
            "predicate": "income-limit", "value": "sealed:v1:00ff", "source": null, "valid_from": 1767225600000000_i64,
            "valid_to": null, "fact": 1, "superseded": [], "remainders": []}));
        same::<MemoryErased>(json!({"subject": "person:1", "versions": 3, "postings": 12, "reason": "request"}));
    }

    #[test]
    fn task_payloads_read_and_write_as_journaled() {
        let started: TaskStarted = same(json!({"mission": "m-1", "task": 0, "case": "c0", "origin": "inline",
            "agent": "worker", "module_blake3": "ef56", "input": {"id": "c0", "amount": 5, "_model": "smollm2-135m"},
            "clock_start_us": 1767225600000000_i64, "seed": "00112233"}));
        assert_eq!(started.input["amount"], 5);
        // Decided by the agent, by a reviewer, by a timeout.
        let by_agent: TaskDecided = same(json!({"mission": "m-1", "task": 0, "case": "c0", "outcome": "eligible",
            "decided_by": "agent", "proposal_seq": 9}));
        assert_eq!((by_agent.proposal_seq, by_agent.gate_seq, by_agent.edited), (Some(9), None, None));
        same::<TaskDecided>(json!({"mission": "m-1", "task": 1, "case": "c1", "outcome": "rejected",
            "decided_by": "reviewer:k1", "gate_seq": 20, "edited": false}));
        same::<TaskDecided>(json!({"mission": "m-1", "task": 2, "case": "c2", "outcome": "timed_out",
            "decided_by": "timeout", "gate_seq": 21}));
        same::<TaskFailed>(json!({"mission": "m-1", "task": 0, "case": "c0", "code": "trap",
            "message": "wasm trap: unreachable"}));
        same::<TaskSkipped>(json!({"mission": "m-1", "task": 3, "case": "c3", "reason": "budget_exhausted"}));
        same::<TaskDeferred>(json!({"mission": "m-1", "task": 3, "case": "c3", "reason": "budget_exhausted",
            "settled": 18, "result": "eligible"}));
        same::<TaskRecovered>(json!({"mission": "m-1", "task": 3, "case": "c3", "started_seq": 40, "replaying": 2}));
        same::<TaskParked>(json!({"mission": "m-1", "task": 3, "case": "c3", "gate_id": "g-1"}));
        same::<TaskParked>(json!({"mission": "m-1", "task": 3, "case": "c3", "delegation": "d-1"}));
        let proposed: TaskProposed = same(json!({"mission": "m-1", "task": 0, "case": "c0",
            "decision": {"outcome": "eligible", "reason": "under the limit", "details": {"amount": 5}}}));
        assert_eq!(proposed.decision.details["amount"], 5);
    }

    #[test]
    fn delegation_payloads_read_and_write_in_every_shape() {
        // Accepted (children with task indices and budgets) and refused.
        let accepted: TaskDelegated = same(json!({"mission": "m-1", "task": 0, "case": "c0", "delegation": "d-1",
            "depth": 1, "children": [
                {"agent": "checker", "input_blake3": "ab", "cap": 50, "task": 7, "budget": 40},
                {"agent": "lead", "input_blake3": "cd", "cap": null, "task": 8, "budget": null}]}));
        assert_eq!(accepted.children[0].task, Some(7));
        same::<TaskDelegated>(json!({"mission": "m-1", "task": 0, "case": "c0", "delegation": null, "depth": 5,
            "children": [{"agent": "lead", "input_blake3": "ab", "cap": null, "task": null, "budget": null}],
            "refused": "too deep"}));
        let joined: TaskJoined = same(json!({"mission": "m-1", "task": 0, "case": "c0", "delegation": "d-1",
            "delegated_seq": 12, "results": [
                {"task": 7, "agent": "checker", "status": "decided", "outcome": "ok", "reason": "fine",
                 "details": {"n": 1}},
                {"task": 8, "agent": "lead", "status": "failed", "code": "trap", "message": "unreachable"}]}));
        assert_eq!(joined.results[1].code.as_deref(), Some("trap"));
        let child: TaskStarted = same(json!({"mission": "m-1", "task": 7, "case": "c0/checker-7",
            "origin": "delegation:d-1", "agent": "checker", "module_blake3": "ef", "input": {"x": 1},
            "clock_start_us": 5, "seed": "00", "parent": {"task": 0, "delegation": "d-1", "depth": 1}}));
        assert_eq!(child.parent.map(|p| p.task), Some(0));
    }

    #[test]
    fn gate_payloads_read_and_write_in_every_shape() {
        // A condition met, an agent's question, a budget gate.
        same::<GateRequested>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "why": {"field": "case.amount"}, "proposal_seq": 9, "reviewers": [], "quorum": 1}));
        same::<GateRequested>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "why": {"field": "case.amount", "unevaluable": "no field `amount`"}, "proposal_seq": 9,
            "reviewers": ["k1"], "quorum": 1}));
        same::<GateRequested>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-2", "gate": "ask",
            "why": {"requested_by": "agent", "reason": "unsure", "waiting": true}, "reviewers": [], "quorum": 1}));
        let budget: GateRequested = same(json!({"mission": "m-1", "gate_id": "g-3", "gate": "budget",
            "why": {"budget_exhausted": {"limit": 100, "settled": 98, "pending": 0}},
            "budget": {"account": "m-1", "amount": 500}, "reviewers": ["k1"], "quorum": 1}));
        assert_eq!((budget.task, budget.budget.map(|b| b.amount)), (None, Some(500)));
        same::<GateReminder>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "deadline_us": 99, "reviewers": ["k1"]}));
        same::<GateReminder>(json!({"mission": "m-1", "gate_id": "g-3", "gate": "budget", "deadline_us": 99,
            "reviewers": []}));
        same::<GateEscalated>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "from": ["k1"], "to": ["k3"], "deadline_us": 199}));
        same::<GateTimedOut>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "then": "deny", "deadline_us": 199}));
        same::<GateRefused>(json!({"gate_id": "g-1", "key_id": "k9", "public_key": "aa", "verdict": "approved",
            "reason": "not a reviewer"}));
        let repeated: GateRefused = same(json!({"gate_id": "g-1", "key_id": "k9", "public_key": "aa",
            "verdict": "rejected", "reason": "closed", "repeated": 40, "first_us": 5, "last_us": 9}));
        assert_eq!(repeated.repeated, Some(40));
        // A case's gate (edited, with a note) and a budget gate approved
        // and rejected (`budget` null, not absent).
        let edited: GateDecided = same(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1",
            "gate": "big", "verdict": "approved", "note": "checked", "requested_seq": 10, "votes": [11],
            "quorum": 2, "edits": {"outcome": {"from": "eligible", "to": "refer"}}}));
        assert_eq!(edited.budget, None);
        same::<GateDecided>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "verdict": "rejected", "note": null, "requested_seq": 10, "votes": [], "quorum": 1, "edits": {}}));
        same::<GateDecided>(json!({"mission": "m-1", "gate_id": "g-3", "gate": "budget", "note": null,
            "requested_seq": 30, "quorum": 1, "verdict": "approved", "budget": {"account": "m-1", "amount": 400},
            "votes": []}));
        let rejected: GateDecided = same(json!({"mission": "m-1", "gate_id": "g-3", "gate": "budget",
            "note": "no", "requested_seq": 30, "quorum": 1, "verdict": "rejected", "budget": null, "votes": []}));
        assert_eq!(rejected.budget, Some(None));
        same::<GateVoted>(json!({"mission": "m-1", "task": 0, "case": "c0", "gate_id": "g-1", "gate": "big",
            "verdict": "approved", "note": null, "edits": {"reason": "fine"}, "approvals": 1, "quorum": 2,
            "requested_seq": 10}));
        same::<GateVoted>(json!({"mission": "m-1", "gate_id": "g-3", "gate": "budget", "note": null,
            "requested_seq": 30, "quorum": 2, "verdict": "approved", "approvals": 1,
            "budget": {"account": "m-1", "amount": 300}}));
    }

    #[test]
    fn host_infer_reads_and_writes_answered_refused_and_failed() {
        let answered: HostInfer = same(json!({"mission": "m-1", "task": 0, "model": "smollm2-135m",
            "routed_to": null, "failover_refused": null, "messages": messages(), "max_tokens": 8,
            "reservation": 4, "text": "scripted reply 1", "prompt_tokens": 12, "completion_tokens": 3,
            "cost": 18, "cost_uncapped": 18}));
        assert_eq!((answered.routed_to, answered.cost), (Some(None), Some(18)));
        same::<HostInfer>(json!({"mission": "m-1", "task": 0, "model": "small", "routed_to": "frontier",
            "failover_refused": null, "messages": messages(), "max_tokens": 8, "reservation": 4, "text": "",
            "prompt_tokens": 12, "completion_tokens": 0, "cost": 12, "cost_uncapped": null}));
        let refused: HostInfer = same(json!({"mission": "m-1", "task": 0, "model": "other",
            "messages": messages(), "max_tokens": 8, "refused": "model `other` is not available to this agent"}));
        assert_eq!((refused.routed_to, refused.reservation), (None, None));
        same::<HostInfer>(json!({"mission": "m-1", "task": 0, "model": "smollm2-135m", "routed_to": null,
            "failover_refused": "failover to `f` refused: restricted data never leaves the host",
            "messages": messages(), "max_tokens": 8, "reservation": 4, "error": "timed out"}));
    }

    #[test]
    fn memory_calls_read_and_write_answered_and_refused() {
        let fact = json!({"id": 1, "space": "mission:m-1", "subject": "policy:housing", "predicate": "limit",
            "value": "sealed:v1:00ff", "source": null, "valid_from": 5, "valid_to": null, "recorded_at": 6,
            "superseded_at": null});
        let recalled: HostRecall = same(json!({"subject": "policy:housing", "asked_valid_at": null,
            "mission": "m-1", "task": 0, "spaces": ["mission:m-1"], "valid_at": 77, "known_at": null,
            "facts": [fact], "truncated": false}));
        assert_eq!((recalled.valid_at, recalled.known_at), (Some(Some(77)), Some(None)));
        same::<HostRecall>(json!({"subject": "person:1", "asked_valid_at": 5, "mission": "m-1", "task": 0,
            "spaces": ["mission:m-1"], "valid_at": 5, "known_at": null, "facts": [], "truncated": false,
            "erased": 2}));
        same::<HostRecall>(json!({"subject": "x", "asked_valid_at": null, "mission": "m-1", "task": 0,
            "refused": "storage said no"}));
        let mut scored = fact.clone();
        scored["score"] = json!(1_250_000);
        let query = json!({"space": "", "subject": "", "predicate": "", "words": "income limit",
            "valid_at": null, "known_at": null, "limit": 0});
        same::<HostQuery>(json!({"query": query, "mission": "m-1", "task": 0, "spaces": ["mission:m-1"],
            "valid_at": null, "known_at": null, "facts": [scored], "truncated": true}));
        same::<HostQuery>(json!({"query": query, "mission": "m-1", "task": 0,
            "refused": "memory space `hr` is outside this agent's scope"}));
        same::<HostRemember>(json!({"mission": "m-1", "task": 0, "subject": "case:c0", "predicate": "triaged-by",
            "asked_valid_from": null, "value": "sealed:v1:00ff", "valid_from": 8, "space": "mission:m-1",
            "fact": 4, "superseded": [2], "remainders": []}));
        let refused: HostRemember = same(json!({"mission": "m-1", "task": 0, "subject": "person:1",
            "predicate": "p", "asked_valid_from": 3, "value": null, "refused": "subject `person:1` was erased"}));
        assert_eq!((refused.value, refused.fact), (None, None));
    }

    #[test]
    fn other_host_calls_read_and_write_as_journaled() {
        same::<HostLog>(json!({"mission": "m-1", "task": 0, "message": "triage[rust] c-1"}));
        same::<HostReview>(json!({"mission": "m-1", "task": 0, "gate": "big", "reason": "unsure"}));
        same::<HostReview>(json!({"mission": "m-1", "task": 0, "gate": "nope", "reason": "unsure",
            "refused": "gate `nope` is not declared by this mission (declared: none)"}));
        same::<HostAwait>(json!({"mission": "m-1", "task": 0, "gate": "big", "reason": "unsure", "gate_id": "g-2"}));
        same::<HostAwait>(json!({"mission": "m-1", "task": 0, "gate": "nope", "reason": "r",
            "refused": "gate `nope` is not declared"}));
        same::<DataLeftHost>(json!({"mission": "m-1", "task": 0, "model": "frontier", "endpoint": "https://x",
            "remote_model": "big-1", "tier": "internal", "prompt_bytes": 120, "prompt_blake3": "9a",
            "reservation": 4}));
    }

    #[test]
    fn gateway_payloads_read_and_write_as_journaled() {
        same::<GatewayKeyIssued>(json!({"key_id": "gk-1", "name": "app", "account": "gateway:app", "limit": 1000}));
        same::<GatewayKeyRevoked>(json!({"key_id": "gk-1", "name": "app", "account": "gateway:app",
            "reason": "leaked"}));
        same::<GatewayStarted>(json!({"key_id": "gk-1", "account": "gateway:app", "model": "smollm2-135m",
            "messages": messages(), "max_tokens": 16, "prompt_tokens": 12, "reservation": 5, "reserved": 44}));
        same::<GatewayCompletion>(json!({"key_id": "gk-1", "account": "gateway:app", "model": "smollm2-135m",
            "messages": messages(), "max_tokens": 16, "text": "hi", "prompt_tokens": 12, "completion_tokens": 1,
            "cost": 14, "reservation": 5}));
        same::<GatewayCompletion>(json!({"key_id": "gk-1", "account": "gateway:app", "model": "smollm2-135m",
            "started_seq": 30, "max_tokens": 16, "text": "hi", "prompt_tokens": 12, "completion_tokens": 1,
            "cost": 14, "reservation": 5}));
        same::<GatewayInterrupted>(json!({"key_id": "gk-1", "account": "gateway:app", "reservation": 5,
            "started_seq": 30, "reserved": 44, "cost": 44, "expired": false, "reason": "client went away"}));
        same::<GatewayRefused>(json!({"key_id": "gk-1", "account": "gateway:app", "status": 402,
            "code": "insufficient_quota", "reason": "over budget"}));
        same::<GatewayRefused>(json!({"key_id": "gk-1", "account": "gateway:app", "status": 503,
            "code": "model_error", "reason": "boom", "reservation": 5}));
        same::<GatewayRefusals>(json!({"from_us": 1, "to_us": 60000001, "journaled_per_key_max": 10,
            "count": 31, "keys": [{"key_id": "gk-1", "account": "gateway:app", "count": 31,
            "codes": {"rate_limit_exceeded": 30, "insufficient_quota": 1}}], "untracked": 0}));
    }

    #[test]
    fn decode_names_the_entry_and_what_is_wrong() {
        let e = entry(Kind::TaskFailed, &json!({"mission": "m-1", "task": 0}));
        let err = decode::<TaskStarted>(&e).expect_err("another kind");
        assert!(matches!(err, EntryError::WrongKind { seq: 7, expected: Kind::TaskStarted, .. }), "{err}");
        let err = decode::<TaskFailed>(&e).expect_err("fields missing");
        assert!(err.to_string().contains("entry 7 (`task.failed`)") && err.to_string().contains("case"), "{err}");
        // A wrong type is refused, not coerced.
        let e = entry(Kind::HostLog, &json!({"mission": "m-1", "task": "0", "message": "x"}));
        assert!(matches!(decode::<HostLog>(&e), Err(EntryError::Payload { .. })));
        // Extra fields are read past (a later version may add some), but
        // the round trip notices them.
        let e = entry(Kind::HostLog, &json!({"mission": "m-1", "task": 0, "message": "x", "level": "info"}));
        assert_eq!(decode::<HostLog>(&e).expect("extra fields are tolerated").message, "x");
        let err = round_trip(&e).expect_err("the extra field is lost");
        assert!(matches!(err, EntryError::Differs { seq: 7, kind: Kind::HostLog, .. }), "{err}");
        // null and absent are different payloads.
        let e = entry(
            Kind::HostInfer,
            &json!({"mission": "m-1", "task": 0, "model": "m", "messages": [],
            "max_tokens": 1, "refused": "no", "routed_to": null}),
        );
        assert!(matches!(round_trip(&e), Ok(())), "a present null is kept");
        let e = entry(
            Kind::TaskDecided,
            &json!({"mission": "m-1", "task": 0, "case": "c", "outcome": "o",
            "decided_by": "agent", "gate_seq": null}),
        );
        assert!(matches!(round_trip(&e), Err(EntryError::Differs { .. })), "an absent field is not written null");
        let mut unknown = entry(Kind::HostLog, &json!({}));
        unknown.kind = "task.exploded".into();
        assert!(matches!(round_trip(&unknown), Err(EntryError::UnknownKind { seq: 7, .. })));
    }

    #[test]
    fn append_writes_the_struct_under_its_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = ledger::Ledger::open(&dir.path().join("l.redb")).expect("ledger");
        let conductor = Keypair::generate(identity::Role::Conductor);
        ledger.write(|t| t.genesis(&conductor, json!({}), 1)).expect("genesis");
        let payload = MissionCompleted { mission: "m-1".into() };
        let (seq, _) = ledger.write(|t| append(t, &conductor, &payload, 2)).expect("appended");
        let read = ledger.entries(seq, 1).expect("entries");
        let e = read.first().expect("the entry");
        assert_eq!((e.kind.as_str(), e.payload_json()), ("mission.completed", json!({"mission": "m-1"})));
        assert_eq!(decode::<MissionCompleted>(e).expect("decodes"), payload);
    }
}

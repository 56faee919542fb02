//! The embedder's side of the agent world, in plain Rust types so that no
//! wasmtime type crosses this crate's API.

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// An inference request as the agent made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
}

/// A model's answer and its token counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A fact as agents see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub subject: String,
    pub predicate: String,
    pub value: String,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub recorded_at: i64,
}

/// A question to the memory, as the agent asked it (`query-memory`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryQuery {
    /// "" or "mission": the agent's own mission; else a shared space.
    pub space: String,
    /// "" when searching by words.
    pub subject: String,
    /// "" for every predicate.
    pub predicate: String,
    /// "" unless searching by words.
    pub words: String,
    pub valid_at: Option<i64>,
    pub known_at: Option<i64>,
    /// 0: the host's own bound.
    pub limit: u32,
}

/// The agent's proposed decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: String,
    pub reason: String,
    /// A JSON object, as text.
    pub details: String,
}

/// A reviewer's answer to `await-review`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub approved: bool,
    pub note: String,
    pub reviewer: String,
}

/// What the host does with an `await-review` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewAnswer {
    /// A reviewer has decided: the agent gets the answer and carries on.
    Decided(Review),
    /// Refused at once (the agent gets the text as an error).
    Refused(String),
    /// Nobody has decided yet: the cell stops with
    /// [`crate::CellFailure::Parked`] naming this gate id, and holds
    /// nothing while it waits.
    Park { gate_id: String },
}

/// One request of a `delegate` call: a sub-task for another agent of the
/// mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The child's agent, as the mission names it.
    pub agent: String,
    /// The child's input: a JSON object, as text (the host checks it).
    pub input: String,
    /// The most the child may spend; none: what the parent has left.
    pub budget: Option<u64>,
}

/// Why a child ended without a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegationError {
    /// Its result was refused (outside the mission's `decisions:`, or the
    /// journal refused it).
    Refused(String),
    /// It ran out of budget, or never started for lack of it.
    Budget(String),
    /// It trapped, hit a limit, or returned an error.
    Failed(String),
    /// Its wall clock ran out.
    TimedOut(String),
}

/// What the host does with a `delegate` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegateAnswer {
    /// Every child has ended: one result per request, in order.
    Done(Vec<Result<Decision, DelegationError>>),
    /// Refused at once (the agent gets the text as the call's error).
    Refused(String),
    /// Children are running: the cell stops with
    /// [`crate::CellFailure::Delegated`] naming this delegation id, and
    /// holds nothing while they run.
    Park { delegation: String },
}

/// Answers an agent's host calls. Called on the cell's thread; a call may
/// block (inference does). Errors are returned to the agent as text, which
/// it may handle; they never trap the cell.
pub trait CellHost: Send {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String>;
    fn recall(&mut self, subject: String, valid_at: Option<i64>) -> Result<Vec<Fact>, String>;
    /// The agent asks the memory by subject, predicate or words. Hosts
    /// without a memory refuse it (the default).
    fn query_memory(&mut self, query: MemoryQuery) -> Result<Vec<Fact>, String> {
        let _ = query;
        Err("this host has no memory to query".into())
    }
    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> Result<(), String>;
    /// The agent asks for a human review of its decision under `gate`.
    /// Refuse (with a reason the agent can read) a gate the mission does
    /// not declare.
    fn request_review(&mut self, gate: String, reason: String) -> Result<(), String>;
    /// The agent waits for a reviewer's answer under `gate`. Hosts that
    /// cannot park a task refuse it (the default).
    fn await_review(&mut self, gate: String, reason: String) -> ReviewAnswer {
        let _ = reason;
        ReviewAnswer::Refused(format!("this host cannot wait for a review (gate `{gate}`)"))
    }
    /// The agent hands sub-tasks to other agents and waits for them all.
    /// Hosts that cannot run child tasks refuse it (the default).
    fn delegate(&mut self, requests: Vec<Delegation>) -> DelegateAnswer {
        let _ = requests;
        DelegateAnswer::Refused("this host cannot delegate".into())
    }
    /// Bytes `offset..offset + max_bytes` of the case document `name`
    /// (added in WIT 0.2.4). Hosts without documents refuse.
    fn read_document(&mut self, name: String, offset: u64, max_bytes: u32) -> Result<Vec<u8>, String> {
        let _ = (name, offset, max_bytes);
        Err("this host has no documents".into())
    }
    fn log(&mut self, message: String);
}

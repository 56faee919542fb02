//! Write a conductor agent in Rust.
//!
//! An agent is a WebAssembly component (`wasm32-wasip2`) for the `agent`
//! world of `cells/wit/agent.wit` (package `conductor:agent@0.2.4`). This
//! crate generates the bindings once and adds a thin layer of helpers, so
//! an agent is a type with a `run` method:
//!
//! ```ignore
//! use conductor_agent::{Agent, Decision, log};
//!
//! struct Echo;
//!
//! impl Agent for Echo {
//!     fn run(input: String) -> Result<Decision, String> {
//!         log("echo");
//!         Ok(Decision::new("echo", input.chars().take(100).collect::<String>()))
//!     }
//! }
//!
//! conductor_agent::export_agent!(Echo);
//! ```
//!
//! Build it with `crate-type = ["cdylib"]` and
//! `cargo build --release --target wasm32-wasip2`.
//!
//! Every host call is metered, limited and journaled by the conductor:
//! an agent should treat each one as observable. Errors from the host
//! (budget refused, unknown gate, a limit reached) come back as `Err(text)`
//! for the agent to handle; exceeding a cell limit ends the task.
//!
//! An agent may hand sub-tasks to other agents of its mission (the ones its
//! `delegates_to` lists) with [`delegate`] and combine their decisions.
//! The task is parked while the children run and resumed by replay, so
//! the agent relies on nothing but the call's answer:
//!
//! ```ignore
//! use conductor_agent::{Agent, Decision, Delegation, DelegationError, delegate};
//!
//! struct Lead;
//!
//! impl Agent for Lead {
//!     fn run(_input: String) -> Result<Decision, String> {
//!         let requests = [
//!             Delegation::new("checker", r#"{"part": 1}"#),
//!             Delegation::new("checker", r#"{"part": 2}"#).with_budget(2_000),
//!         ];
//!         let mut decided = 0;
//!         for result in delegate(&requests)? {
//!             match result {
//!                 Ok(child) => decided += usize::from(child.outcome == "ok"),
//!                 Err(DelegationError::Budget(why)) => return Ok(Decision::new("undetermined", why)),
//!                 Err(other) => conductor_agent::log(&format!("a child ended without a decision: {other:?}")),
//!             }
//!         }
//!         Ok(Decision::new("done", format!("{decided} of {} parts ok", requests.len())))
//!     }
//! }
//!
//! conductor_agent::export_agent!(Lead);
//! ```

/// The generated bindings (kept in a module: `pub_export_macro` at the
/// crate root collides with the macro's own re-export).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "agent",
        path: "../wit",
        // Guests call `conductor_agent::export_agent!(T)`; the macro refers
        // to the bindings inside this crate.
        pub_export_macro: true,
        export_macro_name: "export_agent",
        default_bindings_module: "conductor_agent::bindings",
    });
}

pub use bindings::Decision;
/// What an agent implements: `run` handles one task's JSON input.
pub use bindings::Guest as Agent;
pub use bindings::conductor::agent::host;
pub use bindings::conductor::agent::types::{
    Completion, Delegation, DelegationError, Fact, MemoryQuery, Message, Review,
};
pub use bindings::export_agent;

impl Decision {
    /// A decision with no structured details.
    pub fn new(outcome: impl Into<String>, reason: impl Into<String>) -> Self {
        Decision { outcome: outcome.into(), reason: reason.into(), details: "{}".into() }
    }

    /// Attaches structured details: a JSON object, as text. Mission gates
    /// can test its fields as `decision.<field>`.
    pub fn with_details(mut self, json_object: impl Into<String>) -> Self {
        self.details = json_object.into();
        self
    }
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: "system".into(), content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: "user".into(), content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: "assistant".into(), content: content.into() }
    }
}

impl Delegation {
    /// A request for `agent` (one this agent's `delegates_to` lists) with
    /// `input`, a JSON object as text, spending at most what this task has
    /// left (within the child agent's `task_limit`).
    pub fn new(agent: impl Into<String>, input: impl Into<String>) -> Self {
        Delegation { agent: agent.into(), input: input.into(), budget: None }
    }

    /// Caps what the child may spend (refused at once when this task has
    /// less left).
    pub fn with_budget(mut self, budget: u64) -> Self {
        self.budget = Some(budget);
        self
    }
}

impl DelegationError {
    /// A stable name for the kind of error: "refused", "budget", "failed"
    /// or "timed_out".
    pub fn kind(&self) -> &'static str {
        match self {
            DelegationError::Refused(_) => "refused",
            DelegationError::Budget(_) => "budget",
            DelegationError::Failed(_) => "failed",
            DelegationError::TimedOut(_) => "timed_out",
        }
    }

    /// The host's explanation.
    pub fn message(&self) -> &str {
        match self {
            DelegationError::Refused(m)
            | DelegationError::Budget(m)
            | DelegationError::Failed(m)
            | DelegationError::TimedOut(m) => m,
        }
    }
}

/// Asks `model` (one the mission grants this agent) and returns its
/// completion. The conductor reserves the worst-case cost first and
/// settles the real one after.
pub fn infer(model: &str, messages: &[Message], max_tokens: u32) -> Result<Completion, String> {
    host::infer(model, messages, max_tokens)
}

/// Asks `model` one question (`system` may be empty) and returns the text.
pub fn ask(model: &str, system: &str, user: &str, max_tokens: u32) -> Result<String, String> {
    let mut messages = Vec::with_capacity(2);
    if !system.is_empty() {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(user));
    infer(model, &messages, max_tokens).map(|c| c.text)
}

/// Asks the memory: by subject (and predicate), or by words, in one space
/// ("" for the mission's own), as of any valid and transaction time.
/// Start from [`MemoryQuery`]'s fields; a space the mission does not let
/// this agent read is refused.
pub fn query_memory(query: &MemoryQuery) -> Result<Vec<Fact>, String> {
    host::query_memory(query)
}

/// Facts whose values contain `words`, best match first, in `space`
/// ("" for the mission's own), as known now, at most `limit` (0: the
/// host's bound).
pub fn search(space: &str, words: &str, limit: u32) -> Result<Vec<Fact>, String> {
    query_memory(&MemoryQuery {
        space: space.into(),
        subject: String::new(),
        predicate: String::new(),
        words: words.into(),
        valid_at: None,
        known_at: None,
        limit,
    })
}

/// Facts about `subject` as the world stands now.
pub fn recall(subject: &str) -> Result<Vec<Fact>, String> {
    host::recall(subject, None)
}

/// Facts about `subject` as the world stood at `valid_at` (Unix µs).
pub fn recall_at(subject: &str, valid_at: i64) -> Result<Vec<Fact>, String> {
    host::recall(subject, Some(valid_at))
}

/// The value of `subject`'s `predicate` now, if memory holds one.
pub fn recall_value(subject: &str, predicate: &str) -> Result<Option<String>, String> {
    Ok(recall(subject)?.into_iter().find(|f| f.predicate == predicate).map(|f| f.value))
}

/// Records that `subject`'s `predicate` is `value` from now on.
pub fn remember(subject: &str, predicate: &str, value: &str) -> Result<(), String> {
    host::remember(subject, predicate, value, None)
}

/// Asks for a human review of this task's decision under `gate` (one the
/// mission declares), whatever the gate's own condition says.
pub fn request_review(gate: &str, reason: &str) -> Result<(), String> {
    host::request_review(gate, reason)
}

/// Asks a human to review under `gate` and waits for the answer. The task
/// is parked meanwhile (no cell is kept); when a reviewer decides, the
/// conductor replays the task to this call and returns the answer here.
pub fn await_review(gate: &str, reason: &str) -> Result<Review, String> {
    host::await_review(gate, reason)
}

/// Hands sub-tasks to other agents of the mission and waits until every
/// one has ended; returns one result per request, in order: the child's
/// decision, or why it ended without one.
///
/// Each child runs in its own cell under its own agent key and spends from
/// this task's remaining budget (at most its request's budget and its
/// agent's `task_limit`). Meanwhile this task is parked like
/// [`await_review`]: its cell is torn down, and when the last child ends
/// the conductor replays the task to this call and returns the results
/// here. Keep nothing that replay would not rebuild.
///
/// `Err(text)`: the whole call was refused before anything ran (an agent
/// `delegates_to` does not list, a mission delegation limit, a budget above
/// what is left, an input that is not a JSON object).
pub fn delegate(requests: &[Delegation]) -> Result<Vec<Result<Decision, DelegationError>>, String> {
    host::delegate(requests)
}

/// Bytes of one of the case's documents (its input's `_documents` lists
/// them): from `offset`, at most `max_bytes` (1 MiB at most per call);
/// empty past the end. Each read is journaled with the document's hash.
pub fn read_document(name: &str, offset: u64, max_bytes: u32) -> Result<Vec<u8>, String> {
    host::read_document(name, offset, max_bytes)
}

/// A line for the operator's log (journaled; long lines are cut).
pub fn log(message: &str) {
    host::log(message)
}

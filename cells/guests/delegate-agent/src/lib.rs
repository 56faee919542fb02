//! `delegate-agent`: delegates sub-tasks as its JSON input asks and
//! combines the children's results, or plays a child (decides, traps,
//! spins). Cell and conductor tests use it for delegation, fan-out, budget
//! sharing and replay after a join. In order, for an input object:
//!
//! - `"spend": N`: one `infer(_model, [user: "spend"], N)` first; its
//!   completion is ignored, an error is kept as `details.infer_error`.
//! - `"trap": true`: traps (wasm `unreachable`); `"spin": true`: loops
//!   forever, until fuel or the wall clock stops it.
//! - `"delegate": [{"agent", "input", "budget"?}, ...]`: one `delegate`
//!   call (each `input` sent as JSON text); `"then_delegate"` (same shape):
//!   a second call after the first returns. A refused call decides
//!   `refused` with the host's text; otherwise `combined`, with
//!   `details.results` holding `{"outcome", "reason"}` per decided child
//!   and `{"error", "message"}` per other one, in order.
//! - `"await": "GATE"`: waits for a reviewer under that gate (the task
//!   parks), then decides as below with the review's verdict in
//!   `details.approved`.
//! - `"read": "NAME"`: reads the case document NAME whole with
//!   `read-document`, `chunk` bytes at a time (default 4, to exercise
//!   offsets), into `details.document` (as text) and `details.read_bytes`;
//!   a refusal is kept as `details.read_error`.
//! - otherwise decides `outcome` (default "ok"), `reason` (default "done")
//!   and `details` (default `{}`) from the input.

use std::hint::black_box;

use conductor_agent::{
    Agent, Decision, Delegation, DelegationError, Message, await_review, delegate, infer, read_document,
};
use serde_json::{Map, Value, json};

/// Used when the conductor did not inject `_model` into the input.
const DEFAULT_MODEL: &str = "smollm2-135m";

struct DelegateAgent;

impl Agent for DelegateAgent {
    fn run(input: String) -> Result<Decision, String> {
        // Anything but an object is treated as an empty one: this agent
        // tests delegation, not parsing.
        let input = match serde_json::from_str::<Value>(&input) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut extra = Map::new();
        if let Some(tokens) = input.get("spend").and_then(Value::as_u64) {
            let model = input.get("_model").and_then(Value::as_str).unwrap_or(DEFAULT_MODEL);
            let max_tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
            if let Err(error) = infer(model, &[Message::user("spend")], max_tokens) {
                extra.insert("infer_error".into(), Value::String(error));
            }
        }
        if input.get("trap").and_then(Value::as_bool) == Some(true) {
            core::arch::wasm32::unreachable()
        }
        if input.get("spin").and_then(Value::as_bool) == Some(true) {
            let mut counter: u64 = 0;
            loop {
                // Opaque to the optimiser, so the loop really burns fuel.
                counter = black_box(counter.wrapping_add(1));
            }
        }
        if input.contains_key("delegate") {
            return Ok(delegate_all(&input, extra));
        }
        if let Some(gate) = input.get("await").and_then(Value::as_str) {
            match await_review(gate, "a child asks") {
                Ok(review) => extra.insert("approved".into(), Value::Bool(review.approved)),
                Err(error) => extra.insert("await_error".into(), Value::String(error)),
            };
        }
        if let Some(name) = input.get("read").and_then(Value::as_str) {
            let chunk = input.get("chunk").and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok()).unwrap_or(4);
            let mut bytes = Vec::new();
            loop {
                match read_document(name, bytes.len() as u64, chunk) {
                    Ok(part) if part.is_empty() => break,
                    Ok(part) => bytes.extend(part),
                    Err(error) => {
                        extra.insert("read_error".into(), Value::String(error));
                        break;
                    }
                }
            }
            extra.insert("read_bytes".into(), json!(bytes.len()));
            extra.insert("document".into(), Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        }
        let outcome = input.get("outcome").and_then(Value::as_str).unwrap_or("ok");
        let reason = input.get("reason").and_then(Value::as_str).unwrap_or("done");
        let mut details = match input.get("details") {
            Some(Value::Object(d)) => d.clone(),
            _ => Map::new(),
        };
        details.extend(extra);
        Ok(Decision::new(outcome, reason).with_details(Value::Object(details).to_string()))
    }
}

/// Runs the `delegate` call, then the `then_delegate` one if asked, and
/// combines every child's result.
fn delegate_all(input: &Map<String, Value>, mut details: Map<String, Value>) -> Decision {
    let mut results = Vec::new();
    for key in ["delegate", "then_delegate"] {
        let Some(asked) = input.get(key) else { continue };
        match delegate(&requests(asked)) {
            Ok(children) => results.extend(children),
            Err(why) => {
                details.insert("results".into(), Value::Array(results.iter().map(result_json).collect()));
                return Decision::new("refused", why).with_details(Value::Object(details).to_string());
            }
        }
    }
    let reason = summary(&results);
    details.insert("results".into(), Value::Array(results.iter().map(result_json).collect()));
    Decision::new("combined", reason).with_details(Value::Object(details).to_string())
}

/// The requests an input array describes (anything else: none).
fn requests(asked: &Value) -> Vec<Delegation> {
    let Some(items) = asked.as_array() else { return Vec::new() };
    items
        .iter()
        .map(|item| Delegation {
            agent: item.get("agent").and_then(Value::as_str).unwrap_or_default().to_owned(),
            input: item.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
            budget: item.get("budget").and_then(Value::as_u64),
        })
        .collect()
}

fn result_json(result: &Result<Decision, DelegationError>) -> Value {
    match result {
        Ok(d) => json!({ "outcome": d.outcome, "reason": d.reason }),
        Err(e) => json!({ "error": e.kind(), "message": e.message() }),
    }
}

/// "3 children: 2 decided, 1 failed": counts by kind, in a fixed order.
fn summary(results: &[Result<Decision, DelegationError>]) -> String {
    let mut counts = [("decided", 0usize), ("refused", 0), ("budget", 0), ("failed", 0), ("timed_out", 0)];
    for result in results {
        let kind = match result {
            Ok(_) => "decided",
            Err(e) => e.kind(),
        };
        if let Some(slot) = counts.iter_mut().find(|(k, _)| *k == kind) {
            slot.1 += 1;
        }
    }
    let parts: Vec<String> = counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{n} {k}")).collect();
    let noun = if results.len() == 1 { "child" } else { "children" };
    if parts.is_empty() { format!("0 {noun}") } else { format!("{} {noun}: {}", results.len(), parts.join(", ")) }
}

conductor_agent::export_agent!(DelegateAgent);

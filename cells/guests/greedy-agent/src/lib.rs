//! `greedy-agent`: spends inference until the host says no.
//!
//! Used to test budget exhaustion: the host must refuse a call once the
//! mission budget cannot cover its worst case, and must report that as an
//! `Err` the guest can handle, not as a trap. The agent then completes
//! normally, so a test can assert both the refusal text and the call count.

use conductor_agent::{Agent as Guest, Decision};

use conductor_agent::host;
use conductor_agent::Message;

/// Used when the conductor did not inject `_model` into the input.
const DEFAULT_MODEL: &str = "smollm2-135m";
/// Upper bound so a host that never refuses still sees the task finish.
const MAX_CALLS: u32 = 1000;
/// Small on purpose: each call should cost little so many fit in a budget.
const MAX_TOKENS: u32 = 16;

struct GreedyAgent;

/// The model the conductor chose, from the `_model` input field.
///
/// Input that is not JSON is tolerated: this agent tests budgets, not
/// parsing, so it falls back to the default model instead of failing.
fn model_from_input(input: &str) -> String {
    serde_json::from_str::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("_model")?.as_str().map(str::to_owned))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned())
}

impl Guest for GreedyAgent {
    fn run(input: String) -> Result<Decision, String> {
        let model = model_from_input(&input);
        let messages = [Message {
            role: "user".to_owned(),
            content: "Say hello.".to_owned(),
        }];

        let mut calls: u32 = 0;
        while calls < MAX_CALLS {
            match host::infer(&model, &messages, MAX_TOKENS) {
                Ok(_) => calls += 1,
                Err(err) => {
                    host::log(&format!("greedy: refused after {calls} calls"));
                    return Ok(Decision {
                        outcome: "spent".to_owned(),
                        reason: format!("{calls} calls then: {err}"),
                        details: format!("{{\"calls\":{calls},\"refused\":true}}"),
                    });
                }
            }
        }

        host::log(&format!("greedy: host never refused in {MAX_CALLS} calls"));
        Ok(Decision {
            outcome: "spent".to_owned(),
            reason: format!("{calls} calls, never refused"),
            details: format!("{{\"calls\":{calls},\"refused\":false}}"),
        })
    }
}

conductor_agent::export_agent!(GreedyAgent);

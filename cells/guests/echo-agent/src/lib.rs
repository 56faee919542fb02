//! `echo-agent`: the cheapest possible well-behaved agent.
//!
//! Cell tests use it to exercise instantiation, the `log` import and the
//! decision round-trip without paying for inference.

wit_bindgen::generate!({
    world: "agent",
    path: "../../wit",
});

use conductor::agent::host;
// `Decision` is re-exported at the root by the world's `use types.{decision}`.

/// Longest reason we echo; keeps journal entries small whatever the input.
const MAX_REASON_CHARS: usize = 100;

struct EchoAgent;

impl Guest for EchoAgent {
    fn run(input: String) -> Result<Decision, String> {
        host::log("echo");
        // Truncate on a char boundary so multi-byte input never splits.
        let reason: String = input.chars().take(MAX_REASON_CHARS).collect();
        Ok(Decision {
            outcome: "echo".to_string(),
            reason,
            details: "{}".to_string(),
        })
    }
}

export!(EchoAgent);

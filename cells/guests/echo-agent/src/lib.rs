//! `echo-agent`: the cheapest possible well-behaved agent, on the guest SDK.
//!
//! Cell tests use it to exercise instantiation, the `log` import and the
//! decision round-trip without paying for inference.

use conductor_agent::{Agent, Decision, log};

/// Longest reason we echo; keeps journal entries small whatever the input.
const MAX_REASON_CHARS: usize = 100;

struct EchoAgent;

impl Agent for EchoAgent {
    fn run(input: String) -> Result<Decision, String> {
        log("echo");
        // Truncate on a char boundary so multi-byte input never splits.
        Ok(Decision::new("echo", input.chars().take(MAX_REASON_CHARS).collect::<String>()))
    }
}

conductor_agent::export_agent!(EchoAgent);

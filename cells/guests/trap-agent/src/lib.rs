//! `trap-agent`: a hostile guest that traps on entry.
//!
//! Cell tests use it to check that a guest trap becomes a clean task
//! failure in the host (no panic, no poisoned instance reused, journal
//! entry written) rather than taking the conductor down.

use conductor_agent::{Agent as Guest, Decision};

struct TrapAgent;

impl Guest for TrapAgent {
    fn run(_input: String) -> Result<Decision, String> {
        // The raw `unreachable` instruction, not a Rust panic: the trap must
        // come from the VM itself, with no panic hook or stderr write first.
        core::arch::wasm32::unreachable()
    }
}

conductor_agent::export_agent!(TrapAgent);

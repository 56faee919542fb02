//! `spin-agent`: a hostile guest that never returns.
//!
//! Cell tests use it to check that fuel or epoch deadlines interrupt a
//! runaway guest; it makes no host calls, so only the VM can stop it.

use std::hint::black_box;

use conductor_agent::{Agent as Guest, Decision};

struct SpinAgent;

impl Guest for SpinAgent {
    fn run(_input: String) -> Result<Decision, String> {
        let mut counter: u64 = 0;
        loop {
            // `black_box` makes the counter opaque to the optimiser, so the
            // loop body survives LTO and really burns instructions (fuel).
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

conductor_agent::export_agent!(SpinAgent);

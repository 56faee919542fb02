//! `hostile-agent`: one module whose behaviour each task chooses, so a
//! single mission can mix well-behaved tasks with hostile ones and show
//! that the hostile ones fail alone.
//!
//! The task input's `"behave"` field selects: `echo` (default), `trap`,
//! `spin` (burns fuel forever), `spin-calls` (floods host calls), `grow`
//! (allocates until memory runs out), `panic`.

wit_bindgen::generate!({
    world: "agent",
    path: "../../wit",
});

use conductor::agent::host;

struct HostileAgent;

fn behaviour(input: &str) -> &str {
    // The conductor serialises inputs compactly, so a substring match is
    // enough and keeps this guest free of a JSON dependency.
    for mode in ["spin-calls", "spin", "trap", "grow", "panic"] {
        if input.contains(&format!("\"behave\":\"{mode}\"")) {
            return mode;
        }
    }
    "echo"
}

impl Guest for HostileAgent {
    fn run(input: String) -> Result<Decision, String> {
        match behaviour(&input) {
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("the agent panicked on purpose"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            "spin-calls" => loop {
                host::log("flood");
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            _ => {
                host::log("echo");
                Ok(Decision {
                    outcome: "echo".to_string(),
                    reason: input.chars().take(100).collect(),
                    details: "{}".to_string(),
                })
            }
        }
    }
}

export!(HostileAgent);

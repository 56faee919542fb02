//! `hostile-agent`: one module whose behaviour each task chooses, so a
//! single mission can mix well-behaved tasks with hostile ones and show
//! that the hostile ones fail alone.
//!
//! The task input's `"behave"` field selects:
//!
//! - `echo` (default): a well-behaved decision;
//! - `trap`: the wasm `unreachable` instruction;
//! - `panic`: a Rust panic (a trap once compiled with `panic = "abort"`);
//! - `spin`: burns fuel forever;
//! - `spin-calls`: floods host calls;
//! - `grow`: allocates until memory runs out;
//! - `recurse`: recurses without bound (stack overflow);
//! - `huge-arg`: one host call with an 8 MiB argument;
//! - `escape`: tries files, sockets, environment and arguments through
//!   WASI, and reports what it got; the decision's details say which
//!   attempts were refused;
//! - `clock-random`: reads the clocks and random numbers and returns them,
//!   so a test can check they come from the task's journaled seed;
//! - `review`: asks for a review under the input's `gate` field (default
//!   `second-look`) and decides `echo`, or `review-refused` with the
//!   host's answer as the reason;
//! - `await`: logs, waits for a reviewer under `second-look`
//!   (`await-review`, so the task parks), logs again, and decides
//!   `approved` or `rejected` with "<reviewer>: <note>" as the reason;
//! - `memory`: if the input has `"remember":"<value>"`, remembers it as
//!   `<subject> <predicate>` first; then asks the memory (`query-memory`)
//!   with the input's `space`, `subject`, `predicate` and `words` string
//!   fields, and decides `recalled` with the values found (`|`-joined) as
//!   the reason, or `memory-refused` with the host's answer.

use conductor_agent::{Agent, Decision, host, log};

struct HostileAgent;

fn behaviour(input: &str) -> &str {
    // The conductor serialises inputs compactly, so a substring match is
    // enough and keeps this guest free of a JSON dependency.
    for mode in [
        "spin-calls",
        "spin",
        "trap",
        "grow",
        "panic",
        "recurse",
        "huge-arg",
        "escape",
        "clock-random",
        "review",
        "await",
        "memory",
    ] {
        if input.contains(&format!("\"behave\":\"{mode}\"")) {
            return mode;
        }
    }
    "echo"
}

/// Recursion the optimiser cannot turn into a loop, with no locals in
/// linear memory, so it exhausts the engine's wasm stack (a
/// `stack_overflow`) rather than Rust's in-memory shadow stack.
#[inline(never)]
fn deeper(n: u64) -> u64 {
    if core::hint::black_box(n) == u64::MAX {
        return n;
    }
    deeper(n + 1).wrapping_mul(3).wrapping_add(n)
}

/// The input's string field `name` (no escapes inside), or "".
fn field<'a>(input: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":\"");
    input.find(&key).map_or("", |at| {
        let rest = &input[at + key.len()..];
        rest.find('"').map_or("", |end| &rest[..end])
    })
}

fn memory(input: &str) -> Decision {
    let (subject, predicate) = (field(input, "subject"), field(input, "predicate"));
    let value = field(input, "remember");
    if !value.is_empty()
        && let Err(e) = host::remember(subject, predicate, value, None)
    {
        return Decision::new("memory-refused", e);
    }
    let query = conductor_agent::MemoryQuery {
        space: field(input, "space").into(),
        subject: subject.into(),
        predicate: if value.is_empty() { predicate.into() } else { String::new() },
        words: field(input, "words").into(),
        valid_at: None,
        known_at: None,
        limit: 0,
    };
    match conductor_agent::query_memory(&query) {
        Ok(facts) => {
            let values: Vec<String> = facts.into_iter().map(|f| f.value).collect();
            Decision::new("recalled", values.join("|"))
        }
        Err(e) => Decision::new("memory-refused", e),
    }
}

/// `"ok"` or `"refused: <error>"`, JSON-quoted.
fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "\"ok\"".to_string(),
        Err(e) => format!("\"refused: {}\"", e.to_string().replace('"', "'")),
    }
}

fn escape() -> Decision {
    let read = outcome(std::fs::read("/etc/passwd"));
    let write = outcome(std::fs::write("/tmp/escaped", b"x"));
    let list = outcome(std::fs::read_dir("/"));
    let tcp = outcome(std::net::TcpStream::connect("93.184.216.34:80"));
    let udp = outcome(std::net::UdpSocket::bind("0.0.0.0:0"));
    let lookup = outcome(std::net::ToSocketAddrs::to_socket_addrs("example.com:80"));
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let details = format!(
        "{{\"file_read\":{read},\"file_write\":{write},\"dir_list\":{list},\"tcp\":{tcp},\
         \"udp\":{udp},\"dns\":{lookup},\"env_vars\":{env},\"args\":{args}}}"
    );
    Decision::new("contained", "tried files, sockets, names, environment").with_details(details)
}

fn clock_random() -> Decision {
    use std::hash::{BuildHasher, Hasher};
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let t0 = std::time::Instant::now();
    let elapsed_ns = t0.elapsed().as_nanos();
    // std seeds HashMap keys from wasi:random.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(42);
    let random = hasher.finish();
    let details = format!("{{\"wall_us\":{wall},\"elapsed_ns\":{elapsed_ns},\"random\":\"{random:016x}\"}}");
    Decision::new("observed", "clock and randomness").with_details(details)
}

impl Agent for HostileAgent {
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
                log("flood");
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                let n = deeper(0);
                Ok(Decision::new("bottomless", format!("{n}")))
            }
            "huge-arg" => {
                let huge = "x".repeat(8 << 20);
                host::log(&huge);
                Ok(Decision::new("sent", "a huge argument"))
            }
            "escape" => Ok(escape()),
            "clock-random" => Ok(clock_random()),
            "await" => {
                // Park until a reviewer answers, then decide on the answer.
                log("before the gate");
                match conductor_agent::await_review("second-look", "a person must agree") {
                    Ok(review) => {
                        log("after the gate");
                        let outcome = if review.approved { "approved" } else { "rejected" };
                        Ok(Decision::new(outcome, format!("{}: {}", review.reviewer, review.note)))
                    }
                    Err(e) => Ok(Decision::new("review-refused", e)),
                }
            }
            "memory" => Ok(memory(&input)),
            "review" => {
                let gate = if input.contains("\"gate\":\"undeclared\"") { "undeclared" } else { "second-look" };
                match conductor_agent::request_review(gate, "the agent wants a second pair of eyes") {
                    Ok(()) => Ok(Decision::new("echo", "reviewed on request")),
                    Err(e) => Ok(Decision::new("review-refused", e)),
                }
            }
            _ => {
                log("echo");
                Ok(Decision::new("echo", input.chars().take(100).collect::<String>()))
            }
        }
    }
}

conductor_agent::export_agent!(HostileAgent);

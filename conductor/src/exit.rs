//! Exit statuses, so scripts can tell outcomes apart.

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
/// The input (mission file, arguments) is invalid; nothing ran.
pub const INVALID: u8 = 2;
/// The mission stopped because its budget ran out.
pub const BUDGET_EXHAUSTED: u8 = 3;
/// The journal failed verification.
pub const TAMPERED: u8 = 4;
/// A replayed task did not do what the journal says it did.
pub const DIVERGED: u8 = 5;
/// The mission ran to its end, but some of its tasks failed.
pub const TASKS_FAILED: u8 = 6;
/// The host could not do the work: a model file missing or not the
/// pinned one (found before anything ran), or the journal's storage
/// failed (a full disk) and the mission stopped with nothing unjournaled
/// given or charged. Fix the cause and run the same command again.
pub const INFRASTRUCTURE: u8 = 7;
/// Refused for now: an open mission's queue is full (run the same
/// command again shortly), or a server holds the data directory and the
/// command cannot run beside it (a second `serve`, `keys
/// rotate-conductor`: stop the server first).
pub const BUSY: u8 = 8;

/// Every status with its meaning, for `--help`: the one list, so the
/// help cannot leave a status out.
const MEANINGS: [(u8, &str); 9] = [
    (OK, "success"),
    (ERROR, "error (the message says what went wrong)"),
    (INVALID, "invalid input (a mission file, the arguments): nothing ran"),
    (BUDGET_EXHAUSTED, "out of budget: the mission is budget exhausted, paused or awaiting budget"),
    (TAMPERED, "the journal (or a module's signature) failed verification"),
    (DIVERGED, "a replayed task diverged from what the journal says it did"),
    (TASKS_FAILED, "the mission ran to its end but some tasks failed (status completed_with_failures)"),
    (
        INFRASTRUCTURE,
        "infrastructure: a model file is missing or not the pinned one, or the journal's storage \
         failed (a full disk); nothing unjournaled was given or charged; fix it and run the same \
         command again, which carries on from the journal",
    ),
    (
        BUSY,
        "refused for now: the open mission's queue is full (run the same command again shortly), or a \
         running server holds the data directory and this command cannot run beside it (stop the server)",
    ),
];

/// The "Exit status" paragraph of `--help`.
pub fn help() -> String {
    let mut text = String::from("Exit status:");
    for (code, meaning) in MEANINGS {
        text.push_str(&format!("\n  {code}  {meaning}"));
    }
    text
}

//! Exactly-once outcomes: a task ends once and a gate is decided once.
//!
//! - A task, named by its mission and index (`mission`, `task` in the
//!   payload), has at most one **terminal entry**: `task.decided`,
//!   `task.failed` or `task.skipped`. Everything else a task does
//!   (`task.started`, `task.proposed`, `task.parked`, `task.deferred`,
//!   `task.recovered`) may repeat: a deferred task starts again, a parked
//!   or interrupted attempt continues.
//! - A gate, named by its `gate_id`, has at most one **decision**:
//!   `gate.decided` (a reviewer's) or `gate.timed_out` (its deadline's).
//!   `gate.voted`, `gate.reminder` and `gate.escalated` are not decisions.
//! - A reservation is closed once; that rule lives with the rest of the
//!   budget arithmetic (`crate::budget`), which refuses a second
//!   settle, void or expiry, inside a `budget.batch` or not.
//!
//! An outcome entry must name its subject with those fields and types, or
//! it is invalid: an entry the verifier could not attribute would be an
//! outcome nobody could hold to the rule.
//!
//! Like the key rules, this runs in two places over two stores: when
//! appending, over the `journal_outcomes` table (so the conductor never
//! writes a second outcome its own verifier would reject), and when
//! verifying, over a map rebuilt from the entries alone.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::VerifyFailure;

/// The kinds that end a task.
pub(crate) const TASK_ENDS: [&str; 3] = ["task.decided", "task.failed", "task.skipped"];
/// The kinds that decide a gate.
pub(crate) const GATE_DECISIONS: [&str; 2] = ["gate.decided", "gate.timed_out"];

/// How much of an id a failure message quotes: ids are short, but a
/// hostile journal's need not be, and a message is read by a person.
const ID_SHOWN_BYTES_MAX: usize = 80;

/// A fixed-size digest of a subject (a task or a gate), so the memory per
/// ended subject does not depend on how long its ids are. 128 bits: an
/// accidental collision (which could only fail an honest journal, never
/// pass a dishonest one) is out of reach at any journal size.
pub(crate) type SubjectKey = [u8; 16];

/// What an outcome entry closes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Task { mission: String, task: u64 },
    Gate { gate_id: String },
}

/// Unknown fields are ignored; a repeated `mission`, `task` or `gate_id`
/// is an error (serde refuses duplicate fields), so a payload cannot name
/// one subject to the verifier and another to a reader keeping the last.
#[derive(Deserialize)]
struct TaskFields {
    mission: String,
    task: u64,
}

#[derive(Deserialize)]
struct GateFields {
    gate_id: String,
}

impl Subject {
    /// The subject `kind` closes, or `None` for a kind that closes nothing.
    fn of(kind: &str, payload: &[u8]) -> Result<Option<Subject>, VerifyFailure> {
        if TASK_ENDS.contains(&kind) {
            let p: TaskFields = crate::json::object(payload).map_err(|e| {
                VerifyFailure::BadPayload(format!(
                    "`{kind}` ends a task and must name it: `mission` (a string) and `task` (an integer): {e}"
                ))
            })?;
            return Ok(Some(Subject::Task { mission: p.mission, task: p.task }));
        }
        if GATE_DECISIONS.contains(&kind) {
            let p: GateFields = crate::json::object(payload).map_err(|e| {
                VerifyFailure::BadPayload(format!(
                    "`{kind}` decides a gate and must name it: `gate_id` (a string): {e}"
                ))
            })?;
            return Ok(Some(Subject::Gate { gate_id: p.gate_id }));
        }
        Ok(None)
    }

    fn key(&self) -> SubjectKey {
        let mut hasher = blake3::Hasher::new_derive_key("conductor journal outcome subject v1");
        // Length-prefixed, so no two subjects share an encoding.
        let mut part = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        match self {
            Subject::Task { mission, task } => {
                part(b"task");
                part(mission.as_bytes());
                part(&task.to_be_bytes());
            }
            Subject::Gate { gate_id } => {
                part(b"gate");
                part(gate_id.as_bytes());
            }
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        key
    }

    fn repeated(self, first_seq: u64) -> VerifyFailure {
        match self {
            Subject::Task { mission, task } => {
                VerifyFailure::TaskEndedTwice { mission: shown(mission), task, first_seq }
            }
            Subject::Gate { gate_id } => VerifyFailure::GateDecidedTwice { gate_id: shown(gate_id), first_seq },
        }
    }
}

/// `id` cut to [`ID_SHOWN_BYTES_MAX`] (on a character boundary) for a message.
pub(crate) fn shown(mut id: String) -> String {
    if id.len() > ID_SHOWN_BYTES_MAX {
        let mut end = ID_SHOWN_BYTES_MAX;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
        id.push('…');
    }
    id
}

/// Where the ended subjects are kept: a map while verifying, redb while
/// appending.
pub(crate) trait OutcomeStore {
    type Error: From<VerifyFailure>;
    /// The seq of the entry that closed `key`, if one did.
    fn closed_at(&self, key: &SubjectKey) -> Result<Option<u64>, Self::Error>;
    fn close(&mut self, key: &SubjectKey, seq: u64) -> Result<(), Self::Error>;
}

/// The verifier's store: every ended task and decided gate, with the seq
/// that ended it. About 30 to 60 bytes each (a 16-byte key and an 8-byte
/// seq in a hash table, with its spare capacity): a million ended tasks
/// cost at most ~60 MB. (The budget replay beside it already keeps every
/// reservation, each larger than this.)
#[derive(Debug, Default)]
pub(crate) struct OutcomeBook {
    closed: HashMap<SubjectKey, u64>,
}

impl OutcomeStore for OutcomeBook {
    type Error = VerifyFailure;
    fn closed_at(&self, key: &SubjectKey) -> Result<Option<u64>, VerifyFailure> {
        Ok(self.closed.get(key).copied())
    }
    fn close(&mut self, key: &SubjectKey, seq: u64) -> Result<(), VerifyFailure> {
        self.closed.insert(*key, seq);
        Ok(())
    }
}

/// Checks that the entry at `seq` does not close a subject an earlier
/// entry closed, and records what it closes. Entries of other kinds pass
/// untouched. On error the store is unchanged.
pub(crate) fn admit<S: OutcomeStore>(store: &mut S, seq: u64, kind: &str, payload: &[u8]) -> Result<(), S::Error> {
    let Some(subject) = Subject::of(kind, payload)? else {
        return Ok(());
    };
    let key = subject.key();
    if let Some(first_seq) = store.closed_at(&key)? {
        return Err(subject.repeated(first_seq).into());
    }
    store.close(&key, seq)
}

/// What `kind` and `payload` would close, for filling the append-time
/// table from a journal written before it existed: `None` for other kinds
/// and for payloads that do not name their subject (the verifier reports
/// those; opening the database must not fail on them).
pub(crate) fn key_of(kind: &str, payload: &[u8]) -> Option<SubjectKey> {
    Subject::of(kind, payload).ok().flatten().map(|s| s.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(&str, &str)]) -> Result<(), (u64, VerifyFailure)> {
        let mut book = OutcomeBook::default();
        for (seq, (kind, payload)) in entries.iter().enumerate() {
            admit(&mut book, seq as u64, kind, payload.as_bytes()).map_err(|f| (seq as u64, f))?;
        }
        Ok(())
    }

    #[test]
    fn one_terminal_entry_per_task_and_one_decision_per_gate() {
        let ok = [
            ("task.started", r#"{"mission":"m","task":0}"#),
            ("task.deferred", r#"{"mission":"m","task":0}"#),
            ("task.started", r#"{"mission":"m","task":0}"#),
            ("task.decided", r#"{"mission":"m","task":0}"#),
            ("task.decided", r#"{"mission":"m","task":1}"#),
            ("task.failed", r#"{"mission":"other","task":0}"#),
            ("gate.voted", r#"{"gate_id":"g"}"#),
            ("gate.decided", r#"{"gate_id":"g"}"#),
            ("gate.timed_out", r#"{"gate_id":"h"}"#),
        ];
        assert_eq!(run(&ok), Ok(()));
        let twice = [("task.decided", r#"{"mission":"m","task":3}"#), ("task.skipped", r#"{"task":3,"mission":"m"}"#)];
        assert_eq!(run(&twice), Err((1, VerifyFailure::TaskEndedTwice { mission: "m".into(), task: 3, first_seq: 0 })));
        let gate = [("gate.timed_out", r#"{"gate_id":"g"}"#), ("gate.decided", r#"{"gate_id":"g"}"#)];
        assert_eq!(run(&gate), Err((1, VerifyFailure::GateDecidedTwice { gate_id: "g".into(), first_seq: 0 })));
    }

    #[test]
    fn an_outcome_must_name_its_subject_once_with_the_right_types() {
        for payload in [
            r#"{}"#,
            r#"{"mission":"m"}"#,
            r#"{"mission":"m","task":"3"}"#,
            r#"{"mission":"m","task":3.5}"#,
            r#"{"mission":"m","task":-1}"#,
            r#"{"mission":7,"task":3}"#,
            r#"{"mission":"m","task":3,"task":4}"#,
            r#"[1]"#,
            r#"["m",3]"#,
        ] {
            let got = run(&[("task.decided", payload)]);
            assert!(matches!(got, Err((0, VerifyFailure::BadPayload(_)))), "{payload}: {got:?}");
        }
        for payload in [r#"{"gate":"publish"}"#, r#"["g"]"#, r#"{"gate_id":"g","gate_id":"h"}"#] {
            let got = run(&[("gate.decided", payload)]);
            assert!(matches!(got, Err((0, VerifyFailure::BadPayload(_)))), "{payload}: {got:?}");
        }
    }

    #[test]
    fn subjects_do_not_collide_across_kinds_or_boundaries() {
        let task = Subject::Task { mission: "ab".into(), task: 1 }.key();
        assert_ne!(task, Subject::Task { mission: "a".into(), task: 1 }.key());
        assert_ne!(task, Subject::Gate { gate_id: "ab".into() }.key());
        assert_eq!(task, Subject::Task { mission: "ab".into(), task: 1 }.key());
    }

    #[test]
    fn long_ids_are_cut_in_messages() {
        let long = "é".repeat(100);
        let f = Subject::Gate { gate_id: long }.repeated(9);
        let VerifyFailure::GateDecidedTwice { gate_id, .. } = f else { panic!("gate failure") };
        assert!(gate_id.len() <= ID_SHOWN_BYTES_MAX + '…'.len_utf8() && gate_id.ends_with('…'));
    }
}

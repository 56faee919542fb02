//! Delegation links: a parent task's `task.delegated`, its children's
//! `task.started` and terminal entries, and the `task.joined` that hands
//! the children's results back, must agree with one another.
//!
//! - `task.delegated` with a `delegation` id registers it, for its mission,
//!   with the parent task and the children's task indices (each non-null,
//!   none listed as a child before, in this delegation or another of the
//!   mission). The same id twice fails. A refused delegation (`delegation`
//!   null) registers nothing, and none of its children has a task index.
//! - `task.started` with `parent`: the named delegation was registered
//!   earlier in the mission, by `parent.task`, at `parent.depth`, lists
//!   this task, and is not joined yet.
//! - A child's terminal entry (`task.decided`, `task.failed`,
//!   `task.skipped`) is remembered for the join: status `decided` with its
//!   `outcome`, `failed` with its `code`, `skipped` with its `reason`.
//! - `task.joined`: the delegation is registered in the mission, by the
//!   same parent `task`, not joined before; `results`
//!   are exactly its children in order, each ended before the join, each
//!   result's `status` (and `outcome`, or `code`) as its terminal entry
//!   says.
//!
//! Only verification runs these rules; the conductor writes these entries
//! from its own state and does not check them again when appending (unlike
//! [`crate::outcomes`]). Payloads are read for the fields named here only,
//! under the rules of [`crate::json`]; other fields are ignored.
//!
//! Memory: per open delegation (registered, not joined) its children's
//! indices; per child of an open delegation, its ending (a digest and a
//! short excerpt) once it ended; and, to refuse a repeated id or child
//! long after a join, a 16-byte digest and a seq per delegation and per
//! child ever registered (like [`crate::outcomes::OutcomeBook`]).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::error::VerifyFailure;
use crate::json::Obj;
use crate::kind::Kind;
use crate::outcomes::shown;

const DELEGATED: &str = Kind::TaskDelegated.as_str();
const JOINED: &str = Kind::TaskJoined.as_str();
const STARTED: &str = Kind::TaskStarted.as_str();
const DECIDED: &str = Kind::TaskDecided.as_str();
const FAILED: &str = Kind::TaskFailed.as_str();
const SKIPPED: &str = Kind::TaskSkipped.as_str();

/// A fixed-size digest of a delegation or a task of a mission, so the
/// memory kept per subject does not depend on how long its ids are.
type Digest = [u8; 16];

fn digest(what: &[u8], mission: &str, id: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key("conductor journal delegation link v1");
    // Length-prefixed, so no two subjects share an encoding.
    for part in [what, mission.as_bytes(), id] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    key
}

fn delegation_key(mission: &str, delegation: &str) -> Digest {
    digest(b"delegation", mission, delegation.as_bytes())
}

fn task_key(mission: &str, task: u64) -> Digest {
    digest(b"task", mission, &task.to_be_bytes())
}

// ------------------------------------------------------------- payloads

/// Unknown fields are ignored; a repeated used field is an error.
#[derive(Deserialize)]
struct Delegated {
    mission: String,
    task: u64,
    /// Null (or absent) when the call was refused.
    delegation: Option<String>,
    depth: u64,
    children: Vec<Obj<DelegatedChild>>,
}

#[derive(Deserialize)]
struct DelegatedChild {
    task: Option<u64>,
}

#[derive(Deserialize)]
struct Started {
    parent: Option<Obj<ParentLink>>,
}

#[derive(Deserialize)]
struct ParentLink {
    task: u64,
    delegation: String,
    depth: u64,
}

#[derive(Deserialize)]
struct TaskFields {
    mission: String,
    task: u64,
}

#[derive(Deserialize)]
struct DecidedFields {
    outcome: String,
}

#[derive(Deserialize)]
struct FailedFields {
    code: String,
}

#[derive(Deserialize)]
struct SkippedFields {
    reason: String,
}

#[derive(Deserialize)]
struct Joined {
    mission: String,
    task: u64,
    delegation: String,
    results: Vec<Obj<JoinResult>>,
}

#[derive(Deserialize)]
struct JoinResult {
    task: u64,
    status: String,
    outcome: Option<String>,
    code: Option<String>,
}

fn read<T: serde::de::DeserializeOwned>(kind: &str, needs: &str, payload: &[u8]) -> Result<T, VerifyFailure> {
    crate::json::object(payload).map_err(|e| VerifyFailure::BadPayload(format!("`{kind}` must carry {needs}: {e}")))
}

// ---------------------------------------------------------------- state

/// How a child ended: its status and the digest of its outcome, code or
/// reason, with an excerpt for messages.
#[derive(Debug, Clone)]
struct Ending {
    seq: u64,
    status: &'static str,
    value: Digest,
    shown: String,
}

impl Ending {
    fn new(seq: u64, status: &'static str, value: &str) -> Self {
        Ending { seq, status, value: digest(status.as_bytes(), "", value.as_bytes()), shown: shown(value.to_owned()) }
    }

    fn describe(&self) -> String {
        format!("{} `{}`", self.status, self.shown)
    }
}

#[derive(Debug)]
enum Delegation {
    /// Registered, not joined: the parent, the children's depth, the seq
    /// of the `task.delegated` and the children's indices in order.
    Open {
        parent: u64,
        depth: u64,
        seq: u64,
        children: Vec<u64>,
    },
    Joined {
        seq: u64,
        joined_seq: u64,
    },
}

impl Delegation {
    fn registered_seq(&self) -> u64 {
        match self {
            Delegation::Open { seq, .. } | Delegation::Joined { seq, .. } => *seq,
        }
    }
}

/// A child of an open delegation.
#[derive(Debug)]
struct Running {
    ended: Option<Ending>,
}

/// The verifier's delegation state (see the module docs for its cost).
#[derive(Debug, Default)]
pub(crate) struct LinkBook {
    delegations: HashMap<Digest, Delegation>,
    /// Every task ever listed as a child, with the seq that listed it.
    listed: HashMap<Digest, u64>,
    /// The children of open delegations.
    running: HashMap<Digest, Running>,
}

impl LinkBook {
    /// Checks the entry at `seq` against the delegation rules and records
    /// what it changes. Kinds other than the six read here pass untouched.
    /// On error the book is unchanged.
    pub(crate) fn admit(&mut self, seq: u64, kind: &str, payload: &[u8]) -> Result<(), VerifyFailure> {
        match kind {
            DELEGATED => self.delegated(seq, payload),
            STARTED => self.started(payload),
            DECIDED | FAILED | SKIPPED => self.ended(seq, kind, payload),
            JOINED => self.joined(seq, payload),
            _ => Ok(()),
        }
    }

    fn delegated(&mut self, seq: u64, payload: &[u8]) -> Result<(), VerifyFailure> {
        let p: Delegated = read(
            DELEGATED,
            "`mission` (a string), `task` and `depth` (integers), `delegation` (a string or null) and \
             `children` (objects with `task`, an integer or null)",
            payload,
        )?;
        let Some(id) = p.delegation else {
            // Refused: nothing was created, so no child has a task.
            if let Some(position) = p.children.iter().position(|c| c.0.task.is_some()) {
                return Err(VerifyFailure::DelegationChildIndex {
                    mission: shown(p.mission),
                    task: p.task,
                    position: position as u64,
                    refused: true,
                });
            }
            return Ok(());
        };
        let key = delegation_key(&p.mission, &id);
        if let Some(earlier) = self.delegations.get(&key) {
            return Err(VerifyFailure::DelegationTwice {
                mission: shown(p.mission),
                delegation: shown(id),
                first_seq: earlier.registered_seq(),
            });
        }
        let mut children = Vec::with_capacity(p.children.len());
        let mut keys = Vec::with_capacity(p.children.len());
        let mut here = HashSet::with_capacity(p.children.len());
        for (position, child) in p.children.iter().enumerate() {
            let Some(task) = child.0.task else {
                return Err(VerifyFailure::DelegationChildIndex {
                    mission: shown(p.mission),
                    task: p.task,
                    position: position as u64,
                    refused: false,
                });
            };
            let child_key = task_key(&p.mission, task);
            let first_seq = self.listed.get(&child_key).copied().or_else(|| (!here.insert(child_key)).then_some(seq));
            if let Some(first_seq) = first_seq {
                return Err(VerifyFailure::ChildListedTwice {
                    mission: shown(p.mission),
                    delegation: shown(id),
                    child: task,
                    first_seq,
                });
            }
            children.push(task);
            keys.push(child_key);
        }
        for child_key in keys {
            self.listed.insert(child_key, seq);
            self.running.insert(child_key, Running { ended: None });
        }
        self.delegations.insert(key, Delegation::Open { parent: p.task, depth: p.depth, seq, children });
        Ok(())
    }

    fn started(&mut self, payload: &[u8]) -> Result<(), VerifyFailure> {
        let p: Started =
            read(STARTED, "a `parent` that is an object (`task`, `delegation`, `depth`) or null", payload)?;
        let Some(Obj(parent)) = p.parent else {
            return Ok(());
        };
        let t: TaskFields = read(STARTED, "(with a `parent`) `mission` (a string) and `task` (an integer)", payload)?;
        let key = delegation_key(&t.mission, &parent.delegation);
        match self.delegations.get(&key) {
            None => Err(VerifyFailure::UnknownDelegation {
                kind: STARTED,
                mission: shown(t.mission),
                task: t.task,
                delegation: shown(parent.delegation),
            }),
            Some(Delegation::Joined { joined_seq, .. }) => Err(VerifyFailure::ChildAfterJoin {
                mission: shown(t.mission),
                delegation: shown(parent.delegation),
                child: t.task,
                joined_seq: *joined_seq,
            }),
            Some(Delegation::Open { parent: by, depth, children, .. }) => {
                if *by != parent.task {
                    return Err(VerifyFailure::WrongParent {
                        kind: STARTED,
                        mission: shown(t.mission),
                        delegation: shown(parent.delegation),
                        expected: *by,
                        got: parent.task,
                    });
                }
                if !children.contains(&t.task) {
                    return Err(VerifyFailure::NotAChild {
                        mission: shown(t.mission),
                        delegation: shown(parent.delegation),
                        child: t.task,
                    });
                }
                if *depth != parent.depth {
                    return Err(VerifyFailure::WrongDepth {
                        mission: shown(t.mission),
                        delegation: shown(parent.delegation),
                        child: t.task,
                        expected: *depth,
                        got: parent.depth,
                    });
                }
                Ok(())
            }
        }
    }

    fn ended(&mut self, seq: u64, kind: &str, payload: &[u8]) -> Result<(), VerifyFailure> {
        // The outcome rule already refused a payload without these.
        let t: TaskFields = read(kind, "`mission` (a string) and `task` (an integer)", payload)?;
        let Some(running) = self.running.get_mut(&task_key(&t.mission, t.task)) else {
            return Ok(()); // not a child of an open delegation
        };
        // A child's ending is read only for the join: other tasks' terminal
        // entries need not carry these fields.
        let ending = match kind {
            DECIDED => {
                let p: DecidedFields = read(kind, "(for a delegated child) `outcome` (a string)", payload)?;
                Ending::new(seq, "decided", &p.outcome)
            }
            FAILED => {
                let p: FailedFields = read(kind, "(for a delegated child) `code` (a string)", payload)?;
                Ending::new(seq, "failed", &p.code)
            }
            _ => {
                let p: SkippedFields = read(kind, "(for a delegated child) `reason` (a string)", payload)?;
                Ending::new(seq, "skipped", &p.reason)
            }
        };
        // A second ending cannot reach here: the outcome rule fails it first.
        running.ended.get_or_insert(ending);
        Ok(())
    }

    fn joined(&mut self, seq: u64, payload: &[u8]) -> Result<(), VerifyFailure> {
        let p: Joined = read(
            JOINED,
            "`mission`, `delegation` (strings), `task` (an integer) and `results` (objects with `task` and \
             `status`, and `outcome` or `code` as strings)",
            payload,
        )?;
        let key = delegation_key(&p.mission, &p.delegation);
        let (parent, children) = match self.delegations.get(&key) {
            None => {
                return Err(VerifyFailure::UnknownDelegation {
                    kind: JOINED,
                    mission: shown(p.mission),
                    task: p.task,
                    delegation: shown(p.delegation),
                });
            }
            Some(Delegation::Joined { joined_seq, .. }) => {
                return Err(VerifyFailure::JoinedTwice {
                    mission: shown(p.mission),
                    delegation: shown(p.delegation),
                    first_seq: *joined_seq,
                });
            }
            Some(Delegation::Open { parent, children, .. }) => (*parent, children),
        };
        if parent != p.task {
            return Err(VerifyFailure::WrongParent {
                kind: JOINED,
                mission: shown(p.mission),
                delegation: shown(p.delegation),
                expected: parent,
                got: p.task,
            });
        }
        for position in 0..children.len().max(p.results.len()) {
            let expected = children.get(position).copied();
            let got = p.results.get(position).map(|r| r.0.task);
            if expected != got {
                return Err(VerifyFailure::JoinChildren {
                    mission: shown(p.mission),
                    delegation: shown(p.delegation),
                    position: position as u64,
                    expected,
                    got,
                });
            }
        }
        for (child, Obj(result)) in children.iter().zip(&p.results) {
            let ended = self.running.get(&task_key(&p.mission, *child)).and_then(|r| r.ended.as_ref());
            let Some(ending) = ended else {
                return Err(VerifyFailure::JoinBeforeEnd {
                    mission: shown(p.mission),
                    delegation: shown(p.delegation),
                    child: *child,
                });
            };
            let value = match result.status.as_str() {
                "decided" => result.outcome.as_deref(),
                "failed" | "skipped" => result.code.as_deref(),
                _ => None,
            };
            let same = result.status == ending.status
                && value.is_some_and(|v| digest(ending.status.as_bytes(), "", v.as_bytes()) == ending.value);
            if !same {
                let got = match value {
                    Some(v) => format!("{} `{}`", shown(result.status.clone()), shown(v.to_owned())),
                    None => format!("{} (without its outcome or code)", shown(result.status.clone())),
                };
                return Err(VerifyFailure::JoinResultDiffers {
                    mission: shown(p.mission),
                    delegation: shown(p.delegation),
                    child: *child,
                    expected: ending.describe().into(),
                    got: got.into(),
                    ended_seq: ending.seq,
                });
            }
        }
        // Joined: forget the children's records, keep the id.
        let Some(Delegation::Open { children, seq: registered, .. }) = self.delegations.remove(&key) else {
            return Ok(()); // checked above
        };
        for child in children {
            self.running.remove(&task_key(&p.mission, child));
        }
        self.delegations.insert(key, Delegation::Joined { seq: registered, joined_seq: seq });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(&str, String)]) -> Result<(), (u64, VerifyFailure)> {
        let mut book = LinkBook::default();
        let mut outcomes = crate::outcomes::OutcomeBook::default();
        for (seq, (kind, payload)) in entries.iter().enumerate() {
            let seq = seq as u64;
            // The verifier's order: outcomes first, then links.
            crate::outcomes::admit(&mut outcomes, seq, kind, payload.as_bytes()).map_err(|f| (seq, f))?;
            book.admit(seq, kind, payload.as_bytes()).map_err(|f| (seq, f))?;
        }
        Ok(())
    }

    fn delegated(parent: u64, id: &str, children: &[u64]) -> (&'static str, String) {
        let children: Vec<_> = children
            .iter()
            .map(|t| serde_json::json!({"agent": "a", "input_blake3": "00", "cap": null, "task": t, "budget": 5}))
            .collect();
        let p = serde_json::json!({"mission": "m", "task": parent, "case": "c", "delegation": id, "depth": 1,
                                   "children": children});
        (DELEGATED, p.to_string())
    }

    fn started(task: u64, parent: Option<(u64, &str)>) -> (&'static str, String) {
        let mut p = serde_json::json!({"mission": "m", "task": task, "case": "c", "input": {}});
        if let Some((parent, id)) = parent {
            p["parent"] = serde_json::json!({"task": parent, "delegation": id, "depth": 1});
        }
        (STARTED, p.to_string())
    }

    fn decided(task: u64, outcome: &str) -> (&'static str, String) {
        (DECIDED, serde_json::json!({"mission": "m", "task": task, "case": "c", "outcome": outcome}).to_string())
    }

    fn failed(task: u64, code: &str) -> (&'static str, String) {
        (FAILED, serde_json::json!({"mission": "m", "task": task, "code": code, "message": "x"}).to_string())
    }

    fn skipped(task: u64, reason: &str) -> (&'static str, String) {
        (SKIPPED, serde_json::json!({"mission": "m", "task": task, "reason": reason}).to_string())
    }

    /// `(task, status, outcome or code)` per result.
    fn joined(parent: u64, id: &str, at: u64, results: &[(u64, &str, &str)]) -> (&'static str, String) {
        let results: Vec<_> = results
            .iter()
            .map(|(task, status, value)| {
                let field = if *status == "decided" { "outcome" } else { "code" };
                let mut r = serde_json::json!({"task": task, "agent": "a", "status": status, "message": "m"});
                r[field] = serde_json::json!(value);
                r
            })
            .collect();
        let p = serde_json::json!({"mission": "m", "task": parent, "case": "c", "delegation": id,
                                   "delegated_seq": at, "results": results});
        (JOINED, p.to_string())
    }

    /// `entry` with its payload changed by `change`.
    fn edit(entry: &(&'static str, String), change: impl FnOnce(&mut serde_json::Value)) -> (&'static str, String) {
        let mut p: serde_json::Value = serde_json::from_str(&entry.1).expect("json");
        change(&mut p);
        (entry.0, p.to_string())
    }

    /// Parent 0 delegates 1, 2, 3 (seq 1); they start and end; the join.
    fn good_tree() -> Vec<(&'static str, String)> {
        vec![
            started(0, None),
            delegated(0, "d1", &[1, 2, 3]),
            started(1, Some((0, "d1"))),
            started(2, Some((0, "d1"))),
            decided(1, "eligible"),
            failed(2, "trap"),
            skipped(3, "budget_exhausted"),
            joined(
                0,
                "d1",
                1,
                &[(1, "decided", "eligible"), (2, "failed", "trap"), (3, "skipped", "budget_exhausted")],
            ),
            decided(0, "done"),
        ]
    }

    #[test]
    fn a_good_tree_verifies_with_nested_and_refused_delegations() {
        assert_eq!(run(&good_tree()), Ok(()));
        let mut nested = good_tree();
        // After the join the parent delegates again; a child delegates too.
        nested.pop();
        nested.extend([
            delegated(0, "d2", &[4]),
            started(4, Some((0, "d2"))),
            delegated(4, "d3", &[5]),
            started(5, Some((4, "d3"))),
            decided(5, "ok"),
            joined(4, "d3", 10, &[(5, "decided", "ok")]),
            decided(4, "ok"),
            joined(0, "d2", 8, &[(4, "decided", "ok")]),
            (
                DELEGATED,
                r#"{"mission":"m","task":0,"delegation":null,"depth":1,"refused":"no",
                          "children":[{"agent":"x","task":null}]}"#
                    .to_owned(),
            ),
        ]);
        assert_eq!(run(&nested), Ok(()));
        // Another mission may reuse ids and indices.
        let other: Vec<_> = good_tree().iter().map(|e| edit(e, |p| p["mission"] = "n".into())).collect();
        let both: Vec<_> = good_tree().into_iter().chain(other).collect();
        assert_eq!(run(&both), Ok(()));
    }

    #[test]
    fn a_child_naming_an_unknown_delegation_fails() {
        let entries = [started(0, None), delegated(0, "d1", &[1]), started(1, Some((0, "d9")))];
        assert_eq!(
            run(&entries),
            Err((
                2,
                VerifyFailure::UnknownDelegation {
                    kind: STARTED,
                    mission: "m".into(),
                    task: 1,
                    delegation: "d9".into()
                }
            ))
        );
        // Registered later does not count.
        let entries = [started(1, Some((0, "d1"))), delegated(0, "d1", &[1])];
        assert!(matches!(run(&entries), Err((0, VerifyFailure::UnknownDelegation { .. }))));
    }

    #[test]
    fn a_child_naming_the_wrong_parent_or_depth_fails() {
        let entries = [delegated(0, "d1", &[1]), started(1, Some((7, "d1")))];
        assert_eq!(
            run(&entries),
            Err((
                1,
                VerifyFailure::WrongParent {
                    kind: STARTED,
                    mission: "m".into(),
                    delegation: "d1".into(),
                    expected: 0,
                    got: 7
                }
            ))
        );
        let deep = edit(&started(1, Some((0, "d1"))), |p| p["parent"]["depth"] = 2.into());
        assert!(matches!(run(&[delegated(0, "d1", &[1]), deep]), Err((1, VerifyFailure::WrongDepth { .. }))));
    }

    #[test]
    fn a_child_the_delegation_does_not_list_fails() {
        let entries = [delegated(0, "d1", &[1, 2]), started(3, Some((0, "d1")))];
        assert_eq!(
            run(&entries),
            Err((1, VerifyFailure::NotAChild { mission: "m".into(), delegation: "d1".into(), child: 3 }))
        );
    }

    #[test]
    fn a_join_with_a_wrong_outcome_or_status_fails() {
        let mut entries = good_tree();
        entries[7] = joined(
            0,
            "d1",
            1,
            &[(1, "decided", "rejected"), (2, "failed", "trap"), (3, "skipped", "budget_exhausted")],
        );
        let got = run(&entries);
        let Err((7, VerifyFailure::JoinResultDiffers { child: 1, expected, got, ended_seq: 4, .. })) = got else {
            panic!("{got:?}")
        };
        assert_eq!((&*expected, &*got), ("decided `eligible`", "decided `rejected`"));
        entries[7] = joined(
            0,
            "d1",
            1,
            &[(1, "decided", "eligible"), (2, "decided", "trap"), (3, "skipped", "budget_exhausted")],
        );
        assert!(matches!(run(&entries), Err((7, VerifyFailure::JoinResultDiffers { child: 2, .. }))));
        entries[7] = joined(0, "d1", 1, &[(1, "decided", "eligible"), (2, "failed", "trap"), (3, "skipped", "other")]);
        assert!(matches!(run(&entries), Err((7, VerifyFailure::JoinResultDiffers { child: 3, .. }))));
        // A decided result without its outcome.
        entries[7] = edit(&entries[7], |p| {
            p["results"][0].as_object_mut().map(|r| r.remove("outcome"));
        });
        assert!(matches!(run(&entries), Err((7, VerifyFailure::JoinResultDiffers { child: 1, .. }))));
    }

    #[test]
    fn a_join_before_a_child_ended_fails() {
        let entries = [
            delegated(0, "d1", &[1, 2]),
            decided(1, "ok"),
            joined(0, "d1", 0, &[(1, "decided", "ok"), (2, "decided", "ok")]),
            decided(2, "ok"),
        ];
        assert_eq!(
            run(&entries),
            Err((2, VerifyFailure::JoinBeforeEnd { mission: "m".into(), delegation: "d1".into(), child: 2 }))
        );
    }

    #[test]
    fn a_join_missing_reordering_or_adding_a_child_fails() {
        let mut entries = good_tree();
        entries[7] = joined(0, "d1", 1, &[(1, "decided", "eligible"), (2, "failed", "trap")]);
        assert_eq!(
            run(&entries),
            Err((
                7,
                VerifyFailure::JoinChildren {
                    mission: "m".into(),
                    delegation: "d1".into(),
                    position: 2,
                    expected: Some(3),
                    got: None
                }
            ))
        );
        entries[7] = joined(0, "d1", 1, &[(2, "failed", "trap"), (1, "decided", "eligible"), (3, "skipped", "b")]);
        assert!(matches!(run(&entries), Err((7, VerifyFailure::JoinChildren { position: 0, .. }))));
        entries[7] = joined(
            0,
            "d1",
            1,
            &[
                (1, "decided", "eligible"),
                (2, "failed", "trap"),
                (3, "skipped", "budget_exhausted"),
                (0, "decided", "x"),
            ],
        );
        assert!(matches!(run(&entries), Err((7, VerifyFailure::JoinChildren { position: 3, got: Some(0), .. }))));
    }

    #[test]
    fn a_join_of_another_parent_seq_or_delegation_fails() {
        let mut entries = good_tree();
        entries[7] = edit(&entries[7], |p| p["task"] = 9.into());
        assert!(matches!(
            run(&entries),
            Err((7, VerifyFailure::WrongParent { kind: JOINED, expected: 0, got: 9, .. }))
        ));
        // `delegated_seq` is informative: seqs move when a journal is
        // rewritten, and the rules name the delegation by its id.
        let mut entries = good_tree();
        entries[7] = edit(&entries[7], |p| p["delegated_seq"] = 2.into());
        assert_eq!(run(&entries), Ok(()));
        let mut entries = good_tree();
        entries[7] = edit(&entries[7], |p| p["delegation"] = "d2".into());
        assert!(matches!(run(&entries), Err((7, VerifyFailure::UnknownDelegation { kind: JOINED, .. }))));
    }

    #[test]
    fn a_second_join_or_registration_fails() {
        let mut entries = good_tree();
        entries.push(entries[7].clone());
        assert_eq!(
            run(&entries),
            Err((9, VerifyFailure::JoinedTwice { mission: "m".into(), delegation: "d1".into(), first_seq: 7 }))
        );
        // The id stays taken after the join, and while open.
        let mut entries = good_tree();
        entries.push(delegated(0, "d1", &[8]));
        assert_eq!(
            run(&entries),
            Err((9, VerifyFailure::DelegationTwice { mission: "m".into(), delegation: "d1".into(), first_seq: 1 }))
        );
        let entries = [delegated(0, "d1", &[1]), delegated(0, "d1", &[2])];
        assert!(matches!(run(&entries), Err((1, VerifyFailure::DelegationTwice { first_seq: 0, .. }))));
        // A child starting after its delegation was joined.
        let mut entries = good_tree();
        entries.push(started(3, Some((0, "d1"))));
        assert!(matches!(run(&entries), Err((9, VerifyFailure::ChildAfterJoin { joined_seq: 7, .. }))));
    }

    #[test]
    fn a_child_listed_twice_fails() {
        let entries = [delegated(0, "d1", &[1, 2]), delegated(0, "d2", &[3, 2])];
        assert_eq!(
            run(&entries),
            Err((
                1,
                VerifyFailure::ChildListedTwice {
                    mission: "m".into(),
                    delegation: "d2".into(),
                    child: 2,
                    first_seq: 0
                }
            ))
        );
        assert!(matches!(
            run(&[delegated(0, "d1", &[1, 1])]),
            Err((0, VerifyFailure::ChildListedTwice { child: 1, first_seq: 0, .. }))
        ));
        // Even after the first delegation was joined.
        let mut entries = good_tree();
        entries.push(delegated(0, "d2", &[3]));
        assert!(matches!(run(&entries), Err((9, VerifyFailure::ChildListedTwice { child: 3, first_seq: 1, .. }))));
    }

    #[test]
    fn a_refused_delegation_with_a_child_index_fails_and_an_accepted_one_needs_them() {
        let refused = r#"{"mission":"m","task":0,"delegation":null,"depth":1,"refused":"limit",
                          "children":[{"agent":"x","task":null},{"agent":"y","task":4}]}"#;
        assert_eq!(
            run(&[(DELEGATED, refused.to_owned())]),
            Err((0, VerifyFailure::DelegationChildIndex { mission: "m".into(), task: 0, position: 1, refused: true }))
        );
        let accepted = r#"{"mission":"m","task":0,"delegation":"d","depth":1,"children":[{"task":1},{"task":null}]}"#;
        assert_eq!(
            run(&[(DELEGATED, accepted.to_owned())]),
            Err((0, VerifyFailure::DelegationChildIndex { mission: "m".into(), task: 0, position: 1, refused: false }))
        );
    }

    #[test]
    fn payloads_are_read_for_the_used_fields_only() {
        // Entry tasks' `task.started` and other tasks' endings are not read
        // beyond what the rules use.
        for ok in [
            (STARTED, r#"{}"#),
            (STARTED, r#"{"mission":"m","task":"not-an-index","parent":null}"#),
            (DECIDED, r#"{"mission":"m","task":1}"#),
        ] {
            assert_eq!(run(&[(ok.0, ok.1.to_owned())]), Ok(()), "{ok:?}");
        }
        for bad in [
            (STARTED, r#"[1]"#),
            (STARTED, r#"{"mission":"m","task":1,"parent":{"task":0,"delegation":"d"}}"#),
            (STARTED, r#"{"mission":"m","task":1,"parent":[0,"d",1]}"#),
            (STARTED, r#"{"task":1,"parent":{"task":0,"delegation":"d","depth":1}}"#),
            (DELEGATED, r#"{"mission":"m","task":0,"delegation":"d","depth":1}"#),
            (DELEGATED, r#"{"mission":"m","task":0,"delegation":"d","depth":1,"children":[[1]]}"#),
            (DELEGATED, r#"{"mission":"m","task":0,"delegation":7,"depth":1,"children":[]}"#),
            (JOINED, r#"{"mission":"m","task":0,"delegation":"d","delegated_seq":0}"#),
        ] {
            assert!(matches!(run(&[(bad.0, bad.1.to_owned())]), Err((0, VerifyFailure::BadPayload(_)))), "{bad:?}");
        }
        // A child's ending must carry what the join compares.
        let entries =
            [delegated(0, "d1", &[1]), (FAILED, r#"{"mission":"m","task":1,"message":"no code"}"#.to_owned())];
        assert!(matches!(run(&entries), Err((1, VerifyFailure::BadPayload(_)))));
    }

    #[test]
    fn messages_name_the_delegation_the_child_and_both_sides() {
        let mut entries = good_tree();
        entries[7] =
            joined(0, "d1", 1, &[(1, "failed", "oom"), (2, "failed", "trap"), (3, "skipped", "budget_exhausted")]);
        let Err((_, failure)) = run(&entries) else { panic!("must fail") };
        let text = failure.to_string();
        for part in ["`d1`", "`m`", "child task 1", "failed `oom`", "decided `eligible`", "sequence 4"] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }
}

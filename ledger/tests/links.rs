//! Delegation links (journal format, section 5, "Delegations"): a real
//! journal, with real keys in their roles, where a parent task delegates
//! (`task.delegated`, signed by its agent's key), its children start and
//! end, and the conductor joins them (`task.joined`, in the last child's
//! transaction), verifies from the database and from an export; a join
//! or a child that contradicts its delegation fails both at its seq.
//!
//! The ledger does not check links when appending (the format says so),
//! so the broken journals here are written with plain appends.

use identity::{Keypair, Role};
use ledger::{Ledger, LedgerError, VerifyError, VerifyFailure};
use serde_json::{Value, json};

const MISSION: &str = "6a0e-delegating-mission";

struct Keys {
    conductor: Keypair,
    agent: Keypair,
}

fn setup() -> (tempfile::TempDir, Ledger, Keys) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("conductor.redb")).expect("open");
    let keys = Keys { conductor: Keypair::generate(Role::Conductor), agent: Keypair::generate(Role::Agent) };
    let k = &keys;
    ledger
        .write(|t| -> Result<(), LedgerError> {
            t.genesis(&k.conductor, json!({}), 1)?;
            t.register_key(&k.conductor, &k.agent.public(), Role::Agent, json!({}), 2)?;
            t.append(&k.conductor, "mission.declared", &json!({"mission": MISSION}), 3)?;
            Ok(())
        })
        .expect("setup");
    (dir, ledger, keys)
}

fn export(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::new();
    ledger.export(&mut out, |_, _| {}).expect("export");
    out
}

fn started(task: u64, parent: Option<(u64, &str)>) -> Value {
    let mut p = json!({"mission": MISSION, "task": task, "case": format!("case-{task}"), "input": {}});
    if let Some((parent, delegation)) = parent {
        p["parent"] = json!({"task": parent, "delegation": delegation, "depth": 1});
    }
    p
}

fn delegated(parent: u64, delegation: &str, children: &[u64]) -> Value {
    let children: Vec<Value> = children
        .iter()
        .map(|t| json!({"agent": "helper", "input_blake3": "00", "cap": 100, "task": t, "budget": 100}))
        .collect();
    json!({"mission": MISSION, "task": parent, "case": format!("case-{parent}"), "delegation": delegation,
           "depth": 1, "children": children})
}

fn decided(task: u64, outcome: &str) -> Value {
    json!({"mission": MISSION, "task": task, "case": format!("case-{task}"), "outcome": outcome, "decided_by": "agent"})
}

fn joined(parent: u64, delegation: &str, delegated_seq: u64, results: &[(u64, &str)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(task, outcome)| {
            json!({"task": task, "agent": "helper", "status": "decided", "outcome": outcome, "reason": "r",
                   "details": {}})
        })
        .collect();
    json!({"mission": MISSION, "task": parent, "case": format!("case-{parent}"), "delegation": delegation,
           "delegated_seq": delegated_seq, "results": results})
}

/// Parent 0 delegates tasks 1 and 2; returns the `task.delegated` seq.
/// The children start and end; the last one's transaction carries
/// `join(delegated_seq)` after its `task.decided`.
fn delegate_and_end(ledger: &Ledger, k: &Keys, join: impl FnOnce(u64) -> Value) -> u64 {
    let c = &k.conductor;
    let delegated_seq = ledger
        .write(|t| {
            t.append(c, "task.started", &started(0, None), 10)?;
            Ok::<_, LedgerError>(t.append(&k.agent, "task.delegated", &delegated(0, "dlg-7", &[1, 2]), 11)?.0)
        })
        .expect("delegate");
    ledger
        .write(|t| {
            t.append(c, "task.started", &started(1, Some((0, "dlg-7"))), 12)?;
            t.append(c, "task.started", &started(2, Some((0, "dlg-7"))), 12)?;
            t.append(c, "task.decided", &decided(1, "eligible"), 13)?;
            Ok::<_, LedgerError>(())
        })
        .expect("children");
    ledger
        .write(|t| {
            t.append(c, "task.decided", &decided(2, "rejected"), 14)?;
            t.append(c, "task.joined", &join(delegated_seq), 14)?;
            Ok::<_, LedgerError>(())
        })
        .expect("last child and join");
    delegated_seq
}

fn assert_fails_at(ledger: &Ledger, seq: u64, want: &dyn Fn(&VerifyFailure) -> bool) {
    let export = export(ledger);
    for (from, got) in [("database", ledger.verify()), ("export", ledger::verify_export(&mut &export[..], &[]))] {
        match got {
            Err(VerifyError::Bad { seq: at, failure }) => {
                assert_eq!(at, seq, "{from}: fails at the broken link ({failure})");
                assert!(want(&failure), "{from}: {failure}");
            }
            other => panic!("{from}: expected a failure at {seq}, got {other:?}"),
        }
    }
}

#[test]
fn a_delegation_its_children_and_their_join_verify_from_the_database_and_the_export() {
    let (_dir, ledger, k) = setup();
    delegate_and_end(&ledger, &k, |at| joined(0, "dlg-7", at, &[(1, "eligible"), (2, "rejected")]));
    // The parent resumes and ends; a refused delegation registers nothing.
    ledger
        .write(|t| {
            t.append(
                &k.agent,
                "task.delegated",
                &json!({"mission": MISSION, "task": 0, "case": "case-0", "delegation": null, "depth": 1,
                        "children": [{"agent": "stranger", "input_blake3": "00", "cap": null, "task": null,
                                      "budget": null}],
                        "refused": "`stranger` is not in delegates_to"}),
                15,
            )?;
            t.append(&k.conductor, "task.decided", &decided(0, "done"), 16)
        })
        .expect("parent ends");
    let report = ledger.verify().expect("the database verifies");
    let from_export = ledger::verify_export(&mut &export(&ledger)[..], &[]).expect("the export verifies");
    assert_eq!(report.head, from_export.head);
}

#[test]
fn a_join_that_contradicts_a_childs_outcome_fails_at_its_seq() {
    let (_dir, ledger, k) = setup();
    // Child 2 decided `rejected`; the join says `eligible`.
    delegate_and_end(&ledger, &k, |at| joined(0, "dlg-7", at, &[(1, "eligible"), (2, "eligible")]));
    let (next, _) = ledger.head().expect("head");
    assert_fails_at(&ledger, next - 1, &|f| {
        matches!(f, VerifyFailure::JoinResultDiffers { child: 2, expected, got, .. }
            if &**expected == "decided `rejected`" && &**got == "decided `eligible`")
    });
}

#[test]
fn a_join_that_leaves_out_a_child_fails_at_its_seq() {
    let (_dir, ledger, k) = setup();
    delegate_and_end(&ledger, &k, |at| joined(0, "dlg-7", at, &[(1, "eligible")]));
    let (next, _) = ledger.head().expect("head");
    assert_fails_at(&ledger, next - 1, &|f| {
        matches!(f, VerifyFailure::JoinChildren { position: 1, expected: Some(2), got: None, .. })
    });
}

#[test]
fn a_child_that_names_another_parent_fails_at_its_seq() {
    let (_dir, ledger, k) = setup();
    let seq = ledger
        .write(|t| {
            t.append(&k.conductor, "task.started", &started(0, None), 10)?;
            t.append(&k.agent, "task.delegated", &delegated(0, "dlg-7", &[1]), 11)?;
            Ok::<_, LedgerError>(t.append(&k.conductor, "task.started", &started(1, Some((5, "dlg-7"))), 12)?.0)
        })
        .expect("append");
    assert_fails_at(&ledger, seq, &|f| matches!(f, VerifyFailure::WrongParent { expected: 0, got: 5, .. }));
}

#[test]
fn task_delegated_is_the_agents_and_task_joined_the_conductors() {
    let (_dir, ledger, k) = setup();
    // Authorization is the key book's: the wrong role is refused on append.
    let wrong = ledger.write(|t| t.append(&k.conductor, "task.delegated", &delegated(0, "d", &[1]), 10));
    assert!(matches!(wrong, Err(LedgerError::Unauthorized(VerifyFailure::WrongRole { .. }))), "{wrong:?}");
    let wrong = ledger.write(|t| t.append(&k.agent, "task.joined", &joined(0, "d", 4, &[]), 10));
    assert!(matches!(wrong, Err(LedgerError::Unauthorized(VerifyFailure::WrongRole { .. }))), "{wrong:?}");
}

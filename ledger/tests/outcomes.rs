//! Exactly-once outcomes (journal format, "Outcomes"): one terminal entry
//! per task, one decision per gate, one close per reservation.
//!
//! The flows the conductor really writes (a gated task, a parked task
//! resumed after its gate, a deferred task started again, a crash
//! recovered, a gate escalated and timed out, a budget gate) verify, from
//! the database and from an export. A second outcome is refused when
//! appended, and a key-holding attacker who writes one behind the
//! ledger's back (signed by the right key, chained correctly) fails
//! verification at exactly that entry, from the database and the export.

use identity::{Keypair, Role};
use ledger::entry::{self, Entry};
use ledger::{Ledger, LedgerError, VerifyError, VerifyFailure};
use serde_json::{Value, json};

const MISSION: &str = "3f1c9a52-mission";
const JOURNAL: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");
const HEAD: redb::TableDefinition<&str, (u64, &[u8])> = redb::TableDefinition::new("journal_head");

struct Keys {
    conductor: Keypair,
    agent: Keypair,
    reviewer: Keypair,
    reviewer2: Keypair,
}

/// A ledger with the keys registered and a mission budget open.
fn setup() -> (tempfile::TempDir, Ledger, Keys) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("conductor.redb")).expect("open");
    let keys = Keys {
        conductor: Keypair::generate(Role::Conductor),
        agent: Keypair::generate(Role::Agent),
        reviewer: Keypair::generate(Role::Reviewer),
        reviewer2: Keypair::generate(Role::Reviewer),
    };
    let k = &keys;
    ledger
        .write(|t| -> Result<(), LedgerError> {
            t.genesis(&k.conductor, json!({}), 1)?;
            t.register_key(&k.conductor, &k.agent.public(), Role::Agent, json!({}), 2)?;
            t.register_key(&k.conductor, &k.reviewer.public(), Role::Reviewer, json!({}), 2)?;
            t.register_key(&k.conductor, &k.reviewer2.public(), Role::Reviewer, json!({}), 2)?;
            t.append(&k.conductor, "mission.declared", &json!({"mission": MISSION}), 3)?;
            t.open_account(&k.conductor, MISSION, None, Some(1_000), 3)
        })
        .expect("setup");
    (dir, ledger, keys)
}

fn task(index: u64) -> Value {
    json!({"mission": MISSION, "task": index, "case": format!("case-{index}")})
}

/// `base` with `extra`'s fields added.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut base, extra) {
        a.extend(b);
    }
    base
}

/// Appends `(signer, kind, payload)` in one transaction each.
fn append(ledger: &Ledger, steps: &[(&Keypair, &str, Value)]) {
    for (signer, kind, payload) in steps {
        ledger.write(|t| t.append(signer, kind, payload, 10)).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

/// Every flow of the conductor that repeats task or gate entries without
/// a second outcome.
fn legitimate_flows(ledger: &Ledger, k: &Keys) {
    let (c, a, r, r2) = (&k.conductor, &k.agent, &k.reviewer, &k.reviewer2);
    // The agent decides: no gate.
    append(
        ledger,
        &[
            (c, "task.started", task(0)),
            (a, "task.proposed", task(0)),
            (c, "task.decided", with(task(0), json!({"outcome": "eligible", "decided_by": "agent"}))),
        ],
    );
    // A gate with a quorum of two: a vote, then the decision, then the task's.
    append(
        ledger,
        &[
            (c, "task.started", task(1)),
            (a, "task.proposed", task(1)),
            (c, "gate.requested", with(task(1), json!({"gate_id": "g-1", "quorum": 2}))),
            (r, "gate.voted", with(task(1), json!({"gate_id": "g-1", "verdict": "approved"}))),
            (r2, "gate.decided", with(task(1), json!({"gate_id": "g-1", "verdict": "approved"}))),
            (c, "task.decided", with(task(1), json!({"outcome": "eligible"}))),
        ],
    );
    // An agent awaits a reviewer: parked, the gate decided, resumed (the
    // same attempt continues), then proposes and is decided.
    append(
        ledger,
        &[
            (c, "task.started", task(2)),
            (a, "host.await", with(task(2), json!({"gate_id": "g-2"}))),
            (c, "gate.requested", with(task(2), json!({"gate_id": "g-2"}))),
            (c, "task.parked", with(task(2), json!({"gate_id": "g-2"}))),
            (r, "gate.decided", with(task(2), json!({"gate_id": "g-2", "verdict": "approved"}))),
            (c, "mission.resumed", json!({"mission": MISSION})),
            (c, "task.recovered", with(task(2), json!({"started_seq": 0}))),
            (a, "task.proposed", task(2)),
            (c, "task.decided", task(2)),
        ],
    );
    // Deferred for lack of budget, started again on `mission resume`, and
    // failed the second time.
    append(
        ledger,
        &[
            (c, "task.started", task(3)),
            (c, "task.deferred", with(task(3), json!({"reason": "budget_exhausted"}))),
            (c, "mission.finished", json!({"mission": MISSION, "status": "paused"})),
            (c, "mission.resumed", json!({"mission": MISSION})),
            (c, "task.started", task(3)),
            (c, "task.failed", with(task(3), json!({"code": "trap"}))),
        ],
    );
    // Interrupted by a crash, recovered, decided.
    append(
        ledger,
        &[
            (c, "task.started", task(4)),
            (c, "mission.recovered", json!({"mission": MISSION})),
            (c, "task.recovered", with(task(4), json!({"started_seq": 0}))),
            (a, "task.proposed", task(4)),
            (c, "task.decided", task(4)),
        ],
    );
    // A gate reminded, escalated, then timed out (never a gate.decided),
    // and the task decided by the timeout.
    append(
        ledger,
        &[
            (c, "task.started", task(5)),
            (a, "task.proposed", task(5)),
            (c, "gate.requested", with(task(5), json!({"gate_id": "g-5"}))),
            (c, "gate.reminder", with(task(5), json!({"gate_id": "g-5"}))),
            (c, "gate.escalated", with(task(5), json!({"gate_id": "g-5"}))),
            (c, "gate.timed_out", with(task(5), json!({"gate_id": "g-5", "then": "deny"}))),
            (c, "task.decided", with(task(5), json!({"outcome": "timed_out", "decided_by": "timeout"}))),
        ],
    );
    // Skipped; and the same index in another mission is another task.
    append(
        ledger,
        &[
            (c, "task.skipped", with(task(6), json!({"reason": "budget_exhausted"}))),
            (c, "task.started", json!({"mission": "another", "task": 0})),
            (c, "task.decided", json!({"mission": "another", "task": 0})),
        ],
    );
    // A budget gate (no task): decided with the reviewer's extension; the
    // next exhaustion asks again under a new gate id.
    append(ledger, &[(c, "gate.requested", json!({"mission": MISSION, "gate_id": "g-budget-1"}))]);
    ledger
        .write(|t| -> Result<(), LedgerError> {
            t.append(r, "gate.decided", &json!({"mission": MISSION, "gate_id": "g-budget-1"}), 11)?;
            t.extend(r, MISSION, 500, "budget gate g-budget-1", 11).map(|_| ())
        })
        .expect("budget gate");
    append(
        ledger,
        &[
            (c, "gate.requested", json!({"mission": MISSION, "gate_id": "g-budget-2"})),
            (c, "gate.timed_out", json!({"mission": MISSION, "gate_id": "g-budget-2", "then": "deny"})),
        ],
    );
    // Reservations, each closed once: settled, voided, expired.
    ledger
        .write(|t| -> Result<(), LedgerError> {
            let a = t.reserve(c, MISSION, 10, 1_000, json!({}), 20)?;
            let b = t.reserve(c, MISSION, 10, 1_000, json!({}), 20)?;
            t.reserve(c, MISSION, 10, 30, json!({}), 20)?;
            t.settle(c, a, 7, 21)?;
            t.void(c, b, 21)?;
            t.expire_due(c, 31).map(|_| ())
        })
        .expect("reservations");
}

fn export(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::new();
    ledger.export(&mut out, |_, _| {}).expect("export");
    out
}

/// `export` with `record` added at its end.
fn export_plus(export: &[u8], record: &[u8]) -> Vec<u8> {
    let mut out = export.to_vec();
    let count = u64::from_be_bytes(out[12..20].try_into().expect("count")) + 1;
    out[12..20].copy_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&u32::try_from(record.len()).expect("len").to_be_bytes());
    out.extend_from_slice(record);
    out
}

fn last_entry(ledger: &Ledger) -> Entry {
    let (next, _) = ledger.head().expect("head");
    ledger.entries(next - 1, 1).expect("entries").pop().expect("an entry")
}

/// The next record after the journal's head, signed and chained as the
/// real one would be: what an attacker holding `signer` writes.
fn forge_next(ledger: &Ledger, signer: &Keypair, kind: &str, payload: &Value) -> (u64, Vec<u8>) {
    let last = last_entry(ledger);
    let bytes = serde_json::to_vec(payload).expect("json");
    (last.seq + 1, entry::signed_record(last.seq + 1, &last.hash, last.time_us + 1, signer, kind, &bytes))
}

/// Writes `record` at the journal's tail behind the ledger's back (raw
/// redb, as a tool with write access to the file could), then reopens it.
fn write_behind(ledger: Ledger, seq: u64, record: &[u8]) -> Ledger {
    let path = ledger.path().to_owned();
    drop(ledger);
    {
        let db = redb::Database::open(&path).expect("redb open");
        let w = db.begin_write().expect("begin");
        {
            let mut journal = w.open_table(JOURNAL).expect("journal");
            journal.insert(seq, record).expect("insert");
            let hash = entry::decode(record).expect("decodes").hash;
            let mut head = w.open_table(HEAD).expect("head");
            head.insert("head", (seq + 1, hash.0.as_slice())).expect("head");
        }
        w.commit().expect("commit");
    }
    Ledger::open(&path).expect("reopen")
}

/// Both verifiers (database, export) fail at `seq` with `want`.
fn assert_fails_at(ledger: &Ledger, export: &[u8], seq: u64, want: &dyn Fn(&VerifyFailure) -> bool) {
    for (from, got) in [("database", ledger.verify()), ("export", ledger::verify_export(&mut &export[..], &[]))] {
        match got {
            Err(VerifyError::Bad { seq: at, failure }) => {
                assert_eq!(at, seq, "{from}: fails at the second outcome ({failure})");
                assert!(want(&failure), "{from}: {failure}");
            }
            other => panic!("{from}: expected a failure at {seq}, got {other:?}"),
        }
    }
}

#[test]
fn the_conductors_real_flows_verify_from_the_database_and_the_export() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let report = ledger.verify().expect("the database verifies");
    let from_export = ledger::verify_export(&mut &export(&ledger)[..], &[]).expect("the export verifies");
    assert_eq!(report.entries, from_export.entries);
}

#[test]
fn a_second_outcome_is_refused_when_appended_and_nothing_is_written() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let c = &keys.conductor;
    let decided_at = ledger
        .entries(0, usize::MAX)
        .expect("entries")
        .into_iter()
        .find(|e| e.kind == "task.decided" && e.payload_json()["task"] == 1)
        .expect("task 1 decided")
        .seq;
    let head = ledger.head().expect("head");
    for (kind, payload) in [
        ("task.decided", with(task(1), json!({"outcome": "ineligible"}))),
        ("task.failed", task(1)),
        ("task.skipped", task(1)),
    ] {
        let err = ledger.write(|t| t.append(c, kind, &payload, 50)).expect_err("a second outcome");
        let want = VerifyFailure::TaskEndedTwice { mission: MISSION.into(), task: 1, first_seq: decided_at };
        assert!(matches!(&err, LedgerError::Unauthorized(f) if *f == want), "{kind}: {err}");
        assert!(err.to_string().contains(&format!("already ended at sequence {decided_at}")), "{err}");
    }
    let err = ledger
        .write(|t| t.append(&keys.reviewer, "gate.decided", &json!({"gate_id": "g-5"}), 50))
        .expect_err("gate g-5 timed out already");
    assert!(matches!(&err, LedgerError::Unauthorized(VerifyFailure::GateDecidedTwice { .. })), "{err}");
    // An outcome that does not say which task it ends is refused too.
    let err = ledger
        .write(|t| t.append(c, "task.decided", &json!({"mission": MISSION, "task": "1"}), 50))
        .expect_err("no task index");
    assert!(matches!(&err, LedgerError::Unauthorized(VerifyFailure::BadPayload(_))), "{err}");
    assert_eq!(ledger.head().expect("head"), head, "nothing was written");
    ledger.verify().expect("still verifies");
}

#[test]
fn a_second_task_decided_written_behind_the_ledgers_back_fails_at_its_seq() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let first = ledger.write(|t| t.append(&keys.conductor, "task.decided", &task(9), 60)).expect("first").0;
    let contradiction = with(task(9), json!({"outcome": "ineligible", "decided_by": "agent"}));
    let (seq, record) = forge_next(&ledger, &keys.conductor, "task.decided", &contradiction);
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &|f| {
        *f == VerifyFailure::TaskEndedTwice { mission: MISSION.into(), task: 9, first_seq: first }
    });
    let message = ledger.verify().expect_err("fails").to_string();
    assert!(
        message.contains(&format!("verification failed at sequence {seq}"))
            && message.contains(&format!("task 9 of mission `{MISSION}` already ended at sequence {first}")),
        "{message}"
    );
}

#[test]
fn task_failed_after_task_decided_fails_at_its_seq() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let (seq, record) = forge_next(&ledger, &keys.conductor, "task.failed", &with(task(0), json!({"code": "trap"})));
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &|f| matches!(f, VerifyFailure::TaskEndedTwice { task: 0, .. }));
}

#[test]
fn a_second_decision_for_one_gate_fails_at_its_seq() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let g1 = |ledger: &Ledger, kind: &str| {
        ledger
            .entries(0, usize::MAX)
            .expect("entries")
            .into_iter()
            .find(|e| e.kind == kind && e.payload_json()["gate_id"] == "g-1")
            .expect("gate g-1")
            .seq
    };
    let first = g1(&ledger, "gate.decided");
    // Another reviewer's contradicting decision of the decided gate g-1.
    let payload = with(task(1), json!({"gate_id": "g-1", "verdict": "rejected"}));
    let (seq, record) = forge_next(&ledger, &keys.reviewer, "gate.decided", &payload);
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &|f| {
        *f == VerifyFailure::GateDecidedTwice { gate_id: "g-1".into(), first_seq: first }
    });

    // A timeout after a reviewer's decision is a second decision too.
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let payload = with(task(2), json!({"gate_id": "g-2", "then": "deny"}));
    let (seq, record) = forge_next(&ledger, &keys.conductor, "gate.timed_out", &payload);
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &|f| matches!(f, VerifyFailure::GateDecidedTwice { .. }));
}

#[test]
fn a_reservation_settled_twice_fails_at_its_seq() {
    let (_dir, ledger, keys) = setup();
    let c = &keys.conductor;
    let id = ledger
        .write(|t| -> Result<_, LedgerError> {
            let id = t.reserve(c, MISSION, 40, 1_000, json!({}), 20)?;
            t.settle(c, id, 30, 21)?;
            Ok(id)
        })
        .expect("reserve and settle");
    let settled = last_entry(&ledger);
    assert_eq!(settled.kind, "budget.settled");
    // The same settlement again, correctly signed and chained.
    let (seq, record) = forge_next(&ledger, c, "budget.settled", &settled.payload_json());
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    let closed = format!("reservation {} is already settled", id.0);
    assert_fails_at(
        &ledger,
        &forged_export,
        seq,
        &|f| matches!(f, VerifyFailure::BudgetRule(why) if why.contains(&closed)),
    );
    // And through the API it is refused.
    let err = ledger.write(|t| t.settle(c, id, 30, 22)).expect_err("settled already");
    assert!(matches!(err, LedgerError::Budget(ledger::BudgetError::AlreadyClosed { .. })), "{err}");
}

/// A ledger whose last entry is a `budget.batch` that reserved 40 and
/// settled 30 of it; returns that entry too.
fn batched() -> (tempfile::TempDir, Ledger, Keys, Entry) {
    let (dir, mut ledger, keys) = setup();
    ledger.batch_postings(true);
    let c = &keys.conductor;
    ledger
        .write(|t| -> Result<(), LedgerError> {
            let id = t.reserve(c, MISSION, 40, 1_000, json!({}), 20)?;
            t.settle(c, id, 30, 21).map(|_| ())
        })
        .expect("a batch");
    let batch = last_entry(&ledger);
    assert_eq!(batch.kind, "budget.batch");
    (dir, ledger, keys, batch)
}

fn posting(batch: &Entry, kind: &str) -> Value {
    let postings = batch.payload_json()["postings"].as_array().expect("postings").clone();
    postings.into_iter().find(|p| p["kind"] == kind).expect("the posting")
}

fn already(state: &'static str) -> impl Fn(&VerifyFailure) -> bool {
    move |f| matches!(f, VerifyFailure::BudgetRule(why) if why.contains(&format!("is already {state}")))
}

#[test]
fn a_reservation_closed_twice_through_budget_batches_fails_at_its_seq() {
    // A later batch that settles it again.
    let (_dir, ledger, keys, batch) = batched();
    let again = json!({"postings": [posting(&batch, "budget.settled")]});
    let (seq, record) = forge_next(&ledger, &keys.conductor, "budget.batch", &again);
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &already("settled"));

    // A settle as its own entry after the batch settled it.
    let (_dir, ledger, keys, batch) = batched();
    let settle = posting(&batch, "budget.settled");
    let (seq, record) = forge_next(&ledger, &keys.conductor, "budget.settled", &settle["payload"]);
    let forged_export = export_plus(&export(&ledger), &record);
    let ledger = write_behind(ledger, seq, &record);
    assert_fails_at(&ledger, &forged_export, seq, &already("settled"));

    // Inside one batch: the reservation voided, then settled. The batch is
    // re-made in place (same seq and link), so the failure is at its seq.
    let (_dir, ledger, keys, batch) = batched();
    let settle = posting(&batch, "budget.settled");
    let mut void = settle.clone();
    void["kind"] = json!("budget.voided");
    void["payload"] = json!({"reservation": settle["payload"]["reservation"], "account": MISSION, "released": 40});
    let one = json!({"postings": [posting(&batch, "budget.reserved"), void, settle]});
    let bytes = serde_json::to_vec(&one).expect("json");
    let record = entry::signed_record(batch.seq, &batch.prev, batch.time_us, &keys.conductor, "budget.batch", &bytes);
    let mut forged_export = export(&ledger);
    forged_export.truncate(forged_export.len() - 4 - entry::encode(&batch).len());
    forged_export.extend_from_slice(&u32::try_from(record.len()).expect("len").to_be_bytes());
    forged_export.extend_from_slice(&record);
    let ledger = write_behind(ledger, batch.seq, &record);
    assert_fails_at(&ledger, &forged_export, batch.seq, &already("voided"));
}

#[test]
fn a_database_written_before_the_outcome_index_is_indexed_when_opened() {
    let (_dir, ledger, keys) = setup();
    legitimate_flows(&ledger, &keys);
    let path = ledger.path().to_owned();
    drop(ledger);
    // What a database from before this rule looks like: no index, no mark.
    {
        let db = redb::Database::open(&path).expect("redb");
        let w = db.begin_write().expect("begin");
        {
            let outcomes: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("journal_outcomes");
            w.delete_table(outcomes).expect("drop the index");
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("journal_meta");
            w.open_table(meta).expect("meta").remove("outcomes_indexed").expect("unmark");
        }
        w.commit().expect("commit");
    }
    let ledger = Ledger::open(&path).expect("reopen");
    let err = ledger
        .write(|t| t.append(&keys.conductor, "task.failed", &task(4), 70))
        .expect_err("task 4 was decided before the index existed");
    assert!(matches!(&err, LedgerError::Unauthorized(VerifyFailure::TaskEndedTwice { task: 4, .. })), "{err}");
    ledger.write(|t| t.append(&keys.conductor, "task.failed", &task(7), 70)).expect("a new task ends");
    ledger.verify().expect("verifies");
}

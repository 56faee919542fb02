//! Tamper suite: thousands of ways to damage an export (and a few to damage
//! the database), each of which must be caught at exactly the right sequence
//! number with the right reason, or, for the classes that are undetectable
//! by design, must verify.
//!
//! Journals are built with the public API only: a realistic one (~160
//! entries: genesis, two agent keys, a reviewer, a second reviewer later
//! revoked, an agent key rotated, every kind of format 1 signed by the right
//! role, budget postings through the budget API, automatic checkpoints and
//! one on demand) for the structural and key-holder attacks; a smaller one
//! (~40 entries, same features) for the exhaustive every-byte flip loop,
//! where each of the ~11,000 mutations re-walks the whole export; and a
//! "foreign" one with the same keys and shape but other content.
//!
//! Expected results (N = entries in the export; `count` = header count; a
//! held checkpoint is one an auditor kept, at seq s):
//!
//! | mutation                                   | expected result                                   |
//! |--------------------------------------------|---------------------------------------------------|
//! | flip in magic or version (header)          | `BadExport`                                       |
//! | flip in count, count' < N                  | `Bad{count', TrailingData}` (N entries follow)    |
//! | flip in count, count' > N                  | `Bad{N, Truncated{count', N}}` (file ends at N)   |
//! |   i.e. count flips fail at min(N, count'), never `BadExport`                                   |
//! | flip in record k (length prefix or record) | `Bad{k, ..}`; length/magic/K/P: `Malformed`, seq: |
//! |                                            | `Missing`/`OutOfOrder`, kind: `HashMismatch` (or  |
//! |                                            | `Malformed` if no longer UTF-8), prev, time,      |
//! |                                            | signer, payload, hash: `HashMismatch`, signature: |
//! |                                            | `BadSignature`                                    |
//! | file cut inside the header                 | `BadExport`                                       |
//! | file cut at record k's frame or its prefix | `Bad{k, Truncated{N, k}}`                         |
//! | file cut inside record k                   | `Bad{k, Malformed}`                               |
//! | drop k (count N-1, or N)                   | `Bad{k, Missing{k, k+1}}`; last with count N:     |
//! |                                            | `Truncated` (last with N-1 is a truncation)       |
//! | duplicate k after itself (count N+1, or N) | `Bad{k+1, OutOfOrder{k+1, k}}` (last, count N:    |
//! |                                            | `TrailingData` at N)                              |
//! | swap k, k+1                                | `Bad{k, Missing{k, k+1}}`                         |
//! | same-journal record j at position k        | `Bad{k, Missing/OutOfOrder{k, j}}` (replacing or  |
//! |                                            | inserted, count N+1)                              |
//! | foreign record of seq k replacing k        | `Bad{max(k,1), BrokenLink}`: a foreign genesis is |
//! |                                            | a valid entry 0, only entry 1's link betrays it   |
//! | foreign record of seq k inserted at k      | `Bad{k, BrokenLink}`; k = 0: `Bad{1, OutOfOrder}` |
//! | forge k with its own signer, no re-chain   | `Bad{k+1, BrokenLink}`; the last entry: verifies  |
//! | truncate to k, count N kept                | `Bad{k, Truncated{N, k}}`                         |
//! | truncate to k, count k, held s >= k        | `Bad{k, Truncated{s+1, k}}` (s: first held >= k)  |
//! | truncate to k, count k, no held s >= k     | verifies: UNDETECTABLE without a later checkpoint |
//! | re-sign k by an in-force wrong-role key    | `Bad{k, WrongRole}` (tail re-chained, count N)    |
//! | re-sign k by an unregistered key           | `Bad{k, UnknownKey}` (k = 0: `BadKeyEvent`)       |
//! | re-sign k by a key revoked (or rotated     | `Bad{k, RevokedKey{r}}` for every k > r           |
//! |   away) at r                               |                                                   |
//! | insert an entry by a key revoked at r      | `Bad{k, RevokedKey{r}}` (tail re-chained, N+1)    |
//! | insert an entry by a key in force          | verifies; held s >= k: `Bad{s, CheckpointMismatch}`|
//! | rewrite the tail from k, valid signers     | held s >= k: `Bad{s, CheckpointMismatch}` (first  |
//! |                                            | such s); otherwise, or no held: verifies          |
//! | garbage, absurd header count or lengths    | `BadExport` or `Bad{..}`, never `Ok`, never panic |
//! | database: rows deleted/edited/swapped,     | `Ledger::verify` fails at the same seqs; tail cut |
//! |   head row edited, key projection edited   | with the head rewritten verifies (held: fails)    |

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use redb::ReadableTable;

use identity::{Keypair, Role};
use ledger::entry::{self, Entry};
use ledger::{Checkpoint, EntryHash, Ledger, LedgerError, Txn, VerifyError, VerifyFailure, VerifyReport};
use serde_json::{Value, json};

const CHECKPOINT: &str = "journal.checkpoint";
const MISSION: &str = "m-2024-017";
const HEADER_BYTES: usize = 20;

// ---------------------------------------------------------------------------
// Keys and journals
// ---------------------------------------------------------------------------

/// Every key of a journal, deterministic so journals are reproducible.
struct Keys {
    conductor: Arc<Keypair>,
    agent_a: Keypair,
    /// Replaces `agent_a` by rotation half-way.
    agent_a2: Keypair,
    agent_b: Keypair,
    reviewer: Keypair,
    /// Decides early gates, then is revoked.
    reviewer_old: Keypair,
    /// Never registered anywhere.
    stranger: Keypair,
}

impl Keys {
    fn new(seed: u8) -> Self {
        let key = |i: u8, role| Keypair::from_secret_bytes(role, &[seed.wrapping_mul(16).wrapping_add(i); 32]);
        Keys {
            conductor: Arc::new(key(1, Role::Conductor)),
            agent_a: key(2, Role::Agent),
            agent_a2: key(3, Role::Agent),
            agent_b: key(4, Role::Agent),
            reviewer: key(5, Role::Reviewer),
            reviewer_old: key(6, Role::Reviewer),
            stranger: key(7, Role::Agent),
        }
    }

    fn all(&self) -> [&Keypair; 7] {
        [
            &self.conductor,
            &self.agent_a,
            &self.agent_a2,
            &self.agent_b,
            &self.reviewer,
            &self.reviewer_old,
            &self.stranger,
        ]
    }

    /// The private key behind a journal signer (the powerful attacker holds
    /// them all).
    fn holder_of(&self, public: &[u8; 32]) -> &Keypair {
        self.all()
            .into_iter()
            .find(|k| &k.public().to_bytes() == public)
            .expect("every signer in the journal is one of the test's keys")
    }
}

/// A built journal, exported, plus what the test needs to know about it.
struct Fixture {
    keys: Keys,
    export: Vec<u8>,
    records: Vec<Vec<u8>>,
    entries: Vec<Entry>,
    /// Checkpoints an auditor kept: the first automatic one and the one
    /// taken on demand two thirds of the way through.
    held: Vec<Checkpoint>,
    /// seq of the `key.revoked` of `reviewer_old`.
    revoked_at: u64,
    /// seq of the `key.rotated` that replaced `agent_a` by `agent_a2`.
    rotated_at: u64,
}

impl Fixture {
    fn n(&self) -> usize {
        self.records.len()
    }
}

struct Clock(i64);

impl Clock {
    fn tick(&mut self) -> i64 {
        self.0 += 1_731;
        self.0
    }
}

fn write<T>(ledger: &Ledger, f: impl FnOnce(&mut Txn) -> Result<T, LedgerError>) -> T {
    ledger.write(f).expect("ledger write")
}

/// A host.infer payload of about 200 bytes, like a real model call.
fn infer_payload(round: usize, tag: &str) -> Value {
    json!({
        "mission": MISSION,
        "task": format!("t-{round:03}"),
        "model": "mistral-7b-instruct-v0.3-q4k",
        "prompt_blake3": format!("{:064x}", (round as u128 + 1) * 0x9e37_79b9_7f4a_7c15),
        "prompt_tokens": 812 + round,
        "completion_tokens": 143,
        "latency_ms": 2311,
        "stop": "eos",
        "journal": tag,
    })
}

/// One task's worth of entries: budget reservation, an inference, a batch
/// of agent host calls, settlement, sometimes a gate, and a decision.
fn task_round(
    ledger: &Ledger,
    keys: &Keys,
    r: usize,
    agent: &Keypair,
    reviewer: &Keypair,
    clock: &mut Clock,
    tag: &str,
) {
    let task = format!("t-{r:03}");
    let reservation = write(ledger, |t| {
        t.append(
            &keys.conductor,
            "task.started",
            &json!({"mission": MISSION, "task": task, "cell": "summarise"}),
            clock.tick(),
        )?;
        let now = clock.tick();
        let deadline = now + 60_000_000;
        let id =
            t.reserve(&keys.conductor, MISSION, 1_500, deadline, json!({"task": task, "call": "host.infer"}), now)?;
        t.append(agent, "host.infer", &infer_payload(r, tag), clock.tick())?;
        Ok(id)
    });
    write(ledger, |t| {
        let items = [
            ("host.log", json!({"task": task, "level": "info", "msg": "summarising 3 documents"})),
            ("host.recall", json!({"task": task, "query": "prior summaries", "hits": 2})),
            ("host.remember", json!({"task": task, "key": format!("summary/{r}"), "bytes": 734})),
            ("host.log", json!({"task": task, "level": "debug", "msg": "done"})),
        ];
        t.append_batch(agent, &items, clock.tick())
    });
    write(ledger, |t| {
        if r % 4 == 3 {
            t.void(&keys.conductor, reservation, clock.tick())?;
        } else {
            t.settle(&keys.conductor, reservation, 955, clock.tick())?;
        }
        if r.is_multiple_of(2) {
            t.append(agent, "task.proposed", &json!({"task": task, "decision": "publish"}), clock.tick())?;
            t.append(
                &keys.conductor,
                "gate.requested",
                &json!({"gate_id": format!("g-{r:03}"), "task": task, "gate": "publish"}),
                clock.tick(),
            )?;
        }
        Ok(())
    });
    if r.is_multiple_of(2) {
        write(ledger, |t| {
            t.append(
                reviewer,
                "gate.decided",
                &json!({"gate_id": format!("g-{r:03}"), "task": task, "gate": "publish", "approve": true}),
                clock.tick(),
            )
        });
    }
    // Outcomes name their task as the conductor does: mission and index.
    let (kind, payload) = match r % 6 {
        4 => ("task.failed", json!({"mission": MISSION, "task": r, "error": "model timed out"})),
        5 => ("task.skipped", json!({"mission": MISSION, "task": r, "why": "already summarised"})),
        _ => ("task.decided", json!({"mission": MISSION, "task": r, "decision": "publish"})),
    };
    write(ledger, |t| t.append(&keys.conductor, kind, &payload, clock.tick()));
}

/// The shape of a test journal.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Tasks (about ten entries each).
    rounds: usize,
    /// Automatic checkpoint interval.
    every: u64,
    /// Before which round `reviewer_old` is revoked, `agent_a` rotated and
    /// the held on-demand checkpoint taken.
    revoke: usize,
    rotate: usize,
    held: usize,
}

/// ~160 entries: the realistic journal.
const BIG: Plan = Plan { rounds: 13, every: 48, revoke: 4, rotate: 6, held: 9 };
/// ~40 entries, every feature: for the every-byte loops.
const SMALL: Plan = Plan { rounds: 2, every: 16, revoke: 1, rotate: 1, held: 1 };

/// Builds a journal to `plan` with automatic checkpoints. Returns the open
/// ledger too (and its directory).
fn build(seed: u8, plan: Plan, tag: &str, time_base: i64) -> (tempfile::TempDir, Ledger, Fixture) {
    let Plan { rounds, every, revoke: revoke_round, rotate: rotate_round, held: held_round } = plan;
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = Ledger::open(&dir.path().join("conductor.redb")).expect("open");
    ledger.checkpoint_every(keys.conductor.clone(), every);
    let mut clock = Clock(time_base);
    let c = keys.conductor.clone();
    write(&ledger, |t| t.genesis(&c, json!({"journal": tag, "host": "test-host"}), clock.tick()));
    write(&ledger, |t| {
        t.register_key(
            &c,
            &keys.agent_a.public(),
            Role::Agent,
            json!({"mission": MISSION, "agent": "planner"}),
            clock.tick(),
        )?;
        t.register_key(
            &c,
            &keys.agent_b.public(),
            Role::Agent,
            json!({"mission": MISSION, "agent": "writer"}),
            clock.tick(),
        )
    });
    write(&ledger, |t| {
        t.register_key(&c, &keys.reviewer.public(), Role::Reviewer, json!({"name": "A. Reviewer"}), clock.tick())?;
        t.register_key(&c, &keys.reviewer_old.public(), Role::Reviewer, json!({"name": "B. Former"}), clock.tick())?;
        t.append(
            &c,
            "mission.declared",
            &json!({"mission": MISSION, "goal": "weekly digest", "cells": 3}),
            clock.tick(),
        )?;
        t.open_account(&c, MISSION, None, Some(1_000_000), clock.tick())
    });
    let (mut revoked_at, mut rotated_at, mut on_demand) = (None, None, None);
    for r in 0..rounds {
        if r == revoke_round {
            revoked_at = Some(
                write(&ledger, |t| t.revoke_key(&c, &keys.reviewer_old.public(), "left the team", clock.tick())).0,
            );
        }
        if r == rotate_round {
            rotated_at = Some(
                write(&ledger, |t| {
                    t.rotate_key(&c, &keys.agent_a.public(), &keys.agent_a2.public(), "scheduled", clock.tick())
                })
                .0,
            );
        }
        if r == held_round {
            on_demand = Some(write(&ledger, |t| t.checkpoint(&c, clock.tick())));
        }
        let agent = match (r % 2, rotated_at.is_some()) {
            (1, _) => &keys.agent_b,
            (_, false) => &keys.agent_a,
            (_, true) => &keys.agent_a2,
        };
        let reviewer = if revoked_at.is_some() { &keys.reviewer } else { &keys.reviewer_old };
        // Every third task journals its postings as `budget.batch` entries.
        ledger.batch_postings(r % 3 == 2);
        task_round(&ledger, &keys, r, agent, reviewer, &mut clock, tag);
    }
    // A group-commit style transaction: many postings in batch entries,
    // split by another entry (which must keep its place in the order).
    ledger.batch_postings(true);
    write(&ledger, |t| {
        let mut ids = Vec::new();
        for call in 0..4 {
            let now = clock.tick();
            ids.push(t.reserve(&c, MISSION, 100 + call, now + 60_000_000, json!({"call": call}), now)?);
        }
        t.settle(&c, ids[0], 60, clock.tick())?;
        t.append(&c, "task.started", &json!({"mission": MISSION, "task": "batched"}), clock.tick())?;
        t.void(&c, ids[1], clock.tick())?;
        t.settle(&c, ids[2], 102, clock.tick())?;
        t.settle(&c, ids[3], 1, clock.tick())?;
        Ok(())
    });
    ledger.batch_postings(false);
    write(&ledger, |t| {
        t.append(
            &c,
            "memory.asserted",
            &json!({"mission": MISSION, "fact": "digest published", "source": "t-000"}),
            clock.tick(),
        )?;
        let now = clock.tick();
        let id = t.reserve(&c, MISSION, 10, now + 60_000_000, json!({"call": "cleanup"}), now)?;
        t.void(&c, id, clock.tick())?;
        // A reservation that runs out: its deadline passes before it is
        // settled, and the sweep returns it (`budget.expired`).
        let now = clock.tick();
        t.reserve(&c, MISSION, 20, now + 1_000, json!({"call": "abandoned"}), now)?;
        t.expire_due(&c, clock.tick())?;
        t.append(&c, "budget.refused", &json!({"account": MISSION, "requested": 5_000_000}), clock.tick())?;
        t.append(&c, "mission.finished", &json!({"mission": MISSION, "tasks": rounds}), clock.tick())?;
        t.extend(&keys.reviewer, MISSION, 50_000, "second digest approved", clock.tick())?;
        t.append(&c, "mission.completed", &json!({"mission": MISSION}), clock.tick())
    });
    // A delegation (`task.delegated` by the parent's agent, the child's
    // start and end, the conductor's `task.joined` in the child's
    // transaction) and a refused one: the verifier links them.
    write(&ledger, |t| {
        let parent = json!({"mission": MISSION, "task": 900, "case": "digest"});
        t.append(&c, "task.started", &parent, clock.tick())?;
        let (delegated_seq, _) = t.append(
            &keys.agent_b,
            "task.delegated",
            &json!({"mission": MISSION, "task": 900, "case": "digest", "delegation": "dlg-1", "depth": 1,
                    "children": [{"agent": "summarise", "input_blake3": "ab", "cap": null, "task": 901,
                                  "budget": null}]}),
            clock.tick(),
        )?;
        t.append(
            &keys.agent_b,
            "task.delegated",
            &json!({"mission": MISSION, "task": 900, "case": "digest", "delegation": null, "depth": 1,
                    "children": [{"agent": "nobody", "input_blake3": "cd", "cap": 5, "task": null, "budget": null}],
                    "refused": "`nobody` is not in delegates_to"}),
            clock.tick(),
        )?;
        let child = json!({"mission": MISSION, "task": 901, "case": "digest/0",
                           "parent": {"task": 900, "delegation": "dlg-1", "depth": 1}});
        t.append(&c, "task.started", &child, clock.tick())?;
        t.append(
            &c,
            "task.decided",
            &json!({"mission": MISSION, "task": 901, "case": "digest/0", "outcome": "summarised"}),
            clock.tick(),
        )?;
        t.append(
            &c,
            "task.joined",
            &json!({"mission": MISSION, "task": 900, "case": "digest", "delegation": "dlg-1",
                    "delegated_seq": delegated_seq,
                    "results": [{"task": 901, "agent": "summarise", "status": "decided", "outcome": "summarised",
                                 "reason": "", "details": {}}]}),
            clock.tick(),
        )
    });
    // Any other kind format 1 knows (the list grows) once, by its role, so
    // the journal holds every kind an append may write.
    let written: std::collections::BTreeSet<String> =
        ledger.entries(0, usize::MAX).expect("entries").into_iter().map(|e| e.kind).collect();
    for (kind, role) in ledger::rules::kinds() {
        let signer: &Keypair = match role {
            Role::Conductor => &keys.conductor,
            Role::Agent => &keys.agent_b,
            Role::Reviewer => &keys.reviewer,
            _ => continue,
        };
        if !written.contains(kind) {
            // Kinds with their own methods refuse a plain append; fine.
            let _ = ledger
                .write(|t| t.append(signer, kind, &json!({"mission": MISSION, "note": "coverage"}), clock.tick()));
        }
    }
    // The last entry must not be a checkpoint, so "after the last held
    // checkpoint" always has entries.
    write(&ledger, |t| t.append(&keys.agent_b, "host.log", &json!({"msg": "bye"}), clock.tick()));
    let export = export_of(&ledger);
    let (count, records) = split_export(&export);
    assert_eq!(count as usize, records.len());
    let entries: Vec<Entry> = records.iter().map(|r| entry::decode(r).expect("decodes")).collect();
    let first_auto = records
        .iter()
        .zip(&entries)
        .find(|(_, e)| e.kind == CHECKPOINT)
        .map(|(r, _)| Checkpoint::from_record(r.clone()).expect("checkpoint"))
        .expect("an automatic checkpoint");
    let on_demand = on_demand.expect("checkpoint taken");
    assert!(first_auto.seq() < on_demand.seq());
    assert_ne!(entries.last().map(|e| e.kind.as_str()), Some(CHECKPOINT));
    let fixture = Fixture {
        export,
        records,
        entries,
        held: vec![first_auto, on_demand],
        revoked_at: revoked_at.expect("revoked"),
        rotated_at: rotated_at.expect("rotated"),
        keys,
    };
    (dir, ledger, fixture)
}

fn export_of(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::new();
    ledger.export(&mut out, |_, _| {}).expect("export");
    out
}

/// The realistic journal (~160 entries).
fn big() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(1, BIG, "main", 1_700_000_000_000_000).2)
}

/// The journal for exhaustive byte loops (~40 entries, same features).
fn small() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(1, SMALL, "small", 1_700_000_000_000_000).2)
}

/// Another journal by the same keys (same structure, other content): its
/// records are validly signed by keys our journal trusts.
fn foreign() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(1, BIG, "other", 1_650_000_000_000_000).2)
}

// ---------------------------------------------------------------------------
// Export framing
// ---------------------------------------------------------------------------

fn split_export(bytes: &[u8]) -> (u64, Vec<Vec<u8>>) {
    assert_eq!(&bytes[..8], ledger::EXPORT_MAGIC);
    let count = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let mut at = HEADER_BYTES;
    let mut records = Vec::new();
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        records.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    (count, records)
}

fn assemble<R: AsRef<[u8]>>(count: u64, records: &[R]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.iter().map(|r| r.as_ref().len() + 4).sum::<usize>());
    out.extend_from_slice(ledger::EXPORT_MAGIC);
    out.extend_from_slice(&ledger::EXPORT_VERSION.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for r in records {
        let r = r.as_ref();
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Byte range of record k's frame (length prefix included) in the export.
fn frames(records: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let mut at = HEADER_BYTES;
    records
        .iter()
        .map(|r| {
            let span = (at, at + 4 + r.len());
            at = span.1;
            span
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Expectations and tallies
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Want {
    /// Verifies, with this many entries.
    Accept(u64),
    BadExport,
    /// Fails at this seq with exactly this failure.
    Exact(u64, VerifyFailure),
    /// Fails at this seq with one of these failure variants.
    Variant(u64, &'static [&'static str]),
    /// Fails somehow (garbage: any error but never Ok, never a panic).
    AnyError,
}

fn variant(f: &VerifyFailure) -> String {
    let debug = format!("{f:?}");
    debug.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

type Outcome = Result<Result<VerifyReport, VerifyError>, String>;

fn verify(bytes: &[u8], held: &[Checkpoint]) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| ledger::verify_export(&mut &bytes[..], held))).map_err(panic_text)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into())
}

fn matches_want(got: &Outcome, want: &Want) -> bool {
    let Ok(got) = got else { return false };
    match (got, want) {
        (Ok(report), Want::Accept(n)) => report.entries == *n,
        (Err(VerifyError::BadExport(_)), Want::BadExport | Want::AnyError) => true,
        (Err(VerifyError::Bad { seq, failure }), Want::Exact(s, f)) => seq == s && failure == f,
        (Err(VerifyError::Bad { seq, failure }), Want::Variant(s, names)) => {
            seq == s && names.contains(&variant(failure).as_str())
        }
        (Err(VerifyError::Bad { .. }), Want::AnyError) => true,
        _ => false,
    }
}

fn describe(got: &Outcome) -> String {
    match got {
        Err(panic) => format!("PANIC: {panic}"),
        Ok(Ok(report)) => format!("Ok({} entries)", report.entries),
        Ok(Err(VerifyError::Bad { seq, failure })) => format!("Bad{{seq {seq}: {failure:?}}}"),
        Ok(Err(e)) => format!("{e:?}"),
    }
}

/// Counts mutations of one class and keeps the ones that went wrong.
struct Tally {
    class: &'static str,
    tried: usize,
    accepting: bool,
    misses: Vec<String>,
    started: Instant,
}

impl Tally {
    fn new(class: &'static str) -> Self {
        Tally { class, tried: 0, accepting: false, misses: Vec::new(), started: Instant::now() }
    }

    /// Verifies an export and compares with `want`.
    fn check(&mut self, what: impl FnOnce() -> String, bytes: &[u8], held: &[Checkpoint], want: Want) {
        self.record(what, verify(bytes, held), want);
    }

    /// Compares any verification outcome with `want`.
    fn record(&mut self, what: impl FnOnce() -> String, got: Outcome, want: Want) {
        self.tried += 1;
        if matches!(want, Want::Accept(_)) {
            self.accepting = true;
        }
        if !matches_want(&got, &want) {
            self.misses.push(format!("{}: expected {want:?}, got {}", what(), describe(&got)));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.tried += other.tried;
        self.accepting |= other.accepting;
        self.misses.extend(other.misses);
    }
}

/// Prints each class's count and fails with every miss of every class.
fn report(tallies: Vec<Tally>) {
    let mut misses = Vec::new();
    for t in &tallies {
        let ok = t.tried - t.misses.len();
        eprintln!(
            "tamper class {:<58} tried {:>6}  as expected {:>6} ({:>5.1}%){}  [{:.2}s]",
            t.class,
            t.tried,
            ok,
            100.0 * ok as f64 / t.tried.max(1) as f64,
            if t.accepting { " (incl. documented undetectable)" } else { "" },
            t.started.elapsed().as_secs_f64()
        );
        assert!(t.tried > 0, "class {} tried nothing", t.class);
        misses.extend(t.misses.iter().take(20).map(|m| format!("[{}] {m}", t.class)));
    }
    assert!(misses.is_empty(), "{} unexpected outcomes:\n{}", misses.len(), misses.join("\n"));
}

/// Runs `f` over `0..n` on every core, with one tally per class per
/// worker, merged per class.
fn par_tallies(classes: &[&'static str], n: usize, f: impl Fn(usize, &mut [Tally]) + Sync) -> Vec<Tally> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let mut totals: Vec<Tally> = classes.iter().map(|c| Tally::new(c)).collect();
    let parts: Vec<Vec<Tally>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let f = &f;
                scope.spawn(move || {
                    let mut tallies: Vec<Tally> = classes.iter().map(|c| Tally::new(c)).collect();
                    for i in (w..n).step_by(threads) {
                        f(i, &mut tallies);
                    }
                    tallies
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    for part in parts {
        for (total, t) in totals.iter_mut().zip(part) {
            total.merge(t);
        }
    }
    totals
}

fn par_tally(class: &'static str, n: usize, f: impl Fn(usize, &mut Tally) + Sync) -> Tally {
    par_tallies(&[class], n, |i, t| f(i, &mut t[0])).pop().expect("one class")
}

// ---------------------------------------------------------------------------
// Record surgery for the key-holding attacker
// ---------------------------------------------------------------------------

fn hash_of_record(record: &[u8]) -> EntryHash {
    entry::decode(record).expect("decodes").hash
}

/// Re-chains `records[from..]`: each gets its position as seq, the previous
/// record's hash as prev, checkpoint claims rewritten to match, and a fresh
/// signature by its own original signer. What an attacker holding every key
/// does after changing an entry.
fn rechain(keys: &Keys, records: &mut [Vec<u8>], from: usize) {
    for j in from..records.len() {
        let prev = if j == 0 { EntryHash::default() } else { hash_of_record(&records[j - 1]) };
        let e = entry::decode(&records[j]).expect("decodes");
        let payload = if e.kind == CHECKPOINT {
            serde_json::to_vec(&json!({"entries": j as u64, "head": prev.to_string()})).expect("json")
        } else {
            e.payload.clone()
        };
        records[j] = entry::signed_record(j as u64, &prev, e.time_us, keys.holder_of(&e.signer), &e.kind, &payload);
    }
}

/// Record k re-made by `signer` (content otherwise unchanged, time moved by
/// `dt`), then the whole tail re-chained.
fn resign_and_rechain(fx: &Fixture, k: usize, signer: &Keypair, dt: i64) -> Vec<Vec<u8>> {
    let mut records = fx.records.clone();
    let e = &fx.entries[k];
    records[k] = entry::signed_record(k as u64, &e.prev, e.time_us + dt, signer, &e.kind, &e.payload);
    rechain(&fx.keys, &mut records, k + 1);
    records
}

/// The first held checkpoint at or after `k`.
fn held_at_or_after(fx: &Fixture, k: u64) -> Option<&Checkpoint> {
    fx.held.iter().filter(|c| c.seq() >= k).min_by_key(|c| c.seq())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn clean_exports_verify_and_match_the_database() {
    let (_dir, ledger, fx) = build(3, BIG, "clean", 1_700_000_000_000_000);
    let n = fx.n() as u64;
    eprintln!(
        "clean journal: {n} entries, {} export bytes, held checkpoints at {:?}, reviewer revoked at {}, agent rotated at {}",
        fx.export.len(),
        fx.held.iter().map(Checkpoint::seq).collect::<Vec<_>>(),
        fx.revoked_at,
        fx.rotated_at
    );
    assert!((150..=300).contains(&n), "realistic journal size, got {n}");
    // Every kind of format 1 appears (verification checks each signer's
    // role); kinds added later that need a method of their own are listed.
    let kinds: std::collections::BTreeSet<&str> = fx.entries.iter().map(|e| e.kind.as_str()).collect();
    let missing: Vec<&str> = ledger::rules::kinds().map(|(k, _)| k).filter(|k| !kinds.contains(k)).collect();
    if !missing.is_empty() {
        eprintln!("note: the test journal has no entry of kind(s) {missing:?}");
    }
    for kind in [
        "conductor.genesis",
        "key.registered",
        "key.revoked",
        "key.rotated",
        "journal.checkpoint",
        "budget.opened",
        "budget.reserved",
        "budget.settled",
        "budget.voided",
        "budget.expired",
        "budget.extended",
        "budget.batch",
        "host.infer",
        "gate.decided",
    ] {
        assert!(kinds.contains(kind), "journal lacks `{kind}`");
    }
    let plain = ledger::verify_export(&mut &fx.export[..], &[]).expect("clean export verifies");
    let against = ledger::verify_export(&mut &fx.export[..], &fx.held).expect("clean export verifies against held");
    assert_eq!(plain.entries, n);
    assert_eq!(against.checkpoints_matched, 2);
    let db = ledger.verify_against(&fx.held).expect("database verifies");
    assert_eq!(db.head, plain.head);
    assert_eq!(db.keys, plain.keys);
    assert_eq!(ledger.head().expect("head"), (n, plain.head));
    assert_eq!(ledger.keys().expect("keys"), plain.keys);
    assert_eq!(plain.keys.len(), 7 - 1, "conductor, 2 agents, rotated-in agent, 2 reviewers");
    // Held checkpoints survive a round trip through their file format.
    for c in &fx.held {
        assert_eq!(&Checkpoint::parse(&c.to_text()).expect("parses"), c);
    }
    // The journal grows; the old checkpoints still match (no false alarm),
    // in the database and in a fresh export.
    let mut clock = Clock(1_800_000_000_000_000);
    for r in 100..103 {
        task_round(&ledger, &fx.keys, r, &fx.keys.agent_b, &fx.keys.reviewer, &mut clock, "more");
    }
    let newer = write(&ledger, |t| t.checkpoint(&fx.keys.conductor, clock.tick()));
    let grown = export_of(&ledger);
    let report =
        ledger::verify_export(&mut &grown[..], &fx.held).expect("grown export verifies against old checkpoints");
    assert!(report.entries > n);
    assert_eq!(report.checkpoints_matched, 2);
    let mut all = fx.held.clone();
    all.push(newer);
    assert_eq!(ledger::verify_export(&mut &grown[..], &all).expect("and the newer one").checkpoints_matched, 3);
    assert_eq!(ledger.verify_against(&all).expect("database too").entries, report.entries);
    // ...and the old export is now caught as a truncation by the new one.
    let stale = ledger::verify_export(&mut &fx.export[..], &all);
    assert!(
        matches!(stale, Err(VerifyError::Bad { seq, failure: VerifyFailure::Truncated { .. } }) if seq == n),
        "old export against the newer checkpoint: {stale:?}"
    );
}

/// A bit flip at every byte of the (small) export, and the file ending early.
#[test]
fn every_byte_flip_and_early_ends_are_detected_at_the_right_seq() {
    let fx = small();
    let n = fx.n() as u64;
    let spans = frames(&fx.records);
    let total = fx.export.len();
    assert_eq!(spans.last().map(|s| s.1), Some(total));
    ledger::verify_export(&mut &fx.export[..], &[]).expect("clean");
    // Which record holds byte `off`, and where in it.
    let locate = |off: usize| {
        let k = spans.partition_point(|s| s.1 <= off);
        (k, off - spans[k].0)
    };

    let mut header = Tally::new("flip: header (magic, version, count)");
    for off in 0..HEADER_BYTES {
        let bit = (off * 3 + 1) % 8;
        let mut bad = fx.export.clone();
        bad[off] ^= 1 << bit;
        let want = if off < 12 {
            Want::BadExport
        } else {
            // A changed count never makes the file unreadable: the verifier
            // reads min(N, count') records; fewer declared than present is
            // trailing data at count', more declared is a truncation at N.
            let declared = u64::from_be_bytes(bad[12..20].try_into().expect("8"));
            if declared < n {
                Want::Exact(declared, VerifyFailure::TrailingData)
            } else {
                Want::Exact(n, VerifyFailure::Truncated { expected: declared, found: n })
            }
        };
        header.check(|| format!("flip bit {bit} of header byte {off}"), &bad, &[], want);
    }

    const FIELDS: [&str; 12] = [
        "flip: record length prefix (every byte)",
        "flip: entry magic (every byte)",
        "flip: entry seq (every byte)",
        "flip: entry prev (every byte)",
        "flip: entry time (every byte)",
        "flip: entry signer (every byte)",
        "flip: entry kind length (every byte)",
        "flip: entry kind (every byte)",
        "flip: entry payload length (every byte)",
        "flip: entry payload (every byte)",
        "flip: entry hash (every byte)",
        "flip: entry signature (every byte)",
    ];
    let field_tallies = par_tallies(&FIELDS, total - HEADER_BYTES, |i, tallies| {
        let off = HEADER_BYTES + i;
        let (k, rel) = locate(off);
        let e = &fx.entries[k];
        let (kl, pl) = (e.kind.len(), e.payload.len());
        let bit = (off + off / 8) % 8;
        let mut bad = fx.export.clone();
        bad[off] ^= 1 << bit;
        let k64 = k as u64;
        let (field, want) = match rel {
            0..4 => (0, Want::Variant(k64, &["Malformed"])),
            4..8 => (1, Want::Variant(k64, &["Malformed"])),
            8..16 => {
                let at = spans[k].0 + 8;
                let found = u64::from_be_bytes(bad[at..at + 8].try_into().expect("8"));
                let f = if found > k64 {
                    VerifyFailure::Missing { expected: k64, found }
                } else {
                    VerifyFailure::OutOfOrder { expected: k64, found }
                };
                (2, Want::Exact(k64, f))
            }
            16..48 => (3, Want::Exact(k64, VerifyFailure::HashMismatch)),
            48..56 => (4, Want::Exact(k64, VerifyFailure::HashMismatch)),
            56..88 => (5, Want::Exact(k64, VerifyFailure::HashMismatch)),
            88..90 => (6, Want::Variant(k64, &["Malformed"])),
            // A flipped top bit leaves ASCII, and the kind is no UTF-8.
            _ if rel < 90 + kl && bad[off] >= 0x80 => (7, Want::Variant(k64, &["Malformed"])),
            _ if rel < 90 + kl => (7, Want::Exact(k64, VerifyFailure::HashMismatch)),
            _ if rel < 94 + kl => (8, Want::Variant(k64, &["Malformed"])),
            _ if rel < 94 + kl + pl => (9, Want::Exact(k64, VerifyFailure::HashMismatch)),
            _ if rel < 126 + kl + pl => (10, Want::Exact(k64, VerifyFailure::HashMismatch)),
            _ => (11, Want::Exact(k64, VerifyFailure::BadSignature)),
        };
        tallies[field].check(
            || format!("flip bit {bit} of byte {off} (record {k}, frame byte {rel})"),
            &bad,
            &[],
            want,
        );
    });
    for (k, (start, end)) in spans.iter().enumerate() {
        let e = &fx.entries[k];
        assert_eq!(4 + 4 + 8 + 32 + 8 + 32 + 2 + e.kind.len() + 4 + e.payload.len() + 32 + 64, end - start);
    }

    // The file ends early: at every byte of the header and of the first
    // six and last two records; elsewhere at every frame boundary, every
    // byte of every length prefix, the first eight bytes, the middle and
    // the last byte of each record (every byte everywhere would cost as
    // much again as all the flips, for no new case).
    let cut_points: Vec<usize> = (0..total)
        .filter(|&cut| {
            if cut < HEADER_BYTES {
                return true;
            }
            let (k, rel) = locate(cut);
            let len = spans[k].1 - spans[k].0;
            k < 6 || k + 2 >= fx.n() || rel < 12 || rel == len / 2 || rel + 1 == len
        })
        .collect();
    let cuts = par_tally("cut: export ends early (header, boundaries, inside records)", cut_points.len(), |i, t| {
        let cut = cut_points[i];
        let want = if cut < HEADER_BYTES {
            Want::BadExport
        } else {
            let (k, rel) = locate(cut);
            if rel < 4 {
                // At a frame boundary or inside a length prefix: the file
                // ends where record k should be.
                Want::Exact(k as u64, VerifyFailure::Truncated { expected: n, found: k as u64 })
            } else {
                Want::Variant(k as u64, &["Malformed"])
            }
        };
        t.check(|| format!("cut at {cut}"), &fx.export[..cut], &[], want);
    });

    let mut all = vec![header];
    all.extend(field_tallies);
    all.push(cuts);
    report(all);
}

/// Flips in the realistic journal: three fields of every record (rotating,
/// so every field is hit in a quarter of the records), verified against
/// the held checkpoints.
#[test]
fn field_flips_in_the_realistic_journal_are_detected() {
    let fx = big();
    let spans = frames(&fx.records);
    let t = par_tally("flip: 3 of the 12 fields (rotating) of every record, held cps", fx.n(), |k, t| {
        let e = &fx.entries[k];
        let (kl, pl) = (e.kind.len(), e.payload.len());
        // Field starts within the frame (length prefix is at 0).
        let starts = [0, 4, 8, 16, 48, 56, 88, 90, 90 + kl, 94 + kl, 94 + kl + pl, 126 + kl + pl];
        let sizes = [4, 4, 8, 32, 8, 32, 2, kl, 4, pl, 32, 64];
        for f in [k % 12, (k + 4) % 12, (k + 8) % 12] {
            let (s, size) = (starts[f], sizes[f]);
            let within = (k * 7 + f * 13) % size;
            let off = spans[k].0 + s + within;
            let bit = (k + f) % 7; // kind bytes keep ASCII (bit 7 tested above)
            let mut bad = fx.export.clone();
            bad[off] ^= 1 << bit;
            let k64 = k as u64;
            let want = match f {
                0 | 1 | 6 | 8 => Want::Variant(k64, &["Malformed"]),
                2 => Want::Variant(k64, &["Missing", "OutOfOrder"]),
                11 => Want::Exact(k64, VerifyFailure::BadSignature),
                _ => Want::Exact(k64, VerifyFailure::HashMismatch),
            };
            t.check(|| format!("record {k} field {f} byte {within} bit {bit}"), &bad, &fx.held, want);
        }
    });
    report(vec![t]);
}

/// Drops, duplicates, swaps and splices, with the header count kept and
/// with it adjusted so the count alone does not give the mutation away.
#[test]
fn reordering_dropping_duplicating_and_splicing_fail_at_the_right_seq() {
    let fx = big();
    let other = foreign();
    let n = fx.n();
    let n64 = n as u64;
    assert_eq!(other.n(), n, "the foreign journal has the same shape");
    let recs = &fx.records;
    let without =
        |k: usize| -> Vec<&Vec<u8>> { recs.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, r)| r).collect() };
    let inserted = |k: usize, extra: &'static Vec<u8>| -> Vec<&Vec<u8>> {
        let mut v: Vec<&Vec<u8>> = recs.iter().collect();
        v.insert(k, extra);
        v
    };
    let missing = |k: usize| VerifyFailure::Missing { expected: k as u64, found: k as u64 + 1 };

    let drop_adjusted = par_tally("drop entry k, count N-1", n - 1, |k, t| {
        // Dropping the last entry with the count adjusted is a truncation
        // (see the truncation test); every other drop breaks the sequence.
        t.check(|| format!("drop {k}"), &assemble(n64 - 1, &without(k)), &[], Want::Exact(k as u64, missing(k)));
    });
    let drop_kept = par_tally("drop entry k, count N", n, |k, t| {
        let want = if k == n - 1 {
            Want::Exact(k as u64, VerifyFailure::Truncated { expected: n64, found: n64 - 1 })
        } else {
            Want::Exact(k as u64, missing(k))
        };
        t.check(|| format!("drop {k}"), &assemble(n64, &without(k)), &[], want);
    });
    let dup = |count_extra: u64| {
        move |k: usize, t: &mut Tally| {
            let records = inserted(k + 1, &recs[k]);
            let k1 = k as u64 + 1;
            let want = if count_extra == 0 && k == n - 1 {
                Want::Exact(k1, VerifyFailure::TrailingData)
            } else {
                Want::Exact(k1, VerifyFailure::OutOfOrder { expected: k1, found: k as u64 })
            };
            t.check(|| format!("duplicate {k}"), &assemble(n64 + count_extra, &records), &[], want);
        }
    };
    let dup_adjusted = par_tally("duplicate entry k after itself, count N+1", n, dup(1));
    let dup_kept = par_tally("duplicate entry k after itself, count N", n, dup(0));
    let swap = par_tally("swap entries k and k+1", n - 1, |k, t| {
        let mut records: Vec<&Vec<u8>> = recs.iter().collect();
        records.swap(k, k + 1);
        t.check(|| format!("swap {k}"), &assemble(n64, &records), &[], Want::Exact(k as u64, missing(k)));
    });
    // Same journal, wrong position: record j at position k (j != k), both
    // replacing record k and inserted before it; two js per k (one earlier,
    // one later where they exist).
    let misplaced = |insert: bool| {
        move |k: usize, t: &mut Tally| {
            let js = [k.checked_sub(1 + k % 5), Some(k + 1 + k % 7).filter(|j| *j < n)];
            for j in js.into_iter().flatten() {
                let mut records: Vec<&Vec<u8>> = recs.iter().collect();
                if insert {
                    records.insert(k, &recs[j]);
                } else {
                    records[k] = &recs[j];
                }
                let count = if insert { n64 + 1 } else { n64 };
                let (k64, j64) = (k as u64, j as u64);
                let f = if j64 > k64 {
                    VerifyFailure::Missing { expected: k64, found: j64 }
                } else {
                    VerifyFailure::OutOfOrder { expected: k64, found: j64 }
                };
                t.check(
                    || format!("record {j} at position {k} (insert: {insert})"),
                    &assemble(count, &records),
                    &[],
                    Want::Exact(k64, f),
                );
            }
        }
    };
    let misplaced_replace = par_tally("same-journal record j replacing position k", n, misplaced(false));
    let misplaced_insert = par_tally("same-journal record j inserted at position k, count N+1", n, misplaced(true));
    // Foreign record with the right seq: hash, signature, signer and role
    // are all valid; only the chain link betrays it.
    let splice = |insert: bool| {
        move |k: usize, t: &mut Tally| {
            let records = if insert {
                inserted(k, &other.records[k])
            } else {
                let mut v: Vec<&Vec<u8>> = recs.iter().collect();
                v[k] = &other.records[k];
                v
            };
            let at = k.max(1) as u64;
            let want = if insert && k == 0 {
                // Foreign genesis is a valid entry 0; our genesis follows
                // as a second seq 0.
                Want::Exact(1, VerifyFailure::OutOfOrder { expected: 1, found: 0 })
            } else {
                Want::Exact(at, VerifyFailure::BrokenLink)
            };
            let count = if insert { n64 + 1 } else { n64 };
            t.check(|| format!("foreign record {k} at {k} (insert: {insert})"), &assemble(count, &records), &[], want);
        }
    };
    let splice_replace = par_tally("foreign record (same seq, same keys) replacing k", n, splice(false));
    let splice_insert = par_tally("foreign record (same seq, same keys) inserted at k, count N+1", n, splice(true));
    report(vec![
        drop_adjusted,
        drop_kept,
        dup_adjusted,
        dup_kept,
        swap,
        misplaced_replace,
        misplaced_insert,
        splice_replace,
        splice_insert,
    ]);
}

#[test]
fn truncation_is_caught_by_the_count_or_a_held_checkpoint() {
    let fx = big();
    let n = fx.n();
    let n64 = n as u64;
    let last_held = fx.held.iter().map(Checkpoint::seq).max().expect("held");
    let kept = par_tally("truncate to k entries, count N kept", n, |k, t| {
        let want = Want::Exact(k as u64, VerifyFailure::Truncated { expected: n64, found: k as u64 });
        t.check(|| format!("truncate to {k}"), &assemble(n64, &fx.records[..k]), &[], want);
    });
    let rewritten_held =
        par_tally("truncate to k <= last held cp, count k, held cps", last_held as usize + 1, |k, t| {
            let k64 = k as u64;
            let s = held_at_or_after(fx, k64).expect("a held checkpoint at or after k").seq();
            let want = Want::Exact(k64, VerifyFailure::Truncated { expected: s + 1, found: k64 });
            t.check(|| format!("truncate to {k}"), &assemble(k64, &fx.records[..k]), &fx.held, want);
        });
    // Documented gap, by design: a truncation to k entries with the count
    // rewritten is a valid shorter journal. Only a checkpoint at or after
    // k held elsewhere can tell; that is what checkpoints are for.
    let undetectable_held =
        par_tally("truncate after last held cp, count k (UNDETECTABLE)", n - last_held as usize - 1, |i, t| {
            let k = last_held as usize + 1 + i;
            t.check(
                || format!("truncate to {k}"),
                &assemble(k as u64, &fx.records[..k]),
                &fx.held,
                Want::Accept(k as u64),
            );
        });
    let undetectable_plain = par_tally("truncate to k, count k, no held cp (UNDETECTABLE)", n, |k, t| {
        // Except k = 0: an empty journal vouches for nothing and is refused.
        let want = if k == 0 { Want::Exact(0, VerifyFailure::Empty) } else { Want::Accept(k as u64) };
        t.check(|| format!("truncate to {k}"), &assemble(k as u64, &fx.records[..k]), &[], want);
    });
    report(vec![kept, rewritten_held, undetectable_held, undetectable_plain]);
}

/// The attacker holds every private key (conductor included) and re-makes
/// the chain after what they change; only the journal's own key rules and
/// the checkpoints an auditor holds can stop them.
#[test]
fn a_key_holding_attacker_is_stopped_by_the_key_rules_and_checkpoints() {
    let fx = big();
    let keys = &fx.keys;
    let n = fx.n();
    let n64 = n as u64;
    let honest = ledger::verify_export(&mut &fx.export[..], &[]).expect("clean");
    let record_of = |public: &[u8; 32]| {
        honest.keys.iter().find(|r| r.public_key == hex::encode(public)).cloned().expect("known key")
    };
    let signer_is = |k: usize, key: &Keypair| fx.entries[k].signer == key.public().to_bytes();

    let wrong_role = par_tally("re-sign k with an in-force key of the wrong role", n, |k, t| {
        let required = ledger::rules::signer_role(&fx.entries[k].kind).expect("known kind");
        let candidates = [&keys.reviewer, &keys.agent_b, &keys.agent_a2, &*keys.conductor];
        let Some(key) = candidates
            .into_iter()
            .find(|c| c.role() != required && record_of(&c.public().to_bytes()).in_force_at(k as u64))
        else {
            return; // the first few entries: only the conductor is in force
        };
        let records = resign_and_rechain(fx, k, key, 0);
        let want = Want::Exact(
            k as u64,
            VerifyFailure::WrongRole { kind: fx.entries[k].kind.clone(), required, actual: key.role() },
        );
        t.check(|| format!("entry {k} signed by a {}", key.role()), &assemble(n64, &records), &[], want);
    });
    let unknown = par_tally("re-sign k with an unregistered key", n, |k, t| {
        let records = resign_and_rechain(fx, k, &keys.stranger, 0);
        let want = if k == 0 {
            // Genesis is its own authority: a stranger's genesis would need
            // to declare the stranger's key, which changes the payload.
            Want::Variant(0, &["BadKeyEvent"])
        } else {
            Want::Exact(k as u64, VerifyFailure::UnknownKey(hex::encode(keys.stranger.public().to_bytes())))
        };
        t.check(|| format!("entry {k} signed by a stranger"), &assemble(n64, &records), &[], want);
    });
    let revoked_key = |key: &'static Keypair, at: u64| {
        move |i: usize, t: &mut Tally| {
            let k = at as usize + 1 + i;
            if signer_is(k, key) {
                return;
            }
            let records = resign_and_rechain(fx, k, key, 0);
            let want = Want::Exact(
                k as u64,
                VerifyFailure::RevokedKey { key: hex::encode(key.public().to_bytes()), revoked_seq: at },
            );
            t.check(|| format!("entry {k} re-signed by key revoked at {at}"), &assemble(n64, &records), &[], want);
        }
    };
    let revoked = par_tally(
        "re-sign k (after revocation) with the revoked reviewer key",
        n - fx.revoked_at as usize - 1,
        revoked_key(&keys.reviewer_old, fx.revoked_at),
    );
    let rotated = par_tally(
        "re-sign k (after rotation) with the rotated-away agent key",
        n - fx.rotated_at as usize - 1,
        revoked_key(&keys.agent_a, fx.rotated_at),
    );
    // A new entry of the right kind for the role, inserted at k with the
    // tail re-chained (count N+1): by the revoked key it fails; by the key
    // in force it is a perfect forgery (control), caught only by a held
    // checkpoint at or after k.
    let insert_by = |key: &'static Keypair, kind: &'static str, at: u64, revoked: bool| {
        move |i: usize, t: &mut Tally| {
            let k = at as usize + 1 + i;
            let mut records = fx.records.clone();
            let prev = hash_of_record(&records[k - 1]);
            let time = fx.entries[k - 1].time_us + 1;
            let payload = br#"{"gate_id":"g-999","task":"t-999","gate":"publish","approve":true}"#;
            records.insert(k, entry::signed_record(k as u64, &prev, time, key, kind, payload));
            rechain(&fx.keys, &mut records, k + 1);
            let bytes = assemble(n64 + 1, &records);
            let k64 = k as u64;
            if revoked {
                let f = VerifyFailure::RevokedKey { key: hex::encode(key.public().to_bytes()), revoked_seq: at };
                t.check(|| format!("insert at {k}"), &bytes, &[], Want::Exact(k64, f.clone()));
                t.check(|| format!("insert at {k}, held"), &bytes, &fx.held, Want::Exact(k64, f));
            } else {
                t.check(|| format!("insert at {k} (control)"), &bytes, &[], Want::Accept(n64 + 1));
                // Everything from k on moved one place along, so the first
                // held checkpoint at or after k no longer matches.
                let want = match held_at_or_after(fx, k64) {
                    Some(c) => Want::Exact(c.seq(), VerifyFailure::CheckpointMismatch { expected: c.hash() }),
                    None => Want::Accept(n64 + 1),
                };
                t.check(|| format!("insert at {k} (control), held"), &bytes, &fx.held, want);
            }
        }
    };
    let revoked_insert = par_tally(
        "insert gate.decided by the revoked reviewer at k (re-chained)",
        n - fx.revoked_at as usize,
        insert_by(&keys.reviewer_old, "gate.decided", fx.revoked_at, true),
    );
    let rotated_insert = par_tally(
        "insert host.log by the rotated-away agent key at k (re-chained)",
        n - fx.rotated_at as usize,
        insert_by(&keys.agent_a, "host.log", fx.rotated_at, true),
    );
    let valid_insert = par_tally(
        "insert gate.decided by the reviewer in force at k (control)",
        n - fx.revoked_at as usize,
        insert_by(&keys.reviewer, "gate.decided", fx.revoked_at, false),
    );
    // Forge entry k with its own (valid) signer without re-chaining: the
    // next entry's link catches it; a forged last entry is a valid fork.
    let forged = par_tally("forge k with its own signer, no re-chain", n, |k, t| {
        let e = &fx.entries[k];
        let mut records = fx.records.clone();
        records[k] =
            entry::signed_record(k as u64, &e.prev, e.time_us + 1, keys.holder_of(&e.signer), &e.kind, &e.payload);
        let want = if k + 1 < n { Want::Exact(k as u64 + 1, VerifyFailure::BrokenLink) } else { Want::Accept(n64) };
        t.check(|| format!("forge {k}"), &assemble(n64, &records), &[], want);
    });
    // Rewrite the whole tail from k with every signer valid: a consistent
    // alternative history. Without held checkpoints it verifies (by
    // design); with them, the first held checkpoint at or after k fails.
    let rewrite = par_tally("rewrite tail from k, all signers valid, held cps", n, |k, t| {
        let e = &fx.entries[k];
        let records = resign_and_rechain(fx, k, keys.holder_of(&e.signer), 1);
        let bytes = assemble(n64, &records);
        let want = match held_at_or_after(fx, k as u64) {
            Some(c) => Want::Exact(c.seq(), VerifyFailure::CheckpointMismatch { expected: c.hash() }),
            None => Want::Accept(n64),
        };
        t.check(|| format!("rewrite from {k}"), &bytes, &fx.held, want);
    });
    let rewrite_plain = par_tally("rewrite tail from k, all signers valid, no held cp (UNDETECTABLE)", n, |k, t| {
        let e = &fx.entries[k];
        let records = resign_and_rechain(fx, k, keys.holder_of(&e.signer), 1);
        t.check(|| format!("rewrite from {k}"), &assemble(n64, &records), &[], Want::Accept(n64));
    });
    report(vec![
        wrong_role,
        unknown,
        revoked,
        rotated,
        revoked_insert,
        rotated_insert,
        valid_insert,
        forged,
        rewrite,
        rewrite_plain,
    ]);
}

/// A small deterministic generator (no extra crate).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_and_absurd_inputs_are_errors_never_panics() {
    let fx = small();
    let n = fx.n() as u64;
    let header = |count: u64| assemble::<Vec<u8>>(count, &[]);
    let mut rng = SplitMix(0x5eed);

    let mut fixed = Tally::new("garbage: fixed cases");
    fixed.check(|| "empty".into(), &[], &[], Want::BadExport);
    fixed.check(|| "empty, held".into(), &[], &fx.held, Want::BadExport);
    for cut in 0..HEADER_BYTES {
        fixed.check(|| format!("header cut at {cut}"), &fx.export[..cut], &[], Want::BadExport);
    }
    fixed.check(|| "other magic".into(), b"CJEXPORX\0\0\0\x01\0\0\0\0\0\0\0\0", &[], Want::BadExport);
    let mut v2 = header(0);
    v2[11] = 2;
    fixed.check(|| "version 2".into(), &v2, &[], Want::BadExport);
    // Absurd counts never allocate or loop: the file ends first.
    for count in [u64::MAX, u64::MAX / 2, 1 << 40, n + 1] {
        fixed.check(
            || format!("count {count}, no records"),
            &header(count),
            &[],
            Want::Exact(0, VerifyFailure::Truncated { expected: count, found: 0 }),
        );
        fixed.check(
            || format!("count {count}, all records"),
            &assemble(count, &fx.records),
            &[],
            Want::Exact(n, VerifyFailure::Truncated { expected: count, found: n }),
        );
    }
    // Absurd record lengths at record k.
    for k in [0usize, 1, fx.n() / 2, fx.n() - 1] {
        let prefix = assemble(n, &fx.records[..k]);
        for len in [0u32, 1, 100, u32::MAX, u32::MAX / 2, (ledger::entry::RECORD_BYTES_MAX + 1) as u32] {
            let mut bad = prefix.clone();
            bad.extend_from_slice(&len.to_be_bytes());
            bad.extend_from_slice(&rng.bytes(len.min(100) as usize));
            fixed.check(|| format!("record {k} length {len}"), &bad, &[], Want::Variant(k as u64, &["Malformed"]));
        }
        // The largest allowed length, with the file far shorter.
        let mut bad = prefix.clone();
        bad.extend_from_slice(&(ledger::entry::RECORD_BYTES_MAX as u32).to_be_bytes());
        bad.extend_from_slice(&fx.records[k]);
        fixed.check(
            || format!("record {k} max length, short file"),
            &bad,
            &[],
            Want::Variant(k as u64, &["Malformed"]),
        );
    }

    let mut random = Tally::new("garbage: random bytes (with and without a header)");
    for i in 0..300 {
        let len = (rng.next() % 4096) as usize;
        let mut bytes = rng.bytes(len);
        random.check(|| format!("random {i} ({len} bytes)"), &bytes, &[], Want::AnyError);
        // Behind a valid header with a plausible count.
        let mut with_header = header(rng.next() % 1000);
        with_header.append(&mut bytes);
        random.check(|| format!("random {i} behind a header"), &with_header, &fx.held, Want::AnyError);
        // Plausible framing: random records of random length.
        let records: Vec<Vec<u8>> = (0..1 + rng.next() % 4)
            .map(|_| {
                let len = 100 + (rng.next() % 400) as usize;
                rng.bytes(len)
            })
            .collect();
        random.check(
            || format!("random {i} framed"),
            &assemble(records.len() as u64, &records),
            &[],
            Want::Variant(0, &["Malformed"]),
        );
        // A valid prefix followed by random framed records.
        let k = 1 + (rng.next() % (n - 1)) as usize;
        let mut mixed: Vec<Vec<u8>> = fx.records[..k].to_vec();
        mixed.extend(records);
        random.check(
            || format!("random {i} after {k} valid"),
            &assemble(mixed.len() as u64, &mixed),
            &[],
            Want::Variant(k as u64, &["Malformed"]),
        );
    }
    // Random bytes inside a record with a valid magic, seq and lengths:
    // decodes, then must fail on the hash.
    let mut shaped = Tally::new("garbage: well-framed records with random content");
    for k in 0..fx.n() {
        let mut records = fx.records.clone();
        let e = &fx.entries[k];
        let body_start = 86 + e.kind.len() + 4;
        let len = records[k].len();
        let noise = rng.bytes(len - body_start);
        records[k][body_start..].copy_from_slice(&noise);
        shaped.check(
            || format!("record {k} randomised"),
            &assemble(n, &records),
            &[],
            Want::Exact(k as u64, VerifyFailure::HashMismatch),
        );
    }
    report(vec![fixed, random, shaped]);
}

// ---------------------------------------------------------------------------
// The database itself (Ledger::verify), tampered through redb directly
// ---------------------------------------------------------------------------

/// The tables as docs/journal-format.md names them.
const DB_JOURNAL: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");
const DB_HEAD: redb::TableDefinition<&str, (u64, &[u8])> = redb::TableDefinition::new("journal_head");
const DB_KEYS: redb::TableDefinition<&[u8], &str> = redb::TableDefinition::new("journal_keys");

type JournalTable<'t> = redb::Table<'t, u64, &'static [u8]>;
type HeadTable<'t> = redb::Table<'t, &'static str, (u64, &'static [u8])>;

/// A copy of the database at `original`, changed by `f` behind the
/// ledger's back, then opened as a ledger.
fn tampered_copy(
    original: &std::path::Path,
    name: &str,
    f: impl FnOnce(&redb::WriteTransaction, &mut JournalTable, &mut HeadTable),
) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::copy(original, &path).expect("copy database");
    {
        let db = redb::Database::open(&path).expect("redb open");
        let w = db.begin_write().expect("begin");
        {
            let mut journal = w.open_table(DB_JOURNAL).expect("journal table");
            let mut head = w.open_table(DB_HEAD).expect("head table");
            f(&w, &mut journal, &mut head);
        }
        w.commit().expect("commit");
    }
    let ledger = Ledger::open(&path).expect("ledger open");
    (dir, ledger)
}

/// Kinds that change balances; the database verifier replays them and
/// compares the result with the budget tables.
fn is_budget_posting(kind: &str) -> bool {
    matches!(
        kind,
        "budget.opened"
            | "budget.reserved"
            | "budget.settled"
            | "budget.voided"
            | "budget.expired"
            | "budget.extended"
            | "budget.batch"
    )
}

fn verify_db(ledger: &Ledger, held: &[Checkpoint]) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| ledger.verify_against(held))).map_err(panic_text)
}

#[test]
fn database_tampering_is_caught_by_ledger_verify() {
    let (dir, ledger, fx) = build(5, BIG, "db", 1_700_000_000_000_000);
    let original = dir.path().join("conductor.redb");
    drop(ledger);
    let n = fx.n();
    let n64 = n as u64;
    // A sample of positions: every 9th, around each held checkpoint, the ends.
    let mut ks: Vec<usize> = (1..n - 1).step_by(9).collect();
    for c in &fx.held {
        ks.extend([c.seq() as usize - 1, c.seq() as usize, c.seq() as usize + 1]);
    }
    ks.extend([n - 2]);
    ks.sort_unstable();
    ks.dedup();
    let hash = |k: usize| fx.entries[k].hash;

    let mut rows = Tally::new("db: row k deleted (or last row), head kept");
    let mut edits = Tally::new("db: one payload byte of row k changed");
    let mut swaps = Tally::new("db: values of rows k and k+1 swapped");
    let mut cut = Tally::new("db: tail from k deleted, head rewritten, held cps");
    let mut cut_plain =
        Tally::new("db: tail from k deleted, head rewritten (journal: UNDETECTABLE; budget tables: see)");
    let mut rewrite = Tally::new("db: tail from k re-signed by key holder, head rewritten, held cps");
    for &k in &ks {
        let k64 = k as u64;
        let (_d, l) = tampered_copy(&original, "delete.redb", |_, j, _| {
            j.remove(k64).expect("remove");
        });
        rows.record(
            || format!("delete row {k}"),
            verify_db(&l, &[]),
            Want::Exact(k64, VerifyFailure::Missing { expected: k64, found: k64 + 1 }),
        );

        let (_d, l) = tampered_copy(&original, "edit.redb", |_, j, _| {
            let mut record = fx.records[k].clone();
            let last_payload_byte = record.len() - 96 - 2;
            record[last_payload_byte] ^= 0x04;
            j.insert(k64, record.as_slice()).expect("insert");
        });
        edits.record(|| format!("edit row {k}"), verify_db(&l, &[]), Want::Exact(k64, VerifyFailure::HashMismatch));

        let (_d, l) = tampered_copy(&original, "swap.redb", |_, j, _| {
            j.insert(k64, fx.records[k + 1].as_slice()).expect("insert");
            j.insert(k64 + 1, fx.records[k].as_slice()).expect("insert");
        });
        swaps.record(
            || format!("swap rows {k}, {}", k + 1),
            verify_db(&l, &[]),
            Want::Exact(k64, VerifyFailure::Missing { expected: k64, found: k64 + 1 }),
        );

        let (_d, l) = tampered_copy(&original, "cut.redb", |_, j, h| {
            for seq in k64..n64 {
                j.remove(seq).expect("remove");
            }
            h.insert("head", (k64, hash(k - 1).0.as_slice())).expect("head");
        });
        // The journal alone cannot tell (the head row is not signed). The
        // database's budget tables are compared with the postings replayed
        // from the journal, so a cut that removes a posting shows there,
        // after the walk (at the last entry left); an attacker who also
        // rewrites those unsigned tables defeats that. Only a held
        // checkpoint at or after k really pins the length.
        let removes_posting = fx.entries[k..].iter().any(|e| is_budget_posting(&e.kind));
        let unpinned = if removes_posting { Want::Variant(k64 - 1, &["ProjectionDiffers"]) } else { Want::Accept(k64) };
        cut_plain.record(|| format!("cut at {k}"), verify_db(&l, &[]), unpinned.clone());
        let want = match held_at_or_after(&fx, k64) {
            Some(c) => Want::Exact(k64, VerifyFailure::Truncated { expected: c.seq() + 1, found: k64 }),
            None => unpinned,
        };
        cut.record(|| format!("cut at {k}, held"), verify_db(&l, &fx.held), want);

        let records = resign_and_rechain(&fx, k, fx.keys.holder_of(&fx.entries[k].signer), 1);
        let (_d, l) = tampered_copy(&original, "rewrite.redb", |_, j, h| {
            for (seq, record) in records.iter().enumerate().skip(k) {
                j.insert(seq as u64, record.as_slice()).expect("insert");
            }
            h.insert("head", (n64, hash_of_record(&records[n - 1]).0.as_slice())).expect("head");
        });
        let want = match held_at_or_after(&fx, k64) {
            Some(c) => Want::Exact(c.seq(), VerifyFailure::CheckpointMismatch { expected: c.hash() }),
            None => Want::Accept(n64),
        };
        rewrite.record(|| format!("rewrite from {k}, held"), verify_db(&l, &fx.held), want);
        rewrite.record(|| format!("rewrite from {k}, no held (undetectable)"), verify_db(&l, &[]), Want::Accept(n64));
    }
    let (_d, l) = tampered_copy(&original, "last.redb", |_, j, _| {
        j.remove(n64 - 1).expect("remove");
    });
    rows.record(
        || "delete last row".into(),
        verify_db(&l, &[]),
        Want::Exact(n64 - 1, VerifyFailure::Truncated { expected: n64, found: n64 - 1 }),
    );

    let mut head = Tally::new("db: head row only");
    let (_d, l) = tampered_copy(&original, "head1.redb", |_, _, h| {
        h.insert("head", (n64 + 3, hash(n - 1).0.as_slice())).expect("head");
    });
    head.record(
        || "head next + 3".into(),
        verify_db(&l, &[]),
        Want::Exact(n64, VerifyFailure::Truncated { expected: n64 + 3, found: n64 }),
    );
    let (_d, l) = tampered_copy(&original, "head2.redb", |_, _, h| {
        h.insert("head", (n64, hash(n - 2).0.as_slice())).expect("head");
    });
    head.record(
        || "head hash of the entry before".into(),
        verify_db(&l, &[]),
        Want::Exact(n64 - 1, VerifyFailure::BrokenLink),
    );
    let (_d, l) = tampered_copy(&original, "head3.redb", |_, _, h| {
        h.remove("head").expect("head");
    });
    head.record(
        || "head row removed".into(),
        verify_db(&l, &[]),
        Want::Exact(0, VerifyFailure::Truncated { expected: 0, found: n64 }),
    );

    // The append-time check trusts the key projection; a projection edited
    // to un-revoke a key lets the ledger write an entry its own verifier
    // rejects, at exactly that entry.
    let mut projection = Tally::new("db: revoked key re-activated in the key projection");
    let old = fx.keys.reviewer_old.public().to_bytes();
    let (_d, l) = tampered_copy(&original, "keys.redb", |w, _, _| {
        let mut keys = w.open_table(DB_KEYS).expect("keys table");
        let text = keys.get(old.as_slice()).expect("get").expect("row").value().to_owned();
        let mut record: ledger::KeyRecord = serde_json::from_str(&text).expect("key record");
        assert_eq!(record.revoked_seq, Some(fx.revoked_at));
        record.revoked_seq = None;
        let text = serde_json::to_string(&record).expect("json");
        keys.insert(old.as_slice(), text.as_str()).expect("insert");
    });
    let (seq, _) = l
        .write(|t| t.append(&fx.keys.reviewer_old, "gate.decided", &json!({"gate_id": "g-new", "approve": true}), 1))
        .expect("the tampered projection admits the revoked key");
    assert_eq!(seq, n64);
    projection.record(
        || "gate.decided by the revoked reviewer".into(),
        verify_db(&l, &[]),
        Want::Exact(n64, VerifyFailure::RevokedKey { key: hex::encode(old), revoked_seq: fx.revoked_at }),
    );
    report(vec![rows, edits, swaps, cut, cut_plain, rewrite, head, projection]);
}

/// A key-holding attacker who rewrites one posting inside a `budget.batch`
/// entry (and re-signs and re-chains everything after) still breaks the
/// budget rules the verifier replays, at that entry.
#[test]
fn a_forged_posting_inside_a_batch_breaks_the_replayed_budget() {
    let fx = big();
    let n64 = fx.n() as u64;
    let batches: Vec<usize> = (0..fx.n())
        .filter(|&k| fx.entries[k].kind == "budget.batch")
        .filter(|&k| {
            let v: Value = serde_json::from_slice(&fx.entries[k].payload).expect("json");
            v["postings"].as_array().is_some_and(|p| p.len() >= 4)
        })
        .collect();
    assert!(!batches.is_empty(), "the journal has a batch of several postings");
    let mut t = Tally::new("rewrite one posting inside a batch, re-signed and re-chained");
    for &k in &batches {
        let original: Value = serde_json::from_slice(&fx.entries[k].payload).expect("json");
        let postings = original["postings"].as_array().expect("postings").clone();
        for (i, posting) in postings.iter().enumerate() {
            // Each rewrite breaks one rule: overrun a settlement, settle a
            // reservation twice, or reserve an id out of order.
            let mut forged = original.clone();
            let kind = posting["kind"].as_str().expect("kind");
            match kind {
                "budget.settled" => {
                    forged["postings"][i]["payload"]["amount"] = json!(1_000_000_000u64);
                }
                "budget.reserved" => {
                    forged["postings"][i]["payload"]["reservation"] = json!(999_999u64);
                }
                _ => {
                    let mut again = posting.clone();
                    again["time_us"] = posting["time_us"].clone();
                    forged["postings"].as_array_mut().expect("array").insert(i + 1, again);
                }
            }
            let e = &fx.entries[k];
            let mut records = fx.records.clone();
            let payload = serde_json::to_vec(&forged).expect("json");
            records[k] = entry::signed_record(k as u64, &e.prev, e.time_us, &fx.keys.conductor, &e.kind, &payload);
            rechain(&fx.keys, &mut records, k + 1);
            let want = Want::Variant(k as u64, &["BudgetRule"]);
            t.check(|| format!("entry {k}, posting {i} ({kind})"), &assemble(n64, &records), &[], want);
        }
    }
    report(vec![t]);
}

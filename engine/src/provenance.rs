//! `audit show`: the provenance of one decision, from the journal alone.
//! Everything printed comes from journal entries (read-only), and the
//! whole chain is verified first, so the reader knows whether to trust it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ledger::{Entry, Kind};
use serde::Serialize;
use serde_json::{Value, json};

use crate::data;
use crate::entries::{self, EntryError};

/// Which task a DECISION_ID names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `MISSION/TASK_INDEX` or `MISSION/CASE_ID`.
    Task { mission: String, task: String },
    /// A gate id (uuid) from `gates list`.
    Gate(String),
    /// A journal sequence number (`#123` or `123`) of any entry of the task.
    Seq(u64),
}

fn parse_target(id: &str) -> Target {
    let trimmed = id.strip_prefix('#').unwrap_or(id);
    if let Ok(seq) = trimmed.parse::<u64>() {
        return Target::Seq(seq);
    }
    match id.split_once('/') {
        Some((mission, task)) => Target::Task { mission: mission.to_owned(), task: task.to_owned() },
        None => Target::Gate(id.to_owned()),
    }
}

/// The provenance document for `id` (see `conductor audit show --help`).
pub fn show(dir: &Path, id: &str) -> Result<Value> {
    let db = data::db_path(dir)?;
    let verified = match ledger::verify_database(&db, &[]) {
        Ok(report) => json!({"ok": true, "entries": report.entries}),
        Err(ledger::VerifyError::Bad { seq, failure }) => {
            json!({"ok": false, "first_bad_seq": seq, "reason": failure.to_string()})
        }
        Err(e) => bail!("verifying the journal: {e}"),
    };
    // Two streaming passes (memory stays flat on a journal of millions of
    // entries): find the task, then gather what the journal says of it and
    // of every task it delegated to, down the tree.
    let (mission, task) = resolve(&db, &parse_target(id))?;
    let mut declared = None;
    let mut names = BTreeMap::new();
    let mut tree: BTreeMap<u32, Gathered> = BTreeMap::new();
    tree.insert(task, Gathered::default());
    let mut shown_seqs = BTreeSet::new();
    // `MISSION/AGENT/task-N`: the budget account of task N, if N is in
    // the tree.
    let account_of = |account: &Value, tree: &BTreeMap<u32, Gathered>| -> Option<u32> {
        let rest = account.as_str()?.strip_prefix(mission.as_str())?.strip_prefix('/')?;
        let (agent, n) = rest.split_once("/task-")?;
        let n: u32 = n.parse().ok()?;
        (!agent.is_empty() && !agent.contains('/') && tree.contains_key(&n)).then_some(n)
    };
    ledger::scan_journal(&db, |e: Entry| -> Result<bool> {
        // A kind outside format 1 belongs to no task; verification has
        // already named the first such entry.
        let Some(kind) = Kind::parse(&e.kind) else { return Ok(true) };
        match kind {
            Kind::Genesis | Kind::KeyRegistered | Kind::KeyRotated => {
                record_key(&e, kind, &mut names);
                return Ok(true);
            }
            Kind::MissionDeclared => {
                let p: entries::MissionDeclared = entries::decode(&e)?;
                if p.mission == mission {
                    declared = Some(p);
                }
                return Ok(true);
            }
            // The ledger's own kinds (postings, key events) are written and
            // checked by the ledger alone; provenance shows their payloads
            // whole, as the journal holds them, and reads only the account.
            Kind::BudgetBatch => {
                let p = e.payload_json();
                for item in p["postings"].as_array().into_iter().flatten() {
                    if let Some(n) = account_of(&item["payload"]["account"], &tree) {
                        shown_seqs.insert(e.seq);
                        let posting = json!({"seq": e.seq, "in_batch": true, "kind": item["kind"],
                                             "time_us": item["time_us"], "payload": item["payload"]});
                        tree.entry(n).or_default().postings.push(posting);
                    }
                }
                return Ok(true);
            }
            Kind::BudgetOpened
            | Kind::BudgetReserved
            | Kind::BudgetSettled
            | Kind::BudgetVoided
            | Kind::BudgetExpired
            | Kind::BudgetRefused
            | Kind::BudgetExtended => {
                let p = e.payload_json();
                if let Some(n) = account_of(&p["account"], &tree) {
                    shown_seqs.insert(e.seq);
                    let posting = json!({"seq": e.seq, "kind": e.kind, "time_us": e.time_us, "payload": p});
                    tree.entry(n).or_default().postings.push(posting);
                }
                return Ok(true);
            }
            _ => {}
        }
        let Some(t) = task_of(&e)?.filter(|(m, t)| *m == mission && tree.contains_key(t)).map(|(_, t)| t) else {
            return Ok(true);
        };
        shown_seqs.insert(e.seq);
        let hex = hex::encode(e.signer);
        let signer = names.get(&hex).cloned().unwrap_or_else(|| json!({"public_key": hex}));
        let at = json!({"seq": e.seq, "time_us": e.time_us, "signed_by": signer});
        if kind == Kind::TaskDelegated {
            // Its children join the tree (they start after this entry).
            let p: entries::TaskDelegated = entries::decode(&e)?;
            for child in p.children.iter().filter_map(|c| c.task) {
                tree.entry(child).or_default();
                tree.entry(t).or_default().children.push(child);
            }
        }
        let node = tree.entry(t).or_default();
        // Lifecycle and gate entries are shown as the journal stores them
        // (every field, in the stored order): the auditor reads the
        // record itself, not this version's reading of it.
        match kind {
            Kind::TaskStarted => {
                let p: entries::TaskStarted = entries::decode(&e)?;
                node.lifecycle.push(json!({"entry": at, "kind": e.kind, "attempt_of_module": p.module_blake3}));
                node.started = Some(p);
            }
            Kind::HostInfer
            | Kind::HostRecall
            | Kind::HostRemember
            | Kind::HostQuery
            | Kind::HostLog
            | Kind::HostReview
            | Kind::HostAwait
            | Kind::HostDocument
            | Kind::TaskDelegated => node.calls.push((kind, e, at)),
            Kind::GateRequested | Kind::GateDecided => {
                node.gates.push(json!({"entry": at, "kind": e.kind, "payload": e.payload_json()}));
            }
            _ => node.lifecycle.push(json!({"entry": at, "kind": e.kind, "payload": e.payload_json()})),
        }
        Ok(true)
    })?;
    let declared = declared.context("the mission's declaration is not in the journal")?;
    // Memory values are sealed in the journal; they open with the keys in
    // the memory store, unless their subject was erased.
    let store = ledger::open_read_only(&db)?;
    let snapshot = store.begin_read().context("opening a read snapshot")?;
    let mut doc = task_doc(&mission, task, &mut tree, &declared, &snapshot)?;
    let signatures = match verified["first_bad_seq"].as_u64() {
        None => {
            json!({"all_valid": true, "checked": "every entry of the journal: sequence, hash chain, signature, signer's role"})
        }
        Some(bad) => json!({
            "all_valid": false,
            "first_bad_seq": bad,
            "reason": verified["reason"],
            "entries_shown_at_or_after_it": shown_seqs.range(bad..).copied().collect::<Vec<_>>(),
        }),
    };
    doc["mission"] = json!({"id": mission, "name": declared.name, "file_blake3": declared.file_blake3});
    doc["signatures"] = signatures;
    Ok(doc)
}

/// What the journal says of one task of the tree being shown.
#[derive(Default)]
struct Gathered {
    started: Option<entries::TaskStarted>,
    calls: Vec<(Kind, Entry, Value)>,
    lifecycle: Vec<Value>,
    gates: Vec<Value>,
    postings: Vec<Value>,
    /// Tasks it delegated to, in the order it asked.
    children: Vec<u32>,
}

/// One task's provenance, with its children's nested under `children`.
fn task_doc<S: memory::Snapshot>(
    mission: &str,
    task: u32,
    tree: &mut BTreeMap<u32, Gathered>,
    declared: &entries::MissionDeclared,
    snapshot: &S,
) -> Result<Value> {
    let node = tree.remove(&task).unwrap_or_default();
    let spent: u64 = node
        .calls
        .iter()
        .filter(|(kind, ..)| *kind == Kind::HostInfer)
        .filter_map(|(_, e, _)| entries::decode::<entries::HostInfer>(e).ok()?.cost)
        .sum();
    let calls = node
        .calls
        .into_iter()
        .map(|(kind, e, at)| host_call(snapshot, kind, &e, at))
        .collect::<Result<Vec<Value>>>()?;
    let started = node.started.with_context(|| format!("task {task} of mission {mission} never started"))?;
    let agent_name = started.agent.as_str();
    let agent = declared.agents.iter().find(|a| a.name == agent_name);
    let limits = agent.map(|a| serde_json::to_value(&a.limits)).transpose()?.unwrap_or(Value::Null);
    let model = agent.map_or("", |a| a.model.as_str());
    let prices = declared.models.get(model);
    let account = crate::run::task_account(mission, agent_name, task);
    let mut children = Vec::with_capacity(node.children.len());
    for child in node.children {
        // A child that never started (its parent's run stopped first) has
        // nothing to show but the request.
        if tree.get(&child).is_some_and(|c| c.started.is_some()) {
            children.push(task_doc(mission, child, tree, declared, snapshot)?);
        }
    }
    Ok(json!({
        "task": {"index": task, "case": started.case, "origin": started.origin, "input": started.input,
                 "parent": started.parent},
        "agent": {"name": agent_name, "module_blake3": started.module_blake3, "limits": limits},
        "model": {"name": model, "sha256": prices.and_then(|m| m.sha256.as_deref()),
                  "prices": {"prompt": prices.map(|m| m.prompt_price),
                             "completion": prices.map(|m| m.completion_price)}},
        "cell": {"clock_start_us": started.clock_start_us, "seed": started.seed},
        "host_calls": calls,
        "gates": node.gates,
        "lifecycle": node.lifecycle,
        "budget": {"account": account, "spent": spent, "postings": node.postings},
        "children": children,
    }))
}

/// Finds (mission, task index) for a target, scanning the journal once.
fn resolve(db: &Path, target: &Target) -> Result<(String, u32)> {
    let mut found = None;
    let mut seq_seen = false;
    ledger::scan_journal(db, |e: Entry| -> Result<bool> {
        let hit = match target {
            Target::Seq(seq) => {
                if e.seq != *seq {
                    return Ok(true);
                }
                seq_seen = true;
                true
            }
            Target::Gate(gate) => {
                e.kind == Kind::GateRequested && entries::decode::<entries::GateRequested>(&e)?.gate_id == *gate
            }
            Target::Task { mission, task } => {
                e.kind == Kind::TaskStarted && {
                    let p: entries::TaskStarted = entries::decode(&e)?;
                    p.mission == *mission && (p.case == *task || p.task.to_string() == *task)
                }
            }
        };
        if hit {
            found = task_of(&e)?;
        }
        Ok(!hit)
    })?;
    found.with_context(|| match target {
        Target::Seq(seq) if seq_seen => format!("entry {seq} is not part of any task"),
        Target::Seq(seq) => format!("entry {seq} is not in the journal"),
        Target::Gate(gate) => {
            format!("no gate `{gate}`; give a gate id, MISSION/TASK, MISSION/CASE_ID or an entry number")
        }
        Target::Task { mission, task } => {
            format!("mission `{mission}` has no started task `{task}` (a task index or case id)")
        }
    })
}

/// The (mission, task index) an entry is part of: `None` for an entry of
/// no task (a mission's, a budget gate's, the gateway's, the ledger's own)
/// or of a kind outside format 1.
fn task_of(e: &Entry) -> Result<Option<(String, u32)>, EntryError> {
    use entries::*;
    fn read<P: Payload>(e: &Entry, of: fn(P) -> (String, Option<u32>)) -> Result<Option<(String, u32)>, EntryError> {
        let (mission, task) = of(entries::decode(e)?);
        Ok(task.map(|task| (mission, task)))
    }
    let Some(kind) = Kind::parse(&e.kind) else { return Ok(None) };
    // No wildcard: a kind added to the format has to say whether it is
    // part of a task.
    match kind {
        Kind::TaskStarted => read(e, |p: TaskStarted| (p.mission, Some(p.task))),
        Kind::TaskDecided => read(e, |p: TaskDecided| (p.mission, Some(p.task))),
        Kind::TaskFailed => read(e, |p: TaskFailed| (p.mission, Some(p.task))),
        Kind::TaskSkipped => read(e, |p: TaskSkipped| (p.mission, Some(p.task))),
        Kind::TaskDeferred => read(e, |p: TaskDeferred| (p.mission, Some(p.task))),
        Kind::TaskRecovered => read(e, |p: TaskRecovered| (p.mission, Some(p.task))),
        Kind::TaskParked => read(e, |p: TaskParked| (p.mission, Some(p.task))),
        Kind::TaskProposed => read(e, |p: TaskProposed| (p.mission, Some(p.task))),
        Kind::TaskDelegated => read(e, |p: TaskDelegated| (p.mission, Some(p.task))),
        Kind::TaskJoined => read(e, |p: TaskJoined| (p.mission, Some(p.task))),
        Kind::GateRequested => read(e, |p: GateRequested| (p.mission, p.task)),
        Kind::GateReminder => read(e, |p: GateReminder| (p.mission, p.task)),
        Kind::GateEscalated => read(e, |p: GateEscalated| (p.mission, p.task)),
        Kind::GateTimedOut => read(e, |p: GateTimedOut| (p.mission, p.task)),
        Kind::GateDecided => read(e, |p: GateDecided| (p.mission, p.task)),
        Kind::GateVoted => read(e, |p: GateVoted| (p.mission, p.task)),
        Kind::HostInfer => read(e, |p: HostInfer| (p.mission, Some(p.task))),
        Kind::HostRecall => read(e, |p: HostRecall| (p.mission, Some(p.task))),
        Kind::HostRemember => read(e, |p: HostRemember| (p.mission, Some(p.task))),
        Kind::HostQuery => read(e, |p: HostQuery| (p.mission, Some(p.task))),
        Kind::HostLog => read(e, |p: HostLog| (p.mission, Some(p.task))),
        Kind::HostReview => read(e, |p: HostReview| (p.mission, Some(p.task))),
        Kind::HostAwait => read(e, |p: HostAwait| (p.mission, Some(p.task))),
        Kind::DataLeftHost => read(e, |p: DataLeftHost| (p.mission, Some(p.task))),
        Kind::CaseReceived => read(e, |p: CaseReceived| (p.mission, Some(p.task))),
        Kind::HostDocument => read(e, |p: HostDocument| (p.mission, Some(p.task))),
        Kind::MissionControl | Kind::TokenIssued | Kind::TokenRevoked | Kind::RequestRefused => Ok(None),
        Kind::Genesis
        | Kind::KeyRegistered
        | Kind::KeyRevoked
        | Kind::KeyRotated
        | Kind::JournalCheckpoint
        | Kind::MissionDeclared
        | Kind::MissionFinished
        | Kind::MissionCompleted
        | Kind::MissionResumed
        | Kind::MissionRecovered
        | Kind::BudgetOpened
        | Kind::BudgetReserved
        | Kind::BudgetSettled
        | Kind::BudgetVoided
        | Kind::BudgetExpired
        | Kind::BudgetRefused
        | Kind::BudgetBatch
        | Kind::BudgetExtended
        | Kind::MemoryAsserted
        | Kind::MemoryErased
        | Kind::GateRefused
        | Kind::GatewayKeyIssued
        | Kind::GatewayKeyRevoked
        | Kind::GatewayStarted
        | Kind::GatewayCompletion
        | Kind::GatewayInterrupted
        | Kind::GatewayRefused
        | Kind::GatewayRefusals => Ok(None),
    }
}

/// Notes a registered key's role and the name given when it was
/// registered, if `e` introduces a key. A rotated key's successor is the
/// same person's (or the conductor's) key: it keeps the role and name.
fn record_key(e: &Entry, kind: Kind, names: &mut BTreeMap<String, Value>) {
    // Key events are the ledger's own kinds (see above): their names and
    // roles are free-form extras the ledger's rules do not read, so they
    // are read as JSON, odd fields skipped.
    let p = e.payload_json();
    match kind {
        Kind::Genesis => {
            let public = hex::encode(e.signer);
            names.insert(public.clone(), json!({"role": "conductor", "public_key": public, "key_id": p["key_id"]}));
        }
        Kind::KeyRegistered => {
            let (Some(role), Some(public)) = (p["role"].as_str(), p["public_key"].as_str()) else { return };
            let mut who = json!({"role": role, "public_key": public, "key_id": p["key_id"], "registered_seq": e.seq});
            for field in ["name", "agent", "mission"] {
                if !p[field].is_null() {
                    who[field] = p[field].clone();
                }
            }
            names.insert(public.to_owned(), who);
        }
        Kind::KeyRotated => {
            let (Some(old), Some(new)) = (p["old_key"].as_str(), p["new_key"].as_str()) else { return };
            let Some(mut who) = names.get(old).cloned() else { return };
            who["public_key"] = json!(new);
            who["key_id"] = p["new_key_id"].clone();
            who["registered_seq"] = json!(e.seq);
            names.insert(new.to_owned(), who);
        }
        _ => {}
    }
}

/// One host call as an auditor reads it: the call's own fields (those it
/// has, in a fixed order per kind), memory values opened.
fn host_call<S: memory::Snapshot>(snapshot: &S, kind: Kind, e: &Entry, at: Value) -> Result<Value> {
    let mut call = json!({"entry": at, "kind": e.kind});
    let c = &mut call;
    match kind {
        Kind::HostInfer => {
            let p: entries::HostInfer = entries::decode(e)?;
            put(c, "model", &p.model)?;
            put(c, "messages", &p.messages)?;
            put(c, "max_tokens", p.max_tokens)?;
            put(c, "text", &p.text)?;
            put(c, "prompt_tokens", p.prompt_tokens)?;
            put(c, "completion_tokens", p.completion_tokens)?;
            put(c, "cost", p.cost)?;
            put(c, "reservation", p.reservation)?;
            put(c, "refused", &p.refused)?;
            put(c, "error", &p.error)?;
        }
        Kind::HostRecall => {
            let p: entries::HostRecall = entries::decode(e)?;
            put(c, "subject", &p.subject)?;
            put(c, "asked_valid_at", p.asked_valid_at)?;
            put(c, "valid_at", p.valid_at)?;
            put(c, "known_at", p.known_at)?;
            put(c, "spaces", &p.spaces)?;
            put(c, "facts", &opened(snapshot, &p.facts)?)?;
            put(c, "erased", p.erased)?;
            put(c, "refused", &p.refused)?;
        }
        Kind::HostQuery => {
            let p: entries::HostQuery = entries::decode(e)?;
            put(c, "query", &p.query)?;
            put(c, "spaces", &p.spaces)?;
            put(c, "facts", &opened(snapshot, &p.facts)?)?;
            put(c, "truncated", p.truncated)?;
            put(c, "erased", p.erased)?;
            put(c, "refused", &p.refused)?;
        }
        Kind::HostRemember => {
            let p: entries::HostRemember = entries::decode(e)?;
            // Opened as the journal's payload is: an erased subject's value
            // is null (not shown) and the call says `erased`.
            let mut value = json!({"subject": p.subject, "value": p.value});
            crate::facts::unseal(snapshot, &mut value)?;
            put(c, "subject", &p.subject)?;
            put(c, "predicate", &p.predicate)?;
            put(c, "value", value.get("value"))?;
            put(c, "erased", value.get("erased"))?;
            put(c, "space", &p.space)?;
            put(c, "fact", p.fact)?;
            put(c, "superseded", &p.superseded)?;
            put(c, "valid_from", p.valid_from)?;
            put(c, "refused", &p.refused)?;
        }
        Kind::HostReview => {
            let p: entries::HostReview = entries::decode(e)?;
            put(c, "gate", &p.gate)?;
            put(c, "reason", &p.reason)?;
            put(c, "refused", &p.refused)?;
        }
        Kind::HostLog => {
            let p: entries::HostLog = entries::decode(e)?;
            put(c, "message", &p.message)?;
        }
        // Which bytes of which document (by hash: the bytes are in the
        // document store, the case's `case.received` names the document).
        Kind::HostDocument => {
            let p: entries::HostDocument = entries::decode(e)?;
            put(c, "name", &p.name)?;
            put(c, "blake3", &p.blake3)?;
            put(c, "subject", &p.subject)?;
            put(c, "offset", p.offset)?;
            put(c, "bytes", p.bytes)?;
            put(c, "refused", &p.refused)?;
        }
        Kind::TaskDelegated => {
            let p: entries::TaskDelegated = entries::decode(e)?;
            put(c, "delegation", &p.delegation)?;
            put(c, "depth", p.depth)?;
            put(c, "children", &p.children)?;
            put(c, "refused", &p.refused)?;
        }
        // `host.await`: none of its fields is shown; the gate it raised is
        // among the gates.
        _ => {}
    }
    Ok(call)
}

/// Shows `field` of a call when the entry has it, and not as null.
fn put(call: &mut Value, field: &str, value: impl Serialize) -> Result<()> {
    let value = serde_json::to_value(value)?;
    if !value.is_null() {
        call[field] = value;
    }
    Ok(())
}

/// Facts as a memory read journaled them, their values opened.
fn opened<S: memory::Snapshot>(snapshot: &S, facts: &Option<Vec<entries::JournaledFact>>) -> Result<Value> {
    let mut facts = serde_json::to_value(facts)?;
    crate::facts::unseal(snapshot, &mut facts)?;
    Ok(facts)
}

/// A plain-text rendering of [`show`]'s document.
pub fn render(doc: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let m = &doc["mission"];
    let _ = writeln!(
        s,
        "mission   {} ({}), file blake3 {}",
        m["id"].as_str().unwrap_or("?"),
        m["name"].as_str().unwrap_or("?"),
        m["file_blake3"].as_str().unwrap_or("?")
    );
    s.push_str(&render_task(doc));
    let sig = &doc["signatures"];
    if sig["all_valid"] == true {
        let _ = writeln!(s, "\nsignatures: every entry of the journal verifies (chain, signatures, signer roles)");
    } else {
        let _ = writeln!(
            s,
            "\nsignatures: NOT VALID from entry {} on ({}); entries shown at or after it: {}",
            sig["first_bad_seq"],
            sig["reason"].as_str().unwrap_or("?"),
            sig["entries_shown_at_or_after_it"]
        );
    }
    s
}

/// One task of the document, and the tasks it delegated to below it,
/// each indented one step further.
fn render_task(doc: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let t = &doc["task"];
    let _ = writeln!(
        s,
        "task      {} case {} from {}",
        t["index"],
        t["case"].as_str().unwrap_or("?"),
        t["origin"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "input     {}", t["input"]);
    let a = &doc["agent"];
    let _ = writeln!(
        s,
        "agent     {} module blake3 {}",
        a["name"].as_str().unwrap_or("?"),
        a["module_blake3"].as_str().unwrap_or("?")
    );
    let md = &doc["model"];
    let _ =
        writeln!(s, "model     {} sha256 {}", md["name"].as_str().unwrap_or("?"), md["sha256"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "cell      clock starts {}, seed {}",
        time(&doc["cell"]["clock_start_us"]),
        doc["cell"]["seed"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "\nhost calls");
    for c in doc["host_calls"].as_array().into_iter().flatten() {
        // `#SEQ TIME`: where the entry is in the journal, and when.
        let seq = format!("{} {}", c["entry"]["seq"], time(&c["entry"]["time_us"]));
        match c["kind"].as_str().and_then(Kind::parse) {
            Some(Kind::HostInfer) => {
                let _ = writeln!(
                    s,
                    "  #{seq} infer {} (max_tokens {})",
                    c["model"].as_str().unwrap_or("?"),
                    c["max_tokens"]
                );
                for msg in c["messages"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        s,
                        "      {}: {}",
                        msg["role"].as_str().unwrap_or("?"),
                        msg["content"].as_str().unwrap_or("")
                    );
                }
                match c.get("refused").or_else(|| c.get("error")) {
                    Some(why) => {
                        let _ = writeln!(s, "      refused: {}", why.as_str().unwrap_or("?"));
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            "      completion ({}+{} tokens, cost {}): {}",
                            c["prompt_tokens"],
                            c["completion_tokens"],
                            c["cost"],
                            c["text"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Some(Kind::HostRecall) => {
                let _ = writeln!(
                    s,
                    "  #{seq} recall {} valid at {} as known at {}: {}",
                    c["subject"].as_str().unwrap_or("?"),
                    time(&c["valid_at"]),
                    time(&c["known_at"]),
                    c.get("facts").map_or_else(|| format!("refused: {}", c["refused"]), |f| f.to_string())
                );
            }
            Some(Kind::HostQuery) => {
                let _ = writeln!(
                    s,
                    "  #{seq} query memory {}: {}",
                    c["query"],
                    c.get("facts").map_or_else(|| format!("refused: {}", c["refused"]), |f| f.to_string())
                );
            }
            Some(Kind::HostRemember) => {
                let _ = writeln!(
                    s,
                    "  #{seq} remember {} {} = {}{}",
                    c["subject"].as_str().unwrap_or("?"),
                    c["predicate"].as_str().unwrap_or("?"),
                    c["value"],
                    c.get("refused").map_or(String::new(), |r| format!(" (refused: {r})"))
                );
            }
            Some(Kind::HostReview) => {
                let _ = writeln!(
                    s,
                    "  #{seq} review requested under {}: {}{}",
                    c["gate"],
                    c["reason"],
                    c.get("refused").map_or(String::new(), |r| format!(" (refused: {r})"))
                );
            }
            Some(Kind::TaskDelegated) => {
                let asked: Vec<String> = c["children"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| match k["task"].as_u64() {
                        Some(task) => {
                            format!("{} (task {task}, budget {})", k["agent"].as_str().unwrap_or("?"), k["budget"])
                        }
                        None => k["agent"].as_str().unwrap_or("?").to_owned(),
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "  #{seq} delegate to {}{}",
                    asked.join(", "),
                    c.get("refused").map_or(String::new(), |r| format!(" (refused: {r})"))
                );
            }
            Some(Kind::HostAwait) => {
                let _ = writeln!(s, "  #{seq} await review (see the gates below)");
            }
            _ => {
                let _ = writeln!(s, "  #{seq} log {}", c["message"]);
            }
        }
    }
    let _ = writeln!(s, "\nlifecycle and gates");
    let mut events: Vec<&Value> = doc["lifecycle"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(doc["gates"].as_array().into_iter().flatten())
        .collect();
    events.sort_by_key(|e| e["entry"]["seq"].as_u64());
    for e in events {
        let by = &e["entry"]["signed_by"];
        let who = match (by["role"].as_str(), by["name"].as_str()) {
            (Some(role), Some(name)) => format!("{role} {name}"),
            (Some(role), None) => {
                format!("{role} {}", by["key_id"].as_str().unwrap_or(by["public_key"].as_str().unwrap_or("?")))
            }
            _ => by["public_key"].as_str().unwrap_or("?").to_owned(),
        };
        let _ = writeln!(
            s,
            "  #{} {} {} by {who}: {}",
            e["entry"]["seq"],
            time(&e["entry"]["time_us"]),
            e["kind"].as_str().unwrap_or("?"),
            e.get("payload").map_or_else(String::new, Value::to_string)
        );
    }
    let _ = writeln!(
        s,
        "\nbudget postings on {} (spent {})",
        doc["budget"]["account"].as_str().unwrap_or("?"),
        doc["budget"]["spent"]
    );
    for p in doc["budget"]["postings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  #{} {} {} {}",
            p["seq"],
            time(&p["time_us"]),
            p["kind"].as_str().unwrap_or("?"),
            p["payload"]
        );
    }
    let children = doc["children"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !children.is_empty() {
        let _ = writeln!(s, "\ndelegated to {} tasks (each in its own cell, under its own key)", children.len());
    }
    for child in children {
        let _ = writeln!(
            s,
            "\n  ── child task {} ({} by agent {}), spent {} ──",
            child["task"]["index"],
            child["task"]["case"].as_str().unwrap_or("?"),
            child["agent"]["name"].as_str().unwrap_or("?"),
            child["budget"]["spent"]
        );
        for line in render_task(child).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}

/// A time in the document (Unix microseconds) as RFC 3339, as the other
/// commands print times; `-` where there is none.
fn time(micros: &Value) -> String {
    micros.as_i64().map_or_else(|| "-".to_owned(), missions::format_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_name_a_task_a_gate_or_an_entry() {
        assert_eq!(parse_target("#42"), Target::Seq(42));
        assert_eq!(parse_target("42"), Target::Seq(42));
        assert_eq!(parse_target("m-1/case-7"), Target::Task { mission: "m-1".into(), task: "case-7".into() });
        assert_eq!(parse_target("5f0c-gate"), Target::Gate("5f0c-gate".into()));
    }
}

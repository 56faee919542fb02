//! Durable execution: everything a cell learned from outside (its input,
//! its clock and seed, every host call's answer) is in the journal, so a
//! task can be run again to exactly the same point. One mechanism serves
//! the auditor (`audit replay`: re-run with every answer from the journal,
//! nothing written) and crash recovery (re-run an interrupted task to
//! where it stopped, then go on live).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use cells::{CellHost, Completion, Fact, InferRequest};
use ledger::Entry;
use redb::ReadableDatabase as _;
use serde_json::{Value, json};

use crate::host::{LOG_BYTES_MAX, REVIEW_REASON_BYTES_MAX, TaskMeter, truncate_utf8};

/// The journal kinds that answer a cell's host calls.
const HOST_KINDS: [&str; 7] =
    ["host.infer", "host.recall", "host.query", "host.remember", "host.review", "host.await", "host.log"];

/// One journaled host call.
#[derive(Debug, Clone)]
pub struct Call {
    pub seq: u64,
    pub kind: String,
    pub payload: Value,
}

/// How an attempt ended, as journaled.
#[derive(Debug, Clone)]
pub enum End {
    /// `task.proposed`: the agent's decision.
    Proposed { seq: u64, outcome: String, reason: String, details: Value },
    /// `task.failed`.
    Failed { seq: u64, code: String, message: String },
    /// `task.deferred`: cut short by the budget; its result was discarded.
    Deferred { seq: u64, result: String },
}

/// One run of one task: from its `task.started` to how it ended (none
/// when the process stopped before it did).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub mission: String,
    pub task: u32,
    pub started_seq: u64,
    /// The `task.started` payload: agent, module hash, input, clock, seed.
    pub started: Value,
    pub calls: Vec<Call>,
    pub end: Option<End>,
}

impl Attempt {
    pub fn case(&self) -> &str {
        self.started["case"].as_str().unwrap_or("?")
    }

    /// Opens the memory values its host calls carry sealed (see
    /// `facts`), so a re-run compares and answers with plaintext. Returns
    /// the erased subjects it touched: such an attempt cannot be re-run
    /// (what the agent saw is gone by design).
    pub fn unseal<S: memory::Snapshot>(&mut self, snapshot: &S) -> anyhow::Result<Vec<String>> {
        let mut erased = Vec::new();
        for call in &mut self.calls {
            for subject in crate::facts::unseal(snapshot, &mut call.payload)? {
                if !erased.contains(&subject) {
                    erased.push(subject);
                }
            }
        }
        Ok(erased)
    }
}

/// The facts a journaled memory read answered with, as the agent got them.
fn journaled_facts(payload: &Value) -> Vec<Fact> {
    let facts = payload["facts"].as_array().cloned().unwrap_or_default();
    facts
        .iter()
        .map(|f| Fact {
            subject: f["subject"].as_str().or_else(|| payload["subject"].as_str()).unwrap_or_default().to_owned(),
            predicate: f["predicate"].as_str().unwrap_or_default().to_owned(),
            value: f["value"].as_str().unwrap_or_default().to_owned(),
            valid_from: f["valid_from"].as_i64().unwrap_or_default(),
            valid_to: f["valid_to"].as_i64(),
            recorded_at: f["recorded_at"].as_i64().unwrap_or_default(),
        })
        .collect()
}

/// Groups journal entries into task attempts, in journal order. A
/// `task.recovered` marker continues the attempt it names (the calls after
/// it were made live after a crash).
pub fn attempts(entries: &[Entry]) -> Vec<Attempt> {
    let mut open: BTreeMap<(String, u32), usize> = BTreeMap::new();
    let mut out: Vec<Attempt> = Vec::new();
    for entry in entries {
        let kind = entry.kind.as_str();
        let interesting = kind.starts_with("task.")
            || kind == "gate.decided"
            || kind == "gate.timed_out"
            || HOST_KINDS.contains(&kind);
        if !interesting {
            continue;
        }
        let payload = entry.payload_json();
        let (Some(mission), Some(task)) = (
            payload["mission"].as_str().map(str::to_owned),
            payload["task"].as_u64().and_then(|t| u32::try_from(t).ok()),
        ) else {
            continue;
        };
        let key = (mission.clone(), task);
        match kind {
            "task.started" => {
                open.insert(key, out.len());
                out.push(Attempt {
                    mission,
                    task,
                    started_seq: entry.seq,
                    started: payload,
                    calls: Vec::new(),
                    end: None,
                });
            }
            _ if HOST_KINDS.contains(&kind) => {
                if let Some(&i) = open.get(&key) {
                    out[i].calls.push(Call { seq: entry.seq, kind: kind.to_owned(), payload });
                }
            }
            // A reviewer's answer to a parked task's `await-review`: the
            // answer the agent gets when the task resumes.
            "gate.decided" | "gate.timed_out" => {
                let Some(&i) = open.get(&key) else { continue };
                let timed_out = kind == "gate.timed_out";
                let reviewer = if timed_out {
                    "timeout".to_owned()
                } else {
                    identity::PublicKey::from_bytes(&entry.signer)
                        .map(|k| k.key_id().to_string())
                        .unwrap_or_else(|_| hex::encode(entry.signer))
                };
                if let Some(call) = out[i]
                    .calls
                    .iter_mut()
                    .rev()
                    .find(|c| c.kind == "host.await" && c.payload["gate_id"] == payload["gate_id"])
                {
                    call.payload["decision"] = json!({
                        "approved": payload["verdict"] == "approved" || payload["then"] == "approve",
                        "note": if timed_out { "timed out" } else { payload["note"].as_str().unwrap_or_default() },
                        "reviewer": reviewer,
                        "seq": entry.seq,
                    });
                }
            }
            "task.proposed" | "task.failed" | "task.deferred" => {
                let Some(i) = open.remove(&key) else { continue };
                out[i].end = Some(match kind {
                    "task.proposed" => {
                        let d = &payload["decision"];
                        End::Proposed {
                            seq: entry.seq,
                            outcome: d["outcome"].as_str().unwrap_or_default().to_owned(),
                            reason: d["reason"].as_str().unwrap_or_default().to_owned(),
                            details: d["details"].clone(),
                        }
                    }
                    "task.failed" => End::Failed {
                        seq: entry.seq,
                        code: payload["code"].as_str().unwrap_or_default().to_owned(),
                        message: payload["message"].as_str().unwrap_or_default().to_owned(),
                    },
                    _ => End::Deferred {
                        seq: entry.seq,
                        result: payload["result"].as_str().unwrap_or_default().to_owned(),
                    },
                });
            }
            _ => {}
        }
    }
    out
}

/// The first place a re-run did something the journal does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// 1-based position among the task's host calls (0: the outcome).
    pub call: usize,
    /// The journal entry it was compared with, if any.
    pub seq: Option<u64>,
    pub expected: String,
    pub got: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match (self.call, self.seq) {
            (0, Some(seq)) => format!("the outcome (entry {seq})"),
            (0, None) => "the outcome".to_owned(),
            (n, Some(seq)) => format!("host call {n} (entry {seq})"),
            (n, None) => format!("host call {n} (past the end of the journal's)"),
        };
        write!(f, "{at}: the journal has {}, the re-run {}", self.expected, self.got)
    }
}

/// What a replay found, shared between the host (inside the cell) and the
/// caller (after it).
#[derive(Debug, Default)]
pub struct ReplayLog {
    pub answered: usize,
    pub divergence: Option<Divergence>,
}

/// Answers a cell's host calls from the journal. Each call must be the
/// next journaled one, asked with the same arguments; the first that is
/// not is recorded as the divergence and refused, and so is every call
/// after it. With `live_after` set, calls past the journal's end are not
/// divergences: the caller hands them to a live host (crash recovery).
impl std::fmt::Debug for ReplayHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayHost").field("calls_left", &self.calls.len()).finish_non_exhaustive()
    }
}

pub struct ReplayHost {
    calls: VecDeque<Call>,
    log: Arc<Mutex<ReplayLog>>,
    max_tokens_cap: u32,
    meter: Option<Arc<TaskMeter>>,
}

const DIVERGED: &str = "replay diverged from the journal";

impl ReplayHost {
    pub fn new(calls: Vec<Call>, max_tokens_cap: u32, meter: Option<Arc<TaskMeter>>) -> (Self, Arc<Mutex<ReplayLog>>) {
        let log = Arc::new(Mutex::new(ReplayLog::default()));
        (ReplayHost { calls: calls.into(), log: log.clone(), max_tokens_cap, meter }, log)
    }

    /// No journaled call is left to answer.
    pub fn exhausted(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn diverged(&self) -> bool {
        self.log.lock().map(|l| l.divergence.is_some()).unwrap_or(true)
    }

    fn diverge(&self, seq: Option<u64>, expected: String, got: String) {
        if let Ok(mut log) = self.log.lock()
            && log.divergence.is_none()
        {
            let call = log.answered + 1;
            log.divergence = Some(Divergence { call, seq, expected, got });
        }
    }

    /// The next journaled call if it is of `kind` and `matches` says the
    /// request is the one journaled; otherwise records the divergence.
    fn next(&mut self, kind: &str, asked: &str, matches: impl FnOnce(&Value) -> Option<String>) -> Option<Call> {
        if self.diverged() {
            return None;
        }
        let Some(call) = self.calls.pop_front() else {
            self.diverge(None, "no more host calls".into(), format!("made another: {kind} {asked}"));
            return None;
        };
        if call.kind != kind {
            self.diverge(Some(call.seq), format!("{} {}", call.kind, brief(&call.payload)), format!("{kind} {asked}"));
            return None;
        }
        if let Some(difference) = matches(&call.payload) {
            self.diverge(Some(call.seq), format!("{kind} with {difference} as journaled"), format!("{kind} {asked}"));
            return None;
        }
        if let Ok(mut log) = self.log.lock() {
            log.answered += 1;
        }
        Some(call)
    }
}

/// A short rendering of a payload for a divergence message.
fn brief(payload: &Value) -> String {
    let mut text = payload.to_string();
    truncate_utf8(&mut text, 300);
    text
}

fn refused(payload: &Value) -> Option<String> {
    payload.get("refused").or_else(|| payload.get("error")).and_then(Value::as_str).map(str::to_owned)
}

/// `Some(description)` when `journaled` differs from `asked`.
fn differs(field: &str, journaled: &Value, asked: &Value) -> Option<String> {
    (journaled != asked).then(|| format!("{field} {journaled}"))
}

impl CellHost for ReplayHost {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String> {
        let messages: Vec<Value> =
            request.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        let asked =
            format!("model {} with {} messages, max_tokens {}", request.model, messages.len(), request.max_tokens);
        let cap = request.max_tokens.min(self.max_tokens_cap);
        let call = self.next("host.infer", &asked, |p| {
            differs("model", &p["model"], &json!(request.model))
                .or_else(|| differs("messages", &p["messages"], &json!(messages)))
                .or_else(|| {
                    let journaled = p["max_tokens"].as_u64();
                    (journaled != Some(u64::from(request.max_tokens)) && journaled != Some(u64::from(cap)))
                        .then(|| format!("max_tokens {}", p["max_tokens"]))
                })
        });
        let Some(call) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = refused(&call.payload) {
            return Err(reason);
        }
        let tokens = |f: &str| call.payload[f].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        if let Some(meter) = &self.meter {
            use std::sync::atomic::Ordering;
            let cost = call.payload["cost"].as_u64().unwrap_or(0);
            meter.model_calls.fetch_add(1, Ordering::Relaxed);
            meter.settled.fetch_add(cost, Ordering::Relaxed);
            meter.reserved.fetch_add(cost, Ordering::Relaxed);
        }
        Ok(Completion {
            text: call.payload["text"].as_str().unwrap_or_default().to_owned(),
            prompt_tokens: tokens("prompt_tokens"),
            completion_tokens: tokens("completion_tokens"),
        })
    }

    fn recall(&mut self, subject: String, valid_at: Option<i64>) -> Result<Vec<Fact>, String> {
        let asked = format!("of `{subject}` at {valid_at:?}");
        let call = self.next("host.recall", &asked, |p| {
            differs("subject", &p["subject"], &json!(subject)).or_else(|| match p.get("asked_valid_at") {
                Some(journaled) => differs("valid_at", journaled, &json!(valid_at)),
                // Written before requests were recorded whole: a given
                // time must be the one used.
                None => valid_at.and_then(|v| differs("valid_at", &p["valid_at"], &json!(v))),
            })
        });
        let Some(call) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = refused(&call.payload) {
            return Err(reason);
        }
        Ok(journaled_facts(&call.payload))
    }

    fn query_memory(&mut self, q: cells::MemoryQuery) -> Result<Vec<Fact>, String> {
        let query = json!({"space": q.space, "subject": q.subject, "predicate": q.predicate, "words": q.words,
                           "valid_at": q.valid_at, "known_at": q.known_at, "limit": q.limit});
        let asked = format!("{query}");
        let call = self.next("host.query", &asked, |p| differs("query", &p["query"], &query));
        let Some(call) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = refused(&call.payload) {
            return Err(reason);
        }
        Ok(journaled_facts(&call.payload))
    }

    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> Result<(), String> {
        let asked = format!("`{subject}` {predicate} = {value:?} from {valid_from:?}");
        let call = self.next("host.remember", &asked, |p| {
            differs("subject", &p["subject"], &json!(subject))
                .or_else(|| differs("predicate", &p["predicate"], &json!(predicate)))
                .or_else(|| differs("value", &p["value"], &json!(value)))
                .or_else(|| match p.get("asked_valid_from") {
                    Some(journaled) => differs("valid_from", journaled, &json!(valid_from)),
                    None => valid_from.and_then(|v| differs("valid_from", &p["valid_from"], &json!(v))),
                })
        });
        let Some(call) = call else { return Err(DIVERGED.into()) };
        refused(&call.payload).map_or(Ok(()), Err)
    }

    fn request_review(&mut self, gate: String, reason: String) -> Result<(), String> {
        let mut kept = reason.clone();
        truncate_utf8(&mut kept, REVIEW_REASON_BYTES_MAX);
        let asked = format!("under `{gate}`");
        let call = self.next("host.review", &asked, |p| {
            differs("gate", &p["gate"], &json!(gate)).or_else(|| differs("reason", &p["reason"], &json!(kept)))
        });
        let Some(call) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = refused(&call.payload) {
            return Err(reason);
        }
        if let Some(meter) = &self.meter
            && let Ok(mut review) = meter.review.lock()
        {
            *review = Some((gate, reason));
        }
        Ok(())
    }

    fn await_review(&mut self, gate: String, reason: String) -> cells::ReviewAnswer {
        let mut kept = reason.clone();
        truncate_utf8(&mut kept, REVIEW_REASON_BYTES_MAX);
        let asked = format!("under `{gate}`");
        let call = self.next("host.await", &asked, |p| {
            differs("gate", &p["gate"], &json!(gate)).or_else(|| differs("reason", &p["reason"], &json!(kept)))
        });
        let Some(call) = call else { return cells::ReviewAnswer::Refused(DIVERGED.into()) };
        if let Some(reason) = refused(&call.payload) {
            return cells::ReviewAnswer::Refused(reason);
        }
        match call.payload.get("decision") {
            Some(d) => cells::ReviewAnswer::Decided(cells::Review {
                approved: d["approved"] == true,
                note: d["note"].as_str().unwrap_or_default().to_owned(),
                reviewer: d["reviewer"].as_str().unwrap_or_default().to_owned(),
            }),
            // Still undecided: the task parks again on the same gate.
            None => {
                cells::ReviewAnswer::Park { gate_id: call.payload["gate_id"].as_str().unwrap_or_default().to_owned() }
            }
        }
    }

    fn log(&mut self, mut message: String) {
        truncate_utf8(&mut message, LOG_BYTES_MAX);
        let asked = format!("message {}", brief(&json!(message)));
        let _ = self.next("host.log", &asked, |p| differs("message", &p["message"], &json!(message)));
    }
}

/// Crash recovery: answers an interrupted task's calls from the journal
/// up to where it stopped, then hands every later call to the live host.
/// Only calls that completed are in the journal (each is journaled in the
/// same commit as its effect), so nothing is asked of a model or written
/// to memory twice.
impl std::fmt::Debug for RecoveringHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringHost").field("replay", &self.replay).finish_non_exhaustive()
    }
}

pub struct RecoveringHost {
    replay: ReplayHost,
    live: crate::host::TaskHost,
}

impl RecoveringHost {
    pub fn new(replay: ReplayHost, live: crate::host::TaskHost) -> Self {
        RecoveringHost { replay, live }
    }

    /// Replay until the journal runs out; after a divergence, keep
    /// refusing (the task fails) rather than going live on a wrong path.
    fn replaying(&self) -> bool {
        !self.replay.exhausted() || self.replay.diverged()
    }
}

impl CellHost for RecoveringHost {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String> {
        if self.replaying() { self.replay.infer(request) } else { self.live.infer(request) }
    }
    fn recall(&mut self, subject: String, valid_at: Option<i64>) -> Result<Vec<Fact>, String> {
        if self.replaying() { self.replay.recall(subject, valid_at) } else { self.live.recall(subject, valid_at) }
    }
    fn query_memory(&mut self, query: cells::MemoryQuery) -> Result<Vec<Fact>, String> {
        if self.replaying() { self.replay.query_memory(query) } else { self.live.query_memory(query) }
    }
    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> Result<(), String> {
        if self.replaying() {
            self.replay.remember(subject, predicate, value, valid_from)
        } else {
            self.live.remember(subject, predicate, value, valid_from)
        }
    }
    fn request_review(&mut self, gate: String, reason: String) -> Result<(), String> {
        if self.replaying() { self.replay.request_review(gate, reason) } else { self.live.request_review(gate, reason) }
    }
    fn await_review(&mut self, gate: String, reason: String) -> cells::ReviewAnswer {
        if self.replaying() { self.replay.await_review(gate, reason) } else { self.live.await_review(gate, reason) }
    }
    fn log(&mut self, message: String) {
        if self.replaying() { self.replay.log(message) } else { self.live.log(message) }
    }
}

/// Compares a re-run's outcome with the journaled one. `None`: the same.
pub fn compare_end(end: &End, result: &Result<cells::Decision, cells::CellFailure>) -> Option<Divergence> {
    let got = match result {
        Ok(d) => format!("decision {} / {:?}", d.outcome, d.reason),
        Err(f) => format!("failure {}: {f}", f.code()),
    };
    let mismatch =
        |seq: u64, expected: String| Some(Divergence { call: 0, seq: Some(seq), expected, got: got.clone() });
    match (end, result) {
        (End::Proposed { seq, outcome, reason, details }, Ok(d)) => {
            let re_details: Value =
                serde_json::from_str(&d.details).ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
            if &d.outcome == outcome && &d.reason == reason && &re_details == details {
                None
            } else {
                mismatch(*seq, format!("decision {outcome} / {reason:?} {details}"))
            }
        }
        (End::Proposed { seq, outcome, reason, .. }, Err(_)) => {
            mismatch(*seq, format!("decision {outcome} / {reason:?}"))
        }
        (End::Failed { seq, code, message }, Err(f)) => {
            if f.code() == code && (f.to_string() == *message || code == "wall_clock_exceeded") {
                None
            } else {
                mismatch(*seq, format!("failure {code}: {message}"))
            }
        }
        (End::Failed { seq, code, message }, Ok(_)) => mismatch(*seq, format!("failure {code}: {message}")),
        (End::Deferred { seq, result: journaled }, _) => {
            let re = match result {
                Ok(d) => d.outcome.clone(),
                Err(f) => f.code().to_owned(),
            };
            (re != *journaled).then(|| Divergence {
                call: 0,
                seq: Some(*seq),
                expected: format!("result {journaled}"),
                got,
            })
        }
    }
}

/// What `audit replay` checks.
#[derive(Debug)]
pub struct ReplayRequest<'a> {
    pub data: &'a std::path::Path,
    pub mission: Option<&'a str>,
    pub task: Option<u32>,
    /// Extra places to look for modules (by content hash).
    pub module_dirs: &'a [std::path::PathBuf],
    /// Run these modules (agent name, file) instead of the journaled ones,
    /// to see where a new version would act differently.
    pub swaps: &'a [(String, std::path::PathBuf)],
    pub module_cache: Option<std::path::PathBuf>,
}

/// The verdict on one attempt.
#[derive(Debug, serde::Serialize)]
pub struct TaskReplay {
    pub mission: String,
    pub task: u32,
    pub case: String,
    pub started_seq: u64,
    pub host_calls: usize,
    /// "match", "diverged", "erased" (it touched an erased subject), or "unfinished" (the journal shows no end:
    /// the process stopped mid-task and nothing recovered it yet).
    pub verdict: &'static str,
    pub divergence: Option<String>,
    /// Why the comparison was partial, when it was.
    pub note: Option<String>,
}

/// Re-runs every finished task attempt (of `mission`, of `task`) from the
/// journal alone: no model is loaded, nothing is written (the database is
/// opened read-only), and every host call and outcome must match.
pub fn audit_replay(request: &ReplayRequest<'_>) -> anyhow::Result<Vec<TaskReplay>> {
    use anyhow::Context;
    let entries = crate::data::read_journal(request.data)?;
    let declarations: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind == "mission.declared")
        .map(Entry::payload_json)
        .filter(|p| request.mission.is_none_or(|m| p["mission"] == m))
        .collect();
    if declarations.is_empty() {
        match request.mission {
            Some(m) => anyhow::bail!("no mission `{m}` in {}", request.data.display()),
            None => anyhow::bail!("{} holds no mission", request.data.display()),
        }
    }
    let engine = match &request.module_cache {
        Some(dir) => cells::CellEngine::with_module_cache(dir)?,
        None => cells::CellEngine::new()?,
    };
    // Memory values in host calls are sealed; they open with the keys in
    // the memory store (read-only, like everything here), once per chosen
    // attempt, in place.
    let db = ledger::open_read_only(&crate::data::db_path(request.data)?)?;
    let snapshot = db.begin_read().context("opening a read snapshot")?;
    let mut attempts = attempts(&entries);
    let mut erased_in: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, attempt) in attempts.iter_mut().enumerate() {
        let chosen =
            request.mission.is_none_or(|m| attempt.mission == m) && request.task.is_none_or(|t| attempt.task == t);
        if chosen {
            erased_in.insert(i, attempt.unseal(&snapshot)?);
        }
    }
    let mut out = Vec::new();
    for declared in &declarations {
        let mission = declared["mission"].as_str().unwrap_or_default();
        let chosen: Vec<(usize, &Attempt)> = attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.mission == mission && request.task.is_none_or(|t| a.task == t))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let modules = ModuleFinder::new(declared, request.module_dirs);
        let mut loaded: BTreeMap<String, cells::AgentModule> = BTreeMap::new();
        for (i, attempt) in chosen {
            let erased = erased_in.remove(&i).unwrap_or_default();
            let mut verdict = TaskReplay {
                mission: mission.to_owned(),
                task: attempt.task,
                case: attempt.case().to_owned(),
                started_seq: attempt.started_seq,
                host_calls: attempt.calls.len(),
                verdict: "match",
                divergence: None,
                note: None,
            };
            if !erased.is_empty() {
                verdict.verdict = "erased";
                verdict.note = Some(format!(
                    "it read or wrote facts about erased subject(s) {}; their values are gone by design, so it \
                     cannot be re-run (the journal still verifies)",
                    erased.join(", ")
                ));
                out.push(verdict);
                continue;
            }
            let Some(end) = &attempt.end else {
                verdict.verdict = "unfinished";
                verdict.note = Some("the journal shows no end for this attempt; nothing to compare".into());
                out.push(verdict);
                continue;
            };
            let agent_name = attempt.started["agent"].as_str().unwrap_or_default();
            let agent = declared["agents"]
                .as_array()
                .and_then(|list| list.iter().find(|a| a["name"] == agent_name))
                .with_context(|| {
                    format!("task {}: agent `{agent_name}` is not in the mission's declaration", attempt.task)
                })?;
            let mut hash = attempt.started["module_blake3"].as_str().unwrap_or_default().to_owned();
            if let Some((_, file)) = request.swaps.iter().find(|(name, _)| name == agent_name) {
                let swapped = engine.load_file(file)?;
                let swapped_hash = swapped.hash().to_string();
                verdict.note = Some(format!(
                    "module swapped: the journal ran {hash}, this replay ran {swapped_hash} ({})",
                    file.display()
                ));
                hash = swapped_hash;
                loaded.entry(hash.clone()).or_insert(swapped);
            }
            if !loaded.contains_key(&hash) {
                let path = modules.find(&hash).with_context(|| {
                    format!(
                        "task {} needs agent `{agent_name}`'s module with blake3 {hash}; it is not at the \
                         mission's declared path ({}); pass the directory holding it with --modules DIR",
                        attempt.task,
                        modules.looked_at()
                    )
                })?;
                loaded.insert(hash.clone(), engine.load_file(&path)?);
            }
            let module = &loaded[&hash];
            let (limits, cap) = limits_of(agent);
            let env = env_of(&attempt.started)
                .with_context(|| format!("task {}: the journal's task.started has no clock or seed", attempt.task))?;
            let input = serde_json::to_string(&attempt.started["input"])?;
            let (host, log) = ReplayHost::new(attempt.calls.clone(), cap, None);
            let result = engine.run(module, Box::new(host), &limits, &env, &input);
            let log = log.lock().map_err(|_| anyhow::anyhow!("replay log poisoned"))?;
            let timing = matches!(end, End::Failed { code, .. } if code == "wall_clock_exceeded");
            let divergence = log.divergence.clone().or_else(|| {
                if timing {
                    return None;
                }
                (log.answered < attempt.calls.len())
                    .then(|| Divergence {
                        call: log.answered + 1,
                        seq: attempt.calls.get(log.answered).map(|c| c.seq),
                        expected: format!("{} more host calls", attempt.calls.len() - log.answered),
                        got: "made none".into(),
                    })
                    .or_else(|| compare_end(end, &result))
            });
            if timing && verdict.note.is_none() {
                verdict.note = Some(
                    "ended on its wall-clock limit, which depends on timing: host calls compared up to there".into(),
                );
            }
            if let Some(d) = divergence {
                verdict.verdict = "diverged";
                verdict.divergence = Some(d.to_string());
            }
            out.push(verdict);
        }
    }
    out.sort_by(|a, b| (&a.mission, a.task, a.started_seq).cmp(&(&b.mission, b.task, b.started_seq)));
    Ok(out)
}

/// The cell limits a task ran under, from the mission's declaration, and
/// its agent's max_tokens cap.
fn limits_of(agent: &Value) -> (cells::CellLimits, u32) {
    let d = missions::Limits::DEFAULT;
    let l = &agent["limits"];
    let get = |field: &str, default: u64| l[field].as_u64().unwrap_or(default);
    let limits = cells::CellLimits {
        memory_bytes: get("memory_bytes", d.memory_bytes),
        fuel: get("fuel", d.fuel),
        wall_ms: get("wall_ms", d.wall_ms),
        host_calls: u32::try_from(get("host_calls", u64::from(d.host_calls))).unwrap_or(u32::MAX),
        call_arg_bytes_max: usize::try_from(get("call_arg_bytes", d.call_arg_bytes)).unwrap_or(usize::MAX),
        output_bytes_max: usize::try_from(get("output_bytes", d.output_bytes)).unwrap_or(usize::MAX),
    };
    let cap = u32::try_from(get("max_tokens", u64::from(d.max_tokens))).unwrap_or(u32::MAX);
    (limits, cap)
}

/// The cell env journaled in `task.started`.
pub fn env_of(started: &Value) -> Option<cells::CellEnv> {
    let clock_start_us = started["clock_start_us"].as_i64()?;
    let seed: [u8; 32] = hex::decode(started["seed"].as_str()?).ok()?.try_into().ok()?;
    Some(cells::CellEnv { clock_start_us, seed })
}

/// Finds modules by content hash: the mission file's declared agent paths
/// first, then any `*.wasm` under the directories given.
struct ModuleFinder {
    candidates: Vec<std::path::PathBuf>,
}

/// How deep `--modules` directories are searched.
const MODULE_SEARCH_DEPTH: usize = 4;

impl ModuleFinder {
    fn new(declared: &Value, dirs: &[std::path::PathBuf]) -> Self {
        let mut candidates = Vec::new();
        if let Some(file) = declared["file"].as_str()
            && let Ok(mission) = missions::load(std::path::Path::new(file))
        {
            candidates.extend(mission.agents.iter().map(|a| a.module.clone()));
        }
        for dir in dirs {
            let mut stack = vec![(dir.clone(), 0)];
            while let Some((d, depth)) = stack.pop() {
                let Ok(read) = std::fs::read_dir(&d) else { continue };
                for entry in read.flatten() {
                    let path = entry.path();
                    if path.is_dir() && depth < MODULE_SEARCH_DEPTH {
                        stack.push((path, depth + 1));
                    } else if path.extension().is_some_and(|e| e == "wasm") {
                        candidates.push(path);
                    }
                }
            }
        }
        ModuleFinder { candidates }
    }

    fn find(&self, blake3_hex: &str) -> Option<std::path::PathBuf> {
        self.candidates
            .iter()
            .find(|p| std::fs::read(p).is_ok_and(|bytes| blake3::hash(&bytes).to_hex().as_str() == blake3_hex))
            .cloned()
    }

    fn looked_at(&self) -> String {
        if self.candidates.is_empty() {
            return "the mission file could not be read or names missing modules".into();
        }
        let shown: Vec<String> = self.candidates.iter().take(5).map(|p| p.display().to_string()).collect();
        format!("looked at {}{}", shown.join(", "), if self.candidates.len() > 5 { ", …" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triage() -> (cells::CellEngine, cells::AgentModule) {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = std::path::Path::new(&manifest).join("../cells/guests/triage/rust/triage-rs.wasm");
        let engine = cells::CellEngine::new().expect("engine");
        let module = engine.load_file(&path).expect("run `cargo xtask build-agents` first");
        (engine, module)
    }

    fn call(seq: u64, kind: &str, payload: Value) -> Call {
        Call { seq, kind: kind.into(), payload }
    }

    /// The calls the triage agent makes for case `c-1` with amount 120,
    /// as a journal would hold them.
    fn journal(limit: &str, summary: &str) -> Vec<Call> {
        vec![
            call(10, "host.log", json!({"message": "triage[rust] c-1"})),
            call(
                11,
                "host.recall",
                json!({"subject": "policy:triage", "asked_valid_at": null,
                "facts": [{"predicate": "review-above", "value": limit, "valid_from": 1, "valid_to": null, "recorded_at": 2}]}),
            ),
            call(
                12,
                "host.infer",
                json!({"model": "m", "max_tokens": 8, "messages": [
                {"role": "system", "content": "Summarise the case in five words."},
                {"role": "user", "content": "Case c-1: amount 120"}],
                "text": summary, "prompt_tokens": 20, "completion_tokens": 5, "cost": 30}),
            ),
            call(
                13,
                "host.remember",
                json!({"subject": "case:c-1", "predicate": "triaged-by", "value": "rust",
                "asked_valid_from": null}),
            ),
        ]
    }

    fn replay(calls: Vec<Call>) -> (Result<cells::Decision, cells::CellFailure>, ReplayLog) {
        let (engine, module) = triage();
        let limits = cells::CellLimits {
            memory_bytes: 16 << 20,
            fuel: 1_000_000_000,
            wall_ms: 10_000,
            host_calls: 16,
            call_arg_bytes_max: 1 << 16,
            output_bytes_max: 1 << 16,
        };
        let env = cells::CellEnv { clock_start_us: 1, seed: [3; 32] };
        let (host, log) = ReplayHost::new(calls, 8, None);
        let result = engine.run(&module, Box::new(host), &limits, &env, r#"{"id":"c-1","amount":120,"_model":"m"}"#);
        let log = std::mem::take(&mut *log.lock().expect("log"));
        (result, log)
    }

    #[test]
    fn a_journal_that_matches_answers_every_call_and_reproduces_the_decision() {
        let (result, log) = replay(journal("5000", "a small claim"));
        assert_eq!(log.divergence, None);
        assert_eq!(log.answered, 4);
        let decision = result.expect("decides");
        assert_eq!(decision.outcome, "accept");
        let end = End::Proposed {
            seq: 20,
            outcome: "accept".into(),
            reason: "amount 120 vs limit 5000".into(),
            details: json!({"lang": "rust", "limit": 5000, "prompt_tokens": 20, "completion_tokens": 5}),
        };
        assert_eq!(compare_end(&end, &Ok(decision.clone())), None);
        let edited =
            End::Proposed { seq: 20, outcome: "refer".into(), reason: decision.reason.clone(), details: json!({}) };
        let d = compare_end(&edited, &Ok(decision)).expect("an edited outcome is caught");
        assert_eq!((d.call, d.seq), (0, Some(20)));
    }

    #[test]
    fn an_edited_answer_changes_what_the_agent_does_and_the_first_difference_is_named() {
        // The journal says the limit was 100: the agent now refers the case
        // and asks for review, a call the journal does not have.
        let (_, log) = replay(journal("100", "a small claim"));
        let d = log.divergence.expect("diverges");
        assert_eq!((d.call, d.seq), (5, None), "{d}");
        assert!(d.got.contains("host.review"), "{d}");

        // A request edited in the journal: the agent asks for a different
        // subject than the journal recorded.
        let mut calls = journal("5000", "x");
        calls[1].payload["subject"] = json!("policy:other");
        let (result, log) = replay(calls);
        let d = log.divergence.expect("diverges");
        assert_eq!((d.call, d.seq), (2, Some(11)), "{d}");
        assert!(d.expected.contains("policy:other") && d.got.contains("policy:triage"), "{d}");
        assert!(result.is_err(), "a refused recall fails the agent: {result:?}");

        // Calls out of order: the journal's second call is an inference.
        let mut calls = journal("5000", "x");
        calls.swap(1, 2);
        let (_, log) = replay(calls);
        let d = log.divergence.expect("diverges");
        assert_eq!(d.call, 2);
        assert!(d.expected.starts_with("host.infer") && d.got.starts_with("host.recall"), "{d}");
    }

    #[test]
    fn attempts_group_host_calls_by_task_and_end_at_the_proposal() {
        let entry = |seq: u64, kind: &str, payload: Value| Entry {
            seq,
            prev: ledger::EntryHash([0; 32]),
            time_us: 0,
            signer: [0; 32],
            kind: kind.into(),
            payload: payload.to_string().into_bytes(),
            hash: ledger::EntryHash([0; 32]),
            signature: [0; 64],
        };
        let entries = vec![
            entry(1, "task.started", json!({"mission": "m", "task": 0, "case": "a"})),
            entry(2, "task.started", json!({"mission": "m", "task": 1, "case": "b"})),
            entry(3, "host.log", json!({"mission": "m", "task": 1, "message": "b1"})),
            entry(4, "host.log", json!({"mission": "m", "task": 0, "message": "a1"})),
            entry(5, "task.failed", json!({"mission": "m", "task": 0, "code": "trap", "message": "x"})),
            entry(6, "host.log", json!({"mission": "other", "task": 1, "message": "elsewhere"})),
            entry(
                7,
                "task.proposed",
                json!({"mission": "m", "task": 1, "decision": {"outcome": "o", "reason": "r", "details": {}}}),
            ),
            entry(8, "task.started", json!({"mission": "m", "task": 2, "case": "c"})),
        ];
        let found = attempts(&entries);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [4]);
        assert!(matches!(found[0].end, Some(End::Failed { seq: 5, .. })));
        assert_eq!(found[1].calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
        assert!(matches!(found[1].end, Some(End::Proposed { seq: 7, .. })));
        assert!(found[2].end.is_none(), "a task the process never finished");
    }
}

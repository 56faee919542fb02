//! Durable execution: everything a cell learned from outside (its input,
//! its clock and seed, every host call's answer) is in the journal, so a
//! task can be run again to exactly the same point. One mechanism serves
//! the auditor (`audit replay`: re-run with every answer from the journal,
//! nothing written) and crash recovery (re-run an interrupted task to
//! where it stopped, then go on live).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use cells::{CellHost, Completion, Fact, InferRequest};
use ledger::{Entry, Kind};
use serde::Serialize;
use serde_json::{Value, json};

use crate::entries::{
    self, AskedQuery, DeclaredAgent, EntryError, GateDecided, GateTimedOut, HostAwait, HostDocument, HostInfer,
    HostLog, HostQuery, HostRecall, HostRemember, HostReview, JournaledFact, MissionDeclared, Payload, TaskDeferred,
    TaskDelegated, TaskFailed, TaskJoined, TaskProposed, TaskStarted,
};
use crate::host::{LOG_BYTES_MAX, REVIEW_REASON_BYTES_MAX, TaskMeter};
use crate::text::truncate_utf8;

/// One journaled host call.
#[derive(Debug, Clone)]
pub struct Call {
    pub seq: u64,
    pub kind: Kind,
    /// The payload as journaled, kept as JSON because `Attempt::unseal`
    /// opens its memory values in place; read through [`Call::decode`].
    pub payload: Value,
    /// `host.await`: the reviewer's answer, when the journal has one.
    pub answer: Option<Answer>,
    /// `task.delegated`: the children's results (`task.joined`, and its
    /// seq), once every child has ended.
    pub joined: Option<(u64, TaskJoined)>,
}

/// A reviewer's (or a deadline's) answer to a parked task's `await-review`:
/// the answer the agent gets when the task resumes.
#[derive(Debug, Clone)]
pub struct Answer {
    pub approved: bool,
    pub note: String,
    /// The reviewer's key id, or `timeout`.
    pub reviewer: String,
    /// Its `gate.decided` or `gate.timed_out`.
    pub seq: u64,
}

impl Call {
    /// The payload as its struct; refused when the call is of another kind.
    pub fn decode<P: Payload>(&self) -> Result<P, EntryError> {
        entries::decode_json(self.seq, self.kind.as_str(), &self.payload)
    }

    /// The payload as a divergence message shows it, with the answer a
    /// `host.await` carries.
    fn shown(&self) -> String {
        let mut payload = self.payload.clone();
        if let (Some(a), Value::Object(map)) = (&self.answer, &mut payload) {
            map.insert(
                "decision".into(),
                json!({"approved": a.approved, "note": a.note, "reviewer": a.reviewer, "seq": a.seq}),
            );
        }
        brief(&payload)
    }
}

/// A payload as JSON, for the calls and starts replay keeps as JSON and
/// for divergence messages. The journal's structs hold strings, numbers
/// and JSON values only, so encoding cannot fail.
fn as_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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
    pub started: TaskStarted,
    pub calls: Vec<Call>,
    pub end: Option<End>,
}

impl Attempt {
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
fn journaled_facts(facts: Option<Vec<JournaledFact>>) -> Vec<Fact> {
    facts
        .unwrap_or_default()
        .into_iter()
        .map(|f| Fact {
            subject: f.subject,
            predicate: f.predicate,
            value: f.value,
            valid_from: f.valid_from,
            valid_to: f.valid_to,
            recorded_at: f.recorded_at,
        })
        .collect()
}

/// A host call's task and payload (as JSON, for `Attempt::unseal`), or
/// `None` for an entry that is not a host call or does not decode.
fn host_call(entry: &Entry, kind: Kind) -> Option<((String, u32), Value)> {
    fn read<P: Payload>(entry: &Entry, key: impl FnOnce(&P) -> (String, u32)) -> Option<((String, u32), Value)> {
        let payload: P = entries::decode(entry).ok()?;
        Some((key(&payload), as_json(&payload)))
    }
    match kind {
        Kind::HostInfer => read(entry, |p: &HostInfer| (p.mission.clone(), p.task)),
        Kind::HostRecall => read(entry, |p: &HostRecall| (p.mission.clone(), p.task)),
        Kind::HostQuery => read(entry, |p: &HostQuery| (p.mission.clone(), p.task)),
        Kind::HostRemember => read(entry, |p: &HostRemember| (p.mission.clone(), p.task)),
        Kind::HostReview => read(entry, |p: &HostReview| (p.mission.clone(), p.task)),
        Kind::HostAwait => read(entry, |p: &HostAwait| (p.mission.clone(), p.task)),
        Kind::HostLog => read(entry, |p: &HostLog| (p.mission.clone(), p.task)),
        Kind::HostDocument => read(entry, |p: &HostDocument| (p.mission.clone(), p.task)),
        Kind::TaskDelegated => read(entry, |p: &TaskDelegated| (p.mission.clone(), p.task)),
        _ => None,
    }
}

/// Groups journal entries into task attempts, in journal order. A
/// `task.recovered` marker continues the attempt it names (the calls after
/// it were made live after a crash).
///
/// An entry that does not decode as its kind is skipped, as one without a
/// mission and task always was: it belongs to no attempt this can name.
pub fn attempts(entries: &[Entry]) -> Vec<Attempt> {
    let mut open: BTreeMap<(String, u32), usize> = BTreeMap::new();
    let mut out: Vec<Attempt> = Vec::new();
    for entry in entries {
        let Some(kind) = Kind::parse(&entry.kind) else { continue };
        match kind {
            Kind::TaskStarted => {
                let Ok(started) = entries::decode::<TaskStarted>(entry) else { continue };
                open.insert((started.mission.clone(), started.task), out.len());
                out.push(Attempt {
                    mission: started.mission.clone(),
                    task: started.task,
                    started_seq: entry.seq,
                    started: started.clone(),
                    calls: Vec::new(),
                    end: None,
                });
            }
            Kind::HostInfer
            | Kind::HostRecall
            | Kind::HostQuery
            | Kind::HostRemember
            | Kind::HostReview
            | Kind::HostAwait
            | Kind::HostLog
            | Kind::HostDocument
            | Kind::TaskDelegated => {
                let Some((key, payload)) = host_call(entry, kind) else { continue };
                if let Some(&i) = open.get(&key) {
                    out[i].calls.push(Call { seq: entry.seq, kind, payload, answer: None, joined: None });
                }
            }
            // The children's results: the answer to the parent's
            // `delegate` call when it resumes.
            Kind::TaskJoined => {
                let Ok(joined) = entries::decode::<TaskJoined>(entry) else { continue };
                let Some(&i) = open.get(&(joined.mission.clone(), joined.task)) else { continue };
                if let Some(call) = out[i].calls.iter_mut().rev().find(|c| {
                    c.kind == Kind::TaskDelegated
                        && c.decode::<TaskDelegated>()
                            .is_ok_and(|d| d.delegation.as_deref() == Some(joined.delegation.as_str()))
                }) {
                    call.joined = Some((entry.seq, joined));
                }
            }
            // A reviewer's answer to a parked task's `await-review`: the
            // answer the agent gets when the task resumes.
            Kind::GateDecided | Kind::GateTimedOut => {
                let (mission, task, gate_id, approved, note, reviewer) = if kind == Kind::GateDecided {
                    let Ok(p) = entries::decode::<GateDecided>(entry) else { continue };
                    let reviewer = identity::PublicKey::from_bytes(&entry.signer)
                        .map(|k| k.key_id().to_string())
                        .unwrap_or_else(|_| hex::encode(entry.signer));
                    (p.mission, p.task, p.gate_id, p.verdict == "approved", p.note.unwrap_or_default(), reviewer)
                } else {
                    let Ok(p) = entries::decode::<GateTimedOut>(entry) else { continue };
                    (p.mission, p.task, p.gate_id, p.then == "approve", "timed out".to_owned(), "timeout".to_owned())
                };
                // A budget gate answers no task.
                let Some(task) = task else { continue };
                let Some(&i) = open.get(&(mission, task)) else { continue };
                if let Some(call) = out[i].calls.iter_mut().rev().find(|c| {
                    c.kind == Kind::HostAwait
                        && c.decode::<HostAwait>().is_ok_and(|a| a.gate_id.as_deref() == Some(gate_id.as_str()))
                }) {
                    call.answer = Some(Answer { approved, note, reviewer, seq: entry.seq });
                }
            }
            Kind::TaskProposed | Kind::TaskFailed | Kind::TaskDeferred => {
                let (key, end) = match kind {
                    Kind::TaskProposed => {
                        let Ok(p) = entries::decode::<TaskProposed>(entry) else { continue };
                        let d = p.decision;
                        let end =
                            End::Proposed { seq: entry.seq, outcome: d.outcome, reason: d.reason, details: d.details };
                        ((p.mission, p.task), end)
                    }
                    Kind::TaskFailed => {
                        let Ok(p) = entries::decode::<TaskFailed>(entry) else { continue };
                        ((p.mission, p.task), End::Failed { seq: entry.seq, code: p.code, message: p.message })
                    }
                    _ => {
                        let Ok(p) = entries::decode::<TaskDeferred>(entry) else { continue };
                        ((p.mission, p.task), End::Deferred { seq: entry.seq, result: p.result })
                    }
                };
                let Some(i) = open.remove(&key) else { continue };
                out[i].end = Some(end);
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
    /// Answers `read-document` from the document store, by the hash (and
    /// data subject) the journal recorded; `None`: such a read diverges.
    documents: Option<DocumentLoader>,
}

/// Loads a document by (data subject, hash) for replay.
pub type DocumentLoader = Box<dyn FnMut(Option<&str>, &str) -> anyhow::Result<crate::documents::Loaded> + Send>;

const DIVERGED: &str = "replay diverged from the journal";

impl ReplayHost {
    pub fn new(calls: Vec<Call>, max_tokens_cap: u32, meter: Option<Arc<TaskMeter>>) -> (Self, Arc<Mutex<ReplayLog>>) {
        let log = Arc::new(Mutex::new(ReplayLog::default()));
        (ReplayHost { calls: calls.into(), log: log.clone(), max_tokens_cap, meter, documents: None }, log)
    }

    /// Answers `read-document` with `loader`.
    pub fn with_documents(mut self, loader: DocumentLoader) -> Self {
        self.documents = Some(loader);
        self
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

    /// The next journaled call and its payload if it is of `P`'s kind and
    /// `matches` says the request is the one journaled; otherwise records
    /// the divergence. A payload that does not decode is a divergence too.
    fn next<P: Payload>(
        &mut self,
        asked: &str,
        matches: impl FnOnce(&Call, &P) -> Option<String>,
    ) -> Option<(Call, P)> {
        let kind = P::KIND;
        if self.diverged() {
            return None;
        }
        let Some(call) = self.calls.pop_front() else {
            self.diverge(None, "no more host calls".into(), format!("made another: {kind} {asked}"));
            return None;
        };
        if call.kind != kind {
            self.diverge(Some(call.seq), format!("{} {}", call.kind, call.shown()), format!("{kind} {asked}"));
            return None;
        }
        let payload = match call.decode::<P>() {
            Ok(payload) => payload,
            Err(e) => {
                self.diverge(Some(call.seq), format!("{kind} that does not decode ({e})"), format!("{kind} {asked}"));
                return None;
            }
        };
        if let Some(difference) = matches(&call, &payload) {
            self.diverge(Some(call.seq), format!("{kind} with {difference} as journaled"), format!("{kind} {asked}"));
            return None;
        }
        if let Ok(mut log) = self.log.lock() {
            log.answered += 1;
        }
        Some((call, payload))
    }
}

/// A short rendering of a payload for a divergence message.
fn brief(payload: &Value) -> String {
    let mut text = payload.to_string();
    truncate_utf8(&mut text, 300);
    text
}

/// `Some(description)` when `journaled` differs from `asked`.
fn differs<T: PartialEq + Serialize>(field: &str, journaled: &T, asked: &T) -> Option<String> {
    (journaled != asked).then(|| format!("{field} {}", as_json(journaled)))
}

impl CellHost for ReplayHost {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String> {
        let messages: Vec<entries::Message> = request.messages.iter().map(entries::Message::from).collect();
        let asked =
            format!("model {} with {} messages, max_tokens {}", request.model, messages.len(), request.max_tokens);
        let cap = request.max_tokens.min(self.max_tokens_cap);
        let call = self.next(&asked, |_, p: &HostInfer| {
            differs("model", &p.model, &request.model).or_else(|| differs("messages", &p.messages, &messages)).or_else(
                || {
                    (p.max_tokens != request.max_tokens && p.max_tokens != cap)
                        .then(|| format!("max_tokens {}", p.max_tokens))
                },
            )
        });
        let Some((_, p)) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = p.refused.or(p.error) {
            return Err(reason);
        }
        if let Some(meter) = &self.meter {
            use std::sync::atomic::Ordering;
            let cost = p.cost.unwrap_or(0);
            meter.model_calls.fetch_add(1, Ordering::Relaxed);
            meter.settled.fetch_add(cost, Ordering::Relaxed);
            meter.reserved.fetch_add(cost, Ordering::Relaxed);
        }
        Ok(Completion {
            text: p.text.unwrap_or_default(),
            prompt_tokens: p.prompt_tokens.unwrap_or(0),
            completion_tokens: p.completion_tokens.unwrap_or(0),
        })
    }

    fn recall(&mut self, subject: String, valid_at: Option<i64>) -> Result<Vec<Fact>, String> {
        let asked = format!("of `{subject}` at {valid_at:?}");
        let call = self.next(&asked, |_, p: &HostRecall| {
            differs("subject", &p.subject, &subject).or_else(|| match p.asked_valid_at {
                Some(asked_valid_at) => differs("valid_at", &asked_valid_at, &valid_at),
                // Written before requests were recorded whole: a given
                // time must be the one used.
                None => valid_at.and_then(|v| differs("valid_at", &p.valid_at.flatten(), &Some(v))),
            })
        });
        let Some((_, p)) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = p.refused {
            return Err(reason);
        }
        Ok(journaled_facts(p.facts))
    }

    fn query_memory(&mut self, q: cells::MemoryQuery) -> Result<Vec<Fact>, String> {
        let query = AskedQuery::from(&q);
        let asked = format!("{}", as_json(&query));
        let call = self.next(&asked, |_, p: &HostQuery| differs("query", &p.query, &query));
        let Some((_, p)) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = p.refused {
            return Err(reason);
        }
        Ok(journaled_facts(p.facts))
    }

    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> Result<(), String> {
        let asked = format!("`{subject}` {predicate} = {value:?} from {valid_from:?}");
        let call = self.next(&asked, |_, p: &HostRemember| {
            differs("subject", &p.subject, &subject)
                .or_else(|| differs("predicate", &p.predicate, &predicate))
                .or_else(|| differs("value", &p.value, &Some(value.clone())))
                .or_else(|| match p.asked_valid_from {
                    Some(asked_valid_from) => differs("valid_from", &asked_valid_from, &valid_from),
                    None => valid_from.and_then(|v| differs("valid_from", &p.valid_from, &Some(v))),
                })
        });
        let Some((_, p)) = call else { return Err(DIVERGED.into()) };
        p.refused.map_or(Ok(()), Err)
    }

    fn request_review(&mut self, gate: String, reason: String) -> Result<(), String> {
        let mut kept = reason.clone();
        truncate_utf8(&mut kept, REVIEW_REASON_BYTES_MAX);
        let asked = format!("under `{gate}`");
        let call = self.next(&asked, |_, p: &HostReview| {
            differs("gate", &p.gate, &gate).or_else(|| differs("reason", &p.reason, &kept))
        });
        let Some((_, p)) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = p.refused {
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
        let call = self.next(&asked, |_, p: &HostAwait| {
            differs("gate", &p.gate, &gate).or_else(|| differs("reason", &p.reason, &kept))
        });
        let Some((call, p)) = call else { return cells::ReviewAnswer::Refused(DIVERGED.into()) };
        if let Some(reason) = p.refused {
            return cells::ReviewAnswer::Refused(reason);
        }
        match call.answer {
            Some(a) => {
                cells::ReviewAnswer::Decided(cells::Review { approved: a.approved, note: a.note, reviewer: a.reviewer })
            }
            // Still undecided: the task parks again on the same gate.
            None => cells::ReviewAnswer::Park { gate_id: p.gate_id.unwrap_or_default() },
        }
    }

    fn delegate(&mut self, requests: Vec<cells::Delegation>) -> cells::DelegateAnswer {
        let asked = crate::delegation::requested(&requests);
        let shown = format!(
            "{} requests to {}",
            asked.len(),
            asked.iter().map(|c| c.agent.as_str()).collect::<Vec<_>>().join(", ")
        );
        // What the agent asked for (agents, inputs by hash, caps), not what
        // the conductor then assigned (task indices, account limits).
        let call = self.next(&shown, |_, p: &TaskDelegated| {
            let journaled: Vec<(&str, &str, Option<u64>)> =
                p.children.iter().map(|c| (c.agent.as_str(), c.input_blake3.as_str(), c.cap)).collect();
            let now: Vec<(&str, &str, Option<u64>)> =
                asked.iter().map(|c| (c.agent.as_str(), c.input_blake3.as_str(), c.cap)).collect();
            differs("requests", &journaled, &now)
        });
        let Some((call, p)) = call else { return cells::DelegateAnswer::Refused(DIVERGED.into()) };
        if let Some(reason) = p.refused {
            return cells::DelegateAnswer::Refused(reason);
        }
        match call.joined {
            Some((_, joined)) => cells::DelegateAnswer::Done(crate::delegation::answers(&joined)),
            // Some child has not ended: the task parks again on the same
            // delegation.
            None => cells::DelegateAnswer::Park { delegation: p.delegation.unwrap_or_default() },
        }
    }

    fn read_document(&mut self, name: String, offset: u64, max_bytes: u32) -> Result<Vec<u8>, String> {
        let asked = format!("document `{name}` from {offset}, at most {max_bytes} bytes");
        let call = self.next(&asked, |_, p: &HostDocument| {
            differs("name", &p.name, &name)
                .or_else(|| differs("offset", &p.offset, &offset))
                .or_else(|| differs("max_bytes", &p.max_bytes, &max_bytes))
        });
        let Some((call, p)) = call else { return Err(DIVERGED.into()) };
        if let Some(reason) = p.refused {
            return Err(reason);
        }
        // The same bytes as then: the store returns them only if they
        // still hash to what the journal recorded.
        let bytes = match (&mut self.documents, &p.blake3) {
            (Some(load), Some(hash)) => load(p.subject.as_deref(), hash).and_then(|loaded| match loaded {
                crate::documents::Loaded::Bytes(bytes) => Ok(bytes),
                crate::documents::Loaded::Erased => Err(anyhow::anyhow!("its data subject was erased")),
            }),
            _ => Err(anyhow::anyhow!("no document store to read from")),
        };
        match bytes {
            Ok(bytes) => {
                let slice = crate::host::document_slice(&bytes, offset, max_bytes);
                if slice.len() as u64 != p.bytes {
                    self.diverge(
                        Some(call.seq),
                        format!("{} bytes of `{name}`", p.bytes),
                        format!("{} bytes", slice.len()),
                    );
                    return Err(DIVERGED.into());
                }
                Ok(slice.to_vec())
            }
            Err(e) => {
                self.diverge(Some(call.seq), format!("document `{name}` ({:?})", p.blake3), format!("{e:#}"));
                Err(DIVERGED.into())
            }
        }
    }

    fn log(&mut self, mut message: String) {
        truncate_utf8(&mut message, LOG_BYTES_MAX);
        let asked = format!("message {}", brief(&Value::String(message.clone())));
        let _ = self.next(&asked, |_, p: &HostLog| differs("message", &p.message, &message));
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
    fn delegate(&mut self, requests: Vec<cells::Delegation>) -> cells::DelegateAnswer {
        if self.replaying() { self.replay.delegate(requests) } else { self.live.delegate(requests) }
    }
    fn read_document(&mut self, name: String, offset: u64, max_bytes: u32) -> Result<Vec<u8>, String> {
        if self.replaying() {
            self.replay.read_document(name, offset, max_bytes)
        } else {
            self.live.read_document(name, offset, max_bytes)
        }
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
    let journal = crate::data::read_journal(request.data)?;
    let mut declarations: Vec<MissionDeclared> = Vec::new();
    for entry in journal.iter().filter(|e| e.kind == Kind::MissionDeclared) {
        let declared: MissionDeclared = entries::decode(entry)?;
        if request.mission.is_none_or(|m| declared.mission == m) {
            declarations.push(declared);
        }
    }
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
    let mut attempts = attempts(&journal);
    let mut erased_in: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, attempt) in attempts.iter_mut().enumerate() {
        let chosen =
            request.mission.is_none_or(|m| attempt.mission == m) && request.task.is_none_or(|t| attempt.task == t);
        if chosen {
            let mut erased = attempt.unseal(&snapshot)?;
            // Documents sealed under a subject erased since: what the
            // agent read is gone by design, like its memory values.
            for call in attempt.calls.iter().filter(|c| c.kind == Kind::HostDocument) {
                let Ok(read) = call.decode::<HostDocument>() else { continue };
                if let (Some(subject), Some(hash)) = (&read.subject, &read.blake3)
                    && !erased.contains(subject)
                    && matches!(
                        crate::documents::load(request.data, &snapshot, Some(subject), hash),
                        Ok(crate::documents::Loaded::Erased)
                    )
                {
                    erased.push(subject.clone());
                }
            }
            erased_in.insert(i, erased);
        }
    }
    let mut out = Vec::new();
    for declared in &declarations {
        let mission = declared.mission.as_str();
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
            let started = &attempt.started;
            let mut verdict = TaskReplay {
                mission: mission.to_owned(),
                task: attempt.task,
                case: started.case.clone(),
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
            let agent_name = started.agent.as_str();
            let agent = declared.agents.iter().find(|a| a.name == agent_name).with_context(|| {
                format!("task {}: agent `{agent_name}` is not in the mission's declaration", attempt.task)
            })?;
            let mut hash = started.module_blake3.clone();
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
            let env = env_from(started)
                .with_context(|| format!("task {}: the journal's task.started has no clock or seed", attempt.task))?;
            let input = serde_json::to_string(&started.input)?;
            let (host, log) = ReplayHost::new(attempt.calls.clone(), cap, None);
            let (root, snapshot) = (request.data.to_owned(), db.begin_read().context("opening a read snapshot")?);
            let host = host
                .with_documents(Box::new(move |subject, hash| crate::documents::load(&root, &snapshot, subject, hash)));
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
fn limits_of(agent: &DeclaredAgent) -> (cells::CellLimits, u32) {
    let l = &agent.limits;
    let limits = cells::CellLimits {
        memory_bytes: l.memory_bytes,
        fuel: l.fuel,
        wall_ms: l.wall_ms,
        host_calls: l.host_calls,
        call_arg_bytes_max: usize::try_from(l.call_arg_bytes).unwrap_or(usize::MAX),
        output_bytes_max: usize::try_from(l.output_bytes).unwrap_or(usize::MAX),
    };
    (limits, l.max_tokens)
}

/// The cell env journaled in `task.started`; `None` when its seed is not
/// 32 bytes of hex.
pub fn env_from(started: &TaskStarted) -> Option<cells::CellEnv> {
    let seed: [u8; 32] = hex::decode(&started.seed).ok()?.try_into().ok()?;
    Some(cells::CellEnv { clock_start_us: started.clock_start_us, seed })
}

/// Finds modules by content hash: the mission file's declared agent paths
/// first, then any `*.wasm` under the directories given.
struct ModuleFinder {
    candidates: Vec<std::path::PathBuf>,
}

/// How deep `--modules` directories are searched.
const MODULE_SEARCH_DEPTH: usize = 4;

impl ModuleFinder {
    fn new(declared: &MissionDeclared, dirs: &[std::path::PathBuf]) -> Self {
        let mut candidates = Vec::new();
        if let Ok(mission) = missions::load(std::path::Path::new(&declared.file)) {
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

    fn call(seq: u64, kind: Kind, mut payload: Value) -> Call {
        payload["mission"] = json!("m-1");
        payload["task"] = json!(0);
        Call { seq, kind, payload, answer: None, joined: None }
    }

    fn fact(predicate: &str, value: &str) -> Value {
        json!({"id": 1, "space": "mission:m-1", "subject": "policy:triage", "predicate": predicate, "value": value,
               "source": null, "valid_from": 1, "valid_to": null, "recorded_at": 2, "superseded_at": null})
    }

    /// The calls the triage agent makes for case `c-1` with amount 120,
    /// as a journal would hold them.
    fn journal(limit: &str, summary: &str) -> Vec<Call> {
        vec![
            call(10, Kind::HostLog, json!({"message": "triage[rust] c-1"})),
            call(
                11,
                Kind::HostRecall,
                json!({"subject": "policy:triage", "asked_valid_at": null, "spaces": ["mission:m-1"],
                "valid_at": 5, "known_at": null, "facts": [fact("review-above", limit)], "truncated": false}),
            ),
            call(
                12,
                Kind::HostInfer,
                json!({"model": "m", "routed_to": null, "failover_refused": null, "max_tokens": 8, "messages": [
                {"role": "system", "content": "Summarise the case in five words."},
                {"role": "user", "content": "Case c-1: amount 120"}], "reservation": 3,
                "text": summary, "prompt_tokens": 20, "completion_tokens": 5, "cost": 30, "cost_uncapped": 30}),
            ),
            call(
                13,
                Kind::HostRemember,
                json!({"subject": "case:c-1", "predicate": "triaged-by", "value": "rust",
                "asked_valid_from": null, "valid_from": 8, "space": "mission:m-1", "fact": 4, "superseded": [],
                "remainders": []}),
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
        assert_eq!(d.expected, r#"host.recall with subject "policy:other" as journaled"#, "{d}");
        assert!(d.got.contains("policy:triage"), "{d}");
        assert!(result.is_err(), "a refused recall fails the agent: {result:?}");

        // Calls out of order: the journal's second call is an inference.
        let mut calls = journal("5000", "x");
        calls.swap(1, 2);
        let (_, log) = replay(calls);
        let d = log.divergence.expect("diverges");
        assert_eq!(d.call, 2);
        assert!(d.expected.starts_with("host.infer") && d.got.starts_with("host.recall"), "{d}");

        // A journaled time the agent did not ask for; a call journaled
        // before requests were recorded whole is held to the time used
        // only when the agent gives one.
        let mut calls = journal("5000", "x");
        calls[1].payload["asked_valid_at"] = json!(7);
        let d = replay(calls).1.divergence.expect("diverges");
        assert_eq!(d.expected, "host.recall with valid_at 7 as journaled", "{d}");
        let mut calls = journal("5000", "x");
        calls[1].payload.as_object_mut().expect("object").remove("asked_valid_at");
        assert_eq!(replay(calls).1.divergence, None);

        // Edited messages and values are named with their journaled JSON.
        let mut calls = journal("5000", "x");
        calls[2].payload["messages"][1]["content"] = json!("Case c-2");
        let d = replay(calls).1.divergence.expect("diverges");
        // The messages as JSON (their keys in whichever order serde_json
        // keeps in this build).
        let listed = d.expected.strip_prefix("host.infer with messages ").and_then(|m| m.strip_suffix(" as journaled"));
        let listed: Value = serde_json::from_str(listed.expect("named")).expect("JSON");
        assert_eq!(
            listed,
            json!([{"role": "system", "content": "Summarise the case in five words."},
                   {"role": "user", "content": "Case c-2"}]),
            "{d}"
        );
        let mut calls = journal("5000", "x");
        calls[3].payload["value"] = Value::Null;
        let d = replay(calls).1.divergence.expect("diverges");
        assert_eq!(d.expected, "host.remember with value null as journaled", "{d}");
    }

    #[test]
    fn a_call_that_does_not_decode_is_a_divergence() {
        let mut calls = journal("5000", "x");
        calls[2].payload["max_tokens"] = json!("eight");
        let (result, log) = replay(calls);
        let d = log.divergence.expect("diverges");
        assert_eq!((d.call, d.seq), (3, Some(12)), "{d}");
        assert!(d.expected.starts_with("host.infer that does not decode (entry 12 (`host.infer`)"), "{d}");
        assert!(result.is_err(), "{result:?}");
    }

    fn entry(seq: u64, kind: Kind, payload: Value) -> Entry {
        Entry {
            seq,
            prev: ledger::EntryHash([0; 32]),
            time_us: 0,
            signer: [0; 32],
            kind: kind.as_str().into(),
            payload: payload.to_string().into_bytes(),
            hash: ledger::EntryHash([0; 32]),
            signature: [0; 64],
        }
    }

    fn started(mission: &str, task: u32, case: &str) -> Value {
        json!({"mission": mission, "task": task, "case": case, "origin": "mission", "agent": "a",
               "module_blake3": "00", "input": {"id": case}, "clock_start_us": 1, "seed": "03".repeat(32)})
    }

    #[test]
    fn attempts_group_host_calls_by_task_and_end_at_the_proposal() {
        let entries = vec![
            entry(1, Kind::TaskStarted, started("m", 0, "a")),
            entry(2, Kind::TaskStarted, started("m", 1, "b")),
            entry(3, Kind::HostLog, json!({"mission": "m", "task": 1, "message": "b1"})),
            entry(4, Kind::HostLog, json!({"mission": "m", "task": 0, "message": "a1"})),
            entry(5, Kind::TaskFailed, json!({"mission": "m", "task": 0, "case": "a", "code": "trap", "message": "x"})),
            entry(6, Kind::HostLog, json!({"mission": "other", "task": 1, "message": "elsewhere"})),
            entry(
                7,
                Kind::TaskProposed,
                json!({"mission": "m", "task": 1, "case": "b",
                       "decision": {"outcome": "o", "reason": "r", "details": {}}}),
            ),
            entry(8, Kind::TaskStarted, started("m", 2, "c")),
        ];
        let found = attempts(&entries);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [4]);
        assert!(matches!(found[0].end, Some(End::Failed { seq: 5, .. })));
        assert_eq!(found[1].calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
        assert!(matches!(found[1].end, Some(End::Proposed { seq: 7, .. })));
        assert!(found[2].end.is_none(), "a task the process never finished");
        assert_eq!(found[2].started.case, "c");
        let env = env_from(&found[2].started).expect("an env");
        assert_eq!((env.clock_start_us, env.seed), (1, [3; 32]));
    }

    #[test]
    fn a_decided_gate_answers_the_await_that_named_it() {
        let awaited = |seq: u64, gate_id: &str| {
            entry(
                seq,
                Kind::HostAwait,
                json!({"mission": "m", "task": 0, "gate": "big", "reason": "unsure", "gate_id": gate_id}),
            )
        };
        let entries = vec![
            entry(1, Kind::TaskStarted, started("m", 0, "a")),
            awaited(2, "g-1"),
            entry(
                3,
                Kind::GateDecided,
                json!({"mission": "m", "task": 0, "case": "a", "gate_id": "g-1", "gate": "big",
                       "verdict": "approved", "note": "fine", "requested_seq": 2, "votes": [], "quorum": 1,
                       "edits": {}}),
            ),
            awaited(4, "g-2"),
            entry(
                5,
                Kind::GateTimedOut,
                json!({"mission": "m", "task": 0, "case": "a", "gate_id": "g-2", "gate": "big", "then": "deny",
                       "deadline_us": 9}),
            ),
            // A budget gate names no task: it answers nothing here.
            entry(
                6,
                Kind::GateDecided,
                json!({"mission": "m", "gate_id": "g-3", "gate": "budget", "verdict": "approved", "note": null,
                       "requested_seq": 1, "votes": [], "quorum": 1, "budget": null}),
            ),
        ];
        let found = attempts(&entries);
        let answers: Vec<_> =
            found[0].calls.iter().map(|c| c.answer.as_ref().map(|a| (a.approved, a.note.as_str(), a.seq))).collect();
        assert_eq!(answers, [Some((true, "fine", 3)), Some((false, "timed out", 5))]);
        assert_eq!(found[0].calls[1].answer.as_ref().map(|a| a.reviewer.as_str()), Some("timeout"));
    }
}

//! Answers one task's host calls: every call is metered, journaled under
//! the agent's key, and (for inference) paid for with a reservation taken
//! before the model runs.
//!
//! Durability: a call whose effects stay inside the database (a log line,
//! a memory read or write, a review request, a park) is committed with
//! `Ledger::write_deferred`, without its own fsync; it becomes durable
//! with the next durable commit, at the latest the task's outcome
//! (`task.proposed`, `task.parked`, ... are durable). A crash before that
//! loses the task's deferred entries as a unit, and recovery runs the task
//! again from where the durable journal leaves it. Reservations and
//! settlements around a model call stay durable: the call is real work.
//!
//! Every answer is journaled before the agent sees it, refusals and errors
//! included: a call whose entry cannot be committed gets no answer. The
//! agent is told only that the journal failed, the task gets no further
//! answers, and it ends unrecorded (see [`Unrecorded`]): a replay never
//! meets an answer the journal lacks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cells::{CellHost, Completion, Fact, InferRequest, ReviewAnswer};
use identity::Keypair;
use ledger::{BudgetError, Ledger};
use missions::ModelPrice;
use serde_json::json;

use crate::clock::now_us;
use crate::entries;
use crate::metering;
use crate::text::truncate_utf8;
use ledger::Kind;
use models::{ChatMessage, Models};

/// Log lines are for operators, not a data channel: 2 KiB each.
pub const LOG_BYTES_MAX: usize = 2048;

/// The longest a call waits for other tasks' reservations to settle when
/// only they keep its own from fitting (and never past the cell's wall
/// clock). Longer than a batched model call on a CPU (seconds), short
/// enough that a stuck call elsewhere cannot hold a task for long.
const RESERVATION_WAIT_MAX: Duration = Duration::from_secs(60);

/// What every task of one mission shares.
#[derive(Debug)]
pub struct MissionCtx {
    pub id: String,
    pub ledger: Arc<Ledger>,
    /// Where reservations and settlements are committed, many tasks' in
    /// one durable commit (`data::commit`).
    pub committer: Arc<ledger::GroupCommitter>,
    pub conductor: Arc<Keypair>,
    pub router: Arc<dyn Models>,
    pub runtime: tokio::runtime::Handle,
    pub prices: BTreeMap<String, ModelPrice>,
    /// How long a reservation may stay pending before it expires.
    pub reservation_ttl_us: i64,
    /// Set when a reservation is refused: no new task starts (under every
    /// exhaustion policy; they differ in what happens next).
    pub budget_exhausted: AtomicBool,
    /// The gates the mission declares, by name: the ones an agent may ask
    /// for, with their reviewers, quorum and deadline.
    pub gates: BTreeMap<String, missions::Gate>,
    /// How far this mission's writes may grow a memory space.
    pub memory_limits: memory::Limits,
    /// The mission's opt-in frontier failover rules (usually none).
    pub failover: Vec<missions::Failover>,
    /// What a decision may say (the mission's `decisions:`), copied into
    /// every gate's record.
    pub decision_rules: Option<crate::decisions::DecisionRules>,
    /// Who may delegate to whom, within what limits.
    pub delegation: crate::delegation::Policy,
    /// Tasks that became runnable while the mission runs (children just
    /// created, parents whose children all ended), for the scheduler;
    /// `true`: a parent, to be resumed by replay.
    pub ready: tokio::sync::mpsc::UnboundedSender<(u32, bool)>,
    /// The data directory, whose document store holds the cases'
    /// documents (`documents.rs`).
    pub data_root: std::path::PathBuf,
    /// An operator cancelled the mission: every task not yet started is
    /// skipped (`task.skipped`, reason `cancelled`).
    pub cancelled: AtomicBool,
}

impl MissionCtx {
    /// Queues a task that became runnable. Call it only after the commit
    /// that made it so. With no scheduler listening (the run has ended),
    /// the task waits for `mission resume`.
    pub fn wake(&self, task: u32, resume: bool) {
        let _ = self.ready.send((task, resume));
    }

    /// How this mission's model calls reserve and settle.
    pub fn meter(&self) -> metering::Meter {
        metering::Meter::new(
            self.committer.clone(),
            self.ledger.clone(),
            self.conductor.clone(),
            self.reservation_ttl_us,
        )
    }
}

/// Per-task counters, read after the cell is gone.
#[derive(Debug, Default)]
pub struct TaskMeter {
    pub reserved: AtomicU64,
    pub settled: AtomicU64,
    pub model_calls: AtomicU32,
    /// A reservation for this task was refused for lack of budget.
    pub refused: AtomicBool,
    /// The review the agent asked for, if any: (gate, reason). The last
    /// request wins.
    pub review: std::sync::Mutex<Option<(String, String)>>,
    /// The first host call whose journal entry could not be committed, if
    /// any. From then on the task gets no answers, and what it returns is
    /// not its outcome (see `run_task`).
    pub unrecorded: Mutex<Option<Unrecorded>>,
    /// The delegation this task's live `delegate` call created (and
    /// parked it on, in the same commit), if any.
    pub delegated: Mutex<Option<String>>,
}

impl TaskMeter {
    /// The first call of this task the journal could not record, if any.
    pub fn unrecorded(&self) -> Option<Unrecorded> {
        self.unrecorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A host call whose answer (or refusal) the journal could not record: the
/// agent was not given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    /// What failed, in words.
    pub failure: String,
    /// The storage under the journal failed (a full disk, an I/O error):
    /// nothing more can be recorded, so the mission stops and a later run
    /// recovers the task. Otherwise the entry itself was refused, and the
    /// task fails.
    pub storage: bool,
}

/// How an agent's call is answered once the journal could not record it.
pub const UNRECORDED: &str = "the journal could not record this call, so it has no answer and the task stops";

/// A review reason is read by a person: 2 KiB is several paragraphs.
pub const REVIEW_REASON_BYTES_MAX: usize = 2048;

#[derive(Debug)]
pub struct TaskHost {
    pub ctx: Arc<MissionCtx>,
    pub task: u32,
    /// The case's id, for the gate a parked task waits on.
    pub case_id: String,
    /// The budget account this task's calls reserve on (a leaf of the
    /// mission → agent → task tree).
    pub account: String,
    pub agent_key: Arc<Keypair>,
    /// The models this agent may ask for (its own first).
    pub models: Vec<String>,
    /// How sensitive this task's data is: a model sees it only if the
    /// registry clears the model for this tier.
    pub tier: missions::DataTier,
    /// A frontier model this task's calls go to instead (the mission's
    /// opt-in failover for cases like this one); `None`: none.
    pub failover: Option<String>,
    pub max_tokens_cap: u32,
    pub deadline: Instant,
    pub meter: Arc<TaskMeter>,
    /// The memory spaces this agent may read and write.
    pub scope: Arc<crate::facts::Scope>,
    /// The agent's name (whom it may delegate to).
    pub agent: String,
    /// How deep this task sits in its case's tree of delegations (a
    /// case's own task: 0).
    pub depth: u32,
    /// The case's own task at the root of that tree.
    pub root: u32,
}

impl TaskHost {
    /// What the agent gets instead of the answer to a call whose `kind`
    /// entry the journal could not commit: an error that says so. The task
    /// is marked so that it gets no further answers and ends unrecorded,
    /// and a storage failure is reported, so the mission stops.
    pub(crate) fn unrecorded(&self, kind: &str, error: impl Into<anyhow::Error>) -> String {
        let error = error.into().context(format!("journaling task {}'s {kind}", self.task));
        let storage = crate::health::note(&error);
        let failure = crate::health::describe(&error);
        tracing::error!(task = self.task, "{failure}; the task stops");
        let mut slot = self.meter.unrecorded.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Unrecorded { failure: failure.clone(), storage });
        }
        format!("{UNRECORDED}: {failure}")
    }

    /// The answer to every call after one went unrecorded: the same error,
    /// with nothing done or journaled (the task is ending unrecorded).
    fn stopped(&self) -> Option<String> {
        self.meter.unrecorded().map(|u| format!("{UNRECORDED}: an earlier call was not recorded: {}", u.failure))
    }

    /// Answers a memory read (or its refusal) and journals question and
    /// answer in one commit, the answer's values sealed.
    fn memory_read(&self, asked: &Asked, query: Result<memory::Query, String>) -> Result<Vec<Fact>, String> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        let kind = asked.kind();
        let answered = match query {
            Err(refusal) => Err(refusal),
            Ok(query) => Ok(self.ctx.ledger.write_deferred(|t| -> anyhow::Result<Vec<Fact>> {
                let recalled = memory::recall(t.redb(), &query)?;
                let mut listed = Vec::with_capacity(recalled.facts.len());
                let mut facts = Vec::with_capacity(recalled.facts.len());
                let mut erased = 0u64;
                for (i, f) in recalled.facts.iter().enumerate() {
                    // An erased subject's facts have no value left to
                    // give: the agent is not shown them.
                    let Some(mut entry) = crate::facts::journaled(t.redb(), f)? else {
                        erased += 1;
                        continue;
                    };
                    if let (memory::Select::Words(_), Some(score)) = (&query.select, recalled.scores.get(i)) {
                        entry.score = Some(*score);
                    }
                    listed.push(entry);
                    facts.push(Fact {
                        subject: f.subject.clone(),
                        predicate: f.predicate.clone(),
                        value: f.value.plain().unwrap_or_default().to_owned(),
                        valid_from: f.valid_from,
                        valid_to: f.valid_to,
                        recorded_at: f.recorded_at,
                    });
                }
                let answer = ReadAnswer {
                    spaces: Some(query.spaces.clone()),
                    valid_at: Some(query.valid_at),
                    known_at: Some(query.known_at),
                    facts: Some(listed),
                    truncated: Some(recalled.truncated),
                    erased: (erased > 0).then_some(erased),
                    refused: None,
                };
                asked.append(t, &self.agent_key, &self.ctx.id, self.task, answer)?;
                Ok(facts)
            })),
        };
        let answered = match answered {
            Ok(Ok(facts)) => Ok(facts),
            // The storage failed: there is no answer to journal, refusal
            // or otherwise.
            Ok(Err(e)) if crate::health::is_storage(&e) => return Err(self.unrecorded(kind.as_str(), e)),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(refusal) => Err(refusal),
        };
        answered.map_err(|reason| {
            let answer = ReadAnswer { refused: Some(reason.clone()), ..ReadAnswer::default() };
            let written = self
                .ctx
                .ledger
                .write_deferred(|t| asked.append(t, &self.agent_key, &self.ctx.id, self.task, answer.clone()));
            match written {
                Ok(_) => reason,
                Err(e) => self.unrecorded(kind.as_str(), e),
            }
        })
    }

    fn refuse(&self, request: &InferRequest, reason: String) -> Result<Completion, String> {
        // The request is recorded whole, like an answered one: replay
        // checks that a re-run asks exactly the same before answering.
        let payload = entries::HostInfer {
            mission: self.ctx.id.clone(),
            task: self.task,
            model: request.model.clone(),
            messages: request.messages.iter().map(entries::Message::from).collect(),
            max_tokens: request.max_tokens,
            refused: Some(reason.clone()),
            ..entries::HostInfer::default()
        };
        // A refusal the journal lacks is not given: a replay would find no
        // answer to give.
        let agent_key = self.agent_key.clone();
        match self.ctx.meter().record(move |t, now| entries::append(t, &agent_key, &payload, now)) {
            Ok(_) => Err(reason),
            Err(e) => Err(self.unrecorded("refused host.infer", e)),
        }
    }

    /// Why a review under `gate` cannot be asked for, if it cannot; the
    /// refusal is journaled as `kind` (the reason cut to its limit), so a
    /// replay gives the agent the same answer.
    fn refused_review(&self, kind: Kind, gate: &str, reason: &str) -> Option<String> {
        let refused = if !self.ctx.gates.contains_key(gate) {
            let declared = if self.ctx.gates.is_empty() {
                "none".to_owned()
            } else {
                self.ctx.gates.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            };
            format!("gate `{gate}` is not declared by this mission (declared: {declared})")
        } else if reason.len() > REVIEW_REASON_BYTES_MAX {
            format!("review reason of {} bytes exceeds {REVIEW_REASON_BYTES_MAX}", reason.len())
        } else {
            return None;
        };
        let mut kept = reason.to_owned();
        truncate_utf8(&mut kept, REVIEW_REASON_BYTES_MAX);
        let (mission, task, gate, refusal) = (self.ctx.id.clone(), self.task, gate.to_owned(), Some(refused.clone()));
        let written = self.ctx.ledger.write_deferred(|t| match kind {
            Kind::HostAwait => {
                let payload = entries::HostAwait { mission, task, gate, reason: kept, gate_id: None, refused: refusal };
                entries::append(t, &self.agent_key, &payload, now_us())
            }
            _ => {
                let payload = entries::HostReview { mission, task, gate, reason: kept, refused: refusal };
                entries::append(t, &self.agent_key, &payload, now_us())
            }
        });
        match written {
            Ok(_) => Some(refused),
            Err(e) => Some(self.unrecorded(&format!("refused {kind}"), e)),
        }
    }
}

/// What an agent asked a memory read: `host.recall`'s subject, or
/// `host.query`'s query.
enum Asked {
    Recall { subject: String, asked_valid_at: Option<i64> },
    Query(entries::AskedQuery),
}

/// A memory read's answer as journaled; `host.recall` and `host.query`
/// share it.
#[derive(Debug, Clone, Default)]
struct ReadAnswer {
    spaces: Option<Vec<String>>,
    valid_at: Option<Option<i64>>,
    known_at: Option<Option<i64>>,
    facts: Option<Vec<entries::JournaledFact>>,
    truncated: Option<bool>,
    erased: Option<u64>,
    refused: Option<String>,
}

impl Asked {
    fn kind(&self) -> Kind {
        match self {
            Asked::Recall { .. } => Kind::HostRecall,
            Asked::Query(_) => Kind::HostQuery,
        }
    }

    /// Journals the question with `answer`, signed by the agent.
    fn append(
        &self,
        t: &mut ledger::Txn,
        agent: &Keypair,
        mission: &str,
        task: u32,
        answer: ReadAnswer,
    ) -> Result<(u64, ledger::EntryHash), ledger::LedgerError> {
        let ReadAnswer { spaces, valid_at, known_at, facts, truncated, erased, refused } = answer;
        let mission = mission.to_owned();
        match self {
            Asked::Recall { subject, asked_valid_at } => {
                let payload = entries::HostRecall {
                    mission,
                    task,
                    subject: subject.clone(),
                    asked_valid_at: Some(*asked_valid_at),
                    spaces,
                    valid_at,
                    known_at,
                    facts,
                    truncated,
                    erased,
                    refused,
                };
                entries::append(t, agent, &payload, now_us())
            }
            Asked::Query(query) => {
                let payload = entries::HostQuery {
                    mission,
                    task,
                    query: query.clone(),
                    spaces,
                    valid_at,
                    known_at,
                    facts,
                    truncated,
                    erased,
                    refused,
                };
                entries::append(t, agent, &payload, now_us())
            }
        }
    }
}

impl CellHost for TaskHost {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        if !self.models.contains(&request.model) {
            let reason = format!(
                "model `{}` is not available to this agent; it may use {}",
                request.model,
                self.models.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
            );
            return self.refuse(&request, reason);
        }
        let router = self.ctx.router.clone();
        // Where the call goes: the model asked for, unless the mission
        // sends cases like this one to a frontier model. Restricted data
        // never leaves the host: such a task stays on its own model.
        let (model, failover_refused) = match &self.failover {
            Some(to) if self.tier == missions::DataTier::Restricted => (
                request.model.clone(),
                Some(format!("failover to `{to}` refused: restricted data never leaves the host")),
            ),
            Some(to) => (to.clone(), None),
            None => (request.model.clone(), None),
        };
        let spec = match router.registry().get(&model) {
            Ok(spec) => spec.clone(),
            Err(e) => return self.refuse(&request, e.to_string()),
        };
        if spec.tier < self.tier {
            let reason = format!(
                "this case's data is {}; model `{model}` is cleared for {} data at most (the model registry's `tier`)",
                self.tier.as_str(),
                spec.tier.as_str()
            );
            return self.refuse(&request, reason);
        }
        let Some(price) = self.ctx.prices.get(&model) else {
            return self.refuse(&request, format!("model `{model}` has no price in this mission"));
        };
        let price = models::Price { prompt: price.prompt_price, completion: price.completion_price };
        let messages: Vec<ChatMessage> =
            request.messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
        // Counted, checked against the context and priced as every paid
        // call is (`metering`): the worst case is what is reserved.
        let (cap, asked) = (self.max_tokens_cap, request.max_tokens);
        let counted =
            metering::count(router.as_ref(), &model, messages, price, spec.context_tokens, |_| asked.min(cap));
        let (prompt, quote) = match self.ctx.runtime.block_on(counted) {
            Ok(counted) => counted,
            Err(e) => return self.refuse(&request, e.to_string()),
        };
        let max_tokens = quote.max_tokens;
        let memo = json!({"task": self.task, "model": model,
                          "prompt_tokens": quote.prompt_tokens, "max_tokens": max_tokens});
        let meter = self.ctx.meter();
        let wait_until = (Instant::now() + RESERVATION_WAIT_MAX).min(self.deadline);
        let reservation = match meter.reserve(&self.account, &quote, memo, Some(wait_until), |_, _, _| Ok(())) {
            Ok(metering::Reserved::Paid { id, .. }) => id,
            Ok(metering::Reserved::Refused(refusal)) => {
                // A task's own cap (or, for a child, a cap of a task above
                // it) ends only that task's spending; the agent's or the
                // mission's means no new task can pay.
                let task_cap = matches!(&refusal, BudgetError::Insufficient { account, .. }
                    if *account == self.account || crate::run::is_task_account(account));
                if !task_cap {
                    self.ctx.budget_exhausted.store(true, Ordering::SeqCst);
                    self.meter.refused.store(true, Ordering::SeqCst);
                }
                return self.refuse(&request, refusal.to_string());
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                // The storage failed: nothing is reserved, and a refusal
                // could not be journaled either.
                if crate::health::is_storage(&e) {
                    return Err(self.unrecorded("budget reservation", e));
                }
                return self.refuse(&request, e.to_string());
            }
        };
        self.meter.reserved.fetch_add(quote.worst_case, Ordering::Relaxed);

        let timeout = self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        let messages: Vec<entries::Message> = prompt.messages().iter().map(entries::Message::from).collect();
        if let Some(frontier) = &spec.frontier {
            // Recorded, durably, before a byte is sent.
            let sent = serde_json::to_vec(&messages).unwrap_or_default();
            let left = entries::DataLeftHost {
                mission: self.ctx.id.clone(),
                task: self.task,
                model: model.clone(),
                endpoint: frontier.endpoint.clone(),
                remote_model: frontier.remote_model.clone(),
                tier: self.tier.as_str().to_owned(),
                prompt_bytes: sent.len() as u64,
                prompt_blake3: blake3::hash(&sent).to_hex().to_string(),
                reservation: reservation.0,
            };
            if let Err(e) = self.ctx.ledger.write(|t| entries::append(t, &self.ctx.conductor, &left, now_us())) {
                // The call is not made. Its reservation is returned, or, if
                // that cannot be journaled either, stays pending until the
                // next run's recovery voids it (or its deadline expires it).
                if let Err(void) = meter.void(reservation, |_, _| Ok(())) {
                    let void = anyhow::Error::from(void);
                    crate::health::note(&void);
                    tracing::warn!(
                        task = self.task,
                        "reservation {} left pending: {}",
                        reservation.0,
                        crate::health::describe(&void)
                    );
                }
                return Err(self.unrecorded("data.left_host (the frontier call was not made)", e));
            }
        }
        let result = self.ctx.runtime.block_on(router.complete(&prompt, max_tokens, timeout));
        let mut payload = entries::HostInfer {
            mission: self.ctx.id.clone(),
            task: self.task,
            model: request.model.clone(),
            routed_to: Some((model != request.model).then(|| model.clone())),
            failover_refused: Some(failover_refused),
            messages,
            max_tokens,
            reservation: Some(reservation.0),
            ..entries::HostInfer::default()
        };
        let agent_key = self.agent_key.clone();
        match result {
            Err(e) => {
                payload.error = Some(e.to_string());
                // The reservation stays pending if this fails: the next
                // run's recovery voids it.
                match meter.void(reservation, move |t, now| entries::append(t, &agent_key, &payload, now)) {
                    Ok(_) => Err(e.to_string()),
                    Err(e) => Err(self.unrecorded("failed host.infer", e)),
                }
            }
            Ok(out) => {
                // The reservation covered the exact prompt and every allowed
                // completion token; if a tokenizer ever disagreed, the
                // reservation is the most that may be posted.
                let charge = quote.charge(out.prompt_tokens, out.completion_tokens);
                payload.text = Some(out.text.clone());
                payload.prompt_tokens = Some(out.prompt_tokens);
                payload.completion_tokens = Some(out.completion_tokens);
                payload.cost = Some(charge.posted);
                payload.cost_uncapped = Some(charge.uncapped);
                // Settled and journaled in a group commit shared with other
                // cells' calls; the answer is given only once it is durable.
                let written =
                    meter.settle(reservation, charge, move |t, now| entries::append(t, &agent_key, &payload, now));
                if let Err(e) = written {
                    // Not paid for (the reservation stays pending until the
                    // next run's recovery voids it), and not given.
                    return Err(self.unrecorded("answered host.infer", e));
                }
                self.meter.settled.fetch_add(charge.posted, Ordering::Relaxed);
                self.meter.model_calls.fetch_add(1, Ordering::Relaxed);
                Ok(Completion {
                    text: out.text,
                    prompt_tokens: out.prompt_tokens,
                    completion_tokens: out.completion_tokens,
                })
            }
        }
    }

    fn recall(&mut self, subject: String, valid_at: Option<i64>) -> Result<Vec<Fact>, String> {
        // The original recall: every space the agent may read, at one
        // valid time (none: now), as currently known.
        let mut query = memory::Query::new(self.scope.read.clone(), memory::Select::Subject(subject.clone()));
        query.valid_at = Some(valid_at.unwrap_or_else(now_us));
        self.memory_read(&Asked::Recall { subject, asked_valid_at: valid_at }, Ok(query))
    }

    fn query_memory(&mut self, q: cells::MemoryQuery) -> Result<Vec<Fact>, String> {
        let asked = Asked::Query(entries::AskedQuery::from(&q));
        let query = self.scope.readable(&q.space).and_then(|space| {
            let select = match (q.subject.is_empty(), q.words.is_empty(), q.predicate.is_empty()) {
                (false, true, true) => memory::Select::Subject(q.subject),
                (false, true, false) => memory::Select::Predicate { subject: q.subject, predicate: q.predicate },
                (true, false, true) => memory::Select::Words(q.words),
                (true, true, _) => return Err("say what to look for: a subject, or words".to_owned()),
                _ => return Err("ask by subject (and predicate) or by words, not both".to_owned()),
            };
            let mut query = memory::Query::new([space], select);
            query.valid_at = q.valid_at;
            query.known_at = q.known_at;
            if q.limit > 0 {
                query.max_facts = query.max_facts.min(usize::try_from(q.limit).unwrap_or(usize::MAX));
            }
            Ok(query)
        });
        self.memory_read(&asked, query)
    }

    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> Result<(), String> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        let base = entries::HostRemember {
            mission: self.ctx.id.clone(),
            task: self.task,
            subject: subject.clone(),
            predicate: predicate.clone(),
            asked_valid_from: Some(valid_from),
            value: None,
            valid_from: None,
            space: None,
            fact: None,
            superseded: None,
            remainders: None,
            refused: None,
        };
        let stored = self.ctx.ledger.write_deferred(|t| -> anyhow::Result<()> {
            let Some(space) = self.scope.write.clone() else {
                anyhow::bail!("this agent may not write to memory (its mission gives it `memory: {{ write: none }}`)");
            };
            let at = crate::facts::tx_time(t.redb())?;
            let fact = memory::NewFact {
                space: space.clone(),
                subject: subject.clone(),
                predicate: predicate.clone(),
                value: value.clone(),
                source: None,
                valid_from: valid_from.unwrap_or(at),
                valid_to: None,
            };
            let change = memory::Writer::new(t.redb(), at)?.with_limits(self.ctx.memory_limits).assert(fact)?;
            let payload = entries::HostRemember {
                value: Some(memory::seal(t.redb(), &subject, &value)?),
                valid_from: Some(valid_from.unwrap_or(at)),
                space: Some(space),
                fact: Some(change.id.map(|id| id.0)),
                superseded: Some(change.superseded.iter().map(|id| id.0).collect()),
                remainders: Some(change.remainders.iter().map(|id| id.0).collect()),
                ..base.clone()
            };
            entries::append(t, &self.agent_key, &payload, now_us())?;
            Ok(())
        });
        stored.map_err(|e| {
            if crate::health::is_storage(&e) {
                // Neither the fact nor a refusal can be journaled.
                return self.unrecorded(Kind::HostRemember.as_str(), e);
            }
            // The agent is told no, and so is the journal: a replay must
            // give the same answer. The value is sealed even here (it is
            // personal data); for an erased subject it is left out.
            let reason = format!("{e:#}");
            let refused = self.ctx.ledger.write_deferred(|t| {
                let refused = entries::HostRemember {
                    value: memory::seal(t.redb(), &subject, &value).ok(),
                    refused: Some(reason.clone()),
                    ..base.clone()
                };
                entries::append(t, &self.agent_key, &refused, now_us())
            });
            match refused {
                Ok(_) => reason,
                Err(e) => self.unrecorded("refused host.remember", e),
            }
        })
    }

    fn request_review(&mut self, gate: String, reason: String) -> Result<(), String> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        if let Some(refused) = self.refused_review(Kind::HostReview, &gate, &reason) {
            return Err(refused);
        }
        let payload = entries::HostReview {
            mission: self.ctx.id.clone(),
            task: self.task,
            gate: gate.clone(),
            reason: reason.clone(),
            refused: None,
        };
        self.ctx
            .ledger
            .write_deferred(|t| entries::append(t, &self.agent_key, &payload, now_us()))
            .map_err(|e| self.unrecorded(Kind::HostReview.as_str(), e))?;
        if let Ok(mut review) = self.meter.review.lock() {
            *review = Some((gate, reason));
        }
        Ok(())
    }

    fn await_review(&mut self, gate: String, reason: String) -> ReviewAnswer {
        if let Some(stopped) = self.stopped() {
            return ReviewAnswer::Refused(stopped);
        }
        if let Some(refused) = self.refused_review(Kind::HostAwait, &gate, &reason) {
            return ReviewAnswer::Refused(refused);
        }
        // The agent's request, the gate and the task's new state in one
        // commit: after a crash either the task is parked or it never
        // asked.
        let gate_id = uuid::Uuid::new_v4().to_string();
        // Declared: `refused_review` checked.
        let policy = self.ctx.gates.get(&gate);
        let reviewers = policy.map(|p| p.reviewers.clone()).unwrap_or_default();
        let quorum = policy.map_or(1, |p| p.quorum);
        let parked = self.ctx.ledger.write_deferred(|t| -> anyhow::Result<()> {
            let now = now_us();
            let waiting = entries::HostAwait {
                mission: self.ctx.id.clone(),
                task: self.task,
                gate: gate.clone(),
                reason: reason.clone(),
                gate_id: Some(gate_id.clone()),
                refused: None,
            };
            entries::append(t, &self.agent_key, &waiting, now)?;
            let requested = entries::GateRequested {
                mission: self.ctx.id.clone(),
                task: Some(self.task),
                case: Some(self.case_id.clone()),
                gate_id: gate_id.clone(),
                gate: gate.clone(),
                why: entries::GateWhy {
                    requested_by: Some("agent".to_owned()),
                    reason: Some(reason.clone()),
                    waiting: Some(true),
                    ..entries::GateWhy::default()
                },
                proposal_seq: None,
                budget: None,
                reviewers: reviewers.clone(),
                quorum,
            };
            let (requested_seq, _) = entries::append(t, &self.ctx.conductor, &requested, now)?;
            crate::state::put_gate(
                t.redb(),
                &crate::state::GateRecord {
                    id: gate_id.clone(),
                    gate: gate.clone(),
                    mission: self.ctx.id.clone(),
                    task: self.task,
                    case_id: self.case_id.clone(),
                    status: crate::state::GateStatus::Pending,
                    proposed_outcome: String::new(),
                    proposed_reason: reason.clone(),
                    proposed_details: json!({}),
                    reviewer: None,
                    note: None,
                    requested_seq,
                    parked: true,
                    decided_seq: None,
                    reviewers: reviewers.clone(),
                    quorum,
                    votes: Vec::new(),
                    deadline: crate::gates::deadline_of(policy.and_then(|p| p.deadline.as_ref()), now),
                    budget: None,
                    decision_rules: self.ctx.decision_rules.clone(),
                },
            )?;
            Ok(())
        });
        match parked {
            Ok(()) => ReviewAnswer::Park { gate_id },
            // Not parked, and the refusal is not journaled either.
            Err(e) => ReviewAnswer::Refused(self.unrecorded("host.await (parking the task)", e)),
        }
    }

    fn delegate(&mut self, requests: Vec<cells::Delegation>) -> cells::DelegateAnswer {
        if let Some(stopped) = self.stopped() {
            return cells::DelegateAnswer::Refused(stopped);
        }
        crate::delegation::delegate(self, requests)
    }

    fn read_document(&mut self, name: String, offset: u64, max_bytes: u32) -> Result<Vec<u8>, String> {
        if let Some(stopped) = self.stopped() {
            return Err(stopped);
        }
        // The documents of the case at the root of this task's tree: a
        // child reads its case's documents like the case's own task.
        let documents = self
            .ctx
            .ledger
            .read()
            .map_err(anyhow::Error::from)
            .and_then(|read| crate::intake::received(&read, &self.ctx.id, self.root))
            .map(|received| received.map(|r| r.documents).unwrap_or_default());
        let documents = match documents {
            Ok(documents) => documents,
            Err(e) => return Err(self.unrecorded(Kind::HostDocument.as_str(), e)),
        };
        let mut payload = entries::HostDocument {
            mission: self.ctx.id.clone(),
            task: self.task,
            name: name.clone(),
            offset,
            max_bytes,
            blake3: None,
            subject: None,
            bytes: 0,
            refused: None,
        };
        let answer = match documents.iter().find(|d| d.name == name) {
            None => {
                let names: Vec<&str> = documents.iter().map(|d| d.name.as_str()).collect();
                Err(if names.is_empty() {
                    "this task's case has no documents".to_owned()
                } else {
                    format!("the case has no document `{name}`; it has {}", names.join(", "))
                })
            }
            Some(doc) => {
                let loaded = self.ctx.ledger.read().map_err(anyhow::Error::from).and_then(|read| {
                    crate::documents::load(&self.ctx.data_root, &read, doc.subject.as_deref(), &doc.blake3)
                });
                payload.subject = doc.subject.clone();
                match loaded {
                    Ok(crate::documents::Loaded::Bytes(bytes)) => {
                        payload.blake3 = Some(doc.blake3.clone());
                        Ok(document_slice(&bytes, offset, max_bytes).to_vec())
                    }
                    Ok(crate::documents::Loaded::Erased) => {
                        Err(format!("document `{name}` is gone: its data subject was erased"))
                    }
                    Err(e) => Err(format!("document `{name}` cannot be read: {e:#}")),
                }
            }
        };
        match &answer {
            Ok(bytes) => payload.bytes = bytes.len() as u64,
            Err(refusal) => payload.refused = Some(refusal.clone()),
        }
        // Journaled before the agent gets the bytes: a read the journal
        // lacks did not happen.
        if let Err(e) = self.ctx.ledger.write_deferred(|t| entries::append(t, &self.agent_key, &payload, now_us())) {
            return Err(self.unrecorded(Kind::HostDocument.as_str(), e));
        }
        answer
    }

    fn log(&mut self, mut message: String) {
        truncate_utf8(&mut message, LOG_BYTES_MAX);
        tracing::info!(task = self.task, "agent: {message}");
        if self.stopped().is_some() {
            return;
        }
        // A replay retraces log calls too: one the journal lacks stops the
        // task like any other unrecorded call.
        let payload = entries::HostLog { mission: self.ctx.id.clone(), task: self.task, message };
        if let Err(e) = self.ctx.ledger.write_deferred(|t| entries::append(t, &self.agent_key, &payload, now_us())) {
            self.unrecorded(Kind::HostLog.as_str(), e);
        }
    }
}

/// Bytes `offset .. offset + max_bytes` of a document, cut at its end.
pub(crate) fn document_slice(bytes: &[u8], offset: u64, max_bytes: u32) -> &[u8] {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    let end = start.saturating_add(max_bytes as usize).min(bytes.len());
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::Role;

    /// A task host whose agent key the journal does not know, so every
    /// entry the agent would sign is refused (the storage itself works),
    /// and the journal it writes to. The runtime is returned to outlive it.
    fn unknown_agent(dir: &std::path::Path) -> (TaskHost, Arc<Ledger>, tokio::runtime::Runtime) {
        let ledger = Arc::new(Ledger::open(&dir.join("ledger.redb")).expect("ledger"));
        let conductor = Arc::new(Keypair::generate(Role::Conductor));
        ledger.write(|t| t.genesis(&conductor, json!({}), now_us())).expect("genesis");
        let registry = dir.join("models.yaml");
        std::fs::write(
            &registry,
            "models:\n  m:\n    kind: scripted\n    context_tokens: 64\n    prompt_price: 1\n    completion_price: 1\n",
        )
        .expect("registry");
        let registry = models::Registry::from_file(&registry, true).expect("registry");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let ctx = Arc::new(MissionCtx {
            id: "m".into(),
            ledger: ledger.clone(),
            committer: Arc::new(ledger::GroupCommitter::new(ledger.clone(), ledger::GROUP_BATCH_DEFAULT)),
            conductor,
            router: Arc::new(models::scripted::ScriptedModels::new(registry)),
            runtime: runtime.handle().clone(),
            prices: BTreeMap::new(),
            reservation_ttl_us: 60_000_000,
            budget_exhausted: AtomicBool::new(false),
            gates: BTreeMap::new(),
            memory_limits: memory::Limits::MAX,
            failover: Vec::new(),
            decision_rules: None,
            delegation: crate::delegation::Policy::default(),
            ready: tokio::sync::mpsc::unbounded_channel().0,
            data_root: dir.to_owned(),
            cancelled: AtomicBool::new(false),
        });
        let host = TaskHost {
            ctx,
            task: 0,
            case_id: "c0".into(),
            account: "m/a/task-0".into(),
            agent_key: Arc::new(Keypair::generate(Role::Agent)),
            models: vec!["m".into()],
            tier: missions::DataTier::Public,
            failover: None,
            max_tokens_cap: 8,
            deadline: Instant::now() + Duration::from_secs(60),
            meter: Arc::default(),
            scope: Arc::new(crate::facts::Scope::of("m", &missions::MemoryScope::default())),
            agent: "a".into(),
            depth: 0,
            root: 0,
        };
        (host, ledger, runtime)
    }

    /// Every call after the first unrecorded one gets no answer and
    /// journals nothing.
    fn answers_nothing_more(host: &mut TaskHost) {
        let infer = InferRequest { model: "m".into(), messages: Vec::new(), max_tokens: 8 };
        assert!(host.infer(infer).is_err_and(|e| e.starts_with(UNRECORDED)));
        assert!(host.recall("s".into(), None).is_err_and(|e| e.starts_with(UNRECORDED)));
        assert!(host.remember("s".into(), "p".into(), "v".into(), None).is_err_and(|e| e.starts_with(UNRECORDED)));
        assert!(host.request_review("g".into(), "r".into()).is_err_and(|e| e.starts_with(UNRECORDED)));
        assert!(
            matches!(host.await_review("g".into(), "r".into()), ReviewAnswer::Refused(e) if e.starts_with(UNRECORDED))
        );
        host.log("still here".into());
    }

    #[test]
    fn a_refusal_the_journal_cannot_record_is_not_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut host, ledger, _runtime) = unknown_agent(dir.path());
        let before = ledger.head().expect("head").0;
        let asked = InferRequest { model: "not-mine".into(), messages: Vec::new(), max_tokens: 8 };
        let answer = host.infer(asked).expect_err("no completion");
        // The refusal ("not available to this agent") is not given: the
        // journal does not hold it, so a replay could not give it.
        assert!(answer.starts_with(UNRECORDED) && !answer.contains("not available"), "{answer}");
        let unrecorded = host.meter.unrecorded().expect("the task is marked");
        assert!(!unrecorded.storage, "the entry was refused, the storage works: {unrecorded:?}");
        assert!(unrecorded.failure.contains("refused host.infer"), "{unrecorded:?}");
        answers_nothing_more(&mut host);
        assert_eq!(ledger.head().expect("head").0, before, "nothing was journaled");
    }

    #[test]
    fn a_log_line_the_journal_cannot_record_stops_the_task() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut host, ledger, _runtime) = unknown_agent(dir.path());
        let before = ledger.head().expect("head").0;
        host.log("hello".into());
        let unrecorded = host.meter.unrecorded().expect("the task is marked");
        assert!(unrecorded.failure.contains("host.log"), "{unrecorded:?}");
        answers_nothing_more(&mut host);
        assert_eq!(ledger.head().expect("head").0, before, "nothing was journaled");
    }
}

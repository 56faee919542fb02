//! Human gates: listing pending reviews and recording a reviewer's signed
//! decision, after which the case completes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use crate::clock::now_us;
use crate::data::DataDir;
use crate::entries::{self, Payload};
use crate::state::{self, GateDeadline, GateRecord, GateStatus, TaskStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// Seconds each gate waited, from its `gate.requested` to the entry that
/// closed it (`gate.decided`, or `gate.timed_out`), by `gate` (its name
/// in the mission file) and `outcome` (`approved`, `rejected`,
/// `timed_out`): a histogram, recorded through the `metrics` facade
/// (`docs/metrics.md`). Never labelled by case.
pub const WAIT_SECONDS_METRIC: &str = "conductor_gate_wait_seconds";

/// Records how long `gate`, just closed at `closed_us`, waited. Read
/// after the commit, so a decision is measured once it is durable; a
/// request entry that cannot be read only costs the measurement.
fn observe_wait(data: &DataDir, gate: &GateRecord, closed_us: i64) {
    let requested_us = match data.ledger.entries(gate.requested_seq, 1) {
        Ok(entries) => match entries.first() {
            Some(entry) if entry.seq == gate.requested_seq => entry.time_us,
            _ => return,
        },
        Err(e) => {
            tracing::warn!("gate {}: its request could not be read to time the wait: {e}", gate.id);
            return;
        }
    };
    let outcome = match serde_json::to_value(gate.status) {
        Ok(Value::String(name)) => name,
        _ => return,
    };
    // Microseconds to seconds; a clock that stepped back reads as no wait.
    let waited_s = closed_us.saturating_sub(requested_us).max(0) as f64 / 1e6;
    metrics::histogram!(WAIT_SECONDS_METRIC, "gate" => gate.gate.clone(), "outcome" => outcome).record(waited_s);
}

/// Every gate, pending first.
pub fn list(data: &Path) -> Result<Vec<GateRecord>> {
    let ledger = crate::data::open_ledger_only(data)?;
    let read = ledger.read()?;
    let mut gates = state::gates(&read)?;
    gates.sort_by_key(|g| (g.status != GateStatus::Pending, g.requested_seq));
    Ok(gates)
}

/// What a `gate.refused` entry keeps of the attempt's gate id and reason.
const REFUSAL_TEXT_BYTES_MAX: usize = 1024;

/// A gate's clock from its mission's policy, started at `requested_us`.
pub fn deadline_of(policy: Option<&missions::Deadline>, requested_us: i64) -> Option<GateDeadline> {
    let d = policy?;
    let due_us = requested_us.saturating_add(d.after_us);
    let (on_timeout, escalate_to) = match &d.on_timeout {
        missions::OnTimeout::Deny => ("deny", Vec::new()),
        missions::OnTimeout::Approve => ("approve", Vec::new()),
        missions::OnTimeout::Escalate(to) => ("escalate", to.clone()),
    };
    Some(GateDeadline {
        after_us: d.after_us,
        due_us,
        on_timeout: on_timeout.to_owned(),
        escalate_to,
        remind_before_us: d.remind_before_us,
        remind_at_us: d.remind_before_us.map(|before| due_us - before),
        reminded: false,
        escalated: false,
    })
}

/// The proposal fields a reviewer may edit when approving, and how long
/// each may be.
const EDITABLE: [(&str, usize); 3] = [("outcome", 64), ("reason", 4096), ("details", 16 << 10)];

/// Checks a reviewer's edits to the agent's proposal.
fn check_edits(edits: &Map<String, Value>) -> Result<()> {
    for (field, value) in edits {
        let Some((_, max)) = EDITABLE.iter().find(|(name, _)| name == field) else {
            bail!("cannot edit `{field}`; a reviewer may edit outcome, reason and details");
        };
        let ok = match (field.as_str(), value) {
            ("details", Value::Object(_)) => true,
            (_, Value::String(text)) => !text.trim().is_empty(),
            _ => false,
        };
        if !ok {
            bail!("edit of `{field}` must be {}", if field == "details" { "a JSON object" } else { "non-empty text" });
        }
        let size = value.to_string().len();
        if size > *max {
            bail!("edit of `{field}` is {size} bytes, more than {max}");
        }
    }
    Ok(())
}

/// What a reviewer's approval or rejection did.
#[derive(Debug)]
pub struct Decided {
    pub gate: GateRecord,
    /// The gate is decided; `false`: the approval was recorded and the
    /// quorum still needs `needed` more.
    pub closed: bool,
    pub needed: u32,
    /// Deciding it ended the last child of a delegation: its parent is
    /// runnable again.
    pub woke_parent: bool,
}

/// Who signs a reviewer's entries (`gate.voted`, `gate.decided`).
#[derive(Debug, Clone, Copy)]
pub enum ReviewerSigner<'a> {
    /// The reviewer's key, loaded in this process (`gates approve`).
    Key(&'a identity::Keypair),
    /// A key held elsewhere: the reviewer's browser (`conductor serve`),
    /// which signs the entries this process prepared (see
    /// [`ledger::RemoteKey`]).
    Remote(&'a ledger::RemoteKey),
}

impl ReviewerSigner<'_> {
    fn public(&self) -> identity::PublicKey {
        match self {
            ReviewerSigner::Key(key) => key.public(),
            ReviewerSigner::Remote(key) => key.public(),
        }
    }

    /// The reviewer's signed `budget.extended` posting.
    fn extend(
        &self,
        t: &mut ledger::Txn,
        account: &str,
        amount: u64,
        reason: &str,
        time_us: i64,
    ) -> Result<ledger::Account> {
        Ok(match self {
            ReviewerSigner::Key(key) => t.extend(key, account, amount, reason, time_us)?,
            ReviewerSigner::Remote(key) => t.extend_remote(key, account, amount, reason, time_us)?,
        })
    }

    fn append<P: Payload>(&self, t: &mut ledger::Txn, payload: &P, time_us: i64) -> Result<u64> {
        Ok(match self {
            ReviewerSigner::Key(key) => entries::append(t, key, payload, time_us)?.0,
            ReviewerSigner::Remote(key) => {
                let value = serde_json::to_value(payload)?;
                t.append_remote(key, P::KIND.as_str(), &value, time_us)?.0
            }
        })
    }
}

/// A reviewer's decision as asked for, before anything is checked.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub gate_id: &'a str,
    pub verdict: Verdict,
    pub note: Option<&'a str>,
    pub edits: Option<&'a Map<String, Value>>,
    /// For a budget gate: the extension granted (default: what it asks).
    pub amount: Option<u64>,
}

impl Decision<'_> {
    /// What can be refused before the gate is even read.
    fn check(&self) -> Result<()> {
        if let Some(edits) = self.edits {
            if self.verdict == Verdict::Reject {
                bail!("edits go with an approval (`gates approve --edit`); a rejection overrides the proposal");
            }
            check_edits(edits)?;
        }
        if self.amount.is_some() && self.verdict == Verdict::Reject {
            bail!("an amount goes with an approval of a budget gate");
        }
        if self.amount == Some(0) {
            bail!("an extension of 0 grants nothing; approve a positive amount, or reject");
        }
        if let Some(note) = self.note
            && note.len() > NOTE_BYTES_MAX
        {
            bail!("the note is {} bytes, more than {NOTE_BYTES_MAX}", note.len());
        }
        Ok(())
    }
}

/// A reviewer's note is a sentence or a paragraph, not a document.
pub const NOTE_BYTES_MAX: usize = 4096;

/// Records `verdict` on `gate_id`, signed by the reviewer's own key. One
/// rejection decides; approvals are counted until the gate's quorum (each
/// before it is a signed `gate.voted`), and the one that reaches it is the
/// `gate.decided` that completes the task, with every reviewer's edits to
/// the proposal recorded as a diff. Refuses a decided gate, an unknown
/// one, a key that is not a reviewer's or not among the gate's reviewers,
/// and a second approval by the same reviewer.
pub fn decide(
    data: &Path,
    gate_id: &str,
    key_path: &Path,
    verdict: Verdict,
    note: Option<&str>,
    edits: Option<&Map<String, Value>>,
    amount: Option<u64>,
) -> Result<Decided> {
    let decision = Decision { gate_id, verdict, note, edits, amount };
    decision.check()?;
    let reviewer = crate::keys::load_reviewer_key(key_path, "gates are decided")?;
    let data = DataDir::open_existing(data)?;
    if let Err(refusal) = crate::keys::require_registered(&data, &reviewer.public(), key_path) {
        refuse(&data, gate_id, &reviewer.public(), verdict, &format!("{refusal:#}"));
        return Err(refusal);
    }
    // A decision outside the mission's `decisions` is refused like a
    // malformed `--edit`: before anything is journaled, so a typo costs
    // the reviewer a retry and the journal nothing.
    check_rules_now(&data, &decision)?;
    let attempt = decide_in(&data, &decision, ReviewerSigner::Key(&reviewer), now_us(), false);
    if let Err(refusal) = &attempt {
        refuse(&data, gate_id, &reviewer.public(), verdict, &format!("{refusal:#}"));
    }
    attempt
}

/// [`check_rules`] against the gate as it stands now (outside the
/// decision's transaction, which checks again). An unknown or closed
/// gate is left to the decision itself to refuse.
fn check_rules_now(data: &DataDir, decision: &Decision<'_>) -> Result<()> {
    let read = data.ledger.read()?;
    match state::gate(&read, decision.gate_id)? {
        Some(gate) if gate.status == GateStatus::Pending => check_rules(&gate, decision.verdict, decision.edits),
        _ => Ok(()),
    }
}

/// Refuses an approval whose decision, the agent's proposal with every
/// approving reviewer's edits (earlier votes', then `edits`), is outside
/// the rules the gate was raised under: an outcome the mission does not
/// list, or `details` fields it does not declare. A rejection records the
/// conductor's own `rejected` and is always allowed; so are gates with no
/// proposal (a budget gate, an agent's question).
fn check_rules(gate: &GateRecord, verdict: Verdict, edits: Option<&Map<String, Value>>) -> Result<()> {
    let Some(rules) = &gate.decision_rules else { return Ok(()) };
    if verdict == Verdict::Reject || gate.budget.is_some() || gate.parked {
        return Ok(());
    }
    let mut decision = Map::new();
    decision.insert("outcome".into(), json!(gate.proposed_outcome));
    decision.insert("reason".into(), json!(gate.proposed_reason));
    decision.insert("details".into(), gate.proposed_details.clone());
    for earlier in &gate.votes {
        decision.extend(earlier.edits.clone());
    }
    decision.extend(edits.cloned().unwrap_or_default());
    rules.check(&Value::Object(decision)).map_err(|e| {
        let what = if edits.is_some_and(|e| !e.is_empty()) { "the edited decision" } else { "the agent's proposal" };
        anyhow::Error::new(e).context(format!("gate {}: {what} is outside the mission's `decisions`", gate.id))
    })
}

/// Journals a refused attempt (forged, replayed, out of turn, on a closed
/// or unknown gate, malformed) as `gate.refused`, with who tried and why;
/// nothing else is changed. The conductor signs it, so even a key the
/// journal does not know is recorded. Both texts can carry what the caller
/// typed, so both are bounded, like any entry.
pub fn refuse(data: &DataDir, gate_id: &str, who: &identity::PublicKey, verdict: Verdict, reason: &str) {
    let mut reason = reason.to_owned();
    crate::text::truncate_utf8(&mut reason, REFUSAL_TEXT_BYTES_MAX);
    let mut gate_id = gate_id.to_owned();
    crate::text::truncate_utf8(&mut gate_id, REFUSAL_TEXT_BYTES_MAX);
    let conductor = data.conductor.clone();
    let refused = entries::GateRefused {
        gate_id,
        key_id: who.key_id().to_string(),
        public_key: hex::encode(who.to_bytes()),
        verdict: verdict_name(verdict).to_owned(),
        reason,
        repeated: None,
        first_us: None,
        last_us: None,
    };
    let recorded = data.ledger.write(|t| entries::append(t, &conductor, &refused, now_us()));
    if let Err(e) = recorded {
        tracing::warn!("could not journal the refused decision: {e}");
        crate::health::note(&anyhow::Error::from(e));
    }
}

/// Checks and records a decision signed by a key held outside this
/// process, in two steps (see `serve`): with `key` in capture mode and
/// `dry_run`, the entries are built and captured and the transaction is
/// rolled back; with `key` holding their signatures, they are journaled.
/// `now` must be the same both times, so the entries are the same bytes.
/// The caller journals refusals ([`refuse`]).
pub fn decide_remote(
    data: &DataDir,
    decision: &Decision<'_>,
    key: &ledger::RemoteKey,
    now: i64,
    dry_run: bool,
) -> Result<Decided> {
    decision.check()?;
    let decided = decide_in(data, decision, ReviewerSigner::Remote(key), now, dry_run)?;
    if !dry_run && key.unused() > 0 {
        // Unreachable while the journal agrees with the prepared entries
        // (the transaction took them in order); refuse rather than guess.
        bail!("{} signature(s) were not used; prepare the decision again", key.unused());
    }
    Ok(decided)
}

/// The decision ran to the end and was rolled back (a dry run).
#[derive(Debug)]
struct RolledBack(Decided);

impl std::fmt::Display for RolledBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dry run: rolled back")
    }
}

impl std::error::Error for RolledBack {}

fn decide_in(
    data: &DataDir,
    decision: &Decision<'_>,
    reviewer: ReviewerSigner<'_>,
    now: i64,
    dry_run: bool,
) -> Result<Decided> {
    let &Decision { gate_id, verdict, note, edits, amount } = decision;
    let conductor = data.conductor.clone();
    let reviewer_id = reviewer.public().key_id().to_string();
    let written = data.ledger.write(|t| -> Result<Decided> {
        let decided =
            decide_txn(t, data, &conductor, gate_id, reviewer, &reviewer_id, verdict, note, edits, amount, now)?;
        if dry_run {
            // An error rolls the transaction back; the caller unwraps it.
            return Err(RolledBack(decided).into());
        }
        Ok(decided)
    });
    match written {
        Err(e) if e.is::<RolledBack>() => match e.downcast::<RolledBack>() {
            Ok(RolledBack(decided)) => Ok(decided),
            Err(e) => Err(e),
        },
        other => {
            if let Ok(decided) = &other
                && decided.closed
            {
                observe_wait(data, &decided.gate, now);
            }
            other
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one caller; every argument named there")]
fn decide_txn(
    t: &mut ledger::Txn,
    data: &DataDir,
    conductor: &identity::Keypair,
    gate_id: &str,
    reviewer: ReviewerSigner<'_>,
    reviewer_id: &str,
    verdict: Verdict,
    note: Option<&str>,
    edits: Option<&Map<String, Value>>,
    amount: Option<u64>,
    now: i64,
) -> Result<Decided> {
    let Some(mut gate) = state::gate_in(t.redb(), gate_id)? else {
        bail!("no gate `{gate_id}` in {}; `conductor gates list` shows the pending ones", data.root.display());
    };
    if gate.status != GateStatus::Pending {
        bail!(
            "gate {gate_id} was already {} by reviewer {}; a gate is decided once",
            match gate.status {
                GateStatus::Approved => "approved",
                GateStatus::TimedOut => "timed out",
                _ => "rejected",
            },
            gate.reviewer.as_deref().unwrap_or("?")
        );
    }
    if !gate.reviewers.is_empty() && !gate.reviewers.iter().any(|r| r == reviewer_id) {
        bail!(
            "reviewer {reviewer_id} is not among gate `{}`'s reviewers ({}); the mission file names who decides it",
            gate.gate,
            gate.reviewers.join(", ")
        );
    }
    if gate.votes.iter().any(|v| v.reviewer == reviewer_id) {
        bail!("reviewer {reviewer_id} already approved gate {gate_id}; the quorum needs other reviewers");
    }
    if gate.parked && edits.is_some() {
        bail!("gate {gate_id} answers an agent's question (await-review); there is no proposal to edit");
    }
    if let Some(ask) = gate.budget.clone() {
        if edits.is_some() {
            bail!("gate {gate_id} asks for a budget extension; approve it with an amount (`--amount N`), not edits");
        }
        return decide_budget(t, gate, &ask, reviewer, reviewer_id, verdict, note, amount, now);
    }
    if amount.is_some() {
        bail!("gate {gate_id} decides a case; an amount is only for a budget gate");
    }
    check_rules(&gate, verdict, edits)?;
    let edits = edits.cloned().unwrap_or_default();
    let approvals = u32::try_from(gate.votes.len()).unwrap_or(u32::MAX) + 1;
    if verdict == Verdict::Approve && approvals < gate.quorum {
        let voted = entries::GateVoted { edits: Some(edits.clone()), ..voted_entry(&gate, note, approvals) };
        let seq = reviewer.append(t, &voted, now)?;
        gate.votes.push(crate::state::Vote { reviewer: reviewer_id.to_owned(), seq, edits });
        state::put_gate(t.redb(), &gate)?;
        let needed = gate.quorum - approvals;
        return Ok(Decided { gate, closed: false, needed, woke_parent: false });
    }
    // Every approving reviewer's edits, later ones over earlier ones,
    // as a diff from the agent's proposal.
    let mut merged: Map<String, Value> = Map::new();
    if verdict == Verdict::Approve {
        for vote in &gate.votes {
            merged.extend(vote.edits.clone());
        }
        merged.extend(edits);
    }
    let proposed = |field: &str| match field {
        "outcome" => json!(gate.proposed_outcome),
        "reason" => json!(gate.proposed_reason),
        _ => gate.proposed_details.clone(),
    };
    let diff: BTreeMap<String, entries::Edit> = merged
        .iter()
        .filter(|(field, to)| proposed(field) != **to)
        .map(|(field, to)| (field.clone(), entries::Edit { from: proposed(field), to: to.clone() }))
        .collect();
    let decided = entries::GateDecided { edits: Some(diff.clone()), ..decided_entry(&gate, verdict, note) };
    let decided_seq = reviewer.append(t, &decided, now)?;
    gate.status = match verdict {
        Verdict::Approve => GateStatus::Approved,
        Verdict::Reject => GateStatus::Rejected,
    };
    gate.reviewer = Some(reviewer_id.to_owned());
    gate.note = note.map(str::to_owned);
    gate.decided_seq = Some(decided_seq);
    state::put_gate(t.redb(), &gate)?;
    if gate.parked {
        wake_parked(t, &gate)?;
        return Ok(Decided { gate, closed: true, needed: 0, woke_parent: false });
    }
    // Approval adopts the agent's proposal (as edited); rejection
    // overrides it.
    let edited = |field: &str| diff.get(field).and_then(|d| d.to.as_str()).map(str::to_owned);
    let outcome = match verdict {
        Verdict::Approve => edited("outcome").unwrap_or_else(|| gate.proposed_outcome.clone()),
        Verdict::Reject => "rejected".to_owned(),
    };
    let decided_by = format!("reviewer:{reviewer_id}");
    let reason = edited("reason").or_else(|| match verdict {
        Verdict::Reject => note.map(str::to_owned),
        Verdict::Approve => None,
    });
    let details = diff.get("details").map_or_else(|| gate.proposed_details.clone(), |d| d.to.clone());
    let ended = Ended { outcome: &outcome, decided_by: &decided_by, reason, details, gate_seq: decided_seq };
    let woke_parent = finish_task(t, conductor, &gate, ended, Some(!diff.is_empty()), now)?;
    Ok(Decided { gate, closed: true, needed: 0, woke_parent })
}

/// Decides a budget gate. Approvals before the quorum are votes (with
/// the amount each would grant); the approval that reaches it is the
/// reviewer's `gate.decided` followed by the same reviewer's signed
/// `budget.extended` posting, and the mission waits to be resumed. A
/// rejection leaves the mission's budget exhausted for good.
#[allow(clippy::too_many_arguments, reason = "one caller; every argument named there")]
fn decide_budget(
    t: &mut ledger::Txn,
    mut gate: GateRecord,
    ask: &state::BudgetAsk,
    reviewer: ReviewerSigner<'_>,
    reviewer_id: &str,
    verdict: Verdict,
    note: Option<&str>,
    amount: Option<u64>,
    now: i64,
) -> Result<Decided> {
    let granted = amount.unwrap_or(ask.amount);
    let approvals = u32::try_from(gate.votes.len()).unwrap_or(u32::MAX) + 1;
    let grant = entries::BudgetGrant { account: ask.account.clone(), amount: granted };
    if verdict == Verdict::Approve && approvals < gate.quorum {
        // A budget gate answers no task.
        let voted =
            entries::GateVoted { task: None, case: None, budget: Some(grant), ..voted_entry(&gate, note, approvals) };
        let seq = reviewer.append(t, &voted, now)?;
        let mut edits = Map::new();
        edits.insert("amount".into(), json!(granted));
        gate.votes.push(crate::state::Vote { reviewer: reviewer_id.to_owned(), seq, edits });
        state::put_gate(t.redb(), &gate)?;
        let needed = gate.quorum - approvals;
        return Ok(Decided { gate, closed: false, needed, woke_parent: false });
    }
    let decided = entries::GateDecided {
        task: None,
        case: None,
        // Written null when rejected: nothing was granted.
        budget: Some((verdict == Verdict::Approve).then_some(grant)),
        ..decided_entry(&gate, verdict, note)
    };
    let decided_seq = reviewer.append(t, &decided, now)?;
    gate.status = if verdict == Verdict::Approve { GateStatus::Approved } else { GateStatus::Rejected };
    gate.reviewer = Some(reviewer_id.to_owned());
    gate.note = note.map(str::to_owned);
    gate.decided_seq = Some(decided_seq);
    state::put_gate(t.redb(), &gate)?;
    let status = if verdict == Verdict::Approve {
        let reason = format!("budget gate {} (entry {decided_seq})", gate.id);
        reviewer.extend(t, &ask.account, granted, &reason, now)?;
        state::MissionStatus::Paused
    } else {
        // The rejection (this gate.decided) is the record of why.
        state::MissionStatus::BudgetExhausted
    };
    if let Some(mut mission) = state::mission_in(t.redb(), &gate.mission)?
        && mission.status == state::MissionStatus::AwaitingBudget
    {
        mission.status = status;
        state::put_mission(t.redb(), &mission)?;
    }
    Ok(Decided { gate, closed: true, needed: 0, woke_parent: false })
}

/// Whether deciding `gate` left its mission ready to continue: a parked
/// agent got its answer, or a budget gate granted more budget.
pub fn resumes_mission(decided: &Decided) -> bool {
    decided.closed
        && (decided.gate.parked
            || decided.woke_parent
            || (decided.gate.budget.is_some() && decided.gate.status == GateStatus::Approved))
}

/// Hands the answer to a parked task whose mission runs in this process
/// (its task goes straight back to the running mission); whether it did.
/// If not, the mission continues when it is resumed
/// ([`resumes_mission`]).
pub fn wake_running(decided: &Decided) -> bool {
    decided.gate.parked && decided.closed && crate::intake::wake(&decided.gate.mission, decided.gate.task)
}

/// A parked task's gate was answered (by a reviewer or a timeout): the task
/// runs again (replayed to its await, then live) on `mission resume`.
fn wake_parked(t: &mut ledger::Txn, gate: &GateRecord) -> Result<()> {
    if let Some(mut task) = state::task_in(t.redb(), &gate.mission, gate.task)? {
        task.status = TaskStatus::Pending;
        state::put_task(t.redb(), &task)?;
    }
    if let Some(mut mission) = state::mission_in(t.redb(), &gate.mission)?
        && mission.status == state::MissionStatus::AwaitingReview
    {
        mission.status = state::MissionStatus::Paused;
        state::put_mission(t.redb(), &mission)?;
    }
    Ok(())
}

/// How a verdict is spelled in the journal.
/// A case gate's `gate.voted` by one more approver, without edits.
fn voted_entry(gate: &GateRecord, note: Option<&str>, approvals: u32) -> entries::GateVoted {
    entries::GateVoted {
        mission: gate.mission.clone(),
        task: Some(gate.task),
        case: Some(gate.case_id.clone()),
        gate_id: gate.id.clone(),
        gate: gate.gate.clone(),
        // A rejection decides the gate: only approvals are votes.
        verdict: "approved".into(),
        note: note.map(str::to_owned),
        edits: None,
        approvals,
        quorum: gate.quorum,
        requested_seq: gate.requested_seq,
        budget: None,
    }
}

/// A case gate's `gate.decided` naming the votes before it, without edits.
fn decided_entry(gate: &GateRecord, verdict: Verdict, note: Option<&str>) -> entries::GateDecided {
    entries::GateDecided {
        mission: gate.mission.clone(),
        task: Some(gate.task),
        case: Some(gate.case_id.clone()),
        gate_id: gate.id.clone(),
        gate: gate.gate.clone(),
        verdict: verdict_name(verdict).to_owned(),
        note: note.map(str::to_owned),
        requested_seq: gate.requested_seq,
        votes: gate.votes.iter().map(|v| v.seq).collect(),
        quorum: gate.quorum,
        edits: None,
        budget: None,
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    }
}

/// How a gated task ends.
struct Ended<'a> {
    outcome: &'a str,
    decided_by: &'a str,
    /// Its new reason, if the decision changed it.
    reason: Option<String>,
    /// The decision's details as decided (the proposal's, or as edited).
    details: Value,
    /// The gate's `gate.decided` or `gate.timed_out`.
    gate_seq: u64,
}

/// Decides a gated task (`task.decided` after the gate's `gate_seq`, and
/// `edited` when a reviewer decided it) and completes its mission when
/// that was the last open gate. A child task's end goes to its parent;
/// returns whether that woke the parent (its last child ended).
fn finish_task(
    t: &mut ledger::Txn,
    conductor: &identity::Keypair,
    gate: &GateRecord,
    ended: Ended<'_>,
    edited: Option<bool>,
    now: i64,
) -> Result<bool> {
    let Ended { outcome, decided_by, reason, details, gate_seq } = ended;
    let decided = entries::TaskDecided {
        mission: gate.mission.clone(),
        task: gate.task,
        case: gate.case_id.clone(),
        outcome: outcome.to_owned(),
        decided_by: decided_by.to_owned(),
        proposal_seq: None,
        gate_seq: Some(gate_seq),
        edited,
    };
    entries::append(t, conductor, &decided, now)?;
    let mut woke = false;
    if let Some(mut task) = state::task_in(t.redb(), &gate.mission, gate.task)? {
        task.status = TaskStatus::Decided;
        task.outcome = Some(outcome.to_owned());
        if let Some(reason) = reason {
            task.reason = Some(reason);
        }
        task.decided_by = Some(decided_by.to_owned());
        state::put_task(t.redb(), &task)?;
        let result = crate::delegation::result_of(&task, Some(details), None);
        woke = crate::delegation::child_ended(t, conductor, &task, result)?.is_some();
    }
    // The mission completes when its last pending gate is decided.
    if let Some(mut mission) = state::mission_in(t.redb(), &gate.mission)?
        && mission.status == state::MissionStatus::AwaitingReview
    {
        let tasks = state::tasks_in(t.redb(), &gate.mission)?;
        mission.status = state::settle_status(&tasks, false);
        if matches!(mission.status, state::MissionStatus::Completed | state::MissionStatus::CompletedWithFailures) {
            entries::append(t, conductor, &entries::MissionCompleted { mission: mission.id.clone() }, now)?;
        }
        state::put_mission(t.redb(), &mission)?;
    }
    Ok(woke)
}

/// What one sweep of the gates' clocks did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Swept {
    pub reminded: Vec<String>,
    pub escalated: Vec<String>,
    pub timed_out: Vec<String>,
    /// Missions with a parked task whose gate timed out: resume them.
    pub to_resume: Vec<String>,
}

/// Applies every pending gate's deadline as of `now`: a reminder when it
/// is due (`gate.reminder`), and at the deadline `gate.escalated` (to the
/// escalation group, with a fresh deadline) or `gate.timed_out` (then the
/// case is decided `timed_out`, or as proposed under `on_timeout:
/// approve`; a parked task gets the answer "not approved" or "approved"
/// with the note "timed out"). Each is signed by the conductor and
/// committed with its effect. Idempotent: run it as often as you like.
pub fn sweep(data: &DataDir, now: i64) -> Result<Swept> {
    let due: Vec<GateRecord> = {
        let read = data.ledger.read()?;
        state::gates(&read)?
            .into_iter()
            .filter(|g| g.status == GateStatus::Pending)
            .filter(|g| {
                g.deadline
                    .as_ref()
                    .is_some_and(|d| d.due_us <= now || d.remind_at_us.is_some_and(|r| r <= now && !d.reminded))
            })
            .collect()
    };
    let conductor = data.conductor.clone();
    let mut swept = Swept::default();
    for candidate in due {
        // The gate this candidate's transaction timed out, if it did.
        let mut closed = None;
        data.ledger.write(|t| -> Result<()> {
            // Re-read inside the transaction: a reviewer may have decided it.
            let Some(mut gate) = state::gate_in(t.redb(), &candidate.id)? else { return Ok(()) };
            let Some(mut deadline) = gate.deadline.clone() else { return Ok(()) };
            if gate.status != GateStatus::Pending {
                return Ok(());
            }
            // A budget gate belongs to its mission, not to a task.
            let task = gate.budget.is_none().then_some(gate.task);
            let case = gate.budget.is_none().then(|| gate.case_id.clone());
            if deadline.due_us > now {
                // Only the reminder is due.
                let reminder = entries::GateReminder {
                    mission: gate.mission.clone(),
                    task,
                    case,
                    gate_id: gate.id.clone(),
                    gate: gate.gate.clone(),
                    deadline_us: deadline.due_us,
                    reviewers: gate.reviewers.clone(),
                };
                entries::append(t, &conductor, &reminder, now)?;
                deadline.reminded = true;
                gate.deadline = Some(deadline);
                state::put_gate(t.redb(), &gate)?;
                swept.reminded.push(gate.id.clone());
                return Ok(());
            }
            if deadline.on_timeout == "escalate" && !deadline.escalated {
                let due_us = now.saturating_add(deadline.after_us);
                let escalated = entries::GateEscalated {
                    mission: gate.mission.clone(),
                    task,
                    case,
                    gate_id: gate.id.clone(),
                    gate: gate.gate.clone(),
                    from: gate.reviewers.clone(),
                    to: deadline.escalate_to.clone(),
                    deadline_us: due_us,
                };
                entries::append(t, &conductor, &escalated, now)?;
                gate.reviewers = deadline.escalate_to.clone();
                gate.votes.clear();
                deadline.escalated = true;
                deadline.due_us = due_us;
                deadline.remind_at_us = deadline.remind_before_us.map(|before| due_us - before);
                deadline.reminded = false;
                gate.deadline = Some(deadline);
                state::put_gate(t.redb(), &gate)?;
                swept.escalated.push(gate.id.clone());
                return Ok(());
            }
            // An escalated gate that ran out again is denied by the timeout.
            let approve = deadline.on_timeout == "approve";
            let timed_out = entries::GateTimedOut {
                mission: gate.mission.clone(),
                task,
                case,
                gate_id: gate.id.clone(),
                gate: gate.gate.clone(),
                then: if approve { "approve" } else { "deny" }.into(),
                deadline_us: deadline.due_us,
            };
            let (seq, _) = entries::append(t, &conductor, &timed_out, now)?;
            gate.status = GateStatus::TimedOut;
            gate.decided_seq = Some(seq);
            gate.reviewer = Some("timeout".into());
            state::put_gate(t.redb(), &gate)?;
            swept.timed_out.push(gate.id.clone());
            closed = Some(gate.clone());
            if gate.budget.is_some() {
                // A timeout cannot sign an extension: the budget stays
                // spent (the gate.timed_out entry says why).
                if let Some(mut mission) = state::mission_in(t.redb(), &gate.mission)?
                    && mission.status == state::MissionStatus::AwaitingBudget
                {
                    mission.status = state::MissionStatus::BudgetExhausted;
                    state::put_mission(t.redb(), &mission)?;
                }
                return Ok(());
            }
            if gate.parked {
                wake_parked(t, &gate)?;
                if !swept.to_resume.contains(&gate.mission) {
                    swept.to_resume.push(gate.mission.clone());
                }
                return Ok(());
            }
            let outcome = if approve { gate.proposed_outcome.clone() } else { "timed_out".to_owned() };
            let details = gate.proposed_details.clone();
            let ended = Ended { outcome: &outcome, decided_by: "timeout", reason: None, details, gate_seq: seq };
            if finish_task(t, &conductor, &gate, ended, None, now)? && !swept.to_resume.contains(&gate.mission) {
                swept.to_resume.push(gate.mission.clone());
            }
            Ok(())
        })?;
        if let Some(gate) = closed {
            observe_wait(data, &gate, now);
        }
    }
    Ok(swept)
}

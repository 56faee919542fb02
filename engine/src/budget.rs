//! Budget extensions: a reviewer raises a mission's limit with a posting
//! signed by their own key.

use std::path::Path;

use anyhow::{Result, bail};

use crate::clock::now_us;
use crate::data::DataDir;
use crate::state::MissionStatus;

/// Raises `account`'s limit by `amount`, signed by the reviewer key at
/// `key_path` (which the journal must have registered).
pub fn extend(data_dir: &Path, account: &str, amount: u64, key_path: &Path, reason: &str) -> Result<ledger::Account> {
    let reviewer = crate::keys::load_reviewer_key(key_path, "budgets are extended")?;
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &reviewer.public(), key_path)?;
    // A mission waiting on its budget gate is extended through the gate,
    // so the gate's reviewers, quorum and deadline are what decide.
    let read = data.ledger.read()?;
    if let Some(gate) = crate::state::gates(&read)?.into_iter().find(|g| {
        g.status == crate::state::GateStatus::Pending && g.budget.as_ref().is_some_and(|b| b.account == account)
    }) {
        bail!(
            "mission {} is waiting on its budget gate {}; decide it with `conductor gates approve {} --amount {amount} --key {}`",
            gate.mission,
            gate.id,
            gate.id,
            key_path.display()
        );
    }
    drop(read);
    // The limit in force lives in the budget account alone; the mission
    // record keeps the limit it was declared with.
    Ok(data.ledger.write(|t| t.extend(&reviewer, account, amount, reason, now_us()))?)
}

/// What a mission does once its budget has refused a call (its
/// `on_exhausted`), decided here and nowhere else. The host only records
/// the fact (`MissionCtx::budget_exhausted`, `TaskMeter::refused`); the
/// run asks this policy what the fact means at each point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhaustion(pub(crate) missions::OnExhausted);

/// What to do with a task about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeforeTask {
    Run,
    /// Pause and gate: the task stays pending and runs on resume.
    LeavePending,
    /// Stop: once the budget refused a call, nothing new starts; the task
    /// is recorded as skipped.
    Skip,
}

impl Exhaustion {
    /// Whether the run goes on through its remaining tasks. Under stop it
    /// does, to record each as skipped; under pause and gate the rest stay
    /// pending, untouched, for the resume.
    pub(crate) fn keeps_going(self, exhausted: bool) -> bool {
        !exhausted || self.0 == missions::OnExhausted::Stop
    }

    /// A task about to start (a recovered one always carries on: it had
    /// started before the budget ran out).
    pub(crate) fn before_task(self, exhausted: bool, recovering: bool) -> BeforeTask {
        match (exhausted && !recovering, self.0) {
            (false, _) => BeforeTask::Run,
            (true, missions::OnExhausted::Stop) => BeforeTask::Skip,
            (true, _) => BeforeTask::LeavePending,
        }
    }

    /// Whether a task whose call was refused mid-task (the agent's or the
    /// mission's budget, not its own cap) is run again from the start on
    /// resume, its result discarded: under pause and gate it ran without a
    /// call it needed, so its result is not final. Under stop it stands.
    pub(crate) fn defers_refused_task(self) -> bool {
        self.0 != missions::OnExhausted::Stop
    }

    /// The mission's status at the end of a run, from the status its tasks
    /// give (`state::settle_status`).
    pub(crate) fn mission_status(self, settled: MissionStatus) -> MissionStatus {
        match (settled, self.0) {
            (MissionStatus::BudgetExhausted, missions::OnExhausted::Pause) => MissionStatus::Paused,
            (MissionStatus::BudgetExhausted, missions::OnExhausted::Gate) => MissionStatus::AwaitingBudget,
            (other, _) => other,
        }
    }
}

//! The mission summary printed by `conductor run` and `conductor mission
//! show`, and the table of `conductor mission list`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ledger::Ledger;
use serde::Serialize;

use crate::state::{self, MissionStatus, TaskRecord, TaskStatus};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub mission_id: String,
    pub name: String,
    pub status: MissionStatus,
    pub budget: Budget,
    pub tokens: Tokens,
    pub counts: Counts,
    pub tasks: Vec<TaskRecord>,
    pub journal: Journal,
    /// Key id -> the name it was registered with, for the reviewers named
    /// in `tasks` (`decided_by: reviewer:<key id>`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Budget {
    pub limit: u64,
    pub settled: u64,
    pub pending: u64,
    pub available: u64,
}

#[derive(Debug, Serialize)]
pub struct Tokens {
    pub reserved: u64,
    pub settled: u64,
    pub model_calls: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub decided: u32,
    pub awaiting_review: u32,
    pub failed: u32,
    pub skipped: u32,
    pub unfinished: u32,
}

impl Counts {
    pub fn of(tasks: &[TaskRecord]) -> Self {
        let mut counts = Counts::default();
        for t in tasks {
            match t.status {
                TaskStatus::Decided => counts.decided += 1,
                TaskStatus::AwaitingReview => counts.awaiting_review += 1,
                TaskStatus::Failed => counts.failed += 1,
                TaskStatus::Skipped => counts.skipped += 1,
                TaskStatus::Pending | TaskStatus::Running | TaskStatus::AwaitingChildren => counts.unfinished += 1,
            }
        }
        counts
    }
}

#[derive(Debug, Serialize)]
pub struct Journal {
    pub entries: u64,
    pub head: String,
}

pub fn build(ledger: &Ledger, mission_id: &str) -> Result<Summary> {
    let read = ledger.read()?;
    let mission = state::mission(&read, mission_id)?
        .with_context(|| format!("no mission `{mission_id}` in this data directory"))?;
    let tasks = state::tasks(&read, mission_id)?;
    let account = ledger.account(mission_id)?;
    let (entries, head) = ledger.head()?;
    let counts = Counts::of(&tasks);
    let mut names = crate::keys::names(ledger)?;
    names.retain(|id, _| tasks.iter().any(|t| t.decided_by.as_deref().and_then(reviewer_of) == Some(id.as_str())));
    Ok(Summary {
        mission_id: mission.id,
        name: mission.name,
        status: mission.status,
        budget: Budget {
            limit: account.limit.unwrap_or(mission.budget_limit),
            settled: account.settled,
            pending: account.pending,
            available: account.available().unwrap_or(0),
        },
        tokens: Tokens {
            reserved: tasks.iter().map(|t| t.tokens_reserved).sum(),
            settled: tasks.iter().map(|t| t.tokens_settled).sum(),
            model_calls: tasks.iter().map(|t| u64::from(t.model_calls)).sum(),
        },
        counts,
        tasks,
        journal: Journal { entries, head: head.to_string() },
        names,
    })
}

/// The reviewer's key id in a task's `decided_by` (`reviewer:<key id>`).
pub fn reviewer_of(decided_by: &str) -> Option<&str> {
    decided_by.strip_prefix("reviewer:")
}

/// One mission of `mission list`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub mission_id: String,
    pub name: String,
    pub status: MissionStatus,
    /// Settled spend and the limit in force (extensions included).
    pub settled: u64,
    pub limit: u64,
    pub tasks: u32,
    pub counts: Counts,
}

/// Every mission in the data directory, oldest first.
pub fn list(ledger: &Ledger) -> Result<Vec<Listed>> {
    let read = ledger.read()?;
    let mut missions = state::missions(&read)?;
    missions.sort_by_key(|m| m.declared_seq);
    missions
        .into_iter()
        .map(|m| {
            let tasks = state::tasks(&read, &m.id)?;
            let account = ledger.account(&m.id)?;
            Ok(Listed {
                settled: account.settled,
                limit: account.limit.unwrap_or(m.budget_limit),
                tasks: m.tasks_total,
                counts: Counts::of(&tasks),
                mission_id: m.id,
                name: m.name,
                status: m.status,
            })
        })
        .collect()
}

/// A mission status in words.
pub fn status_text(status: MissionStatus) -> &'static str {
    match status {
        MissionStatus::Running => "running (interrupted?)",
        MissionStatus::Completed => "completed",
        MissionStatus::CompletedWithFailures => {
            "completed with failures: some tasks failed (`conductor ledger show --tasks`)"
        }
        MissionStatus::AwaitingReview => "awaiting review",
        MissionStatus::BudgetExhausted => "budget exhausted: stopped before every task could run",
        MissionStatus::Paused => "paused: out of budget; resume with `conductor mission resume`",
        MissionStatus::AwaitingBudget => {
            "awaiting budget: a reviewer decides its budget gate (`conductor gates list`), and the mission continues"
        }
        MissionStatus::Cancelled => "cancelled by an operator: tasks not yet started were skipped",
    }
}

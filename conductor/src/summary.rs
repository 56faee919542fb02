//! The mission summary printed by `conductor run` and `conductor mission show`.

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
    let mut counts = Counts::default();
    for t in &tasks {
        match t.status {
            TaskStatus::Decided => counts.decided += 1,
            TaskStatus::AwaitingReview => counts.awaiting_review += 1,
            TaskStatus::Failed => counts.failed += 1,
            TaskStatus::Skipped => counts.skipped += 1,
            TaskStatus::Pending | TaskStatus::Running => counts.unfinished += 1,
        }
    }
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
    })
}

/// A mission status in words.
pub fn status_text(status: MissionStatus) -> &'static str {
    match status {
        MissionStatus::Running => "running (interrupted?)",
        MissionStatus::Completed => "completed",
        MissionStatus::AwaitingReview => "awaiting review",
        MissionStatus::BudgetExhausted => "budget exhausted: stopped before every task could run",
        MissionStatus::Paused => "paused: out of budget; resume with `conductor mission resume`",
        MissionStatus::AwaitingBudget => {
            "awaiting budget: a reviewer decides its budget gate (`conductor gates list`), and the mission continues"
        }
    }
}

pub fn print_human(s: &Summary) {
    println!("mission {} ({})", s.name, s.mission_id);
    println!("status  {}", status_text(s.status));
    println!(
        "budget  {} of {} settled, {} pending, {} available",
        s.budget.settled, s.budget.limit, s.budget.pending, s.budget.available
    );
    println!(
        "tasks   {} decided, {} awaiting review, {} failed, {} skipped",
        s.counts.decided, s.counts.awaiting_review, s.counts.failed, s.counts.skipped
    );
    println!();
    println!("{:>4}  {:<16} {:<16} {:<14} detail", "#", "case", "status", "outcome");
    for t in &s.tasks {
        let status = match t.status {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Decided => "decided",
            TaskStatus::AwaitingReview => "awaiting review",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
        };
        let detail = match t.status {
            TaskStatus::Failed | TaskStatus::Skipped => t.failure.clone().unwrap_or_default(),
            TaskStatus::AwaitingReview => format!("gate {}", t.gate.as_deref().unwrap_or("?")),
            _ => t.decided_by.clone().map(|d| format!("by {d}")).unwrap_or_default(),
        };
        println!(
            "{:>4}  {:<16} {:<16} {:<14} {}",
            t.index,
            truncate(&t.case_id, 16),
            status,
            truncate(t.outcome.as_deref().unwrap_or("-"), 14),
            truncate(&detail, 80)
        );
    }
    println!();
    println!("journal {} entries, head {}", s.journal.entries, s.journal.head);
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

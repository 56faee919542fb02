//! The run summary and the mission list, as text for a terminal.

use std::collections::BTreeMap;
use std::io;

use engine::state::{MissionStatus, TaskStatus};
use engine::summary::{Listed, Summary, reviewer_of, status_text};

use crate::stdout::outln;

/// A status as one word, as in `--json` (`completed_with_failures`).
fn status_word(status: MissionStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

pub fn print_list(missions: &[Listed]) -> io::Result<()> {
    if missions.is_empty() {
        return outln!("no missions yet");
    }
    outln!(
        "{:<36}  {:<20} {:<24} {:>21}  {:>7} {:>6} {:>6} {:>7} {:>7}",
        "mission",
        "name",
        "status",
        "spend (settled/limit)",
        "decided",
        "review",
        "failed",
        "skipped",
        "pending"
    )?;
    for m in missions {
        outln!(
            "{:<36}  {:<20} {:<24} {:>21}  {:>7} {:>6} {:>6} {:>7} {:>7}",
            m.mission_id,
            truncate(&m.name, 20),
            status_word(m.status),
            format!("{} / {}", m.settled, m.limit),
            m.counts.decided,
            m.counts.awaiting_review,
            m.counts.failed,
            m.counts.skipped,
            m.counts.unfinished
        )?;
    }
    Ok(())
}

pub fn print_human(s: &Summary) -> io::Result<()> {
    outln!("mission {} ({})", s.name, s.mission_id)?;
    outln!("status  {}", status_text(s.status))?;
    outln!(
        "budget  {} of {} settled, {} pending, {} available",
        s.budget.settled,
        s.budget.limit,
        s.budget.pending,
        s.budget.available
    )?;
    outln!(
        "tasks   {} decided, {} awaiting review, {} failed, {} skipped",
        s.counts.decided,
        s.counts.awaiting_review,
        s.counts.failed,
        s.counts.skipped
    )?;
    outln!()?;
    outln!("{:>4}  {:<16} {:<16} {:<14} detail", "#", "case", "status", "outcome")?;
    for t in &s.tasks {
        let status = match t.status {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Decided => "decided",
            TaskStatus::AwaitingReview => "awaiting review",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::AwaitingChildren => "delegated",
        };
        let detail = match t.status {
            TaskStatus::Failed | TaskStatus::Skipped => t.failure.clone().unwrap_or_default(),
            TaskStatus::AwaitingReview => format!("gate {}", t.gate.as_deref().unwrap_or("?")),
            TaskStatus::AwaitingChildren => format!("waits for delegation {}", t.delegation.as_deref().unwrap_or("?")),
            _ => t.decided_by.as_deref().map(|d| format!("by {}", decider(d, &s.names))).unwrap_or_default(),
        };
        outln!(
            "{:>4}  {:<16} {:<16} {:<14} {}",
            t.index,
            truncate(&t.case_id, 16),
            status,
            truncate(t.outcome.as_deref().unwrap_or("-"), 14),
            truncate(&detail, 80)
        )?;
    }
    outln!()?;
    outln!("journal {} entries, head {}", s.journal.entries, s.journal.head)?;
    Ok(())
}

/// `agent`, or `reviewer NAME (KEY ID)` for a registered name.
fn decider(decided_by: &str, names: &BTreeMap<String, String>) -> String {
    match reviewer_of(decided_by) {
        Some(id) => format!("reviewer {}", engine::keys::display(names, id)),
        None => decided_by.to_owned(),
    }
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

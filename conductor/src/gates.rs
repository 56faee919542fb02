//! Human gates: listing pending reviews and recording a reviewer's signed
//! decision, after which the case completes.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use crate::clock::now_us;
use crate::data::DataDir;
use crate::state::{self, GateRecord, GateStatus, TaskStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// Every gate, pending first.
pub fn list(data: &Path) -> Result<Vec<GateRecord>> {
    let ledger = crate::data::open_ledger_only(data)?;
    let read = ledger.read()?;
    let mut gates = state::gates(&read)?;
    gates.sort_by_key(|g| (g.status != GateStatus::Pending, g.requested_seq));
    Ok(gates)
}

/// Records `verdict` on `gate_id`, signed by the reviewer's own key, and
/// completes the task. Refuses a decided gate, an unknown one, and a key
/// that is not a reviewer's.
pub fn decide(data: &Path, gate_id: &str, key_path: &Path, verdict: Verdict, note: Option<&str>) -> Result<GateRecord> {
    let reviewer = crate::keys::load_reviewer_key(key_path, "gates are decided")?;
    let data = DataDir::open_existing(data)?;
    let conductor = data.conductor.clone();
    let reviewer_id = reviewer.public().key_id().to_string();
    // The journal would refuse the entry anyway; say why, and what to do.
    crate::keys::require_registered(&data, &reviewer.public(), key_path)?;
    data.ledger.write(|t| -> Result<GateRecord> {
        let Some(mut gate) = state::gate_in(t.redb(), gate_id)? else {
            bail!("no gate `{gate_id}` in {}; `conductor gates list` shows the pending ones", data.root.display());
        };
        if gate.status != GateStatus::Pending {
            bail!(
                "gate {gate_id} was already {} by reviewer {}; a gate is decided once",
                match gate.status { GateStatus::Approved => "approved", _ => "rejected" },
                gate.reviewer.as_deref().unwrap_or("?")
            );
        }
        let now = now_us();
        let verdict_name = match verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        };
        let (decided_seq, _) = t.append(
            &reviewer,
            "gate.decided",
            &json!({"mission": gate.mission, "task": gate.task, "case": gate.case_id,
                    "gate_id": gate.id, "gate": gate.gate, "verdict": verdict_name,
                    "note": note, "requested_seq": gate.requested_seq}),
            now,
        )?;
        gate.status = match verdict {
            Verdict::Approve => GateStatus::Approved,
            Verdict::Reject => GateStatus::Rejected,
        };
        gate.reviewer = Some(reviewer_id.clone());
        gate.note = note.map(str::to_owned);
        gate.decided_seq = Some(decided_seq);
        state::put_gate(t.redb(), &gate)?;
        if gate.parked {
            // The agent is waiting for this answer: its task runs again
            // (replayed to the await, then live) on `mission resume`.
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
            return Ok(gate);
        }
        // Approval adopts the agent's proposal; rejection overrides it.
        let outcome = match verdict {
            Verdict::Approve => gate.proposed_outcome.clone(),
            Verdict::Reject => "rejected".to_owned(),
        };
        let decided_by = format!("reviewer:{reviewer_id}");
        t.append(
            &conductor,
            "task.decided",
            &json!({"mission": gate.mission, "task": gate.task, "case": gate.case_id,
                    "outcome": outcome, "decided_by": decided_by, "gate_seq": decided_seq}),
            now,
        )?;
        if let Some(mut task) = state::task_in(t.redb(), &gate.mission, gate.task)? {
            task.status = TaskStatus::Decided;
            task.outcome = Some(outcome);
            if let (Verdict::Reject, Some(note)) = (verdict, note) {
                task.reason = Some(note.to_owned());
            }
            task.decided_by = Some(decided_by);
            state::put_task(t.redb(), &task)?;
        }
        // The mission completes when its last pending gate is decided.
        if let Some(mut mission) = state::mission_in(t.redb(), &gate.mission)? {
            if mission.status == state::MissionStatus::AwaitingReview {
                let tasks = state::tasks_in(t.redb(), &gate.mission)?;
                mission.status = state::settle_status(&tasks, false);
                if mission.status == state::MissionStatus::Completed {
                    t.append(&conductor, "mission.completed", &json!({"mission": mission.id}), now)?;
                }
                state::put_mission(t.redb(), &mission)?;
            }
        }
        Ok(gate)
    })
}

//! `conductor gates`: list, sweep and decide human review gates.

use std::path::Path;

use anyhow::Result;

use engine::{clock, data, gates, keys, state};

use crate::cli::{ApproveArgs, DataArg, DecideArgs, EngineArgs, GatesCommand};
use crate::commands::mission::resume;
use crate::exit;
use crate::stdout::{errln, outln};

pub(crate) fn command(command: GatesCommand) -> Result<u8> {
    match command {
        GatesCommand::List { data, json } => {
            // Deadlines first, so the list shows what is really pending.
            // Sweeping signs with the conductor key; a reviewer who cannot
            // read it still gets the list.
            match data::DataDir::open_existing(&data.data) {
                Ok(dir) => {
                    let swept = gates::sweep(&dir, clock::now_us())?;
                    drop(dir);
                    report_sweep(&swept, &data.data, true);
                }
                // No data directory at all: `list_gates` says so.
                Err(_) if data::db_path(&data.data).is_err() => {}
                Err(e) => errln!(
                    "note: gate deadlines were not applied ({e:#}); whoever holds the conductor key runs \
                     `conductor gates sweep`"
                ),
            }
            list_gates(&data.data, json)
        }
        GatesCommand::Sweep { data, no_resume, json, models } => {
            let swept = gates::sweep(&data::DataDir::open_existing(&data.data)?, clock::now_us())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&swept)?)?;
            }
            report_sweep(&swept, &data.data, no_resume || json);
            if !(no_resume || json) {
                for mission in &swept.to_resume {
                    if engine::run::runs_here(mission) {
                        // A server runs it (this command runs in that
                        // server): the answer reached its task there.
                        continue;
                    }
                    let engine =
                        EngineArgs { data: DataArg { data: data.data.clone() }, json: false, models: models.clone() };
                    resume(mission, engine)?;
                }
            }
            Ok(exit::OK)
        }
        GatesCommand::Approve(ApproveArgs { decide: args, edit, amount }) => {
            decide(args, gates::Verdict::Approve, edit.as_ref(), amount)
        }
        GatesCommand::Reject(args) => decide(args, gates::Verdict::Reject, None, None),
    }
}

/// One line per thing a sweep did, on stderr (stdout stays the command's).
fn report_sweep(swept: &gates::Swept, data: &Path, say_resume: bool) {
    for id in &swept.reminded {
        errln!("gate {id}: reminder sent (its deadline is near)");
    }
    for id in &swept.escalated {
        errln!("gate {id}: deadline passed; escalated to the next reviewers with a fresh deadline");
    }
    for id in &swept.timed_out {
        errln!("gate {id}: deadline passed; timed out");
    }
    if say_resume {
        for mission in &swept.to_resume {
            errln!(
                "a parked task of mission {mission} got its timed-out answer: `conductor mission resume {mission} --data {}`",
                data.display()
            );
        }
    }
}

fn list_gates(data: &Path, json: bool) -> Result<u8> {
    let gates = gates::list(data)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&gates)?)?;
        return Ok(exit::OK);
    }
    let names = keys::names(&*data::open_ledger_only(data)?)?;
    let who = |id: &str| keys::display(&names, id);
    let pending = gates.iter().filter(|g| g.status == state::GateStatus::Pending).count();
    outln!("{pending} pending gate(s), {} decided", gates.len() - pending)?;
    for g in &gates {
        let status = format!("{:?}", g.status).to_lowercase();
        outln!()?;
        outln!("gate {}  [{status}]  {}", g.id, g.gate)?;
        match &g.budget {
            Some(ask) => {
                outln!("  budget   mission {} ran out; asks to extend {} by {}", g.mission, ask.account, ask.amount)?;
                outln!(
                    "  decide   conductor gates approve {} --amount UNITS --key REVIEWER.KEY (default: {})",
                    g.id,
                    ask.amount
                )?;
            }
            None => {
                outln!("  case     {} (mission {}, task {})", g.case_id, g.mission, g.task)?;
                outln!("  proposed {}: {}", g.proposed_outcome, g.proposed_reason)?;
            }
        }
        if let Some(d) = &g.deadline
            && g.status == state::GateStatus::Pending
        {
            let left_s = (d.due_us - clock::now_us()) / 1_000_000;
            outln!("  deadline {} (in {left_s} s), then {}", missions::format_timestamp(d.due_us), d.on_timeout)?;
        }
        if !g.reviewers.is_empty() || g.quorum > 1 {
            let deciders = if g.reviewers.is_empty() {
                "any reviewer".to_owned()
            } else {
                g.reviewers.iter().map(|r| who(r)).collect::<Vec<_>>().join(", ")
            };
            outln!("  needs    {} approval(s), {} so far; decided by: {deciders}", g.quorum, g.votes.len())?;
        }
        if let Some(r) = &g.reviewer {
            outln!(
                "  decided by reviewer {}{}",
                who(r),
                g.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
            )?;
        }
    }
    Ok(exit::OK)
}

/// Approves or rejects a gate; only an approval carries `edits` or an
/// `amount` (`gates reject` has neither argument).
fn decide(
    args: DecideArgs,
    verdict: gates::Verdict,
    edits: Option<&serde_json::Map<String, serde_json::Value>>,
    amount: Option<u64>,
) -> Result<u8> {
    let decided =
        gates::decide(&args.data.data, &args.gate_id, &args.key, verdict, args.note.as_deref(), edits, amount)?;
    let resumable = gates::resumes_mission(&decided);
    // A parked task of a mission running here (this command runs in the
    // server for a local client) goes straight back to it, as when the
    // reviewer decides on the server's page.
    let running_here = gates::wake_running(&decided) || engine::run::runs_here(&decided.gate.mission);
    let gate = decided.gate;
    // The decision is recorded by now: a name that cannot be read is
    // left out rather than reported as a failure.
    let names = data::open_ledger_only(&args.data.data).and_then(|ledger| keys::names(&ledger)).unwrap_or_default();
    if !decided.closed {
        outln!(
            "gate {} approval recorded for reviewer {}; {} more approval(s) needed (quorum {})",
            gate.id,
            gate.votes.last().map_or_else(|| "?".to_owned(), |v| keys::display(&names, &v.reviewer)),
            decided.needed,
            gate.quorum
        )?;
        return Ok(exit::OK);
    }
    let resume_now = resumable && !args.no_resume && !running_here;
    let then = if let Some(ask) = gate.budget.as_ref().filter(|_| gate.status == state::GateStatus::Approved) {
        let granted = amount.unwrap_or(ask.amount);
        if resume_now {
            format!("budget {} extended by {granted}; continuing the mission", ask.account)
        } else {
            format!(
                "budget {} extended by {granted}; continue with `conductor mission resume {} --data {}`",
                ask.account,
                gate.mission,
                args.data.data.display()
            )
        }
    } else if gate.budget.is_some() {
        format!("mission {}'s budget stays exhausted", gate.mission)
    } else if resumable && running_here {
        format!("the agent of case {} was waiting for this answer; it carries on in the server", gate.case_id)
    } else if resume_now {
        format!("the agent of case {} was waiting for this answer; continuing its mission", gate.case_id)
    } else if gate.parked {
        format!(
            "the agent of case {} was waiting for this answer; continue it with \
             `conductor mission resume {} --data {}`",
            gate.case_id,
            gate.mission,
            args.data.data.display()
        )
    } else {
        format!("case {} is decided", gate.case_id)
    };
    let line = format!(
        "gate {} {} by reviewer {}; {then}",
        gate.id,
        match verdict {
            gates::Verdict::Approve => "approved",
            gates::Verdict::Reject => "rejected",
        },
        gate.reviewer.as_deref().map_or_else(|| "?".to_owned(), |r| keys::display(&names, r)),
    );
    // With --json, stdout is the resumed mission's summary alone.
    if resume_now && args.json {
        errln!("{line}");
    } else {
        outln!("{line}")?;
    }
    if resume_now {
        let engine = EngineArgs { data: args.data, json: args.json, models: args.models };
        return resume(&gate.mission, engine);
    }
    Ok(exit::OK)
}

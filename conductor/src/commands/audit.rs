//! `conductor audit`: the handlers of the auditor's commands, which
//! `crate::audit` carries out.

use anyhow::Result;

use engine::{provenance, replay, run};

use crate::cli::AuditCommand;
use crate::stdout::outln;
use crate::{audit, exit, stdout};

pub(crate) fn command(command: AuditCommand) -> Result<u8> {
    match command {
        AuditCommand::Verify { data, bundle, checkpoint, json } => {
            let held = audit::load_checkpoints(&checkpoint)?;
            let source = match (&data, &bundle) {
                (_, Some(file)) => audit::Source::Export(file),
                (Some(dir), None) => audit::Source::Data(dir),
                (None, None) => anyhow::bail!("say what to verify: --data DIR or --bundle FILE"),
            };
            let verdict = audit::verify(source, &held)?;
            audit::print_verdict(&verdict, json)?;
            Ok(verdict_code(&verdict))
        }
        AuditCommand::Export { data, out, json } => {
            let (summary, verdict) = audit::export(&data.data, &out)?;
            if !json {
                outln!("exported {} entries ({} bytes) to {}", summary.entries, summary.bytes, out.display())?;
            }
            audit::print_verdict(&verdict, json)?;
            Ok(verdict_code(&verdict))
        }
        AuditCommand::Replay { data, mission, task, modules, swap, module_cache, json } => {
            let request = replay::ReplayRequest {
                data: &data.data,
                mission: mission.as_deref(),
                task,
                module_dirs: &modules,
                swaps: &swap,
                module_cache: run::module_cache_dir(module_cache.as_deref()),
            };
            let replays = replay::audit_replay(&request)?;
            let diverged = replays.iter().filter(|r| r.verdict == "diverged").count();
            if json {
                outln!("{}", serde_json::to_string_pretty(&replays)?)?;
            } else {
                for r in &replays {
                    let mut line = format!(
                        "mission {} task {} ({}): {} host calls, {}",
                        r.mission, r.task, r.case, r.host_calls, r.verdict
                    );
                    if let Some(d) = &r.divergence {
                        line.push_str(&format!(
                            "
    {d}"
                        ));
                    }
                    if let Some(n) = &r.note {
                        line.push_str(&format!(
                            "
    note: {n}"
                        ));
                    }
                    outln!("{line}")?;
                }
                let matched = replays.iter().filter(|r| r.verdict == "match").count();
                let erased = replays.iter().filter(|r| r.verdict == "erased").count();
                outln!(
                    "{} task runs replayed from the journal: {matched} match, {diverged} diverged, {erased} touched \
                     erased subjects, {} unfinished; no model was called and nothing was written",
                    replays.len(),
                    replays.len() - matched - diverged - erased
                )?;
            }
            Ok(if diverged > 0 { exit::DIVERGED } else { exit::OK })
        }
        AuditCommand::Show { data, decision, json } => {
            let doc = provenance::show(&data.data, &decision)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                stdout::text(&provenance::render(&doc))?;
            }
            Ok(if doc["signatures"]["all_valid"] == true { exit::OK } else { exit::TAMPERED })
        }
        AuditCommand::Log { data, kind, mission, json } => {
            audit::log(&data.data, kind.as_deref(), mission.as_deref(), json)?;
            Ok(exit::OK)
        }
        AuditCommand::Checkpoint { data, out, latest } => {
            let checkpoint = audit::checkpoint(&data.data, &out, latest)?;
            outln!(
                "checkpoint at entry {} (head {}) written to {}\nkeep it where this host cannot \
                 change it; check a journal against it with `conductor audit verify --checkpoint {}`",
                checkpoint.seq(),
                checkpoint.hash(),
                out.display(),
                out.display()
            )?;
            Ok(exit::OK)
        }
    }
}

fn verdict_code(verdict: &audit::Verdict) -> u8 {
    match verdict {
        audit::Verdict::Intact(_) => exit::OK,
        audit::Verdict::Tampered { .. } => exit::TAMPERED,
    }
}

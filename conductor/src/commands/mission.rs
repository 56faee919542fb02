//! `conductor run` and `conductor mission`: validate, run, resume and
//! inspect missions, and print the mission file's JSON Schema.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use engine::{data, modules, report, run, state, summary};
use inference::Router;
use models::Registry;

use crate::cli::{EngineArgs, MissionCommand, RunArgs};
use crate::stdout::{errln, outln};
use crate::{exit, progress, render, stdout};

pub(crate) fn command(command: MissionCommand) -> Result<u8> {
    match command {
        MissionCommand::Validate { file } => validate(&file),
        MissionCommand::Schema => {
            outln!("{}", serde_json::to_string_pretty(&missions::mission_schema())?)?;
            Ok(exit::OK)
        }
        MissionCommand::Resume { mission_id, engine } => resume(&mission_id, engine),
        MissionCommand::Close { mission_id, data } => crate::commands::cases::close(&mission_id, &data.data),
        MissionCommand::List { data, json } => {
            let missions = summary::list(&*data::open_ledger_only(&data.data)?)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&missions)?)?;
            } else {
                render::summary::print_list(&missions)?;
            }
            Ok(exit::OK)
        }
        MissionCommand::Show { mission_id, data, json } => {
            let ledger = data::open_ledger_only(&data.data)?;
            let summary = summary::build(&ledger, &mission_id)?;
            print_summary(&summary, json)?;
            Ok(exit::OK)
        }
        MissionCommand::Report { mission_id, data, json, html } => {
            let doc = report::build(&data.data, &mission_id)?;
            if let Some(file) = html {
                let series = engine::series::Series::from_journal(&data.data, &mission_id)?;
                render::html_report::write(&file, &doc, &series.view(None))?;
                errln!("wrote the report with its charts to {}", file.display());
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                stdout::text(&report::render(&doc))?;
            }
            Ok(exit::OK)
        }
    }
}

fn validate(file: &Path) -> Result<u8> {
    Ok(match missions::load(file) {
        Ok(m) => {
            if let Err(e) = modules::check_mission(&m) {
                errln!("{}: {e:#}", file.display());
                return Ok(exit::INVALID);
            }
            outln!(
                "{}: ok: mission `{}`, {} agent(s), {} case(s), {} gate(s), budget {}",
                file.display(),
                m.name,
                m.agents.len(),
                m.tasks.cases.len(),
                m.gates.len(),
                m.budget.limit
            )?;
            exit::OK
        }
        Err(diagnostics) => {
            errln!("{diagnostics}");
            errln!("{} problem(s) found in {}", diagnostics.len(), file.display());
            exit::INVALID
        }
    })
}

pub(crate) fn run(args: RunArgs) -> Result<u8> {
    let mission = match missions::load(&args.mission) {
        Ok(m) => m,
        Err(diagnostics) => {
            errln!("{diagnostics}");
            errln!("{} problem(s) found; nothing was run", diagnostics.len());
            return Ok(exit::INVALID);
        }
    };
    // Untrusted modules are refused here, as invalid input (exit 2), before
    // anything is created; `run_mission` checks again on the bytes it
    // loads, so a file swapped in between is caught too.
    if let Err(e) = modules::check_mission(&mission) {
        errln!("{}: {e:#}", args.mission.display());
        errln!("nothing was run");
        return Ok(exit::INVALID);
    }
    let path = args.mission;
    let again = if args.new { run::Again::StartNew } else { run::Again::Refuse };
    execute(args.engine, move |router, mut cfg, progress| {
        cfg.again = again;
        Box::pin(async move { run::run_mission(&path, mission, router, &cfg, progress).await })
    })
}

pub(crate) fn resume(mission_id: &str, engine: EngineArgs) -> Result<u8> {
    let id = mission_id.to_owned();
    execute(engine, move |router, cfg, progress| {
        Box::pin(async move { run::resume_mission(&id, router, &cfg, progress).await })
    })
}

type RunFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<run::RunOutcome>>>>;

/// Loads the model registry, runs `work` on a fresh runtime and prints the
/// mission summary; shared by `run` and `mission resume`.
fn execute(
    args: EngineArgs,
    work: impl FnOnce(Arc<dyn models::Models>, run::RunConfig, Arc<dyn run::Observer>) -> RunFuture,
) -> Result<u8> {
    let registry = match &args.models.models {
        Some(path) => Registry::from_file(path, args.models.air_gap)?,
        None => Registry::embedded(&args.models.model_dir)?,
    };
    let router: Arc<dyn models::Models> = Arc::new(Router::new(registry));
    let progress: Arc<dyn run::Observer> = Arc::new(progress::Progress::new());
    let cfg = run::RunConfig {
        data: args.data.data.clone(),
        concurrency: usize::from(args.models.concurrency),
        module_cache: run::module_cache_dir(args.models.module_cache.as_deref()),
        open: None,
        again: run::Again::Refuse,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Each running cell holds a blocking thread: room for every one.
        .max_blocking_threads(engine::run::BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(work(router, cfg, progress))?;
    let ledger = data::open_ledger_only(&args.data.data);
    // The run's DataDir is dropped, so the database can be reopened here.
    let summary = summary::build(&*ledger?, &outcome.mission_id)?;
    print_summary(&summary, args.json)?;
    // mistral.rs keeps engine threads alive; don't wait for them.
    runtime.shutdown_background();
    Ok(match outcome.status {
        state::MissionStatus::BudgetExhausted | state::MissionStatus::Paused | state::MissionStatus::AwaitingBudget => {
            exit::BUDGET_EXHAUSTED
        }
        state::MissionStatus::CompletedWithFailures => exit::TASKS_FAILED,
        _ => exit::OK,
    })
}

fn print_summary(summary: &summary::Summary, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(summary)?)?;
    } else {
        render::summary::print_human(summary)?;
    }
    Ok(())
}

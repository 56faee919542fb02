//! `conductor`: run missions of AI agents in wasm cells on local models,
//! metered against a budget and signed into a hash-chained journal.
//!
//! The binary is glue: the mission schema lives in `missions`, keys in
//! `identity`, the journal and budget in `ledger`, facts in `memory`, the
//! sandbox in `cells`. This crate adds the CLI, the inference router
//! (mistral.rs), the scheduler and the gates.

mod clock;
mod data;
mod gates;
mod host;
mod inference;
mod progress;
mod registry;
mod run;
mod state;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::inference::Router;
use crate::registry::Registry;

/// Exit statuses, so scripts can tell outcomes apart.
mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// The input (mission file, arguments) is invalid; nothing ran.
    pub const INVALID: u8 = 2;
    /// The mission stopped because its budget ran out.
    pub const BUDGET_EXHAUSTED: u8 = 3;
    /// The journal failed verification.
    pub const TAMPERED: u8 = 4;
}

#[derive(Debug, Parser)]
#[command(
    name = "conductor",
    version,
    about = "Run missions of AI agents in isolated wasm cells on local models, within a token \
             budget, with every action signed into a tamper-evident journal.",
    long_about = None,
    after_help = "Typical session:\n  \
        conductor mission validate missions/examples/casework/mission.yaml\n  \
        conductor run missions/examples/casework/mission.yaml --data ./data\n  \
        conductor keys new --role reviewer --out reviewer.key\n  \
        conductor gates list --data ./data\n  \
        conductor gates approve GATE_ID --key reviewer.key --data ./data\n  \
        conductor audit verify --data ./data\n\n\
        Exit status: 0 success, 1 error, 2 invalid input, 3 budget exhausted, 4 journal tampered."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mission: every case in its own cell, metered and journaled.
    ///
    /// Cases that hit a gate wait for a reviewer (`conductor gates`). A
    /// call the budget cannot cover is refused; the mission then stops
    /// starting new tasks and ends with status "budget exhausted" (exit 3).
    Run(RunArgs),
    /// Check or inspect mission files and missions.
    #[command(subcommand)]
    Mission(MissionCommand),
    /// Verify the journal.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect budget accounts.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// List and decide human review gates.
    #[command(subcommand)]
    Gates(GatesCommand),
    /// Create keys for people (reviewers, operators, auditors).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
struct DataArg {
    /// Data directory: the journal database and private keys.
    #[arg(long, value_name = "DIR", env = "CONDUCTOR_DATA")]
    data: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The mission YAML file.
    mission: PathBuf,
    #[command(flatten)]
    data: DataArg,
    /// Print a JSON summary on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Cells running at once; concurrent model calls are batched.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Directory the embedded model registry resolves model files in.
    #[arg(long, value_name = "DIR", env = "CONDUCTOR_MODEL_DIR", default_value = ".cache/models")]
    model_dir: PathBuf,
    /// A model registry file to use instead of the embedded one.
    #[arg(long, value_name = "FILE", env = "CONDUCTOR_MODELS")]
    models: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum MissionCommand {
    /// Validate a mission file; every problem is reported as file:line:column.
    Validate {
        /// The mission YAML file.
        file: PathBuf,
    },
    /// Show a mission's status, budget and tasks.
    Show {
        /// The mission id printed by `conductor run`.
        mission_id: String,
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check every signature. Exits 0 when
    /// intact, 4 naming the first bad sequence number otherwise. Works on a
    /// copy of the data directory; needs no key and no server.
    Verify {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Every budget account (one per mission) with its limit, pending
    /// reservations, settled spend and what is still available.
    Show {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GatesCommand {
    /// List gates, pending first, with the agent's proposal.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve the agent's proposed decision, signed with your reviewer key.
    Approve(DecideArgs),
    /// Reject the agent's proposed decision, signed with your reviewer key.
    Reject(DecideArgs),
}

#[derive(Debug, Args)]
struct DecideArgs {
    /// The gate id from `conductor gates list`.
    gate_id: String,
    /// Your reviewer key file (from `conductor keys new --role reviewer`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataArg,
    /// A note recorded with the decision.
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HumanRole {
    Reviewer,
    Operator,
    Auditor,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new Ed25519 key file, readable only by you (mode 0600).
    New {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// What the key may do.
        #[arg(long, value_enum, default_value = "reviewer")]
        role: HumanRole,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // mistral.rs warns about GPU device mapping even on a
                // CPU-only host; its errors still show.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mistralrs_core=error")),
        )
        .init();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Mission(MissionCommand::Validate { file }) => Ok(validate(&file)),
        Command::Mission(MissionCommand::Show { mission_id, data, json }) => {
            let ledger = data::open_ledger_only(&data.data)?;
            let summary = summary::build(&ledger, &mission_id)?;
            print_summary(&summary, json)?;
            Ok(exit::OK)
        }
        Command::Audit(AuditCommand::Verify { data, json }) => verify(&data.data, json),
        Command::Ledger(LedgerCommand::Show { data, json }) => show_ledger(&data.data, json),
        Command::Gates(GatesCommand::List { data, json }) => list_gates(&data.data, json),
        Command::Gates(GatesCommand::Approve(args)) => decide(args, gates::Verdict::Approve),
        Command::Gates(GatesCommand::Reject(args)) => decide(args, gates::Verdict::Reject),
        Command::Keys(KeysCommand::New { out, role }) => {
            let role = match role {
                HumanRole::Reviewer => identity::Role::Reviewer,
                HumanRole::Operator => identity::Role::Operator,
                HumanRole::Auditor => identity::Role::Auditor,
            };
            let key = identity::Keypair::generate(role);
            key.save(&out)?;
            println!("created {role} key {}", out.display());
            println!("key id     {}", key.public().key_id());
            println!("public key {}", key.public().to_hex());
            Ok(exit::OK)
        }
    }
}

fn validate(file: &Path) -> u8 {
    match missions::load(file) {
        Ok(m) => {
            println!(
                "{}: ok: mission `{}`, {} agent(s), {} case(s), {} gate(s), budget {}",
                file.display(),
                m.name,
                m.agents.len(),
                m.tasks.cases.len(),
                m.gates.len(),
                m.budget.limit
            );
            exit::OK
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("{} problem(s) found in {}", diagnostics.len(), file.display());
            exit::INVALID
        }
    }
}

fn run(args: RunArgs) -> Result<u8> {
    let mission = match missions::load(&args.mission) {
        Ok(m) => m,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("{} problem(s) found; nothing was run", diagnostics.len());
            return Ok(exit::INVALID);
        }
    };
    let registry = match &args.models {
        Some(path) => Registry::from_file(path)?,
        None => Registry::embedded(&args.model_dir)?,
    };
    let router = Arc::new(Router::new(registry));
    let progress = Arc::new(progress::Progress::new());
    let cfg = run::RunConfig { data: args.data.data.clone(), concurrency: usize::from(args.concurrency) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(run::run_mission(&args.mission, mission, router, &cfg, progress))?;
    let ledger = data::open_ledger_only(&args.data.data);
    // The run's DataDir is dropped, so the database can be reopened here.
    let summary = summary::build(&ledger?, &outcome.mission_id)?;
    print_summary(&summary, args.json)?;
    // mistral.rs keeps engine threads alive; don't wait for them.
    runtime.shutdown_background();
    Ok(match outcome.status {
        state::MissionStatus::BudgetExhausted => exit::BUDGET_EXHAUSTED,
        _ => exit::OK,
    })
}

fn print_summary(summary: &summary::Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        summary::print_human(summary);
    }
    Ok(())
}

fn verify(data: &Path, json: bool) -> Result<u8> {
    let ledger = data::open_ledger_only(data)?;
    match ledger.verify() {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "entries": report.entries,
                                       "head": report.head.to_string(),
                                       "signers": report.signers.iter().map(|s| s.to_string()).collect::<Vec<_>>()})
                );
            } else {
                println!(
                    "journal intact: {} entries, {} signers, head {}",
                    report.entries,
                    report.signers.len(),
                    report.head
                );
            }
            Ok(exit::OK)
        }
        Err(ledger::VerifyError::Bad { seq, failure }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "seq": seq, "reason": failure.to_string()})
                );
            }
            eprintln!("journal verification FAILED at sequence {seq}: {failure}");
            Ok(exit::TAMPERED)
        }
        Err(e) => Err(e.into()),
    }
}

fn show_ledger(data: &Path, json: bool) -> Result<u8> {
    let ledger = data::open_ledger_only(data)?;
    let accounts = ledger.accounts()?;
    if json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|(name, a)| {
                serde_json::json!({"account": name, "limit": a.limit, "pending": a.pending,
                                   "settled": a.settled, "available": a.available()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(exit::OK);
    }
    println!("{:<38} {:>12} {:>12} {:>12} {:>12}", "account", "limit", "pending", "settled", "available");
    for (name, a) in &accounts {
        println!("{name:<38} {:>12} {:>12} {:>12} {:>12}", a.limit, a.pending, a.settled, a.available());
    }
    Ok(exit::OK)
}

fn list_gates(data: &Path, json: bool) -> Result<u8> {
    let gates = gates::list(data)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&gates)?);
        return Ok(exit::OK);
    }
    let pending = gates.iter().filter(|g| g.status == state::GateStatus::Pending).count();
    println!("{pending} pending gate(s), {} decided", gates.len() - pending);
    for g in &gates {
        let status = format!("{:?}", g.status).to_lowercase();
        println!();
        println!("gate {}  [{status}]  {}", g.id, g.gate);
        println!("  case     {} (mission {}, task {})", g.case_id, g.mission, g.task);
        println!("  proposed {}: {}", g.proposed_outcome, g.proposed_reason);
        if let Some(r) = &g.reviewer {
            println!("  decided by reviewer {r}{}", g.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default());
        }
    }
    Ok(exit::OK)
}

fn decide(args: DecideArgs, verdict: gates::Verdict) -> Result<u8> {
    let gate = gates::decide(&args.data.data, &args.gate_id, &args.key, verdict, args.note.as_deref())?;
    println!(
        "gate {} {} by reviewer {}; case {} is decided",
        gate.id,
        match verdict {
            gates::Verdict::Approve => "approved",
            gates::Verdict::Reject => "rejected",
        },
        gate.reviewer.as_deref().unwrap_or("?"),
        gate.case_id
    );
    Ok(exit::OK)
}

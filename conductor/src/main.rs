//! `conductor`: run missions of AI agents in wasm cells on local models,
//! metered against a budget and signed into a hash-chained journal.
//!
//! The binary is glue: the mission schema lives in `missions`, keys in
//! `identity`, the journal and budget in `ledger`, facts in `memory`, the
//! sandbox in `cells`. This crate adds the CLI, the inference router
//! (mistral.rs), the scheduler and the gates.

mod audit;
mod progress;
mod render;
mod serve_cli;
mod stdout;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use engine::{budget, clock, data, facts, gates, keys, modules, provenance, replay, report, run, state, summary};
use inference::Router;
use models::Registry;

use crate::stdout::outln;

// Budget postings, journal entries and host calls are many small
// allocations made on one thread and freed on another; mimalloc handles
// that pattern far better than glibc's allocator (see BENCHMARKS.md, #4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// A replayed task did not do what the journal says it did.
    pub const DIVERGED: u8 = 5;
    /// The mission ran to its end, but some of its tasks failed.
    pub const TASKS_FAILED: u8 = 6;
    /// The host could not do the work: a model file missing or not the
    /// pinned one (found before anything ran), or the journal's storage
    /// failed (a full disk) and the mission stopped with nothing unjournaled
    /// given or charged. Fix the cause and run the same command again.
    pub const INFRASTRUCTURE: u8 = 7;

    /// Every status with its meaning, for `--help`: the one list, so the
    /// help cannot leave a status out.
    const MEANINGS: [(u8, &str); 8] = [
        (OK, "success"),
        (ERROR, "error (the message says what went wrong)"),
        (INVALID, "invalid input (a mission file, the arguments): nothing ran"),
        (BUDGET_EXHAUSTED, "out of budget: the mission is budget exhausted, paused or awaiting budget"),
        (TAMPERED, "the journal (or a module's signature) failed verification"),
        (DIVERGED, "a replayed task diverged from what the journal says it did"),
        (TASKS_FAILED, "the mission ran to its end but some tasks failed (status completed_with_failures)"),
        (
            INFRASTRUCTURE,
            "infrastructure: a model file is missing or not the pinned one, or the journal's storage \
             failed (a full disk); nothing unjournaled was given or charged; fix it and run the same \
             command again, which carries on from the journal",
        ),
    ];

    /// The "Exit status" paragraph of `--help`.
    pub fn help() -> String {
        let mut text = String::from("Exit status:");
        for (code, meaning) in MEANINGS {
            text.push_str(&format!("\n  {code}  {meaning}"));
        }
        text
    }
}

/// The top-level `--help`'s example; [`parse_cli`] adds the exit statuses.
const TYPICAL_SESSION: &str = "Typical session:\n  \
    conductor mission validate missions/examples/casework/mission.yaml\n  \
    conductor run missions/examples/casework/mission.yaml --data ./data\n  \
    conductor mission list --data ./data\n  \
    conductor keys new --role reviewer --out reviewer.key --passphrase\n  \
    conductor keys register --data ./data reviewer.key --name \"A. Reviewer\"\n  \
    conductor gates list --data ./data\n  \
    conductor gates approve GATE_ID --key reviewer.key --data ./data\n  \
    conductor audit verify --data ./data\n  \
    conductor audit export --data ./data --out journal.cjx\n  \
    conductor audit verify --bundle journal.cjx --checkpoint held.ckpt";

#[derive(Debug, Parser)]
#[command(
    name = "conductor",
    version,
    about = "Run missions of AI agents in isolated wasm cells on local models, within a token \
             budget, with every action signed into a tamper-evident journal.",
    long_about = None,
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
    /// Verify, export and checkpoint the journal.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect budget accounts.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// List and decide human review gates.
    #[command(subcommand)]
    Gates(GatesCommand),
    /// Create people's keys; register, rotate and revoke keys in a journal.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign and verify agent modules (for missions that require signed
    /// modules: `trust.modules_signed_by`).
    #[command(subcommand)]
    Modules(ModulesCommand),
    /// Read the bitemporal memory; erase a data subject.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Serve the reviewer page and the metered OpenAI-compatible gateway
    /// (and run missions in the same process).
    ///
    /// Reviewers open the page, unlock their own key file in the browser
    /// (it never leaves it), sign in by signing a challenge, and approve,
    /// reject or edit pending gates; each decision is a journal entry
    /// signed in the browser with the reviewer's key. New gates appear
    /// without reloading. Operators may sign in to see the queue and
    /// auditors the decided gates; only reviewers decide, and only their
    /// own gates. An operator submits a mission with `POST /api/missions`
    /// (`{"yaml": "...", "new": false}`); the files it names must be inside
    /// `DATA/missions/`. `GET /health` answers 503 once storage has failed,
    /// and the server then exits 1 so that a supervisor restarts it.
    ///
    /// `POST /v1/chat/completions` serves programs outside the cells, with
    /// keys from `conductor gateway issue`, metered and journaled.
    ///
    /// This process holds the data directory while it runs, so missions
    /// run here too: `--run FILE` starts one once the server is up, and a
    /// parked agent's mission resumes here when its gate is decided.
    #[command(after_help = "Examples:\n  conductor serve --data ./data\n  \
        conductor serve --data ./data --bind 127.0.0.1:8080 --run missions/examples/casework/mission.yaml\n\n\
        The server speaks plain HTTP and binds to loopback by default. To serve other hosts, put a \
        TLS-terminating proxy in front and pass --allow-remote.")]
    Serve(serve_cli::ServeArgs),
    /// Keys for the metered OpenAI-compatible gateway (`conductor serve`
    /// answers `POST /v1/chat/completions`).
    #[command(subcommand)]
    Gateway(serve_cli::GatewayCommand),
}

#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// What memory holds about a subject (or which facts mention some
    /// words), as of any valid time and any transaction time. Read-only.
    ///
    /// Without --as-of-valid every valid time is listed (the subject's
    /// history); without --as-of-tx, as currently known. Both together:
    /// "what did we believe at TX about the world at VALID". Times are
    /// RFC 3339 (2026-03-01T00:00:00Z) or Unix microseconds.
    #[command(after_help = "Examples:\n  conductor memory query --data data --subject policy:triage\n  \
        conductor memory query --data data --subject policy:triage --as-of-valid 2026-03-01T00:00:00Z \\\n      \
        --as-of-tx 2026-02-01T00:00:00Z\n  conductor memory query --data data --words \"late payment\" --space precedent")]
    Query {
        #[command(flatten)]
        data: DataArg,
        /// The subject, e.g. `policy:triage` or `claimant:4411`.
        #[arg(long, required_unless_present = "words")]
        subject: Option<String>,
        /// Only this predicate (with --subject).
        #[arg(long, requires = "subject")]
        predicate: Option<String>,
        /// Find facts whose values contain these words, best match first.
        #[arg(long, conflicts_with = "subject")]
        words: Option<String>,
        /// Only these spaces (`mission:<id>` or a shared space's name);
        /// repeat for several. Default: every space.
        #[arg(long = "space", value_name = "SPACE")]
        spaces: Vec<String>,
        /// The valid time asked about (when it held in the world).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        as_of_valid: Option<i64>,
        /// The transaction time asked about (what was known then).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        as_of_tx: Option<i64>,
        /// At most this many facts.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=64))]
        limit: u16,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Erase a data subject (crypto-shredding): its values become
    /// unreadable everywhere (memory, journal, exports, backups) while the
    /// journal still verifies. Signed with your operator key and journaled
    /// as `memory.erased`. Cannot be undone.
    Erase {
        #[command(flatten)]
        data: DataArg,
        /// The data subject, e.g. `claimant:4411`.
        #[arg(long)]
        subject: String,
        /// Your operator key file (registered in this data directory).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Why, recorded in the journal (e.g. the request's reference).
        #[arg(long, default_value = "data-subject request")]
        reason: String,
    },
}

/// `--edit`: a JSON object.
fn parse_edits(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("give a JSON object, e.g. '{\"outcome\": \"eligible\"}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// RFC 3339 or Unix microseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<i64>().or_else(|_| missions::parse_timestamp(text))
}

#[derive(Debug, Subcommand)]
enum ModulesCommand {
    /// Sign a module with an operator key: writes MODULE.sig beside it.
    Sign {
        /// The agent module (.wasm).
        module: PathBuf,
        /// An operator key file (`conductor keys new --role operator`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Check a module's signature (MODULE.sig); exit 0 if it verifies (and,
    /// with --trusted, is by one of those keys), 4 if not.
    Verify {
        /// The agent module (.wasm).
        module: PathBuf,
        /// A trusted signer's public key (64 hex characters); repeatable.
        #[arg(long, value_name = "HEX")]
        trusted: Vec<String>,
    },
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
    /// Start a separate mission even though this file already ran in this
    /// data directory (a fresh budget; cases already decided are decided
    /// again). Without it, `run` reports the earlier mission and exits 2.
    #[arg(long)]
    new: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// What running tasks needs: where data and models are, how many at once.
#[derive(Debug, Args)]
struct EngineArgs {
    #[command(flatten)]
    data: DataArg,
    /// Print a JSON summary on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

/// Where models and compiled modules are, and how many cells run at once.
#[derive(Debug, Clone, Args)]
struct ModelArgs {
    /// Cells running at once (1 to 1,024). Their calls to one model run as
    /// one batch when the prompts have the same token length, otherwise in
    /// turn (see ARCHITECTURE.md, "Batching in cohorts").
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Directory the embedded model registry resolves model files in.
    #[arg(long, value_name = "DIR", env = "CONDUCTOR_MODEL_DIR", default_value = ".cache/models")]
    model_dir: PathBuf,
    /// A model registry file to use instead of the embedded one.
    #[arg(long, value_name = "FILE", env = "CONDUCTOR_MODELS")]
    models: Option<PathBuf>,
    /// Where compiled agent modules are kept between runs (created 0700),
    /// so a large agent compiles once; `off` compiles every time.
    /// Default: $XDG_CACHE_HOME/conductor/modules, else
    /// ~/.cache/conductor/modules.
    #[arg(long, value_name = "DIR|off", env = "CONDUCTOR_MODULE_CACHE")]
    module_cache: Option<PathBuf>,
    /// Air-gap mode: a registry naming any frontier (off-host) model is
    /// refused, so nothing can be configured to leave this host.
    #[arg(long, env = "CONDUCTOR_AIR_GAP")]
    air_gap: bool,
}

#[derive(Debug, Subcommand)]
enum MissionCommand {
    /// Validate a mission file; every problem is reported as file:line:column.
    Validate {
        /// The mission YAML file.
        file: PathBuf,
    },
    /// Continue a mission that ran out of budget (policy `pause`, or
    /// `gate` after a reviewer extended it): runs every task not yet
    /// started, and tasks cut short by the budget, from the start.
    Resume {
        /// The mission id printed by `conductor run`.
        mission_id: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// The missions in a data directory, oldest first: id, name, status,
    /// spend (settled of limit) and how many tasks are decided, awaiting
    /// review, failed, skipped and pending. Read-only.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// How the mission's work flowed, from the journal alone: cycle time
    /// (the mission's, and each task's median and worst), the exception
    /// rate (tasks sent to a gate), and per gate the requests, verdicts,
    /// timeouts and reviewers' time to decision (median, worst).
    Report {
        /// The mission id printed by `conductor run`.
        mission_id: String,
        #[command(flatten)]
        data: DataArg,
        /// Print JSON (times in microseconds).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the journal: sequence, hash chain, every signature (strict,
    /// batch-verified on every core), and that each signer was registered,
    /// not revoked, and of the role its entry needs. Exits 0 when intact, 4
    /// naming the first bad sequence number otherwise. Needs no key; works
    /// on a copy of the data directory or on an export.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["data", "bundle"])))]
    Verify {
        /// Data directory to verify.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// An export (`conductor audit export`) to verify with no database.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// A checkpoint file you kept (`conductor audit checkpoint`); the
        /// journal must contain it, so a cut or rewritten tail is caught.
        /// Repeatable.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the whole journal to one self-contained file (entries, and so
    /// every key event and public key needed to check them), then verify
    /// the file. A damaged journal is still exported, as evidence, and the
    /// command exits 4 naming the first bad entry.
    Export {
        #[command(flatten)]
        data: DataArg,
        /// The export file to create; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-run finished tasks with every host call answered from the
    /// journal: no model is loaded, no budget is touched, nothing is
    /// written (the database is opened read-only). Every host call the
    /// agent makes, and its decision or failure, must match the journal
    /// byte for byte. Exits 0 when all match, 5 on the first difference in
    /// a task (say which call and what differed). Needs the agents'
    /// modules: found by content hash at the mission file's paths or under
    /// --modules.
    Replay {
        #[command(flatten)]
        data: DataArg,
        /// Only this mission.
        #[arg(long, value_name = "ID")]
        mission: Option<String>,
        /// Only this task (its index, as `mission show` lists it).
        #[arg(long, value_name = "N")]
        task: Option<u32>,
        /// A directory to search (four levels deep) for modules by hash.
        /// Repeatable.
        #[arg(long, value_name = "DIR")]
        modules: Vec<PathBuf>,
        /// Replay agent AGENT with FILE instead of the module it ran with,
        /// to see where a new version would act differently (it diverges
        /// at the first call or outcome that differs). Repeatable.
        #[arg(long, value_name = "AGENT=FILE", value_parser = parse_swap)]
        swap: Vec<(String, PathBuf)>,
        /// Where compiled modules are cached (`off`: none).
        #[arg(long, value_name = "DIR|off", env = "CONDUCTOR_MODULE_CACHE")]
        module_cache: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The provenance of one decision, from the journal alone: the case
    /// input, agent and module hash, model and model file hash, every
    /// prompt and completion, every memory recall (what it returned, valid
    /// when, known when), review requests and gate decisions with who
    /// signed them, the task's budget postings, and whether every
    /// signature verifies. Exits 4 if the journal does not verify.
    Show {
        #[command(flatten)]
        data: DataArg,
        /// The decision: MISSION_ID/TASK_INDEX, MISSION_ID/CASE_ID, a gate
        /// id (`gates list`), or the number of any of the task's entries.
        decision: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List journal entries (read-only): sequence, time, kind, signer and
    /// payload, oldest first.
    Log {
        #[command(flatten)]
        data: DataArg,
        /// Only entries whose kind starts with this (e.g. `task.`, `host.infer`).
        #[arg(long, value_name = "PREFIX")]
        kind: Option<String>,
        /// Only entries whose payload names this mission.
        #[arg(long, value_name = "ID")]
        mission: Option<String>,
        /// Print JSON lines (one entry per line).
        #[arg(long)]
        json: bool,
    },
    /// Cut a signed checkpoint of the chain head now (the conductor also
    /// cuts one every 1024 entries) and write it to a file to keep
    /// somewhere the journal's host cannot reach.
    Checkpoint {
        #[command(flatten)]
        data: DataArg,
        /// The checkpoint file to create; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write the latest existing checkpoint instead of cutting a new one
        /// (needs no conductor key).
        #[arg(long)]
        latest: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// The budget account tree (mission, then each agent) with limit,
    /// pending reservations, settled spend and what is still available.
    Show {
        #[command(flatten)]
        data: DataArg,
        /// Also list every task's account.
        #[arg(long)]
        tasks: bool,
        /// Print JSON (every account, tasks included).
        #[arg(long)]
        json: bool,
    },
    /// Raise a mission's budget, signed with your reviewer key. For a
    /// mission waiting for budget (policy `gate`); then resume it with
    /// `conductor mission resume`.
    Extend {
        /// The mission id (or any budget account with its own limit).
        account: String,
        /// Budget units to add to the limit.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=ledger::AMOUNT_MAX))]
        amount: u64,
        /// Your reviewer key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        data: DataArg,
        /// Why, recorded in the journal.
        #[arg(long, default_value = "budget extension")]
        reason: String,
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
    /// Apply gates' deadlines now: send due reminders, escalate or time out
    /// overdue gates (signed by the conductor; "timed out" is its own
    /// outcome). `gates list` does this first too; run it from cron or a
    /// timer for deadlines to act while nobody looks. Resumes missions
    /// whose parked task's gate timed out, unless --no-resume.
    Sweep {
        #[command(flatten)]
        data: DataArg,
        /// Only record; resume later with `conductor mission resume`.
        #[arg(long)]
        no_resume: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Approve the agent's proposed decision, signed with your reviewer key.
    Approve(ApproveArgs),
    /// Reject the agent's proposed decision, signed with your reviewer key.
    Reject(DecideArgs),
}

/// `gates approve`: a decision, with what only an approval may carry.
#[derive(Debug, Args)]
struct ApproveArgs {
    #[command(flatten)]
    decide: DecideArgs,
    /// Approve with edits to the agent's proposal, as a JSON object of
    /// the fields to change: `{"outcome": "...", "reason": "...",
    /// "details": {...}}`. Recorded in the journal as a signed diff
    /// (from, to); the case is decided as edited.
    #[arg(long, value_name = "JSON", value_parser = parse_edits)]
    edit: Option<serde_json::Map<String, serde_json::Value>>,
    /// For a budget gate (`gate budget` in `gates list`): the budget units
    /// to grant, if not what the gate asks for. Journaled as your signed
    /// `budget.extended` posting.
    #[arg(long, value_name = "UNITS", conflicts_with = "edit")]
    amount: Option<u64>,
}

/// What approving and rejecting a gate share. A rejection carries no
/// edits and no amount: it overrides the proposal, and a rejected budget
/// gate grants nothing.
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
    /// Only record the decision. By default, deciding a gate an agent is
    /// waiting on (`await-review`), or granting a budget extension,
    /// continues the mission at once (a parked task is replayed to its
    /// await and finishes live).
    #[arg(long)]
    no_resume: bool,
    /// Print the resumed mission's summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HumanRole {
    Reviewer,
    Operator,
    Auditor,
}

impl From<HumanRole> for identity::Role {
    fn from(role: HumanRole) -> Self {
        match role {
            HumanRole::Reviewer => identity::Role::Reviewer,
            HumanRole::Operator => identity::Role::Operator,
            HumanRole::Auditor => identity::Role::Auditor,
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new Ed25519 key file, readable only by you (mode 0600).
    /// Then have an operator register it in the journal (`keys register`).
    New {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// What the key may do.
        #[arg(long, value_enum, default_value = "reviewer")]
        role: HumanRole,
        /// Seal the secret under a passphrase (Argon2id + XChaCha20-Poly1305).
        /// Asked on the terminal, or read from CONDUCTOR_KEY_PASSPHRASE.
        #[arg(long)]
        passphrase: bool,
    },
    /// Register a person's key in the journal so its signatures count.
    /// Only the public part is read; a sealed key needs no passphrase.
    Register {
        #[command(flatten)]
        data: DataArg,
        /// A key file, or a public key (64 hex digits).
        key: String,
        /// The key's role; read from the key file when one is given.
        #[arg(long, value_enum)]
        role: Option<HumanRole>,
        /// Whose key it is, recorded with the registration and shown
        /// wherever the key is (`keys list`, `mission show`, `gates list`).
        #[arg(long)]
        name: Option<String>,
        /// Create the data directory if it does not exist yet: a new
        /// deployment registers its people (an operator for the gateway,
        /// reviewers) before its first mission. Without it, a --data DIR
        /// that does not exist is an error, so a mistyped path cannot start
        /// a second, empty journal.
        #[arg(long)]
        init: bool,
    },
    /// Revoke a key: nothing it signs after this verifies.
    Revoke {
        #[command(flatten)]
        data: DataArg,
        /// A key file, public key, or key id from `keys list`.
        key: String,
        /// Why, recorded in the journal.
        #[arg(long)]
        reason: String,
    },
    /// Replace a registered key by a new one with the same role.
    Rotate {
        #[command(flatten)]
        data: DataArg,
        /// The key to retire: a key file, public key, or key id.
        old: String,
        /// Its successor: a key file or public key.
        new: String,
        /// Why, recorded in the journal.
        #[arg(long, default_value = "scheduled rotation")]
        reason: String,
    },
    /// Give the data directory a new conductor key; the old one signs the
    /// hand-over and is kept as keys/conductor-<id>.key.retired.
    RotateConductor {
        #[command(flatten)]
        data: DataArg,
        /// Why, recorded in the journal.
        #[arg(long, default_value = "scheduled rotation")]
        reason: String,
    },
    /// Every key the journal knows, with its role and status.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Threads in rayon's global pool beyond one per core. candle's CPU
/// kernels run there, about 200 short parallel matmuls per token, and
/// with one thread per core a core sits idle while a thread wakes: one
/// more made a request 6% and the sample mission 11% faster here
/// (BENCHMARKS.md, "Inference"). `RAYON_NUM_THREADS` still wins.
const RAYON_EXTRA_THREADS: usize = 1;

/// Parses the command line, with the exit statuses in the `--help` of
/// the commands that end in them (added here, from [`exit::help`], so the
/// list is written once).
fn parse_cli() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let statuses = exit::help();
    let command = Cli::command()
        .after_help(format!("{TYPICAL_SESSION}\n\n{statuses}"))
        .mut_subcommand("run", |c| c.after_help(statuses.clone()))
        .mut_subcommand("mission", |c| c.mut_subcommand("resume", |c| c.after_help(statuses.clone())))
        .mut_subcommand("audit", |c| {
            c.mut_subcommand("verify", |c| c.after_help(statuses.clone()))
                .mut_subcommand("replay", |c| c.after_help(statuses.clone()))
        });
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // Fails only if the pool already exists; then it stays as it is.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(cores + RAYON_EXTRA_THREADS).build_global();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            ExitCode::from(error_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve_cli::serve(args),
        Command::Gateway(command) => serve_cli::gateway_command(command),
        Command::Mission(MissionCommand::Validate { file }) => validate(&file),
        Command::Mission(MissionCommand::Resume { mission_id, engine }) => resume(&mission_id, engine),
        Command::Mission(MissionCommand::List { data, json }) => {
            let missions = summary::list(&data::open_ledger_only(&data.data)?)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&missions)?)?;
            } else {
                render::summary::print_list(&missions)?;
            }
            Ok(exit::OK)
        }
        Command::Mission(MissionCommand::Show { mission_id, data, json }) => {
            let ledger = data::open_ledger_only(&data.data)?;
            let summary = summary::build(&ledger, &mission_id)?;
            print_summary(&summary, json)?;
            Ok(exit::OK)
        }
        Command::Mission(MissionCommand::Report { mission_id, data, json }) => {
            let doc = report::build(&data.data, &mission_id)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                stdout::text(&report::render(&doc))?;
            }
            Ok(exit::OK)
        }
        Command::Audit(command) => audit_command(command),
        Command::Ledger(LedgerCommand::Show { data, tasks, json }) => show_ledger(&data.data, tasks, json),
        Command::Ledger(LedgerCommand::Extend { account, amount, key, data, reason }) => {
            let raised = budget::extend(&data.data, &account, amount, &key, &reason)?;
            outln!(
                "budget `{account}` extended by {amount} to {}; resume the mission with \
                 `conductor mission resume {account} --data {}`",
                raised.limit.unwrap_or_default(),
                data.data.display()
            )?;
            Ok(exit::OK)
        }
        Command::Gates(GatesCommand::List { data, json }) => {
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
                Err(e) => eprintln!(
                    "note: gate deadlines were not applied ({e:#}); whoever holds the conductor key runs \
                     `conductor gates sweep`"
                ),
            }
            list_gates(&data.data, json)
        }
        Command::Gates(GatesCommand::Sweep { data, no_resume, json, models }) => {
            let swept = gates::sweep(&data::DataDir::open_existing(&data.data)?, clock::now_us())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&swept)?)?;
            }
            report_sweep(&swept, &data.data, no_resume || json);
            if !(no_resume || json) {
                for mission in &swept.to_resume {
                    let engine =
                        EngineArgs { data: DataArg { data: data.data.clone() }, json: false, models: models.clone() };
                    resume(mission, engine)?;
                }
            }
            Ok(exit::OK)
        }
        Command::Gates(GatesCommand::Approve(ApproveArgs { decide: args, edit, amount })) => {
            decide(args, gates::Verdict::Approve, edit.as_ref(), amount)
        }
        Command::Gates(GatesCommand::Reject(args)) => decide(args, gates::Verdict::Reject, None, None),
        Command::Keys(command) => keys_command(command),
        Command::Memory(MemoryCommand::Query {
            data,
            subject,
            predicate,
            words,
            spaces,
            as_of_valid,
            as_of_tx,
            limit,
            json,
        }) => {
            let args = facts::QueryArgs {
                subject,
                predicate,
                words,
                spaces,
                valid_at: as_of_valid,
                known_at: as_of_tx,
                limit: usize::from(limit),
            };
            let found = facts::query(&data.data, &args)?;
            print_facts(&found.recalled, json)?;
            if !json && found.subject_known == Some(false) {
                eprintln!(
                    "memory holds nothing about subject `{}` in any space; check the id",
                    args.subject.as_deref().unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        Command::Memory(MemoryCommand::Erase { data, subject, key, reason }) => {
            let erasure = facts::erase(&data.data, &subject, &key, &reason)?;
            outln!(
                "subject `{subject}` erased: {} fact versions can no longer be read, here or in any copy of the \
                 journal; the erasure is journaled as memory.erased",
                erasure.versions
            )?;
            Ok(exit::OK)
        }
        Command::Modules(ModulesCommand::Sign { module, key }) => {
            let key = keys::load_human_key(&key)?;
            let path = modules::sign(&module, &key)?;
            outln!("{}: signed by {} ({})", module.display(), key.public().to_hex(), path.display())?;
            Ok(exit::OK)
        }
        Command::Modules(ModulesCommand::Verify { module, trusted }) => match modules::verify(&module) {
            Ok(signer) if trusted.is_empty() || trusted.iter().any(|t| t.eq_ignore_ascii_case(&signer.to_hex())) => {
                outln!("{}: signature ok, signed by {}", module.display(), signer.to_hex())?;
                Ok(exit::OK)
            }
            Ok(signer) => {
                eprintln!("{}: signed by {}, which is not among the trusted keys", module.display(), signer.to_hex());
                Ok(exit::TAMPERED)
            }
            Err(e) => {
                eprintln!("{e:#}");
                Ok(exit::TAMPERED)
            }
        },
    }
}

fn audit_command(command: AuditCommand) -> Result<u8> {
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

fn parse_swap(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((agent, file)) if !agent.is_empty() && !file.is_empty() => Ok((agent.to_owned(), PathBuf::from(file))),
        _ => Err(format!("`{text}` is not AGENT=FILE (e.g. eligibility=agent/eligibility-v2.wasm)")),
    }
}

fn verdict_code(verdict: &audit::Verdict) -> u8 {
    match verdict {
        audit::Verdict::Intact(_) => exit::OK,
        audit::Verdict::Tampered { .. } => exit::TAMPERED,
    }
}

fn keys_command(command: KeysCommand) -> Result<u8> {
    match command {
        KeysCommand::New { out, role, passphrase } => {
            let role = identity::Role::from(role);
            let key = keys::create(&out, role, passphrase)?;
            outln!("created {role} key {}{}", out.display(), if passphrase { " (passphrase-sealed)" } else { "" })?;
            outln!("key id     {}", key.public().key_id())?;
            outln!("public key {}", key.public().to_hex())?;
            outln!(
                "register it: conductor keys register --data DIR {} (with --init if DIR is a new data directory)",
                out.display()
            )?;
        }
        KeysCommand::Register { data, key, role, name, init } => {
            let (public, role) = keys::register(&keys::Registration {
                data_dir: &data.data,
                spec: &key,
                role: role.map(Into::into),
                name: name.as_deref(),
                init,
            })?;
            let whose = name.map(|n| format!(" for {n}")).unwrap_or_default();
            outln!("registered {role} key {}{whose} ({})", public.key_id(), public.to_hex())?;
        }
        KeysCommand::Revoke { data, key, reason } => {
            let public = keys::revoke(&data.data, &key, &reason)?;
            outln!("revoked key {}; nothing it signs from now on verifies", public.key_id())?;
        }
        KeysCommand::Rotate { data, old, new, reason } => {
            let (old, new) = keys::rotate(&data.data, &old, &new, &reason)?;
            outln!("rotated key {} -> {}", old.key_id(), new.key_id())?;
        }
        KeysCommand::RotateConductor { data, reason } => {
            let (old, new) = keys::rotate_conductor(&data.data, &reason)?;
            outln!("conductor key rotated {} -> {}", old.key_id(), new.key_id())?;
        }
        KeysCommand::List { data, json } => {
            let keys = keys::list(&data.data)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&keys)?)?;
            } else {
                outln!("{:<10} {:<33} {:>11}  {:<17} name", "role", "key id", "registered", "status")?;
                for k in &keys {
                    let status = match k.record.revoked_seq {
                        Some(seq) => format!("revoked at {seq}"),
                        None => "in force".into(),
                    };
                    outln!(
                        "{:<10} {:<33} {:>11}  {status:<17} {}",
                        k.record.role.as_str(),
                        k.key_id,
                        k.record.registered_seq,
                        k.name.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
    }
    Ok(exit::OK)
}

fn validate(file: &Path) -> Result<u8> {
    Ok(match missions::load(file) {
        Ok(m) => {
            if let Err(e) = modules::check_mission(&m) {
                eprintln!("{}: {e:#}", file.display());
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
            eprintln!("{diagnostics}");
            eprintln!("{} problem(s) found in {}", diagnostics.len(), file.display());
            exit::INVALID
        }
    })
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
    // Untrusted modules are refused here, as invalid input (exit 2), before
    // anything is created; `run_mission` checks again on the bytes it
    // loads, so a file swapped in between is caught too.
    if let Err(e) = modules::check_mission(&mission) {
        eprintln!("{}: {e:#}", args.mission.display());
        eprintln!("nothing was run");
        return Ok(exit::INVALID);
    }
    let path = args.mission;
    let again = if args.new { run::Again::StartNew } else { run::Again::Refuse };
    execute(args.engine, move |router, mut cfg, progress| {
        cfg.again = again;
        Box::pin(async move { run::run_mission(&path, mission, router, &cfg, progress).await })
    })
}

/// The exit status of a command that failed with `error`: the typed
/// errors that mean "invalid input" or "the host cannot do this" have
/// their own, so scripts can tell them from other failures.
fn error_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<run::InfrastructureError>().is_some() {
        exit::INFRASTRUCTURE
    } else if error.downcast_ref::<run::RunError>().is_some() {
        exit::INVALID
    } else {
        exit::ERROR
    }
}

fn resume(mission_id: &str, engine: EngineArgs) -> Result<u8> {
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
    let summary = summary::build(&ledger?, &outcome.mission_id)?;
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

fn show_ledger(data: &Path, tasks: bool, json: bool) -> Result<u8> {
    let ledger = data::open_ledger_only(data)?;
    // Read once: availability walks each account's path to the root.
    let accounts: std::collections::BTreeMap<String, ledger::Account> = ledger.accounts()?.into_iter().collect();
    if json {
        let rows = accounts
            .iter()
            .map(|(name, a)| {
                Ok(serde_json::json!({"account": name, "parent": a.parent, "limit": a.limit,
                                      "pending": a.pending, "settled": a.settled,
                                      "available": ledger::available_in(&accounts, name)?}))
            })
            .collect::<Result<Vec<_>>>()?;
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(exit::OK);
    }
    outln!("{:<52} {:>12} {:>12} {:>12} {:>12}", "account", "limit", "pending", "settled", "available")?;
    let mut hidden = 0usize;
    for (name, a) in &accounts {
        let depth = name.matches('/').count();
        if depth >= 2 && !tasks {
            hidden += 1;
            continue;
        }
        // Children sort after their parent (names are paths); indent them.
        let label = format!("{}{}", "  ".repeat(depth), name.rsplit('/').next().unwrap_or(name));
        let limit = a.limit.map_or_else(|| "-".to_owned(), |l| l.to_string());
        outln!(
            "{label:<52} {limit:>12} {:>12} {:>12} {:>12}",
            a.pending,
            a.settled,
            ledger::available_in(&accounts, name)?
        )?;
    }
    if hidden > 0 {
        outln!("({hidden} task accounts not shown; --tasks lists them)")?;
    }
    Ok(exit::OK)
}

/// One line per thing a sweep did, on stderr (stdout stays the command's).
fn report_sweep(swept: &gates::Swept, data: &Path, say_resume: bool) {
    for id in &swept.reminded {
        eprintln!("gate {id}: reminder sent (its deadline is near)");
    }
    for id in &swept.escalated {
        eprintln!("gate {id}: deadline passed; escalated to the next reviewers with a fresh deadline");
    }
    for id in &swept.timed_out {
        eprintln!("gate {id}: deadline passed; timed out");
    }
    if say_resume {
        for mission in &swept.to_resume {
            eprintln!(
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
    let names = keys::names(&data::open_ledger_only(data)?)?;
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
    let resume_now = resumable && !args.no_resume;
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
        eprintln!("{line}");
    } else {
        outln!("{line}")?;
    }
    if resume_now {
        let engine = EngineArgs { data: args.data, json: args.json, models: args.models };
        return resume(&gate.mission, engine);
    }
    Ok(exit::OK)
}

/// `memory query` output: one line per fact version, or JSON.
fn print_facts(found: &memory::Recalled, json: bool) -> Result<()> {
    let value = |f: &memory::Fact| f.value.plain().map_or(serde_json::Value::Null, |v| serde_json::json!(v));
    if json {
        let facts: Vec<serde_json::Value> = found
            .facts
            .iter()
            .enumerate()
            .map(|(i, f)| {
                serde_json::json!({"id": f.id.0, "space": f.space, "subject": f.subject, "predicate": f.predicate,
                                   "value": value(f), "erased": f.value.plain().is_none(), "source": f.source,
                                   "valid_from": f.valid_from, "valid_to": f.valid_to,
                                   "recorded_at": f.recorded_at, "superseded_at": f.superseded_at,
                                   "score": found.scores.get(i)})
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"facts": facts, "truncated": found.truncated}))?
        )?;
        return Ok(());
    }
    if found.facts.is_empty() {
        outln!("no facts")?;
    }
    let time = |t: Option<i64>| t.map_or_else(|| "…".to_owned(), missions::format_timestamp);
    for f in &found.facts {
        outln!(
            "#{} [{}] {} {} = {}  valid [{}, {})  known [{}, {}){}",
            f.id.0,
            f.space,
            f.subject,
            f.predicate,
            f.value.plain().map_or_else(|| "<erased>".to_owned(), |v| format!("{v:?}")),
            time(Some(f.valid_from)),
            time(f.valid_to),
            time(Some(f.recorded_at)),
            time(f.superseded_at),
            f.source.as_deref().map_or_else(String::new, |s| format!("  source {s}")),
        )?;
    }
    if found.truncated {
        outln!("(more facts match; narrow the query or raise --limit)")?;
    }
    Ok(())
}

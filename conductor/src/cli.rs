//! The command line: every command and argument as clap reads them, their
//! value parsers, and what `--help` adds to clap's text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{exit, serve_cli};

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Check that the registry's models can run on this host (on its CPU,
    /// or its GPU for `device: cuda` entries).
    #[command(subcommand)]
    Models(crate::commands::models::ModelsCommand),
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
    /// Cases for open missions (missions with `intake:`).
    #[command(subcommand)]
    Cases(crate::commands::cases::CasesCommand),
    /// API tokens for scripts: issue, list and revoke (`Authorization:
    /// Bearer TOKEN` on `conductor serve`'s API).
    #[command(subcommand)]
    Tokens(crate::commands::tokens::TokensCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCommand {
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
pub(crate) enum ModulesCommand {
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
pub(crate) struct DataArg {
    /// Data directory: the journal database and private keys.
    #[arg(long, value_name = "DIR", env = "CONDUCTOR_DATA")]
    pub(crate) data: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The mission YAML file.
    pub(crate) mission: PathBuf,
    /// Start a separate mission even though this file already ran in this
    /// data directory (a fresh budget; cases already decided are decided
    /// again). Without it, `run` reports the earlier mission and exits 2.
    #[arg(long)]
    pub(crate) new: bool,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

/// What running tasks needs: where data and models are, how many at once.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    #[command(flatten)]
    pub(crate) data: DataArg,
    /// Print a JSON summary on stdout (progress still goes to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) models: ModelArgs,
}

/// Where models and compiled modules are, and how many cells run at once.
#[derive(Debug, Clone, Args)]
pub(crate) struct ModelArgs {
    /// Cells running at once (1 to 1,024). Their calls to one model run as
    /// one batch when the prompts have the same token length, otherwise in
    /// turn (see ARCHITECTURE.md, "Batching in cohorts").
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// Directory the embedded model registry resolves model files in.
    #[arg(long, value_name = "DIR", env = "CONDUCTOR_MODEL_DIR", default_value = ".cache/models")]
    pub(crate) model_dir: PathBuf,
    /// A model registry file to use instead of the embedded one.
    #[arg(long, value_name = "FILE", env = "CONDUCTOR_MODELS")]
    pub(crate) models: Option<PathBuf>,
    /// Where compiled agent modules are kept between runs (created 0700),
    /// so a large agent compiles once; `off` compiles every time.
    /// Default: $XDG_CACHE_HOME/conductor/modules, else
    /// ~/.cache/conductor/modules.
    #[arg(long, value_name = "DIR|off", env = "CONDUCTOR_MODULE_CACHE")]
    pub(crate) module_cache: Option<PathBuf>,
    /// Air-gap mode: a registry naming any frontier (off-host) model is
    /// refused, so nothing can be configured to leave this host.
    #[arg(long, env = "CONDUCTOR_AIR_GAP")]
    pub(crate) air_gap: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MissionCommand {
    /// Validate a mission file; every problem is reported as file:line:column.
    Validate {
        /// The mission YAML file.
        file: PathBuf,
    },
    /// Print the JSON Schema (draft 2020-12) of mission files to stdout.
    ///
    /// Editors using the YAML language server (VS Code's YAML extension,
    /// Neovim, Helix, ...) then check and complete a mission file as it is
    /// written: save the schema next to your missions and make the mission
    /// file's first line `# yaml-language-server: $schema=PATH`, with PATH
    /// relative to the mission file. The schema checks the file's shape
    /// (keys, types, nesting); `conductor mission validate` checks the rest.
    #[command(after_help = "Examples:\n  conductor mission schema > mission.schema.json\n  \
        # and as the first line of mission.yaml:\n  \
        # yaml-language-server: $schema=mission.schema.json\n\n\
        The repository keeps a copy at missions/schema/mission.schema.json, which the example missions name.")]
    Schema,
    /// Continue a mission that ran out of budget (policy `pause`, or
    /// `gate` after a reviewer extended it): runs every task not yet
    /// started, and tasks cut short by the budget, from the start.
    Resume {
        /// The mission id printed by `conductor run`.
        mission_id: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Close an open mission to new cases: it finishes the cases it has
    /// (those queued included), then ends like any mission. Journaled as
    /// `mission.control`. While `conductor serve` runs the mission, the
    /// server closes it at once.
    #[command(after_help = "Example:\n  conductor mission close MISSION_ID --data ./data")]
    Close {
        /// The mission id (`conductor mission list`).
        mission_id: String,
        #[command(flatten)]
        data: DataArg,
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
    /// timeouts and reviewers' time to decision (median, worst). With
    /// `--html FILE`, also the dashboard's charts (spend against the
    /// budget over time, gate latency, the latest failures) in one
    /// self-contained HTML file that loads nothing from anywhere.
    #[command(after_help = "Examples:\n  conductor mission report MISSION_ID --data ./data\n  \
        conductor mission report MISSION_ID --data ./data --html report.html")]
    Report {
        /// The mission id printed by `conductor run`.
        mission_id: String,
        #[command(flatten)]
        data: DataArg,
        /// Print JSON (times in microseconds).
        #[arg(long)]
        json: bool,
        /// Also write the report with its charts to FILE, as one
        /// self-contained HTML page (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
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
pub(crate) enum LedgerCommand {
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
pub(crate) enum GatesCommand {
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
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    pub(crate) decide: DecideArgs,
    /// Approve with edits to the agent's proposal, as a JSON object of
    /// the fields to change: `{"outcome": "...", "reason": "...",
    /// "details": {...}}`. Recorded in the journal as a signed diff
    /// (from, to); the case is decided as edited.
    #[arg(long, value_name = "JSON", value_parser = parse_edits)]
    pub(crate) edit: Option<serde_json::Map<String, serde_json::Value>>,
    /// For a budget gate (`gate budget` in `gates list`): the budget units
    /// to grant, if not what the gate asks for. Journaled as your signed
    /// `budget.extended` posting.
    #[arg(long, value_name = "UNITS", conflicts_with = "edit")]
    pub(crate) amount: Option<u64>,
}

/// What approving and rejecting a gate share. A rejection carries no
/// edits and no amount: it overrides the proposal, and a rejected budget
/// gate grants nothing.
#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// The gate id from `conductor gates list`.
    pub(crate) gate_id: String,
    /// Your reviewer key file (from `conductor keys new --role reviewer`).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArg,
    /// A note recorded with the decision.
    #[arg(long)]
    pub(crate) note: Option<String>,
    /// Only record the decision. By default, deciding a gate an agent is
    /// waiting on (`await-review`), or granting a budget extension,
    /// continues the mission at once (a parked task is replayed to its
    /// await and finishes live).
    #[arg(long)]
    pub(crate) no_resume: bool,
    /// Print the resumed mission's summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) models: ModelArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum HumanRole {
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
pub(crate) enum KeysCommand {
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
        #[arg(value_hint = clap::ValueHint::FilePath)]
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
        #[arg(value_hint = clap::ValueHint::FilePath)]
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
        #[arg(value_hint = clap::ValueHint::FilePath)]
        old: String,
        /// Its successor: a key file or public key.
        #[arg(value_hint = clap::ValueHint::FilePath)]
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

fn parse_swap(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((agent, file)) if !agent.is_empty() && !file.is_empty() => Ok((agent.to_owned(), PathBuf::from(file))),
        _ => Err(format!("`{text}` is not AGENT=FILE (e.g. eligibility=agent/eligibility-v2.wasm)")),
    }
}

/// Parses the command line, with the exit statuses in the `--help` of
/// the commands that end in them (added here, from [`exit::help`], so the
/// list is written once).
pub(crate) fn parse_cli() -> (Cli, clap::ArgMatches) {
    use clap::FromArgMatches as _;
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

/// The whole command line as clap reads it, with the exit statuses in
/// `--help`.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let statuses = exit::help();
    Cli::command()
        .after_help(format!("{TYPICAL_SESSION}\n\n{statuses}"))
        .mut_subcommand("run", |c| c.after_help(statuses.clone()))
        .mut_subcommand("mission", |c| c.mut_subcommand("resume", |c| c.after_help(statuses.clone())))
        .mut_subcommand("audit", |c| {
            c.mut_subcommand("verify", |c| c.after_help(statuses.clone()))
                .mut_subcommand("replay", |c| c.after_help(statuses.clone()))
        })
}

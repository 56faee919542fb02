//! Running a mission: declare it in the journal, run each case in its own
//! cell (bounded concurrency), route proposals through the gates, and
//! finish with a status derived from the tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cells::{AgentModule, CellEngine, CellEnv, CellHost, CellLimits};
use identity::{Keypair, Role};
use ledger::{Kind, LedgerError};
use missions::{Agent, Mission, OnExhausted};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::budget::{BeforeTask, Exhaustion};
use crate::clock::now_us;
use crate::data::DataDir;
use crate::entries;
use crate::host::{MissionCtx, TaskHost, TaskMeter};
use models::Models;

use crate::replay::{Attempt, RecoveringHost, ReplayHost};
use crate::state::{self, GateRecord, GateStatus, MissionRecord, MissionStatus, TaskRecord, TaskStatus};

/// What a running mission tells whoever watches it (the command line's
/// progress bar, the server's log): called from the mission's tasks, so
/// implementations must be cheap and must not block.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// The mission starts (or resumes) `total` tasks under `limit`.
    fn started(&self, name: &str, id: &str, total: u32, limit: u64);
    /// A task ended; `spent` is the mission's spend so far.
    fn task_finished(&self, task: &TaskRecord, spent: u64);
    /// Every task has ended.
    fn finished(&self);
}

/// The most cells a run keeps alive at once (`--concurrency`). The cell
/// engine's pool is sized for the run's concurrency (see `cell_engine`),
/// so every permitted cell has its slots reserved up front.
pub const CONCURRENCY_MAX: usize = 1024;
/// Blocking threads a runtime that runs missions needs: one per running
/// cell (cells run on blocking threads) and a margin for the other blocking
/// work (hash checks, teardown). tokio's default of 512 would cap
/// `--concurrency 1024` at about 500 running cells.
pub const BLOCKING_THREADS: usize = CONCURRENCY_MAX + 64;
/// How long the end of a run waits for finished cells to be torn down
/// (microseconds each; the queue holds at most a few hundred).
const TEARDOWN_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub data: PathBuf,
    pub concurrency: usize,
    /// Where compiled modules are cached; `None`: no cache.
    pub module_cache: Option<PathBuf>,
    /// The data directory already open in this process (`conductor
    /// serve`, which holds the database for as long as it runs); `None`:
    /// open `data` for the run.
    pub open: Option<DataDir>,
    /// What to do when this data directory already holds a finished run
    /// of the same mission file.
    pub again: Again,
}

/// Whether `run` may start a mission whose file already ran to its end
/// in the same data directory. Running it again starts a separate
/// mission with a fresh budget and re-gates cases already decided, which
/// an operator must ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// Report the earlier mission and run nothing.
    Refuse,
    /// Start a new mission (`conductor run --new`).
    StartNew,
}

impl RunConfig {
    fn existing(&self) -> Result<DataDir> {
        match &self.open {
            Some(data) => Ok(data.clone()),
            None => DataDir::open_existing(&self.data),
        }
    }

    fn existing_or_new(&self) -> Result<DataDir> {
        match &self.open {
            Some(data) => Ok(data.clone()),
            None => DataDir::open_or_create(&self.data),
        }
    }
}

/// The module cache directory: `requested` (`off` for none), else the
/// user's cache directory. A relative path is taken from the working
/// directory (wasmtime's cache refuses anything but an absolute one).
pub fn module_cache_dir(requested: Option<&Path>) -> Option<PathBuf> {
    match requested {
        Some(p) if p == Path::new("off") => None,
        // `absolute` fails only on an empty path or an unreadable working
        // directory; wasmtime then names the path in its own error.
        Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.to_owned())),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("conductor/modules")),
    }
}

/// The run's cell engine, its pool holding at least `--concurrency` live
/// cells (never fewer than the engine's default).
fn cell_engine(cfg: &RunConfig) -> Result<CellEngine> {
    let defaults = cells::EngineSettings::default();
    let concurrency = u32::try_from(cfg.concurrency.clamp(1, CONCURRENCY_MAX)).unwrap_or(u32::MAX);
    let settings = cells::EngineSettings {
        live_cells: defaults.live_cells.max(concurrency),
        module_cache: cfg.module_cache.clone(),
        ..defaults
    };
    Ok(CellEngine::with_settings(&settings)?)
}

/// The outcome of `conductor run`.
#[derive(Debug)]
pub struct RunOutcome {
    pub mission_id: String,
    pub status: MissionStatus,
}

struct AgentRuntime {
    spec: Agent,
    module: AgentModule,
    key: Arc<Keypair>,
    scope: Arc<crate::facts::Scope>,
}

pub async fn run_mission(
    mission_path: &Path,
    mission: Mission,
    router: Arc<dyn Models>,
    cfg: &RunConfig,
    progress: Arc<dyn Observer>,
) -> Result<RunOutcome> {
    // Every agent's model must be registered before anything is journaled.
    for agent in &mission.agents {
        for model in &agent.models {
            router.registry().get(model).with_context(|| format!("agent `{}`", agent.name))?;
        }
    }
    for rule in &mission.routing.failover {
        let frontier = router.registry().get(&rule.to).ok().filter(|spec| spec.frontier.is_some());
        if frontier.is_none() {
            bail!(
                "the mission fails cases over to `{}`, which the model registry does not name as a frontier \
                 model (`endpoint`); an air-gapped host (--air-gap) has none",
                rule.to
            );
        }
    }
    if mission.intake.is_some() && cfg.open.is_none() {
        return Err(RunError::OpenMission { name: mission.name.clone() }.into());
    }
    let mission_bytes = crate::files::read_regular(mission_path, "mission file", missions::MISSION_FILE_BYTES_MAX)?;
    // A model that cannot be used is the host's fault, not any task's:
    // found before anything is written, so the same command runs cleanly
    // once the file is fixed.
    check_models(&mission, &*router).await?;
    // The same mission file on the same data, and the last run of it
    // stopped without finishing (killed, power lost): carry that run on
    // rather than start the work again. Checked first, so recovery loads
    // the engine and modules once (in `resume_mission`), not twice.
    if crate::data::db_path(&cfg.data).is_ok() || cfg.open.is_some() {
        let data = cfg.existing()?;
        match earlier_run(&data, &mission_bytes)? {
            Some(earlier) if earlier.status == MissionStatus::Running => {
                drop(data);
                eprintln!("mission {} from this file did not finish (the process stopped); recovering it", earlier.id);
                return resume_mission(&earlier.id, router, cfg, progress).await;
            }
            Some(earlier) if cfg.again == Again::Refuse => {
                return Err(RunError::AlreadyRan {
                    mission: earlier.id,
                    status: crate::summary::status_text(earlier.status),
                    data: cfg.data.clone(),
                }
                .into());
            }
            _ => {}
        }
    }
    let engine = Arc::new(cell_engine(cfg)?);
    // Modules are loaded, and their trust checked on the very bytes that
    // will run, before anything is created.
    let mut modules = Vec::new();
    for spec in &mission.agents {
        let module = engine.load_file(&spec.module)?;
        crate::modules::check_agent(&mission, spec, &blake3::Hash::from(module.hash().0))?;
        modules.push(module);
    }
    let data = cfg.existing_or_new()?;
    let mission_id = uuid::Uuid::new_v4().to_string();
    let _claim = Claim::take(&mission_id)?;

    let mut agents = Vec::new();
    for (spec, module) in mission.agents.iter().zip(modules) {
        let key_path = data.agent_key_path(&mission_id, &spec.name);
        let key = Keypair::generate(Role::Agent);
        key.save(&key_path)?;
        let scope = Arc::new(crate::facts::Scope::of(&mission_id, &spec.memory));
        agents.push(AgentRuntime { spec: spec.clone(), module, key: Arc::new(key), scope });
    }
    let agents = Arc::new(agents);

    // Declare the mission, its budget, its agents' keys, its seed memory
    // and every task, in one commit: either the mission exists whole or not.
    let conductor = data.conductor.clone();
    let tasks_total = u32::try_from(mission.tasks.cases.len()).context("too many cases")?;
    let declared = data.ledger.write(|t| -> Result<()> {
        let now = now_us();
        let models: BTreeMap<String, entries::DeclaredModel> = mission
            .models
            .iter()
            .map(|(name, price)| {
                let sha256 = router.registry().get(name).map(|s| s.sha256.clone()).ok();
                let model = entries::DeclaredModel {
                    prompt_price: price.prompt_price,
                    completion_price: price.completion_price,
                    sha256,
                };
                (name.clone(), model)
            })
            .collect();
        let declaration = entries::MissionDeclared {
            mission: mission_id.clone(),
            name: mission.name.clone(),
            // Absolute, so `mission resume` finds it from any directory.
            file: std::fs::canonicalize(mission_path).unwrap_or_else(|_| mission_path.to_owned()).display().to_string(),
            file_blake3: blake3::hash(&mission_bytes).to_hex().to_string(),
            budget: entries::DeclaredBudget {
                limit: mission.budget.limit,
                on_exhausted: policy_name(mission.budget.on_exhausted).to_owned(),
                reservation_ttl_ms: mission.budget.reservation_ttl_ms,
            },
            models,
            agents: agents.iter().map(declared_agent).collect(),
            memory_limits: entries::DeclaredMemoryLimits {
                facts: mission.memory_limits.facts,
                bytes: mission.memory_limits.bytes,
            },
            gates: mission.gates.iter().map(declared_gate).collect(),
            tasks: tasks_total,
            intake: mission.intake.as_ref().map(declared_intake),
        };
        let (declared_seq, _) = entries::append(t, &conductor, &declaration, now)?;
        if let Some(intake) = &declaration.intake {
            let ids: Vec<String> = mission.tasks.cases.iter().map(|c| c.id.clone()).collect();
            crate::intake::declare(t.redb(), &mission_id, intake, &ids)?;
        }
        t.open_account(&conductor, &mission_id, None, Some(mission.budget.limit), now)?;
        for a in agents.iter() {
            t.open_account(
                &conductor,
                &agent_account(&mission_id, &a.spec.name),
                Some(&mission_id),
                a.spec.budget.limit,
                now,
            )?;
        }
        for a in agents.iter() {
            t.register_key(
                &conductor,
                &a.key.public(),
                Role::Agent,
                json!({"mission": mission_id, "agent": a.spec.name}),
                now,
            )?;
        }
        let limits = crate::facts::limits(&mission.memory_limits);
        for fact in &mission.memory {
            let space = crate::facts::resolve(&mission_id, &fact.space);
            let at = crate::facts::tx_time(t.redb())?;
            let change = memory::Writer::new(t.redb(), at)?
                .with_limits(limits)
                .assert(memory::NewFact {
                    space: space.clone(),
                    subject: fact.subject.clone(),
                    predicate: fact.predicate.clone(),
                    value: fact.value.clone(),
                    source: fact.source.clone(),
                    valid_from: fact.valid_from,
                    valid_to: fact.valid_to,
                })
                .with_context(|| format!("seed fact `{}` `{}`", fact.subject, fact.predicate))?;
            // The value is journaled sealed under its subject's key.
            let sealed = memory::seal(t.redb(), &fact.subject, &fact.value)?;
            let asserted = entries::MemoryAsserted {
                mission: mission_id.clone(),
                space,
                subject: fact.subject.clone(),
                predicate: fact.predicate.clone(),
                value: sealed,
                source: fact.source.clone(),
                valid_from: fact.valid_from,
                valid_to: fact.valid_to,
                fact: change.id.map(|id| id.0),
                superseded: change.superseded.iter().map(|id| id.0).collect(),
                remainders: change.remainders.iter().map(|id| id.0).collect(),
            };
            entries::append(t, &conductor, &asserted, now)?;
        }
        state::put_mission(
            t.redb(),
            &MissionRecord {
                id: mission_id.clone(),
                name: mission.name.clone(),
                status: MissionStatus::Running,
                budget_limit: mission.budget.limit,
                tasks_total,
                declared_seq,
            },
        )?;
        for (index, case) in (0u32..).zip(&mission.tasks.cases) {
            state::put_task(t.redb(), &new_task(&mission_id, index, &case.id, &case.agent))?;
        }
        Ok(())
    });
    declared.map_err(|e| stopped_by_storage(e, &cfg.data))?;
    progress.started(&mission.name, &mission_id, tasks_total, mission.budget.limit);
    let pending: Vec<u32> = (0..tasks_total).collect();
    execute(&data, mission_id, Arc::new(mission), agents, engine, router, cfg, progress, pending, Arc::default()).await
}

/// The latest mission declared from these exact file bytes, preferring
/// one whose status is still "running": no process runs it (this one
/// holds the database's lock), so the one that did stopped without
/// finishing.
fn earlier_run(data: &DataDir, mission_bytes: &[u8]) -> Result<Option<MissionRecord>> {
    let hash = blake3::hash(mission_bytes).to_hex().to_string();
    let read = data.ledger.read()?;
    let mut latest: Option<MissionRecord> = None;
    for record in state::missions(&read)? {
        let Some(entry) = data.ledger.entries(record.declared_seq, 1)?.pop() else { continue };
        // A declaration this version cannot read is not one of this file's
        // runs: the file's hash cannot be compared, so it is passed over.
        let Ok(declared) = entries::decode::<entries::MissionDeclared>(&entry) else { continue };
        if declared.file_blake3 != hash {
            continue;
        }
        if record.status == MissionStatus::Running {
            return Ok(Some(record));
        }
        if latest.as_ref().is_none_or(|l| l.declared_seq < record.declared_seq) {
            latest = Some(record);
        }
    }
    Ok(latest)
}

/// Why `run` refused to start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The same mission file already ran here.
    #[error(
        "mission {mission} from this file already ran in {} ({status}); nothing was run. \
         `conductor mission show {mission} --data {}` shows it; pass --new to start a separate \
         mission with a fresh budget (cases already decided are then decided again)",
        data.display(), data.display()
    )]
    AlreadyRan { mission: String, status: &'static str, data: PathBuf },
    /// An open mission runs only in a process that stays up for its cases.
    #[error(
        "mission `{name}` declares `intake`: it stays open and takes cases as they arrive, so it runs under \
         `conductor serve --run FILE`, not as a one-off run; nothing was run. Add cases with `conductor cases add` \
         and close it with `conductor mission close` once no more will come"
    )]
    OpenMission { name: String },
    /// The mission already runs in this process: a server runs it, and a
    /// command run in the server for a local client asked to run it too.
    #[error(
        "mission {mission} is already running in this process (the server that holds the data directory runs \
         it); it carries on there, so nothing was started"
    )]
    RunningHere { mission: String },
}

/// The missions run or resumed in this process now. One run of a mission
/// at a time: two would run its tasks twice. Across processes the
/// database lock keeps that; within a server, which also runs its local
/// clients' commands (`conductor/src/local.rs`), this does.
static RUNNING: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn running() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    // Whole after every insert and remove.
    RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a run or resume of `mission` is under way in this process.
pub fn runs_here(mission: &str) -> bool {
    running().contains(mission)
}

/// This process's run of one mission, for as long as it is held.
struct Claim(String);

impl Claim {
    fn take(mission: &str) -> Result<Claim, RunError> {
        if running().insert(mission.to_owned()) {
            Ok(Claim(mission.to_owned()))
        } else {
            Err(RunError::RunningHere { mission: mission.to_owned() })
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        running().remove(&self.0);
    }
}

/// A fault of this host rather than of any task: the same command runs
/// cleanly once it is fixed.
#[derive(Debug, thiserror::Error)]
pub enum InfrastructureError {
    /// The data directory's storage failed (a full disk, an I/O error)
    /// mid-mission. What the journal holds stands; nothing it lacks was
    /// given to an agent or charged; no task was marked failed for it.
    #[error(
        "the journal in {} could not be written ({failure}), so the mission stopped. Nothing the journal \
         lacks was given to an agent or charged, and tasks it does not show as ended are unfinished. \
         Free space (or fix the disk) and run the same command again: it carries the mission on from its journal",
        data.display()
    )]
    Storage { failure: String, data: PathBuf },
    #[error(
        "agent `{agent}` cannot use model `{model}`, so nothing was run or charged; fix it and run the same command again"
    )]
    Model {
        agent: String,
        model: String,
        #[source]
        source: models::InferenceError,
    },
}

/// `error`, as [`InfrastructureError::Storage`] when the data directory's
/// storage has failed (this error, or an earlier one it follows from).
fn stopped_by_storage(error: anyhow::Error, data: &Path) -> anyhow::Error {
    if crate::health::note(&error)
        && let Some(failure) = crate::health::failure()
    {
        return InfrastructureError::Storage { failure, data: data.to_owned() }.into();
    }
    error
}

/// A task that stopped because the journal could not record one of its
/// host calls: its result was not recorded, and nothing more was written.
#[derive(Debug, thiserror::Error)]
#[error("task {task} ({case}) stopped unrecorded: {failure}")]
struct TaskStopped {
    task: u32,
    case: String,
    failure: String,
}

/// Makes every model the agents may call ready ([`Models::prepare`]): a
/// local model's file is there with the pinned hash, and it is loaded on
/// its device (a GPU the host cannot use is refused here, typed).
/// Frontier models are called, never loaded; scripted ones have no file.
async fn check_models(mission: &Mission, router: &dyn Models) -> Result<(), InfrastructureError> {
    let mut checked = std::collections::BTreeSet::new();
    for agent in &mission.agents {
        for model in &agent.models {
            // An unregistered model is the mission's error, reported where
            // the agent calls it.
            if router.registry().get(model).is_err() || !checked.insert(model.clone()) {
                continue;
            }
            router.prepare(model).await.map_err(|source| InfrastructureError::Model {
                agent: agent.name.clone(),
                model: model.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Continues a mission that paused, waits for budget, or was interrupted:
/// re-reads its file and modules (both must still hash to what the journal
/// declared), expires reservations past their deadline, and runs every
/// task not yet started. An interrupted mission's reservations are voided
/// (no call is in flight now) and each task that was running is replayed
/// from the journal to where it stopped, then carries on live.
pub async fn resume_mission(
    mission_id: &str,
    router: Arc<dyn Models>,
    cfg: &RunConfig,
    progress: Arc<dyn Observer>,
) -> Result<RunOutcome> {
    let _claim = Claim::take(mission_id)?;
    let data = cfg.existing()?;
    let record = data
        .ledger
        .read()
        .map_err(anyhow::Error::from)
        .and_then(|read| Ok(state::mission(&read, mission_id)?))?
        .with_context(|| format!("no mission `{mission_id}` in {}", cfg.data.display()))?;
    let interrupted = record.status == MissionStatus::Running;
    if interrupted {
        // Recovery replays tasks from the journal and trusts what it reads:
        // a journal that does not verify (a tail cut mid-entry, an edited
        // entry) is reported, never built upon or repaired.
        match data.ledger.verify() {
            Ok(_) => {}
            Err(ledger::VerifyError::Bad { seq, failure }) => bail!(
                "mission {mission_id} was interrupted, but the journal does not verify at entry {seq}: {failure}; \
                 nothing was changed. `conductor audit verify --data {}` shows the damage; recover from a copy you trust",
                cfg.data.display()
            ),
            Err(e) => return Err(anyhow::Error::from(e).context("verifying the journal before recovery")),
        }
    }
    match record.status {
        MissionStatus::Paused | MissionStatus::AwaitingBudget | MissionStatus::Running => {}
        other => bail!(
            "mission {mission_id} is {}; only a paused or interrupted mission, or one waiting for budget, resumes",
            crate::summary::status_text(other)
        ),
    }
    let declared = data
        .ledger
        .entries(record.declared_seq, 1)?
        .pop()
        .filter(|e| e.kind == Kind::MissionDeclared)
        .context("the mission's declaration is missing from the journal")?;
    let declared: entries::MissionDeclared = entries::decode(&declared)?;
    let file = PathBuf::from(&declared.file);
    let bytes = crate::files::read_regular(&file, "mission file", missions::MISSION_FILE_BYTES_MAX)
        .context("re-reading the mission file")?;
    if blake3::hash(&bytes).to_hex().as_str() != declared.file_blake3 {
        bail!("{} changed since the mission was declared; resume needs the same file", file.display());
    }
    let mission = missions::load(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    if mission.intake.is_some() && cfg.open.is_none() {
        return Err(RunError::OpenMission { name: mission.name.clone() }.into());
    }
    check_models(&mission, &*router).await?;
    let engine = Arc::new(cell_engine(cfg)?);
    let mut agents = Vec::new();
    for spec in &mission.agents {
        let module = engine.load_file(&spec.module)?;
        crate::modules::check_agent(&mission, spec, &blake3::Hash::from(module.hash().0))?;
        let declared_hash = declared.agents.iter().find(|a| a.name == spec.name).map(|a| a.module_blake3.as_str());
        if declared_hash != Some(module.hash().to_string().as_str()) {
            bail!(
                "agent `{}`: module {} is not the one the mission was declared with ({})",
                spec.name,
                spec.module.display(),
                declared_hash.unwrap_or("unknown")
            );
        }
        let key = Keypair::load(&data.agent_key_path(mission_id, &spec.name))?;
        let scope = Arc::new(crate::facts::Scope::of(mission_id, &spec.memory));
        agents.push(AgentRuntime { spec: spec.clone(), module, key: Arc::new(key), scope });
    }
    let conductor = data.conductor.clone();
    // Reservations of an interrupted run belong to calls that will never
    // answer: return their funds now rather than at their deadline.
    let orphaned: Vec<ledger::ReservationId> = if interrupted {
        let prefix = format!("{mission_id}/");
        data.ledger
            .pending_reservations()?
            .into_iter()
            .filter(|(_, account, _, _)| account.starts_with(&prefix))
            .map(|(id, ..)| id)
            .collect()
    } else {
        Vec::new()
    };
    // What each task to continue did before, from the journal; checked
    // before anything is written, so a disagreement changes nothing.
    let tasks = state::tasks(&data.ledger.read()?, mission_id)?;
    let recovering = open_attempts(&data.ledger, mission_id, record.declared_seq, &tasks)?;
    let running: Vec<u32> = tasks.iter().filter(|t| t.status == TaskStatus::Running).map(|t| t.index).collect();
    let limit = data.ledger.write(|t| -> Result<u64> {
        let now = now_us();
        for id in &orphaned {
            t.void(&conductor, *id, now)?;
        }
        t.expire_due(&conductor, now)?;
        let account = t.account(mission_id)?;
        let (id, budget) = (mission_id.to_owned(), totals(&account));
        let (voided, recovering) = (orphaned.iter().map(|r| r.0).collect(), running.clone());
        if interrupted {
            let recovered = entries::MissionRecovered { mission: id, budget, voided, recovering };
            entries::append(t, &conductor, &recovered, now)?;
        } else {
            let resumed = entries::MissionResumed { mission: id, budget, voided, recovering };
            entries::append(t, &conductor, &resumed, now)?;
        }
        // Read again here: cases received since it was read above took
        // task indices (`tasks_total`) that a stale copy would give back.
        let mut record = state::mission_in(t.redb(), mission_id)?.unwrap_or_else(|| record.clone());
        record.status = MissionStatus::Running;
        state::put_mission(t.redb(), &record)?;
        Ok(account.limit.unwrap_or(record.budget_limit))
    });
    let limit = limit.map_err(|e| stopped_by_storage(e, &cfg.data))?;
    let mut order: Vec<u32> = running;
    order.extend(tasks.iter().filter(|t| t.status == TaskStatus::Pending).map(|t| t.index));
    progress.started(&mission.name, mission_id, order.len() as u32, limit);
    execute(
        &data,
        mission_id.to_owned(),
        Arc::new(mission),
        Arc::new(agents),
        engine,
        router,
        cfg,
        progress,
        order,
        Arc::new(recovering),
    )
    .await
}

/// The attempts the journal shows no end for, of tasks that will run now:
/// interrupted ones (still "running") and parked ones whose gate was
/// decided (now "pending"). Each is replayed to where it stopped. Read
/// from each task's spans and its decided gates, so resuming one of
/// 100,000 parked tasks reads a few entries, not the journal.
fn open_attempts(
    ledger: &ledger::Ledger,
    mission_id: &str,
    declared_seq: u64,
    tasks: &[TaskRecord],
) -> Result<BTreeMap<u32, Attempt>> {
    let candidates: Vec<&TaskRecord> =
        tasks.iter().filter(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Pending)).collect();
    let mut found = BTreeMap::new();
    if candidates.iter().any(|t| t.status == TaskStatus::Running && t.spans.is_empty()) {
        // Written before tasks recorded their spans: read it all.
        let wanted: std::collections::BTreeSet<u32> = candidates.iter().map(|t| t.index).collect();
        let read = ledger.read()?;
        for mut attempt in crate::replay::attempts(&ledger.entries(declared_seq, usize::MAX)?) {
            if attempt.mission == mission_id && attempt.end.is_none() && wanted.contains(&attempt.task) {
                attempt.unseal(&read)?;
                found.insert(attempt.task, attempt);
            }
        }
        return Ok(found);
    }
    // The reviewers' answers (gate.decided) sit wherever they were
    // written, outside the task's spans: fetched by the gate ids the
    // attempt's awaits name.
    let read = ledger.read()?;
    for task in candidates.into_iter().filter(|t| !t.spans.is_empty()) {
        let mut entries = Vec::new();
        for (i, (first, last)) in task.spans.iter().enumerate() {
            let last = last.or_else(|| task.spans.get(i + 1).map(|next| next.0));
            let count =
                last.map_or(usize::MAX, |l| usize::try_from(l.saturating_sub(*first) + 1).unwrap_or(usize::MAX));
            entries.extend(ledger.entries(*first, count)?);
        }
        let awaited: Vec<String> = entries
            .iter()
            .filter(|e| e.kind == Kind::HostAwait)
            // An await that does not decode names no gate to fetch, and
            // `replay::attempts` skips it too: it belongs to no attempt.
            .filter_map(|e| entries::decode::<entries::HostAwait>(e).ok())
            .filter(|p| p.mission == mission_id && p.task == task.index)
            .filter_map(|p| p.gate_id)
            .collect();
        for gate_id in awaited {
            if let Some(seq) = state::gate(&read, &gate_id)?.and_then(|g| g.decided_seq) {
                entries.extend(ledger.entries(seq, 1)?);
            }
        }
        // Likewise the children's results (task.joined) for its delegations.
        let delegations: Vec<String> = entries
            .iter()
            .filter(|e| e.kind == Kind::TaskDelegated)
            .filter_map(|e| entries::decode::<entries::TaskDelegated>(e).ok())
            .filter(|p| p.mission == mission_id && p.task == task.index)
            .filter_map(|p| p.delegation)
            .collect();
        for id in delegations {
            if let Some(seq) = state::delegation(&read, &id)?.and_then(|d| d.joined_seq) {
                entries.extend(ledger.entries(seq, 1)?);
            }
        }
        let mut latest =
            crate::replay::attempts(&entries).into_iter().rfind(|a| a.mission == mission_id && a.task == task.index);
        if let Some(attempt) = &mut latest {
            // Recovery re-runs with plaintext; an erased subject's values
            // are gone, and the re-run will not match: it fails the task
            // (`recovery_diverged`) rather than guess.
            attempt.unseal(&read)?;
        }
        match latest {
            Some(attempt) if attempt.end.is_none() => {
                found.insert(task.index, attempt);
            }
            // The record says running, the journal says it ended: the
            // projection disagrees with the source of truth. Running the
            // task again would decide it twice.
            Some(attempt) if task.status == TaskStatus::Running => bail!(
                "task {} ({}) is recorded as running, but the journal ended its attempt (started at entry {}); \
                 the database's projections disagree with its journal, and nothing was changed",
                task.index,
                task.case_id,
                attempt.started_seq
            ),
            _ => {}
        }
    }
    Ok(found)
}

/// The open attempt of a parent woken by its children's end, read from
/// its spans like any resumed task's.
fn resumed_attempt(ctx: &MissionCtx, index: u32) -> Result<Option<Attempt>> {
    let Some(task) = state::task(&ctx.ledger.read()?, &ctx.id, index)? else { return Ok(None) };
    // Declared before tasks had spans: not a parent (delegation is newer).
    let mut found = open_attempts(&ctx.ledger, &ctx.id, 0, std::slice::from_ref(&task))?;
    Ok(found.remove(&index))
}

/// Runs the tasks `pending` (indices into the mission's cases) and settles
/// the mission's status.
#[allow(clippy::too_many_arguments, reason = "one call site each from run and resume")]
async fn execute(
    data: &DataDir,
    mission_id: String,
    mission: Arc<Mission>,
    agents: Arc<Vec<AgentRuntime>>,
    engine: Arc<CellEngine>,
    router: Arc<dyn Models>,
    cfg: &RunConfig,
    progress: Arc<dyn Observer>,
    pending: Vec<u32>,
    recovering: Arc<BTreeMap<u32, Attempt>>,
) -> Result<RunOutcome> {
    let conductor = data.conductor.clone();
    let ttl_ms = i64::try_from(mission.budget.reservation_ttl_ms).unwrap_or(i64::MAX / 1000);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Arc::new(MissionCtx {
        id: mission_id.clone(),
        ledger: data.ledger.clone(),
        committer: data.committer.clone(),
        conductor: conductor.clone(),
        router,
        runtime: tokio::runtime::Handle::current(),
        prices: mission.models.clone(),
        reservation_ttl_us: ttl_ms.saturating_mul(1000),
        budget_exhausted: AtomicBool::new(false),
        gates: mission.gates.iter().map(|g| (g.name.clone(), g.clone())).collect(),
        memory_limits: crate::facts::limits(&mission.memory_limits),
        failover: mission.routing.failover.clone(),
        decision_rules: crate::decisions::DecisionRules::from_mission(&mission),
        delegation: crate::delegation::Policy::of(&mission),
        ready: ready_tx,
        data_root: data.root.clone(),
        cancelled: AtomicBool::new(false),
    });
    let concurrency = cfg.concurrency.clamp(1, CONCURRENCY_MAX);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    // An open mission listens for arriving cases (and an operator's close
    // or pause) until it is closed; its inbox, if any, is watched as long.
    let intake = crate::intake::intake(&data.ledger.read()?, &mission_id)?;
    let mut open = intake.as_ref().is_some_and(|i| i.closed_seq.is_none());
    // Every mission running here has a door: arriving cases, a decided
    // gate's parked task, an operator's pause and the server's shutdown
    // all come through it.
    let mut door = Some(crate::intake::Door::open(&mission_id));
    // Cases received before the door opened (while the mission was not
    // running here) knocked on nothing: they are in the queue.
    let mut pending = pending;
    if intake.is_some() {
        let given: std::collections::HashSet<u32> = pending.iter().copied().collect();
        let queued = crate::intake::queued(&data.ledger.read()?, &mission_id)?;
        pending.extend(queued.into_iter().filter(|i| !given.contains(i)));
    }
    let inbox_stop = Arc::new(AtomicBool::new(false));
    let inbox = match (&mission.intake, open) {
        (Some(missions::Intake { inbox: Some(dir), .. }), true) => {
            Some(watch_inbox(data.clone(), mission_id.clone(), dir.clone(), inbox_stop.clone()))
        }
        _ => None,
    };
    let mut paused = false;
    let mut shutdown = false;
    // Every task this run has queued, so a case both found in the
    // database and knocked at the door runs once.
    let mut scheduled: std::collections::HashSet<u32> = pending.iter().copied().collect();
    // The tasks to run: those given, and whatever becomes runnable while
    // they run (children a delegation created, parents whose children all
    // ended). Work already started goes first: a parked parent's children
    // and its resumption come before new cases, so a tree finishes (and
    // stops holding records and budget) before the next one grows. The
    // run ends when nothing runs and nothing is queued.
    let mut queue: std::collections::VecDeque<(u32, bool)> = pending.into_iter().map(|i| (i, false)).collect();
    let mut woken: std::collections::VecDeque<(u32, bool)> = std::collections::VecDeque::new();
    loop {
        while let Ok(ready) = ready_rx.try_recv() {
            woken.push_back(ready);
        }
        while let Some(arrival) = door.as_mut().and_then(|d| d.rx.try_recv().ok()) {
            let closed = arrive(arrival, &ctx, &mut queue, &mut woken, &mut scheduled, &mut paused)?;
            open &= !closed;
            shutdown |= arrival == crate::intake::Arrival::Shutdown;
        }
        if paused || shutdown {
            // An operator paused the mission, or the process is stopping:
            // start nothing more.
            break;
        }
        let Some((index, resume)) = woken.pop_front().or_else(|| queue.pop_front()) else {
            if running.is_empty() && !open {
                // Shut the door, then take in whatever knocked before it
                // shut: a caller told its knock arrived is never missed.
                let late = door.as_mut().map(crate::intake::Door::shut).unwrap_or_default();
                if late.is_empty() {
                    break;
                }
                door = Some(crate::intake::Door::open(&mission_id));
                for arrival in late {
                    let closed = arrive(arrival, &ctx, &mut queue, &mut woken, &mut scheduled, &mut paused)?;
                    open &= !closed;
                    shutdown |= arrival == crate::intake::Arrival::Shutdown;
                }
                continue;
            }
            let listen = async {
                match door.as_mut() {
                    Some(d) => d.rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(done) = running.join_next() => { done.context("a task thread panicked")?; }
                Some(ready) = ready_rx.recv() => woken.push_back(ready),
                Some(arrival) = listen => {
                    let closed = arrive(arrival, &ctx, &mut queue, &mut woken, &mut scheduled, &mut paused)?;
                    open &= !closed;
                    shutdown |= arrival == crate::intake::Arrival::Shutdown;
                }
            }
            continue;
        };
        let permit = permits.clone().acquire_owned().await.context("task scheduler closed")?;
        if !Exhaustion(mission.budget.on_exhausted).keeps_going(ctx.budget_exhausted.load(Ordering::SeqCst)) {
            break;
        }
        if crate::health::failure().is_some() {
            // The database refuses writes after an I/O error: nothing more
            // can be recorded, so nothing more starts (the rest stay pending).
            break;
        }
        let (ctx, mission, agents, engine, progress, recovering) =
            (ctx.clone(), mission.clone(), agents.clone(), engine.clone(), progress.clone(), recovering.clone());
        running.spawn_blocking(move || {
            let _permit = permit;
            // A parent whose children have all ended: replayed to its
            // `delegate` call, which the journal's `task.joined` answers.
            let resumed = if resume { resumed_attempt(&ctx, index) } else { Ok(None) };
            let result = resumed.and_then(|attempt| {
                run_task(&ctx, &mission, &agents, &engine, index, attempt.as_ref().or(recovering.get(&index)))
            });
            let record = match result {
                Ok(record) => record,
                Err(e) => {
                    // Storage failed under this task; record what we can,
                    // and tell a long-lived process (the server) to stop.
                    let storage = crate::health::note(&e) || crate::health::failure().is_some();
                    let case = mission.tasks.cases.get(index as usize).map_or("?", |c| c.id.as_str());
                    let mut r = new_task(&ctx.id, index, case, "?");
                    // After a storage failure the task's end is not in the
                    // journal: it is unfinished (the next run recovers it),
                    // not failed.
                    r.status = if storage { TaskStatus::Running } else { TaskStatus::Failed };
                    r.failure = Some(crate::health::describe(&e));
                    r
                }
            };
            let spent = ctx.ledger.account(&ctx.id).map(|a| a.settled).unwrap_or(0);
            progress.task_finished(&record, spent);
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(done) = running.try_join_next() {
            done.context("a task thread panicked")?;
        }
    }
    // Stopped early (budget, storage, paused): let what runs finish.
    while let Some(done) = running.join_next().await {
        done.context("a task thread panicked")?;
    }
    inbox_stop.store(true, Ordering::SeqCst);
    if let Some(watcher) = inbox {
        let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    }
    drop(door);
    // Finished cells are dropped on the engine's teardown thread, and each
    // holds its task's host (and so the database): the caller reopens the
    // database for the summary once this returns.
    if !engine.wait_for_teardown(TEARDOWN_WAIT_MAX) {
        tracing::warn!("finished cells were still being torn down after {TEARDOWN_WAIT_MAX:?}");
    }

    if shutdown {
        // The process is stopping: the mission stays running in the
        // journal, and the next start carries it on.
        progress.finished();
        return Ok(RunOutcome { mission_id, status: MissionStatus::Running });
    }
    if let Some(failure) = crate::health::failure() {
        // Nothing more can be recorded: the mission stays running in the
        // journal, and the next run of the same command recovers it.
        progress.finished();
        return Err(InfrastructureError::Storage { failure, data: cfg.data.clone() }.into());
    }
    let exhausted = ctx.budget_exhausted.load(Ordering::SeqCst);
    let status = data.ledger.write(|t| -> Result<MissionStatus> {
        let tasks = state::tasks_in(t.redb(), &mission_id)?;
        let status = if ctx.cancelled.load(Ordering::SeqCst) {
            MissionStatus::Cancelled
        } else if paused {
            MissionStatus::Paused
        } else {
            Exhaustion(mission.budget.on_exhausted).mission_status(state::settle_status(&tasks, exhausted))
        };
        let account = t.account(&mission_id)?;
        let finished = entries::MissionFinished { mission: mission_id.clone(), status, budget: totals(&account) };
        entries::append(t, &conductor, &finished, now_us())?;
        if let Some(mut record) = state::mission_in(t.redb(), &mission_id)? {
            record.status = status;
            state::put_mission(t.redb(), &record)?;
        }
        if status == MissionStatus::AwaitingBudget
            && let Some(extension) = &mission.budget.extension
            && state::pending_budget_gate_in(t.redb(), &mission_id)?.is_none()
        {
            request_budget_gate(t, &conductor, &mission_id, extension, &account)?;
        }
        Ok(status)
    });
    let status = status.map_err(|e| stopped_by_storage(e, &cfg.data))?;
    progress.finished();
    Ok(RunOutcome { mission_id, status })
}

/// How often an open mission looks in its inbox directory.
const INBOX_POLL: Duration = Duration::from_millis(250);

/// Watches an open mission's inbox until `stop`: each case file is taken
/// into the mission (durable) and then removed (`intake::take_inbox`).
fn watch_inbox(data: DataDir, mission: String, dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match crate::intake::take_inbox(&data, &mission, &dir) {
                Ok(_) => {}
                Err(e) => {
                    crate::health::note(&e);
                    tracing::warn!("inbox {}: {}", dir.display(), crate::health::describe(&e));
                }
            }
            std::thread::sleep(INBOX_POLL);
        }
    })
}

/// Takes one arrival at an open mission's door into the scheduler's
/// queues; returns whether the mission was closed. On a close, the
/// received cases still queued are read from the database: a case
/// committed just before the close may knock after it.
fn arrive(
    arrival: crate::intake::Arrival,
    ctx: &MissionCtx,
    queue: &mut std::collections::VecDeque<(u32, bool)>,
    woken: &mut std::collections::VecDeque<(u32, bool)>,
    scheduled: &mut std::collections::HashSet<u32>,
    paused: &mut bool,
) -> Result<bool> {
    use crate::intake::Arrival;
    match arrival {
        Arrival::Case(index) => {
            if scheduled.insert(index) {
                queue.push_back((index, false));
            }
            Ok(false)
        }
        Arrival::Woken(index) => {
            woken.push_back((index, true));
            Ok(false)
        }
        Arrival::Pause => {
            *paused = true;
            Ok(false)
        }
        Arrival::Shutdown => Ok(false),
        Arrival::Close | Arrival::Cancel => {
            if arrival == Arrival::Cancel {
                ctx.cancelled.store(true, Ordering::SeqCst);
            }
            for index in crate::intake::queued(&ctx.ledger.read()?, &ctx.id)? {
                if scheduled.insert(index) {
                    queue.push_back((index, false));
                }
            }
            Ok(true)
        }
    }
}

/// An agent's decision as the journal and the gates see it: `details` is
/// the JSON object the agent gave, or empty.
fn proposal_of(decision: &cells::Decision) -> entries::Proposal {
    let details: Value =
        serde_json::from_str(&decision.details).ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
    entries::Proposal { outcome: decision.outcome.clone(), reason: decision.reason.clone(), details }
}

/// A proposal as the mission's conditions and `decisions:` test it: the
/// same object `task.proposed` journals as its `decision`.
fn proposal_json(proposal: &entries::Proposal) -> Value {
    json!({"outcome": proposal.outcome, "reason": proposal.reason, "details": proposal.details})
}

/// An account's totals as the journal records them.
fn totals(account: &ledger::Account) -> entries::AccountTotals {
    entries::AccountTotals { limit: account.limit, settled: account.settled, pending: account.pending }
}

/// Asks reviewers to extend a mission's exhausted budget: a gate like a
/// case's (reviewers, quorum, deadline), decided with `gates approve
/// --amount` or on the reviewer page.
fn request_budget_gate(
    t: &mut ledger::Txn,
    conductor: &Keypair,
    mission_id: &str,
    extension: &missions::Extension,
    account: &ledger::Account,
) -> Result<()> {
    let gate_id = uuid::Uuid::new_v4().to_string();
    let now = now_us();
    let requested = entries::GateRequested {
        mission: mission_id.to_owned(),
        task: None,
        case: None,
        gate_id: gate_id.clone(),
        gate: BUDGET_GATE.to_owned(),
        why: entries::GateWhy { budget_exhausted: Some(totals(account)), ..entries::GateWhy::default() },
        proposal_seq: None,
        budget: Some(entries::BudgetGrant { account: mission_id.to_owned(), amount: extension.amount }),
        reviewers: extension.reviewers.clone(),
        quorum: extension.quorum,
    };
    let (requested_seq, _) = entries::append(t, conductor, &requested, now)?;
    state::put_gate(
        t.redb(),
        &GateRecord {
            id: gate_id,
            gate: BUDGET_GATE.to_owned(),
            mission: mission_id.to_owned(),
            task: state::MISSION_GATE_TASK,
            case_id: String::new(),
            status: GateStatus::Pending,
            proposed_outcome: String::new(),
            proposed_reason: format!("extend the budget by {}", extension.amount),
            proposed_details: json!({}),
            reviewer: None,
            note: None,
            requested_seq,
            parked: false,
            decided_seq: None,
            reviewers: extension.reviewers.clone(),
            quorum: extension.quorum,
            votes: Vec::new(),
            deadline: crate::gates::deadline_of(extension.deadline.as_ref(), now),
            budget: Some(state::BudgetAsk { account: mission_id.to_owned(), amount: extension.amount }),
            decision_rules: None,
        },
    )?;
    Ok(())
}

/// The name of every budget gate.
pub const BUDGET_GATE: &str = "budget";

/// The budget account of one agent in one mission.
pub fn agent_account(mission: &str, agent: &str) -> String {
    format!("{mission}/{agent}")
}

/// The budget account of one task.
pub fn task_account(mission: &str, agent: &str, index: u32) -> String {
    format!("{mission}/{agent}/task-{index}")
}

/// Whether `account` is a task's (see [`task_account`]), not an agent's
/// or a mission's.
pub fn is_task_account(account: &str) -> bool {
    account.rsplit_once("/task-").is_some_and(|(above, n)| above.contains('/') && n.parse::<u32>().is_ok())
}

fn policy_name(policy: OnExhausted) -> &'static str {
    match policy {
        OnExhausted::Stop => "stop",
        OnExhausted::Pause => "pause",
        OnExhausted::Gate => "gate",
    }
}

/// An agent as `mission.declared` records it.
fn declared_agent(a: &AgentRuntime) -> entries::DeclaredAgent {
    let limits = &a.spec.limits;
    entries::DeclaredAgent {
        name: a.spec.name.clone(),
        model: a.spec.model.clone(),
        module_blake3: a.module.hash().to_string(),
        limits: entries::DeclaredLimits {
            memory_bytes: limits.memory_bytes,
            fuel: limits.fuel,
            wall_ms: limits.wall_ms,
            host_calls: limits.host_calls,
            max_tokens: limits.max_tokens,
            call_arg_bytes: limits.call_arg_bytes,
            output_bytes: limits.output_bytes,
        },
        budget: entries::DeclaredAgentBudget { limit: a.spec.budget.limit, task_limit: a.spec.budget.task_limit },
        memory: entries::DeclaredScope { read: a.scope.read.clone(), write: a.scope.write.clone() },
    }
}

/// An open mission's intake as `mission.declared` records it.
fn declared_intake(i: &missions::Intake) -> entries::DeclaredIntake {
    entries::DeclaredIntake {
        agent: i.agent.clone(),
        queue: i.queue,
        tier: i.tier.as_str().to_owned(),
        documents: entries::DeclaredDocuments {
            count: i.documents.count,
            bytes: i.documents.bytes,
            types: i.documents.types.clone(),
        },
        inbox: i.inbox.is_some(),
    }
}

/// A gate as `mission.declared` records it.
fn declared_gate(g: &missions::Gate) -> entries::DeclaredGate {
    entries::DeclaredGate {
        name: g.name.clone(),
        field: g.when.field.as_str().to_owned(),
        test: format!("{:?}", g.when.test),
        reviewers: g.reviewers.clone(),
        quorum: g.quorum,
        deadline: g.deadline.as_ref().map(|d| entries::DeclaredDeadline {
            after_us: d.after_us,
            on_timeout: format!("{:?}", d.on_timeout),
            remind_before_us: d.remind_before_us,
        }),
    }
}

/// Journals `payload` for a task and stores its record, in one group commit.
fn record_task<P>(ctx: &MissionCtx, payload: P, record: &TaskRecord) -> Result<()>
where
    P: entries::Payload + Clone + Send + 'static,
{
    let (conductor, record) = (ctx.conductor.clone(), record.clone());
    crate::data::commit(&ctx.committer, move |t| {
        entries::append(t, &conductor, &payload, now_us())?;
        // A received case that ends without starting (skipped) leaves the
        // queue here; for any other task this finds nothing to remove.
        crate::intake::dequeue(t.redb(), &record.mission, record.index)?;
        state::put_task(t.redb(), &record).map_err(projection)
    })?;
    Ok(())
}

pub(crate) fn new_task(mission: &str, index: u32, case_id: &str, agent: &str) -> TaskRecord {
    TaskRecord {
        mission: mission.to_owned(),
        index,
        case_id: case_id.to_owned(),
        agent: agent.to_owned(),
        status: TaskStatus::Pending,
        outcome: None,
        reason: None,
        decided_by: None,
        failure: None,
        gate: None,
        tokens_reserved: 0,
        tokens_settled: 0,
        model_calls: 0,
        spans: Vec::new(),
        parent: None,
        children: 0,
        delegation: None,
    }
}

/// Runs one case in a fresh cell and records how it ended.
fn run_task(
    ctx: &Arc<MissionCtx>,
    mission: &Mission,
    agents: &[AgentRuntime],
    engine: &CellEngine,
    index: u32,
    recovering: Option<&Attempt>,
) -> Result<TaskRecord> {
    let spec = task_spec(ctx, mission, index)?;
    let case = &*spec.case;
    let agent = agents.iter().find(|a| a.spec.name == case.agent).context("validated mission names a known agent")?;
    let mut record = new_task(&ctx.id, index, &case.id, &agent.spec.name);
    record.parent = spec.parent.as_ref().map(|p| p.task);

    let exhausted = ctx.budget_exhausted.load(Ordering::SeqCst);
    // A cancelled mission starts nothing new; an attempt already under
    // way (recovered, or resumed from a gate or its children) finishes.
    let cancelled = ctx.cancelled.load(Ordering::SeqCst) && recovering.is_none();
    let before = if cancelled {
        BeforeTask::Skip
    } else {
        Exhaustion(mission.budget.on_exhausted).before_task(exhausted, recovering.is_some())
    };
    match before {
        BeforeTask::Run => {}
        BeforeTask::LeavePending => return Ok(record),
        BeforeTask::Skip => {
            record.status = TaskStatus::Skipped;
            let (reason, failure) = if cancelled {
                (crate::intake::CANCELLED, "cancelled by an operator before it started")
            } else {
                ("budget_exhausted", "budget exhausted before this task started")
            };
            record.failure = Some(failure.into());
            let skipped = entries::TaskSkipped {
                mission: ctx.id.clone(),
                task: index,
                case: case.id.clone(),
                reason: reason.into(),
            };
            if record.parent.is_none() {
                record_task(ctx, skipped, &record)?;
                return Ok(record);
            }
            // A child that never ran still ends for its parent.
            let (conductor, ended) = (ctx.conductor.clone(), record.clone());
            let woke = crate::data::commit(&ctx.committer, move |t| {
                entries::append(t, &conductor, &skipped, now_us())?;
                state::put_task(t.redb(), &ended).map_err(projection)?;
                let result = crate::delegation::result_of(&ended, None, Some(&skipped.reason));
                crate::delegation::child_ended(t, &conductor, &ended, result)
            })?;
            if let Some(parent) = woke {
                ctx.wake(parent, true);
            }
            return Ok(record);
        }
    }

    record.status = TaskStatus::Running;
    let account = task_account(&ctx.id, &agent.spec.name, index);
    let (env, input_text) = match recovering {
        // The same input, clock and seed as before the stop.
        Some(attempt) => {
            let started = &attempt.started;
            let env =
                crate::replay::env_from(started).context("the interrupted task's task.started has no clock or seed")?;
            let input_text = serde_json::to_string(&started.input)?;
            let recovered = entries::TaskRecovered {
                mission: ctx.id.clone(),
                task: index,
                case: case.id.clone(),
                started_seq: attempt.started_seq,
                replaying: attempt.calls.len() as u64,
            };
            ctx.ledger.write(|t| -> Result<()> {
                let (seq, _) = entries::append(t, &ctx.conductor, &recovered, now_us())?;
                if let Some(before) = state::task_in(t.redb(), &ctx.id, index)? {
                    record.spans = before.spans;
                    record.children = before.children;
                }
                record.spans.push((seq, None));
                state::put_task(t.redb(), &record)?;
                Ok(())
            })?;
            (env, input_text)
        }
        None => start_task(ctx, agent, case, index, &account, spec.parent.clone(), &mut record)?,
    };

    let limits = CellLimits {
        memory_bytes: agent.spec.limits.memory_bytes,
        fuel: agent.spec.limits.fuel,
        wall_ms: agent.spec.limits.wall_ms,
        host_calls: agent.spec.limits.host_calls,
        call_arg_bytes_max: usize::try_from(agent.spec.limits.call_arg_bytes).unwrap_or(usize::MAX),
        output_bytes_max: usize::try_from(agent.spec.limits.output_bytes).unwrap_or(usize::MAX),
    };
    let meter = Arc::new(TaskMeter::default());
    let live = TaskHost {
        ctx: ctx.clone(),
        task: index,
        case_id: case.id.clone(),
        account,
        agent_key: agent.key.clone(),
        models: agent.spec.models.clone(),
        tier: case.tier,
        failover: ctx
            .failover
            .iter()
            .find(|rule| rule.when.matches(&case.input, &serde_json::Value::Null))
            .map(|rule| rule.to.clone()),
        max_tokens_cap: agent.spec.limits.max_tokens,
        deadline: Instant::now() + Duration::from_millis(limits.wall_ms),
        meter: meter.clone(),
        scope: agent.scope.clone(),
        agent: agent.spec.name.clone(),
        depth: spec.depth,
        root: spec.root,
    };
    let (host, replay_log): (Box<dyn CellHost>, _) = match recovering {
        Some(attempt) => {
            let (replay, log) =
                ReplayHost::new(attempt.calls.clone(), agent.spec.limits.max_tokens, Some(meter.clone()));
            let (root, ledger) = (ctx.data_root.clone(), ctx.ledger.clone());
            let replay = replay.with_documents(Box::new(move |subject, hash| {
                crate::documents::load(&root, &ledger.read()?, subject, hash)
            }));
            (Box::new(RecoveringHost::new(replay, live)), Some(log))
        }
        None => (Box::new(live), None),
    };
    let result = engine.run(&agent.module, host, &limits, &env, &input_text);
    // A host call the journal could not record: the agent got an error
    // instead of its answer, and whatever it did next is not the task's
    // outcome. A storage failure leaves the task as the journal shows it
    // (running, or pending if its start was lost), for the next run to
    // recover once the disk works again; nothing more is written now.
    let unrecorded = meter.unrecorded();
    if let Some(unrecorded) = unrecorded.as_ref().filter(|u| u.storage) {
        return Err(TaskStopped { task: index, case: case.id.clone(), failure: unrecorded.failure.clone() }.into());
    }
    match &result {
        // Waiting on a reviewer or on its children: nothing is kept but the
        // journal and this record. Deciding the gate, or the last child's
        // end, makes the task runnable again.
        Err(cells::CellFailure::Parked { gate }) => return park(ctx, &meter, record, Waits::Gate(gate.clone())),
        Err(cells::CellFailure::Delegated { delegation }) => {
            return park(ctx, &meter, record, Waits::Children(delegation.clone()));
        }
        _ => {}
    }
    // (code, message) of a failure; a recovery that did not retrace the
    // journal fails the task rather than trust where it got to.
    let diverged = replay_log.and_then(|log| log.lock().ok().and_then(|l| l.divergence.clone()));
    let result: std::result::Result<cells::Decision, (String, String)> = match (diverged, result) {
        (Some(d), _) => Err(("recovery_diverged".into(), format!("recovery did not retrace the journal: {d}"))),
        (None, r) => r.map_err(|f| (f.code().to_owned(), f.to_string())),
    };
    // A proposal outside the mission's `decisions:` (an outcome it does not
    // list, a detail of the wrong type) is not a decision: the task fails
    // with the reason, and nothing is proposed or gated.
    let rules = ctx.decision_rules.clone();
    let result = result.and_then(|decision| match &rules {
        Some(rules) => rules
            .check(&proposal_json(&proposal_of(&decision)))
            .map(|()| decision)
            .map_err(|e| ("decision_refused".to_owned(), format!("the agent's proposal was refused: {e}"))),
        None => Ok(decision),
    });
    // The journal refused a call's entry (the storage works): the task
    // fails, rather than end on an answer the journal lacks.
    let result = match unrecorded {
        Some(u) => Err((
            "journal_refused".to_owned(),
            format!("the journal could not record a host call, so the agent's result was discarded: {}", u.failure),
        )),
        None => result,
    };
    record.tokens_reserved = meter.reserved.load(Ordering::Relaxed);
    record.tokens_settled = meter.settled.load(Ordering::Relaxed);
    record.model_calls = meter.model_calls.load(Ordering::Relaxed);

    if meter.refused.load(Ordering::SeqCst) && Exhaustion(mission.budget.on_exhausted).defers_refused_task() {
        // Discard the result and run the task again from the start on
        // resume (what it already spent stays spent and journaled).
        record.status = TaskStatus::Pending;
        let deferred = entries::TaskDeferred {
            mission: ctx.id.clone(),
            task: index,
            case: case.id.clone(),
            reason: "budget_exhausted".into(),
            settled: record.tokens_settled,
            result: match &result {
                Ok(d) => d.outcome.clone(),
                Err((code, _)) => code.clone(),
            },
        };
        record_task(ctx, deferred, &record)?;
        return Ok(record);
    }

    let ending = match result {
        Err((code, message)) => Ending::Failed { code, message },
        Ok(decision) => {
            let proposal = proposal_of(&decision);
            let requested = meter.review.lock().ok().and_then(|r| r.clone());
            let gate = gate_for(mission, &case.input, &proposal_json(&proposal), requested.as_ref())
                .map(|(gate, why)| GateAsk { id: uuid::Uuid::new_v4().to_string(), gate: gate.clone(), why });
            Ending::Proposed { decision, proposal, gate }
        }
    };
    // The outcome shares a durable group commit with other tasks' writes;
    // the task has ended once that commit is on disk.
    let outcome = Arc::new(Outcome { ctx: ctx.clone(), agent_key: agent.key.clone(), record, ending, rules });
    let (record, woke) = crate::data::commit(&ctx.committer, move |t| outcome.write(t))?;
    if let Some(parent) = woke {
        ctx.wake(parent, true);
    }
    Ok(record)
}

/// What one task runs: one of the mission's cases, or a child that a
/// delegation created (its input, agent and place in the tree are in its
/// [`state::ChildSpec`]).
struct TaskSpec<'m> {
    case: std::borrow::Cow<'m, missions::Case>,
    depth: u32,
    root: u32,
    parent: Option<entries::ParentLink>,
}

fn task_spec<'m>(ctx: &MissionCtx, mission: &'m Mission, index: u32) -> Result<TaskSpec<'m>> {
    if let Some(case) = mission.tasks.cases.get(index as usize) {
        return Ok(TaskSpec { case: std::borrow::Cow::Borrowed(case), depth: 0, root: index, parent: None });
    }
    let read = ctx.ledger.read()?;
    if let Some(received) = crate::intake::received(&read, &ctx.id, index)? {
        let case = received_case(index, received)?;
        return Ok(TaskSpec { case: std::borrow::Cow::Owned(case), depth: 0, root: index, parent: None });
    }
    let child = state::child(&read, &ctx.id, index)?
        .with_context(|| format!("task {index} is neither a case, a received case nor a child"))?;
    let record = state::task(&read, &ctx.id, index)?.with_context(|| format!("child task {index} has no record"))?;
    // A child sees its case's data: it is cleared like the case.
    let tier = match mission.tasks.cases.get(child.root as usize) {
        Some(root) => root.tier,
        None => {
            crate::intake::received(&read, &ctx.id, child.root)?
                .map(|r| received_case(child.root, r))
                .transpose()?
                .with_context(|| format!("child task {index}: no root case"))?
                .tier
        }
    };
    let input: Value = serde_json::from_str(&child.input).with_context(|| format!("child task {index}'s input"))?;
    let case = missions::Case {
        id: record.case_id,
        agent: child.agent,
        input,
        origin: format!("delegation:{}", child.delegation),
        tier,
    };
    let parent = entries::ParentLink { task: child.parent, delegation: child.delegation, depth: child.depth };
    Ok(TaskSpec { case: std::borrow::Cow::Owned(case), depth: child.depth, root: child.root, parent: Some(parent) })
}

/// A case that arrived while the mission ran, as the case it runs.
fn received_case(index: u32, received: crate::intake::ReceivedCase) -> Result<missions::Case> {
    let mut input: Value =
        serde_json::from_str(&received.input).with_context(|| format!("received task {index}'s input"))?;
    // The agent learns its case's documents (name, type, size, hash)
    // through its input, and reads them with `read-document`.
    if let Value::Object(map) = &mut input
        && !received.documents.is_empty()
    {
        map.insert("_documents".into(), serde_json::to_value(&received.documents)?);
    }
    Ok(missions::Case {
        id: received.case,
        agent: received.agent,
        input,
        origin: format!("received:{}", received.received_seq),
        tier: missions::DataTier::parse(&received.tier).unwrap_or_default(),
    })
}

/// What a parked task waits for.
enum Waits {
    /// A reviewer's answer to its `await-review` (the gate id).
    Gate(String),
    /// The end of its children (the delegation id).
    Children(String),
}

/// Records a task whose cell stopped to wait: `task.parked`, its span
/// closed, its record. A live `delegate` call's own commit already did
/// all that (and its children may even have ended and resumed it by now):
/// nothing more is written then.
fn park(ctx: &MissionCtx, meter: &TaskMeter, mut record: TaskRecord, waits: Waits) -> Result<TaskRecord> {
    record.tokens_reserved = meter.reserved.load(Ordering::Relaxed);
    record.tokens_settled = meter.settled.load(Ordering::Relaxed);
    record.model_calls = meter.model_calls.load(Ordering::Relaxed);
    let (gate_id, delegation) = match waits {
        Waits::Gate(gate) => {
            record.status = TaskStatus::AwaitingReview;
            record.gate = Some(gate.clone());
            (Some(gate), None)
        }
        Waits::Children(delegation) => {
            record.status = TaskStatus::AwaitingChildren;
            record.delegation = Some(delegation.clone());
            if meter.delegated.lock().is_ok_and(|d| d.as_ref() == Some(&delegation)) {
                return Ok(record);
            }
            (None, Some(delegation))
        }
    };
    let parked = entries::TaskParked {
        mission: ctx.id.clone(),
        task: record.index,
        case: record.case_id.clone(),
        gate_id,
        delegation,
    };
    ctx.ledger.write(|t| -> Result<()> {
        let (seq, _) = entries::append(t, &ctx.conductor, &parked, now_us())?;
        if let Some(before) = state::task_in(t.redb(), &ctx.id, record.index)? {
            record.spans = before.spans;
            record.children = before.children;
        }
        if let Some(open) = record.spans.last_mut() {
            open.1 = Some(seq);
        }
        state::put_task(t.redb(), &record)?;
        Ok(())
    })?;
    Ok(record)
}

/// How a finished cell's task ends: failed, or with a proposal that is
/// decided at once or goes to a gate.
#[derive(Debug)]
enum Ending {
    Failed { code: String, message: String },
    Proposed { decision: cells::Decision, proposal: entries::Proposal, gate: Option<GateAsk> },
}

/// A gate a proposal goes to, chosen (and its id drawn) before the commit,
/// so a commit retried after an `Interrupted` writes the same gate.
#[derive(Debug)]
struct GateAsk {
    id: String,
    gate: missions::Gate,
    why: entries::GateWhy,
}

/// Everything the outcome's commit writes, owned, so the group committer
/// can run it on its own thread (and again, if its batch was interrupted).
#[derive(Debug)]
struct Outcome {
    ctx: Arc<MissionCtx>,
    agent_key: Arc<Keypair>,
    record: TaskRecord,
    ending: Ending,
    rules: Option<crate::decisions::DecisionRules>,
}

impl Outcome {
    /// Journals the task's end and stores its record; returns the record,
    /// and the parent it woke when it was the last of its siblings to end.
    fn write(&self, t: &mut ledger::Txn) -> Result<(TaskRecord, Option<u32>), LedgerError> {
        let ctx = &self.ctx;
        let mut record = self.record.clone();
        let (index, case) = (record.index, record.case_id.clone());
        let now = now_us();
        match &self.ending {
            Ending::Failed { code, message } => {
                record.status = TaskStatus::Failed;
                record.failure = Some(message.clone());
                let failed = entries::TaskFailed {
                    mission: ctx.id.clone(),
                    task: index,
                    case: case.clone(),
                    code: code.clone(),
                    message: message.clone(),
                };
                entries::append(t, &ctx.conductor, &failed, now)?;
            }
            Ending::Proposed { decision, proposal, gate } => {
                let proposed = entries::TaskProposed {
                    mission: ctx.id.clone(),
                    task: index,
                    case: case.clone(),
                    decision: proposal.clone(),
                };
                let (proposed_seq, _) = entries::append(t, &self.agent_key, &proposed, now)?;
                record.outcome = Some(decision.outcome.clone());
                record.reason = Some(decision.reason.clone());
                match gate {
                    Some(GateAsk { id, gate, why }) => {
                        let requested = entries::GateRequested {
                            mission: ctx.id.clone(),
                            task: Some(index),
                            case: Some(case.clone()),
                            gate_id: id.clone(),
                            gate: gate.name.clone(),
                            why: why.clone(),
                            proposal_seq: Some(proposed_seq),
                            budget: None,
                            reviewers: gate.reviewers.clone(),
                            quorum: gate.quorum,
                        };
                        let (requested_seq, _) = entries::append(t, &ctx.conductor, &requested, now)?;
                        let pending = GateRecord {
                            id: id.clone(),
                            gate: gate.name.clone(),
                            mission: ctx.id.clone(),
                            task: index,
                            case_id: case.clone(),
                            status: GateStatus::Pending,
                            proposed_outcome: decision.outcome.clone(),
                            proposed_reason: decision.reason.clone(),
                            proposed_details: proposal.details.clone(),
                            reviewer: None,
                            note: None,
                            requested_seq,
                            parked: false,
                            decided_seq: None,
                            reviewers: gate.reviewers.clone(),
                            quorum: gate.quorum,
                            votes: Vec::new(),
                            deadline: crate::gates::deadline_of(gate.deadline.as_ref(), now),
                            budget: None,
                            decision_rules: self.rules.clone(),
                        };
                        state::put_gate(t.redb(), &pending).map_err(projection)?;
                        record.status = TaskStatus::AwaitingReview;
                        record.gate = Some(id.clone());
                    }
                    None => {
                        let decided = entries::TaskDecided {
                            mission: ctx.id.clone(),
                            task: index,
                            case: case.clone(),
                            outcome: decision.outcome.clone(),
                            decided_by: "agent".into(),
                            proposal_seq: Some(proposed_seq),
                            gate_seq: None,
                            edited: None,
                        };
                        entries::append(t, &ctx.conductor, &decided, now)?;
                        record.status = TaskStatus::Decided;
                        record.decided_by = Some("agent".into());
                    }
                }
            }
        }
        state::put_task(t.redb(), &record).map_err(projection)?;
        let ended = match &self.ending {
            Ending::Failed { code, .. } => Some(crate::delegation::result_of(&record, None, Some(code))),
            Ending::Proposed { proposal, .. } if record.status == TaskStatus::Decided => {
                Some(crate::delegation::result_of(&record, Some(proposal.details.clone()), None))
            }
            // Gated: it ends when its reviewer decides (`gates`).
            Ending::Proposed { .. } => None,
        };
        let woke = match ended {
            Some(result) => crate::delegation::child_ended(t, &ctx.conductor, &record, result)?,
            None => None,
        };
        Ok((record, woke))
    }
}

/// The gate a proposal goes to and why: the agent's own request for
/// review first; otherwise the first gate whose condition the proposal
/// meets. A condition that cannot be evaluated (its field is missing from
/// this case or proposal) is an exception in itself: the case goes to that
/// gate's reviewers, never decided on a test that did not run.
fn gate_for<'m>(
    mission: &'m Mission,
    input: &Value,
    proposal: &Value,
    requested: Option<&(String, String)>,
) -> Option<(&'m missions::Gate, entries::GateWhy)> {
    match requested {
        Some((name, reason)) => mission.gates.iter().find(|g| &g.name == name).map(|g| {
            let why = entries::GateWhy {
                requested_by: Some("agent".into()),
                reason: Some(reason.clone()),
                ..entries::GateWhy::default()
            };
            (g, why)
        }),
        None => mission.gates.iter().find_map(|g| {
            let field = Some(g.when.field.as_str().to_owned());
            match g.when.evaluate(input, proposal) {
                Ok(true) => Some((g, entries::GateWhy { field, ..entries::GateWhy::default() })),
                Ok(false) => None,
                Err(e) => Some((
                    g,
                    entries::GateWhy { field, unevaluable: Some(e.to_string()), ..entries::GateWhy::default() },
                )),
            }
        }),
    }
}

/// A projection's error inside a journal commit: the batch is rolled back.
pub(crate) fn projection(e: state::StateError) -> LedgerError {
    match e {
        state::StateError::Storage(e) => LedgerError::Storage(e),
        corrupt @ state::StateError::Corrupt { .. } => {
            LedgerError::Storage(redb::Error::Corrupted(corrupt.to_string()))
        }
    }
}

/// Starts a task afresh: opens its budget account (unless a deferred run
/// already did), journals `task.started` with everything a replay needs
/// (input, module, clock, seed), and returns the cell's env and input.
fn start_task(
    ctx: &MissionCtx,
    agent: &AgentRuntime,
    case: &missions::Case,
    index: u32,
    account: &str,
    parent: Option<entries::ParentLink>,
    record: &mut TaskRecord,
) -> Result<(CellEnv, String)> {
    // The agent learns which model it may use through its input.
    let mut input = case.input.clone();
    if let Value::Object(map) = &mut input {
        map.insert("_model".into(), Value::String(agent.spec.model.clone()));
    }
    let input_text = serde_json::to_string(&input)?;
    // The cell's clock starts at the task's start and its random numbers
    // come from a seed; both are journaled, so the task can be replayed.
    let started_us = now_us();
    let env = CellEnv { clock_start_us: started_us, seed: CellEnv::seed_for(&ctx.id, index) };
    let started = entries::TaskStarted {
        mission: ctx.id.clone(),
        task: index,
        case: case.id.clone(),
        origin: case.origin.clone(),
        agent: agent.spec.name.clone(),
        module_blake3: agent.module.hash().to_string(),
        input,
        clock_start_us: env.clock_start_us,
        seed: hex::encode(env.seed),
        parent,
    };
    let (conductor, account, parent, task_limit, fresh) = (
        ctx.conductor.clone(),
        account.to_owned(),
        agent_account(&ctx.id, &agent.spec.name),
        agent.spec.budget.task_limit,
        record.clone(),
    );
    // In a group commit shared with other tasks' writes, and durable
    // before the cell runs: every entry of the attempt comes after it.
    // Opening the account is a budget posting, so it runs with the group's
    // other postings and shares their `budget.batch` entry.
    let signer = conductor.clone();
    let seq = crate::data::commit_posting_first(
        &ctx.committer,
        move |t| {
            // A task deferred for lack of budget already has its account.
            if t.account(&account).is_err() {
                t.open_account(&signer, &account, Some(&parent), task_limit, now_us())?;
            }
            Ok(())
        },
        move |t, ()| {
            let (seq, _) = entries::append(t, &conductor, &started, started_us)?;
            crate::intake::dequeue(t.redb(), &started.mission, started.task)?;
            let mut record = fresh.clone();
            record.spans = vec![(seq, None)];
            state::put_task(t.redb(), &record).map_err(projection)?;
            Ok(seq)
        },
    )?;
    record.spans = vec![(seq, None)];
    Ok((env, input_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_module_cache_is_taken_from_the_working_directory() {
        let cache = module_cache_dir(Some(Path::new("modules/cache"))).expect("a cache");
        assert!(cache.is_absolute(), "{}", cache.display());
        assert_eq!(cache, std::env::current_dir().expect("cwd").join("modules/cache"));
        assert_eq!(module_cache_dir(Some(Path::new("off"))), None);
    }
}

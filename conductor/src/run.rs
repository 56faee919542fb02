//! Running a mission: declare it in the journal, run each case in its own
//! cell (bounded concurrency), route proposals through the gates, and
//! finish with a status derived from the tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cells::{AgentModule, CellEngine, CellLimits};
use identity::{Keypair, Role};
use missions::{Agent, Mission};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::clock::now_us;
use crate::data::DataDir;
use crate::host::{MissionCtx, TaskHost, TaskMeter};
use crate::inference::Router;
use crate::progress::Progress;
use crate::state::{self, GateRecord, GateStatus, MissionRecord, MissionStatus, TaskRecord, TaskStatus};

/// Cells alive at once is bounded by the engine's pool; stay well below.
pub const CONCURRENCY_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub data: PathBuf,
    pub concurrency: usize,
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
}

pub async fn run_mission(
    mission_path: &Path,
    mission: Mission,
    router: Arc<Router>,
    cfg: &RunConfig,
    progress: Arc<Progress>,
) -> Result<RunOutcome> {
    // Every agent's model must be registered before anything is journaled.
    for agent in &mission.agents {
        router.registry().get(&agent.model).with_context(|| format!("agent `{}`", agent.name))?;
    }
    let engine = Arc::new(CellEngine::new()?);
    let data = DataDir::open_or_create(&cfg.data)?;
    let mission_id = uuid::Uuid::new_v4().to_string();
    let mission_bytes = std::fs::read(mission_path)
        .with_context(|| format!("reading {}", mission_path.display()))?;

    let mut agents = Vec::new();
    for spec in &mission.agents {
        let module = engine.load_file(&spec.module)?;
        let key_path = data.agent_key_path(&mission_id, &spec.name);
        let key = Keypair::generate(Role::Agent);
        key.save(&key_path)?;
        agents.push(AgentRuntime { spec: spec.clone(), module, key: Arc::new(key) });
    }
    let agents = Arc::new(agents);

    // Declare the mission, its budget, its agents' keys, its seed memory
    // and every task, in one commit: either the mission exists whole or not.
    let conductor = data.conductor.clone();
    let tasks_total = u32::try_from(mission.tasks.cases.len()).context("too many cases")?;
    data.ledger.write(|t| -> Result<()> {
        let now = now_us();
        let models: serde_json::Map<String, Value> = mission
            .models
            .iter()
            .map(|(name, price)| {
                let sha = router.registry().get(name).map(|s| s.sha256.clone()).ok();
                (name.clone(), json!({"prompt_price": price.prompt_price,
                                      "completion_price": price.completion_price,
                                      "sha256": sha}))
            })
            .collect();
        let (declared_seq, _) = t.append(
            &conductor,
            "mission.declared",
            &json!({
                "mission": mission_id,
                "name": mission.name,
                "file": mission_path.display().to_string(),
                "file_blake3": blake3::hash(&mission_bytes).to_hex().to_string(),
                "budget": {"limit": mission.budget.limit, "on_exhausted": "stop"},
                "models": models,
                "agents": agents.iter().map(|a| json!({
                    "name": a.spec.name, "model": a.spec.model,
                    "module_blake3": a.module.hash().to_string(),
                    "limits": {"memory_bytes": a.spec.limits.memory_bytes, "fuel": a.spec.limits.fuel,
                               "wall_ms": a.spec.limits.wall_ms, "host_calls": a.spec.limits.host_calls,
                               "max_tokens": a.spec.limits.max_tokens},
                })).collect::<Vec<_>>(),
                "gates": mission.gates.iter().map(|g| json!({"name": g.name, "field": g.when.field.as_str(),
                                                             "test": format!("{:?}", g.when.test)}))
                    .collect::<Vec<_>>(),
                "tasks": tasks_total,
            }),
            now,
        )?;
        t.open_account(&conductor, &mission_id, mission.budget.limit, now)?;
        for a in agents.iter() {
            t.register_key(
                &conductor,
                &a.key.public(),
                Role::Agent,
                json!({"mission": mission_id, "agent": a.spec.name}),
                now,
            )?;
        }
        for fact in &mission.memory {
            memory::assert(
                t.redb(),
                memory::NewFact {
                    subject: fact.subject.clone(),
                    predicate: fact.predicate.clone(),
                    value: fact.value.clone(),
                    valid_from: fact.valid_from,
                    valid_to: fact.valid_to,
                },
                now,
            )?;
            t.append(
                &conductor,
                "memory.asserted",
                &json!({"mission": mission_id, "subject": fact.subject, "predicate": fact.predicate,
                        "value": fact.value, "valid_from": fact.valid_from, "valid_to": fact.valid_to}),
                now,
            )?;
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
            state::put_task(t.redb(), &new_task(&mission_id, index, &case.id, &mission.tasks.agent))?;
        }
        Ok(())
    })?;
    progress.started(&mission.name, &mission_id, tasks_total, mission.budget.limit);

    let ctx = Arc::new(MissionCtx {
        id: mission_id.clone(),
        ledger: data.ledger.clone(),
        conductor: conductor.clone(),
        router,
        runtime: tokio::runtime::Handle::current(),
        prices: mission.models.clone(),
        budget_exhausted: AtomicBool::new(false),
    });
    let mission = Arc::new(mission);
    let concurrency = cfg.concurrency.clamp(1, CONCURRENCY_MAX);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    for index in 0..tasks_total {
        let permit = permits.clone().acquire_owned().await.context("task scheduler closed")?;
        let (ctx, mission, agents, engine, progress) =
            (ctx.clone(), mission.clone(), agents.clone(), engine.clone(), progress.clone());
        running.spawn_blocking(move || {
            let _permit = permit;
            let result = run_task(&ctx, &mission, &agents, &engine, index);
            let record = match result {
                Ok(record) => record,
                Err(e) => {
                    // Storage failed under this task; record what we can.
                    let mut r = new_task(&ctx.id, index, "?", "?");
                    r.status = TaskStatus::Failed;
                    r.failure = Some(format!("{e:#}"));
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
    while let Some(done) = running.join_next().await {
        done.context("a task thread panicked")?;
    }

    let exhausted = ctx.budget_exhausted.load(Ordering::SeqCst);
    let status = data.ledger.write(|t| -> Result<MissionStatus> {
        let tasks = state::tasks_in(t.redb(), &mission_id)?;
        let status = state::settle_status(&tasks, exhausted);
        let account = t.account(&mission_id)?;
        t.append(
            &conductor,
            "mission.finished",
            &json!({"mission": mission_id, "status": status,
                    "budget": {"limit": account.limit, "settled": account.settled,
                               "pending": account.pending}}),
            now_us(),
        )?;
        if let Some(mut record) = state::mission_in(t.redb(), &mission_id)? {
            record.status = status;
            state::put_mission(t.redb(), &record)?;
        }
        Ok(status)
    })?;
    progress.finished();
    Ok(RunOutcome { mission_id, status })
}

fn new_task(mission: &str, index: u32, case_id: &str, agent: &str) -> TaskRecord {
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
    }
}

/// Runs one case in a fresh cell and records how it ended.
fn run_task(
    ctx: &Arc<MissionCtx>,
    mission: &Mission,
    agents: &[AgentRuntime],
    engine: &CellEngine,
    index: u32,
) -> Result<TaskRecord> {
    let case = &mission.tasks.cases[index as usize];
    let agent = agents
        .iter()
        .find(|a| a.spec.name == mission.tasks.agent)
        .context("validated mission names a known agent")?;
    let mut record = new_task(&ctx.id, index, &case.id, &agent.spec.name);

    if ctx.budget_exhausted.load(Ordering::SeqCst) {
        // Stop policy: once the budget refused a call, start nothing new.
        record.status = TaskStatus::Skipped;
        record.failure = Some("budget exhausted before this task started".into());
        ctx.ledger.write(|t| -> Result<()> {
            t.append(
                &ctx.conductor,
                "task.skipped",
                &json!({"mission": ctx.id, "task": index, "case": case.id, "reason": "budget_exhausted"}),
                now_us(),
            )?;
            state::put_task(t.redb(), &record)?;
            Ok(())
        })?;
        return Ok(record);
    }

    // The agent learns which model it may use through its input.
    let mut input = case.input.clone();
    if let Value::Object(map) = &mut input {
        map.insert("_model".into(), Value::String(agent.spec.model.clone()));
    }
    let input_text = serde_json::to_string(&input)?;
    record.status = TaskStatus::Running;
    ctx.ledger.write(|t| -> Result<()> {
        t.append(
            &ctx.conductor,
            "task.started",
            &json!({"mission": ctx.id, "task": index, "case": case.id, "origin": case.origin,
                    "agent": agent.spec.name, "module_blake3": agent.module.hash().to_string(),
                    "input": input}),
            now_us(),
        )?;
        state::put_task(t.redb(), &record)?;
        Ok(())
    })?;

    let limits = CellLimits {
        memory_bytes: agent.spec.limits.memory_bytes,
        fuel: agent.spec.limits.fuel,
        wall_ms: agent.spec.limits.wall_ms,
        host_calls: agent.spec.limits.host_calls,
        call_arg_bytes_max: CellLimits::CALL_ARG_BYTES_DEFAULT,
        output_bytes_max: CellLimits::OUTPUT_BYTES_DEFAULT,
    };
    let meter = Arc::new(TaskMeter::default());
    let host = TaskHost {
        ctx: ctx.clone(),
        task: index,
        agent_key: agent.key.clone(),
        model: agent.spec.model.clone(),
        max_tokens_cap: agent.spec.limits.max_tokens,
        deadline: Instant::now() + Duration::from_millis(limits.wall_ms),
        meter: meter.clone(),
    };
    let result = engine.run(&agent.module, Box::new(host), &limits, &input_text);
    record.tokens_reserved = meter.reserved.load(Ordering::Relaxed);
    record.tokens_settled = meter.settled.load(Ordering::Relaxed);
    record.model_calls = meter.model_calls.load(Ordering::Relaxed);

    ctx.ledger.write(|t| -> Result<()> {
        let now = now_us();
        match result {
            Err(failure) => {
                record.status = TaskStatus::Failed;
                record.failure = Some(failure.to_string());
                t.append(
                    &ctx.conductor,
                    "task.failed",
                    &json!({"mission": ctx.id, "task": index, "case": case.id,
                            "code": failure.code(), "message": failure.to_string()}),
                    now,
                )?;
            }
            Ok(decision) => {
                let details: Value = serde_json::from_str(&decision.details)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                let proposal = json!({"outcome": decision.outcome, "reason": decision.reason,
                                      "details": details});
                let (proposed_seq, _) = t.append(
                    &agent.key,
                    "task.proposed",
                    &json!({"mission": ctx.id, "task": index, "case": case.id, "decision": proposal}),
                    now,
                )?;
                record.outcome = Some(decision.outcome.clone());
                record.reason = Some(decision.reason.clone());
                match mission.gates.iter().find(|g| g.when.matches(&case.input, &proposal)) {
                    Some(gate) => {
                        let gate_id = uuid::Uuid::new_v4().to_string();
                        let (requested_seq, _) = t.append(
                            &ctx.conductor,
                            "gate.requested",
                            &json!({"mission": ctx.id, "task": index, "case": case.id,
                                    "gate_id": gate_id, "gate": gate.name,
                                    "field": gate.when.field.as_str(), "proposal_seq": proposed_seq}),
                            now,
                        )?;
                        state::put_gate(
                            t.redb(),
                            &GateRecord {
                                id: gate_id.clone(),
                                gate: gate.name.clone(),
                                mission: ctx.id.clone(),
                                task: index,
                                case_id: case.id.clone(),
                                status: GateStatus::Pending,
                                proposed_outcome: decision.outcome,
                                proposed_reason: decision.reason,
                                proposed_details: details,
                                reviewer: None,
                                note: None,
                                requested_seq,
                            },
                        )?;
                        record.status = TaskStatus::AwaitingReview;
                        record.gate = Some(gate_id);
                    }
                    None => {
                        t.append(
                            &ctx.conductor,
                            "task.decided",
                            &json!({"mission": ctx.id, "task": index, "case": case.id,
                                    "outcome": decision.outcome, "decided_by": "agent",
                                    "proposal_seq": proposed_seq}),
                            now,
                        )?;
                        record.status = TaskStatus::Decided;
                        record.decided_by = Some("agent".into());
                    }
                }
            }
        }
        state::put_task(t.redb(), &record)?;
        Ok(())
    })?;
    Ok(record)
}

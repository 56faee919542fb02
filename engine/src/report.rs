//! `mission report`: how a mission's work flowed (cycle times, exceptions,
//! reviewers' time to decision), computed from the journal alone in one
//! streaming pass, so it can be trusted as far as the journal verifies and
//! costs no memory per entry.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use ledger::{Entry, Kind};
use serde_json::{Value, json};

use crate::entries::{
    self, GateDecided, GateEscalated, GateRequested, GateTimedOut, HostInfer, MissionCompleted, MissionDeclared,
    MissionFinished, TaskDecided, TaskFailed, TaskSkipped, TaskStarted,
};

/// What one gate name saw over the mission.
#[derive(Debug, Default)]
struct GateStats {
    requested: u64,
    approved: u64,
    rejected: u64,
    timed_out: u64,
    escalated: u64,
    /// Microseconds from request to decision, one per decided gate.
    waits: Vec<i64>,
}

/// What one agent did over the mission (children included).
#[derive(Debug, Default)]
struct AgentStats {
    started: u64,
    decided: u64,
    failed: u64,
    skipped: u64,
    model_calls: u64,
    spent: u64,
}

/// Where one task sits in its case's tree of delegations.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// The case's own task at the root.
    root: u32,
    depth: u32,
}

/// The report for `mission` as a JSON document (see `render`).
pub fn build(dir: &Path, mission: &str) -> Result<Value> {
    let db = crate::data::db_path(dir)?;
    let mut name = None;
    let mut declared_at = None;
    let mut ended_at = None;
    // task index -> (first start, end)
    let mut tasks: BTreeMap<u64, (Option<i64>, Option<(i64, String)>)> = BTreeMap::new();
    let mut excepted = std::collections::BTreeSet::new();
    // gate id -> (gate name, requested at)
    let mut open: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut gates: BTreeMap<String, GateStats> = BTreeMap::new();
    let mut agents: BTreeMap<String, AgentStats> = BTreeMap::new();
    // task index -> its agent and place in its tree (first start).
    let mut placed: BTreeMap<u32, (String, Place)> = BTreeMap::new();
    ledger::scan_journal(&db, |e: Entry| -> Result<bool> {
        // Other kinds, and entries of other missions, count for nothing.
        let Some(kind) = Kind::parse(&e.kind) else {
            return Ok(true);
        };
        match kind {
            Kind::MissionDeclared => {
                let p: MissionDeclared = entries::decode(&e)?;
                if p.mission == mission {
                    name = Some(p.name);
                    declared_at = Some(e.time_us);
                }
            }
            Kind::MissionFinished if entries::decode::<MissionFinished>(&e)?.mission == mission => {
                ended_at = Some(e.time_us);
            }
            Kind::MissionCompleted if entries::decode::<MissionCompleted>(&e)?.mission == mission => {
                ended_at = Some(e.time_us);
            }
            Kind::TaskStarted => {
                let p: TaskStarted = entries::decode(&e)?;
                if p.mission == mission {
                    let start = &mut tasks.entry(u64::from(p.task)).or_default().0;
                    let first = start.is_none();
                    start.get_or_insert(e.time_us);
                    if first {
                        agents.entry(p.agent.clone()).or_default().started += 1;
                        // A child's parent started before it did.
                        let place = match &p.parent {
                            None => Place { root: p.task, depth: 0 },
                            Some(link) => Place {
                                root: placed.get(&link.task).map_or(link.task, |(_, parent)| parent.root),
                                depth: link.depth,
                            },
                        };
                        placed.insert(p.task, (p.agent, place));
                    }
                }
            }
            Kind::HostInfer => {
                let p: HostInfer = entries::decode(&e)?;
                if p.mission == mission
                    && let Some((agent, _)) = placed.get(&p.task)
                    && p.refused.is_none()
                {
                    let stats = agents.entry(agent.clone()).or_default();
                    stats.model_calls += 1;
                    stats.spent += p.cost.unwrap_or(0);
                }
            }
            Kind::TaskDecided | Kind::TaskFailed | Kind::TaskSkipped => {
                let (of, task, outcome) = match kind {
                    Kind::TaskDecided => {
                        let p: TaskDecided = entries::decode(&e)?;
                        (p.mission, p.task, "decided")
                    }
                    Kind::TaskFailed => {
                        let p: TaskFailed = entries::decode(&e)?;
                        (p.mission, p.task, "failed")
                    }
                    _ => {
                        let p: TaskSkipped = entries::decode(&e)?;
                        (p.mission, p.task, "skipped")
                    }
                };
                if of == mission {
                    tasks.entry(u64::from(task)).or_default().1 = Some((e.time_us, outcome.to_owned()));
                    if let Some((agent, _)) = placed.get(&task) {
                        let stats = agents.entry(agent.clone()).or_default();
                        match outcome {
                            "decided" => stats.decided += 1,
                            "failed" => stats.failed += 1,
                            _ => stats.skipped += 1,
                        }
                    }
                }
            }
            Kind::GateRequested => {
                let p: GateRequested = entries::decode(&e)?;
                if p.mission == mission {
                    // A budget gate names no task.
                    if let Some(t) = p.task {
                        excepted.insert(u64::from(t));
                    }
                    gates.entry(p.gate.clone()).or_default().requested += 1;
                    open.insert(p.gate_id, (p.gate, e.time_us));
                }
            }
            Kind::GateDecided => {
                let p: GateDecided = entries::decode(&e)?;
                if p.mission == mission
                    && let Some((gate, requested)) = open.remove(&p.gate_id)
                {
                    let stats = gates.entry(gate).or_default();
                    match p.verdict.as_str() {
                        "approved" => stats.approved += 1,
                        _ => stats.rejected += 1,
                    }
                    stats.waits.push(e.time_us - requested);
                }
            }
            Kind::GateTimedOut => {
                let p: GateTimedOut = entries::decode(&e)?;
                if p.mission == mission
                    && let Some((gate, _)) = open.remove(&p.gate_id)
                {
                    gates.entry(gate).or_default().timed_out += 1;
                }
            }
            Kind::GateEscalated => {
                let p: GateEscalated = entries::decode(&e)?;
                if p.mission == mission {
                    gates.entry(p.gate).or_default().escalated += 1;
                }
            }
            _ => {}
        }
        Ok(true)
    })?;
    let Some(declared_at) = declared_at else {
        bail!("no mission `{mission}` in {}; `conductor mission show` lists missions by id", dir.display());
    };
    let mut cycles: Vec<i64> = tasks.values().filter_map(|(s, end)| Some(end.as_ref()?.0 - (*s)?)).collect();
    let count = |what: &str| tasks.values().filter(|(_, end)| end.as_ref().is_some_and(|(_, o)| o == what)).count();
    let started = tasks.values().filter(|(s, _)| s.is_some()).count();
    let last_end = tasks.values().filter_map(|(_, end)| end.as_ref().map(|(t, _)| *t)).max();
    let pending_gates: BTreeMap<&str, u64> = open.values().fold(BTreeMap::new(), |mut m, (g, _)| {
        *m.entry(g.as_str()).or_default() += 1;
        m
    });
    let gates_doc: Vec<Value> = gates
        .iter_mut()
        .map(|(gate, s)| {
            let (median, worst) = median_and_worst(&mut s.waits);
            json!({"gate": gate, "requested": s.requested, "approved": s.approved, "rejected": s.rejected,
                   "timed_out": s.timed_out, "escalated": s.escalated,
                   "pending": pending_gates.get(gate.as_str()).copied().unwrap_or(0),
                   "time_to_decision_us": {"median": median, "worst": worst}})
        })
        .collect();
    let (cycle_median, cycle_worst) = median_and_worst(&mut cycles);
    let agents_doc: Vec<Value> = agents
        .iter()
        .map(|(agent, a)| {
            json!({"agent": agent, "started": a.started, "decided": a.decided, "failed": a.failed,
                   "skipped": a.skipped, "model_calls": a.model_calls, "spent": a.spent})
        })
        .collect();
    // Trees: a case's task and every task delegated under it. Width: the
    // most tasks of one tree at one depth.
    let mut levels: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for (_, place) in placed.values() {
        *levels.entry((place.root, place.depth)).or_default() += 1;
    }
    let children = placed.values().filter(|(_, p)| p.depth > 0).count();
    let delegating: std::collections::BTreeSet<u32> =
        placed.values().filter(|(_, p)| p.depth > 0).map(|(_, p)| p.root).collect();
    let trees_doc = json!({
        "cases_that_delegated": delegating.len(),
        "children": children,
        "deepest": placed.values().map(|(_, p)| p.depth).max().unwrap_or(0),
        "widest": levels.iter().filter(|((_, depth), _)| *depth > 0).map(|(_, n)| *n).max().unwrap_or(0),
    });
    Ok(json!({
        "mission": mission,
        "name": name,
        "tasks": {"started": started, "decided": count("decided"), "failed": count("failed"),
                  "skipped": count("skipped"), "open": started - count("decided") - count("failed") - count("skipped")},
        "cycle_time_us": {
            "mission": ended_at.or(last_end).map(|end| end - declared_at),
            "task_median": cycle_median,
            "task_worst": cycle_worst,
        },
        "exceptions": {
            "tasks_sent_to_a_gate": excepted.len(),
            "rate": if started == 0 { 0.0 } else { excepted.len() as f64 / started as f64 },
        },
        "gates": gates_doc,
        "agents": agents_doc,
        "trees": trees_doc,
        "timeouts": gates.values().map(|s| s.timed_out).sum::<u64>(),
        "escalations": gates.values().map(|s| s.escalated).sum::<u64>(),
    }))
}

fn median_and_worst(values: &mut [i64]) -> (Option<i64>, Option<i64>) {
    values.sort_unstable();
    (values.get(values.len() / 2).copied(), values.last().copied())
}

fn duration(us: &Value) -> String {
    match us.as_i64() {
        None => "–".to_owned(),
        Some(us) if us < 1_000_000 => format!("{:.0} ms", us as f64 / 1e3),
        Some(us) if us < 120_000_000 => format!("{:.1} s", us as f64 / 1e6),
        Some(us) if us < 7_200_000_000 => format!("{:.1} min", us as f64 / 6e7),
        Some(us) => format!("{:.1} h", us as f64 / 3.6e9),
    }
}

/// A count for a padded column (`Value`'s Display ignores widths).
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A plain-text rendering of [`build`]'s document.
pub fn render(doc: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let t = &doc["tasks"];
    let c = &doc["cycle_time_us"];
    let _ = writeln!(s, "mission {} ({})", doc["mission"].as_str().unwrap_or("?"), doc["name"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "tasks       {} started: {} decided, {} failed, {} skipped, {} open",
        t["started"], t["decided"], t["failed"], t["skipped"], t["open"]
    );
    let _ = writeln!(
        s,
        "cycle time  mission {}; per task median {}, worst {}",
        duration(&c["mission"]),
        duration(&c["task_median"]),
        duration(&c["task_worst"])
    );
    let e = &doc["exceptions"];
    let _ = writeln!(
        s,
        "exceptions  {} tasks sent to a gate ({:.1}% of started)",
        e["tasks_sent_to_a_gate"],
        e["rate"].as_f64().unwrap_or(0.0) * 100.0
    );
    let _ = writeln!(s, "timeouts    {}; escalations {}", doc["timeouts"], doc["escalations"]);
    let tr = &doc["trees"];
    if n(&tr["children"]) > 0 {
        let _ = writeln!(
            s,
            "delegation  {} cases delegated to {} child tasks; deepest tree {} levels, widest {} tasks at one level",
            tr["cases_that_delegated"], tr["children"], tr["deepest"], tr["widest"]
        );
    }
    let _ = writeln!(
        s,
        "\n{:<24} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10}",
        "agent", "started", "decided", "failed", "skipped", "model calls", "spent"
    );
    for a in doc["agents"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10}",
            a["agent"].as_str().unwrap_or("?"),
            n(&a["started"]),
            n(&a["decided"]),
            n(&a["failed"]),
            n(&a["skipped"]),
            n(&a["model_calls"]),
            n(&a["spent"])
        );
    }
    let _ = writeln!(
        s,
        "\n{:<24} {:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12}",
        "gate", "requested", "approved", "rejected", "pending", "timed out", "median wait", "worst wait"
    );
    for g in doc["gates"].as_array().into_iter().flatten() {
        let w = &g["time_to_decision_us"];
        let _ = writeln!(
            s,
            "{:<24} {:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12}",
            g["gate"].as_str().unwrap_or("?"),
            n(&g["requested"]),
            n(&g["approved"]),
            n(&g["rejected"]),
            n(&g["pending"]),
            n(&g["timed_out"]),
            duration(&w["median"]),
            duration(&w["worst"])
        );
    }
    s
}

//! Crash recovery: the conductor is killed with SIGKILL at random points
//! while it works through a mission on the real model, then started again
//! on the same data directory, over and over. Whatever the kill interrupted
//! (model load, an inference in flight, a journal commit), the mission
//! ends with every task finished exactly once, no model call paid twice,
//! no reservation left open, a journal that verifies, and every task
//! replaying from the journal alone.
//!
//! `CONDUCTOR_CRASH_KILLS` (default 20) sets how many kills; the soak in
//! BENCHMARKS.md is this test with a larger number. The kill times come
//! from a seed printed at the start (`CONDUCTOR_CRASH_SEED` repeats one).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Cases per mission: enough that a run usually dies before finishing.
const CASES: usize = 10;
/// Amounts above this go to review (the triage agent's policy fact).
const REVIEW_ABOVE: u64 = 5000;

/// xorshift64*: reproducible kill times without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly early (start-up, model load, first calls), sometimes late
    /// (calls in flight, decisions being committed).
    fn kill_after(&mut self) -> Duration {
        let ms = if self.next() % 10 < 7 { 20 + self.next() % 1500 } else { 1500 + self.next() % 3000 };
        Duration::from_millis(ms)
    }
}

fn amount(i: usize) -> u64 {
    if i % 4 == 1 { 9000 + i as u64 } else { 100 + i as u64 }
}

fn write_mission(dir: &Path) -> std::path::PathBuf {
    let agent = module("cells/guests/triage/rust/triage-rs.wasm");
    let cases: Vec<String> = (0..CASES).map(|i| format!("{{ id: c{i}, amount: {} }}", amount(i))).collect();
    let text = format!(
        "name: crash\n\
         budget: {{ limit: 1000000 }}\n\
         models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
         agents:\n  - {{ name: triage, module: {}, model: smollm2-135m, limits: {{ host_calls: 16, max_tokens: 8 }} }}\n\
         tasks:\n  - {{ agent: triage, inline: [{}] }}\n\
         memory:\n  - {{ subject: \"policy:triage\", predicate: review-above, value: \"{REVIEW_ABOVE}\", valid_from: 2026-01-01T00:00:00Z }}\n\
         gates:\n  - {{ name: large-amount, when: {{ field: case.amount, greater_than: 1000000000 }} }}\n",
        agent.display(),
        cases.join(", ")
    );
    let path = dir.join("crash.yaml");
    std::fs::write(&path, text).expect("mission");
    path
}

/// The journal as JSON lines, through the CLI (read-only).
fn journal(data: &Path) -> Vec<Value> {
    let out = conductor().args(["audit", "log", "--json", "--data"]).arg(data).output().expect("audit log");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Everything that must hold once a killed-and-restarted mission is done.
fn check_mission(data: &Path, summary: &Value) {
    let tasks = tasks(summary);
    assert_eq!(tasks.len(), CASES);
    for t in tasks {
        let i: usize = t["case_id"].as_str().and_then(|c| c[1..].parse().ok()).expect("case id");
        let expected = if amount(i) > REVIEW_ABOVE { "awaiting_review" } else { "decided" };
        assert_eq!(t["status"], expected, "{t}");
        assert_eq!(t["model_calls"], 1, "one paid model call per task, crashes or not: {t}");
    }
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");

    let entries = journal(data);
    let mission = summary["mission_id"].as_str().expect("id");
    let ours = |e: &&Value| e["payload"]["mission"] == mission;
    let mut ends: BTreeMap<u64, usize> = BTreeMap::new();
    let mut answered: BTreeMap<u64, usize> = BTreeMap::new();
    let mut settled_cost = 0u64;
    for e in entries.iter().filter(ours) {
        let task = e["payload"]["task"].as_u64();
        match e["kind"].as_str().unwrap_or_default() {
            "task.proposed" | "task.failed" => *ends.entry(task.expect("task")).or_default() += 1,
            "host.infer" if e["payload"].get("text").is_some() => {
                *answered.entry(task.expect("task")).or_default() += 1;
                settled_cost += e["payload"]["cost"].as_u64().expect("cost");
            }
            _ => {}
        }
    }
    for task in 0..CASES as u64 {
        assert_eq!(ends.get(&task), Some(&1), "task {task} ended exactly once in the journal");
        assert_eq!(answered.get(&task), Some(&1), "task {task}'s model call was answered (and paid) once");
    }
    assert_eq!(summary["budget"]["settled"], settled_cost, "spend is exactly the answered calls' cost");

    // After every crash.
    assert_verifies_and_replays(data);
}

/// The number of kills (`CONDUCTOR_CRASH_KILLS`, default 20) and a seeded
/// generator of kill times (`CONDUCTOR_CRASH_SEED` repeats one).
fn kills_and_rng() -> (usize, Rng) {
    let kills_wanted: usize = std::env::var("CONDUCTOR_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = std::env::var("CONDUCTOR_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("kill seed {seed} (CONDUCTOR_CRASH_SEED={seed} repeats these kill times)");
    (kills_wanted, Rng(seed))
}

/// Runs `mission` on fresh data directories, killing each run at a random
/// time until a run finishes it, then `check`s it; again until there have
/// been `kills_wanted` kills.
fn kill_until_done(dir: &Path, mission: &Path, kills_wanted: usize, rng: &mut Rng, check: impl Fn(&Path, &Value)) {
    let (mut kills, mut missions, mut round) = (0, 0, 0);
    let started = Instant::now();
    while kills < kills_wanted {
        // One mission at a time: killed until a run gets to finish it.
        round += 1;
        let data = dir.join(format!("data-{round}"));
        loop {
            let log = dir.join(format!("run-{round}.stderr"));
            let mut child = conductor()
                .arg("run")
                .arg(mission)
                .args(["--concurrency", "2", "--json", "--data"])
                .arg(&data)
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("conductor starts");
            let deadline =
                Instant::now() + if kills < kills_wanted { rng.kill_after() } else { Duration::from_secs(600) };
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            match status {
                None => {
                    child.kill().expect("SIGKILL");
                    child.wait().expect("reaped");
                    kills += 1;
                }
                Some(status) => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(child.stdout.as_mut().expect("stdout"), &mut out).expect("read");
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    // Killed after the mission finished but before the
                    // process exited: the next run says it already ran,
                    // and the mission is read back as it stands.
                    if let Some(id) = already_ran(&log) {
                        let shown = run(conductor().args(["mission", "show", &id, "--json", "--data"]).arg(&data));
                        assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
                        out = shown.stdout;
                    } else {
                        assert_eq!(status.code(), Some(0), "a run that was not killed succeeds: {log}");
                    }
                    let summary: Value = serde_json::from_slice(&out).expect("summary");
                    check(&data, &summary);
                    missions += 1;
                    break;
                }
            }
        }
    }
    eprintln!("{kills} kills over {missions} missions in {:.0?}, every invariant held", started.elapsed());
}

/// The mission id in `run`'s refusal to run a finished mission again.
fn already_ran(log: &str) -> Option<String> {
    let (before, _) = log.split_once(" from this file already ran in ")?;
    Some(before.rsplit_once("mission ")?.1.trim().to_owned())
}

#[test]
fn killed_at_random_points_the_mission_still_finishes_every_task_exactly_once() {
    model_file();
    let (kills_wanted, mut rng) = kills_and_rng();
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = write_mission(dir.path());
    kill_until_done(dir.path(), &mission, kills_wanted, &mut rng, check_mission);
}

/// Parents in a delegating mission; each delegates `CHILDREN` sub-tasks.
const PARENTS: usize = 4;
const CHILDREN: usize = 3;

/// A delegating mission on the real model: each case's `lead` pays for one
/// model call, then delegates to three `checker` children that each pay
/// for one, and combines their answers.
fn write_swarm_mission(dir: &Path) -> std::path::PathBuf {
    let agent = module("cells/guests/delegate-agent/delegate.wasm");
    let child = "{ agent: checker, input: { spend: 4, outcome: checked } }";
    let children = [child; CHILDREN].join(", ");
    let cases: Vec<String> =
        (0..PARENTS).map(|i| format!("{{ id: p{i}, spend: 4, delegate: [{children}] }}")).collect();
    let text = format!(
        "name: crash-swarm\n\
         budget: {{ limit: 1000000 }}\n\
         models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
         agents:\n\
         \x20 - {{ name: lead, module: {0}, model: smollm2-135m, delegates_to: [checker], limits: {{ max_tokens: 8 }} }}\n\
         \x20 - {{ name: checker, module: {0}, model: smollm2-135m, limits: {{ max_tokens: 8 }} }}\n\
         tasks:\n  - {{ agent: lead, inline: [{1}] }}\n",
        agent.display(),
        cases.join(", ")
    );
    let path = dir.join("swarm.yaml");
    std::fs::write(&path, text).expect("mission");
    path
}

/// What must hold once a killed-and-restarted delegating mission is done:
/// every parent and child ended once, every model call was paid once, each
/// parent delegated once and was joined once, and the journal verifies
/// and replays.
fn check_swarm(data: &Path, summary: &Value) {
    let all = tasks(summary);
    assert_eq!(all.len(), PARENTS * (1 + CHILDREN), "{summary}");
    for t in all {
        assert_eq!(t["status"], "decided", "{t}");
    }
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");
    let entries = journal(data);
    let mission = summary["mission_id"].as_str().expect("id");
    let ours = |e: &&Value| e["payload"]["mission"] == mission;
    let mut ends: BTreeMap<u64, usize> = BTreeMap::new();
    let mut answered: BTreeMap<u64, usize> = BTreeMap::new();
    let mut delegated: BTreeMap<u64, usize> = BTreeMap::new();
    let mut joined: BTreeMap<u64, usize> = BTreeMap::new();
    let mut settled_cost = 0u64;
    for e in entries.iter().filter(ours) {
        let task = e["payload"]["task"].as_u64();
        match e["kind"].as_str().unwrap_or_default() {
            "task.decided" | "task.failed" | "task.skipped" => *ends.entry(task.expect("task")).or_default() += 1,
            "host.infer" if e["payload"].get("text").is_some() => {
                *answered.entry(task.expect("task")).or_default() += 1;
                settled_cost += e["payload"]["cost"].as_u64().expect("cost");
            }
            "task.delegated" => *delegated.entry(task.expect("task")).or_default() += 1,
            "task.joined" => *joined.entry(task.expect("task")).or_default() += 1,
            _ => {}
        }
    }
    for task in 0..(PARENTS * (1 + CHILDREN)) as u64 {
        assert_eq!(ends.get(&task), Some(&1), "task {task} ended exactly once in the journal");
        assert_eq!(answered.get(&task), Some(&1), "task {task}'s model call was answered (and paid) once");
    }
    for parent in 0..PARENTS as u64 {
        assert_eq!(delegated.get(&parent), Some(&1), "parent {parent} delegated once");
        assert_eq!(joined.get(&parent), Some(&1), "parent {parent} was joined once");
    }
    assert_eq!(summary["budget"]["settled"], settled_cost, "spend is exactly the answered calls' cost");
    // After every crash.
    assert_verifies_and_replays(data);
}

#[test]
fn a_delegating_mission_killed_at_random_points_ends_every_parent_and_child_once() {
    model_file();
    let (kills_wanted, mut rng) = kills_and_rng();
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = write_swarm_mission(dir.path());
    kill_until_done(dir.path(), &mission, kills_wanted, &mut rng, check_swarm);
}

/// A journal that no longer verifies is never built upon: recovering an
/// interrupted mission on it is refused, naming the bad entry.
#[test]
fn recovery_refuses_a_journal_that_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    // One task that computes for far longer than we wait: the kill lands
    // while it runs, so the mission is left "running".
    let mission = write_mission_file(
        dir.path(),
        &hostile,
        "{ fuel: 500000000000, wall_ms: 120000 }",
        "[{ id: busy, behave: spin }]",
    );
    let data = dir.path().join("data");
    let mut child = conductor()
        .arg("run")
        .arg(&mission)
        .arg("--data")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().expect("wait").is_none(), "still computing when killed");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    // Flip one payload byte of an early entry.
    let db_path = data.join("conductor.redb");
    {
        let journal: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");
        let db = redb::Database::open(&db_path).expect("open db");
        let txn = db.begin_write().expect("txn");
        {
            use redb::ReadableTable;
            let mut table = txn.open_table(journal).expect("table");
            let mut record = table.get(2).expect("get").expect("entry 2").value().to_vec();
            let at = record.len() - 96 - 2;
            record[at] ^= 0x20;
            table.insert(2, record.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    // (redb itself may rewrite its allocator state after the unclean stop,
    // so the journal, not the file's bytes, is what must not change.)
    let before = journal(&data);
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(1), "recovery is refused");
    assert!(stderr(&out).contains("does not verify at entry 2"), "{}", stderr(&out));
    let after = journal(&data);
    assert!(before == after, "nothing was journaled: {} entries before, {} after", before.len(), after.len());
}

fn write_mission_file(dir: &Path, module: &Path, limits: &str, cases: &str) -> std::path::PathBuf {
    let path = dir.join("busy.yaml");
    std::fs::write(
        &path,
        format!(
            "name: busy\nbudget: {{ limit: 1000 }}\n\
             models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
             agents:\n  - {{ name: worker, module: {}, model: smollm2-135m, limits: {limits} }}\n\
             tasks: {{ agent: worker, inline: {cases} }}\n",
            module.display()
        ),
    )
    .expect("mission");
    path
}

/// Projections that disagree with the journal are reported, never
/// repaired: a finished task whose record is edited back to "running" is
/// not run (and decided) a second time.
#[test]
fn recovery_refuses_projections_that_disagree_with_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let mission = write_mission_file(dir.path(), &hostile, "{}", "[{ id: done, behave: echo }]");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Edit the projections: the mission and its one task "still running".
    {
        let missions: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("conductor_missions");
        let tasks: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("conductor_tasks");
        let db = redb::Database::open(data.join("conductor.redb")).expect("open db");
        let txn = db.begin_write().expect("txn");
        for table in [missions, tasks] {
            use redb::ReadableTable;
            let mut t = txn.open_table(table).expect("table");
            let rows: Vec<(String, Value)> = t
                .iter()
                .expect("iter")
                .map(|r| {
                    let (k, v) = r.expect("row");
                    (k.value().to_owned(), serde_json::from_slice(v.value()).expect("json"))
                })
                .collect();
            for (key, mut record) in rows {
                record["status"] = Value::from("running");
                t.insert(key.as_str(), serde_json::to_vec(&record).expect("json").as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let before = journal(&data);
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(1), "refused");
    assert!(stderr(&out).contains("projections disagree with its journal"), "{}", stderr(&out));
    let after = journal(&data);
    let decided = |j: &[Value]| j.iter().filter(|e| e["kind"] == "task.decided").count();
    assert_eq!(decided(&after), 1, "decided once");
    assert_eq!(after.len(), before.len(), "nothing was journaled");
}

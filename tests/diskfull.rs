//! A full disk mid-mission (issue #19): every action is recorded, or it
//! did not happen. The data directory sits on a tmpfs made too small for
//! the mission, so the journal's database fills while tasks run. The run
//! must stop with a clear error (exit 7, not a panic), claim nothing the
//! journal lacks (no task reported decided, or failed, that the journal
//! does not show so), and, once space is freed, the same command must
//! recover the mission: the journal verifies, every task ends exactly
//! once, every model call is journaled and paid exactly once.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where `mount` fails the test
//! says why and does nothing else.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// Enough cases that the disk fills well inside the mission.
const CASES: usize = 60;

/// A size-limited tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size_kib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k,mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(Tmpfs { dir: dir.to_owned() })
    }

    /// Gives the filesystem `size_kib`, keeping what it holds.
    fn resize(&self, size_kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_kib}k")])
            .arg(&self.dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remounting {} with {size_kib} KiB: {status}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a conductor left running by a failed assertion):
            // detach it, so the temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Bytes of storage the files under `path` take (what counts against a
/// tmpfs's size).
fn used_bytes(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).expect("stat");
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            total += used_bytes(&entry.expect("entry").path());
        }
    }
    total
}

fn scripted_registry(path: &Path) {
    std::fs::write(
        path,
        "models:\n  smollm2-135m:\n    kind: scripted\n    context_tokens: 2048\n    prompt_price: 1\n    \
         completion_price: 1\n",
    )
    .expect("registry");
}

/// `conductor run` of `mission` on `data` with the scripted models.
fn run_mission(mission: &Path, registry: &Path, data: &Path) -> std::process::Output {
    run(conductor().arg("run").arg(mission).arg("--models").arg(registry).arg("--data").arg(data).arg("--json"))
}

/// The progress lines of a run (`[k/n] task I CASE: WHAT (tokens …)`),
/// as case id → what the run said about it.
fn reported(stderr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in stderr.lines().filter(|l| l.starts_with('[')) {
        let Some((_, rest)) = line.split_once("] task ") else { continue };
        let Some((task, what)) = rest.split_once(": ") else { continue };
        let case = task.split_whitespace().nth(1).expect("a case id").to_owned();
        let what = what.rsplit_once(" (tokens").map_or(what, |(w, _)| w).to_owned();
        assert!(out.insert(case.clone(), what).is_none(), "case {case} reported twice in one run:\n{stderr}");
    }
    out
}

/// The journal as JSON lines (read-only).
fn entries(data: &Path) -> Vec<Value> {
    let out = run(conductor().args(["audit", "log", "--json", "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0), "audit log: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Every budget posting, standalone or inside a `budget.batch`, as
/// (kind, payload).
fn postings(entries: &[Value]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in entries {
        let kind = e["kind"].as_str().unwrap_or_default();
        if kind == "budget.batch" {
            for p in e["payload"]["postings"].as_array().expect("postings") {
                out.push((p["kind"].as_str().expect("kind").to_owned(), p["payload"].clone()));
            }
        } else if kind.starts_with("budget.") {
            out.push((kind.to_owned(), e["payload"].clone()));
        }
    }
    out
}

#[test]
fn a_disk_that_fills_mid_mission_stops_it_clearly_and_the_same_command_recovers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("scripted.yaml");
    scripted_registry(&registry);
    let bench = module("cells/guests/bench-agent/bench.wasm");
    let cases: String = (0..CASES)
        .map(|i| format!("    - {{id: c{i}, prompt: \"case {i}: is the applicant eligible\", max_tokens: 8}}\n"))
        .collect();
    let mission = write_mission(dir.path(), "diskfull", &bench, 1_000_000, "{}", &cases, "");

    // How much space the whole mission takes, on a roomy tmpfs of the
    // same kind: the small one gets three quarters of it.
    let roomy = match Tmpfs::mount(&dir.path().join("roomy"), 64 * 1024) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: this test needs to mount a tmpfs (root or CAP_SYS_ADMIN): {why}");
            return;
        }
    };
    let out = run_mission(&mission, &registry, &roomy.dir.join("data"));
    assert_eq!(out.status.code(), Some(0), "with room, the mission completes: {}", stderr(&out));
    let needed = used_bytes(&roomy.dir.join("data"));
    drop(roomy);
    let small_kib = needed * 3 / 4 / 4096 * 4;
    eprintln!("the mission needs {needed} bytes; the small filesystem gets {small_kib} KiB");

    let small = Tmpfs::mount(&dir.path().join("small"), small_kib).expect("mounted once already");
    let data = small.dir.join("data");

    // 1. The disk fills mid-mission.
    let out = run_mission(&mission, &registry, &data);
    let first = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "a full disk stops the mission as an infrastructure fault:\n{first}");
    assert!(!first.contains("panicked"), "{first}");
    assert!(out.stdout.is_empty(), "no summary is printed for a mission that could not be recorded");
    let error = first.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("an error line:\n{first}"));
    for says in ["No space left on device", "the mission stopped", "run the same command again"] {
        assert!(error.contains(says), "the error says {says:?}: {error}");
    }
    assert!(!error.contains("Previous I/O error"), "the error names the cause, not its consequence: {error}");
    let said = reported(&first);
    let decided_first: BTreeSet<&String> =
        said.iter().filter(|(_, w)| w.starts_with("decided")).map(|(c, _)| c).collect();
    for (case, what) in &said {
        // A task the journal cannot show as ended is unfinished, never
        // "failed" on the strength of a write that did not happen.
        assert!(what == "decided done" || what == "unfinished", "case {case}: {what:?}\n{first}");
    }
    assert!(
        !decided_first.is_empty() && decided_first.len() < CASES,
        "the disk must fill mid-mission ({} of {CASES} tasks decided before it did); adjust the sizes:\n{first}",
        decided_first.len()
    );

    // 2. Space is freed; the same command carries the mission on.
    small.resize(64 * 1024);
    let out = run_mission(&mission, &registry, &data);
    let second = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the same command recovers the mission:\n{second}");
    assert!(second.contains("recovering it"), "{second}");
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "completed", "{summary}");
    let tasks = tasks(&summary);
    assert_eq!(tasks.len(), CASES);
    for t in tasks {
        assert_eq!(t["status"], "decided", "{t}");
        assert_eq!(t["model_calls"], 1, "one paid model call per task, disk full or not: {t}");
    }
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");
    let mission_id = summary["mission_id"].as_str().expect("mission id");
    for case in &decided_first {
        assert!(
            !reported(&second).contains_key(*case),
            "case {case} was decided before the disk filled: not run again"
        );
    }

    // 3. The journal: it verifies, and says each thing once.
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
    let journal = entries(&data);
    let ours: Vec<&Value> = journal.iter().filter(|e| e["payload"]["mission"] == mission_id).collect();
    let recovered_at = ours
        .iter()
        .find(|e| e["kind"] == "mission.recovered")
        .and_then(|e| e["seq"].as_u64())
        .expect("the second run recovered the mission");
    let mut ended: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut answered: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut answered_cost = 0u64;
    for e in &ours {
        let p = &e["payload"];
        let seq = e["seq"].as_u64().expect("seq");
        match e["kind"].as_str().unwrap_or_default() {
            "task.decided" | "task.failed" | "task.skipped" | "task.deferred" => {
                ended.entry(p["case"].as_str().expect("case").to_owned()).or_default().push(seq);
            }
            "host.infer" => {
                let reservation = p["reservation"].as_u64().unwrap_or_else(|| panic!("only answered calls: {p}"));
                assert!(p.get("text").is_some(), "no call was refused or failed: {p}");
                answered.entry(reservation).or_default().push(seq);
                answered_cost += p["cost"].as_u64().expect("cost");
            }
            _ => {}
        }
    }
    assert_eq!(ended.len(), CASES, "every task ended in the journal");
    for (case, seqs) in &ended {
        assert_eq!(seqs.len(), 1, "case {case} ended exactly once: entries {seqs:?}");
        if decided_first.contains(case) {
            assert!(seqs[0] < recovered_at, "case {case}, reported decided by the first run, was journaled by it");
        }
    }
    assert!(
        ended.values().any(|seqs| seqs[0] > recovered_at),
        "some tasks were finished by the recovery (the disk filled mid-mission)"
    );
    assert_eq!(answered.len(), CASES, "one answered model call per task");
    assert!(answered.values().all(|seqs| seqs.len() == 1), "no reservation answered twice: {answered:?}");

    // Every reservation closes exactly once; a settled one is an answered
    // call (journaled with it), and nothing else is paid.
    let prefix = format!("{mission_id}/");
    let mut closed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut reserved = BTreeSet::new();
    let mut settled_amount = 0u64;
    for (kind, p) in postings(&journal) {
        if !p["account"].as_str().is_some_and(|a| a.starts_with(&prefix)) {
            continue;
        }
        let Some(reservation) = p["reservation"].as_u64() else { continue };
        match kind.as_str() {
            "budget.reserved" => assert!(reserved.insert(reservation), "reservation {reservation} made twice"),
            "budget.settled" => {
                settled_amount += p["amount"].as_u64().expect("amount");
                closed.entry(reservation).or_default().push(kind);
            }
            "budget.voided" | "budget.expired" => closed.entry(reservation).or_default().push(kind),
            _ => {}
        }
    }
    assert_eq!(reserved, closed.keys().copied().collect::<BTreeSet<_>>(), "every reservation is closed");
    for (reservation, how) in &closed {
        assert_eq!(how.len(), 1, "reservation {reservation} closed once, not {how:?}");
        let paid = how[0] == "budget.settled";
        assert_eq!(
            paid,
            answered.contains_key(reservation),
            "reservation {reservation} ({}) is paid iff answered",
            how[0]
        );
    }
    assert_eq!(settled_amount, answered_cost, "what was paid is exactly the answered calls' cost");
    assert_eq!(summary["budget"]["settled"], answered_cost, "{summary}");

    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "every task replays from the journal: {}", stderr(&out));
    let replays = stdout_json(&out);
    let replays = replays.as_array().expect("list");
    assert_eq!(replays.len(), CASES, "one attempt per task, carried on by the recovery: {replays:?}");
    assert!(replays.iter().all(|r| r["verdict"] == "match"), "{replays:?}");
}

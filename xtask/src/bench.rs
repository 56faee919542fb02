//! `cargo xtask bench-parked`: parked tasks, measured on the real binary
//! with GNU time (peak resident memory of the conductor process).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::{cargo_command, run, step, target_dir, test_build_args};

/// One run of the conductor under `/usr/bin/time`: (peak RSS in KiB, wall seconds).
fn timed(bin: &Path, args: &[&str], data: &Path) -> Result<(u64, f64, String)> {
    let report = data.with_extension("time");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M %e", "-o"])
        .arg(&report)
        .arg(bin)
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .context("running /usr/bin/time (GNU time; Debian package `time`)")?;
    ensure!(out.status.success(), "{} {args:?} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&report)?;
    let mut fields = text.split_whitespace();
    let rss: u64 = fields.next().and_then(|f| f.parse().ok()).context("GNU time printed no RSS")?;
    let secs: f64 = fields.next().and_then(|f| f.parse().ok()).context("GNU time printed no time")?;
    Ok((rss, secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

pub fn parked(root: &Path, tasks: usize, missions: usize, dir: &Path) -> Result<()> {
    if !(1..=100_000).contains(&tasks) {
        bail!("--tasks must be 1..=100000 (one mission's case limit)");
    }
    if !(1..=100).contains(&missions) {
        bail!("--missions must be 1..=100");
    }
    step("building the conductor and the agents");
    crate::build_agents(root)?;
    run(cargo_command().args(test_build_args(&["--no-run"])))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    // A copy, so rebuilding the project during a long run changes nothing.
    let bin = dir.join("conductor");
    std::fs::copy(target_dir(root).join("release/conductor"), &bin)?;
    let module = root.join("cells/guests/hostile-agent/hostile.wasm");
    // One case file each: a 100,000-item inline list is past the YAML
    // parser's node limit.
    let cases = dir.join("cases");
    std::fs::create_dir_all(&cases)?;
    for i in 0..tasks {
        std::fs::write(cases.join(format!("p{i:06}.json")), format!("{{\"id\":\"p{i}\",\"behave\":\"await\"}}"))?;
    }
    let data = dir.join("data");
    let mut runs = Vec::new();
    for m in 0..missions {
        // A different name per mission, so each is a new mission rather
        // than a recovery of the one before.
        let mission = dir.join(format!("parked-{m}.yaml"));
        std::fs::write(
            &mission,
            format!(
                "name: parked-{m}\nbudget: {{ limit: 1000 }}\n\
                 models: {{ smollm2-135m: {{ prompt_price: 1, completion_price: 2 }} }}\n\
                 agents:\n  - {{ name: worker, module: {}, model: smollm2-135m }}\n\
                 tasks: {{ agent: worker, dir: cases }}\n\
                 gates:\n  - {{ name: second-look, when: {{ field: case.amount, greater_than: 1000000 }} }}\n",
                module.display(),
            ),
        )?;
        let mission_arg = mission.display().to_string();
        step(&format!("parking {tasks} tasks (mission {} of {missions})", m + 1));
        let (rss, secs, summary) = timed(&bin, &["run", &mission_arg, "--json", "--concurrency", "4"], &data)?;
        let summary: serde_json::Value = serde_json::from_str(&summary).context("run summary")?;
        let mission_id = summary["mission_id"].as_str().context("mission id")?.to_owned();
        let parked =
            summary["tasks"].as_array().map_or(0, |t| t.iter().filter(|t| t["status"] == "awaiting_review").count());
        ensure!(parked == tasks, "{parked} of {tasks} tasks parked");
        let gate = summary["tasks"][0]["gate"].as_str().context("gate id")?.to_owned();
        println!("  mission {}: {secs:.1} s, peak RSS {:.1} MB", m + 1, rss as f64 / 1024.0);
        runs.push((mission_id, gate, rss, secs));
    }

    step("deciding one gate and resuming its task");
    let key = dir.join("reviewer.key");
    let key_arg = key.display().to_string();
    run(Command::new(&bin).args(["keys", "new", "--out", &key_arg]))?;
    run(Command::new(&bin).args(["keys", "register", &key_arg, "--data"]).arg(&data))?;
    // Decide without resuming, so the resume is timed on its own: a task
    // of the first mission, under everything parked after it.
    let (mission_id, gate, _, _) = &runs[0];
    run(Command::new(&bin).args(["gates", "approve", gate, "--no-resume", "--key", &key_arg, "--data"]).arg(&data))?;
    let (resume_rss, resume_secs, summary) = timed(&bin, &["mission", "resume", mission_id, "--json"], &data)?;
    let summary: serde_json::Value = serde_json::from_str(&summary).context("resume summary")?;
    let first = &summary["tasks"][0];
    ensure!(first["outcome"] == "approved", "the resumed task did not finish approved: {first}");
    let db_bytes = std::fs::metadata(data.join("conductor.redb")).map_or(0, |m| m.len());

    let total = tasks * missions;
    let park_secs: f64 = runs.iter().map(|r| r.3).sum();
    let peak = runs.iter().map(|r| r.2).max().unwrap_or(0);
    let (first_secs, last_secs) = (runs[0].3, runs[runs.len() - 1].3);
    println!(
        "\nbench-parked: {missions} mission(s) x {tasks} tasks parked at a gate (await-review) in one data directory, then one resumed"
    );
    println!("{:<60} {:>12}", "row", "value");
    println!("{:<60} {:>12}", "tasks parked on this host", total);
    println!("{:<60} {:>12.1}", "park all: wall seconds (sum over missions)", park_secs);
    println!("{:<60} {:>12.0}", "park all: tasks per second", total as f64 / park_secs);
    println!("{:<60} {:>12.2}", "  last mission's seconds / first mission's", last_secs / first_secs);
    println!("{:<60} {:>11.1}M", "conductor peak RSS, the largest of any run", peak as f64 / 1024.0);
    println!("{:<60} {:>11.1}M", "database on disk", db_bytes as f64 / f64::from(1u32 << 20));
    println!("{:<60} {:>12.2}", "resume one (replay to the gate, finish): wall seconds", resume_secs);
    println!("{:<60} {:>11.1}M", "resume one: conductor peak RSS", resume_rss as f64 / 1024.0);
    println!("\ntarget (#6): 1,000,000 parked tasks per host within 1 GiB resident");
    Ok(())
}

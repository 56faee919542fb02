//! Honest outcomes (issue #18, items 1, 4 and 7): a model that cannot be
//! used stops the mission before anything is charged; a mission whose
//! tasks failed is not "completed"; the same mission file does not
//! silently run twice; and tasks racing for the last of a budget wait for
//! each other's reservations instead of ending the mission early.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A mission of three echo cases: no model call, but the agent lists the
/// model, so the model must be usable for the mission to start.
fn echo_mission(dir: &Path, name: &str) -> PathBuf {
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let cases = "    - {id: a}\n    - {id: b}\n    - {id: c}\n";
    write_mission(dir, name, &echo, 1000, "{}", cases, "")
}

fn entries(data: &Path) -> usize {
    journal(data, "").len()
}

#[test]
fn a_missing_model_stops_the_mission_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = echo_mission(dir.path(), "missing-model");
    let data = dir.path().join("data");
    let out =
        run(conductor().env("CONDUCTOR_MODEL_DIR", "/nonexistent").arg("run").arg(&mission).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(7), "an infrastructure fault has its own exit status");
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/SmolLM2-135M-Instruct.Q4_1.gguf"), "names the file: {err}");
    assert!(err.contains("nothing was run or charged"), "{err}");
    assert!(!data.join("conductor.redb").exists(), "nothing was created");

    // Once the model is there, the same command runs cleanly.
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["status"], "completed");
}

#[test]
fn a_tampered_model_names_the_expected_and_actual_hash_and_charges_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A first mission runs, so the data directory has a journal to keep.
    let first = echo_mission(dir.path(), "first");
    assert_eq!(run(conductor().arg("run").arg(&first).arg("--data").arg(&data)).status.code(), Some(0));
    let before = entries(&data);

    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("models dir");
    let copy = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut bytes = std::fs::read(model_file()).expect("model");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&copy, &bytes).expect("tampered copy");
    let actual = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };

    let second = echo_mission(dir.path(), "second");
    let out = run(conductor().env("CONDUCTOR_MODEL_DIR", &models).arg("run").arg(&second).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(err.contains(&copy.display().to_string()), "names the file: {err}");
    assert!(err.contains(MODEL_SHA256), "names the expected hash: {err}");
    assert!(err.contains(&actual), "names the actual hash: {err}");
    assert_eq!(entries(&data), before, "nothing was journaled");

    // Fixed: the same command runs.
    std::fs::copy(model_file(), &copy).expect("restore");
    let out = run(conductor().env("CONDUCTOR_MODEL_DIR", &models).arg("run").arg(&second).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_mission_whose_tasks_failed_is_not_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = module("cells/guests/hostile-agent/hostile.wasm");
    let cases = "    - {id: trap-1, behave: trap}\n    - {id: trap-2, behave: trap}\n";
    let mission = write_mission(dir.path(), "all-fail", &hostile, 1000, "{}", cases, "");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(6), "failed tasks have their own exit status");
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "completed_with_failures", "{summary}");
    let finished = journal(&data, "mission.finished");
    assert_eq!(finished[0]["payload"]["status"], "completed_with_failures");
    assert_eq!(run(conductor().args(["audit", "verify", "--data"]).arg(&data)).status.code(), Some(0));

    // One failure among decisions is still not a clean completion.
    let cases = "    - {id: ok, behave: echo}\n    - {id: trap, behave: trap}\n";
    let mission = write_mission(dir.path(), "one-fails", &hostile, 1000, "{}", cases, "");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(stdout_json(&out)["status"], "completed_with_failures");
}

#[test]
fn the_same_mission_file_runs_again_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = echo_mission(dir.path(), "twice");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let first = stdout_json(&out)["mission_id"].as_str().expect("id").to_owned();
    let before = entries(&data);

    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(2), "refused as invalid input");
    let err = stderr(&out);
    assert!(err.contains(&first) && err.contains("already ran") && err.contains("--new"), "{err}");
    assert_eq!(entries(&data), before, "nothing ran");

    let out = run(conductor().arg("run").arg(&mission).arg("--new").arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(stdout_json(&out)["mission_id"].as_str(), Some(first.as_str()), "a separate mission");
    assert_eq!(journal(&data, "mission.declared").len(), 2);
}

/// Item 7: four cells share a budget worth about ten calls. A call's
/// worst case (every `max_tokens` at a high completion price) is about
/// twice what it really costs, so reservations in flight often hold more
/// than is left. Those refusals are not exhaustion: the mission must
/// spend until a call's worst case really exceeds what is left.
#[test]
fn racing_tasks_wait_for_reservations_and_spend_nearly_all_the_budget() {
    model_file();
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = module("missions/examples/casework/agent/eligibility.wasm");
    let limit = 6000u64;
    let mission = dir.path().join("race.yaml");
    std::fs::write(
        &mission,
        format!(
            "name: race\nbudget:\n  limit: {limit}\n  on_exhausted: stop\n\
             models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 20\n\
             agents:\n  - name: eligibility\n    module: {}\n    model: smollm2-135m\n    limits: {{max_tokens: 48}}\n\
             tasks:\n  agent: eligibility\n  dir: {}\n\
             memory:\n{}",
            agent.display(),
            repo_root().join("missions/examples/casework/cases").display(),
            policy_facts()
        ),
    )
    .expect("mission");
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).args(["--json", "--concurrency", "4"]));
    assert_eq!(out.status.code(), Some(3), "the budget runs out before 24 cases");
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "budget_exhausted");
    assert_eq!(summary["budget"]["pending"], 0, "no reservation left open");
    let settled = summary["budget"]["settled"].as_u64().expect("settled");
    let worst = postings(&data, "budget.reserved")
        .iter()
        .filter_map(|e| e["payload"]["amount"].as_u64())
        .max()
        .expect("reservations were made");
    assert!(settled <= limit);
    assert!(
        limit - settled < worst,
        "stopped with {} of {limit} unused, more than one call's worst case ({worst}): a refusal caused by \
         other tasks' pending reservations ended the mission",
        limit - settled
    );
    // A refused call is one entry, as on the gateway: the agent's
    // `host.infer` with the budget's reason, and no reservation.
    let refused: Vec<_> = journal(&data, "host.infer")
        .into_iter()
        .filter(|e| e["payload"]["refused"].as_str().is_some_and(|r| r.starts_with("budget exhausted on `")))
        .collect();
    assert!(!refused.is_empty(), "the last call was refused and journaled");
    assert!(refused.iter().all(|e| e["payload"].get("reservation").is_none()), "{refused:?}");
    assert!(journal(&data, "budget.refused").is_empty(), "one entry per refusal, not two");
    assert_eq!(run(conductor().args(["audit", "verify", "--data"]).arg(&data)).status.code(), Some(0));
}

/// Item 2 at run time: a gate whose field a case lacks sends that case to
/// review (the reason names the missing field); it is never a silent "no".
#[test]
fn a_gate_field_missing_from_a_case_sends_it_to_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let cases = "    - {id: small, requested_amount: 10}\n    - {id: unknown}\n";
    let gates = "gates:\n  - name: large-award\n    when: {field: case.requested_amount, greater_than: 5000}\n";
    let mission = write_mission(dir.path(), "missing-field", &echo, 1000, "{}", cases, gates);
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let status = |id: &str| {
        tasks(&summary).iter().find(|t| t["case_id"] == id).expect("task")["status"]
            .as_str()
            .expect("status")
            .to_owned()
    };
    assert_eq!(status("small"), "decided");
    assert_eq!(status("unknown"), "awaiting_review", "a missing field is an exception, not false");
    let requested = journal(&data, "gate.requested");
    assert_eq!(requested.len(), 1);
    let why = requested[0]["payload"]["why"]["unevaluable"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("case.requested_amount") && why.contains("missing"), "{}", requested[0]);
}

/// Item 3 for agents: a proposal whose outcome the mission does not list
/// is refused, and the task fails with the reason; nothing is proposed.
#[test]
fn an_agent_proposal_outside_the_declared_outcomes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let cases = "    - {id: a}\n";
    let decisions = "decisions:\n  outcomes: [eligible, ineligible]\n";
    let mission = write_mission(dir.path(), "outcomes", &echo, 1000, "{}", cases, decisions);
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let task = tasks(&stdout_json(&out))[0].clone();
    assert_eq!(task["status"], "failed", "{task}");
    let failure = task["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("`echo`") && failure.contains("eligible, ineligible"), "{failure}");
    assert!(journal(&data, "task.proposed").is_empty(), "nothing was proposed");
}

/// Item 13 on the command line: a device or a FIFO named where a file is
/// expected is refused at once, never read without limit or waited on.
#[test]
fn devices_and_fifos_are_refused_where_files_are_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let data = dir.path().join("data");
    let mission = echo_mission(dir.path(), "files");
    assert_eq!(run(conductor().arg("run").arg(&mission).arg("--data").arg(&data)).status.code(), Some(0));
    let attempts: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["run".into(), "/dev/zero".into(), "--data".into(), data.clone().into()],
        vec!["run".into(), fifo.clone().into(), "--data".into(), data.clone().into()],
        vec!["mission".into(), "validate".into(), fifo.clone().into()],
        vec![
            "audit".into(),
            "verify".into(),
            "--data".into(),
            data.clone().into(),
            "--checkpoint".into(),
            fifo.clone().into(),
        ],
        vec![
            "audit".into(),
            "verify".into(),
            "--data".into(),
            data.clone().into(),
            "--checkpoint".into(),
            "/dev/zero".into(),
        ],
    ];
    for args in attempts {
        let mut child = conductor()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`conductor {args:?}` hung on a device or FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
        assert!(!status.success(), "`conductor {args:?}` must refuse: {err}");
        assert!(err.contains("not a regular file"), "`conductor {args:?}`: {err}");
    }
}

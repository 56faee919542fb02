//! A mission's answers do not depend on how its cells were scheduled: the
//! sample mission run with eight cells at once, whose model calls the
//! router batches, gets every completion exactly as with one cell at a
//! time. This is what an auditor re-running a decision relies on.
//!
//! It failed, 2 runs of 2, before the vendored scheduler fix
//! (`vendor/README.md`, mistralrs-core 4): completions that the scheduler
//! had set aside were prefilled again, and those whose prompts had reused
//! part of an earlier prompt's cache got different, sometimes unrelated,
//! answers.

mod common;

use common::*;

#[test]
fn the_sample_mission_answers_the_same_with_eight_cells_as_with_one() {
    model_file();
    module("missions/examples/casework/agent/eligibility.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let mission = repo_root().join("missions/examples/casework/mission.yaml");

    let mut answers = Vec::new();
    for cells in ["1", "8"] {
        let data = dir.path().join(format!("cells-{cells}"));
        let out = run(conductor()
            .env("RUST_LOG", "warn,conductor=debug,inference=debug,engine=debug,server=debug")
            .arg("run")
            .arg(&mission)
            .args(["--concurrency", cells, "--json", "--data"])
            .arg(&data));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // The eight-cell run must really have batched: some cohort held
        // more than one request.
        let largest_cohort = cohorts_admitted(&stderr(&out)).iter().map(|c| c.0).max().unwrap_or(0);
        if cells == "1" {
            assert_eq!(largest_cohort, 1, "one cell: one request at a time");
        } else {
            assert!(largest_cohort > 1, "eight cells batched no calls (largest cohort {largest_cohort})");
        }
        answers.push(completions(&data));
    }
    assert!(answers[0].len() >= 20, "a completion per case: {:?}", answers[0]);
    for (one, eight) in answers[0].iter().zip(&answers[1]) {
        assert_eq!(one, eight, "task {}: eight cells at once answered differently", one.0);
    }
    assert_eq!(answers[0].len(), answers[1].len());
}

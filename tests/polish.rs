//! Issue #18, "CLI polish that users notice" (items 8 to 12) and the
//! missions listing of item 4, through the real binary.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Gates every case with an amount over 100.
const GATE_BIG: &str = "gates:\n  - name: big\n    when: { field: case.amount, greater_than: 100 }\n";

/// Runs a mission of the echo agent (no model calls) over `cases` on
/// `data`, and returns its summary.
fn run_echo(dir: &Path, data: &Path, name: &str, cases: &str) -> Value {
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let mission = write_mission(dir, name, &echo, 1000, "{}", cases, GATE_BIG);
    let out = run(conductor().arg("run").arg(&mission).arg("--json").arg("--data").arg(data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout_json(&out)
}

/// A new key of `role` at DIR/NAME.key; returns its path and key id.
fn new_key(dir: &Path, name: &str, role: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let out = run(conductor().args(["keys", "new", "--role", role, "--out"]).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text.lines().find_map(|l| l.strip_prefix("key id")).expect("key id line").trim().to_owned();
    (key, id)
}

/// What `cmd | head -1` sees: the first line, then the reader goes away.
/// Returns that line, the exit code and stderr.
fn head_one(cmd: &mut Command) -> (String, Option<i32>, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("conductor starts");
    let mut line = String::new();
    {
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        reader.read_line(&mut line).expect("first line");
        // Dropping the reader closes the pipe, as `head` does on exit.
    }
    let out = child.wait_with_output().expect("conductor exits");
    (line, out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Item 8: `gates list | head` and `audit log | head` are quiet and exit 0,
/// as cargo and ripgrep are (before: a panic with exit 101, and an error).
#[test]
fn piping_into_head_is_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Enough gates that the listing is several times larger than a pipe's
    // buffer (64 KiB on Linux), so the writer meets the closed pipe: each
    // gate's listing carries a long case id and the echoed input.
    let filler = "x".repeat(80);
    let cases: String =
        (0..500).map(|i| format!("    - {{id: case-{i:04}-{filler}, amount: 500, note: {filler}}}\n")).collect();
    let summary = run_echo(dir.path(), &data, "many", &cases);
    assert_eq!(summary["counts"]["awaiting_review"], 500);

    let full = run(conductor().args(["gates", "list", "--data"]).arg(&data));
    assert!(full.stdout.len() > 128 * 1024, "the listing must outgrow the pipe: {} bytes", full.stdout.len());
    let (line, code, err) = head_one(conductor().args(["gates", "list", "--data"]).arg(&data));
    assert!(line.starts_with("500 pending gate(s)"), "{line}");
    assert_eq!((code, err.trim()), (Some(0), ""), "gates list | head -1");

    let (line, code, err) = head_one(conductor().args(["audit", "log", "--data"]).arg(&data));
    assert!(line.contains("conductor.genesis"), "{line}");
    assert_eq!((code, err.trim()), (Some(0), ""), "audit log | head -1");

    // The exit status stays the command's own: an intact journal's JSON
    // report, cut short, still exits 0; the reader's leaving is no error.
    let (_, code, err) = head_one(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!((code, err.trim()), (Some(0), ""), "audit verify --json | head -1");
}

/// Item 9: every exit status is in `--help` (and in `run --help` and
/// `mission resume --help`, the commands that end in most of them); `gates
/// reject` offers no arguments that only an approval takes.
#[test]
fn help_lists_every_exit_status_and_reject_offers_only_what_it_takes() {
    let help = |args: &[&str]| {
        let out = run(conductor().args(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in [&["--help"][..], &["run", "--help"], &["mission", "resume", "--help"]] {
        let text = help(args);
        let section =
            text.split("Exit status:").nth(1).unwrap_or_else(|| panic!("{args:?} has no exit statuses:\n{text}"));
        for code in 0..=7 {
            assert!(
                section.lines().any(|l| l.trim_start().starts_with(&format!("{code}  "))),
                "{args:?} does not explain exit status {code}:\n{section}"
            );
        }
        for words in ["replay", "completed_with_failures", "model file", "budget exhausted, paused or awaiting budget"]
        {
            assert!(section.contains(words), "{args:?}: no `{words}` in\n{section}");
        }
    }
    let approve = help(&["gates", "approve", "--help"]);
    assert!(approve.contains("--edit") && approve.contains("--amount"), "{approve}");
    let reject = help(&["gates", "reject", "--help"]);
    assert!(!reject.contains("--edit") && !reject.contains("--amount"), "{reject}");
    assert!(reject.contains("--note") && reject.contains("--key"), "{reject}");
}

/// Item 10: `audit log` and `audit show` print times as RFC 3339, the
/// times the journal holds.
#[test]
fn audit_log_and_show_print_rfc3339_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let summary = run_echo(dir.path(), &data, "times", "    - {id: small, amount: 5}\n");
    let mission_id = summary["mission_id"].as_str().expect("id");

    let out = run(conductor().args(["audit", "log", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let human: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let entries = journal(&data, "");
    assert_eq!(human.len(), entries.len());
    for (line, entry) in human.iter().zip(&entries) {
        let time = line.split_whitespace().nth(1).expect("a time column");
        assert_eq!(missions::parse_timestamp(time).ok(), entry["time_us"].as_i64(), "{line}");
        assert_eq!(entry["time"].as_str(), Some(time), "--json carries the same time");
    }

    let show = |json: bool| {
        let mut cmd = conductor();
        cmd.args(["audit", "show", "--data"]).arg(&data).arg(format!("{mission_id}/small"));
        if json {
            cmd.arg("--json");
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    let doc = stdout_json(&show(true));
    let text = String::from_utf8_lossy(&show(false).stdout).into_owned();
    let clock = text.lines().find_map(|l| l.strip_prefix("cell      clock starts ")).expect("cell line");
    let clock = clock.split(',').next().expect("time");
    assert_eq!(missions::parse_timestamp(clock).ok(), doc["cell"]["clock_start_us"].as_i64(), "{text}");
    let started =
        doc["lifecycle"].as_array().expect("lifecycle").iter().find(|e| e["kind"] == "task.started").expect("started");
    let at = missions::format_timestamp(started["entry"]["time_us"].as_i64().expect("time"));
    assert!(text.contains(&format!("#{} {at} task.started", started["entry"]["seq"])), "{text}");
    assert!(!text.contains("µs"), "no raw microseconds: {text}");
}

/// Item 11: the name a key was registered with shows wherever its id is
/// printed: `keys list` (a rotated key's successor keeps it), `mission
/// show` (who decided) and `gates list`.
#[test]
fn registered_names_show_beside_key_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let summary = run_echo(dir.path(), &data, "named", "    - {id: big, amount: 500}\n    - {id: big2, amount: 600}\n");
    let mission_id = summary["mission_id"].as_str().expect("id").to_owned();
    let gate = |case: &str| {
        tasks(&summary)
            .iter()
            .find(|t| t["case_id"] == case)
            .and_then(|t| t["gate"].as_str())
            .expect("gated")
            .to_owned()
    };
    let (rita, rita_id) = new_key(dir.path(), "rita", "reviewer");
    let out = run(conductor().args(["keys", "register", "--name", "Rita Reviewer", "--data"]).arg(&data).arg(&rita));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["gates", "approve", &gate("big"), "--key"]).arg(&rita).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Rita Reviewer ({rita_id})")));

    let out = run(conductor().args(["keys", "list", "--data"]).arg(&data));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains(&rita_id)).expect("rita listed");
    assert!(line.contains("Rita Reviewer"), "{text}");
    let out = run(conductor().args(["keys", "list", "--json", "--data"]).arg(&data));
    let listed = stdout_json(&out);
    let entry = listed.as_array().expect("keys").iter().find(|k| k["key_id"] == rita_id.as_str()).expect("rita");
    assert_eq!(entry["name"], "Rita Reviewer");

    let out = run(conductor().args(["mission", "show", &mission_id, "--data"]).arg(&data));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains(" big ")).expect("task line");
    assert!(line.contains(&format!("by reviewer Rita Reviewer ({rita_id})")), "{text}");
    let out = run(conductor().args(["mission", "show", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(stdout_json(&out)["names"][&rita_id], "Rita Reviewer");
    let out = run(conductor().args(["gates", "list", "--data"]).arg(&data));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("decided by reviewer Rita Reviewer ({rita_id})")));

    // Rotation: the successor is the same person's key.
    let (next, next_id) = new_key(dir.path(), "rita-2", "reviewer");
    let out = run(conductor().args(["keys", "rotate", "--data"]).arg(&data).arg(&rita).arg(&next));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["keys", "list", "--json", "--data"]).arg(&data));
    let listed = stdout_json(&out);
    let entry = listed.as_array().expect("keys").iter().find(|k| k["key_id"] == next_id.as_str()).expect("successor");
    assert_eq!(entry["name"], "Rita Reviewer");
    let out = run(conductor().args(["gates", "approve", &gate("big2"), "--key"]).arg(&next).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["audit", "show", "--data"]).arg(&data).arg(format!("{mission_id}/big2")));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.lines().any(|l| l.contains("gate.decided by reviewer Rita Reviewer")), "{text}");
}

/// Item 12: a command that does not start something new refuses a data
/// directory that does not exist, names it and says what creates one;
/// `keys register --init` creates one for a deployment's first people.
#[test]
fn only_commands_that_start_something_create_a_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("dat");
    let (key, _) = new_key(dir.path(), "reviewer", "reviewer");
    let refused = |args: &[&str], extra: &[&std::ffi::OsStr]| {
        let out = run(conductor().args(args).arg("--data").arg(&typo).args(extra));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(&typo.display().to_string()), "{args:?} names the path: {err}");
        assert!(err.contains("conductor run") && err.contains("--init"), "{args:?} says what creates one: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    };
    refused(&["keys", "register"], &[key.as_os_str()]);
    refused(&["keys", "list"], &[]);
    refused(&["keys", "revoke", "--reason", "r"], &[key.as_os_str()]);
    refused(&["gates", "list"], &[]);
    refused(&["mission", "list"], &[]);
    refused(&["mission", "show", "m-1"], &[]);
    refused(&["ledger", "show"], &[]);
    refused(&["audit", "log"], &[]);

    let data = dir.path().join("data");
    let out = run(conductor()
        .args(["keys", "register", "--init", "--name", "First Reviewer", "--data"])
        .arg(&data)
        .arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(data.join("conductor.redb").is_file());
    // --init on a data directory that exists just registers.
    let (other, _) = new_key(dir.path(), "other", "reviewer");
    let out = run(conductor().args(["keys", "register", "--init", "--data"]).arg(&data).arg(&other));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["mission", "list", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no missions yet");
}

/// Item 4's listing: `mission list` shows each mission of a data directory,
/// oldest first, with its status, spend and task counts.
#[test]
fn mission_list_shows_status_spend_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = run_echo(dir.path(), &data, "first", "    - {id: a, amount: 5}\n    - {id: b, amount: 500}\n");
    let second = run_echo(dir.path(), &data, "second", "    - {id: c, amount: 5}\n");

    let out = run(conductor().args(["mission", "list", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = stdout_json(&out);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2);
    for (row, summary) in listed.iter().zip([&first, &second]) {
        assert_eq!(row["mission_id"], summary["mission_id"]);
        assert_eq!(row["name"], summary["name"]);
        assert_eq!(row["status"], summary["status"]);
        assert_eq!(row["settled"], summary["budget"]["settled"]);
        assert_eq!(row["limit"], summary["budget"]["limit"]);
        assert_eq!(row["counts"], summary["counts"]);
    }
    assert_eq!(listed[0]["status"], "awaiting_review");
    assert_eq!(
        (listed[0]["counts"]["decided"].as_u64(), listed[0]["counts"]["awaiting_review"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(listed[1]["status"], "completed");

    let out = run(conductor().args(["mission", "list", "--data"]).arg(&data));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per mission: {text}");
    for word in ["mission", "status", "spend", "decided", "review", "failed", "pending"] {
        assert!(lines[0].contains(word), "header names {word}: {text}");
    }
    for (line, row) in lines[1..].iter().zip(listed) {
        let id = row["mission_id"].as_str().expect("id");
        let status = row["status"].as_str().expect("status");
        let spend = format!("{} / {}", row["settled"], row["limit"]);
        assert!(line.starts_with(id) && line.contains(status) && line.contains(&spend), "{line}");
    }
}

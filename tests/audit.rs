//! The auditor's side, through the real binary: people's keys registered,
//! sealed, rotated and revoked in the journal; exports and checkpoints
//! verified with no database; a cut tail caught by a held checkpoint.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";

fn gated_mission(dir: &Path, name: &str, cases: &str) -> PathBuf {
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let gates = "gates:\n  - name: big\n    when: { field: case.amount, greater_than: 100 }\n";
    write_mission(dir, name, &echo, 1000, "{}", cases, gates)
}

fn run_mission(mission: &Path, data: &Path) -> Value {
    let out = run(conductor().arg("run").arg(mission).arg("--data").arg(data).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    stdout_json(&out)
}

fn pending_gates(data: &Path) -> Vec<String> {
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(data));
    stdout_json(&out)
        .as_array()
        .expect("gates")
        .iter()
        .filter(|g| g["status"] == "pending")
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect()
}

fn decide(data: &Path, gate: &str, key: &Path, passphrase: Option<&str>) -> std::process::Output {
    let mut cmd = conductor();
    cmd.args(["gates", "approve", gate, "--key"]).arg(key).arg("--data").arg(data);
    match passphrase {
        Some(p) => cmd.env("CONDUCTOR_KEY_PASSPHRASE", p),
        None => cmd.env_remove("CONDUCTOR_KEY_PASSPHRASE"),
    };
    run(&mut cmd)
}

fn verify_json(args: &[&str], paths: &[&Path]) -> (Option<i32>, Value) {
    let mut cmd = conductor();
    cmd.args(["audit", "verify", "--json"]).args(args);
    for p in paths {
        cmd.arg(p);
    }
    let out = run(&mut cmd);
    (out.status.code(), stdout_json(&out))
}

#[test]
fn reviewer_keys_are_sealed_registered_rotated_and_revoked_in_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mission = gated_mission(
        dir.path(),
        "keys",
        "    - {id: a, amount: 500}\n    - {id: b, amount: 600}\n    - {id: c, amount: 700}\n",
    );
    assert_eq!(run_mission(&mission, &data)["status"], "awaiting_review");
    let gates = pending_gates(&data);
    assert_eq!(gates.len(), 3);

    // A passphrase-sealed reviewer key; a short passphrase is refused.
    let r1 = dir.path().join("r1.key");
    let out = run(conductor()
        .args(["keys", "new", "--role", "reviewer", "--passphrase", "--out"])
        .arg(&r1)
        .env("CONDUCTOR_KEY_PASSPHRASE", "short"));
    assert_ne!(out.status.code(), Some(0));
    assert!(!r1.exists(), "nothing is written on a refused passphrase");
    let out = run(conductor()
        .args(["keys", "new", "--role", "reviewer", "--passphrase", "--out"])
        .arg(&r1)
        .env("CONDUCTOR_KEY_PASSPHRASE", PASSPHRASE));
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&r1).expect("key file");
    assert!(text.contains("sealed-secret: ") && !text.contains("\nsecret: "), "{text}");

    // Unregistered: refused, with the command that fixes it.
    let out = decide(&data, &gates[0], &r1, Some(PASSPHRASE));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("keys register"), "{}", stderr(&out));

    // Registration reads only the public part: no passphrase needed.
    let out = run(conductor()
        .args(["keys", "register", "--name", "Rita Reviewer", "--data"])
        .arg(&data)
        .arg(&r1)
        .env_remove("CONDUCTOR_KEY_PASSPHRASE"));
    assert_eq!(out.status.code(), Some(0));

    // Wrong passphrase, then the right one.
    let out = decide(&data, &gates[0], &r1, Some("not the passphrase at all"));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("wrong passphrase"), "{}", stderr(&out));
    assert_eq!(decide(&data, &gates[0], &r1, Some(PASSPHRASE)).status.code(), Some(0));

    // Rotation: r1 stops counting, r2 (same role) takes over. A successor
    // of another role is refused.
    let op2 = dir.path().join("op2.key");
    run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&op2));
    let out = run(conductor().args(["keys", "rotate", "--data"]).arg(&data).arg(&r1).arg(&op2));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("would replace a reviewer key"), "{}", stderr(&out));
    let r2 = dir.path().join("r2.key");
    assert_eq!(run(conductor().args(["keys", "new", "--role", "reviewer", "--out"]).arg(&r2)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "rotate", "--data"]).arg(&data).arg(&r1).arg(&r2));
    assert_eq!(out.status.code(), Some(0));
    let out = decide(&data, &gates[1], &r1, Some(PASSPHRASE));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    assert_eq!(decide(&data, &gates[1], &r2, None).status.code(), Some(0));

    // Revocation: r2 may no longer decide.
    let out = run(conductor().args(["keys", "revoke", "--reason", "left the team", "--data"]).arg(&data).arg(&r2));
    assert_eq!(out.status.code(), Some(0));
    let out = decide(&data, &gates[2], &r2, None);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    assert_eq!(pending_gates(&data), vec![gates[2].clone()], "the refused decision changed nothing");

    // Operator and agent keys cannot be registered as something else.
    let op = dir.path().join("op.key");
    run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&op));
    let out = run(conductor().args(["keys", "register", "--role", "reviewer", "--data"]).arg(&data).arg(&op));
    assert_ne!(out.status.code(), Some(0));

    let out = run(conductor().args(["keys", "list", "--json", "--data"]).arg(&data));
    let keys = stdout_json(&out);
    let roles: Vec<(&str, bool)> = keys
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["role"].as_str().expect("role"), k["revoked_seq"].is_null()))
        .collect();
    assert_eq!(roles, vec![("conductor", true), ("agent", true), ("reviewer", false), ("reviewer", false)]);

    // Both of Rita's keys carry the name she was registered with.
    let names: Vec<&Value> = keys.as_array().expect("keys").iter().map(|k| &k["name"]).collect();
    assert_eq!(names, [&Value::Null, &Value::Null, &Value::from("Rita Reviewer"), &Value::from("Rita Reviewer")]);

    // The journal verifies, and its key book agrees with the projection
    // (`keys list` adds each key's id and name to the journal's record).
    let (code, report) = verify_json(&["--data"], &[&data]);
    assert_eq!(code, Some(0), "{report}");
    let mut records = keys.clone();
    for k in records.as_array_mut().expect("keys") {
        let k = k.as_object_mut().expect("a key");
        k.remove("key_id");
        k.remove("name");
    }
    assert_eq!(report["keys"], records);

    // The conductor key rotates; the old one is kept and new work is
    // signed by the new one.
    let old_key = std::fs::read_to_string(data.join("keys/conductor.key")).expect("key");
    let out = run(conductor().args(["keys", "rotate-conductor", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0));
    assert_ne!(std::fs::read_to_string(data.join("keys/conductor.key")).expect("key"), old_key);
    let retired = std::fs::read_dir(data.join("keys"))
        .expect("keys dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".key.retired"))
        .count();
    assert_eq!(retired, 1);
    let more = gated_mission(dir.path(), "after", "    - {id: d, amount: 1}\n");
    assert_eq!(run_mission(&more, &data)["status"], "completed");
    let (code, report) = verify_json(&["--data"], &[&data]);
    assert_eq!(code, Some(0), "{report}");
}

/// Splits an export into its records.
fn export_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&bytes[..8], b"CJEXPORT");
    let count = u64::from_be_bytes(bytes[12..20].try_into().expect("count"));
    let mut at = 20;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("len")) as usize;
        out.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    assert_eq!(at, bytes.len());
    out
}

fn write_export(path: &Path, records: &[Vec<u8>]) {
    let mut bytes = b"CJEXPORT".to_vec();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&(records.len() as u64).to_be_bytes());
    for r in records {
        bytes.extend_from_slice(&(r.len() as u32).to_be_bytes());
        bytes.extend_from_slice(r);
    }
    std::fs::write(path, bytes).expect("write export");
}

#[test]
fn exports_and_checkpoints_verify_offline_and_catch_a_cut_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mission = gated_mission(dir.path(), "first", "    - {id: a, amount: 1}\n    - {id: b, amount: 2}\n");
    run_mission(&mission, &data);

    // Cut a checkpoint and keep it; then more work happens.
    let held = dir.path().join("held.ckpt");
    let out = run(conductor().args(["audit", "checkpoint", "--data"]).arg(&data).arg("--out").arg(&held));
    assert_eq!(out.status.code(), Some(0));
    let held_seq: u64 = std::fs::read_to_string(&held)
        .expect("checkpoint")
        .lines()
        .find_map(|l| l.strip_prefix("seq: ").map(|s| s.parse().expect("seq")))
        .expect("seq line");
    let out = run(conductor().args(["audit", "checkpoint", "--data"]).arg(&data).arg("--out").arg(&held));
    assert_ne!(out.status.code(), Some(0), "a checkpoint file is never overwritten");
    let second = gated_mission(dir.path(), "second", "    - {id: c, amount: 3}\n    - {id: d, amount: 4}\n");
    run_mission(&second, &data);
    let latest = dir.path().join("latest.ckpt");
    let out = run(conductor().args(["audit", "checkpoint", "--latest", "--data"]).arg(&data).arg("--out").arg(&latest));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&latest).expect("latest"), std::fs::read_to_string(&held).expect("held"));

    // Export, then verify the export with no database at all.
    let export = dir.path().join("journal.cjx");
    let out = run(conductor().args(["audit", "export", "--json", "--data"]).arg(&data).arg("--out").arg(&export));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout_json(&out)["ok"], true);
    let out = run(conductor().args(["audit", "export", "--data"]).arg(&data).arg("--out").arg(&export));
    assert_ne!(out.status.code(), Some(0), "an export is never overwritten");
    let kept = dir.path().join("kept");
    std::fs::create_dir(&kept).expect("mkdir");
    std::fs::rename(&data, kept.join("data")).expect("move the database away");
    let (code, report) = verify_json(&["--checkpoint"], &[&held, Path::new("--bundle"), &export]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["checkpoints_matched"], 1);
    let records = export_records(&std::fs::read(&export).expect("export"));
    assert_eq!(report["entries"], records.len() as u64);

    // A careful attacker cuts the tail at the checkpoint and fixes the
    // count: that verifies on its own (nothing left was changed) but not
    // against the held checkpoint, which names the first missing entry.
    let cut = dir.path().join("cut.cjx");
    write_export(&cut, &records[..held_seq as usize]);
    let (code, _) = verify_json(&["--bundle"], &[&cut]);
    assert_eq!(code, Some(0));
    let (code, report) = verify_json(&["--checkpoint"], &[&held, Path::new("--bundle"), &cut]);
    assert_eq!(code, Some(4));
    assert_eq!(report["seq"], held_seq, "{report}");
    assert!(report["reason"].as_str().expect("reason").contains("tail removed"), "{report}");

    // One flipped bit in the last entry is named.
    let mut flipped = records.clone();
    let last = flipped.len() - 1;
    let middle = flipped[last].len() / 2;
    flipped[last][middle] ^= 0x04;
    let bad = dir.path().join("flipped.cjx");
    write_export(&bad, &flipped);
    let (code, report) = verify_json(&["--bundle"], &[&bad]);
    assert_eq!(code, Some(4));
    assert_eq!(report["seq"], last as u64, "{report}");

    // Not an export at all: refused, never "intact".
    let garbage = dir.path().join("garbage.cjx");
    std::fs::write(&garbage, b"this is not a journal").expect("write");
    let (code, report) = verify_json(&["--bundle"], &[&garbage]);
    assert_eq!(code, Some(4));
    assert_eq!(report["ok"], false);

    // An edited checkpoint file is an error, not a pass.
    let edited = dir.path().join("edited.ckpt");
    let text = std::fs::read_to_string(&held).expect("held");
    std::fs::write(&edited, text.replacen("seq: ", "seq: 1", 1)).expect("write");
    let out = run(conductor().args(["audit", "verify", "--checkpoint"]).arg(&edited).arg("--bundle").arg(&export));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checkpoint"), "{}", stderr(&out));

    // The database itself: cut its tail and rewrite its head to match; the
    // held checkpoint still catches it.
    let data = kept.join("data");
    let db_path = data.join("conductor.redb");
    {
        let db = redb::Database::open(&db_path).expect("open db");
        let txn = db.begin_write().expect("txn");
        {
            let journal: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");
            let head: redb::TableDefinition<&str, (u64, &[u8])> = redb::TableDefinition::new("journal_head");
            let mut table = txn.open_table(journal).expect("journal");
            let prev = {
                use redb::ReadableTable;
                let record = table.get(held_seq - 1).expect("get").expect("present").value().to_vec();
                record[record.len() - 96..record.len() - 64].to_vec()
            };
            for seq in held_seq..records.len() as u64 {
                table.remove(seq).expect("remove");
            }
            let mut head = txn.open_table(head).expect("head");
            head.insert("head", (held_seq, prev.as_slice())).expect("head");
        }
        txn.commit().expect("commit");
    }
    // Without a checkpoint the cut still shows, here because the budget
    // tables (projections) describe entries that are gone; an attacker who
    // rewrote those too would pass this, which is what checkpoints are for.
    let (code, report) = verify_json(&["--data"], &[&data]);
    assert_eq!(code, Some(4));
    assert!(report["reason"].as_str().expect("reason").contains("projections disagree"), "{report}");
    let (code, report) = verify_json(&["--checkpoint"], &[&held, Path::new("--data"), &data]);
    assert_eq!(code, Some(4));
    assert_eq!(report["seq"], held_seq, "{report}");
}

#[test]
fn a_damaged_database_is_an_error_never_a_pass_or_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    run_mission(&gated_mission(dir.path(), "m", "    - {id: a, amount: 1}\n"), &data);
    let full = std::fs::read(data.join("conductor.redb")).expect("db");
    let damaged = |name: &str, bytes: &[u8]| {
        let copy = dir.path().join(name);
        std::fs::create_dir_all(&copy).expect("mkdir");
        std::fs::write(copy.join("conductor.redb"), bytes).expect("write");
        let out = run(conductor().args(["audit", "verify", "--data"]).arg(&copy));
        assert_eq!(out.status.code(), Some(1), "{name}: an unreadable database is an error");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    };
    for cut in [0, 100, 4096, full.len() / 2, full.len() - 1] {
        damaged(&format!("cut-{cut}"), &full[..cut]);
    }
    let mut scribbled = full.clone();
    for (i, byte) in scribbled.iter_mut().enumerate().skip(4096) {
        if i % 7 == 0 {
            *byte ^= 0xA5;
        }
    }
    damaged("scribbled", &scribbled);
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(dir.path().join("nowhere")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no data directory at"), "{}", stderr(&out));
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a conductor data directory"), "{}", stderr(&out));
}

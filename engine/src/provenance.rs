//! `audit show`: the provenance of one decision, from the journal alone.
//! Everything printed comes from journal entries (read-only), and the
//! whole chain is verified first, so the reader knows whether to trust it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ledger::Entry;
use redb::ReadableDatabase as _;
use serde_json::{Value, json};

use crate::data;

/// Which task a DECISION_ID names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `MISSION/TASK_INDEX` or `MISSION/CASE_ID`.
    Task { mission: String, task: String },
    /// A gate id (uuid) from `gates list`.
    Gate(String),
    /// A journal sequence number (`#123` or `123`) of any entry of the task.
    Seq(u64),
}

fn parse_target(id: &str) -> Target {
    let trimmed = id.strip_prefix('#').unwrap_or(id);
    if let Ok(seq) = trimmed.parse::<u64>() {
        return Target::Seq(seq);
    }
    match id.split_once('/') {
        Some((mission, task)) => Target::Task { mission: mission.to_owned(), task: task.to_owned() },
        None => Target::Gate(id.to_owned()),
    }
}

/// The provenance document for `id` (see `conductor audit show --help`).
pub fn show(dir: &Path, id: &str) -> Result<Value> {
    let db = data::db_path(dir)?;
    let verified = match ledger::verify_database(&db, &[]) {
        Ok(report) => json!({"ok": true, "entries": report.entries}),
        Err(ledger::VerifyError::Bad { seq, failure }) => {
            json!({"ok": false, "first_bad_seq": seq, "reason": failure.to_string()})
        }
        Err(e) => bail!("verifying the journal: {e}"),
    };
    // Two streaming passes (memory stays flat on a journal of millions of
    // entries): find the task, then gather what the journal says of it.
    let (mission, task) = resolve(&db, &parse_target(id))?;
    let mut declared = None;
    let mut names = BTreeMap::new();
    let mut started = None;
    let mut calls = Vec::new();
    let mut lifecycle = Vec::new();
    let mut gates = Vec::new();
    let mut postings = Vec::new();
    let mut shown_seqs = BTreeSet::new();
    let task_suffix = format!("/task-{task}");
    let is_account = |account: &Value| {
        // `MISSION/AGENT/task-N`: the task's own budget account.
        account.as_str().is_some_and(|a| {
            a.strip_prefix(mission.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.strip_suffix(task_suffix.as_str()))
                .is_some_and(|agent| !agent.is_empty() && !agent.contains('/'))
        })
    };
    ledger::scan_journal(&db, |e: Entry| -> Result<bool> {
        let p = e.payload_json();
        record_key(&e, &p, &mut names);
        if e.kind == "mission.declared" && p["mission"] == mission.as_str() {
            declared = Some(p);
            return Ok(true);
        }
        if e.kind == "budget.batch" {
            for item in p["postings"].as_array().into_iter().flatten() {
                if is_account(&item["payload"]["account"]) {
                    shown_seqs.insert(e.seq);
                    postings.push(json!({"seq": e.seq, "in_batch": true, "kind": item["kind"],
                                         "time_us": item["time_us"], "payload": item["payload"]}));
                }
            }
            return Ok(true);
        }
        if e.kind.starts_with("budget.") && is_account(&p["account"]) {
            shown_seqs.insert(e.seq);
            postings.push(json!({"seq": e.seq, "kind": e.kind, "time_us": e.time_us, "payload": p}));
            return Ok(true);
        }
        if !(p["mission"] == mission.as_str() && p["task"].as_u64() == Some(u64::from(task))) {
            return Ok(true);
        }
        shown_seqs.insert(e.seq);
        let hex = hex::encode(e.signer);
        let signer = names.get(&hex).cloned().unwrap_or_else(|| json!({"public_key": hex}));
        let at = json!({"seq": e.seq, "time_us": e.time_us, "signed_by": signer});
        match e.kind.as_str() {
            "task.started" => {
                lifecycle.push(json!({"entry": at, "kind": e.kind, "attempt_of_module": p["module_blake3"]}));
                started = Some(p);
            }
            k if k.starts_with("host.") => calls.push((k.to_owned(), p, at)),
            "gate.requested" | "gate.decided" => gates.push(json!({"entry": at, "kind": e.kind, "payload": p})),
            _ => lifecycle.push(json!({"entry": at, "kind": e.kind, "payload": p})),
        }
        Ok(true)
    })?;
    let declared = declared.context("the mission's declaration is not in the journal")?;
    // Memory values are sealed in the journal; they open with the keys in
    // the memory store, unless their subject was erased.
    let store = ledger::open_read_only(&db)?;
    let snapshot = store.begin_read().context("opening a read snapshot")?;
    let calls = calls
        .into_iter()
        .map(|(kind, mut p, at)| {
            crate::facts::unseal(&snapshot, &mut p)?;
            Ok(host_call(&kind, &p, at))
        })
        .collect::<Result<Vec<Value>>>()?;
    let started = started.with_context(|| format!("task {task} of mission {mission} never started"))?;
    let agent_name = started["agent"].as_str().unwrap_or_default();
    let agent = declared["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == agent_name))
        .cloned()
        .unwrap_or(Value::Null);
    let model = agent["model"].as_str().unwrap_or_default();
    let account = crate::run::task_account(&mission, agent_name, task);
    let signatures = match verified["first_bad_seq"].as_u64() {
        None => {
            json!({"all_valid": true, "checked": "every entry of the journal: sequence, hash chain, signature, signer's role"})
        }
        Some(bad) => json!({
            "all_valid": false,
            "first_bad_seq": bad,
            "reason": verified["reason"],
            "entries_shown_at_or_after_it": shown_seqs.range(bad..).copied().collect::<Vec<_>>(),
        }),
    };
    Ok(json!({
        "mission": {"id": mission, "name": declared["name"], "file_blake3": declared["file_blake3"]},
        "task": {"index": task, "case": started["case"], "origin": started["origin"], "input": started["input"]},
        "agent": {"name": agent_name, "module_blake3": started["module_blake3"], "limits": agent["limits"]},
        "model": {"name": model, "sha256": declared["models"][model]["sha256"],
                  "prices": {"prompt": declared["models"][model]["prompt_price"],
                             "completion": declared["models"][model]["completion_price"]}},
        "cell": {"clock_start_us": started["clock_start_us"], "seed": started["seed"]},
        "host_calls": calls,
        "gates": gates,
        "lifecycle": lifecycle,
        "budget": {"account": account, "postings": postings},
        "signatures": signatures,
    }))
}

/// Finds (mission, task index) for a target, scanning the journal once.
fn resolve(db: &Path, target: &Target) -> Result<(String, u32)> {
    let task_of = |p: &Value| -> Option<(String, u32)> {
        Some((p["mission"].as_str()?.to_owned(), u32::try_from(p["task"].as_u64()?).ok()?))
    };
    let mut found = None;
    let mut seq_seen = false;
    ledger::scan_journal(db, |e: Entry| -> Result<bool> {
        let hit = match target {
            Target::Seq(seq) => {
                if e.seq != *seq {
                    return Ok(true);
                }
                seq_seen = true;
                true
            }
            Target::Gate(gate) => e.kind == "gate.requested" && e.payload_json()["gate_id"] == gate.as_str(),
            Target::Task { mission, task } => {
                e.kind == "task.started" && {
                    let p = e.payload_json();
                    p["mission"] == mission.as_str()
                        && (p["case"] == task.as_str()
                            || p["task"].as_u64().map(|t| t.to_string()).as_deref() == Some(task.as_str()))
                }
            }
        };
        if hit {
            found = task_of(&e.payload_json());
        }
        Ok(!hit)
    })?;
    found.with_context(|| match target {
        Target::Seq(seq) if seq_seen => format!("entry {seq} is not part of any task"),
        Target::Seq(seq) => format!("entry {seq} is not in the journal"),
        Target::Gate(gate) => {
            format!("no gate `{gate}`; give a gate id, MISSION/TASK, MISSION/CASE_ID or an entry number")
        }
        Target::Task { mission, task } => {
            format!("mission `{mission}` has no started task `{task}` (a task index or case id)")
        }
    })
}

/// Notes a registered key's role and the name given when it was
/// registered, if `e` introduces a key. A rotated key's successor is the
/// same person's (or the conductor's) key: it keeps the role and name.
fn record_key(e: &Entry, p: &Value, names: &mut BTreeMap<String, Value>) {
    match e.kind.as_str() {
        "conductor.genesis" => {
            let public = hex::encode(e.signer);
            names.insert(public.clone(), json!({"role": "conductor", "public_key": public, "key_id": p["key_id"]}));
        }
        "key.registered" => {
            let (Some(role), Some(public)) = (p["role"].as_str(), p["public_key"].as_str()) else { return };
            let mut who = json!({"role": role, "public_key": public, "key_id": p["key_id"], "registered_seq": e.seq});
            for field in ["name", "agent", "mission"] {
                if !p[field].is_null() {
                    who[field] = p[field].clone();
                }
            }
            names.insert(public.to_owned(), who);
        }
        "key.rotated" => {
            let (Some(old), Some(new)) = (p["old_key"].as_str(), p["new_key"].as_str()) else { return };
            let Some(mut who) = names.get(old).cloned() else { return };
            who["public_key"] = json!(new);
            who["key_id"] = p["new_key_id"].clone();
            who["registered_seq"] = json!(e.seq);
            names.insert(new.to_owned(), who);
        }
        _ => {}
    }
}

/// One host call as an auditor reads it.
fn host_call(kind: &str, p: &Value, at: Value) -> Value {
    let mut call = json!({"entry": at, "kind": kind});
    let fields: &[&str] = match kind {
        "host.infer" => &[
            "model",
            "messages",
            "max_tokens",
            "text",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "reservation",
            "refused",
            "error",
        ],
        "host.recall" => &["subject", "asked_valid_at", "valid_at", "known_at", "spaces", "facts", "erased", "refused"],
        "host.query" => &["query", "spaces", "facts", "truncated", "erased", "refused"],
        "host.remember" => {
            &["subject", "predicate", "value", "erased", "space", "fact", "superseded", "valid_from", "refused"]
        }
        "host.review" => &["gate", "reason", "refused"],
        _ => &["message"],
    };
    for field in fields {
        if let Some(v) = p.get(*field).filter(|v| !v.is_null()) {
            call[*field] = v.clone();
        }
    }
    call
}

/// A plain-text rendering of [`show`]'s document.
pub fn render(doc: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let m = &doc["mission"];
    let t = &doc["task"];
    let _ = writeln!(
        s,
        "mission   {} ({}), file blake3 {}",
        m["id"].as_str().unwrap_or("?"),
        m["name"].as_str().unwrap_or("?"),
        m["file_blake3"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "task      {} case {} from {}",
        t["index"],
        t["case"].as_str().unwrap_or("?"),
        t["origin"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "input     {}", t["input"]);
    let a = &doc["agent"];
    let _ = writeln!(
        s,
        "agent     {} module blake3 {}",
        a["name"].as_str().unwrap_or("?"),
        a["module_blake3"].as_str().unwrap_or("?")
    );
    let md = &doc["model"];
    let _ =
        writeln!(s, "model     {} sha256 {}", md["name"].as_str().unwrap_or("?"), md["sha256"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "cell      clock starts {}, seed {}",
        time(&doc["cell"]["clock_start_us"]),
        doc["cell"]["seed"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "\nhost calls");
    for c in doc["host_calls"].as_array().into_iter().flatten() {
        // `#SEQ TIME`: where the entry is in the journal, and when.
        let seq = format!("{} {}", c["entry"]["seq"], time(&c["entry"]["time_us"]));
        match c["kind"].as_str().unwrap_or_default() {
            "host.infer" => {
                let _ = writeln!(
                    s,
                    "  #{seq} infer {} (max_tokens {})",
                    c["model"].as_str().unwrap_or("?"),
                    c["max_tokens"]
                );
                for msg in c["messages"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        s,
                        "      {}: {}",
                        msg["role"].as_str().unwrap_or("?"),
                        msg["content"].as_str().unwrap_or("")
                    );
                }
                match c.get("refused").or_else(|| c.get("error")) {
                    Some(why) => {
                        let _ = writeln!(s, "      refused: {}", why.as_str().unwrap_or("?"));
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            "      completion ({}+{} tokens, cost {}): {}",
                            c["prompt_tokens"],
                            c["completion_tokens"],
                            c["cost"],
                            c["text"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            "host.recall" => {
                let _ = writeln!(
                    s,
                    "  #{seq} recall {} valid at {} as known at {}: {}",
                    c["subject"].as_str().unwrap_or("?"),
                    time(&c["valid_at"]),
                    time(&c["known_at"]),
                    c.get("facts").map_or_else(|| format!("refused: {}", c["refused"]), |f| f.to_string())
                );
            }
            "host.query" => {
                let _ = writeln!(
                    s,
                    "  #{seq} query memory {}: {}",
                    c["query"],
                    c.get("facts").map_or_else(|| format!("refused: {}", c["refused"]), |f| f.to_string())
                );
            }
            "host.remember" => {
                let _ = writeln!(
                    s,
                    "  #{seq} remember {} {} = {}{}",
                    c["subject"].as_str().unwrap_or("?"),
                    c["predicate"].as_str().unwrap_or("?"),
                    c["value"],
                    c.get("refused").map_or(String::new(), |r| format!(" (refused: {r})"))
                );
            }
            "host.review" => {
                let _ = writeln!(
                    s,
                    "  #{seq} review requested under {}: {}{}",
                    c["gate"],
                    c["reason"],
                    c.get("refused").map_or(String::new(), |r| format!(" (refused: {r})"))
                );
            }
            _ => {
                let _ = writeln!(s, "  #{seq} log {}", c["message"]);
            }
        }
    }
    let _ = writeln!(s, "\nlifecycle and gates");
    let mut events: Vec<&Value> = doc["lifecycle"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(doc["gates"].as_array().into_iter().flatten())
        .collect();
    events.sort_by_key(|e| e["entry"]["seq"].as_u64());
    for e in events {
        let by = &e["entry"]["signed_by"];
        let who = match (by["role"].as_str(), by["name"].as_str()) {
            (Some(role), Some(name)) => format!("{role} {name}"),
            (Some(role), None) => {
                format!("{role} {}", by["key_id"].as_str().unwrap_or(by["public_key"].as_str().unwrap_or("?")))
            }
            _ => by["public_key"].as_str().unwrap_or("?").to_owned(),
        };
        let _ = writeln!(
            s,
            "  #{} {} {} by {who}: {}",
            e["entry"]["seq"],
            time(&e["entry"]["time_us"]),
            e["kind"].as_str().unwrap_or("?"),
            e.get("payload").map_or_else(String::new, Value::to_string)
        );
    }
    let _ = writeln!(s, "\nbudget postings on {}", doc["budget"]["account"].as_str().unwrap_or("?"));
    for p in doc["budget"]["postings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  #{} {} {} {}",
            p["seq"],
            time(&p["time_us"]),
            p["kind"].as_str().unwrap_or("?"),
            p["payload"]
        );
    }
    let sig = &doc["signatures"];
    if sig["all_valid"] == true {
        let _ = writeln!(s, "\nsignatures: every entry of the journal verifies (chain, signatures, signer roles)");
    } else {
        let _ = writeln!(
            s,
            "\nsignatures: NOT VALID from entry {} on ({}); entries shown at or after it: {}",
            sig["first_bad_seq"],
            sig["reason"].as_str().unwrap_or("?"),
            sig["entries_shown_at_or_after_it"]
        );
    }
    s
}

/// A time in the document (Unix microseconds) as RFC 3339, as the other
/// commands print times; `-` where there is none.
fn time(micros: &Value) -> String {
    micros.as_i64().map_or_else(|| "-".to_owned(), missions::format_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_name_a_task_a_gate_or_an_entry() {
        assert_eq!(parse_target("#42"), Target::Seq(42));
        assert_eq!(parse_target("42"), Target::Seq(42));
        assert_eq!(parse_target("m-1/case-7"), Target::Task { mission: "m-1".into(), task: "case-7".into() });
        assert_eq!(parse_target("5f0c-gate"), Target::Gate("5f0c-gate".into()));
    }
}

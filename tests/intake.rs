//! Open missions (#21 item 1): a mission with `intake:` stays open under
//! `conductor serve` and takes cases as they arrive, through the API, the
//! command line and a watched inbox; each is acknowledged only once
//! `case.received` is durable and runs exactly once, also across kill -9.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use identity::Keypair;
use serde_json::{Value, json};

/// An open mission on the delegating test agent: no cases of its own,
/// an inbox, a small queue and small document limits.
fn open_mission(dir: &Path, queue: u32) -> PathBuf {
    let module = module("cells/guests/delegate-agent/delegate.wasm");
    std::fs::create_dir_all(dir.join("inbox")).expect("create the inbox");
    let text = format!(
        "name: intake\n\
         budget:\n  limit: 1000000\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 1\n\
         agents:\n  - {{ name: clerk, module: {}, model: smollm2-135m }}\n\
         intake:\n  agent: clerk\n  queue: {queue}\n  inbox: inbox\n\
         \x20 documents: {{ count: 2, bytes: 64, types: [text/plain, application/pdf] }}\n",
        module.display()
    );
    let path = dir.join("intake.yaml");
    std::fs::write(&path, text).expect("write a test file");
    path
}

fn operator(dir: &Path, data: &Path) -> Keypair {
    let key = dir.join("operator.key");
    registered_operator(data, &key);
    Keypair::load(&key).expect("operator key")
}

/// POSTs a JSON body of `bytes` bytes and returns the status; the server
/// may answer (and close) before the body is all sent.
fn oversized(addr: &str, path: &str, cookie: &str, bytes: usize) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/json\r\n\
         Content-Length: {bytes}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        if stream.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

/// Signs the operator in on `served` and waits for its open mission to
/// start: the session cookie and the mission's id.
fn signed_in(served: &Served, key: &Keypair) -> (String, String) {
    let cookie = sign_in(&served.addr, key);
    eventually(Duration::from_secs(30), "the mission to start", || mission_id(&served.addr, &cookie).is_some());
    let id = mission_id(&served.addr, &cookie).expect("the mission is listed");
    (cookie, id)
}

fn mission_id(addr: &str, cookie: &str) -> Option<String> {
    let (status, _, body) = http(addr, "GET", "/api/missions", Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    body["missions"].as_array()?.iter().find(|m| m["name"] == "intake").and_then(|m| m["id"].as_str()).map(String::from)
}

fn show(addr: &str, cookie: &str, id: &str) -> Value {
    let (status, _, body) = http(addr, "GET", &format!("/api/missions/{id}"), Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn an_open_mission_takes_cases_from_the_api_the_cli_and_its_inbox_and_ends_when_closed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), 3);
    let registry = scripted_registry(dir.path());
    // A one-off run refuses an open mission: it belongs under `serve`.
    let out = run(conductor().arg("run").arg(&mission).arg("--data").arg(&data).arg("--models").arg(&registry));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("conductor serve --run"), "{}", stderr(&out));

    let key = operator(dir.path(), &data);
    let served =
        Served::start(&data, &["--models".as_ref(), registry.as_os_str(), "--run".as_ref(), mission.as_os_str()]);
    let (cookie, id) = signed_in(&served, &key);
    assert_eq!(show(&served.addr, &cookie, &id)["intake"]["open"], true);

    // One case with a document, through the API.
    let pdf = "JVBERi0xLjQK"; // "%PDF-1.4\n"
    let case = json!({"id": "A-1", "input": {"outcome": "approve", "read": "form.pdf"}, "idempotency_key": "k-1",
                      "documents": [{"name": "form.pdf", "media_type": "application/pdf", "content_base64": pdf}]});
    let path = format!("/api/missions/{id}/cases");
    let (status, _, first) = http(&served.addr, "POST", &path, Some(&cookie), Some(&case));
    assert_eq!(status, 201, "{first}");
    // The same idempotency key again: the same case, not a second one.
    let (status, _, again) = http(&served.addr, "POST", &path, Some(&cookie), Some(&case));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cases"][0]["task"], first["cases"][0]["task"]);
    assert_eq!(again["cases"][0]["duplicate"], true);

    // Bad input: clear 4xx, nothing taken.
    let bad = [
        (json!({"input": [1, 2]}), 422),
        (
            json!({"input": {}, "documents": [{"name": "x.exe", "media_type": "application/x-msdownload", "content_base64": ""}]}),
            422,
        ),
        (
            json!({"input": {}, "documents": [{"name": "big.txt", "media_type": "text/plain", "content_base64": "QUFB".repeat(40)}]}),
            422,
        ),
        (json!({"input": {}, "unknown": 1}), 400),
        (json!({"id": "A-1", "input": {}}), 409),
    ];
    for (body, expected) in bad {
        let (status, _, answer) = http(&served.addr, "POST", &path, Some(&cookie), Some(&body));
        assert_eq!(status, expected, "{body} -> {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }
    let (status, _, answer) = http(&served.addr, "POST", "/api/missions/nope/cases", Some(&cookie), Some(&case));
    assert_eq!(status, 404, "{answer}");
    // A submission past the body limit (64 MiB) is refused whole.
    assert_eq!(oversized(&served.addr, &path, &cookie, (64 << 20) + 1), 413);
    let (status, _, _) = http(&served.addr, "POST", &path, None, Some(&case));
    assert_eq!(status, 401);

    // Through the inbox: written atomically, taken once, removed.
    let inbox = dir.path().join("inbox");
    std::fs::write(inbox.join(".c-2.json.tmp"), r#"{"id": "B-2", "outcome": "deny", "read": "none.pdf"}"#)
        .expect("write a test file");
    std::fs::rename(inbox.join(".c-2.json.tmp"), inbox.join("c-2.json")).expect("move the case into the inbox");
    std::fs::write(inbox.join("broken.json"), "{not json").expect("write a test file");
    eventually(Duration::from_secs(30), "the inbox to be taken", || !inbox.join("c-2.json").exists());
    eventually(Duration::from_secs(30), "the broken file to be set aside", || {
        inbox.join(".rejected/broken.json.why.txt").is_file()
    });

    // Through the command line while the server holds the data directory:
    // the server takes it (`local.rs`), and says which task it became.
    std::fs::write(dir.path().join("c-3.json"), r#"{"id": "C-3"}"#).expect("write a test file");
    let out = run(conductor().args(["cases", "add", &id]).arg(dir.path().join("c-3.json")).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-> task"), "{}", String::from_utf8_lossy(&out.stdout));

    eventually(Duration::from_secs(60), "the three cases to be decided", || {
        show(&served.addr, &cookie, &id)["counts"]["decided"] == 3
    });

    // The server runs this mission: a resume from the command line (run
    // in the server) starts no second run of it.
    let out = run(conductor().args(["mission", "resume", &id, "--models"]).arg(&registry).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("already running in this process"), "{}", stderr(&out));

    // Closing, from the command line beside the server: the mission
    // finishes what it has and ends.
    let out = run(conductor().args(["mission", "close", &id, "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(30), "the mission to end", || {
        show(&served.addr, &cookie, &id)["status"] == "completed"
    });
    let (status, _, late) = http(&served.addr, "POST", &path, Some(&cookie), Some(&json!({"input": {}})));
    assert_eq!(status, 409, "a closed mission takes no cases: {late}");
    served.stop();

    // The journal: each received case once, naming who sent it and the
    // document's hash; the refusals of the known caller.
    let received = journal(&data, "case.received");
    assert_eq!(received.len(), 3, "{received:?}");
    let by_cli = received.iter().find(|e| e["payload"]["submitted_by"]["via"] == "cli").expect("C-3 received");
    assert_eq!(by_cli["payload"]["input"]["id"], "C-3", "{by_cli}");
    let api = received.iter().find(|e| e["payload"]["case"] == "A-1").expect("A-1 received");
    assert_eq!(api["payload"]["submitted_by"]["via"], "api");
    assert_eq!(api["payload"]["submitted_by"]["key"], key.public().key_id().to_string());
    let doc_hash = blake3::hash(b"%PDF-1.4\n").to_hex().to_string();
    assert_eq!(api["payload"]["documents"][0]["blake3"], doc_hash);
    assert!(data.join("documents").join(&doc_hash[..2]).join(&doc_hash).is_file());
    // The agent read the document through the host, 4 bytes at a time,
    // each read journaled by the document's hash; the inbox case has no
    // documents, and its read is refused (journaled too).
    let proposed = journal(&data, "task.proposed");
    let a1 = proposed.iter().find(|e| e["payload"]["case"] == "A-1").expect("A-1 proposed");
    assert_eq!(a1["payload"]["decision"]["details"]["document"], "%PDF-1.4\n", "{a1}");
    assert_eq!(a1["payload"]["decision"]["details"]["read_bytes"], 9, "{a1}");
    let reads = journal(&data, "host.document");
    let a1_reads: Vec<&Value> = reads.iter().filter(|e| e["payload"]["name"] == "form.pdf").collect();
    assert_eq!(a1_reads.len(), 4, "reads of 4, 4, 1 and 0 bytes: {a1_reads:?}");
    assert!(a1_reads.iter().all(|e| e["payload"]["blake3"] == doc_hash.as_str()), "{a1_reads:?}");
    let b2 = proposed.iter().find(|e| e["payload"]["case"] == "B-2").expect("B-2 proposed");
    assert!(
        b2["payload"]["decision"]["details"]["read_error"].as_str().is_some_and(|e| e.contains("no documents")),
        "{b2}"
    );
    // `audit show` reaches back to the casework documents: the case as
    // received (with the document's hash) and each read of it.
    let out = run(conductor().args(["audit", "show", &format!("{id}/A-1"), "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("case.received") && shown.contains("host.document"), "{shown}");
    assert!(shown.matches(doc_hash.as_str()).count() >= 5, "the hash in case.received and in 4 reads: {shown}");
    let inboxed = received.iter().find(|e| e["payload"]["case"] == "B-2").expect("B-2 received");
    assert_eq!(inboxed["payload"]["submitted_by"]["via"], "inbox");
    assert!(!journal(&data, "request.refused").is_empty());
    assert_eq!(journal(&data, "mission.control").len(), 1);

    // With the server stopped, the command line takes cases directly; a
    // closed mission refuses them (exit 2).
    std::fs::write(dir.path().join("c-4.json"), r#"{"id": "D-4"}"#).expect("write a test file");
    let out = run(conductor().args(["cases", "add", &id]).arg(dir.path().join("c-4.json")).arg("--data").arg(&data));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("closed"), "{}", stderr(&out));
    assert_verifies_and_replays(&data);
}

#[test]
fn a_full_queue_pushes_back_with_429_and_retry_after() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), 2);
    let registry = scripted_registry(dir.path());
    let key = operator(dir.path(), &data);
    let served =
        Served::start(&data, &["--models".as_ref(), registry.as_os_str(), "--run".as_ref(), mission.as_os_str()]);
    let (cookie, id) = signed_in(&served, &key);
    // Paused, the mission starts nothing: the queue only fills.
    let (status, _, paused) = http(&served.addr, "POST", &format!("/api/missions/{id}/pause"), Some(&cookie), None);
    assert_eq!(status, 200, "{paused}");
    eventually(Duration::from_secs(30), "the mission to pause", || {
        show(&served.addr, &cookie, &id)["status"] == "paused"
    });
    let path = format!("/api/missions/{id}/cases");
    let batch = json!({"cases": [{"input": {}}, {"input": {}}]});
    let (status, _, taken) = http(&served.addr, "POST", &path, Some(&cookie), Some(&batch));
    assert_eq!(status, 201, "{taken}");
    let (status, head, full) = http(&served.addr, "POST", &path, Some(&cookie), Some(&json!({"input": {}})));
    assert_eq!(status, 429, "{full}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    assert_eq!(show(&served.addr, &cookie, &id)["intake"]["queued"], 2);
    // Resumed, it works the queue, and takes cases again.
    let (status, _, resumed) = http(&served.addr, "POST", &format!("/api/missions/{id}/resume"), Some(&cookie), None);
    assert_eq!(status, 202, "{resumed}");
    eventually(Duration::from_secs(60), "the queue to drain", || {
        let shown = show(&served.addr, &cookie, &id);
        shown["counts"]["decided"] == 2 && shown["intake"]["queued"] == 0
    });
    let (status, _, taken) = http(&served.addr, "POST", &path, Some(&cookie), Some(&json!({"input": {}})));
    assert_eq!(status, 201, "{taken}");
    served.stop();
    let refused = journal(&data, "request.refused");
    assert!(refused.iter().any(|e| e["payload"]["status"] == 429), "{refused:?}");
}

/// Cases are POSTed while the server is killed (SIGKILL) at random times
/// and restarted: every acknowledged case is decided exactly once, and no
/// case appears that was never acknowledged. Clients retry unanswered
/// submissions with the same idempotency key, as a real client would.
#[test]
fn acknowledged_cases_survive_kill_9_and_run_exactly_once() {
    let kills: usize = std::env::var("CONDUCTOR_INTAKE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), 10_000);
    let registry = scripted_registry(dir.path());
    let key = operator(dir.path(), &data);
    let start = |with_run: bool| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--models".as_ref(), registry.as_os_str()];
        if with_run {
            args.extend(["--run".as_ref(), mission.as_os_str()]);
        }
        Served::start(&data, &args)
    };
    let mut served = start(true);
    let (mut cookie, id) = signed_in(&served, &key);
    let path = format!("/api/missions/{id}/cases");
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is past 1970").as_nanos()
            as u64;
    eprintln!("intake kill seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acknowledged: std::collections::BTreeMap<String, u64> = Default::default();
    let mut case = 0u32;
    // Cases dropped into the inbox too: each is taken once, kill or not.
    let inbox = dir.path().join("inbox");
    let mut inboxed = std::collections::BTreeSet::new();
    for kill in 0..kills {
        let name = format!("I-{kill}");
        std::fs::write(inbox.join(format!(".{name}.json.tmp")), json!({"id": name}).to_string())
            .expect("write a test file");
        std::fs::rename(inbox.join(format!(".{name}.json.tmp")), inbox.join(format!("{name}.json")))
            .expect("move the case into the inbox");
        inboxed.insert(name);
        // A burst of submissions from a few threads, cut by a kill.
        let addr = served.addr.clone();
        let cookie_now = cookie.clone();
        let first = case;
        let count = 4 + (next() % 8) as u32;
        case += count;
        let path_now = path.clone();
        let senders: Vec<_> = (first..first + count)
            .map(|n| {
                let (addr, cookie, path) = (addr.clone(), cookie_now.clone(), path_now.clone());
                std::thread::spawn(move || {
                    let body = json!({"id": format!("K-{n}"), "input": {}, "idempotency_key": format!("key-{n}")});
                    let answer = std::panic::catch_unwind(|| http(&addr, "POST", &path, Some(&cookie), Some(&body)));
                    (n, answer.ok())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(next() % 60));
        served.child.kill().expect("kill the server");
        served.child.wait().expect("reap the server");
        let mut unanswered = Vec::new();
        for sender in senders {
            let (n, answer) = sender.join().expect("a sender thread");
            match answer {
                Some((201 | 200, _, body)) => {
                    acknowledged.insert(format!("K-{n}"), body["cases"][0]["task"].as_u64().expect("a task number"));
                }
                _ => unanswered.push(n),
            }
        }
        served = start(false);
        cookie = sign_in(&served.addr, &key);
        // Retried with the same key until acknowledged: once each.
        for n in unanswered {
            let body = json!({"id": format!("K-{n}"), "input": {}, "idempotency_key": format!("key-{n}")});
            let (status, _, answer) = http(&served.addr, "POST", &path, Some(&cookie), Some(&body));
            assert!(status == 201 || status == 200, "kill {kill}: retry of K-{n}: {status} {answer}");
            let task = answer["cases"][0]["task"].as_u64().expect("a task number");
            if let Some(earlier) = acknowledged.insert(format!("K-{n}"), task) {
                assert_eq!(earlier, task, "one case, one task");
            }
        }
    }
    eventually(Duration::from_secs(60), "the inbox to be taken", || {
        std::fs::read_dir(&inbox).expect("the inbox").filter_map(Result::ok).all(|e| e.file_name() == ".rejected")
    });
    let (status, _, _) = http(&served.addr, "POST", &format!("/api/missions/{id}/close"), Some(&cookie), None);
    assert_eq!(status, 200);
    eventually(Duration::from_secs(120), "the mission to end", || {
        show(&served.addr, &cookie, &id)["status"] == "completed"
    });
    served.stop();
    let received = journal(&data, "case.received");
    let mut seen = std::collections::BTreeSet::new();
    for entry in &received {
        let case = entry["payload"]["case"].as_str().expect("a case id").to_owned();
        assert!(seen.insert(case.clone()), "{case} received twice");
        assert!(acknowledged.contains_key(&case) || inboxed.contains(&case), "{case} was never acknowledged");
    }
    assert_eq!(seen.len(), acknowledged.len() + inboxed.len(), "every acknowledged case is in the journal");
    let shown = stdout_json(&run(conductor().args(["mission", "show", &id, "--json", "--data"]).arg(&data)));
    let statuses: Vec<(String, String)> = tasks(&shown)
        .iter()
        .filter(|t| t["status"] != "decided")
        .map(|t| (t["case_id"].as_str().unwrap_or("").to_owned(), t["status"].to_string()))
        .collect();
    let decided = journal(&data, "task.decided");
    let mut ended = std::collections::BTreeMap::new();
    for entry in &decided {
        *ended.entry(entry["payload"]["case"].as_str().expect("a case id").to_owned()).or_insert(0) += 1;
    }
    for case in acknowledged.keys().chain(&inboxed) {
        assert_eq!(ended.get(case), Some(&1), "{case} decided exactly once; tasks not decided: {statuses:?}");
    }
    assert_verifies_and_replays(&data);
}

/// 10,000 cases arrive through the API (in batches, as a feeder would send
/// them) into one open mission on the scripted backend: each is received
/// once, decided once, and the journal verifies and replays.
#[test]
fn ten_thousand_cases_arrive_through_the_api_and_each_is_decided_once() {
    const CASES: usize = 10_000;
    const BATCH: usize = 500;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), CASES as u32);
    let registry = scripted_registry(dir.path());
    let key = operator(dir.path(), &data);
    let served = Served::start(
        &data,
        &[
            "--models".as_ref(),
            registry.as_os_str(),
            "--concurrency".as_ref(),
            "64".as_ref(),
            "--run".as_ref(),
            mission.as_os_str(),
        ],
    );
    let (cookie, id) = signed_in(&served, &key);
    let path = format!("/api/missions/{id}/cases");
    let senders: Vec<_> = (0..CASES / BATCH)
        .map(|b| {
            let (addr, cookie, path) = (served.addr.clone(), cookie.clone(), path.clone());
            std::thread::spawn(move || {
                let cases: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
                    .map(|n| json!({"id": format!("T-{n}"), "input": {"outcome": if n.is_multiple_of(2) { "approve" } else { "deny" }}}))
                    .collect();
                let (status, _, answer) = http(&addr, "POST", &path, Some(&cookie), Some(&json!({"cases": cases})));
                assert_eq!(status, 201, "{answer}");
                answer["cases"].as_array().map_or(0, Vec::len)
            })
        })
        .collect();
    let acknowledged: usize = senders.into_iter().map(|s| s.join().expect("a sender thread")).sum();
    assert_eq!(acknowledged, CASES);
    let (status, _, _) = http(&served.addr, "POST", &format!("/api/missions/{id}/close"), Some(&cookie), None);
    assert_eq!(status, 200);
    eventually(Duration::from_secs(300), "the mission to end", || {
        show(&served.addr, &cookie, &id)["status"] == "completed"
    });
    let shown = show(&served.addr, &cookie, &id);
    assert_eq!(shown["counts"]["decided"], CASES, "{shown}");
    assert_eq!(shown["intake"]["received"], CASES, "{shown}");
    served.stop();
    let received = journal(&data, "case.received");
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|e| e["payload"]["case"].as_str().expect("a case id")).collect();
    assert_eq!(ids.len(), CASES, "each case received once");
    let decided = journal(&data, "task.decided");
    assert_eq!(decided.len(), CASES, "each case decided once");
    for entry in &decided {
        let n: usize = entry["payload"]["case"].as_str().expect("a case id")[2..].parse().expect("a case number");
        let expected = if n.is_multiple_of(2) { "approve" } else { "deny" };
        assert_eq!(entry["payload"]["outcome"], expected, "{entry}");
    }
    assert_verifies_and_replays(&data);
}

/// A case that names its data subject has its documents sealed under the
/// subject's key: the agent reads them, nothing is plaintext at rest, and
/// erasing the subject shreds them while the journal still verifies
/// (audit replay then calls the attempt "erased").
#[test]
fn a_data_subjects_documents_are_crypto_shredded_by_erasure() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), 10);
    let registry = scripted_registry(dir.path());
    let key = operator(dir.path(), &data);
    let served =
        Served::start(&data, &["--models".as_ref(), registry.as_os_str(), "--run".as_ref(), mission.as_os_str()]);
    let (cookie, id) = signed_in(&served, &key);
    let case = json!({"id": "S-1", "input": {"_subject": "claimant-9", "read": "pay.txt", "chunk": 64},
                      "documents": [{"name": "pay.txt", "media_type": "text/plain", "content_base64": "c2FsYXJ5IDIxMDA="}]});
    let (status, _, answer) =
        http(&served.addr, "POST", &format!("/api/missions/{id}/cases"), Some(&cookie), Some(&case));
    assert_eq!(status, 201, "{answer}");
    eventually(Duration::from_secs(30), "the case to be decided", || {
        show(&served.addr, &cookie, &id)["counts"]["decided"] == 1
    });
    let (status, _, _) = http(&served.addr, "POST", &format!("/api/missions/{id}/close"), Some(&cookie), None);
    assert_eq!(status, 200);
    eventually(Duration::from_secs(30), "the mission to end", || {
        show(&served.addr, &cookie, &id)["status"] == "completed"
    });
    served.stop();
    let proposed = journal(&data, "task.proposed");
    assert_eq!(proposed[0]["payload"]["decision"]["details"]["document"], "salary 2100", "{proposed:?}");
    // Sealed at rest: the plaintext is in no file of the document store.
    let mut stored = Vec::new();
    let mut dirs = vec![data.join("documents")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("the document store") {
            let path = entry.expect("an entry").path();
            if path.is_dir() { dirs.push(path) } else { stored.push(std::fs::read(&path).expect("a stored document")) }
        }
    }
    assert_eq!(stored.len(), 1, "one document stored");
    assert!(!stored[0].windows(6).any(|w| w == b"salary"), "the document is sealed at rest");
    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)[0]["verdict"], "match");

    let out = run(conductor()
        .args(["memory", "erase", "--subject", "claimant-9", "--key"])
        .arg(dir.path().join("operator.key"))
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["audit", "replay", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)[0]["verdict"], "erased", "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal still verifies: {}", stderr(&out));
}

/// An operator cancels an open mission: what had not started is skipped
/// (`task.skipped`, reason `cancelled`), it takes no more cases, it ends
/// `cancelled`, and its progress stream tells watchers as it goes.
#[test]
fn a_cancelled_mission_skips_what_has_not_started_and_its_progress_stream_says_so() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mission = open_mission(dir.path(), 10);
    let registry = scripted_registry(dir.path());
    let key = operator(dir.path(), &data);
    let served =
        Served::start(&data, &["--models".as_ref(), registry.as_os_str(), "--run".as_ref(), mission.as_os_str()]);
    let (cookie, id) = signed_in(&served, &key);
    let (status, _, _) = http(&served.addr, "POST", &format!("/api/missions/{id}/pause"), Some(&cookie), None);
    assert_eq!(status, 200);
    eventually(Duration::from_secs(30), "the mission to pause", || {
        show(&served.addr, &cookie, &id)["status"] == "paused"
    });
    let batch = json!({"cases": [{"id": "C-1", "input": {}}, {"id": "C-2", "input": {}}, {"id": "C-3", "input": {}}]});
    let (status, _, answer) =
        http(&served.addr, "POST", &format!("/api/missions/{id}/cases"), Some(&cookie), Some(&batch));
    assert_eq!(status, 201, "{answer}");

    // A watcher of the mission's progress.
    let mut stream = std::net::TcpStream::connect(&served.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    write!(stream, "GET /api/missions/{id}/events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n").expect("send");
    let mut events = BufReader::new(stream);
    let mut next_progress = || -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(events.read_line(&mut line).expect("an event line") > 0, "the stream ended");
            if let Some(data) = line.trim().strip_prefix("data: ") {
                return serde_json::from_str(data).expect("progress JSON");
            }
        }
    };
    let first = next_progress();
    assert_eq!((first["status"].clone(), first["intake"]["queued"].clone()), (json!("paused"), json!(3)), "{first}");

    let (status, _, cancelled) = http(&served.addr, "POST", &format!("/api/missions/{id}/cancel"), Some(&cookie), None);
    assert_eq!(status, 200, "{cancelled}");
    let mut last = first;
    let start = Instant::now();
    while last["status"] != "cancelled" {
        assert!(start.elapsed() < Duration::from_secs(30), "the stream reports the cancel: {last}");
        last = next_progress();
    }
    assert_eq!(last["intake"]["open"], false, "{last}");
    eventually(Duration::from_secs(30), "the queue to empty", || {
        show(&served.addr, &cookie, &id)["intake"]["queued"] == 0
    });
    let (status, _, late) =
        http(&served.addr, "POST", &format!("/api/missions/{id}/cases"), Some(&cookie), Some(&json!({"input": {}})));
    assert_eq!(status, 409, "a cancelled mission takes no cases: {late}");
    let (status, _, again) = http(&served.addr, "POST", &format!("/api/missions/{id}/cancel"), Some(&cookie), None);
    assert_eq!(status, 409, "cancelled once: {again}");
    served.stop();
    let skipped = journal(&data, "task.skipped");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped.iter().all(|e| e["payload"]["reason"] == "cancelled"), "{skipped:?}");
    let control = journal(&data, "mission.control");
    assert!(control.iter().any(|e| e["payload"]["action"] == "cancel"), "{control:?}");
    let finished = journal(&data, "mission.finished");
    assert_eq!(finished.last().expect("finished")["payload"]["status"], "cancelled");
    // Nothing ran, so there is nothing to replay: the journal verifies.
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
    assert_entries_typed(&data);
}

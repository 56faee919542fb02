//! `GET /metrics` (issue #21 item 5), driven through the real binary: a
//! server runs a delegating, gated mission on the scripted model, then
//! operators and auditors scrape the Prometheus text, which is parsed
//! here and held to what the journal, the budget ledger and the mission
//! summary say once the server has stopped: tasks by status, model calls,
//! tokens settled; a gate decided over HTTP shows in the gate-wait
//! histogram; reviewers are refused; nothing of a case is in the body.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// How long the mission may take to reach its gates on the scripted
/// model (it takes well under a second; a loaded CI machine, longer).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The scripted model every agent of [`swarm_mission`] calls.
const MODEL: &str = "smollm2-135m";

/// Cases whose ids and inputs must never reach the metrics. claim-9 spends
/// and delegates to two checkers that spend; one child's decision is
/// gated, so claim-9 parks awaiting its children. claim-10 is gated
/// itself; claim-11 decides alone.
const CASES: &str = "    - id: claim-9\n      spend: 8\n      delegate:\n\
                     \x20       - { agent: checker, input: { spend: 4, outcome: disputed, reason: needs a person } }\n\
                     \x20       - { agent: checker, input: { spend: 4, outcome: covered, reason: policy holds } }\n\
                     \x20   - { id: claim-10, spend: 8, outcome: disputed, reason: on its own }\n\
                     \x20   - { id: claim-11, spend: 8, outcome: fine, reason: nothing odd }\n";
const GATES: &str = "gates:\n  - { name: dispute, when: { field: decision.outcome, equals: disputed } }\n";
/// What the body must not contain: case ids, inputs, outcomes, reasons.
const PRIVATE: [&str; 9] =
    ["claim-", "needs a person", "on its own", "nothing odd", "policy holds", "disputed", "covered", "fine", "spend"];

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The text format's samples (comments skipped), or why a line is not
/// one. Label values are unescaped (`\\`, `\"`, `\n`).
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bad = |why: &str| format!("{why}: {line:?}");
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = line[..name_end].to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(bad("bad name"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end = loop {
                let (start, c) = chars.next().ok_or_else(|| bad("unclosed labels"))?;
                if c == '}' {
                    break start;
                }
                if c == ',' {
                    continue;
                }
                let mut key = String::from(c);
                loop {
                    match chars.next().ok_or_else(|| bad("unclosed label"))?.1 {
                        '=' => break,
                        k => key.push(k),
                    }
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("unquoted label value"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().ok_or_else(|| bad("unclosed label value"))?.1 {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(|| bad("bad escape"))?.1 {
                            'n' => value.push('\n'),
                            e => value.push(e),
                        },
                        v => value.push(v),
                    }
                }
                labels.insert(key, value);
            };
            rest = &inner[end + 1..];
        }
        let value = rest.trim().split(' ').next().ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("bad value"))?,
        };
        samples.push(Sample { name, labels, value });
    }
    Ok(samples)
}

/// A scrape, parsed and checked: every family's samples follow its one
/// `# TYPE` line.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn of(text: String) -> Scrape {
        let samples = parse(&text).unwrap_or_else(|e| panic!("not the text format: {e}\n{text}"));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let family = line.split(' ').nth(2).expect("a family name");
            assert!(typed.insert(family.to_owned()), "family {family} typed twice:\n{text}");
        }
        for s in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| s.name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
                .unwrap_or(&s.name);
            assert!(typed.contains(family), "{} has no # TYPE line:\n{text}", s.name);
        }
        Scrape { text, samples }
    }

    /// The samples named `name` whose labels include `labels`.
    fn matching<'s>(&'s self, name: &'s str, labels: &'s [(&str, &str)]) -> impl Iterator<Item = &'s Sample> + 's {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
    }

    /// The one sample named `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).filter(|s| s.labels.len() == labels.len()).collect();
        assert_eq!(found.len(), 1, "one {name}{labels:?} in:\n{}", self.text);
        found[0].value
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The mission's id, from `conductor_mission_info`.
    fn mission_id(&self, name: &str) -> Option<String> {
        self.matching("conductor_mission_info", &[("name", name)]).next().and_then(|s| s.labels.get("mission").cloned())
    }
}

/// `GET path` with an optional session cookie: status, headers, body.
fn get(addr: &str, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8(response).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, head.to_owned(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A scrape as the holder of `cookie`, which must be allowed.
fn scrape(addr: &str, cookie: &str) -> Scrape {
    let (status, head, body) = get(addr, "/metrics", Some(cookie));
    assert_eq!(status, 200, "{body}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    Scrape::of(body)
}

/// A key of `role` registered on `data`, loaded to sign in with.
fn key(dir: &Path, data: &Path, role: &str) -> identity::Keypair {
    let path = dir.join(format!("{role}.key"));
    let out = run(conductor().args(["keys", "new", "--role", role, "--out"]).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    identity::Keypair::load(&path).expect("the key loads")
}

/// Approves gate `id` over the API as the reviewer: prepare, sign each
/// prepared entry's hash with the reviewer's key, decide.
fn approve(addr: &str, cookie: &str, reviewer: &identity::Keypair, id: &str) -> Value {
    let (status, _, prepared) =
        http(addr, "POST", &format!("/api/gates/{id}/prepare"), Some(cookie), Some(&json!({"verdict": "approve"})));
    assert_eq!(status, 200, "{prepared}");
    let signatures: Vec<String> = prepared["entries"]
        .as_array()
        .expect("prepared entries")
        .iter()
        .map(|e| {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(e["hash"].as_str().expect("hash"), &mut hash).expect("a 32-byte hash");
            reviewer.sign(&ledger::entry::signed_message(&ledger::EntryHash(hash))).to_hex()
        })
        .collect();
    let body = json!({"token": prepared["token"], "signatures": signatures});
    let (status, _, decided) = http(addr, "POST", &format!("/api/gates/{id}/decide"), Some(cookie), Some(&body));
    assert_eq!(status, 200, "{decided}");
    decided
}

#[test]
fn metrics_count_what_the_journal_says_for_operators_and_auditors_and_nothing_of_a_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let operator_key = dir.path().join("operator.key");
    registered_operator(&data, &operator_key);
    let operator = identity::Keypair::load(&operator_key).expect("operator key");
    let auditor = key(dir.path(), &data, "auditor");
    let reviewer = key(dir.path(), &data, "reviewer");
    let mission = swarm_mission(dir.path(), "metered", 5_000, CASES, GATES);
    let registry = scripted_registry(dir.path());
    let server =
        Served::start(&data, &["--run".as_ref(), mission.as_os_str(), "--models".as_ref(), registry.as_os_str()]);
    let addr = server.addr.clone();

    // Who may look: operators and auditors; reviewers decide cases and
    // are refused; nobody else gets past sign-in.
    let (status, _, body) = get(&addr, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    let reviewer_cookie = sign_in(&addr, &reviewer);
    let (status, _, body) = get(&addr, "/metrics", Some(&reviewer_cookie));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("conductor_"), "a refusal shows no metrics: {body}");
    let operator_cookie = sign_in(&addr, &operator);
    let auditor_cookie = sign_in(&addr, &auditor);

    // The mission runs to its gates: one case waits for review, one for
    // its children (one of which waits for review).
    let start = Instant::now();
    let settled = loop {
        let now = scrape(&addr, &operator_cookie);
        if now.value("conductor_missions", &[("status", "awaiting_review")]) == 1.0 {
            break now;
        }
        assert!(start.elapsed() < SETTLE_TIMEOUT, "the mission did not reach its gates:\n{}", now.text);
        std::thread::sleep(Duration::from_millis(100));
    };
    let mission_id = settled.mission_id("metered").expect("the mission is named by its id");
    let m = [("mission", mission_id.as_str())];
    assert_eq!(settled.value("conductor_cells_parked", &[m[0], ("awaiting", "review")]), 2.0, "{}", settled.text);
    assert_eq!(settled.value("conductor_cells_parked", &[m[0], ("awaiting", "children")]), 1.0, "{}", settled.text);
    assert_eq!(settled.value("conductor_cells_live", &m), 0.0);
    assert_eq!(settled.value("conductor_queue_depth", &m), 0.0);
    assert_eq!(settled.value("conductor_tasks", &[m[0], ("status", "decided")]), 2.0, "claim-11 and a checker");

    // An auditor reads the same numbers.
    let audited = scrape(&addr, &auditor_cookie);
    for status in ["pending", "running", "awaiting_review", "awaiting_children", "decided", "failed", "skipped"] {
        let labels = [m[0], ("status", status)];
        assert_eq!(audited.value("conductor_tasks", &labels), settled.value("conductor_tasks", &labels), "{status}");
    }

    // A gateway request without a key is answered 401, and counted.
    let (status, _, _) = http(&addr, "POST", "/v1/chat/completions", None, Some(&json!({"model": MODEL})));
    assert_eq!(status, 401);

    // A reviewer decides claim-10's gate over the API.
    let (status, _, queue) = http(&addr, "GET", "/api/gates", Some(&reviewer_cookie), None);
    assert_eq!(status, 200, "{queue}");
    let gate = queue["gates"]
        .as_array()
        .expect("the queue")
        .iter()
        .find(|g| g["case_id"] == "claim-10")
        .unwrap_or_else(|| panic!("claim-10's gate is queued: {queue}"))
        .clone();
    let decided = approve(&addr, &reviewer_cookie, &reviewer, gate["id"].as_str().expect("gate id"));
    assert_eq!(decided["closed"], true, "{decided}");

    let last = scrape(&addr, &operator_cookie);
    let waited = [("gate", "dispute"), ("outcome", "approved")];
    assert_eq!(last.value("conductor_gate_wait_seconds_count", &waited), 1.0, "{}", last.text);
    assert_eq!(last.value("conductor_gate_wait_seconds_bucket", &[waited[0], waited[1], ("le", "+Inf")]), 1.0);
    assert!(last.value("conductor_gate_wait_seconds_sum", &waited) >= 0.0);
    assert_eq!(last.value("conductor_gateway_requests_total", &[("status", "401")]), 1.0, "{}", last.text);
    assert!(last.text.contains("# TYPE conductor_model_call_seconds histogram"), "{}", last.text);
    assert!(last.sum("conductor_journal_group_commit_seconds_count", &[]) >= 1.0, "{}", last.text);
    assert_eq!(last.value("conductor_cells_parked", &[m[0], ("awaiting", "review")]), 1.0, "claim-10 decided");
    for body in [&settled.text, &audited.text, &last.text] {
        for private in PRIVATE {
            assert!(!body.contains(private), "{private:?} is case data and is in the metrics:\n{body}");
        }
    }
    server.stop();

    // What the metrics said is what the summary and the ledger say.
    let out = run(conductor().args(["mission", "show", &mission_id, "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    let mut by_status: BTreeMap<String, f64> = BTreeMap::new();
    for task in tasks(&summary) {
        *by_status.entry(task["status"].as_str().expect("status").to_owned()).or_default() += 1.0;
    }
    for status in ["pending", "running", "awaiting_review", "awaiting_children", "decided", "failed", "skipped"] {
        let metric = last.value("conductor_tasks", &[m[0], ("status", status)]);
        assert_eq!(metric, by_status.get(status).copied().unwrap_or(0.0), "{status}: {summary}");
    }
    let calls: u64 = tasks(&summary).iter().map(|t| t["model_calls"].as_u64().expect("model_calls")).sum();
    assert_eq!(calls, 5, "each of the five tasks spent once: {summary}");
    assert_eq!(last.value("conductor_model_call_seconds_count", &[("model", MODEL)]), calls as f64);
    assert_eq!(last.value("conductor_model_call_seconds_bucket", &[("model", MODEL), ("le", "+Inf")]), calls as f64);

    let out = run(conductor().args(["ledger", "show", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let accounts = stdout_json(&out);
    let account = accounts
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["account"] == mission_id.as_str())
        .unwrap_or_else(|| panic!("the mission's account: {accounts}"))
        .clone();
    let ledger_settled = account["settled"].as_u64().expect("settled");
    assert!(ledger_settled > 0, "{account}");
    assert_eq!(last.sum("conductor_tokens_settled_total", &m), ledger_settled as f64, "{}", last.text);
    assert_eq!(summary["budget"]["settled"].as_u64(), Some(ledger_settled), "{summary}");
    assert!(last.sum("conductor_tokens_reserved_total", &m) >= ledger_settled as f64, "{}", last.text);
}

#[test]
fn the_parser_reads_escapes_and_refuses_what_is_not_the_format() {
    let samples = parse(
        "# HELP x a\n# TYPE x gauge\nx{a=\"q\\\"uote\",b=\"back\\\\slash\",c=\"new\\nline\"} 2.5\ny 1\nz_bucket{le=\"+Inf\"} 3\n",
    )
    .expect("parses");
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].labels["a"], "q\"uote");
    assert_eq!(samples[0].labels["b"], "back\\slash");
    assert_eq!(samples[0].labels["c"], "new\nline");
    assert_eq!(samples[0].value, 2.5);
    assert_eq!(samples[1].name, "y");
    assert_eq!(samples[2].labels["le"], "+Inf");
    for bad in ["x{a=\"open} 1", "x{a=b} 1", "x one", "bad-name 1", "x{a=\"b\"}"] {
        assert!(parse(bad).is_err(), "{bad:?} is not a sample");
    }
}

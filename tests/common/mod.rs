//! Shared helpers for the black-box tests: they run the real `conductor`
//! binary against real files in a fresh temporary directory.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

// Read at run time (cargo sets it for every test it runs), not with
// `env!`: a target directory shared between checkouts (CI keeps one)
// can reuse a test binary built in another checkout.
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&manifest).parent().expect("conductor/ has a parent").to_owned()
}

pub fn conductor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conductor"));
    cmd.env("CONDUCTOR_MODEL_DIR", repo_root().join(".cache/models"));
    cmd.env_remove("CONDUCTOR_DATA");
    cmd.env_remove("CONDUCTOR_MODELS");
    cmd
}

/// A built guest module; the tests need `cargo xtask setup` to have run.
pub fn module(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` (the README's test command does) first",
        path.display()
    );
    path
}

/// The pinned hash of [`model_file`].
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// A registry at `path` with the default model as `smollm2-135m`, priced
/// for the gateway, whose YAML the caller may extend with `more`.
pub fn priced_registry(path: &Path, prompt_price: u64, completion_price: u64, more: &str) {
    let text = format!(
        "models:\n  smollm2-135m:\n    file: {}\n    sha256: {MODEL_SHA256}\n    context_tokens: 2048\n    \
         prompt_price: {prompt_price}\n    completion_price: {completion_price}\n{more}",
        model_file().display()
    );
    std::fs::write(path, text).expect("registry");
}

/// A new operator key at `key`, registered on `data`.
pub fn registered_operator(data: &Path, key: &Path) {
    assert_eq!(run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(key)).status.code(), Some(0));
    assert_eq!(
        run(conductor().args(["keys", "register", "--init", "--data"]).arg(data).arg(key)).status.code(),
        Some(0)
    );
}

/// A gateway key issued on `data` by `operator` for account `gateway:NAME`.
pub fn issue_gateway_key(data: &Path, operator: &Path, name: &str, limit: u64) -> String {
    let out = run(conductor()
        .args(["gateway", "issue", "--json", "--name", name, "--limit", &limit.to_string(), "--key"])
        .arg(operator)
        .arg("--data")
        .arg(data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout_json(&out)["key"].as_str().expect("key").to_owned()
}

pub fn model_file() -> PathBuf {
    let path = repo_root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `cargo xtask setup` first", path.display());
    path
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("conductor starts");
    eprintln!(
        "$ {cmd:?}\n-- status {:?}\n-- stdout\n{}\n-- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every completion the model gave in a mission, as (task, text), in task
/// order, read from the journal's `host.infer` entries.
pub fn completions(data: &Path) -> Vec<(u64, String)> {
    let out = run(conductor().args(["audit", "log", "--json", "--kind", "host.infer", "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0), "audit log: {}", stderr(&out));
    let mut completions: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|e| {
            (e["payload"]["task"].as_u64().unwrap_or(0), e["payload"]["text"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    completions.sort();
    completions
}

/// The cohorts the router admitted, as (requests, prompt tokens), from a
/// debug log (`RUST_LOG=inference=debug`: the router logs each cohort).
pub fn cohorts_admitted(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    log.lines()
        .filter(|l| l.contains("model cohort admitted"))
        .map(|l| (field(l, "requests"), field(l, "prompt_tokens")))
        .collect()
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a mission file whose agent runs `module`, with inline cases.
pub fn write_mission(
    dir: &Path,
    name: &str,
    module: &Path,
    budget: u64,
    limits: &str,
    cases: &str,
    gates: &str,
) -> PathBuf {
    let text = format!(
        "name: {name}\n\
         budget:\n  limit: {budget}\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 2\n\
         agents:\n  - name: worker\n    module: {module}\n    model: smollm2-135m\n    limits: {limits}\n\
         tasks:\n  agent: worker\n  inline:\n{cases}\
         {gates}",
        module = module.display(),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write mission");
    path
}

pub fn tasks(summary: &serde_json::Value) -> &Vec<serde_json::Value> {
    summary["tasks"].as_array().expect("tasks array")
}

/// `conductor serve` on a free loopback port, killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`, as the server printed it.
    pub addr: String,
}

impl Served {
    /// Starts the server on `data` with `extra` arguments and waits for
    /// its `listening on http://ADDR` line.
    pub fn start(data: &Path, extra: &[&std::ffi::OsStr]) -> Served {
        Served::spawn(conductor(), data, extra, std::process::Stdio::inherit())
    }

    /// [`Served::start`] with the conductor's debug log written to `log`.
    pub fn start_logging(data: &Path, extra: &[&std::ffi::OsStr], log: &Path) -> Served {
        let mut cmd = conductor();
        cmd.env("RUST_LOG", "warn,conductor=debug,inference=debug,engine=debug,server=debug");
        Served::spawn(cmd, data, extra, std::fs::File::create(log).expect("log file").into())
    }

    fn spawn(mut cmd: Command, data: &Path, extra: &[&std::ffi::OsStr], stderr: std::process::Stdio) -> Served {
        use std::io::BufRead as _;
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("conductor serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Served { child, addr }
    }

    /// Stops it as an operator would (SIGTERM) and requires a clean exit,
    /// so the database is closed for the auditor's read-only commands.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exits 0 on SIGTERM: {status}");
                return;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "serve did not stop on SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal's entries of `kind` (a prefix), as `audit log --json` gives them.
pub fn journal(data: &Path, kind: &str) -> Vec<serde_json::Value> {
    let out = run(conductor().args(["audit", "log", "--json", "--kind", kind, "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Every budget posting of `kind` in the journal in `data`, whether it is
/// its own entry or one of a `budget.batch` (a group commit's postings
/// share one), each shaped like an entry: `kind`, `time_us`, `payload`.
pub fn postings(data: &Path, kind: &str) -> Vec<serde_json::Value> {
    let mut out = journal(data, kind);
    for batch in journal(data, "budget.batch") {
        let items = batch["payload"]["postings"].as_array().expect("a batch holds postings").clone();
        out.extend(items.into_iter().filter(|item| item["kind"] == kind));
    }
    out
}

/// The sample mission's policy facts, as `memory:` list items: what the
/// casework agent recalls before it decides.
pub fn policy_facts() -> String {
    [("income-limit-monthly", "2400"), ("income-limit-per-extra-member", "350"), ("min-residency-months", "12")]
        .iter()
        .map(|(p, v)| format!("  - {{subject: 'policy:housing-support', predicate: {p}, value: '{v}', valid_from: 2026-01-01T00:00:00Z}}\n"))
        .collect()
}

/// Checks every entry of the journal in `data` against its typed payload
/// (`engine::entries`): decoded and encoded again, each must be exactly
/// the payload the journal holds, so the structs the engine reads with
/// are the ones it writes with. Returns how many entries of each kind
/// were checked. The conductor must not be running (redb has one opener).
pub fn assert_entries_typed(data: &Path) -> std::collections::BTreeMap<String, usize> {
    const PAGE: usize = 1024;
    let ledger = ledger::Ledger::open(&data.join("conductor.redb")).expect("the data directory's database opens");
    let mut kinds = std::collections::BTreeMap::new();
    let mut from = 0;
    loop {
        let page = ledger.entries(from, PAGE).expect("journal entries");
        for entry in &page {
            if let Err(e) = engine::entries::round_trip(entry) {
                panic!("the journal in {} has an entry its typed payload does not match: {e}", data.display());
            }
            *kinds.entry(entry.kind.clone()).or_insert(0) += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => from = last.seq + 1,
            _ => return kinds,
        }
    }
}

/// A registry whose `smollm2-135m` is scripted (no file), priced.
pub fn scripted_registry(dir: &Path) -> PathBuf {
    let path = dir.join("registry.yaml");
    std::fs::write(
        &path,
        "models:\n  smollm2-135m:\n    kind: scripted\n    context_tokens: 2048\n    prompt_price: 1\n    \
         completion_price: 1\n",
    )
    .expect("registry");
    path
}

/// A mission of three agents on the delegating test agent: `lead` may
/// delegate to `checker` and to itself, `checker` to nobody, `other` is
/// not among lead's. `extra` is appended (gates, a `delegation:` block).
pub fn swarm_mission(dir: &Path, name: &str, budget: u64, cases: &str, extra: &str) -> PathBuf {
    let module = module("cells/guests/delegate-agent/delegate.wasm");
    let module = module.display();
    let text = format!(
        "name: {name}\n\
         budget:\n  limit: {budget}\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 1\n\
         agents:\n\
         \x20 - {{ name: lead, module: {module}, model: smollm2-135m, delegates_to: [checker, lead] }}\n\
         \x20 - {{ name: checker, module: {module}, model: smollm2-135m, budget: {{ task_limit: 40 }},\n\
         \x20     limits: {{ wall_ms: 2000 }} }}\n\
         \x20 - {{ name: other, module: {module}, model: smollm2-135m }}\n\
         tasks:\n  agent: lead\n  inline:\n{cases}\
         {extra}"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write mission");
    path
}

/// The task of case `id` in a run's summary.
pub fn by_case<'s>(summary: &'s Value, id: &str) -> &'s Value {
    tasks(summary).iter().find(|t| t["case_id"] == id).unwrap_or_else(|| panic!("no task {id} in {summary}"))
}

/// Who a request comes from.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    Nobody,
    /// A session cookie (`name=value`).
    Cookie(&'a str),
    /// An `Authorization` header's value (`Bearer cdt_…`, or something
    /// malformed).
    Authorization(&'a str),
}

/// One HTTP/1.1 request on loopback; returns the status, the whole answer
/// as text (head and body) and the body as JSON. An event stream's answer
/// ends with its head: the stream itself never does.
pub fn request(addr: &str, method: &str, path: &str, caller: Caller<'_>, body: Option<&Value>) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    match caller {
        Caller::Nobody => {}
        Caller::Cookie(cookie) => request.push_str(&format!("Cookie: {cookie}\r\n")),
        Caller::Authorization(value) => request.push_str(&format!("Authorization: {value}\r\n")),
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        let head_end = response.windows(4).position(|w| w == b"\r\n\r\n");
        let streaming = head_end.is_some_and(|end| {
            String::from_utf8_lossy(&response[..end]).to_ascii_lowercase().contains("text/event-stream")
        });
        if streaming {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    // Small JSON answers come whole or in one chunk.
    let json_text = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        rest.split_once("\r\n")
            .map(|(_, chunk)| chunk.rsplit_once("\r\n0\r\n").map_or(chunk, |(c, _)| c))
            .unwrap_or(rest)
    } else {
        rest
    };
    let value = serde_json::from_str(json_text.trim()).unwrap_or(Value::Null);
    (status, text, value)
}

/// [`request`] with a session cookie or none; returns status, head and body.
pub fn http(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: Option<&Value>) -> (u16, String, Value) {
    let caller = cookie.map_or(Caller::Nobody, Caller::Cookie);
    let (status, text, value) = request(addr, method, path, caller, body);
    let head = text.split_once("\r\n\r\n").map_or(text.as_str(), |(head, _)| head).to_owned();
    (status, head, value)
}

/// Waits until `f` holds, or fails after `limit`.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Signs in over the API with a key this test holds; returns the cookie.
pub fn sign_in(addr: &str, key: &identity::Keypair) -> String {
    let (status, _, challenge) = http(addr, "GET", "/api/challenge", None, None);
    assert_eq!(status, 200, "{challenge}");
    let challenge = challenge["challenge"].as_str().expect("challenge").to_owned();
    let mut message = b"conductor sign-in v1\0".to_vec();
    message.extend_from_slice(&hex::decode(&challenge).expect("hex"));
    let body = json!({"public_key": key.public().to_hex(), "challenge": challenge,
                      "signature": key.sign(&message).to_hex()});
    let (status, head, me) = http(addr, "POST", "/api/session", None, Some(&body));
    assert_eq!(status, 200, "{me}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// The journal in `data` verifies, every entry matches its typed payload,
/// and every task attempt replays from the journal alone (no model) to
/// the same calls and outcome.
pub fn assert_verifies_and_replays(data: &Path) {
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
    assert_entries_typed(data);
    let out = run(conductor()
        .args(["audit", "replay", "--json", "--data"])
        .arg(data)
        .env("CONDUCTOR_MODEL_DIR", "/nonexistent"));
    assert_eq!(out.status.code(), Some(0), "every task replays from the journal: {}", stderr(&out));
    let replays = stdout_json(&out);
    let replays = replays.as_array().expect("a list of replayed tasks");
    assert!(!replays.is_empty() && replays.iter().all(|r| r["verdict"] == "match"), "{replays:?}");
}

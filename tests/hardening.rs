//! Issue #18, the server's part: `conductor serve` against hostile or
//! clumsy callers on loopback, each with a bounded request loop.
//!
//! - item 6: operators and auditors sign in to look (operators the queue,
//!   auditors the decided gates); only reviewers decide;
//! - items 13 and 14: a mission over HTTP is uploaded text, never a path
//!   the server reads (a FIFO hung it, `/dev/zero` grew it by gigabytes),
//!   the files it names stay inside `DATA/missions/`, and errors never
//!   quote a file the caller could not read;
//! - item 15: a flood of anonymous sign-in challenges leaves sign-in
//!   working;
//! - item 16: a signed-in reviewer's refused attempts are rate-limited
//!   (429) and counted in one summary entry;
//! - item 20: when the disk fills, the server stops with a non-zero status
//!   and says "No space left on device" once.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// How long any one request may take before the test calls it a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a mission started over HTTP may take to reach its gate.
const MISSION_TIMEOUT: Duration = Duration::from_secs(90);

// ------------------------------------------------------------ helpers

/// An HTTP answer: status, the header block and the body as text.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(self.body.trim()).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One request on its own connection; `Err` if the server does not
/// answer within [`REQUEST_TIMEOUT`].
fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    // A server that refuses early may close before reading a large body.
    let _ = stream.write_all(body.as_bytes());
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() };
    Ok(Answer { status, head: head.to_owned(), body })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn request(addr: &str, method: &str, path: &str, cookie: Option<&str>, body: Option<&Value>) -> Answer {
    let body = body.map(Value::to_string);
    try_request(addr, method, path, cookie, body.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
}

/// Signs in over the API with `key`; returns the session cookie.
fn sign_in(addr: &str, key: &identity::Keypair) -> String {
    let challenge = request(addr, "GET", "/api/challenge", None, None);
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let challenge = challenge.json()["challenge"].as_str().expect("challenge").to_owned();
    let answer = answer_challenge(addr, key, &challenge);
    assert_eq!(answer.status, 200, "sign-in: {}", answer.body);
    let cookie = answer.header("set-cookie").expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// Sends `key`'s signature of `challenge` (hex) to `POST /api/session`.
fn answer_challenge(addr: &str, key: &identity::Keypair, challenge: &str) -> Answer {
    let mut message = b"conductor sign-in v1\0".to_vec();
    message.extend_from_slice(&hex::decode(challenge).expect("hex"));
    let body =
        json!({"public_key": key.public().to_hex(), "challenge": challenge, "signature": key.sign(&message).to_hex()});
    request(addr, "POST", "/api/session", None, Some(&body))
}

/// A data directory at `data`, made by the server itself (started and
/// stopped), as an operator's first `conductor serve` would.
fn new_data_dir(data: &Path) {
    let server = Served::start(data, &[]);
    // Answering means serving, with its SIGTERM handler in place.
    assert_eq!(request(&server.addr, "GET", "/", None, None).status, 200);
    server.stop();
    // Where uploaded missions find their files (serve makes it too).
    std::fs::create_dir_all(data.join("missions")).expect("DATA/missions");
}

/// A new key of `role` in `dir`, registered on `data` as `name`.
fn key(dir: &Path, data: &Path, role: &str, name: &str) -> identity::Keypair {
    let path = dir.join(format!("{name}.key"));
    assert_eq!(run(conductor().args(["keys", "new", "--role", role, "--out"]).arg(&path)).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&path).args(["--name", name]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    identity::Keypair::load(&path).expect("key")
}

/// A mission whose agent (`module`, as written) echoes its input; cases
/// above 100 wait for a reviewer.
fn mission_text(name: &str, module: &str, tasks: &str) -> String {
    format!(
        "name: {name}\nbudget:\n  limit: 100000\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 2\n\
         agents:\n  - name: worker\n    module: {module}\n    model: smollm2-135m\n\
         tasks:\n{tasks}\
         gates:\n  - name: big\n    when: {{ field: case.amount, greater_than: 100 }}\n"
    )
}

const TWO_CASES: &str = "  agent: worker\n  inline:\n    - {id: small, amount: 5}\n    - {id: big, amount: 500}\n";

/// Uploads `yaml` as `cookie`'s operator.
fn upload(addr: &str, cookie: &str, yaml: &str) -> Answer {
    request(addr, "POST", "/api/missions", Some(cookie), Some(&json!({"yaml": yaml})))
}

/// Polls `GET /api/gates` until a pending gate for `case_id` shows.
fn wait_for_gate(addr: &str, cookie: &str, case_id: &str) -> Value {
    let start = Instant::now();
    loop {
        let gates = request(addr, "GET", "/api/gates", Some(cookie), None).json();
        if let Some(gate) = gates["gates"].as_array().into_iter().flatten().find(|g| g["case_id"] == case_id) {
            return gate.clone();
        }
        assert!(start.elapsed() < MISSION_TIMEOUT, "no gate for case {case_id} after {MISSION_TIMEOUT:?}: {gates}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// -------------------------------------------------------------- item 6

#[test]
fn item_6_operators_see_the_queue_auditors_the_decided_gates_and_only_reviewers_decide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let tasks = "  agent: worker\n  inline:\n    - {id: small, amount: 5}\n    - {id: big, amount: 500}\n    - {id: huge, amount: 900}\n";
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, mission_text("looked-at", &echo.display().to_string(), tasks)).expect("mission");
    let out = run(conductor().arg("run").arg(&file).arg("--data").arg(&data).arg("--json"));
    assert_eq!(stdout_json(&out)["status"], "awaiting_review", "{}", stderr(&out));
    let reviewer = key(dir.path(), &data, "reviewer", "Rita");
    let operator = key(dir.path(), &data, "operator", "Otto");
    let auditor = key(dir.path(), &data, "auditor", "Aude");
    // One gate decided before the server starts, one left pending.
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    let listed: Value = stdout_json(&out);
    let id_of = |case: &str| -> String {
        let all = listed.as_array().or_else(|| listed["gates"].as_array()).expect("gates");
        all.iter().find(|g| g["case_id"] == case).and_then(|g| g["id"].as_str()).expect("gate").to_owned()
    };
    let (decided, pending) = (id_of("big"), id_of("huge"));
    let out = run(conductor()
        .args(["gates", "approve", &decided, "--no-resume", "--key"])
        .arg(dir.path().join("Rita.key"))
        .arg("--data")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();
    let ids = |list: &Value| -> Vec<String> {
        list.as_array().into_iter().flatten().filter_map(|g| g["id"].as_str().map(str::to_owned)).collect()
    };

    // Operators see the queue, as reviewers do, but cannot decide.
    let operator_cookie = sign_in(&addr, &operator);
    let seen = request(&addr, "GET", "/api/gates", Some(&operator_cookie), None).json();
    assert_eq!(ids(&seen["gates"]), vec![pending.clone()], "{seen}");
    assert_eq!(seen["gates"][0]["can_decide"], false, "{seen}");
    assert_eq!(ids(&seen["decided"]), vec![decided.clone()], "{seen}");
    assert_eq!(request(&addr, "GET", &format!("/api/gates/{pending}"), Some(&operator_cookie), None).status, 200);
    let tried = request(
        &addr,
        "POST",
        &format!("/api/gates/{pending}/prepare"),
        Some(&operator_cookie),
        Some(&json!({"verdict": "approve"})),
    );
    assert_eq!(tried.status, 403, "{}", tried.body);

    // Auditors see the decided gates, and not the queue.
    let auditor_cookie = sign_in(&addr, &auditor);
    let seen = request(&addr, "GET", "/api/gates", Some(&auditor_cookie), None).json();
    assert_eq!(ids(&seen["gates"]), Vec::<String>::new(), "auditors do not see the queue: {seen}");
    assert_eq!(ids(&seen["decided"]), vec![decided.clone()], "{seen}");
    assert_eq!(seen["decided"][0]["status"], "approved", "{seen}");
    assert_eq!(seen["decided"][0]["reviewer"], reviewer.public().key_id().to_string().as_str(), "{seen}");
    assert!(seen["decided"][0]["decided_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{seen}");
    let one = request(&addr, "GET", &format!("/api/gates/{pending}"), Some(&auditor_cookie), None);
    assert_eq!(one.status, 403, "{}", one.body);
    assert_eq!(request(&addr, "GET", &format!("/api/gates/{decided}"), Some(&auditor_cookie), None).status, 200);
    let tried = request(
        &addr,
        "POST",
        &format!("/api/gates/{pending}/prepare"),
        Some(&auditor_cookie),
        Some(&json!({"verdict": "reject"})),
    );
    assert_eq!(tried.status, 403, "{}", tried.body);

    // The reviewer may decide what is theirs.
    let reviewer_cookie = sign_in(&addr, &reviewer);
    let seen = request(&addr, "GET", "/api/gates", Some(&reviewer_cookie), None).json();
    assert_eq!(ids(&seen["gates"]), [pending], "{seen}");
    assert_eq!(seen["gates"][0]["can_decide"], true, "{seen}");
    server.stop();
}

// ---------------------------------------------------------- items 13, 14

#[test]
fn item_13_a_mission_over_http_is_uploaded_text_and_names_files_only_inside_data_missions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    new_data_dir(&data);
    let operator = key(dir.path(), &data, "operator", "Otto");
    let reviewer = key(dir.path(), &data, "reviewer", "Rita");
    let uploads = data.join("missions");
    std::fs::copy(module("cells/guests/echo-agent/echo.wasm"), uploads.join("echo.wasm")).expect("module");
    // A way out of DATA/missions, for the symlink case.
    std::fs::create_dir_all(dir.path().join("elsewhere")).expect("dir");
    std::fs::copy(module("cells/guests/echo-agent/echo.wasm"), dir.path().join("elsewhere/echo.wasm")).expect("module");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), uploads.join("out")).expect("symlink");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());

    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();
    let cookie = sign_in(&addr, &operator);

    // A path is not a mission: the server never opens it. (A FIFO hung
    // the server, and /dev/zero grew it by gigabytes, while they were
    // read as mission files.)
    for path in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let body = json!({"file": path}).to_string();
        let answer = try_request(&addr, "POST", "/api/missions", Some(&cookie), Some(&body))
            .unwrap_or_else(|e| panic!("{path}: the server did not answer ({e}): it read the path"));
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert!(answer.body.contains("yaml"), "the error says what to send: {}", answer.body);
    }

    // Files named by an upload stay inside DATA/missions/.
    let outside = [
        ("an absolute module", mission_text("m", "/etc/passwd", TWO_CASES)),
        ("a module up and out", mission_text("m", "../missions/echo.wasm", TWO_CASES)),
        ("a module through a link", mission_text("m", "out/echo.wasm", TWO_CASES)),
        ("an absolute case directory", mission_text("m", "echo.wasm", "  agent: worker\n  dir: /etc\n")),
        ("a case directory up and out", mission_text("m", "echo.wasm", "  agent: worker\n  dir: ../../\n")),
    ];
    for (what, yaml) in &outside {
        let answer = upload(&addr, &cookie, yaml);
        assert_eq!(answer.status, 422, "{what}: {}", answer.body);
        assert!(
            answer.json()["error"].as_str().is_some_and(|e| e.contains("inside the server's DATA/missions/")),
            "{what}: {}",
            answer.body
        );
    }
    // Within the request cap only.
    let huge = format!("{}# {}\n", mission_text("m", "echo.wasm", TWO_CASES), "x".repeat(70 << 10));
    assert_eq!(upload(&addr, &cookie, &huge).status, 413);
    // Only operators start missions.
    let reviewer_cookie = sign_in(&addr, &reviewer);
    assert_eq!(upload(&addr, &reviewer_cookie, &mission_text("m", "echo.wasm", TWO_CASES)).status, 403);

    // A good upload is kept by its hash, owner-only, and runs.
    let yaml = mission_text("uploaded", "echo.wasm", TWO_CASES);
    let answer = upload(&addr, &cookie, &yaml);
    assert_eq!(answer.status, 202, "{}", answer.body);
    let name = format!("{}.yaml", blake3::hash(yaml.as_bytes()).to_hex());
    assert_eq!(answer.json()["queued"], format!("missions/{name}").as_str(), "{}", answer.body);
    let stored = uploads.join(&name);
    assert_eq!(std::fs::read_to_string(&stored).expect("stored upload"), yaml);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&stored).expect("metadata").permissions().mode() & 0o777, 0o600);
    let gate = wait_for_gate(&addr, &reviewer_cookie, "big");
    assert_eq!(gate["proposal"]["outcome"], "echo", "{gate}");
    // A supervisor's probe, open to anyone: it says nothing else.
    assert_eq!(request(&addr, "GET", "/health", None, None).json(), json!({"status": "ok"}));
    server.stop();
}

#[test]
fn item_14_errors_over_http_never_quote_a_file_the_caller_could_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    new_data_dir(&data);
    let operator = key(dir.path(), &data, "operator", "Otto");
    let uploads = data.join("missions");
    std::fs::copy(module("cells/guests/echo-agent/echo.wasm"), uploads.join("echo.wasm")).expect("module");
    // A file only the server's user can read, shaped like /etc/shadow.
    const MARKER: &str = "secret-marker-5b1e";
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, format!("{MARKER}:$6$salt$hash:19000:0:99999:7:::\n")).expect("secret");
    // And a case file inside DATA/missions that is not valid JSON.
    std::fs::create_dir_all(uploads.join("cases")).expect("cases");
    std::fs::write(uploads.join("cases/bad.json"), format!("{{\"id\": \"c\", \"note\": {MARKER}}}")).expect("case");

    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();
    let cookie = sign_in(&addr, &operator);

    // The old API's path, which came back as an "unknown field" naming
    // the file's first line.
    let answer = request(&addr, "POST", "/api/missions", Some(&cookie), Some(&json!({"file": secret})));
    assert!(!answer.body.contains(MARKER), "{}", answer.body);
    assert_eq!(answer.status, 400, "{}", answer.body);

    // A path outside DATA/missions is refused before it is opened, so the
    // answer is the same whether the file exists or not.
    let existing = upload(&addr, &cookie, &mission_text("m", &secret.display().to_string(), TWO_CASES));
    let missing =
        upload(&addr, &cookie, &mission_text("m", &dir.path().join("absent").display().to_string(), TWO_CASES));
    assert_eq!((existing.status, missing.status), (422, 422), "{} / {}", existing.body, missing.body);
    assert!(!existing.body.contains(MARKER), "{}", existing.body);
    let shape = |a: &Answer, path: &Path| {
        a.json()["error"].as_str().expect("error").replace(&path.display().to_string(), "PATH")
    };
    assert_eq!(shape(&existing, &secret), shape(&missing, &dir.path().join("absent")), "existence is not revealed");

    // A bad case file is located, its text withheld.
    let answer = upload(&addr, &cookie, &mission_text("m", "echo.wasm", "  agent: worker\n  dir: cases\n"));
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(!answer.body.contains(MARKER), "{}", answer.body);
    assert!(answer.body.contains("bad.json"), "it says which file: {}", answer.body);

    // The caller's own text is theirs to see: its problems come back whole.
    let answer = upload(&addr, &cookie, &format!("{}my-own-typo: 1\n", mission_text("m", "echo.wasm", TWO_CASES)));
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains("my-own-typo") && answer.body.contains("upload.yaml:"), "{}", answer.body);
    server.stop();
}

// ------------------------------------------------------------- item 15

/// Sends `count` `GET /api/challenge` requests one after another on
/// keep-alive connections; returns how many got each status.
fn flood_challenges(addr: &str, count: usize) -> std::collections::BTreeMap<u16, usize> {
    let mut statuses = std::collections::BTreeMap::new();
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for _ in 0..count {
        let (stream, reader) = connection.get_or_insert_with(|| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(REQUEST_TIMEOUT)).expect("timeout");
            let reader = BufReader::new(stream.try_clone().expect("clone"));
            (stream, reader)
        });
        stream.write_all(format!("GET /api/challenge HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).expect("send");
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            close |= lower == "connection: close";
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        *statuses.entry(status).or_insert(0) += 1;
        if close {
            connection = None;
        }
    }
    statuses
}

#[test]
fn item_15_a_flood_of_anonymous_challenges_leaves_sign_in_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    new_data_dir(&data);
    let reviewer = key(dir.path(), &data, "reviewer", "Rita");
    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();

    // More than the 4,096 the old challenge table held, from one address.
    let statuses = flood_challenges(&addr, 5000);
    assert_eq!(statuses.get(&200), Some(&5000), "every anonymous request is answered, nothing fills up: {statuses:?}");
    // A reviewer signs in as if nothing happened.
    let cookie = sign_in(&addr, &reviewer);
    assert_eq!(request(&addr, "GET", "/api/me", Some(&cookie), None).status, 200);

    // Challenges are still single-use, unforgeable and the server's own.
    let challenge =
        request(&addr, "GET", "/api/challenge", None, None).json()["challenge"].as_str().expect("challenge").to_owned();
    assert_eq!(answer_challenge(&addr, &reviewer, &challenge).status, 200);
    let again = answer_challenge(&addr, &reviewer, &challenge);
    assert_eq!(again.status, 401, "a used challenge: {}", again.body);
    let fresh =
        request(&addr, "GET", "/api/challenge", None, None).json()["challenge"].as_str().expect("challenge").to_owned();
    let mut bytes = hex::decode(&fresh).expect("hex");
    bytes[13] ^= 1; // a later expiry, written in by the client
    let tampered = answer_challenge(&addr, &reviewer, &hex::encode(&bytes));
    assert_eq!(tampered.status, 401, "a changed challenge: {}", tampered.body);
    let made_up = answer_challenge(&addr, &reviewer, &"ab".repeat(32));
    assert_eq!(made_up.status, 401, "a made-up challenge: {}", made_up.body);

    // Nor can one signed-in key fill the session table: signing in again
    // and again ends its own oldest sessions, never anyone else's.
    let first = sign_in(&addr, &reviewer);
    let cookies: Vec<String> = (0..40).map(|_| sign_in(&addr, &reviewer)).collect();
    assert_eq!(request(&addr, "GET", "/api/me", Some(&first), None).status, 401, "the oldest session ended");
    assert_eq!(request(&addr, "GET", "/api/me", Some(&cookies[39]), None).status, 200);
    assert_eq!(request(&addr, "GET", "/api/me", Some(&cookie), None).status, 401);
    server.stop();
}

// ------------------------------------------------------------- item 16

#[test]
fn item_16_a_reviewers_refused_attempts_are_rate_limited_and_counted_in_one_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    new_data_dir(&data);
    let reviewer = key(dir.path(), &data, "reviewer", "Rita");
    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();
    let cookie = sign_in(&addr, &reviewer);

    // 300 refused attempts in a burst, each with a kilobyte of the
    // reviewer's own text.
    let note = "n".repeat(1000);
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for i in 0..300 {
        let answer = request(
            &addr,
            "POST",
            &format!("/api/gates/no-such-gate-{i}/prepare"),
            Some(&cookie),
            Some(&json!({"verdict": "approve", "note": note})),
        );
        *statuses.entry(answer.status).or_insert(0usize) += 1;
        if answer.status == 429 {
            retry_after = retry_after.or(answer.header("retry-after"));
        }
    }
    assert_eq!(statuses.get(&404), Some(&10), "the first ten are refused as usual: {statuses:?}");
    assert_eq!(statuses.get(&429), Some(&290), "the rest are rate-limited: {statuses:?}");
    assert!(
        retry_after.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)),
        "429 says when to retry"
    );
    // Stopping the server journals the open window's summary.
    server.stop();

    let key_id = reviewer.public().key_id().to_string();
    let refused: Vec<Value> =
        journal(&data, "gate.refused").into_iter().filter(|e| e["payload"]["key_id"] == key_id.as_str()).collect();
    let (summaries, single): (Vec<&Value>, Vec<&Value>) =
        refused.iter().partition(|e| e["payload"].get("repeated").is_some());
    assert_eq!(single.len(), 10, "{refused:?}");
    assert_eq!(summaries.len(), 1, "{refused:?}");
    let summary = &summaries[0]["payload"];
    assert_eq!(summary["repeated"], 290, "{summary}");
    assert_eq!(summary["gate_id"], "no-such-gate-299", "the last attempt: {summary}");
    assert!(summary["first_us"].as_i64() <= summary["last_us"].as_i64(), "{summary}");
    assert_eq!(summaries[0]["signer"], single[0]["signer"], "signed by the conductor, as the others");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ------------------------------------------------------------- item 20

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    /// Mounts a tmpfs of `size` at `at`; `Err` says why it could not
    /// (not root, no mount namespace).
    fn tmpfs(at: &Path, size: &str) -> Result<Mounted, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Mounted(at.to_owned()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `conductor serve` with its stderr in `log`, killed when dropped.
struct Logged {
    child: Child,
    addr: String,
}

impl Logged {
    fn start(data: &Path, log: &Path) -> Logged {
        let mut child = conductor()
            .args(["serve", "--bind", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("conductor serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Logged { child, addr }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes to `path` until the file system is full; returns its size.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    // Bounded: a tmpfs of a few MiB fills long before this.
    for _ in 0..(1 << 16) {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
    written
}

/// Serves a fresh data directory on the tmpfs at `disk`, fills the disk
/// but `headroom_bytes`, and uploads a mission of 400 cases; returns the
/// server's exit status and its stderr.
fn fill_while_serving(dir: &Path, disk: &Path, headroom_bytes: u64) -> (std::process::ExitStatus, String) {
    let data = disk.join("data");
    new_data_dir(&data);
    let operator = key(dir, &data, "operator", "Otto");
    std::fs::copy(module("cells/guests/echo-agent/echo.wasm"), data.join("missions/echo.wasm")).expect("module");
    let log = dir.join("serve.log");
    let mut server = Logged::start(&data, &log);
    let cookie = sign_in(&server.addr, &operator);

    let filler = disk.join("filler");
    let size = fill(&filler);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .expect("filler")
        .set_len(size.saturating_sub(headroom_bytes))
        .expect("free a little");
    let cases: String = (0..400).map(|i| format!("    - {{id: case-{i}, amount: {}}}\n", i % 50)).collect();
    let yaml = mission_text("fills-the-disk", "echo.wasm", &format!("  agent: worker\n  inline:\n{cases}"));
    let answer = upload(&server.addr, &cookie, &yaml);
    assert_eq!(answer.status, 202, "{}", answer.body);

    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(start.elapsed() < MISSION_TIMEOUT, "the server is still up {MISSION_TIMEOUT:?} after its disk filled");
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&log).expect("log");
    eprintln!("-- serve's stderr\n{log}");
    (status, log)
}

#[test]
fn item_20_when_the_disk_fills_the_server_stops_non_zero_and_says_why_once() {
    // The upload always fits; the journal of 400 tasks never does. With
    // little room the mission's declaration fails; with more, a task's
    // write does, in the middle of the mission.
    for (when, headroom_bytes) in [("declaring the mission", 96 << 10), ("running its tasks", 480 << 10)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = match Mounted::tmpfs(&dir.path().join("small-disk"), "24m") {
            Ok(m) => m,
            Err(why) => {
                eprintln!("SKIPPED: this test needs a small tmpfs to fill, and mount failed: {why}");
                return;
            }
        };
        let (status, log) = fill_while_serving(dir.path(), &mounted.0, headroom_bytes);
        assert!(!status.success(), "{when}: a server that cannot write exits non-zero: {status}");
        assert_eq!(status.code(), Some(1), "{when}: as any command's error (not a crash): {status}");
        let last = log.lines().rev().find(|l| l.starts_with("error:")).expect("a final error line");
        assert_eq!(last.matches("No space left on device").count(), 1, "{when}: said once: {last}");
    }
}

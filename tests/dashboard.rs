//! The operator dashboard (#21 item 7) in a real browser: Debian's
//! headless Chromium over WebDriver, against `conductor serve`.
//!
//! A server runs an open mission and a batch mission on the scripted
//! model. Cases arrive over the API, spread over a few seconds: some
//! decide, one is gated (a reviewer approves it over the API a little
//! later, so there is a wait to measure), one traps. The mission is paused
//! and two more cases queue. An operator signs in to `/dashboard` with
//! their key file and sees both missions with their counts and queue
//! depth; the open mission's spend chart and gate-latency chart have data
//! points, and the trapped case is listed among the failures. Resumed, the
//! mission works its queue, and the table shows it without a reload. An
//! auditor sees the same; a reviewer is turned away. The series API
//! agrees with the mission's own numbers and is refused to others. Last,
//! `mission report --html` writes a file that loads nothing from anywhere
//! and, opened in the browser, draws the same charts. Screenshots go to
//! `test-artefacts/dashboard-*.png`.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromium::{CHROMEDRIVER, CHROMIUM, artefacts, body_state, screenshot, wait_for};
use common::*;
use fantoccini::Locator;
use serde_json::{Value, json};

/// How long the page may take to show what the server has (it refreshes
/// every 5 s, and at once on events).
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the scripted missions may take to reach a state (well under
/// a second each; a loaded CI machine, longer).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The SVG namespace: the one URL the charts' code may contain, an
/// identifier passed to `createElementNS`, never fetched.
const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// A new key of `role` registered on `data`, without a passphrase.
fn new_key(dir: &Path, data: &Path, role: &str, name: &str) -> PathBuf {
    let key = dir.join(format!("{role}.key"));
    let out = run(conductor().args(["keys", "new", "--role", role, "--out"]).arg(&key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&key).args(["--name", name]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    key
}

/// Chooses the key file in the page and signs in (no passphrase).
async fn choose_key_and_sign_in(client: &fantoccini::Client, key: &Path) {
    let key_path = key.canonicalize().expect("absolute key path");
    let input = client.find(Locator::Id("key-file")).await.expect("key file input");
    input.send_keys(&key_path.display().to_string()).await.expect("choose file");
    client.find(Locator::Id("sign-in")).await.expect("sign-in button").click().await.expect("click");
}

async fn sign_out(client: &fantoccini::Client) {
    client.find(Locator::Id("sign-out")).await.expect("sign-out button").click().await.expect("sign out");
    wait_for(client, "signed out", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move { (body_state(&c).await.as_deref() == Some("signed-out")).then_some(()) }
    })
    .await;
}

/// The text of the cell `cell` of the mission's row, once it is shown.
async fn cell(client: &fantoccini::Client, mission: &str, cell: &str) -> Option<String> {
    let css = format!("tr[data-mission-id=\"{mission}\"] td.{cell}");
    client.find(Locator::Css(&css)).await.ok()?.text().await.ok()
}

async fn count(client: &fantoccini::Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.map(|found| found.len()).unwrap_or(0)
}

/// Approves gate `id` over the API as the reviewer: prepare, sign each
/// prepared entry's hash with the reviewer's key, decide.
fn approve(addr: &str, cookie: &str, reviewer: &identity::Keypair, id: &str) {
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
}

/// The open mission: cases through the API, a small queue, a gate on
/// disputed outcomes.
fn open_mission(dir: &Path) -> PathBuf {
    let module = module("cells/guests/delegate-agent/delegate.wasm");
    let text = format!(
        "name: claims-desk\n\
         budget:\n  limit: 400\n\
         models:\n  smollm2-135m:\n    prompt_price: 1\n    completion_price: 1\n\
         agents:\n  - {{ name: clerk, module: {}, model: smollm2-135m }}\n\
         intake:\n  agent: clerk\n  queue: 8\n\
         gates:\n  - {{ name: dispute, when: {{ field: decision.outcome, equals: disputed }} }}\n",
        module.display()
    );
    let path = dir.join("claims-desk.yaml");
    std::fs::write(&path, text).expect("write mission");
    path
}

fn missions(addr: &str, cookie: &str) -> Vec<Value> {
    let (status, _, body) = http(addr, "GET", "/api/missions", Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    body["missions"].as_array().cloned().unwrap_or_default()
}

fn mission(addr: &str, cookie: &str, name: &str) -> Option<Value> {
    missions(addr, cookie).into_iter().find(|m| m["name"] == name)
}

fn post_case(addr: &str, cookie: &str, id: &str, case: Value) {
    let (status, _, body) = http(addr, "POST", &format!("/api/missions/{id}/cases"), Some(cookie), Some(&case));
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_missions_spend_gate_latency_and_failures_on_the_dashboard() {
    assert!(
        Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file(),
        "{CHROMIUM} and {CHROMEDRIVER} are missing: `cargo xtask test` installs Debian's chromium and chromium-driver"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let operator_key = dir.path().join("operator.key");
    registered_operator(&data, &operator_key);
    let operator = identity::Keypair::load(&operator_key).expect("operator key");
    let reviewer_key = new_key(dir.path(), &data, "reviewer", "Rita Reviewer");
    let reviewer = identity::Keypair::load(&reviewer_key).expect("reviewer key");
    let auditor_key = new_key(dir.path(), &data, "auditor", "Aude Auditor");
    let registry = scripted_registry(dir.path());
    let open = open_mission(dir.path());
    let batch = swarm_mission(
        dir.path(),
        "nightly-batch",
        1_000,
        "    - { id: n-1, spend: 6 }\n    - { id: n-2, spend: 6 }\n",
        "",
    );
    let server = Served::start(
        &data,
        &[
            "--models".as_ref(),
            registry.as_os_str(),
            "--run".as_ref(),
            open.as_os_str(),
            "--run".as_ref(),
            batch.as_os_str(),
        ],
    );
    let addr = server.addr.clone();
    let cookie = sign_in(&addr, &operator);
    eventually(SETTLE_TIMEOUT, "both missions to start", || {
        mission(&addr, &cookie, "claims-desk").is_some() && mission(&addr, &cookie, "nightly-batch").is_some()
    });
    let id = mission(&addr, &cookie, "claims-desk").expect("listed")["id"].as_str().expect("id").to_owned();
    let batch_id = mission(&addr, &cookie, "nightly-batch").expect("listed")["id"].as_str().expect("id").to_owned();

    // Cases over a few seconds, so spend has a shape over time.
    post_case(&addr, &cookie, &id, json!({"id": "ok-1", "input": {"spend": 8, "outcome": "fine"}}));
    std::thread::sleep(Duration::from_millis(1100));
    post_case(&addr, &cookie, &id, json!({"id": "dispute-1", "input": {"spend": 8, "outcome": "disputed"}}));
    post_case(&addr, &cookie, &id, json!({"id": "bad-1", "input": {"spend": 4, "trap": true}}));
    std::thread::sleep(Duration::from_millis(1100));
    post_case(&addr, &cookie, &id, json!({"id": "ok-2", "input": {"spend": 8, "outcome": "fine"}}));

    // The disputed case waits for a reviewer, who takes a moment.
    let reviewer_cookie = sign_in(&addr, &reviewer);
    let mut gate = None;
    eventually(SETTLE_TIMEOUT, "the dispute gate", || {
        let (status, _, gates) = http(&addr, "GET", "/api/gates", Some(&reviewer_cookie), None);
        assert_eq!(status, 200, "{gates}");
        gate = gates["gates"]
            .as_array()
            .and_then(|all| all.iter().find(|g| g["case_id"] == "dispute-1"))
            .and_then(|g| g["id"].as_str().map(str::to_owned));
        gate.is_some()
    });
    std::thread::sleep(Duration::from_millis(1500));
    approve(&addr, &reviewer_cookie, &reviewer, &gate.expect("gate"));
    eventually(SETTLE_TIMEOUT, "three decided and one failed", || {
        let m = mission(&addr, &cookie, "claims-desk").expect("listed");
        m["counts"]["decided"] == 3 && m["counts"]["failed"] == 1
    });

    // Paused, it starts nothing: two more cases wait in its queue.
    let (status, _, paused) = http(&addr, "POST", &format!("/api/missions/{id}/pause"), Some(&cookie), None);
    assert_eq!(status, 200, "{paused}");
    eventually(SETTLE_TIMEOUT, "the mission to pause", || {
        mission(&addr, &cookie, "claims-desk").expect("listed")["status"] == "paused"
    });
    post_case(
        &addr,
        &cookie,
        &id,
        json!({"cases": [{"id": "q-1", "input": {"spend": 2}}, {"id": "q-2", "input": {"spend": 2}}]}),
    );
    eventually(SETTLE_TIMEOUT, "the batch mission to finish", || {
        mission(&addr, &cookie, "nightly-batch").expect("listed")["counts"]["decided"] == 2
    });
    let listed = mission(&addr, &cookie, "claims-desk").expect("listed");
    assert_eq!(listed["intake"]["queued"], 2, "{listed}");

    // The series API: what the charts draw.
    let series_path = format!("/api/missions/{id}/series");
    let (status, _, body) = http(&addr, "GET", &series_path, Some(&cookie), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    let series = &body["series"];
    let spend = series["spend"].as_array().expect("spend points");
    assert!(spend.len() >= 3 && spend.len() <= engine::series::SPEND_BUCKETS_MAX + 2, "{series}");
    assert_eq!(series["settled"], listed["settled"], "the line ends at the account's settled spend: {series}");
    assert!(listed["settled"].as_u64().is_some_and(|s| s > 0), "{listed}");
    assert_eq!(spend.last().expect("a point")["settled"], listed["settled"], "{series}");
    assert_eq!(spend[0]["limit"], 400, "{series}");
    assert_eq!(series["latency"]["decided"], 1, "{series}");
    let wait = series["latency"]["max_us"].as_i64().expect("a wait");
    assert!(wait >= 1_500_000, "the reviewer took at least 1.5 s: {wait} µs");
    assert_eq!(series["failed"], 1, "{series}");
    assert_eq!(series["failures"][0]["case"], "bad-1", "{series}");
    // Operators and auditors only; a token for another mission neither.
    let (status, _, body) = http(&addr, "GET", &series_path, Some(&reviewer_cookie), None);
    assert_eq!(status, 403, "a reviewer is refused: {body}");
    let (status, _, _) = http(&addr, "GET", &series_path, None, None);
    assert_eq!(status, 401);
    let (status, _, body) = http(&addr, "GET", "/api/missions/no-such-mission/series", Some(&cookie), None);
    assert_eq!(status, 404, "{body}");
    // The batch mission's series: its spend, no gates.
    let (status, _, body) = http(&addr, "GET", &format!("/api/missions/{batch_id}/series"), Some(&cookie), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"]["latency"]["decided"], 0, "{body}");
    assert!(body["series"]["settled"].as_u64().is_some_and(|s| s > 0), "{body}");
    // The page is served like the reviewer page: same policy, no inline script.
    let (status, head, _) = http(&addr, "GET", "/dashboard", None, None);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );

    // The browser.
    let (_driver, client) = chromium::headless(&dir.path().join("chromium-profile"), 1700).await;

    client.goto(&format!("http://{addr}/dashboard")).await.expect("open the dashboard");
    wait_for(&client, "the sign-in form", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move { (body_state(&c).await.as_deref() == Some("signed-out")).then_some(()) }
    })
    .await;
    screenshot(&client, "dashboard-1-sign-in.png").await;
    choose_key_and_sign_in(&client, &operator_key).await;

    // The missions table: counts and queue depth.
    let (progress, queue) = wait_for(&client, "the open mission's row", PAGE_TIMEOUT, || {
        let c = client.clone();
        let id = id.clone();
        async move {
            let progress = cell(&c, &id, "counts").await?;
            let queue = cell(&c, &id, "queue").await?;
            (progress.contains("3 decided") && queue.contains("2 / 8")).then_some((progress, queue))
        }
    })
    .await;
    assert!(
        progress.contains("1 failed") && progress.contains("2 to do") && progress.contains("4 of 6 done"),
        "{progress}"
    );
    assert!(queue.contains("6 received") && queue.contains("open"), "{queue}");
    let batch_row = cell(&client, &batch_id, "counts").await.expect("the batch mission's row");
    assert!(batch_row.contains("2 decided"), "{batch_row}");
    let batch_queue = cell(&client, &batch_id, "queue").await.expect("its queue cell");
    assert!(batch_queue.contains("batch"), "a batch mission has no queue: {batch_queue}");
    let spend = cell(&client, &id, "spend").await.expect("spend cell");
    assert!(spend.contains(&format!("{} / 400", listed["settled"])), "{spend}");
    assert_eq!(
        count(&client, &format!("tr[data-mission-id=\"{id}\"] svg.progress rect.part")).await,
        3,
        "decided, failed, to do"
    );

    // Its charts and failures.
    // Clicked by script: the row may be redrawn between finding and
    // clicking it (the page refreshes every few seconds).
    let select =
        format!("document.querySelector('tr[data-mission-id=\"{id}\"] td.mission button').click(); return true;");
    client.execute(&select, vec![]).await.expect("select the mission");
    let (points, bars) = wait_for(&client, "the open mission's charts", PAGE_TIMEOUT, || {
        let c = client.clone();
        let id = id.clone();
        async move {
            let shown = c.find(Locator::Css("#detail-view")).await.ok()?.attr("data-mission-id").await.ok()??;
            let points = count(&c, "#detail svg.spend-chart circle.point").await;
            let bars = count(&c, "#detail svg.latency-chart rect.bar").await;
            (shown == id && points > 0 && bars > 0).then_some((points, bars))
        }
    })
    .await;
    assert!(points >= 3, "a point at the start and one per second of spend at least: {points}");
    assert_eq!(bars, 1, "one gate decided, in one bucket");
    assert_eq!(count(&client, "#detail svg.spend-chart path.limit-line").await, 1);
    assert_eq!(count(&client, "#detail svg.spend-chart polyline.spend-line").await, 1);
    let failures = client.find(Locator::Css("#failures")).await.expect("the failures list").text().await.expect("text");
    assert!(failures.contains("bad-1"), "{failures}");
    let summary = client.find(Locator::Css(".latency-summary")).await.expect("summary").text().await.expect("text");
    assert!(summary.contains("1 decided"), "{summary}");
    screenshot(&client, "dashboard-2-mission.png").await;

    // Live: resumed, the mission works its queue; the page follows
    // without a reload.
    client.execute("window.__dashboardNoReload = true; return true;", vec![]).await.expect("script");
    let (status, _, resumed) = http(&addr, "POST", &format!("/api/missions/{id}/resume"), Some(&cookie), None);
    assert_eq!(status, 202, "{resumed}");
    wait_for(&client, "the queue to drain on the page", PAGE_TIMEOUT, || {
        let c = client.clone();
        let id = id.clone();
        async move {
            let progress = cell(&c, &id, "counts").await?;
            let queue = cell(&c, &id, "queue").await?;
            (progress.contains("5 decided") && queue.contains("0 / 8")).then_some(())
        }
    })
    .await;
    let still = client.execute("return window.__dashboardNoReload === true;", vec![]).await.expect("script");
    assert_eq!(still, json!(true), "updated without a reload");
    screenshot(&client, "dashboard-3-queue-drained.png").await;

    // An auditor sees the same; a reviewer's key is turned away.
    sign_out(&client).await;
    choose_key_and_sign_in(&client, &auditor_key).await;
    wait_for(&client, "the auditor's view", PAGE_TIMEOUT, || {
        let c = client.clone();
        let id = id.clone();
        async move {
            let signed_in = body_state(&c).await.as_deref() == Some("signed-in");
            (signed_in && cell(&c, &id, "counts").await?.contains("5 decided")).then_some(())
        }
    })
    .await;
    sign_out(&client).await;
    choose_key_and_sign_in(&client, &reviewer_key).await;
    let refused = wait_for(&client, "the reviewer to be turned away", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let text = c.find(Locator::Id("message")).await.ok()?.text().await.ok()?;
            text.contains("reviewer").then_some(text)
        }
    })
    .await;
    assert!(refused.contains("operator or auditor"), "{refused}");
    assert_eq!(body_state(&client).await.as_deref(), Some("signed-out"));

    let (status, _, body) = http(&addr, "GET", &series_path, Some(&cookie), None);
    assert_eq!(status, 200, "{body}");
    let settled = body["series"]["settled"].clone();
    server.stop();

    // The report file: the same charts, nothing loaded from anywhere.
    let report = dir.path().join("claims-desk.html");
    let out = run(conductor().args(["mission", "report", &id, "--data"]).arg(&data).arg("--html").arg(&report));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("claims-desk"), "the text report still prints");
    let html = std::fs::read_to_string(&report).expect("the report file");
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("https://"), "no https URL in the report");
    let urls = lower.matches("http://").count();
    assert_eq!(urls, lower.matches(SVG_NS).count(), "no URL but the SVG namespace identifier");
    for external in [" src=", "<link", "@import", "url(", "<iframe", "<img"] {
        assert!(!lower.contains(external), "the report holds `{external}`: it must load nothing");
    }
    assert!(lower.contains("content-security-policy") && lower.contains("default-src 'none'"), "it may load nothing");
    assert!(html.contains("function spendChart") && html.contains("function latencyChart"), "the charts' code");
    assert!(html.contains("bad-1"), "the failure, as data");
    std::fs::copy(&report, artefacts().join("dashboard-report.html")).expect("keep the report");

    let url = format!("file://{}", report.canonicalize().expect("absolute").display());
    client.goto(&url).await.expect("open the report");
    let (points, bars) = wait_for(&client, "the report's charts", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let drawn = body_state(&c).await.as_deref() == Some("drawn");
            let points = count(&c, "svg.spend-chart circle.point").await;
            let bars = count(&c, "svg.latency-chart rect.bar").await;
            (drawn && points > 0 && bars > 0).then_some((points, bars))
        }
    })
    .await;
    assert!(points >= 3, "{points} points");
    assert_eq!(bars, 1);
    let note = client.find(Locator::Css(".figure-note")).await.expect("note").text().await.expect("text");
    assert!(!note.is_empty());
    let text = client.find(Locator::Css("main")).await.expect("main").text().await.expect("text");
    assert!(text.contains("bad-1") && text.contains("claims-desk"), "{text}");
    assert!(text.contains(&format!("{} settled of 400", settled)), "{text}");
    screenshot(&client, "dashboard-4-report.png").await;
    client.close().await.expect("close the browser");

    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "the journal verifies: {}", stderr(&out));
}

//! The reviewer page in a real browser: Debian's headless Chromium,
//! driven over WebDriver (chromedriver), against `conductor serve`.
//!
//! A reviewer unlocks their own passphrase-sealed key file in the page,
//! signs in, sees a pending gate, sees a second gate arrive without a
//! reload (an operator uploads another mission to the server meanwhile),
//! approves the first, and sees its case complete; the second mission
//! allows three outcomes, so its card offers exactly those in a select
//! box, and the reviewer approves it with another one. The journal then
//! holds the decisions signed by the reviewer's key, and verifies.
//! Requests without a session, an operator's attempt to decide and a
//! replayed decision are refused. Last, an operator and an auditor sign
//! in to the same page to look: the operator sees the queue without
//! decision buttons, the auditor the decided gates. Screenshots go to
//! `test-artefacts/browser/`.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromium::{CHROMEDRIVER, CHROMIUM, screenshot, wait_for};
use common::*;
use fantoccini::Locator;
use serde_json::json;

const PASSPHRASE: &str = "correct horse battery staple";
/// Unlocking a key runs Argon2id (64 MiB, 3 passes) in JavaScript.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(120);
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

fn new_key(dir: &Path, role: &str, name: &str, data: &Path, sealed: bool) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let mut cmd = conductor();
    cmd.args(["keys", "new", "--role", role, "--out"]).arg(&key);
    if sealed {
        cmd.arg("--passphrase").env("CONDUCTOR_KEY_PASSPHRASE", PASSPHRASE);
    }
    assert_eq!(run(&mut cmd).status.code(), Some(0));
    let out = run(conductor().args(["keys", "register", "--data"]).arg(data).arg(&key).args(["--name", name]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    key
}

/// Signs in through the page with the key file at `key` (unlocked with
/// `passphrase`), and waits until the page says so.
async fn sign_in_page(client: &fantoccini::Client, key: &Path, passphrase: &str) {
    let key_path = key.canonicalize().expect("absolute key path");
    client
        .find(Locator::Id("key-file"))
        .await
        .expect("key file input")
        .send_keys(&key_path.display().to_string())
        .await
        .expect("choose file");
    if !passphrase.is_empty() {
        client
            .find(Locator::Id("passphrase"))
            .await
            .expect("passphrase input")
            .send_keys(passphrase)
            .await
            .expect("type");
    }
    client.find(Locator::Id("sign-in")).await.expect("sign-in button").click().await.expect("click");
    wait_for(client, "sign in", UNLOCK_TIMEOUT, || {
        let c = client.clone();
        async move {
            let state = c.find(Locator::Css("body")).await.ok()?.attr("data-state").await.ok().flatten();
            (state.as_deref() == Some("signed-in")).then_some(())
        }
    })
    .await;
}

async fn gate_card_ids(client: &fantoccini::Client) -> Vec<String> {
    let mut ids = Vec::new();
    for card in client.find_all(Locator::Css("section.gate")).await.unwrap_or_default() {
        if let Ok(Some(id)) = card.attr("data-gate-id").await {
            ids.push(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_signs_in_with_their_own_key_and_decides_a_gate_in_the_browser() {
    assert!(
        Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file(),
        "{CHROMIUM} and {CHROMEDRIVER} are missing: `cargo xtask test` installs Debian's chromium and chromium-driver"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = module("cells/guests/echo-agent/echo.wasm");
    let gates = "gates:\n  - name: big\n    when: { field: case.amount, greater_than: 100 }\n";
    let first = write_mission(
        dir.path(),
        "first",
        &echo,
        1000,
        "{}",
        "    - {id: small, amount: 5}\n    - {id: big, amount: 500}\n",
        gates,
    );
    let data = dir.path().join("data");
    let out = run(conductor().arg("run").arg(&first).arg("--data").arg(&data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["status"], "awaiting_review");
    let reviewer_key = new_key(dir.path(), "reviewer", "Rita Reviewer", &data, true);
    let operator_key = new_key(dir.path(), "operator", "Otto Operator", &data, false);
    let auditor_key = new_key(dir.path(), "auditor", "Aude Auditor", &data, false);
    // Missions sent over HTTP name their files inside DATA/missions/ only:
    // the host's administrator puts there what operators may use.
    let uploads = data.join("missions");
    std::fs::create_dir_all(uploads.join("cases")).expect("uploads dir");
    for wasm in [
        "cells/guests/echo-agent/echo.wasm",
        "missions/examples/casework/agent/eligibility.wasm",
        "cells/guests/greedy-agent/greedy.wasm",
        "cells/guests/delegate-agent/delegate.wasm",
    ] {
        let from = module(wasm);
        std::fs::copy(&from, uploads.join(from.file_name().expect("name"))).expect("copy module");
    }
    // The later mission allows three outcomes; the page offers only those.
    let later_gates = format!("{gates}decisions:\n  outcomes: [echo, eligible, ineligible]\n");
    let later = write_mission(
        dir.path(),
        "later",
        Path::new("echo.wasm"),
        1000,
        "{}",
        "    - {id: late, amount: 900}\n",
        &later_gates,
    );
    let later = std::fs::read_to_string(later).expect("mission text");
    let operator = identity::Keypair::load(&operator_key).expect("operator key");
    let reviewer_public = identity::read_public(&reviewer_key).expect("public").1;
    let reviewer_id = reviewer_public.key_id().to_string();

    // The server, on any free loopback port.
    let server = Served::start(&data, &[]);
    let addr = server.addr.clone();

    // No session, no data: every API request is refused, and says why.
    for path in ["/api/gates", "/api/me", "/api/events"] {
        let (status, _, body) = http(&addr, "GET", path, None, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("sign in")), "{path}: {body}");
    }
    let (status, _, _) = http(&addr, "GET", "/api/gates", Some("conductor_session=00ff"), None);
    assert_eq!(status, 401, "a made-up session is no session");
    // The server holds the database; `gates list` runs in it
    // (`conductor/src/local.rs`) and lists what the page will show.
    let out = run(conductor().args(["gates", "list", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = stdout_json(&out);
    assert!(listed.as_array().is_some_and(|g| g.iter().any(|g| g["status"] == "pending")), "{listed}");

    // The browser.
    let (_driver, client) = chromium::headless(&dir.path().join("chromium-profile"), 1600).await;

    client.goto(&format!("http://{addr}/")).await.expect("open the page");
    let state = |c: fantoccini::Client| async move {
        c.find(Locator::Css("body")).await.ok()?.attr("data-state").await.ok().flatten()
    };
    assert_eq!(state(client.clone()).await.as_deref(), Some("signed-out"));
    screenshot(&client, "browser/1-sign-in.png").await;

    // The key file goes to the page (a file input), never to the server.
    sign_in_page(&client, &reviewer_key, PASSPHRASE).await;

    // The pending gate, with the case and the agent's proposal.
    let cards = wait_for(&client, "the pending gate", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let ids = gate_card_ids(&c).await;
            (ids.len() == 1).then_some(ids)
        }
    })
    .await;
    let big_gate = cards[0].clone();
    let card = client.find(Locator::Css(&format!("section.gate[data-gate-id=\"{big_gate}\"]"))).await.expect("card");
    let text = card.text().await.expect("card text");
    assert!(text.contains("big") && text.contains("500"), "the card shows the case: {text}");
    screenshot(&client, "browser/2-pending-gate.png").await;

    // A reload would lose this marker; new gates must arrive without one.
    client.execute("window.__conductorNoReload = true; return true;", vec![]).await.expect("script");
    let operator_cookie = sign_in(&addr, &operator);
    let (status, _, body) = http(&addr, "POST", "/api/missions", Some(&operator_cookie), Some(&json!({"yaml": later})));
    assert_eq!(status, 202, "{body}");
    let both = wait_for(&client, "the new gate to appear", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let ids = gate_card_ids(&c).await;
            (ids.len() == 2).then_some(ids)
        }
    })
    .await;
    let late_gate = both.iter().find(|id| **id != big_gate).expect("the new gate").clone();
    let still = client.execute("return window.__conductorNoReload === true;", vec![]).await.expect("script");
    assert_eq!(still, json!(true), "the new gate arrived without a reload");
    screenshot(&client, "browser/3-new-gate-arrived.png").await;

    // Role separation: an operator's session cannot decide, and the
    // attempt is journaled.
    let (status, _, body) = http(
        &addr,
        "POST",
        &format!("/api/gates/{late_gate}/prepare"),
        Some(&operator_cookie),
        Some(&json!({"verdict": "approve"})),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("operator keys cannot decide")), "{body}");
    // Oversized requests are refused before they are read whole.
    let huge = json!({"verdict": "approve", "note": "x".repeat(100_000)});
    let (status, _, body) =
        http(&addr, "POST", &format!("/api/gates/{late_gate}/prepare"), Some(&operator_cookie), Some(&huge));
    assert_eq!(status, 413, "{body}");

    // The reviewer approves in the page; the browser signs.
    let approve = client
        .find(Locator::Css(&format!("section.gate[data-gate-id=\"{big_gate}\"] button.approve")))
        .await
        .expect("approve button");
    approve.click().await.expect("click approve");
    wait_for(&client, "the decision", PAGE_TIMEOUT, || {
        let c = client.clone();
        let big_gate = big_gate.clone();
        async move {
            let ids = gate_card_ids(&c).await;
            let message = c.find(Locator::Id("message")).await.ok()?.text().await.ok()?;
            (!ids.contains(&big_gate) && message.to_lowercase().contains("approved")).then_some(())
        }
    })
    .await;
    screenshot(&client, "browser/4-approved.png").await;

    // The case is complete, decided by this reviewer.
    let reviewer_cookie = client.get_named_cookie("conductor_session").await.expect("the page's session cookie");
    let reviewer_cookie = format!("conductor_session={}", reviewer_cookie.value());
    let (status, _, gate) = http(&addr, "GET", &format!("/api/gates/{big_gate}"), Some(&reviewer_cookie), None);
    assert_eq!(status, 200, "{gate}");
    assert_eq!(gate["status"], "approved", "{gate}");
    assert_eq!(gate["reviewer"], reviewer_id.as_str(), "{gate}");
    assert_eq!(gate["case_status"], "decided", "{gate}");

    // The later mission allows three outcomes: the edit box is a select
    // box of exactly those, and the reviewer approves with another one.
    let late_card = format!("section.gate[data-gate-id=\"{late_gate}\"]");
    client
        .find(Locator::Css(&format!("{late_card} button.edit")))
        .await
        .expect("edit button")
        .click()
        .await
        .expect("open the edits");
    let offered = wait_for(&client, "the outcome select box", PAGE_TIMEOUT, || {
        let c = client.clone();
        let css = format!("{late_card} select.outcome option");
        async move {
            let mut values = Vec::new();
            for option in c.find_all(Locator::Css(&css)).await.ok()? {
                values.push(option.attr("value").await.ok()??);
            }
            (!values.is_empty()).then_some(values)
        }
    })
    .await;
    assert_eq!(offered, ["echo", "eligible", "ineligible"], "the mission's outcomes, and no free text");
    client
        .find(Locator::Css(&format!("{late_card} select.outcome")))
        .await
        .expect("select box")
        .select_by_value("ineligible")
        .await
        .expect("choose an outcome");
    screenshot(&client, "browser/4b-outcome-select.png").await;
    client
        .find(Locator::Css(&format!("{late_card} button.edit")))
        .await
        .expect("edit button")
        .click()
        .await
        .expect("approve as edited");
    wait_for(&client, "the edited decision", PAGE_TIMEOUT, || {
        let c = client.clone();
        let late_gate = late_gate.clone();
        async move { (!gate_card_ids(&c).await.contains(&late_gate)).then_some(()) }
    })
    .await;
    let (status, _, gate) = http(&addr, "GET", &format!("/api/gates/{late_gate}"), Some(&reviewer_cookie), None);
    assert_eq!(status, 200, "{gate}");
    assert_eq!((gate["status"].as_str(), gate["outcome"].as_str()), (Some("approved"), Some("ineligible")), "{gate}");

    // What a reviewer judges by: the sample agent on the real model
    // recalls policy facts and asks the model; its gate's card shows the
    // model's prompt and completion and the facts it used.
    std::fs::copy(
        repo_root().join("missions/examples/casework/cases/case-01.json"),
        uploads.join("cases/case-01.json"),
    )
    .expect("copy case");
    let reviewed = dir.path().join("reviewed.yaml");
    std::fs::write(
        &reviewed,
        format!(
            "name: reviewed\nbudget: {{ limit: 5000 }}\n\
             models:\n  smollm2-135m: {{ prompt_price: 1, completion_price: 2 }}\n\
             agents:\n  - {{ name: eligibility, module: eligibility.wasm, model: smollm2-135m, limits: {{ max_tokens: 48 }} }}\n\
             tasks:\n  agent: eligibility\n  dir: cases\n\
             gates:\n  - {{ name: every-case, when: {{ field: case.requested_amount, greater_than: 0 }} }}\n\
             memory:\n{}",
            policy_facts()
        ),
    )
    .expect("write mission");
    let reviewed = std::fs::read_to_string(&reviewed).expect("mission text");
    let (status, _, body) =
        http(&addr, "POST", "/api/missions", Some(&operator_cookie), Some(&json!({"yaml": reviewed})));
    assert_eq!(status, 202, "{body}");
    let card_text = wait_for(&client, "the reviewed case", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            for card in c.find_all(Locator::Css("section.gate")).await.ok()? {
                let text = card.text().await.ok()?;
                if text.contains("HS-2026-0001") {
                    // Open the collapsed reasoning and memory, so their
                    // text is rendered.
                    c.execute(
                        "document.querySelectorAll('section.gate details').forEach(d => d.open = true); return true;",
                        vec![],
                    )
                    .await
                    .ok()?;
                    return card.text().await.ok();
                }
            }
            None
        }
    })
    .await;
    assert!(
        card_text.contains("income-limit-monthly") && card_text.contains("2400"),
        "the memory it used: {card_text}"
    );
    assert!(card_text.contains("smollm2-135m"), "the model it asked: {card_text}");
    screenshot(&client, "browser/5-reasoning-and-memory.png").await;

    // A swarm: `lead` delegates two checks; the one that comes back
    // disputed waits for a reviewer, and its card shows who delegated it.
    let swarm = "name: swarm\nbudget: { limit: 5000 }\n\
         models:\n  smollm2-135m: { prompt_price: 1, completion_price: 2 }\n\
         agents:\n\
         \x20 - { name: lead, module: delegate.wasm, model: smollm2-135m, delegates_to: [checker] }\n\
         \x20 - { name: checker, module: delegate.wasm, model: smollm2-135m }\n\
         tasks:\n  agent: lead\n  inline:\n\
         \x20   - { id: swarm-1, delegate: [ { agent: checker, input: { outcome: disputed } },\n\
         \x20                                { agent: checker, input: { outcome: fine } } ] }\n\
         gates:\n  - { name: dispute, when: { field: decision.outcome, equals: disputed } }\n";
    let (status, _, body) = http(&addr, "POST", "/api/missions", Some(&operator_cookie), Some(&json!({"yaml": swarm})));
    assert_eq!(status, 202, "{body}");
    let delegated = wait_for(&client, "the delegated case's card", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            for card in c.find_all(Locator::Css("section.gate")).await.ok()? {
                let text = card.text().await.ok()?;
                if text.contains("Delegated by") && text.contains("swarm-1") {
                    // In view, for the screenshot.
                    let id = card.attr("data-gate-id").await.ok()??;
                    let js = format!(
                        "document.querySelector('section.gate[data-gate-id=\"{id}\"]').scrollIntoView(); return true;"
                    );
                    c.execute(&js, vec![]).await.ok()?;
                    return Some(text);
                }
            }
            None
        }
    })
    .await;
    assert!(delegated.contains("(lead)") && delegated.contains("disputed"), "{delegated}");
    screenshot(&client, "browser/5b-delegated-case.png").await;

    // A budget gate, on the same page: a mission whose agent spends until
    // refused runs out under `on_exhausted: gate`; the reviewer grants
    // the extension it asks for, signing both the decision and the
    // posting in the browser, and the mission carries on.
    model_file();
    let thrifty = dir.path().join("thrifty.yaml");
    std::fs::write(
        &thrifty,
        "name: thrifty\nbudget: { limit: 100, on_exhausted: gate, extension: { amount: 150 } }\n\
         models:\n  smollm2-135m: { prompt_price: 1, completion_price: 2 }\n\
         agents:\n  - { name: spender, module: greedy.wasm, model: smollm2-135m, limits: { max_tokens: 16 } }\n\
         tasks:\n  agent: spender\n  inline:\n    - { id: spend }\n",
    )
    .expect("write mission");
    let thrifty = std::fs::read_to_string(&thrifty).expect("mission text");
    let (status, _, body) =
        http(&addr, "POST", "/api/missions", Some(&operator_cookie), Some(&json!({"yaml": thrifty})));
    assert_eq!(status, 202, "{body}");
    let budget_gate = wait_for(&client, "the budget gate", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            for card in c.find_all(Locator::Css("section.gate")).await.ok()? {
                if card.text().await.ok()?.contains("150") && card.find(Locator::Css("button.approve")).await.is_ok() {
                    return card.attr("data-gate-id").await.ok().flatten();
                }
            }
            None
        }
    })
    .await;
    screenshot(&client, "browser/6-budget-gate.png").await;
    client
        .find(Locator::Css(&format!("section.gate[data-gate-id=\"{budget_gate}\"] button.approve")))
        .await
        .expect("approve button")
        .click()
        .await
        .expect("click approve");
    wait_for(&client, "the budget decision", PAGE_TIMEOUT, || {
        let c = client.clone();
        let budget_gate = budget_gate.clone();
        async move { (!gate_card_ids(&c).await.contains(&budget_gate)).then_some(()) }
    })
    .await;
    screenshot(&client, "browser/7-budget-granted.png").await;

    // A second decision on the same gate is refused (409) and journaled.
    let (status, _, body) = http(
        &addr,
        "POST",
        &format!("/api/gates/{big_gate}/prepare"),
        Some(&reviewer_cookie),
        Some(&json!({"verdict": "reject"})),
    );
    assert_eq!(status, 409, "{body}");
    // A forged decision: a made-up token and signature.
    let forged = json!({"token": "00".repeat(32), "signatures": ["11".repeat(64)]});
    let (status, _, body) =
        http(&addr, "POST", &format!("/api/gates/{late_gate}/decide"), Some(&reviewer_cookie), Some(&forged));
    assert_eq!(status, 409, "{body}");
    // Signing out ends the session and its event stream.
    let (status, _, _) = http(&addr, "DELETE", "/api/session", Some(&operator_cookie), None);
    assert_eq!(status, 200);
    let (status, _, _) = http(&addr, "GET", "/api/gates", Some(&operator_cookie), None);
    assert_eq!(status, 401);

    // Operators and auditors sign in to the same page, to look.
    client.find(Locator::Id("sign-out")).await.expect("sign-out button").click().await.expect("sign out");
    sign_in_page(&client, &operator_key, "").await;
    let looked = wait_for(&client, "the operator's queue", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let ids = gate_card_ids(&c).await;
            let looks = c.find_all(Locator::Css("section.gate p.look-only")).await.ok()?.len();
            let buttons = c.find_all(Locator::Css("section.gate button.approve")).await.ok()?.len();
            (!ids.is_empty() && looks == ids.len()).then_some((ids, buttons))
        }
    })
    .await;
    assert_eq!(looked.1, 0, "an operator is offered no decision: {looked:?}");
    screenshot(&client, "browser/8-operator-looks.png").await;
    client.find(Locator::Id("sign-out")).await.expect("sign-out button").click().await.expect("sign out");
    sign_in_page(&client, &auditor_key, "").await;
    let rows = wait_for(&client, "the auditor's decided gates", PAGE_TIMEOUT, || {
        let c = client.clone();
        async move {
            let rows = c.find_all(Locator::Css("#decided-rows tr")).await.ok()?;
            let mut ids = Vec::new();
            for row in rows {
                ids.push(row.attr("data-gate-id").await.ok()??);
            }
            (ids.len() >= 3).then_some(ids)
        }
    })
    .await;
    assert!(rows.contains(&big_gate) && rows.contains(&late_gate) && rows.contains(&budget_gate), "{rows:?}");
    assert!(gate_card_ids(&client).await.is_empty(), "an auditor sees no queue");
    screenshot(&client, "browser/9-auditor-decided.png").await;

    client.close().await.expect("close the browser");
    server.stop();

    // The journal: the decision is signed by the reviewer's own key, the
    // refusals are recorded, and everything verifies.
    let out = run(conductor().args(["audit", "verify", "--json", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let signers = stdout_json(&out)["signers"].clone();
    assert!(signers.as_array().expect("signers").iter().any(|s| s == reviewer_id.as_str()), "{signers}");
    let refusals = journal(&data, "gate.refused").len();
    assert!(refusals >= 4, "operator, oversized, second decision and forgery are journaled: {refusals}");
    let decided = journal(&data, "gate.decided");
    assert_eq!(decided.len(), 3, "two case gates and the budget gate (the reviewed case stays pending): {decided:?}");
    let reviewer_hex = reviewer_public.to_hex();
    assert!(decided.iter().all(|e| e["signer"] == reviewer_hex.as_str()), "{decided:?}");
    let extended = journal(&data, "budget.extended");
    assert_eq!(extended.len(), 1, "{extended:?}");
    assert_eq!(extended[0]["signer"], reviewer_hex.as_str(), "the reviewer's own posting: {extended:?}");
    assert_eq!(extended[0]["payload"]["amount"], 150, "{extended:?}");
}

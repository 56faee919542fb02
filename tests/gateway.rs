//! The metered OpenAI-compatible gateway, through the official `openai`
//! Python client (from PyPI, installed by `cargo xtask test`): whole and
//! streamed completions from the real model, each reserved, settled and
//! journaled against the key's own budget account; a bad key, an unknown
//! model, a prompt beyond the context and a call over budget are refused
//! with OpenAI-style errors, and charge nothing.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_openai_client_gets_metered_journaled_completions_and_clear_refusals() {
    let python = repo_root().join(".cache/venv-openai/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` installs the openai client", python.display());
    let dir = tempfile::tempdir().expect("tempdir");
    // The embedded model, priced for the gateway's clients.
    let registry = dir.path().join("models.yaml");
    priced_registry(&registry, 1, 2, "");
    let data = dir.path().join("data");
    let operator = dir.path().join("operator.key");
    let stranger = dir.path().join("stranger.key");
    for key in [&operator, &stranger] {
        assert_eq!(
            run(conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(key)).status.code(),
            Some(0)
        );
    }
    let issue = |key: &std::path::Path| {
        run(conductor()
            .args(["gateway", "issue", "--name", "app", "--limit", "5000", "--key"])
            .arg(key)
            .arg("--data")
            .arg(&data))
    };
    // Issuing creates no data directory: registering the first person does.
    assert_ne!(issue(&operator).status.code(), Some(0), "no data directory yet");
    assert!(!data.exists(), "a refused issue leaves no data directory");
    assert_eq!(
        run(conductor().args(["keys", "register", "--init", "--data"]).arg(&data).arg(&operator)).status.code(),
        Some(0)
    );
    // Issuing needs a registered operator.
    assert_ne!(issue(&stranger).status.code(), Some(0), "an unregistered operator cannot issue keys");
    let key = issue_gateway_key(&data, &operator, "app", 5000);
    assert!(key.starts_with("cgw_") && key.len() == 68, "{key}");
    let poor = issue_gateway_key(&data, &operator, "poor", 10);

    let server = Served::start(&data, &["--models".as_ref(), registry.as_os_str()]);
    let addr = server.addr.clone();

    let out = run(Command::new(&python)
        .arg(repo_root().join("tests/clients/openai_gateway.py"))
        .arg(format!("http://{addr}/v1"))
        .arg(&key)
        .arg(&poor));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = stdout_json(&out);

    let models = got["models"].as_array().expect("models listed");
    assert!(models.iter().any(|id| id == "smollm2-135m"), "GET /v1/models: {got}");
    let whole = &got["whole"];
    assert!(whole["text"].as_str().is_some_and(|t| !t.trim().is_empty()), "{whole}");
    assert!(whole["prompt_tokens"].as_u64().is_some_and(|n| n > 5), "{whole}");
    let whole_completion = whole["completion_tokens"].as_u64().expect("completion tokens");
    assert!((1..=16).contains(&whole_completion), "{whole}");
    let stream = &got["stream"];
    assert!(stream["pieces"].as_u64().is_some_and(|n| n >= 2), "streamed in pieces: {stream}");
    // Greedy decoding: the same request, streamed or not, says the same.
    assert_eq!(stream["text"], whole["text"], "{got}");
    assert_eq!(stream["completion_tokens"], whole["completion_tokens"], "{got}");

    assert_eq!(got["bad_key"]["status"], 401, "{got}");
    assert_eq!(got["bad_key"]["code"], "invalid_api_key", "{got}");
    assert_eq!(got["unknown_model"]["status"], 404, "{got}");
    assert_eq!(got["unknown_model"]["code"], "model_not_found", "{got}");
    assert_eq!(got["too_long"]["status"], 400, "{got}");
    assert_eq!(got["too_long"]["code"], "context_length_exceeded", "{got}");
    assert_eq!(got["over_budget"]["status"], 429, "{got}");
    assert_eq!(got["over_budget"]["code"], "insufficient_quota", "{got}");

    server.stop();

    // Each served call is journaled with its cost, and the account's
    // settled spend is exactly their sum; refusals charged nothing.
    let served = journal(&data, "gateway.completion");
    assert_eq!(served.len(), 2, "{served:?}");
    let cost: u64 = served.iter().map(|e| e["payload"]["cost"].as_u64().expect("cost")).sum();
    for e in &served {
        let p = &e["payload"];
        let expect = p["prompt_tokens"].as_u64().expect("p") + 2 * p["completion_tokens"].as_u64().expect("c");
        assert_eq!(p["cost"].as_u64(), Some(expect), "priced by the registry: {p}");
        assert_eq!(p["account"], "gateway:app", "{p}");
    }
    let out = run(conductor().args(["ledger", "show", "--json", "--data"]).arg(&data));
    let accounts = stdout_json(&out);
    let account =
        |name: &str| accounts.as_array().expect("accounts").iter().find(|a| a["account"] == name).cloned().expect(name);
    assert_eq!(account("gateway:app")["settled"].as_u64(), Some(cost), "{accounts}");
    assert_eq!(account("gateway:app")["pending"], 0, "{accounts}");
    assert_eq!(account("gateway:poor")["settled"], 0, "the refused call cost nothing: {accounts}");
    let refused = journal(&data, "gateway.refused");
    let codes: Vec<&str> = refused.iter().filter_map(|e| e["payload"]["code"].as_str()).collect();
    for code in ["model_not_found", "context_length_exceeded", "insufficient_quota"] {
        assert!(codes.contains(&code), "{code} journaled: {codes:?}");
    }
    assert_eq!(codes.len(), 3, "an unknown key is refused but not journaled: {codes:?}");
    let out = run(conductor().args(["audit", "verify", "--data"]).arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kinds = assert_entries_typed(&data);
    for kind in ["gateway.key_issued", "gateway.completion", "gateway.refused"] {
        assert!(kinds.contains_key(kind), "`{kind}`: {kinds:?}");
    }
}

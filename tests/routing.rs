//! Routing on the real model: a mission that opts in sends one kind of
//! case to a frontier model (here another conductor's metered gateway,
//! standing in for an off-host OpenAI-compatible API), journaling that the
//! data left the host; a restricted case of the same kind stays on the
//! host; other cases stay local; an air-gapped host refuses the frontier
//! configuration outright.

mod common;

use common::*;

#[test]
fn opted_in_cases_fail_over_to_a_frontier_model_restricted_ones_never_and_an_air_gapped_host_refuses_it() {
    let model = model_file();
    let agent = module("missions/examples/casework/agent/eligibility.wasm");
    let dir = tempfile::tempdir().expect("tempdir");

    // The "frontier": a conductor gateway on another data directory.
    let remote = dir.path().join("remote");
    let remote_registry = dir.path().join("remote-models.yaml");
    priced_registry(&remote_registry, 1, 1, "");
    let operator = dir.path().join("operator.key");
    registered_operator(&remote, &operator);
    let key = issue_gateway_key(&remote, &operator, "peer", 100_000);
    let server = Served::start(&remote, &["--models".as_ref(), remote_registry.as_os_str()]);
    let addr = server.addr.clone();

    // This host: the local model, and the frontier cleared for internal data.
    let registry = dir.path().join("models.yaml");
    std::fs::write(
        &registry,
        format!(
            "models:\n  smollm2-135m:\n    file: {}\n    sha256: {MODEL_SHA256}\n    context_tokens: 2048\n  \
             frontier-big:\n    endpoint: http://{addr}/v1\n    api_key_env: FRONTIER_KEY\n    remote_model: smollm2-135m\n    \
             context_tokens: 2048\n    tier: internal\n",
            model.display()
        ),
    )
    .expect("registry");
    let case = |id: &str, extra: &str| {
        format!(
            "    - {{id: {id}, applicant: A, household_size: 3, monthly_income: 1850, requested_amount: 1200, \
             residency_months: 26, notes: none{extra}}}\n"
        )
    };
    let facts = policy_facts();
    let mission = dir.path().join("mission.yaml");
    std::fs::write(
        &mission,
        format!(
            "name: routed\nbudget: {{ limit: 100000 }}\n\
             models:\n  smollm2-135m: {{ prompt_price: 1, completion_price: 2 }}\n  frontier-big: {{ prompt_price: 3, completion_price: 6 }}\n\
             agents:\n  - {{ name: eligibility, module: {}, model: smollm2-135m, limits: {{ max_tokens: 48 }} }}\n\
             tasks:\n  agent: eligibility\n  tier: internal\n  inline:\n{}{}{}\
             routing:\n  failover:\n    - {{ when: {{ field: case.kind, equals: appeal }}, to: frontier-big }}\n\
             memory:\n{facts}",
            agent.display(),
            case("appeal-open", ", kind: appeal"),
            case("appeal-restricted", ", kind: appeal, _tier: restricted"),
            case("plain", ""),
        ),
    )
    .expect("mission");

    // An air-gapped host cannot even be configured with the frontier.
    let out = run(conductor()
        .arg("run")
        .arg(&mission)
        .arg("--data")
        .arg(dir.path().join("gapped"))
        .arg("--models")
        .arg(&registry)
        .arg("--air-gap"));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("air-gapped"), "{}", stderr(&out));
    assert!(!dir.path().join("gapped/conductor.redb").exists(), "nothing ran");

    let data = dir.path().join("data");
    let out = run(conductor()
        .arg("run")
        .arg(&mission)
        .arg("--data")
        .arg(&data)
        .arg("--models")
        .arg(&registry)
        .args(["--json", "--concurrency", "1"])
        .env("FRONTIER_KEY", &key));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert!(tasks(&summary).iter().all(|t| t["status"] == "decided"), "{summary}");

    // Exactly one prompt left the host, for the open appeal, and it is
    // the one the remote gateway served.
    let left = journal(&data, "data.left_host");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["payload"]["model"], "frontier-big");
    assert_eq!(left[0]["payload"]["tier"], "internal");
    let calls = journal(&data, "host.infer");
    let by_task =
        |task: u64| calls.iter().find(|c| c["payload"]["task"] == task).map(|c| c["payload"].clone()).expect("call");
    assert_eq!(left[0]["payload"]["task"], 0, "{left:?}");
    assert_eq!(by_task(0)["routed_to"], "frontier-big", "{}", by_task(0));
    assert!(by_task(0)["text"].as_str().is_some_and(|t| !t.is_empty()), "{}", by_task(0));
    assert!(by_task(1)["routed_to"].is_null(), "restricted data stays: {}", by_task(1));
    assert!(by_task(1)["failover_refused"].as_str().is_some_and(|r| r.contains("restricted")), "{}", by_task(1));
    assert!(by_task(2)["routed_to"].is_null() && by_task(2)["failover_refused"].is_null(), "{}", by_task(2));

    server.stop();
    let served = journal(&remote, "gateway.completion");
    assert_eq!(served.len(), 1, "the remote side saw exactly the one prompt: {served:?}");
    assert_eq!(served[0]["payload"]["text"], by_task(0)["text"], "what came back is what the agent got");
    // Both journals verify; the frontier call is paid at the frontier's price.
    for d in [&data, &remote] {
        let out = run(conductor().args(["audit", "verify", "--data"]).arg(d));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let p = by_task(0);
    let expect = 3 * p["prompt_tokens"].as_u64().expect("p") + 6 * p["completion_tokens"].as_u64().expect("c");
    assert_eq!(p["cost"].as_u64(), Some(expect), "{p}");
}

//! The `delegate` host call at the cell level: requests reach the host as
//! the agent made them, each answer (results, refusal, park) reaches the
//! agent or stops the cell as it should, the call is metered like any
//! other, and modules built against an older 0.2.x WIT still link. Uses
//! the guest modules `cargo xtask build-agents` builds and a scripted host.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use cells::{
    AgentModule, CellEngine, CellEnv, CellError, CellFailure, CellHost, CellLimits, Completion, Decision,
    DelegateAnswer, Delegation, DelegationError, Fact, InferRequest,
};
use common::{NullHost, guest};

/// Answers `delegate` calls from a script, and keeps every request and
/// inference it was asked.
#[derive(Clone, Default)]
struct DelegatingHost {
    answers: Arc<Mutex<VecDeque<DelegateAnswer>>>,
    calls: Arc<Mutex<Vec<Vec<Delegation>>>>,
    inferred: Arc<Mutex<Vec<InferRequest>>>,
}

impl DelegatingHost {
    fn answering(answers: impl IntoIterator<Item = DelegateAnswer>) -> Self {
        let host = DelegatingHost::default();
        host.answers.lock().expect("answers").extend(answers);
        host
    }

    fn calls(&self) -> Vec<Vec<Delegation>> {
        self.calls.lock().expect("calls").clone()
    }
}

impl CellHost for DelegatingHost {
    fn infer(&mut self, request: InferRequest) -> Result<Completion, String> {
        self.inferred.lock().expect("inferred").push(request);
        Err("no model in this test".into())
    }
    fn recall(&mut self, _: String, _: Option<i64>) -> Result<Vec<Fact>, String> {
        Ok(Vec::new())
    }
    fn remember(&mut self, _: String, _: String, _: String, _: Option<i64>) -> Result<(), String> {
        Ok(())
    }
    fn request_review(&mut self, _: String, _: String) -> Result<(), String> {
        Ok(())
    }
    fn delegate(&mut self, requests: Vec<Delegation>) -> DelegateAnswer {
        self.calls.lock().expect("calls").push(requests);
        self.answers.lock().expect("answers").pop_front().unwrap_or(DelegateAnswer::Refused("no more answers".into()))
    }
    fn log(&mut self, _: String) {}
}

fn limits() -> CellLimits {
    CellLimits {
        memory_bytes: 16 << 20,
        fuel: 200_000_000,
        wall_ms: 20_000,
        host_calls: 20,
        call_arg_bytes_max: CellLimits::CALL_ARG_BYTES_DEFAULT,
        output_bytes_max: CellLimits::OUTPUT_BYTES_DEFAULT,
    }
}

fn env() -> CellEnv {
    CellEnv { clock_start_us: 1_800_000_000_000_000, seed: [7; 32] }
}

/// One engine and one compiled delegate-agent for every test here: an
/// unoptimised test build takes seconds to compile a module.
fn delegate_agent() -> &'static (CellEngine, AgentModule) {
    static SHARED: OnceLock<(CellEngine, AgentModule)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let engine = CellEngine::new().expect("engine");
        let module = engine.load_file(&guest("delegate-agent/delegate.wasm")).expect("delegate module");
        (engine, module)
    })
}

fn run_with(host: Box<dyn CellHost>, limits: &CellLimits, input: serde_json::Value) -> Result<Decision, CellFailure> {
    let (engine, module) = delegate_agent();
    engine.run(module, host, limits, &env(), &input.to_string())
}

fn details(d: &Decision) -> serde_json::Value {
    serde_json::from_str(&d.details).expect("details are JSON")
}

fn decided(outcome: &str, reason: &str) -> Result<Decision, DelegationError> {
    Ok(Decision { outcome: outcome.into(), reason: reason.into(), details: "{}".into() })
}

#[test]
fn requests_reach_the_host_as_asked_and_results_reach_the_agent_in_order() {
    let host = DelegatingHost::answering([DelegateAnswer::Done(vec![
        decided("eligible", "fits"),
        Err(DelegationError::Failed("agent trapped: unreachable".into())),
        Err(DelegationError::TimedOut("task exceeded its wall-clock limit".into())),
        Err(DelegationError::Budget("budget exhausted".into())),
        Err(DelegationError::Refused("outcome `maybe` is not declared".into())),
    ])]);
    let input = serde_json::json!({"delegate": [
        {"agent": "checker", "input": {"id": "a", "n": 1}, "budget": 500},
        {"agent": "checker", "input": {"id": "b"}},
        {"agent": "slow", "input": {"id": "c"}},
        {"agent": "poor", "input": {"id": "d"}},
        {"agent": "odd", "input": {"id": "e"}},
    ]});
    let decision = run_with(Box::new(host.clone()), &limits(), input).expect("decides");

    let calls = host.calls();
    assert_eq!(calls.len(), 1, "one delegate call");
    assert_eq!(
        calls[0][0],
        Delegation { agent: "checker".into(), input: r#"{"id":"a","n":1}"#.into(), budget: Some(500) }
    );
    assert_eq!(calls[0][1], Delegation { agent: "checker".into(), input: r#"{"id":"b"}"#.into(), budget: None });
    assert_eq!(
        calls[0].iter().map(|d| d.agent.as_str()).collect::<Vec<_>>(),
        ["checker", "checker", "slow", "poor", "odd"]
    );

    assert_eq!(decision.outcome, "combined");
    assert_eq!(decision.reason, "5 children: 1 decided, 1 refused, 1 budget, 1 failed, 1 timed_out");
    assert_eq!(
        details(&decision)["results"],
        serde_json::json!([
            {"outcome": "eligible", "reason": "fits"},
            {"error": "failed", "message": "agent trapped: unreachable"},
            {"error": "timed_out", "message": "task exceeded its wall-clock limit"},
            {"error": "budget", "message": "budget exhausted"},
            {"error": "refused", "message": "outcome `maybe` is not declared"},
        ])
    );
}

#[test]
fn a_refused_call_is_the_agents_error_to_handle() {
    let host = DelegatingHost::answering([DelegateAnswer::Refused("agent `x` is not in delegates_to".into())]);
    let input = serde_json::json!({"delegate": [{"agent": "x", "input": {}}]});
    let decision = run_with(Box::new(host), &limits(), input).expect("decides");
    assert_eq!(decision.outcome, "refused");
    assert_eq!(decision.reason, "agent `x` is not in delegates_to");
}

#[test]
fn a_host_that_cannot_delegate_refuses_by_default() {
    let input = serde_json::json!({"delegate": [{"agent": "x", "input": {}}]});
    let decision = run_with(Box::new(NullHost), &limits(), input).expect("decides");
    assert_eq!(decision.outcome, "refused");
    assert_eq!(decision.reason, "this host cannot delegate");
}

#[test]
fn a_parked_delegation_stops_the_cell_with_its_id() {
    let host = DelegatingHost::answering([DelegateAnswer::Park { delegation: "d-42".into() }]);
    let input = serde_json::json!({"delegate": [{"agent": "x", "input": {}}]});
    let failure = run_with(Box::new(host.clone()), &limits(), input).expect_err("parks");
    assert_eq!(failure, CellFailure::Delegated { delegation: "d-42".into() });
    assert_eq!(failure.code(), "delegated");
    assert_eq!(failure.to_string(), "parked until the children of delegation d-42 end");
    assert_eq!(host.calls().len(), 1);
}

#[test]
fn a_task_may_delegate_twice_and_combines_both_answers() {
    let host = DelegatingHost::answering([
        DelegateAnswer::Done(vec![decided("ok", "first")]),
        DelegateAnswer::Done(vec![decided("ok", "second"), Err(DelegationError::Failed("boom".into()))]),
    ]);
    let input = serde_json::json!({
        "delegate": [{"agent": "a", "input": {"step": 1}}],
        "then_delegate": [{"agent": "b", "input": {"step": 2}}, {"agent": "c", "input": {"step": 3}, "budget": 9}],
    });
    let decision = run_with(Box::new(host.clone()), &limits(), input).expect("decides");
    let calls = host.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1][1], Delegation { agent: "c".into(), input: r#"{"step":3}"#.into(), budget: Some(9) });
    assert_eq!(decision.outcome, "combined");
    assert_eq!(decision.reason, "3 children: 2 decided, 1 failed");
    assert_eq!(details(&decision)["results"].as_array().map(Vec::len), Some(3));
}

#[test]
fn the_call_is_metered_on_its_agents_and_inputs() {
    let mut limits = limits();
    limits.call_arg_bytes_max = 1_000;
    let host = DelegatingHost::answering([DelegateAnswer::Done(vec![decided("ok", "x")])]);
    let big = "x".repeat(1_000);
    let input = serde_json::json!({"delegate": [{"agent": "a", "input": {"text": big}}]});
    let failure = run_with(Box::new(host.clone()), &limits, input).expect_err("too large");
    // "a" plus `{"text":"xxx…"}`: 1 + 1,011 bytes.
    assert_eq!(failure, CellFailure::CallArgumentTooLarge { bytes: 1_012 });
    assert!(host.calls().is_empty(), "the host never saw the call");

    limits.host_calls = 1;
    let host = DelegatingHost::answering([DelegateAnswer::Done(vec![decided("ok", "x")])]);
    let input = serde_json::json!({"spend": 4, "_model": "m", "delegate": [{"agent": "a", "input": {}}]});
    let failure = run_with(Box::new(host.clone()), &limits, input).expect_err("second call refused");
    assert_eq!(failure, CellFailure::HostCallsExceeded);
    assert!(host.calls().is_empty());
}

#[test]
fn as_a_child_it_spends_then_decides_traps_or_spins_as_asked() {
    let host = DelegatingHost::default();
    let input = serde_json::json!({"spend": 12, "_model": "small", "outcome": "eligible", "reason": "r",
                                   "details": {"score": 3}});
    let decision = run_with(Box::new(host.clone()), &limits(), input).expect("decides");
    assert_eq!((decision.outcome.as_str(), decision.reason.as_str()), ("eligible", "r"));
    assert_eq!(details(&decision), serde_json::json!({"score": 3, "infer_error": "no model in this test"}));
    let inferred = host.inferred.lock().expect("inferred").clone();
    assert_eq!(inferred.len(), 1);
    assert_eq!((inferred[0].model.as_str(), inferred[0].max_tokens), ("small", 12));

    let plain = run_with(Box::new(NullHost), &limits(), serde_json::json!({})).expect("decides");
    assert_eq!((plain.outcome.as_str(), plain.reason.as_str(), plain.details.as_str()), ("ok", "done", "{}"));

    let trapped = run_with(Box::new(NullHost), &limits(), serde_json::json!({"trap": true})).expect_err("traps");
    assert_eq!(trapped.code(), "trap");

    let mut small = limits();
    small.fuel = 2_000_000;
    let spun = run_with(Box::new(NullHost), &small, serde_json::json!({"spin": true})).expect_err("spins");
    assert_eq!(spun, CellFailure::FuelExhausted);
}

/// Rewrites the version of every `conductor:agent/<interface>@0.2.N`
/// import name in a component: `minor` and `patch` must be one digit each,
/// as the real ones are, so the names keep their length and the binary
/// stays valid.
fn with_import_version(module: &[u8], minor: u8, patch: u8) -> Vec<u8> {
    const PREFIX: &[u8] = b"conductor:agent/";
    let mut out = module.to_vec();
    let mut rewritten = 0;
    let mut at = 0;
    while let Some(found) = out[at..].windows(PREFIX.len()).position(|w| w == PREFIX) {
        let start = at + found + PREFIX.len();
        let Some(sign) = out[start..].iter().take(32).position(|&b| b == b'@') else { break };
        let version = start + sign + 1;
        if out.get(version..version + 5).is_some_and(|v| v[..2] == *b"0." && v[3] == b'.') {
            out[version + 2] = b'0' + minor;
            out[version + 4] = b'0' + patch;
            rewritten += 1;
        }
        at = version;
    }
    assert!(rewritten > 0, "no conductor:agent import found");
    out
}

#[test]
fn modules_built_against_an_older_0_2_wit_still_link() {
    let engine = CellEngine::new().expect("engine");
    let echo = std::fs::read(guest("echo-agent/echo.wasm")).expect("echo bytes");
    for patch in [0, 1, 2] {
        let old = with_import_version(&echo, 2, patch);
        let module = engine.load(&format!("echo@0.2.{patch}"), &old).expect("an older 0.2 module links");
        let decision = engine.run(&module, Box::new(NullHost), &limits(), &env(), "hi").expect("runs");
        assert_eq!(decision.outcome, "echo");
    }
    // The same rewrite to an incompatible version is refused: the test
    // above would notice if the rewrite did nothing.
    let newer = with_import_version(&echo, 3, 0);
    match engine.load("echo@0.3.0", &newer) {
        Err(CellError::Link { reason, .. }) => assert!(reason.contains("conductor:agent"), "{reason}"),
        other => panic!("a 0.3 module must not link: {other:?}"),
    }
}

//! `triage-agent`: the Rust member of the triage trio (see ../README.md).
//! Its Python and JavaScript twins must decide every case the same way.

use conductor_agent::{Agent, Decision, Message, infer, log, recall_value, remember, request_review};
use serde_json::{Value, json};

const LANG: &str = "rust";
const POLICY: &str = "policy:triage";
const GATE: &str = "large-amount";
const DEFAULT_MODEL: &str = "smollm2-135m";
const SUMMARY_TOKENS: u32 = 8;

struct Triage;

impl Agent for Triage {
    fn run(input: String) -> Result<Decision, String> {
        let case: Value = serde_json::from_str(&input).map_err(|e| format!("input: {e}"))?;
        let id = case["id"].as_str().ok_or("input: `id` is not a string")?;
        let amount = case["amount"].as_i64().ok_or("input: `amount` is not an integer")?;
        let model = case["_model"].as_str().unwrap_or(DEFAULT_MODEL);
        log(&format!("triage[{LANG}] {id}"));

        let limit: i64 = recall_value(POLICY, "review-above")?
            .ok_or(format!("no review-above in {POLICY}"))?
            .parse()
            .map_err(|e| format!("review-above: {e}"))?;
        let summary = infer(
            model,
            &[
                Message::system("Summarise the case in five words."),
                Message::user(format!("Case {id}: amount {amount}")),
            ],
            SUMMARY_TOKENS,
        )?;
        remember(&format!("case:{id}"), "triaged-by", LANG)?;
        let outcome = if amount > limit {
            request_review(GATE, &format!("amount {amount} above {limit}"))?;
            "refer"
        } else {
            "accept"
        };
        let details = json!({
            "lang": LANG,
            "limit": limit,
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
        });
        Ok(Decision::new(outcome, format!("amount {amount} vs limit {limit}")).with_details(details.to_string()))
    }
}

conductor_agent::export_agent!(Triage);

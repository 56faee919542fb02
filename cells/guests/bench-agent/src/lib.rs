//! `bench-agent`: exactly one `infer` call, for `cargo xtask bench-inference`.
//!
//! The case input gives the call: `prompt` (the user message), optionally
//! `system` (a system message before it), and `max_tokens`. The decision
//! reports the token counts the host charged, so the benchmark reads the
//! same counts from the run summary as from the journal.

use conductor_agent::{Agent as Guest, Decision, Message, host};

/// Used when the conductor did not inject `_model` into the input.
const DEFAULT_MODEL: &str = "smollm2-135m";
/// Used when the case gives no `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 56;

struct BenchAgent;

impl Guest for BenchAgent {
    fn run(input: String) -> Result<Decision, String> {
        let case: serde_json::Value =
            serde_json::from_str(&input).map_err(|e| format!("case input is not JSON: {e}"))?;
        let model = case
            .get("_model")
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MODEL);
        let prompt = case
            .get("prompt")
            .and_then(|p| p.as_str())
            .ok_or_else(|| "case input has no `prompt` string".to_owned())?;
        let max_tokens = case
            .get("max_tokens")
            .and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_MAX_TOKENS, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = case.get("system").and_then(|s| s.as_str()).filter(|s| !s.is_empty()) {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(prompt));

        let completion = host::infer(model, &messages, max_tokens)?;
        let details = serde_json::json!({
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "text_fnv64": text_fingerprint(&completion.text),
            "text": completion.text,
        });
        Ok(Decision::new("done", format!(
            "{} prompt tokens, {} completion tokens",
            completion.prompt_tokens, completion.completion_tokens
        ))
        .with_details(details.to_string()))
    }
}

/// A short, dependency-free fingerprint of the text (FNV-1a, 64 bits), so
/// outputs can be compared across cells at a glance.
fn text_fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

conductor_agent::export_agent!(BenchAgent);

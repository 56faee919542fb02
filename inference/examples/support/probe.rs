//! Greedy answers with every token's log-probability, and their bit-for-bit
//! comparison: shared by `examples/determinism.rs` and `tests/determinism.rs`.
//! Expects the including crate to have the sibling `load` module at its root.

#![allow(dead_code, reason = "the example and the test each use a different subset")]

use std::sync::Arc;

use anyhow::{Context, Result};
use mistralrs::core::{MistralRsBuilder, ModelDType};
use mistralrs::{Device, Model, RequestBuilder, TextMessageRole};

use crate::load::{load_gguf, scheduler};

/// The sample mission's system message (`missions/examples/casework`).
pub const SYSTEM: &str =
    "You check housing-support cases. Answer with one word first, ELIGIBLE or INELIGIBLE, then one short reason.";

/// User messages the sample mission's agent builds for six of its cases (as
/// `audit log --kind host.infer` shows them): 104, 105, 105, 101, 105 and
/// 105 prompt tokens. Cases 1 and 2 reuse different lengths of case 0's
/// prompt from the prefix cache, which is what exposed mistral.rs's
/// re-prefill bug (`vendor/README.md`, mistralrs-core 4).
pub const CASES: [&str; 6] = [
    "Household of 3. Monthly income 1850, limit 3100: within the limit.\nResidency 26 months, minimum 12: meets the minimum.\nBy the rules the applicant is ELIGIBLE.\nState the verdict and why.",
    "Household of 2. Monthly income 4100, limit 2750: above the limit.\nResidency 60 months, minimum 12: meets the minimum.\nBy the rules the applicant is INELIGIBLE.\nState the verdict and why.",
    "Household of 3. Monthly income 3600, limit 3100: above the limit.\nResidency 48 months, minimum 12: meets the minimum.\nBy the rules the applicant is INELIGIBLE.\nState the verdict and why.",
    "Household of 2. Monthly income 0, limit 2750: within the limit.\nResidency 22 months, minimum 12: meets the minimum.\nBy the rules the applicant is ELIGIBLE.\nState the verdict and why.",
    "Household of 1. Monthly income 3200, limit 2400: above the limit.\nResidency 30 months, minimum 12: meets the minimum.\nBy the rules the applicant is INELIGIBLE.\nState the verdict and why.",
    "Household of 5. Monthly income 5200, limit 3800: above the limit.\nResidency 24 months, minimum 12: meets the minimum.\nBy the rules the applicant is INELIGIBLE.\nState the verdict and why.",
];

/// One greedy answer: its text, and each token with its log-probability.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub tokens: Vec<(String, f32)>,
}

impl Answer {
    /// BLAKE3 of the tokens and the exact bits of their log-probabilities.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for (token, logprob) in &self.tokens {
            hasher.update(token.as_bytes());
            hasher.update(&[0]);
            hasher.update(&logprob.to_bits().to_le_bytes());
        }
        hasher.finalize().to_hex()[..16].to_owned()
    }

    /// How this answer compares with `reference`.
    pub fn compare(&self, reference: &Answer) -> Comparison {
        let pairs = || reference.tokens.iter().zip(&self.tokens);
        Comparison {
            same_text: reference.text == self.text,
            bit_equal: reference.tokens.len() == self.tokens.len()
                && pairs().all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
            max_delta: pairs().take_while(|(a, b)| a.0 == b.0).map(|(a, b)| (a.1 - b.1).abs()).fold(0f32, f32::max),
            first_differing_token: pairs().position(|(a, b)| a.0 != b.0),
        }
    }
}

/// An answer against its reference.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub same_text: bool,
    /// Every token and its log-probability equal, bit for bit.
    pub bit_equal: bool,
    /// The largest log-probability difference while the tokens agree.
    pub max_delta: f32,
    pub first_differing_token: Option<usize>,
}

/// An engine on the GGUF at `path`, loaded and scheduled as
/// `inference/src/lib.rs` does, with or without the prefix cache.
pub async fn engine(path: &std::path::Path, prefix_cache: bool) -> Result<Arc<Model>> {
    let dir = path.parent().context("model path has no directory")?.to_string_lossy().into_owned();
    let file = path.file_name().context("model path has no file name")?.to_string_lossy().into_owned();
    let pipeline = tokio::task::spawn_blocking(move || load_gguf(dir, file, &Device::Cpu, &ModelDType::F32)).await??;
    Ok(Arc::new(Model::new(
        MistralRsBuilder::new(pipeline, scheduler(64), false, None).with_no_prefix_cache(!prefix_cache).build().await,
    )))
}

/// `prompt` after the system message, decoded greedily as inference.rs
/// asks, with log-probabilities.
pub async fn ask(model: &Model, prompt: &str, max_tokens: usize) -> Result<Answer> {
    let request = RequestBuilder::new()
        .set_deterministic_sampler()
        .set_sampler_max_len(max_tokens)
        .return_logprobs(true)
        .add_message(TextMessageRole::System, SYSTEM)
        .add_message(TextMessageRole::User, prompt);
    let response = model.send_chat_request(request).await?;
    let choice = response.choices.first().context("no choice in the response")?;
    let tokens = choice
        .logprobs
        .as_ref()
        .and_then(|l| l.content.as_ref())
        .context("no log-probabilities in the response")?
        .iter()
        .map(|l| (l.token.clone(), l.logprob))
        .collect();
    Ok(Answer { text: choice.message.content.clone().unwrap_or_default(), tokens })
}

/// Every prompt alone, in a fresh engine without a prefix cache, so that
/// nothing that ran before can touch it: the reference answers.
pub async fn references(path: &std::path::Path, prompts: &[String], max_tokens: usize) -> Result<Vec<Answer>> {
    let model = engine(path, false).await?;
    let mut answers = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        answers.push(ask(&model, prompt, max_tokens).await?);
    }
    Ok(answers)
}

/// Runs `plan` on `model`: each step's prompts are sent at once, and a
/// step starts when the previous one has finished. Returns (step, prompt,
/// prompts in the step, answer) in plan order.
pub async fn run_plan(
    model: &Arc<Model>,
    prompts: &[String],
    plan: &[Vec<usize>],
    max_tokens: usize,
) -> Result<Vec<(usize, usize, usize, Answer)>> {
    let mut out = Vec::new();
    for (step, group) in plan.iter().enumerate() {
        let tasks: Vec<_> = group
            .iter()
            .map(|&i| {
                let (model, prompt) = (model.clone(), prompts[i].clone());
                tokio::spawn(async move { ask(&model, &prompt, max_tokens).await })
            })
            .collect();
        for (&i, task) in group.iter().zip(tasks) {
            out.push((step, i, group.len(), task.await??));
        }
    }
    Ok(out)
}

/// A plan from text: steps separated by `;`, each a comma-separated list of
/// prompt numbers below `n`.
pub fn parse_plan(text: &str, n: usize) -> Result<Vec<Vec<usize>>> {
    text.split(';')
        .map(|step| {
            step.split(',')
                .map(|p| {
                    let i: usize = p.trim().parse().with_context(|| format!("plan: {p:?} is not a prompt number"))?;
                    anyhow::ensure!(i < n, "plan: prompt {i} does not exist (there are {n})");
                    Ok(i)
                })
                .collect()
        })
        .collect()
}

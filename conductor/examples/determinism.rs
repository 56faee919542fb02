//! Does greedy inference give the same answer to the same prompt whatever
//! ran before it? The auditor's question, asked of mistral.rs directly.
//!
//! Loads the GGUF as `conductor/src/inference.rs` does and sends the sample
//! mission's three case prompts in an order that exercises what could
//! change the arithmetic: the first request of a process, the same prompt
//! again (mistral.rs's prefix cache then holds all of it), a prompt that
//! shares a prefix with an earlier one, and all three at once (a batch).
//! Every answer is compared with the first answer to the same prompt by
//! its text and by the log-probability of every token, bit for bit: the
//! log-probabilities show a difference in the arithmetic long before it
//! flips a token.
//!
//! Each prompt's first answer is also printed as a digest, so runs in
//! different processes (other thread counts, prefix cache off, another
//! order) can be compared:
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/conductor/target
//! cargo build --release -p conductor --example determinism
//! $CARGO_TARGET_DIR/release/examples/determinism
//! RAYON_NUM_THREADS=1 $CARGO_TARGET_DIR/release/examples/determinism --order 2,1,0
//! ```

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use mistralrs::core::{MistralRsBuilder, ModelDType};
use mistralrs::{Device, Model, RequestBuilder, TextMessageRole};

#[path = "support/load.rs"]
mod load;
use load::{load_gguf, scheduler};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sample mission's system message and the user messages its agent
/// builds for its first three cases (as `audit log --kind host.infer`
/// shows them).
const SYSTEM: &str =
    "You check housing-support cases. Answer with one word first, ELIGIBLE or INELIGIBLE, then one short reason.";
const CASES: [&str; 3] = [
    "Household of 3. Monthly income 1850, limit 3100: within the limit.\nResidency 26 months, minimum 12: meets the minimum.\nBy the rules the applicant is ELIGIBLE.\nState the verdict and why.",
    "Household of 1. Monthly income 1200, limit 2400: within the limit.\nResidency 40 months, minimum 12: meets the minimum.\nBy the rules the applicant is ELIGIBLE.\nState the verdict and why.",
    "Household of 4. Monthly income 2900, limit 3450: within the limit.\nResidency 18 months, minimum 12: meets the minimum.\nBy the rules the applicant is ELIGIBLE.\nState the verdict and why.",
];

#[derive(Debug, Parser)]
#[command(about = "Same prompt, same answer? Compares greedy answers and their log-probabilities bit for bit")]
struct Args {
    /// The GGUF file.
    #[arg(long, default_value = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: std::path::PathBuf,
    /// Completion tokens asked for (the sample mission's agent asks 48).
    #[arg(long, default_value_t = 48)]
    max_tokens: usize,
    /// A JSON array of user messages to use instead of the three built-in
    /// case prompts (each is sent after the sample mission's system message).
    #[arg(long)]
    prompts: Option<std::path::PathBuf>,
    /// What to send: steps separated by `;`, each a comma-separated list of
    /// prompt numbers sent at once; a step starts when the previous one has
    /// finished. Default: each prompt alone, each again, then all at once.
    #[arg(long)]
    plan: Option<String>,
    /// Turn mistral.rs's prefix cache off in the engine under test (the
    /// reference engine never has one).
    #[arg(long)]
    no_prefix_cache: bool,
    /// Exit 1 if any answer differs from its reference.
    #[arg(long)]
    strict: bool,
}

/// One greedy answer: its text, and each token with its log-probability.
#[derive(Debug, Clone)]
struct Answer {
    text: String,
    tokens: Vec<(String, f32)>,
}

impl Answer {
    /// BLAKE3 of the tokens and the exact bits of their log-probabilities.
    fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for (token, logprob) in &self.tokens {
            hasher.update(token.as_bytes());
            hasher.update(&[0]);
            hasher.update(&logprob.to_bits().to_le_bytes());
        }
        hasher.finalize().to_hex()[..16].to_owned()
    }
}

async fn ask(model: &Model, prompt: &str, max_tokens: usize) -> Result<Answer> {
    // As inference.rs builds it, asking for log-probabilities as well.
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

/// How `answer` compares with `reference`: same text, log-probabilities
/// equal bit for bit, the largest difference before the tokens part, and
/// the first token that differs.
fn compare(reference: &Answer, answer: &Answer) -> (bool, bool, f32, Option<usize>) {
    let same_text = reference.text == answer.text;
    let bit_equal = reference.tokens.len() == answer.tokens.len()
        && reference.tokens.iter().zip(&answer.tokens).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
    let max_delta = reference
        .tokens
        .iter()
        .zip(&answer.tokens)
        .take_while(|(a, b)| a.0 == b.0)
        .map(|(a, b)| (a.1 - b.1).abs())
        .fold(0f32, f32::max);
    let diverges = reference.tokens.iter().zip(&answer.tokens).position(|(a, b)| a.0 != b.0);
    (same_text, bit_equal, max_delta, diverges)
}

/// The default plan: each prompt alone, each again (its whole prompt is
/// then in the prefix cache), then all at once.
fn default_plan(n: usize) -> Vec<Vec<usize>> {
    let alone = (0..n).map(|i| vec![i]);
    alone.clone().chain(alone).chain(std::iter::once((0..n).collect())).collect()
}

fn parse_plan(text: &str, n: usize) -> Result<Vec<Vec<usize>>> {
    text.split(';')
        .map(|step| {
            step.split(',')
                .map(|p| {
                    let i: usize = p.trim().parse().with_context(|| format!("--plan: {p:?} is not a prompt number"))?;
                    anyhow::ensure!(i < n, "--plan: prompt {i} does not exist (there are {n})");
                    Ok(i)
                })
                .collect()
        })
        .collect()
}

async fn engine(path: &std::path::Path, prefix_cache: bool) -> Result<Arc<Model>> {
    let dir = path.parent().context("model path has no directory")?.to_string_lossy().into_owned();
    let file = path.file_name().context("model path has no file name")?.to_string_lossy().into_owned();
    let pipeline = tokio::task::spawn_blocking(move || load_gguf(dir, file, &Device::Cpu, &ModelDType::F32)).await??;
    Ok(Arc::new(Model::new(
        MistralRsBuilder::new(pipeline, scheduler(64), false, None).with_no_prefix_cache(!prefix_cache).build().await,
    )))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let prompts: Vec<String> = match &args.prompts {
        Some(file) => serde_json::from_slice(&std::fs::read(file).with_context(|| format!("{}", file.display()))?)
            .with_context(|| format!("{}: expected a JSON array of strings", file.display()))?,
        None => CASES.iter().map(|c| (*c).to_owned()).collect(),
    };
    let plan = match &args.plan {
        Some(text) => parse_plan(text, prompts.len())?,
        None => default_plan(prompts.len()),
    };
    let path = std::fs::canonicalize(&args.model).with_context(|| format!("{}", args.model.display()))?;

    // The reference: every prompt alone, in a fresh engine without a
    // prefix cache, so nothing that ran before can touch it.
    let reference_engine = engine(&path, false).await?;
    let mut reference = Vec::with_capacity(prompts.len());
    for prompt in &prompts {
        reference.push(ask(&reference_engine, prompt, args.max_tokens).await?);
    }
    drop(reference_engine);

    let model = engine(&path, !args.no_prefix_cache).await?;
    eprintln!(
        "engine under test: prefix cache {}, RAYON_NUM_THREADS={:?}",
        if args.no_prefix_cache { "off" } else { "on" },
        std::env::var("RAYON_NUM_THREADS").ok()
    );
    println!("| step | prompt | sent | tokens | same text | log-probs bit-equal | max abs diff | first differing token |");
    println!("|---:|---:|---|---:|---|---|---:|---:|");
    let (mut answers, mut differing) = (0, 0);
    for (step, group) in plan.iter().enumerate() {
        let tasks: Vec<_> = group
            .iter()
            .map(|&i| {
                let (model, prompt, max) = (model.clone(), prompts[i].clone(), args.max_tokens);
                tokio::spawn(async move { ask(&model, &prompt, max).await })
            })
            .collect();
        for (&i, task) in group.iter().zip(tasks) {
            let answer = task.await??;
            let (same_text, bit_equal, max_delta, diverges) = compare(&reference[i], &answer);
            answers += 1;
            if !(same_text && bit_equal) {
                differing += 1;
            }
            println!(
                "| {} | {i} | {} | {} | {} | {} | {max_delta:.2e} | {} |",
                step + 1,
                if group.len() == 1 { "alone".to_owned() } else { format!("{} at once", group.len()) },
                answer.tokens.len(),
                if same_text { "yes" } else { "NO" },
                if bit_equal { "yes" } else { "NO" },
                diverges.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            );
            if !same_text {
                println!("|  |  | reference: {:?} |  |  |  |  |  |", reference[i].text);
                println!("|  |  | this run:  {:?} |  |  |  |  |  |", answer.text);
            }
        }
    }
    for (i, answer) in reference.iter().enumerate() {
        eprintln!("prompt {i}: reference digest {} {:?}", answer.digest(), answer.text);
    }
    println!("{differing} of {answers} answers differ from the same prompt answered alone without a prefix cache");
    if args.strict && differing > 0 {
        std::process::exit(1);
    }
    Ok(())
}

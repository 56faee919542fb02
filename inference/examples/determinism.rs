//! Does greedy inference give the same answer to the same prompt whatever
//! ran before it? The auditor's question, asked of mistral.rs directly.
//!
//! Loads the GGUF as `inference/src/lib.rs` does, answers each of
//! six of the sample mission's case prompts alone in a fresh engine without
//! a prefix cache (the reference), then sends them to a second engine
//! following a plan that exercises what could change the arithmetic: the
//! first request, the same prompt again (the prefix cache then holds all of
//! it), prompts that reuse different lengths of an earlier one, and several
//! at once (a batch, of one length or several). Every answer is compared
//! with its reference by its text and by the log-probability of every
//! token, bit for bit: the log-probabilities show a difference in the
//! arithmetic long before it flips a token. `tests/determinism.rs` runs the
//! same checks.
//!
//! The references' digests go to stderr, so runs in different processes
//! (other thread counts, for one) can be compared too. `MISTRALRS_DEBUG=1`
//! logs the engine's steps (the lengths in each prompt and decode batch).
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/conductor/target
//! cargo build --release -p conductor --example determinism
//! $CARGO_TARGET_DIR/release/examples/determinism
//! $CARGO_TARGET_DIR/release/examples/determinism --plan "0;1,2;0,1,2,3,4,5"
//! RAYON_NUM_THREADS=1 $CARGO_TARGET_DIR/release/examples/determinism
//! ```

use anyhow::{Context, Result};
use clap::Parser;

#[path = "support/load.rs"]
mod load;
#[path = "support/probe.rs"]
mod probe;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Same prompt, same answer? Compares greedy answers and their log-probabilities bit for bit")]
struct Args {
    /// The GGUF file.
    #[arg(long, default_value = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: std::path::PathBuf,
    /// Completion tokens asked for (the sample mission's agent asks 48).
    #[arg(long, default_value_t = 48)]
    max_tokens: usize,
    /// A JSON array of user messages to use instead of the six built-in
    /// case prompts (each is sent after the sample mission's system message).
    #[arg(long)]
    prompts: Option<std::path::PathBuf>,
    /// What to send: steps separated by `;`, each a comma-separated list of
    /// prompt numbers sent at once; a step starts when the previous one has
    /// finished. Default: the first prompt alone, the others at once, then
    /// each alone again, then all at once.
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

fn default_plan(n: usize) -> Vec<Vec<usize>> {
    let mut plan = vec![vec![0], (1..n).collect()];
    plan.extend((0..n).map(|i| vec![i]));
    plan.push((0..n).collect());
    plan
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if std::env::var("MISTRALRS_DEBUG").is_ok_and(|v| v.contains('1')) {
        mistralrs::core::initialize_logging();
    }
    let prompts: Vec<String> = match &args.prompts {
        Some(file) => serde_json::from_slice(&std::fs::read(file).with_context(|| format!("{}", file.display()))?)
            .with_context(|| format!("{}: expected a JSON array of strings", file.display()))?,
        None => probe::CASES.iter().map(|c| (*c).to_owned()).collect(),
    };
    anyhow::ensure!(!prompts.is_empty(), "no prompts");
    let plan = match &args.plan {
        Some(text) => probe::parse_plan(text, prompts.len())?,
        None => default_plan(prompts.len()),
    };
    let path = std::fs::canonicalize(&args.model).with_context(|| {
        format!(
            "model file {}: run from the repository root after `cargo xtask setup`, or pass --model",
            args.model.display()
        )
    })?;

    let reference = probe::references(&path, &prompts, args.max_tokens).await?;
    let model = probe::engine(&path, !args.no_prefix_cache).await?;
    eprintln!(
        "engine under test: prefix cache {}, RAYON_NUM_THREADS={:?}",
        if args.no_prefix_cache { "off" } else { "on" },
        std::env::var("RAYON_NUM_THREADS").ok()
    );
    let answers = probe::run_plan(&model, &prompts, &plan, args.max_tokens).await?;

    println!(
        "| step | prompt | sent | tokens | same text | log-probs bit-equal | max abs diff | first differing token |"
    );
    println!("|---:|---:|---|---:|---|---|---:|---:|");
    let mut differing = 0;
    for (step, i, at_once, answer) in &answers {
        let c = answer.compare(&reference[*i]);
        if !(c.same_text && c.bit_equal) {
            differing += 1;
        }
        println!(
            "| {} | {i} | {} | {} | {} | {} | {:.2e} | {} |",
            step + 1,
            if *at_once == 1 { "alone".to_owned() } else { format!("{at_once} at once") },
            answer.tokens.len(),
            if c.same_text { "yes" } else { "NO" },
            if c.bit_equal { "yes" } else { "NO" },
            c.max_delta,
            c.first_differing_token.map_or_else(|| "-".to_owned(), |t| t.to_string()),
        );
        if !c.same_text {
            println!("|  |  | reference: {:?} |  |  |  |  |  |", reference[*i].text);
            println!("|  |  | this run:  {:?} |  |  |  |  |  |", answer.text);
        }
    }
    for (i, answer) in reference.iter().enumerate() {
        eprintln!("prompt {i}: reference digest {} {:?}", answer.digest(), answer.text);
    }
    println!(
        "{differing} of {} answers differ from the same prompt answered alone without a prefix cache",
        answers.len()
    );
    if args.strict && differing > 0 {
        std::process::exit(1);
    }
    Ok(())
}

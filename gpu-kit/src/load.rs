//! A load generator for the conductor's gateway (`conductor serve`, `POST
//! /v1/chat/completions`): the product's own path (HTTP, the key's
//! metering and journal, the router, mission.rs), so what it measures is
//! what a client gets. Std only: one OS thread per connection, each with
//! one keep-alive HTTP/1.1 connection.
//!
//! `load` runs each concurrency level in turn and prints one JSON object
//! per level: requests, completion tokens, wall seconds, aggregate and
//! per-stream decode tokens/s, and latency percentiles. `compare` sends the
//! same greedy prompts to two models and reports how far their answers
//! agree.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gpu_kit::http::Conn;
use serde_json::{Value, json};

/// How long a request may take: an 8B model's first request at 128
/// concurrent streams waits behind the others' prompts.
const REQUEST_WAIT: Duration = Duration::from_secs(600);

/// Prompts of different lengths, so a batch mixes sequence lengths (what
/// paged attention is for on the GPU).
const PROMPTS: &[&str] = &[
    "Is the applicant eligible?",
    "Summarise the claim in one sentence: water damage to a kitchen ceiling after a storm.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle. Describe the storm, the \
     bottle and his feelings.",
    "List three risks of approving a benefit claim without a proof of address, and say which is the worst \
     and why, in plain words for a case worker who is new to the team.",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The gateway, host:port (`conductor serve` prints it).
    #[arg(long)]
    pub addr: String,
    /// A gateway client key (`conductor gateway issue`).
    #[arg(long, env = "GPU_KIT_KEY")]
    pub key: String,
    /// The registry model to call.
    #[arg(long)]
    pub model: String,
    /// Concurrent connections, one level after another.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32, 128])]
    pub concurrency: Vec<usize>,
    /// Requests per connection at each level (the first level's first
    /// request is a warm-up, not counted).
    #[arg(long, default_value_t = 2)]
    pub requests: usize,
    /// Completion tokens asked for per request.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[arg(long)]
    pub addr: String,
    #[arg(long, env = "GPU_KIT_KEY")]
    pub key: String,
    /// The reference model (e.g. the file on the CPU).
    #[arg(long)]
    pub reference: String,
    /// The model checked against it (the same file on the GPU).
    #[arg(long)]
    pub candidate: String,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,
    /// Agreement asked for: each prompt's two answers must share at least
    /// this many leading characters (or be equal).
    #[arg(long, default_value_t = 16)]
    pub min_prefix_chars: usize,
}

struct Answer {
    text: String,
    completion_tokens: u64,
    latency: Duration,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.requests > 0, "--requests must be at least 1");
    // Warm-up: the model loads (and the KV cache is sized) on first use.
    let mut warm = Conn::with_read_timeout(&args.addr, REQUEST_WAIT);
    chat(&mut warm, &args.key, &args.model, PROMPTS[0], args.max_tokens).context("warm-up request")?;
    for &c in &args.concurrency {
        ensure!(c > 0, "a concurrency of 0");
        let started = Instant::now();
        let results: Vec<Result<Vec<Answer>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..c)
                .map(|i| {
                    scope.spawn(move || {
                        let mut conn = Conn::with_read_timeout(&args.addr, REQUEST_WAIT);
                        (0..args.requests)
                            .map(|r| {
                                let prompt = PROMPTS[(i + r) % PROMPTS.len()];
                                chat(&mut conn, &args.key, &args.model, prompt, args.max_tokens)
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked"))))
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        let answers: Vec<Answer> = results.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
        let tokens: u64 = answers.iter().map(|a| a.completion_tokens).sum();
        let mut latencies: Vec<f64> = answers.iter().map(|a| a.latency.as_secs_f64()).collect();
        latencies.sort_by(f64::total_cmp);
        let per_stream: Vec<f64> =
            answers.iter().map(|a| a.completion_tokens as f64 / a.latency.as_secs_f64().max(1e-9)).collect();
        println!(
            "{}",
            json!({
                "model": args.model,
                "concurrency": c,
                "requests": answers.len(),
                "completion_tokens": tokens,
                "wall_s": round(wall),
                "aggregate_tok_s": round(tokens as f64 / wall),
                "mean_stream_tok_s": round(per_stream.iter().sum::<f64>() / per_stream.len().max(1) as f64),
                "latency_p50_s": round(percentile(&latencies, 0.50)),
                "latency_p99_s": round(percentile(&latencies, 0.99)),
            })
        );
    }
    Ok(())
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let mut conn = Conn::with_read_timeout(&args.addr, REQUEST_WAIT);
    let mut agreed = 0;
    for prompt in PROMPTS {
        let a = chat(&mut conn, &args.key, &args.reference, prompt, args.max_tokens)?;
        let b = chat(&mut conn, &args.key, &args.candidate, prompt, args.max_tokens)?;
        let prefix = a.text.chars().zip(b.text.chars()).take_while(|(x, y)| x == y).count();
        let ok = a.text == b.text || prefix >= args.min_prefix_chars;
        agreed += usize::from(ok);
        println!(
            "{}",
            json!({"prompt": prompt, "reference": a.text, "candidate": b.text, "equal": a.text == b.text,
                   "common_prefix_chars": prefix, "agree": ok})
        );
    }
    println!("{}", json!({"prompts": PROMPTS.len(), "agreed": agreed, "min_prefix_chars": args.min_prefix_chars}));
    if agreed < PROMPTS.len() {
        bail!("{} of {} prompts disagree beyond the tolerance", PROMPTS.len() - agreed, PROMPTS.len());
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn chat(conn: &mut Conn, key: &str, model: &str, prompt: &str, max_tokens: u32) -> Result<Answer> {
    let body = json!({"model": model, "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": prompt}]})
    .to_string();
    let started = Instant::now();
    let (status, response) = conn.post("/v1/chat/completions", key, body.as_bytes())?;
    let latency = started.elapsed();
    let v: Value = serde_json::from_slice(&response).context("the gateway's answer is not JSON")?;
    if status != 200 {
        bail!("the gateway answered {status} for model `{model}`: {v}");
    }
    let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().context("no usage.completion_tokens")?;
    Ok(Answer { text, completion_tokens, latency })
}

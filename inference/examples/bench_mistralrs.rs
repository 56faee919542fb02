//! mistral.rs called directly: the baseline for `cargo xtask bench-inference`.
//!
//! Loads the GGUF exactly as `inference/src/lib.rs` does (GGUF loader,
//! f32 activations on the CPU, the default scheduler with a fixed batch of
//! 64, a deterministic sampler, mimalloc as the global allocator), sends the
//! same greedy chat request `--warmup` times untimed and `--requests` times
//! timed, one at a time, and prints per-request wall time with mistral.rs's
//! own prompt/decode timings. With `--concurrent K` it then sends K requests
//! at once (mistral.rs batches them) and compares each answer with the
//! sequential one.
//!
//! Knobs that inference.rs does not set are here to measure them:
//! `--dtype` (activation dtype), `--batch` (scheduler batch size),
//! `--no-prefix-cache`, and any environment variable the conductor could
//! set at start-up (`RAYON_NUM_THREADS`, `CANDLE_DEQUANTIZE_ALL`, ...).
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/conductor/target
//! cargo build --release -p conductor --example bench_mistralrs
//! $CARGO_TARGET_DIR/release/examples/bench_mistralrs --requests 5 --concurrent 8
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use mistralrs::core::{MistralRsBuilder, ModelDType};
use mistralrs::{Device, Model, RequestBuilder, TextMessageRole, TextMessages};
use serde_json::json;

#[path = "support/load.rs"]
mod load;
use load::{load_gguf, scheduler};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark prompt: with SmolLM2's chat template (which adds its
/// default system message) it renders to 56 prompt tokens, and greedy
/// decoding does not stop before 56 completion tokens.
pub const PROMPT: &str = "Write a short story about a lighthouse keeper who finds a message in a bottle. \
                          Describe the storm, the bottle and his feelings.";

#[derive(Debug, Parser)]
#[command(about = "mistral.rs called directly, loaded as the conductor loads it")]
struct Args {
    /// The GGUF file.
    #[arg(long, default_value = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: std::path::PathBuf,
    /// The user message.
    #[arg(long, default_value = PROMPT)]
    prompt: String,
    /// Completion tokens asked for (max_len).
    #[arg(long, default_value_t = 56)]
    max_tokens: usize,
    /// Untimed requests first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed requests, one at a time.
    #[arg(long, default_value_t = 5)]
    requests: usize,
    /// Then this many requests at once (0: none); each answer is compared
    /// with the sequential one.
    #[arg(long, default_value_t = 0)]
    concurrent: usize,
    /// Activation dtype: f32 (what inference.rs uses), f16, bf16 or auto.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// The scheduler's fixed batch size (inference.rs: 64).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Turn mistral.rs's prefix cache off (inference.rs leaves it on).
    #[arg(long)]
    no_prefix_cache: bool,
    /// Make each request's prompt distinct and of a different length (a
    /// request number and 0-3 filler sentences in front), as a mission's
    /// cases are. Distinct prompts batched is what exposed mistral.rs
    /// 0.8.1's batched CPU attention bug (fixed in vendor/mistralrs-core);
    /// different lengths at once are what the router's cohorts avoid.
    #[arg(long)]
    distinct: bool,
    /// Print one JSON summary on stdout (human lines go to stderr).
    #[arg(long)]
    json: bool,
}

/// One finished request.
#[derive(Debug, Clone)]
struct Sample {
    text: String,
    prompt_tokens: usize,
    completion_tokens: usize,
    wall_s: f64,
    prompt_s: f64,
    decode_s: f64,
    finish_reason: String,
}

impl Sample {
    /// Tokens per second of the decode phase: the first completion token
    /// comes out of the prompt step, the other n-1 are decode steps (the
    /// same convention as llama.cpp's "eval time ... runs").
    fn decode_tok_s(&self) -> f64 {
        if self.decode_s > 0.0 { self.completion_tokens.saturating_sub(1) as f64 / self.decode_s } else { 0.0 }
    }
}

fn dtype(name: &str) -> Result<ModelDType> {
    Ok(match name {
        "f32" => ModelDType::F32,
        "f16" => ModelDType::F16,
        "bf16" => ModelDType::BF16,
        "auto" => ModelDType::Auto,
        other => anyhow::bail!("--dtype {other}: expected f32, f16, bf16 or auto"),
    })
}

fn prompt_for(args: &Args, i: usize) -> String {
    if args.distinct {
        format!("{}Request {i}. {}", "Please. ".repeat(i % 4), args.prompt)
    } else {
        args.prompt.clone()
    }
}

async fn one(model: &Model, prompt: &str, max_tokens: usize) -> Result<Sample> {
    // As inference.rs builds it: the deterministic sampler first, then the
    // length limit (the sampler replaces every sampling parameter).
    let request = RequestBuilder::new()
        .set_deterministic_sampler()
        .set_sampler_max_len(max_tokens)
        .add_message(TextMessageRole::User, prompt);
    let start = Instant::now();
    let response = model.send_chat_request(request).await?;
    let wall_s = start.elapsed().as_secs_f64();
    let choice = response.choices.first().context("no choice in the response")?;
    Ok(Sample {
        text: choice.message.content.clone().unwrap_or_default(),
        prompt_tokens: response.usage.prompt_tokens,
        completion_tokens: response.usage.completion_tokens,
        wall_s,
        prompt_s: f64::from(response.usage.total_prompt_time_sec),
        decode_s: f64::from(response.usage.total_completion_time_sec),
        finish_reason: choice.finish_reason.clone(),
    })
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which is in parentheses).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let path = std::fs::canonicalize(&args.model).with_context(|| format!("{}", args.model.display()))?;
    let dir = path.parent().context("model path has no directory")?.to_string_lossy().into_owned();
    let file = path.file_name().context("model path has no file name")?.to_string_lossy().into_owned();
    let dtype_name = args.dtype.clone();
    let model_dtype = dtype(&dtype_name)?;

    let load_start = Instant::now();
    let pipeline = tokio::task::spawn_blocking(move || load_gguf(dir, file, &Device::Cpu, &model_dtype)).await??;
    let model = Model::new(
        MistralRsBuilder::new(pipeline, scheduler(args.batch), false, None)
            .with_no_prefix_cache(args.no_prefix_cache)
            .build()
            .await,
    );
    let load_s = load_start.elapsed().as_secs_f64();
    let rendered = model
        .tokenize(
            either::Either::Left(TextMessages::new().add_message(TextMessageRole::User, &args.prompt)),
            None,
            true,
            true,
            None,
        )
        .await?
        .len();
    eprintln!(
        "loaded {} in {load_s:.2} s (dtype {dtype_name}, batch {}, prefix cache {}); prompt renders to {rendered} tokens; RAYON_NUM_THREADS={:?} CANDLE_DEQUANTIZE_ALL={:?}",
        path.display(),
        args.batch,
        if args.no_prefix_cache { "off" } else { "on" },
        std::env::var("RAYON_NUM_THREADS").ok(),
        std::env::var("CANDLE_DEQUANTIZE_ALL").ok(),
    );

    for i in 0..args.warmup {
        let s = one(&model, &prompt_for(&args, 1000 + i), args.max_tokens).await?;
        eprintln!("warm-up {i}: {:.3} s, {} + {} tokens", s.wall_s, s.prompt_tokens, s.completion_tokens);
    }

    let load_before = load_average();
    let cpu_before = cpu_seconds();
    let seq_start = Instant::now();
    let mut sequential = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let s = one(&model, &prompt_for(&args, i), args.max_tokens).await?;
        eprintln!(
            "request {i}: wall {:.3} s, prompt {} tok in {:.3} s, completion {} tok in {:.3} s ({:.1} decode tok/s), finish {}",
            s.wall_s,
            s.prompt_tokens,
            s.prompt_s,
            s.completion_tokens,
            s.decode_s,
            s.decode_tok_s(),
            s.finish_reason
        );
        sequential.push(s);
    }
    let seq_wall = seq_start.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds() - cpu_before;
    if let Some(first) = sequential.first() {
        eprintln!("text: {:?}", first.text);
        for (i, s) in sequential.iter().enumerate().skip(1) {
            if !args.distinct && s.text != first.text {
                eprintln!("note: sequential request {i} differs from request 0");
            }
        }
    }
    let seq_completion: usize = sequential.iter().map(|s| s.completion_tokens).sum();
    let summary_seq = json!({
        "requests": sequential.len(),
        "prompt_tokens": mean(sequential.iter().map(|s| s.prompt_tokens as f64)),
        "completion_tokens": mean(sequential.iter().map(|s| s.completion_tokens as f64)),
        "wall_s_per_request": mean(sequential.iter().map(|s| s.wall_s)),
        "prompt_s": mean(sequential.iter().map(|s| s.prompt_s)),
        "decode_s": mean(sequential.iter().map(|s| s.decode_s)),
        "decode_tok_s": mean(sequential.iter().map(Sample::decode_tok_s)),
        "aggregate_tok_s": seq_completion as f64 / seq_wall,
        "cpu_cores_used": cpu_used / seq_wall,
        "load_before": load_before,
        "load_after": load_average(),
    });
    eprintln!(
        "sequential: {:.3} s/request, {:.1} decode tok/s, {:.2} cores busy",
        summary_seq["wall_s_per_request"].as_f64().unwrap_or(0.0),
        summary_seq["decode_tok_s"].as_f64().unwrap_or(0.0),
        summary_seq["cpu_cores_used"].as_f64().unwrap_or(0.0),
    );

    let mut summary_conc = serde_json::Value::Null;
    if args.concurrent > 0 {
        // The reference answers: request i alone (the same prompt as the
        // sequential run when not --distinct).
        let mut reference = Vec::with_capacity(args.concurrent);
        for i in 0..args.concurrent {
            if args.distinct && i >= sequential.len() {
                reference.push(one(&model, &prompt_for(&args, i), args.max_tokens).await?.text);
            } else {
                reference.push(sequential.get(i).or(sequential.first()).map(|s| s.text.clone()).unwrap_or_default());
            }
        }
        let model = Arc::new(model);
        let load_before = load_average();
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        let tasks: Vec<_> = (0..args.concurrent)
            .map(|i| {
                let (model, prompt, max) = (model.clone(), prompt_for(&args, i), args.max_tokens);
                tokio::spawn(async move { one(&model, &prompt, max).await })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await?);
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu_used = cpu_seconds() - cpu_before;
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(s) => ok.push((i, s)),
                Err(e) => errors.push(format!("request {i}: {e}")),
            }
        }
        let mismatches: Vec<usize> = ok.iter().filter(|(i, s)| s.text != reference[*i]).map(|(i, _)| *i).collect();
        for (i, s) in &ok {
            if mismatches.contains(i) {
                eprintln!("concurrent {i} MISMATCH ({} tok): {:?}", s.completion_tokens, s.text);
            }
        }
        for e in &errors {
            eprintln!("concurrent error: {e}");
        }
        let completion: usize = ok.iter().map(|(_, s)| s.completion_tokens).sum();
        summary_conc = json!({
            "concurrent": args.concurrent,
            "wall_s": wall,
            "wall_s_per_request": mean(ok.iter().map(|(_, s)| s.wall_s)),
            "prompt_tokens": mean(ok.iter().map(|(_, s)| s.prompt_tokens as f64)),
            "completion_tokens": mean(ok.iter().map(|(_, s)| s.completion_tokens as f64)),
            "decode_tok_s": mean(ok.iter().map(|(_, s)| s.decode_tok_s())),
            "aggregate_tok_s": completion as f64 / wall,
            "cpu_cores_used": cpu_used / wall,
            "mismatches": mismatches.len(),
            "errors": errors.len(),
            "load_before": load_before,
            "load_after": load_average(),
        });
        eprintln!(
            "concurrent {}: {wall:.2} s wall, {:.1} aggregate tok/s, {} of {} answers differ from the sequential one, {} errors",
            args.concurrent,
            completion as f64 / wall,
            mismatches.len(),
            args.concurrent,
            errors.len()
        );
    }

    if args.json {
        println!(
            "{}",
            json!({
                "engine": "mistral.rs direct",
                "dtype": dtype_name,
                "batch": args.batch,
                "prefix_cache": !args.no_prefix_cache,
                "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
                "rendered_prompt_tokens": rendered,
                "load_s": load_s,
                "text": sequential.first().map(|s| s.text.clone()),
                "sequential": summary_seq,
                "concurrent": summary_conc,
            })
        );
    }
    Ok(())
}

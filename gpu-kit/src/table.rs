//! The device script's one table: each model's measured decode rates
//! beside its memory-bandwidth roofline, then the parity check and the
//! sample mission, from the JSON files the script's steps wrote.
//!
//! Files read from the results directory (each optional except `load-*`):
//! `bandwidth.json` (`gpu-kit bandwidth`), `weights-MODEL.json` (`gpu-kit
//! weights`), `load-MODEL.jsonl` (`gpu-kit load`), `parity.jsonl` (`gpu-kit
//! compare`), `mission.txt` (the script's summary of the sample mission).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory the script wrote its results to.
    pub dir: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    print!("{}", render(&args.dir)?);
    Ok(())
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: not JSON: {l}", path.display())))
        .collect()
}

pub fn render(dir: &Path) -> Result<String> {
    let bandwidth = read_json(&dir.join("bandwidth.json"));
    let gbps = bandwidth.as_ref().and_then(|b| b["gb_per_s"].as_f64());
    let mut out = String::new();
    match &bandwidth {
        Some(b) => writeln!(out, "GPU: {}; device-to-device copy {} GB/s (read + written)\n", b["gpu"], b["gb_per_s"])?,
        None => writeln!(out, "No GPU bandwidth measured (CPU mode): the roofline columns are empty.\n")?,
    }
    writeln!(
        out,
        "| model | weights read per token | concurrency | decode tok/s (aggregate) | per stream | roofline tok/s | of roofline | p50 / p99 latency |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|")?;
    let mut loads: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("load-") && n.ends_with(".jsonl"))
        })
        .collect();
    loads.sort();
    for path in &loads {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().trim_start_matches("load-").to_owned();
        let per_token =
            read_json(&dir.join(format!("weights-{name}.json"))).and_then(|w| w["bytes_per_token"].as_u64());
        for level in read_lines(path)? {
            let c = level["concurrency"].as_u64().unwrap_or(0);
            let aggregate = level["aggregate_tok_s"].as_f64().unwrap_or(0.0);
            let roofline = match (gbps, per_token) {
                (Some(gbps), Some(bytes)) if bytes > 0 => Some(gbps * 1e9 / bytes as f64 * c as f64),
                _ => None,
            };
            writeln!(
                out,
                "| {name} | {} | {c} | {aggregate:.1} | {:.1} | {} | {} | {:.2} / {:.2} s |",
                per_token.map_or("?".into(), |b| format!("{:.2} GB", b as f64 / 1e9)),
                level["mean_stream_tok_s"].as_f64().unwrap_or(0.0),
                roofline.map_or("–".into(), |r| format!("{r:.0}")),
                roofline.map_or("–".into(), |r| format!("{:.0}%", 100.0 * aggregate / r)),
                level["latency_p50_s"].as_f64().unwrap_or(0.0),
                level["latency_p99_s"].as_f64().unwrap_or(0.0),
            )?;
        }
    }
    writeln!(
        out,
        "\nRoofline: a step reads every weight but the embedding table once, whatever the batch, so C streams cannot exceed C × bandwidth / weight bytes tokens/s (the KV cache's reads and compute lower it further)."
    )?;
    if let Ok(parity) = read_lines(&dir.join("parity.jsonl")) {
        writeln!(out, "\nParity (same file, same greedy prompts, GPU against CPU):\n")?;
        writeln!(out, "| prompt | equal | common prefix (chars) | agree |")?;
        writeln!(out, "|---|---|---:|---|")?;
        for p in parity.iter().filter(|p| p.get("prompt").is_some()) {
            let prompt: String = p["prompt"].as_str().unwrap_or_default().chars().take(40).collect();
            writeln!(out, "| {prompt}… | {} | {} | {} |", p["equal"], p["common_prefix_chars"], p["agree"])?;
        }
        if let Some(s) = parity.iter().find(|p| p.get("agreed").is_some()) {
            writeln!(
                out,
                "\n{} of {} prompts agree (tolerance: equal, or a common prefix of at least {} characters).",
                s["agreed"], s["prompts"], s["min_prefix_chars"]
            )?;
        }
    }
    if let Ok(mission) = std::fs::read_to_string(dir.join("mission.txt")) {
        writeln!(out, "\nSample mission through the conductor: {}", mission.trim())?;
    }
    Ok(out)
}

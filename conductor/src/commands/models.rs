//! `conductor models`: what the model registry holds, and whether each
//! model can run on this host, found the way a mission finds it (the file's
//! hash, then the model loaded on its device).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use inference::Router;
use models::{Models, Registry};
use serde_json::json;

use crate::exit;
use crate::stdout::{errln, outln};

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Load each model as a mission would (hash check, then the model on
    /// its device) and report which can run on this host. A GPU model on a
    /// host whose GPU cannot run it (no driver, no GPU, too old a GPU, a
    /// CUDA library missing, too little free memory, a tensor type without
    /// a CUDA kernel) is reported with that cause; the other models are
    /// checked all the same.
    #[command(after_help = "Examples:\n  \
        conductor models check\n  \
        conductor models check --models gpu-models.yaml llama-1b-cuda --json\n\n\
        Exit status 7: at least one model cannot run here (each is listed with the reason).")]
    Check {
        /// Models to check (default: every local model in the registry).
        names: Vec<String>,
        /// A model registry file to use instead of the embedded one.
        #[arg(long, value_name = "FILE", env = "CONDUCTOR_MODELS")]
        models: Option<PathBuf>,
        /// Directory the embedded model registry resolves model files in.
        #[arg(long, value_name = "DIR", env = "CONDUCTOR_MODEL_DIR", default_value = ".cache/models")]
        model_dir: PathBuf,
        /// Refuse a registry naming any frontier (off-host) model.
        #[arg(long, env = "CONDUCTOR_AIR_GAP")]
        air_gap: bool,
        /// One JSON array, one object per model.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn command(command: ModelsCommand) -> Result<u8> {
    match command {
        ModelsCommand::Check { names, models, model_dir, air_gap, json } => {
            let registry = match &models {
                Some(path) => Registry::from_file(path, air_gap)?,
                None => Registry::embedded(&model_dir)?,
            };
            check(registry, names, json)
        }
    }
}

fn check(registry: Registry, names: Vec<String>, json: bool) -> Result<u8> {
    let names = if names.is_empty() {
        registry.models().filter(|spec| is_local(spec)).map(|spec| spec.name.clone()).collect()
    } else {
        for name in &names {
            registry.get(name)?;
        }
        names
    };
    let router = Router::new(registry);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let mut rows = Vec::new();
    let mut failed = 0;
    for name in &names {
        let spec = router.registry().get(name)?.clone();
        if !json {
            errln!("checking {name} ({})…", device_name(&spec));
        }
        let started = Instant::now();
        let outcome = runtime.block_on(router.prepare(name));
        let seconds = started.elapsed().as_secs_f64();
        if outcome.is_err() {
            failed += 1;
        }
        rows.push((name.clone(), device_name(&spec), seconds, outcome.map_err(|e| format!("{e}"))));
    }
    runtime.shutdown_background();
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, device, seconds, outcome)| {
                json!({
                    "model": name,
                    "device": device,
                    "ok": outcome.is_ok(),
                    "load_seconds": (seconds * 1000.0).round() / 1000.0,
                    "error": outcome.as_ref().err(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?)?;
    } else {
        outln!("{:<24} {:<8} {:>8}  result", "model", "device", "load")?;
        for (name, device, seconds, outcome) in &rows {
            match outcome {
                Ok(()) => outln!("{name:<24} {device:<8} {:>7.2}s  ready", seconds)?,
                Err(reason) => outln!("{name:<24} {device:<8} {:>8}  cannot run here: {reason}", "-")?,
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::INFRASTRUCTURE })
}

fn is_local(spec: &models::ModelSpec) -> bool {
    spec.frontier.is_none() && spec.scripted.is_none()
}

fn device_name(spec: &models::ModelSpec) -> &'static str {
    if spec.frontier.is_some() {
        "frontier"
    } else if spec.scripted.is_some() {
        "scripted"
    } else {
        match spec.device {
            models::Device::Cpu => "cpu",
            models::Device::Cuda => "cuda",
        }
    }
}

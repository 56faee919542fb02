//! `conductor cases add`: cases for an open mission, from files.
//!
//! The cases are durable before this returns. While `conductor serve`
//! holds the data directory the command runs in the server (`local.rs`),
//! and the open mission takes them at once; otherwise they run when the
//! mission next runs under `conductor serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use engine::data::DataDir;
use engine::entries::Requester;
use engine::intake::{self, NewCase, NewDocument, Refusal};
use serde_json::Value;

use crate::cli::DataArg;
use crate::exit;
use crate::stdout::{errln, outln};

#[derive(Debug, Subcommand)]
pub(crate) enum CasesCommand {
    /// Add cases to an open mission (one with `intake:`).
    ///
    /// Each FILE is one case: a JSON object. Its documents, if any, are
    /// the files of a directory beside it with the same name without
    /// `.json` (`claim-7.json` and `claim-7/scan.pdf`), typed by their
    /// extension. A case is acknowledged only once it is durable in the
    /// journal. Each file's name and content make its idempotency key, so
    /// running the same command again after a crash adds nothing twice.
    #[command(after_help = "Examples:\n  conductor cases add MISSION_ID claims/claim-7.json --data ./data\n  \
        conductor cases add MISSION_ID inbox/*.json --data ./data\n\n\
        While `conductor serve` holds the data directory, the server takes the cases at once.\n\n\
        Exit status 8: the mission's queue is full; run the same command again shortly.")]
    Add {
        /// The mission id (`conductor mission list`).
        mission: String,
        /// Case files (JSON objects), at most 1000.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        data: DataArg,
        /// Print the receipts as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn command(command: CasesCommand) -> Result<u8> {
    match command {
        CasesCommand::Add { mission, files, data, json } => add(&mission, &files, &data.data, json),
    }
}

fn add(mission: &str, files: &[PathBuf], data: &Path, json: bool) -> Result<u8> {
    if files.len() > intake::CASES_PER_SUBMISSION_MAX {
        bail!("{} files; add at most {} cases at a time", files.len(), intake::CASES_PER_SUBMISSION_MAX);
    }
    let mut cases = Vec::with_capacity(files.len());
    for file in files {
        cases.push(read_case(file)?);
    }
    let dir = DataDir::open_existing(data)?;
    let by = Requester { via: "cli".into(), role: None, key: None, token: None, name: None };
    let receipts = match intake::receive(&dir, mission, cases, &by)? {
        Ok(receipts) => serde_json::to_value(receipts)?,
        Err(refusal) => return refused(&refusal.to_string(), matches!(refusal, Refusal::QueueFull { .. })),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&receipts)?)?;
    } else {
        for r in receipts.as_array().into_iter().flatten() {
            let how = if r["duplicate"].as_bool() == Some(true) { "already received" } else { "received" };
            outln!("{} -> task {} ({how}, entry {})", r["case"].as_str().unwrap_or("?"), r["task"], r["seq"])?;
        }
    }
    Ok(exit::OK)
}

/// `conductor mission close`.
pub(crate) fn close(mission: &str, data: &Path) -> Result<u8> {
    let dir = DataDir::open_existing(data)?;
    let by = Requester { via: "cli".into(), role: None, key: None, token: None, name: None };
    match intake::control(&dir, mission, intake::Control::Close, &by)? {
        Ok(seq) => {
            outln!("mission {mission} is closed to new cases (entry {seq}); it ends once its cases have run")?;
            Ok(exit::OK)
        }
        Err(refusal) => refused(&refusal.to_string(), false),
    }
}

fn refused(message: &str, busy: bool) -> Result<u8> {
    errln!("refused: {message}");
    Ok(if busy { exit::BUSY } else { exit::INVALID })
}

fn read_case(file: &Path) -> Result<NewCase> {
    let bytes = engine::files::read_regular(file, "case file", missions::MAX_CASE_FILE_BYTES)?;
    let input: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JSON case", file.display()))?;
    let mut key = blake3::Hasher::new();
    key.update(&bytes);
    let mut documents = Vec::new();
    let dir = file.with_extension("");
    if dir.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
            key.update(name.as_bytes());
            key.update(blake3::hash(&bytes).as_bytes());
            documents.push(NewDocument { media_type: intake::media_type_of(&name).to_owned(), name, bytes });
        }
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(NewCase {
        id: None,
        input,
        documents,
        idempotency_key: Some(format!("cli:{name}:{}", &key.finalize().to_hex()[..32])),
    })
}

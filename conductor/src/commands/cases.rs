//! `conductor cases add`: cases for an open mission, from files.
//!
//! With the data directory free, the cases are taken directly (durable
//! before this returns; they run when the mission next runs under
//! `conductor serve`). While a server holds it, they go through that
//! server's API with an API token (`--token` or `CONDUCTOR_TOKEN`), at
//! the address the server left in `DATA/serve.url`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use engine::data::DataDir;
use engine::entries::Requester;
use engine::intake::{self, NewCase, NewDocument, Refusal};
use serde_json::{Value, json};

use crate::cli::DataArg;
use crate::exit;
use crate::stdout::outln;

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
        CONDUCTOR_TOKEN=cdt_... conductor cases add MISSION_ID inbox/*.json --data ./data\n\n\
        Exit status 8: the mission's queue is full; run the same command again shortly.")]
    Add {
        /// The mission id (`conductor mission list`).
        mission: String,
        /// Case files (JSON objects), at most 1000.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the receipts as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How to reach a server that holds the data directory.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// An API token (`conductor tokens issue`), used when a server holds
    /// the data directory.
    #[arg(long, env = "CONDUCTOR_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The server's address; default: the one it wrote to DATA/serve.url.
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
}

pub(crate) fn command(command: CasesCommand) -> Result<u8> {
    match command {
        CasesCommand::Add { mission, files, data, server, json } => add(&mission, &files, &data.data, &server, json),
    }
}

fn add(mission: &str, files: &[PathBuf], data: &Path, server: &ServerArgs, json: bool) -> Result<u8> {
    if files.len() > intake::CASES_PER_SUBMISSION_MAX {
        bail!("{} files; add at most {} cases at a time", files.len(), intake::CASES_PER_SUBMISSION_MAX);
    }
    let mut cases = Vec::with_capacity(files.len());
    for file in files {
        cases.push(read_case(file)?);
    }
    let receipts = match DataDir::open_existing(data) {
        Ok(dir) => {
            let by = Requester { via: "cli".into(), role: None, key: None, token: None, name: None };
            match intake::receive(&dir, mission, cases, &by)? {
                Ok(receipts) => serde_json::to_value(receipts)?,
                Err(refusal) => return refused(&refusal.to_string(), matches!(refusal, Refusal::QueueFull { .. })),
            }
        }
        Err(e) if busy(&e) => match through_server(mission, &cases, data, server)? {
            Ok(receipts) => receipts,
            Err((status, message)) => return refused(&message, status == 429),
        },
        Err(e) => return Err(e),
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

/// `conductor mission close`: directly, or through the server holding
/// the data directory.
pub(crate) fn close(mission: &str, data: &Path, server: &ServerArgs) -> Result<u8> {
    match DataDir::open_existing(data) {
        Ok(dir) => {
            let by = Requester { via: "cli".into(), role: None, key: None, token: None, name: None };
            match intake::control(&dir, mission, intake::Control::Close, &by)? {
                Ok(seq) => {
                    outln!("mission {mission} is closed to new cases (entry {seq}); it ends once its cases have run")?;
                    Ok(exit::OK)
                }
                Err(refusal) => refused(&refusal.to_string(), false),
            }
        }
        Err(e) if busy(&e) => {
            let (status, answer) = post(data, server, &format!("/api/missions/{mission}/close"), &json!({}))?;
            if (200..300).contains(&status) {
                outln!(
                    "mission {mission} is closed to new cases (entry {}); it ends once its cases have run",
                    answer["seq"]
                )?;
                Ok(exit::OK)
            } else {
                refused(&message_of(status, &answer), false)
            }
        }
        Err(e) => Err(e),
    }
}

fn refused(message: &str, busy: bool) -> Result<u8> {
    eprintln!("refused: {message}");
    Ok(if busy { exit::BUSY } else { exit::INVALID })
}

/// Whether opening the data directory failed because a server holds it.
fn busy(error: &anyhow::Error) -> bool {
    error.chain().any(|c| matches!(c.downcast_ref::<ledger::LedgerError>(), Some(ledger::LedgerError::Busy(_))))
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

/// The file `conductor serve` writes its address to while it runs.
use server::serve::SERVE_URL_FILE;

/// Sends the cases to the server holding `data`: the receipts, or the
/// refusal's status and message.
fn through_server(
    mission: &str,
    cases: &[NewCase],
    data: &Path,
    server: &ServerArgs,
) -> Result<std::result::Result<Value, (u16, String)>> {
    use base64::Engine as _;
    let body: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "input": c.input, "idempotency_key": c.idempotency_key,
                "documents": c.documents.iter().map(|d| json!({
                    "name": d.name, "media_type": d.media_type,
                    "content_base64": base64::engine::general_purpose::STANDARD.encode(&d.bytes),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (status, answer) = post(data, server, &format!("/api/missions/{mission}/cases"), &json!({"cases": body}))?;
    if (200..300).contains(&status) {
        return Ok(Ok(answer["cases"].clone()));
    }
    Ok(Err((status, message_of(status, &answer))))
}

fn message_of(status: u16, answer: &Value) -> String {
    answer["error"].as_str().map_or_else(|| format!("the server answered {status}"), str::to_owned)
}

/// POSTs `body` to `path` on the server holding `data`, with the token.
fn post(data: &Path, server: &ServerArgs, path: &str, body: &Value) -> Result<(u16, Value)> {
    let base = match &server.server {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => std::fs::read_to_string(data.join(SERVE_URL_FILE))
            .with_context(|| {
                format!(
                    "{} is held by a server, but it left no address in {SERVE_URL_FILE}; pass --server",
                    data.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    let Some(token) = &server.token else {
        bail!(
            "a server holds {}; go through it with an operator API token: --token or CONDUCTOR_TOKEN \
             (`conductor tokens issue --role operator`)",
            data.display()
        );
    };
    let url = format!("{base}{path}");
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .with_context(|| format!("sending the request to {url}"))?;
    let status = response.status().as_u16();
    let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
    Ok((status, answer))
}

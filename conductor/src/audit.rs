//! The auditor's commands: verify a data directory or an export, export
//! the journal, and cut checkpoints an auditor keeps elsewhere.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::{Checkpoint, VerifyError, VerifyReport};
use serde_json::json;

use crate::stdout::{errln, outln};
use engine::clock::now_us;
use engine::data::{self, DataDir};

/// Where the journal to verify comes from.
#[derive(Debug)]
pub enum Source<'a> {
    Data(&'a Path),
    Export(&'a Path),
}

/// The outcome of a verification, for printing.
#[derive(Debug)]
pub enum Verdict {
    Intact(VerifyReport),
    Tampered { seq: Option<u64>, reason: String },
}

/// A checkpoint file is one journal record: a few hundred bytes. The cap
/// keeps a wrong path (a device, a large file) from being read whole.
const CHECKPOINT_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Reads each held checkpoint file; a bad one is an error, never ignored.
pub fn load_checkpoints(paths: &[PathBuf]) -> Result<Vec<Checkpoint>> {
    paths
        .iter()
        .map(|path| {
            let text = engine::files::read_text(path, "checkpoint file", CHECKPOINT_FILE_BYTES_MAX)?;
            Checkpoint::parse(&text).with_context(|| format!("checkpoint {}", path.display()))
        })
        .collect()
}

/// Verifies the journal from `source` against every held checkpoint.
pub fn verify(source: Source<'_>, held: &[Checkpoint]) -> Result<Verdict> {
    let result = match source {
        // Read-only: an auditor's check never writes to what it checks.
        Source::Data(dir) => {
            let db = data::db_path(dir)?;
            contain_storage_panics(&db, || ledger::verify_database(&db, held))?
        }
        Source::Export(path) => {
            let file = File::open(path).with_context(|| format!("opening export {}", path.display()))?;
            ledger::verify_export(&mut BufReader::with_capacity(1 << 20, file), held)
        }
    };
    match result {
        Ok(report) => Ok(Verdict::Intact(report)),
        Err(VerifyError::Bad { seq, failure }) => Ok(Verdict::Tampered { seq: Some(seq), reason: failure.to_string() }),
        Err(VerifyError::BadExport(reason)) => Ok(Verdict::Tampered { seq: None, reason }),
        Err(VerifyError::Ledger(e)) => Err(e.into()),
    }
}

pub fn print_verdict(verdict: &Verdict, json: bool) -> Result<()> {
    match verdict {
        Verdict::Intact(report) if json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": true,
                "entries": report.entries,
                "head": report.head.to_string(),
                "signers": report.signers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "keys": report.keys,
                "checkpoints_matched": report.checkpoints_matched,
                "budget": report.budget.iter().map(|(name, a)| json!({
                    "account": name, "parent": a.parent, "limit": a.limit,
                    "pending": a.pending, "settled": a.settled,
                })).collect::<Vec<_>>(),
            }))?
        )?,
        Verdict::Intact(report) => {
            let revoked = report.keys.iter().filter(|k| k.revoked_seq.is_some()).count();
            outln!(
                "journal intact: {} entries, head {}\n  {} keys introduced ({} revoked or rotated), {} distinct signers\n  \
                 {} budget accounts recomputed from the postings\n  {} held checkpoint(s) matched",
                report.entries,
                report.head,
                report.keys.len(),
                revoked,
                report.signers.len(),
                report.budget.len(),
                report.checkpoints_matched
            )?;
        }
        Verdict::Tampered { seq, reason } => {
            if json {
                outln!("{}", json!({"ok": false, "seq": seq, "reason": reason}))?;
            }
            match seq {
                Some(seq) => errln!("journal verification FAILED at sequence {seq}: {reason}"),
                None => errln!("journal verification FAILED: {reason}"),
            }
        }
    }
    Ok(())
}

/// Writes the export to `out` (never overwriting), then verifies the file
/// it wrote. The export is kept even when verification fails: it is the
/// evidence.
pub fn export(data_dir: &Path, out: &Path) -> Result<(ledger::ExportSummary, Verdict)> {
    if out.exists() {
        bail!("{} already exists; choose another --out or remove it first", out.display());
    }
    let db = data::db_path(data_dir)?;
    let partial = out.with_extension("partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let bar = progress_bar("exporting");
    let summary = contain_storage_panics(&db, || {
        ledger::export_database(&db, &mut writer, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
    })??;
    bar.finish_and_clear();
    let file = writer.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {e}", partial.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
    let verdict = verify(Source::Export(out), &[])?;
    Ok((summary, verdict))
}

/// Appends a checkpoint now (needs the conductor key) or takes the latest
/// one, and writes it to `out` (never overwriting).
pub fn checkpoint(data_dir: &Path, out: &Path, latest: bool) -> Result<Checkpoint> {
    if out.exists() {
        bail!("{} already exists; choose another --out or remove it first", out.display());
    }
    let checkpoint = if latest {
        let ledger = data::open_ledger_only(data_dir)?;
        ledger
            .latest_checkpoint()?
            .with_context(|| format!("{} has no checkpoint yet; run without --latest to cut one", data_dir.display()))?
    } else {
        let data = DataDir::open_existing(data_dir)?;
        let key = data.conductor.clone();
        data.ledger.write(|t| t.checkpoint(&key, now_us()))?
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut file = options.open(out).with_context(|| format!("creating {}", out.display()))?;
    std::io::Write::write_all(&mut file, checkpoint.to_text().as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", out.display()))?;
    Ok(checkpoint)
}

/// redb 4.6 can panic (index out of bounds) on some corrupted pages
/// instead of returning an error. An auditor pointing the tool at a damaged
/// file must get a clear error, not a crash: contain the panic, keep its
/// message, and report the file as corrupt.
fn contain_storage_panics<T>(db: &Path, f: impl FnOnce() -> T) -> Result<T> {
    let message = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = message.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = sink.lock() {
            let what = info.payload_as_str().unwrap_or("unknown failure");
            *m = match info.location() {
                Some(at) => {
                    format!("{what} at {}:{}", at.file().rsplit("/src/").next().unwrap_or(at.file()), at.line())
                }
                None => what.to_owned(),
            };
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.map_err(|_| {
        let detail = message.lock().map(|m| m.clone()).unwrap_or_default();
        anyhow::anyhow!(
            "{} is corrupt: the storage engine failed while reading it ({detail}); nothing was \
             verified. Restore it from a backup or verify an export",
            db.display()
        )
    })
}

fn progress_bar(what: &str) -> ProgressBar {
    // A bar only where someone watches; CI logs stay clean.
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} entries [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Prints journal entries, oldest first, optionally only those of a kind
/// (prefix) or naming a mission. Reads without writing. Times are RFC
/// 3339, as everywhere else; `--json` also keeps `time_us`.
pub fn log(dir: &Path, kind: Option<&str>, mission: Option<&str>, json: bool) -> Result<()> {
    use std::io::Write;
    let entries = data::read_journal(dir)?;
    let mut out = std::io::BufWriter::new(crate::stdout::stdout());
    for entry in entries {
        // `audit log | head`: nobody reads the rest.
        if crate::stdout::reader_gone() {
            break;
        }
        if kind.is_some_and(|k| !entry.kind.starts_with(k)) {
            continue;
        }
        // Every kind is listed and printed as journaled, so the payload
        // stays JSON: the filter reads `mission` from whichever kind has one.
        let payload = entry.payload_json();
        if mission.is_some_and(|m| payload["mission"] != m) {
            continue;
        }
        let signer = hex::encode(&entry.signer[..8]);
        let time = missions::format_timestamp(entry.time_us);
        if json {
            let line = json!({"seq": entry.seq, "time": time, "time_us": entry.time_us, "kind": entry.kind,
                              "signer": hex::encode(entry.signer), "payload": payload});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{:>8}  {time}  {:<18} {signer}…  {payload}", entry.seq, entry.kind)?;
        }
    }
    out.flush()?;
    Ok(())
}

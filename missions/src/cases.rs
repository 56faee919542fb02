//! Task cases: read from a directory of JSON files or written inline.

use std::collections::{BTreeMap, btree_map::Entry};
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::condition::kind;
use crate::diagnostic::{Pos, Report, quoted};
use crate::mission::{Case, DataTier, MAX_CASE_FILE_BYTES, MAX_CASES};
use crate::read::{ReadError, read_regular};
use crate::validate::{Source, pos};

/// A case and where to point when reporting a problem with it.
pub(crate) struct Located {
    pub(crate) case: Case,
    pub(crate) file: String,
    pub(crate) at: Pos,
}

/// Reads every `*.json` file directly in `dir`, sorted by file name, so the
/// order of work does not depend on the filesystem.
pub(crate) fn from_dir(report: &mut Report, source: &Source<'_>, dir: &Spanned<String>, agent: &str) -> Vec<Located> {
    let dir_path = source.base_dir.join(&dir.value);
    let shown_dir = quoted(&dir_path.display().to_string());
    let entries = match std::fs::read_dir(&dir_path) {
        Ok(entries) => entries,
        Err(e) => {
            report.error(
                source.file,
                pos(dir),
                format!("cannot read case directory {shown_dir}: {e}"),
                "`dir` is relative to the mission file's directory; create it or fix the path",
            );
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                report.error(
                    source.file,
                    pos(dir),
                    format!("cannot list case directory {shown_dir}: {e}"),
                    "check the directory's permissions",
                );
                return Vec::new();
            }
        };
        // Every `*.json` entry is read as a case, so one that is not a
        // regular file (a FIFO, a device, a directory) is reported there
        // rather than skipped in silence.
        if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
        if files.len() > MAX_CASES {
            report.error(
                source.file,
                pos(dir),
                format!("case directory {shown_dir} holds more than {MAX_CASES} case files"),
                "split the cases over several missions",
            );
            return Vec::new();
        }
    }
    if files.is_empty() {
        report.error(
            source.file,
            pos(dir),
            format!("case directory {shown_dir} has no `*.json` case files"),
            "add one JSON object per case, e.g. `case-001.json`",
        );
        return Vec::new();
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut cases = Vec::with_capacity(files.len());
    for path in files {
        let file = path.display().to_string();
        let Some(input) = read_case_file(report, &path, &file) else {
            continue;
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let Some(id) = case_id(report, &input, stem.unwrap_or_default(), &file, Pos::START) else {
            continue;
        };
        cases.push(Located {
            case: Case { id, agent: agent.to_owned(), input, origin: file.clone(), tier: DataTier::default() },
            file,
            at: Pos::START,
        });
    }
    cases
}

/// Each inline item becomes a case; its origin is `mission-file:LINE`.
pub(crate) fn from_inline(
    report: &mut Report,
    mission_file: &str,
    inline: &Spanned<Vec<Spanned<Value>>>,
    agent: &str,
) -> Vec<Located> {
    if inline.value.is_empty() {
        report.error(
            mission_file,
            pos(inline),
            "`inline` lists no cases",
            "add at least one case, e.g. `- { id: case-1, applicant: ... }`",
        );
        return Vec::new();
    }
    if inline.value.len() > MAX_CASES {
        report.error(
            mission_file,
            pos(inline),
            format!("`inline` lists more than {MAX_CASES} cases"),
            "split the cases over several missions",
        );
        return Vec::new();
    }
    let mut cases = Vec::with_capacity(inline.value.len());
    for (index, item) in inline.value.iter().enumerate() {
        let at = pos(item);
        if !item.value.is_object() {
            report.error(
                mission_file,
                at,
                format!("inline case {} is {}, not a mapping", index + 1, kind(&item.value)),
                "write each case as a mapping of its fields, e.g. `- { id: case-1, amount: 100 }`",
            );
            continue;
        }
        let fallback = format!("case-{}", index + 1);
        let Some(id) = case_id(report, &item.value, fallback, mission_file, at) else {
            continue;
        };
        cases.push(Located {
            case: Case {
                id,
                agent: agent.to_owned(),
                input: item.value.clone(),
                origin: format!("{mission_file}:{}", at.line),
                tier: DataTier::default(),
            },
            file: mission_file.to_owned(),
            at,
        });
    }
    cases
}

/// Reads and parses one case file; problems are reported in that file.
fn read_case_file(report: &mut Report, path: &Path, file: &str) -> Option<Value> {
    let bytes = match read_regular(path, MAX_CASE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e @ ReadError::TooLarge { .. }) => {
            report.plain_error(
                file,
                Pos::START,
                format!("cannot read case file: {e}"),
                "keep each case to the data the agent needs; move bulky documents out of the case",
            );
            return None;
        }
        Err(e @ ReadError::NotRegular { .. }) => {
            report.plain_error(
                file,
                Pos::START,
                format!("cannot read case file: {e}"),
                "a case is a regular `*.json` file; move anything else out of the case directory",
            );
            return None;
        }
        Err(ReadError::Io(e)) => {
            report.plain_error(file, Pos::START, format!("cannot read case file: {e}"), "check the file's permissions");
            return None;
        }
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => {
            report_json_error(report, file, &e);
            return None;
        }
    };
    if !value.is_object() {
        report.plain_error(
            file,
            first_token(&bytes),
            format!("case file holds {}, not a JSON object", kind(&value)),
            "write the case as one JSON object: `{ \"id\": \"...\", ... }`",
        );
        return None;
    }
    Some(value)
}

/// Reports JSON that does not parse, at the position serde_json gives.
pub(crate) fn report_json_error(report: &mut Report, file: &str, e: &serde_json::Error) {
    let at = Pos { line: e.line().max(1), column: e.column().max(1) };
    // serde_json's Display appends the position, which the diagnostic already carries.
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    // serde_json's messages name what it expected, not the text.
    report.plain_error(file, at, format!("invalid JSON: {message}"), "fix the JSON at this position");
}

/// The case's `"id"` string if it has one, else `fallback`.
fn case_id(report: &mut Report, input: &Value, fallback: String, file: &str, at: Pos) -> Option<String> {
    match input.get("id") {
        None => Some(fallback),
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.clone()),
        Some(other) => {
            report.plain_error(
                file,
                at,
                format!("case `id` is {}, not a non-empty string", kind(other)),
                "write the id as a string, e.g. `\"id\": \"case-001\"`, or leave it out",
            );
            None
        }
    }
}

/// Drops (and reports) cases whose id was already used, across every
/// task group: an id names one task of the mission.
pub(crate) fn unique_ids(report: &mut Report, cases: Vec<Located>) -> Vec<Case> {
    let mut first_origin: BTreeMap<String, String> = BTreeMap::new();
    let mut unique = Vec::with_capacity(cases.len());
    for Located { case, file, at } in cases {
        match first_origin.entry(case.id.clone()) {
            Entry::Occupied(first) => report.error(
                &file,
                at,
                format!("duplicate case id {}", quoted(&case.id)),
                format!("case ids must be unique; {} also uses it", first.get()),
            ),
            Entry::Vacant(slot) => {
                slot.insert(case.origin.clone());
                unique.push(case);
            }
        }
    }
    unique
}

/// Where the JSON value starts: JSON whitespace is ASCII, so counting bytes
/// on the last line gives the column.
fn first_token(bytes: &[u8]) -> Pos {
    let mut at = Pos::START;
    for &b in bytes {
        match b {
            b'\n' => {
                at.line += 1;
                at.column = 1;
            }
            b' ' | b'\t' | b'\r' => at.column += 1,
            _ => break,
        }
    }
    at
}

//! Missions an operator sends over HTTP (`POST /api/missions`).
//!
//! A mission used to be named by a path that the server then read, and
//! any path on the host would do: `/dev/zero` grew the server by
//! gigabytes, a FIFO hung it, and `/etc/shadow`'s first line came back in
//! the error. Now the operator sends the mission's YAML itself, within
//! the request body cap; the server keeps it as
//! `DATA/missions/<blake3 of the text>.yaml` (owner-only, like the rest of
//! the data directory) and runs that file, so a restart or a resume finds
//! the same bytes.
//!
//! The files an uploaded mission names (agents' modules, case directories)
//! are the only files it still makes the server read, so they must lie
//! inside `DATA/missions/`: relative paths without `..`, and no symbolic
//! link that leads out. Whoever administers the host puts there the
//! modules and case directories that operators may use. Problems with the
//! upload itself come back whole (it is the caller's own text); problems
//! with the files it names say which file and what failed, never what is
//! in it.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use missions::{Diagnostics, Mission};
use serde_json::Value;

/// Where uploaded missions are kept, and the only place the files they
/// name may be.
pub(super) const UPLOADS_DIR: &str = "missions";
/// How diagnostics name the uploaded text.
pub(super) const UPLOAD_LABEL: &str = "upload.yaml";

/// Why an uploaded mission was not accepted.
#[derive(Debug, thiserror::Error)]
pub(super) enum UploadError {
    /// A path in the mission leads outside the uploads directory.
    #[error(
        "{what} `{path}`: {why}; an uploaded mission may name only files inside the server's DATA/{UPLOADS_DIR}/ \
         directory, as relative paths (ask whoever runs the server to put the file there)"
    )]
    Outside { what: &'static str, path: String, why: &'static str },
    /// The text is not a valid mission; the diagnostics, safe to show.
    #[error("{0}")]
    Invalid(String),
    /// The upload could not be stored.
    #[error("storing the mission: {0}")]
    Store(#[source] std::io::Error),
}

/// The uploads directory of a data directory.
pub(super) fn dir(data_root: &Path) -> PathBuf {
    data_root.join(UPLOADS_DIR)
}

/// Creates the uploads directory (owner-only) if it is missing.
pub(super) fn create_dir(data_root: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir(data_root))
}

/// Checks an uploaded mission as it will run from `uploads` (the paths it
/// names first, so nothing outside is even looked at), then parses and
/// validates it there.
pub(super) fn check(uploads: &Path, text: &str) -> Result<Mission, UploadError> {
    let tree: Value = serde_saphyr::from_str(text)
        .map_err(|e| UploadError::Invalid(format!("{UPLOAD_LABEL}: not a YAML mapping this server can read: {e}")))?;
    for (what, path) in named_paths(&tree) {
        inside(uploads, what, &path)?;
    }
    let mission = missions::parse(UPLOAD_LABEL, uploads, text).map_err(|d| {
        tracing::info!("serve: an uploaded mission was refused:\n{d}");
        UploadError::Invalid(shown(&d))
    })?;
    confined(&mission, uploads, UPLOAD_LABEL)?;
    Ok(mission)
}

/// Stores `text` as `uploads/<blake3>.yaml` (owner-only, written whole
/// then renamed into place) and returns that path. The same text is the
/// same file, so sending a mission twice stores it once.
pub(super) fn store(uploads: &Path, text: &str) -> Result<PathBuf, UploadError> {
    let name = format!("{}.yaml", blake3::hash(text.as_bytes()).to_hex());
    let path = uploads.join(&name);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Ok(path);
    }
    let temporary = uploads.join(format!(".{name}.partial"));
    // A leftover of an interrupted upload of the same text.
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let placed = written.and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(UploadError::Store(e));
    }
    Ok(path)
}

/// The files the mission's text names, with what each is, found in the
/// raw YAML so they can be checked before anything reads them.
fn named_paths(tree: &Value) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let mut take = |what: &'static str, value: Option<&Value>| {
        if let Some(path) = value.and_then(Value::as_str) {
            found.push((what, path.to_owned()));
        }
    };
    for agent in tree.get("agents").and_then(Value::as_array).into_iter().flatten() {
        take("agent module", agent.get("module"));
    }
    take("cases schema", tree.get("cases_schema"));
    // Task groups: one mapping, or a list of them.
    let groups = match tree.get("tasks") {
        Some(Value::Array(groups)) => groups.iter().collect(),
        Some(group) => vec![group],
        None => Vec::new(),
    };
    for group in groups {
        take("case directory", group.get("dir"));
    }
    found
}

/// Refuses `path` unless it stays inside `uploads`: relative, no `..`,
/// and every part of it that exists resolves (symbolic links followed)
/// inside `uploads`.
fn inside(uploads: &Path, what: &'static str, path: &str) -> Result<(), UploadError> {
    let outside = |why| UploadError::Outside { what, path: path.to_owned(), why };
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(outside(if relative.is_absolute() {
            "an absolute path"
        } else {
            "a path that climbs out with `..`"
        }));
    }
    let root = std::fs::canonicalize(uploads).map_err(UploadError::Store)?;
    let mut at = uploads.to_owned();
    for part in relative.components() {
        at.push(part);
        match std::fs::canonicalize(&at) {
            Ok(real) if real.starts_with(&root) => {}
            Ok(_) => return Err(outside("a symbolic link that leads out")),
            // Missing: nothing below it exists either; validation says so.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Checks the files a parsed mission will read (`label`: how its own text
/// is named in case origins): every agent module and case file resolves
/// inside `uploads`. It repeats [`inside`] on what validation resolved, so
/// a path the raw scan did not know of is caught before anything runs.
pub(super) fn confined(mission: &Mission, uploads: &Path, label: &str) -> Result<(), UploadError> {
    let root = std::fs::canonicalize(uploads).map_err(UploadError::Store)?;
    let within = |path: &Path| std::fs::canonicalize(path).is_ok_and(|real| real.starts_with(&root));
    for agent in &mission.agents {
        if !within(&agent.module) {
            let path = agent.module.display().to_string();
            return Err(UploadError::Outside { what: "agent module", path, why: "it resolves outside" });
        }
    }
    if let Some(schema) = &mission.cases_schema
        && !within(schema)
    {
        return Err(UploadError::Outside {
            what: "cases schema",
            path: schema.display().to_string(),
            why: "it resolves outside",
        });
    }
    let inline = format!("{label}:");
    for case in &mission.tasks.cases {
        if !case.origin.starts_with(&inline) && !within(Path::new(&case.origin)) {
            return Err(UploadError::Outside {
                what: "case file",
                path: case.origin.clone(),
                why: "it resolves outside",
            });
        }
    }
    Ok(())
}

/// The diagnostics as the caller may see them: those about the uploaded
/// text whole (it is the caller's own); those about a file it names
/// without any text quoted from that file (the server log has them whole).
fn shown(diagnostics: &Diagnostics) -> String {
    let withheld = diagnostics.without_source_text();
    let lines: Vec<String> = diagnostics
        .iter()
        .zip(withheld.iter())
        .map(|(whole, safe)| if whole.file == UPLOAD_LABEL { whole.to_string() } else { safe.to_string() })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_uploads_directory_are_refused_before_anything_reads_them() {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let uploads = scratch.path().join("missions");
        std::fs::create_dir_all(uploads.join("cases")).expect("dirs");
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", uploads.join("etc")).expect("symlink");
        for path in ["/etc/shadow", "../x.wasm", "cases/../../x", "etc/passwd", "etc", ""] {
            assert!(matches!(inside(&uploads, "agent module", path), Err(UploadError::Outside { .. })), "{path}");
        }
        for path in ["cases", "./cases", "agent.wasm", "cases/missing/deeper"] {
            assert!(inside(&uploads, "case directory", path).is_ok(), "{path}");
        }
    }

    #[test]
    fn the_raw_scan_finds_every_module_and_case_directory() {
        let tree: Value = serde_saphyr::from_str(
            "agents:\n  - {name: a, module: a.wasm}\n  - {name: b, module: /b.wasm}\n\
             tasks:\n  - {agent: a, dir: one}\n  - {agent: b, inline: [{dir: not-a-path}]}\n",
        )
        .expect("yaml");
        let found: Vec<String> = named_paths(&tree).into_iter().map(|(_, p)| p).collect();
        assert_eq!(found, ["a.wasm", "/b.wasm", "one"]);
    }
}

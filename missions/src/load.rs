//! Entry points: mission text or file in, validated [`Mission`] or every problem out.

use std::path::Path;

use crate::diagnostic::{self, Diagnostics, Pos};
use crate::mission::Mission;
use crate::raw::RawMission;
use crate::validate::{self, Source};

/// Reads, parses and validates the mission file at `path`, including the
/// agent modules and case files it names (relative to its directory).
pub fn load(path: &Path) -> Result<Mission, Diagnostics> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Err(Diagnostics::one(
                &file,
                Pos::START,
                format!("cannot read mission file: {e}"),
                "check the path; a mission file is UTF-8 YAML",
            ));
        }
    };
    // `Path::parent` of a bare file name is "", which joins like ".".
    let base_dir = path.parent().unwrap_or(Path::new(""));
    parse(&file, base_dir, &text)
}

/// Parses and validates mission `text`. `file_name` labels diagnostics and
/// inline case origins; `base_dir` is where relative paths in the mission
/// (agent modules, the case directory) start.
pub fn parse(file_name: &str, base_dir: &Path, text: &str) -> Result<Mission, Diagnostics> {
    let raw: RawMission =
        serde_saphyr::from_str(text).map_err(|e| diagnostic::from_yaml_error(file_name, &e))?;
    validate::validate(
        raw,
        &Source {
            file: file_name,
            base_dir,
        },
    )
}

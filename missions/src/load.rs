//! Entry points: mission text or file in, validated [`Mission`] or every problem out.

use std::path::Path;

use crate::diagnostic::{self, Diagnostics, Pos};
use crate::mission::{MISSION_FILE_BYTES_MAX, Mission};
use crate::raw::RawMission;
use crate::read::{ReadError, read_regular};
use crate::validate::{self, Source};

/// Reads, parses and validates the mission file at `path`, including the
/// agent modules, case files and cases schema it names (relative to its
/// directory). The file must be a regular file of at most
/// [`MISSION_FILE_BYTES_MAX`] bytes: a device, FIFO or directory is
/// refused at once, without reading from it.
pub fn load(path: &Path) -> Result<Mission, Diagnostics> {
    let file = path.display().to_string();
    let unreadable = |message: String, help: &str| Diagnostics::one_plain(&file, Pos::START, message, help);
    let bytes = match read_regular(path, MISSION_FILE_BYTES_MAX) {
        Ok(bytes) => bytes,
        Err(e @ ReadError::NotRegular { .. }) => {
            return Err(unreadable(format!("cannot read mission file: {e}"), "name the mission's YAML file itself"));
        }
        Err(e @ ReadError::TooLarge { .. }) => {
            return Err(unreadable(
                format!("cannot read mission file: {e}"),
                "a mission file is configuration; put a large queue of cases in a case directory (`tasks: { dir: ... }`)",
            ));
        }
        Err(ReadError::Io(e)) => {
            return Err(unreadable(
                format!("cannot read mission file: {e}"),
                "check the path; a mission file is UTF-8 YAML",
            ));
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(unreadable("the mission file is not UTF-8 text".to_owned(), "a mission file is UTF-8 YAML"));
    };
    // `Path::parent` of a bare file name is "", which joins like ".".
    let base_dir = path.parent().unwrap_or(Path::new(""));
    parse(&file, base_dir, &text)
}

/// Parses and validates mission `text`. `file_name` labels diagnostics and
/// inline case origins; `base_dir` is where relative paths in the mission
/// (agent modules, the case directory, the cases schema) start.
/// Text longer than [`MISSION_FILE_BYTES_MAX`] is refused, as a file would be.
pub fn parse(file_name: &str, base_dir: &Path, text: &str) -> Result<Mission, Diagnostics> {
    if u64::try_from(text.len()).map_or(true, |n| n > MISSION_FILE_BYTES_MAX) {
        return Err(Diagnostics::one_plain(
            file_name,
            Pos::START,
            format!("the mission is larger than {MISSION_FILE_BYTES_MAX} bytes"),
            "a mission file is configuration; put a large queue of cases in a case directory (`tasks: { dir: ... }`)",
        ));
    }
    let raw: RawMission = serde_saphyr::from_str(text).map_err(|e| diagnostic::from_yaml_error(file_name, &e))?;
    validate::validate(raw, &Source { file: file_name, base_dir })
}

//! Reading the files an operator names (registries, checkpoints, module
//! signatures, ...) safely: regular files only, never more than a named
//! limit. `/dev/zero` would otherwise be read until memory runs out, and a
//! FIFO would block the reader forever.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path names a directory, device, FIFO or socket.
    #[error("{path} is not a regular file; name the file itself")]
    NotRegular { path: PathBuf },
    /// The file is larger than this kind of file may be.
    #[error("{path} is larger than {limit_bytes} bytes, the most a {what} may be")]
    TooLarge { path: PathBuf, what: &'static str, limit_bytes: u64 },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Reads `path`, a regular file of at most `limit_bytes` bytes; `what` names
/// the kind of file for the error ("model registry").
pub fn read_regular(path: &Path, what: &'static str, limit_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io { path: path.to_owned(), source };
    // stat first: opening a FIFO for reading blocks until a writer comes.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(ReadError::NotRegular { path: path.to_owned() });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // ...and again on what was opened, in case the path was swapped.
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ReadError::NotRegular { path: path.to_owned() });
    }
    let mut bytes = Vec::new();
    file.take(limit_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit_bytes {
        return Err(ReadError::TooLarge { path: path.to_owned(), what, limit_bytes });
    }
    Ok(bytes)
}

/// [`read_regular`] for a UTF-8 text file.
pub fn read_text(path: &Path, what: &'static str, limit_bytes: u64) -> Result<String, ReadError> {
    let bytes = read_regular(path, what, limit_bytes)?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

//! Reading the files a mission names: regular files only, never more than
//! a named limit. Without both checks a path of `/dev/zero` is read until
//! memory runs out, and a FIFO blocks the reader until someone writes.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// A directory, device, FIFO or socket: `kind` says which.
    #[error("it is {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    /// Longer than the limit for this kind of file.
    #[error("it is larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads `path`, a regular file (after following symbolic links) of at
/// most `limit_bytes` bytes.
pub(crate) fn read_regular(path: &Path, limit_bytes: u64) -> Result<Vec<u8>, ReadError> {
    // Look before opening: opening a FIFO for reading blocks until a
    // writer comes, so it must be refused from its metadata alone.
    regular(&std::fs::metadata(path)?)?;
    let file = File::open(path)?;
    // Look again at what was opened, in case the path changed in between.
    regular(&file.metadata()?)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells "too large" without trusting a size
    // that could change while the file is read.
    file.take(limit_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > limit_bytes) {
        return Err(ReadError::TooLarge { limit_bytes });
    }
    Ok(bytes)
}

fn regular(metadata: &Metadata) -> Result<(), ReadError> {
    if metadata.is_file() { Ok(()) } else { Err(ReadError::NotRegular { kind: kind(metadata) }) }
}

/// What a file that is not a regular file is, for the message.
fn kind(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

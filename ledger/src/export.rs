//! Exports: the whole journal in one self-contained file that verifies
//! with no database.
//!
//! ```text
//! offset 0   8 bytes   ASCII "CJEXPORT"
//! offset 8   4 bytes   u32 BE format version (1)
//! offset 12  8 bytes   u64 BE N, the number of entries
//! then N times:
//!            4 bytes   u32 BE L, the record's length
//!            L bytes   the stored record (canonical ‖ hash ‖ signature)
//! end of file
//! ```
//!
//! Entries start at seq 0, so the export carries every key event
//! (genesis, registrations, rotations, revocations) and therefore every
//! public key needed to check it; nothing else is needed.

use std::io::{self, Read, Write};

use redb::{ReadableTable, ReadableTableMetadata};

use crate::checkpoint::Checkpoint;
use crate::entry::RECORD_BYTES_MAX;
use crate::error::{LedgerError, VerifyError, VerifyFailure, storage};
use crate::journal::{JOURNAL, Ledger};
use crate::verify::{Verifier, VerifyReport};

pub const EXPORT_MAGIC: &[u8; 8] = b"CJEXPORT";
pub const EXPORT_VERSION: u32 = 1;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub entries: u64,
    pub bytes: u64,
}

impl Ledger {
    /// Writes every entry, as stored, from one consistent snapshot. The
    /// records are copied without judgement (a damaged journal is exported
    /// as it is, so an auditor sees the evidence); verify separately.
    /// `progress` is called with (entries written so far, entries in all).
    pub fn export(&self, out: &mut impl Write, progress: impl FnMut(u64, u64)) -> Result<ExportSummary, LedgerError> {
        export_snapshot(&self.read()?, out, progress)
    }
}

/// As [`Ledger::export`], from the database file at `path` opened
/// read-only (nothing is written to it).
pub fn export_database(
    path: &std::path::Path,
    out: &mut impl Write,
    progress: impl FnMut(u64, u64),
) -> Result<ExportSummary, LedgerError> {
    let db = crate::journal::open_read_only(path)?;
    let read = db.begin_read().map_err(storage)?;
    export_snapshot(&read, out, progress)
}

fn export_snapshot(
    read: &redb::ReadTransaction,
    out: &mut impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary, LedgerError> {
    let journal = read.open_table(JOURNAL).map_err(storage)?;
    let count = journal.len().map_err(storage)?;
    let io = |source: io::Error| LedgerError::Io { what: "writing the export", source };
    out.write_all(EXPORT_MAGIC).map_err(io)?;
    out.write_all(&EXPORT_VERSION.to_be_bytes()).map_err(io)?;
    out.write_all(&count.to_be_bytes()).map_err(io)?;
    let mut bytes = 20u64;
    let mut written = 0u64;
    for row in journal.iter().map_err(storage)? {
        let (_, record) = row.map_err(storage)?;
        let record = record.value();
        let len =
            u32::try_from(record.len()).map_err(|_| LedgerError::BadEntry("a stored record exceeds 4 GiB".into()))?;
        out.write_all(&len.to_be_bytes()).map_err(io)?;
        out.write_all(record).map_err(io)?;
        bytes += 4 + u64::from(len);
        written += 1;
        if written.is_multiple_of(4096) {
            progress(written, count);
        }
    }
    out.flush().map_err(io)?;
    progress(written, count);
    Ok(ExportSummary { entries: written, bytes })
}

/// Verifies an export read from `input` (buffer it), with no database.
/// Every held checkpoint must match the export's entry at its seq.
pub fn verify_export(input: &mut impl Read, held: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
    let mut header = [0u8; 20];
    read_full(input, &mut header)
        .map_err(|e| VerifyError::BadExport(format!("reading the header: {e}")))?
        .then_some(())
        .ok_or_else(|| VerifyError::BadExport("file is shorter than the 20-byte header".into()))?;
    if &header[..8] != EXPORT_MAGIC {
        return Err(VerifyError::BadExport("not a conductor journal export (no CJEXPORT magic)".into()));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != EXPORT_VERSION {
        return Err(VerifyError::BadExport(format!(
            "export format {version} is not supported (this verifier reads {EXPORT_VERSION})"
        )));
    }
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&header[12..20]);
    let declared = u64::from_be_bytes(count_bytes);
    let mut verifier = Verifier::new(held);
    let mut record = Vec::new();
    for seq in 0..declared {
        let mut len = [0u8; 4];
        let short =
            |verifier: &mut Verifier| verifier.fail(seq, VerifyFailure::Truncated { expected: declared, found: seq });
        match read_full(input, &mut len) {
            Ok(true) => {}
            Ok(false) => return Err(short(&mut verifier)),
            Err(e) => return Err(verifier.fail(seq, VerifyFailure::Malformed(format!("unreadable: {e}")))),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > RECORD_BYTES_MAX {
            let failure = VerifyFailure::Malformed(format!("record length {len} exceeds {RECORD_BYTES_MAX}"));
            return Err(verifier.fail(seq, failure));
        }
        record.resize(len, 0);
        match read_full(input, &mut record) {
            Ok(true) => {}
            Ok(false) => {
                let failure = VerifyFailure::Malformed("record cut short by the end of the file".into());
                return Err(verifier.fail(seq, failure));
            }
            Err(e) => return Err(verifier.fail(seq, VerifyFailure::Malformed(format!("unreadable: {e}")))),
        }
        verifier.push(None, &record)?;
    }
    let mut probe = [0u8; 1];
    match read_full(input, &mut probe) {
        Ok(false) => {}
        Ok(true) => return Err(verifier.fail(declared, VerifyFailure::TrailingData)),
        Err(e) => return Err(verifier.fail(declared, VerifyFailure::Malformed(format!("unreadable: {e}")))),
    }
    verifier.finish()
}

/// Fills `buf`; `Ok(false)` if the input ended first (at any point).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

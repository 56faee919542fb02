//! Checkpoint files: a signed chain head an auditor keeps apart from the
//! journal, so that a later truncation or rewrite of the journal is
//! detected even if whoever did it also rewrote the stored head.
//!
//! A checkpoint *is* a `journal.checkpoint` entry (signed by the conductor
//! key in force, stating the entry count and head hash before it). Its
//! file is that entry's stored record, with two lines a person can read:
//!
//! ```text
//! conductor-checkpoint v1
//! seq: 4096
//! hash: <64 hex: the checkpoint entry's hash>
//! record: <hex: the entry's stored record>
//! ```
//!
//! A journal is consistent with the checkpoint when its entry at `seq` is
//! byte-for-byte that record, so its hash, and hence every entry before it,
//! is what the auditor saw.

use crate::entry::{self, Entry, EntryHash, RECORD_BYTES_MAX};
use crate::error::CheckpointError;
use crate::rules;

const HEADER: &str = "conductor-checkpoint v1";
/// A checkpoint record is a small JSON entry; anything bigger is not one.
const CHECKPOINT_FILE_BYTES_MAX: usize = 8 * 1024;

/// A checkpoint: one verified `journal.checkpoint` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    entry: Entry,
    record: Vec<u8>,
}

impl Checkpoint {
    /// Wraps a stored record, checking that it is a checkpoint entry whose
    /// hash and signature are valid on their own.
    pub fn from_record(record: Vec<u8>) -> Result<Self, CheckpointError> {
        if record.len() > RECORD_BYTES_MAX {
            return Err(CheckpointError::Malformed("record is too large".into()));
        }
        let entry = entry::decode(&record).map_err(CheckpointError::Invalid)?;
        if entry.kind != rules::CHECKPOINT {
            return Err(CheckpointError::Malformed(format!(
                "entry {} is a `{}`, not a `{}`",
                entry.seq,
                entry.kind,
                rules::CHECKPOINT
            )));
        }
        entry::check_self(&entry).map_err(CheckpointError::Invalid)?;
        Ok(Checkpoint { entry, record })
    }

    /// The checkpoint entry's sequence number.
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }

    /// The checkpoint entry's hash, which commits to every entry before it.
    pub fn hash(&self) -> EntryHash {
        self.entry.hash
    }

    /// The checkpoint entry itself.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        format!("{HEADER}\nseq: {}\nhash: {}\nrecord: {}\n", self.entry.seq, self.entry.hash, hex::encode(&self.record))
    }

    /// Parses a checkpoint file; every line is checked against the record.
    ///
    /// The syntax is exact (`docs/journal-format.md`, section 4): the
    /// header line, then the `seq`, `hash` and `record` lines, each once,
    /// in any order; each line ends with LF or CR LF, the last one may end
    /// with none; the single space after each `:` is the only whitespace;
    /// `seq` is decimal without sign or leading zeros; `hash` and `record`
    /// are lower-case hex. Anything else is [`CheckpointError::Malformed`];
    /// a record that does not decode, or whose hash or signature is
    /// invalid, is [`CheckpointError::Invalid`].
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
        if text.len() > CHECKPOINT_FILE_BYTES_MAX {
            return Err(bad("larger than any checkpoint file"));
        }
        // Each line ends with LF or CR LF, the last one possibly with
        // neither; a CR anywhere else stays in its line and fails it.
        let mut lines = text.split_inclusive('\n').map(|line| match line.strip_suffix('\n') {
            Some(line) => line.strip_suffix('\r').unwrap_or(line),
            None => line,
        });
        if lines.next() != Some(HEADER) {
            return Err(bad("first line is not `conductor-checkpoint v1`"));
        }
        let (mut seq, mut hash, mut record) = (None, None, None);
        for line in lines {
            let Some((name, value)) = line.split_once(": ") else {
                return Err(bad("expected `name: value` lines (and no blank lines)"));
            };
            let slot = match name {
                "seq" => &mut seq,
                "hash" => &mut hash,
                "record" => &mut record,
                _ => return Err(bad("unknown field (the fields are `seq`, `hash` and `record`)")),
            };
            if slot.replace(value).is_some() {
                return Err(bad("a field appears twice"));
            }
        }
        let seq = seq.ok_or_else(|| bad("missing `seq`"))?;
        let canonical_decimal =
            !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) && (seq == "0" || !seq.starts_with('0'));
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|_| canonical_decimal)
            .ok_or_else(|| bad("`seq` is not a decimal number (digits only, no leading zeros)"))?;
        let hash = hash.ok_or_else(|| bad("missing `hash`"))?;
        if hash.len() != 64 || crate::json::lower_hex(hash).is_none() {
            return Err(bad("`hash` is not 64 lower-case hex digits"));
        }
        let record = record.ok_or_else(|| bad("missing `record`"))?;
        let record = crate::json::lower_hex(record).ok_or_else(|| bad("`record` is not lower-case hex"))?;
        let checkpoint = Self::from_record(record)?;
        if checkpoint.seq() != seq || checkpoint.hash().to_string() != hash {
            return Err(bad("`seq` or `hash` line does not match the record"));
        }
        Ok(checkpoint)
    }
}

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
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
        if text.len() > CHECKPOINT_FILE_BYTES_MAX {
            return Err(bad("larger than any checkpoint file"));
        }
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(bad("first line is not `conductor-checkpoint v1`"));
        }
        let (mut seq, mut hash, mut record) = (None, None, None);
        for line in lines {
            let Some((name, value)) = line.split_once(": ") else {
                return Err(bad("expected `name: value` lines"));
            };
            let slot = match name {
                "seq" => &mut seq,
                "hash" => &mut hash,
                "record" => &mut record,
                _ => return Err(bad("unknown field")),
            };
            if slot.replace(value.trim()).is_some() {
                return Err(bad("a field appears twice"));
            }
        }
        let seq: u64 = seq.ok_or_else(|| bad("missing `seq`"))?.parse().map_err(|_| bad("`seq` is not a number"))?;
        let hash = hash.ok_or_else(|| bad("missing `hash`"))?;
        let record =
            hex::decode(record.ok_or_else(|| bad("missing `record`"))?).map_err(|_| bad("`record` is not hex"))?;
        let checkpoint = Self::from_record(record)?;
        if checkpoint.seq() != seq || checkpoint.hash().to_string() != hash {
            return Err(bad("`seq` or `hash` line does not match the record"));
        }
        Ok(checkpoint)
    }
}

use identity::KeyId;
use redb::ReadableTable;

use crate::entry::{self, EntryHash};
use crate::error::{VerifyError, VerifyFailure, storage};
use crate::journal::{HEAD, JOURNAL, Ledger};

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry (zeros when empty).
    pub head: EntryHash,
    /// Distinct signers seen, in first-seen order.
    pub signers: Vec<KeyId>,
}

impl Ledger {
    /// Walks the whole journal: contiguous sequence numbers from 0, each
    /// entry's `prev` equal to the hash of the one before, each stored hash
    /// equal to the hash of the entry's bytes, each signature valid under
    /// its signer, and the last entry equal to the recorded head. Stops at
    /// the first failure and names its sequence number.
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        let read = self.read()?;
        let journal = read.open_table(JOURNAL).map_err(storage)?;
        let head = read.open_table(HEAD).map_err(storage)?;
        let mut expected_seq = 0u64;
        let mut prev = EntryHash::default();
        let mut signers: Vec<KeyId> = Vec::new();
        for row in journal.iter().map_err(storage)? {
            let (key, record) = row.map_err(|e| VerifyError::Ledger(storage(e)))?;
            let key = key.value();
            let bad = |failure| VerifyError::Bad { seq: expected_seq, failure };
            if key != expected_seq {
                return Err(bad(VerifyFailure::Gap { expected: expected_seq, found: key }));
            }
            let entry = entry::decode(record.value()).map_err(bad)?;
            if entry.seq != expected_seq {
                return Err(bad(VerifyFailure::Gap { expected: expected_seq, found: entry.seq }));
            }
            entry::check_self(&entry).map_err(bad)?;
            if entry.prev != prev {
                return Err(bad(VerifyFailure::BrokenLink));
            }
            if let Ok(key) = identity::PublicKey::from_bytes(&entry.signer) {
                let id = key.key_id();
                if !signers.contains(&id) {
                    signers.push(id);
                }
            }
            prev = entry.hash;
            expected_seq += 1;
        }
        let recorded = match head.get("head").map_err(storage)? {
            None => (0, EntryHash::default()),
            Some(guard) => {
                let (next, hash) = guard.value();
                let hash: [u8; 32] = hash.try_into().map_err(|_| VerifyError::Bad {
                    seq: next,
                    failure: VerifyFailure::Malformed("recorded head hash is not 32 bytes".into()),
                })?;
                (next, EntryHash(hash))
            }
        };
        if recorded.0 != expected_seq {
            return Err(VerifyError::Bad {
                seq: expected_seq.min(recorded.0),
                failure: VerifyFailure::Truncated { expected: recorded.0, found: expected_seq },
            });
        }
        if recorded.1 != prev {
            return Err(VerifyError::Bad {
                seq: expected_seq.saturating_sub(1),
                failure: VerifyFailure::BrokenLink,
            });
        }
        Ok(VerifyReport { entries: expected_seq, head: prev, signers })
    }
}


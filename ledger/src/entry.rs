//! The bytes of one journal entry (format version 1).
//!
//! An entry's *canonical bytes* are, in order (integers big-endian):
//!
//! | offset  | size | field                                             |
//! |---------|------|---------------------------------------------------|
//! | 0       | 4    | magic `CJE1`                                      |
//! | 4       | 8    | `seq`: u64, 0 for the first entry, then +1        |
//! | 12      | 32   | `prev`: hash of entry `seq - 1` (zeros for seq 0) |
//! | 44      | 8    | `time_us`: i64 Unix microseconds (UTC)            |
//! | 52      | 32   | `signer`: Ed25519 public key of the actor         |
//! | 84      | 2    | `K`: u16 length of `kind`                         |
//! | 86      | K    | `kind`: ASCII, e.g. `task.started`                |
//! | 86+K    | 4    | `P`: u32 length of `payload`                      |
//! | 90+K    | P    | `payload`: UTF-8 JSON text, stored verbatim       |
//!
//! `hash = blake3::derive_key("conductor journal entry v1", canonical)`;
//! because `prev` is inside the canonical bytes, each hash covers the whole
//! chain before it. `signature = Ed25519(signer, "conductor journal signature
//! v1\0" ‖ hash)`. The stored record is `canonical ‖ hash ‖ signature`.
//! The payload is hashed as stored, never re-serialised, so the encoding is
//! canonical by construction.

use std::fmt;

use identity::{PublicKey, Signature};

use crate::error::VerifyFailure;

pub(crate) const MAGIC: &[u8; 4] = b"CJE1";
/// The journal format this code writes and verifies (stated in genesis).
pub const FORMAT_VERSION: u32 = 1;
pub(crate) const HASH_CONTEXT: &str = "conductor journal entry v1";
pub(crate) const SIGNATURE_DOMAIN: &[u8] = b"conductor journal signature v1\0";
/// Kinds are short dotted names; the bound keeps a corrupt length honest.
pub const KIND_BYTES_MAX: usize = 64;
/// One entry carries one host call and its result; 4 MiB is far above any
/// prompt or completion a cell may send (cells cap their arguments lower).
pub const PAYLOAD_BYTES_MAX: usize = 4 << 20;
const FIXED_BYTES: usize = 4 + 8 + 32 + 8 + 32 + 2 + 4;
const TRAILER_BYTES: usize = 32 + 64;
/// The largest stored record the limits above allow.
pub const RECORD_BYTES_MAX: usize = FIXED_BYTES + KIND_BYTES_MAX + PAYLOAD_BYTES_MAX + TRAILER_BYTES;

/// A blake3 entry hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntryHash(pub [u8; 32]);

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({self})")
    }
}

/// One decoded journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub prev: EntryHash,
    pub time_us: i64,
    pub signer: [u8; 32],
    pub kind: String,
    pub payload: Vec<u8>,
    pub hash: EntryHash,
    pub signature: [u8; 64],
}

impl Entry {
    /// The payload parsed as JSON (it is always JSON when written by us).
    /// The canonical bytes (what the hash covers), rebuilt from the fields.
    pub fn canonical(&self) -> Vec<u8> {
        canonical_bytes(self.seq, &self.prev, self.time_us, &self.signer, &self.kind, &self.payload)
    }

    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) fn canonical_bytes(
    seq: u64,
    prev: &EntryHash,
    time_us: i64,
    signer: &[u8; 32],
    kind: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_BYTES + kind.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&prev.0);
    out.extend_from_slice(&time_us.to_be_bytes());
    out.extend_from_slice(signer);
    // Callers check both lengths against the maxima first, so these casts
    // cannot truncate.
    out.extend_from_slice(&(kind.len() as u16).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(crate) fn hash_of(canonical: &[u8]) -> EntryHash {
    let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT);
    hasher.update(canonical);
    EntryHash(*hasher.finalize().as_bytes())
}

/// The message an entry's signer signs: the domain
/// `conductor journal signature v1\0` followed by the entry's hash (63
/// bytes). What a key held elsewhere signs for a [`crate::PreparedEntry`].
pub fn signed_message(hash: &EntryHash) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 32);
    msg.extend_from_slice(SIGNATURE_DOMAIN);
    msg.extend_from_slice(&hash.0);
    msg
}

/// Decodes a stored record without trusting it: every length is checked
/// before it is used, and nothing here panics on arbitrary bytes.
pub fn decode(record: &[u8]) -> Result<Entry, VerifyFailure> {
    let bad = |why: &str| VerifyFailure::Malformed(why.to_owned());
    if record.len() < FIXED_BYTES + TRAILER_BYTES {
        return Err(bad("record shorter than the fixed fields"));
    }
    if &record[0..4] != MAGIC {
        return Err(bad("magic is not CJE1"));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[at..at + 8]);
        b
    };
    let seq = u64::from_be_bytes(u64_at(4));
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&record[12..44]);
    let time_us = i64::from_be_bytes(u64_at(44));
    let mut signer = [0u8; 32];
    signer.copy_from_slice(&record[52..84]);
    let kind_len = u16::from_be_bytes([record[84], record[85]]) as usize;
    if kind_len > KIND_BYTES_MAX {
        return Err(bad("kind longer than allowed"));
    }
    let kind_end = 86 + kind_len;
    if record.len() < kind_end + 4 + TRAILER_BYTES {
        return Err(bad("record shorter than its kind length says"));
    }
    let kind = std::str::from_utf8(&record[86..kind_end]).map_err(|_| bad("kind is not UTF-8"))?.to_owned();
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&record[kind_end..kind_end + 4]);
    let payload_len = u32::from_be_bytes(len4) as usize;
    if payload_len > PAYLOAD_BYTES_MAX {
        return Err(bad("payload longer than allowed"));
    }
    let payload_start = kind_end + 4;
    let canonical_end = payload_start + payload_len;
    if record.len() != canonical_end + TRAILER_BYTES {
        return Err(bad("record length does not match its payload length"));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&record[canonical_end..canonical_end + 32]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&record[canonical_end + 32..]);
    Ok(Entry {
        seq,
        prev: EntryHash(prev),
        time_us,
        signer,
        kind,
        payload: record[payload_start..canonical_end].to_vec(),
        hash: EntryHash(hash),
        signature,
    })
}

/// Builds and signs a stored record: what [`crate::Txn::append`] writes,
/// without any of its checks. For tools and tests that need to make
/// records (including deliberately bad ones); the ledger never writes
/// through it.
pub fn signed_record(
    seq: u64,
    prev: &EntryHash,
    time_us: i64,
    signer: &identity::Keypair,
    kind: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut record = canonical_bytes(seq, prev, time_us, &signer.public().to_bytes(), kind, payload);
    let hash = hash_of(&record);
    let signature = signer.sign(&signed_message(&hash));
    record.extend_from_slice(&hash.0);
    record.extend_from_slice(&signature.to_bytes());
    record
}

/// Checks that the stored hash matches the entry's bytes.
pub(crate) fn check_hash(entry: &Entry) -> Result<(), VerifyFailure> {
    if hash_of(&entry.canonical()) != entry.hash {
        return Err(VerifyFailure::HashMismatch);
    }
    Ok(())
}

/// Checks the signature strictly under the entry's own signer.
pub(crate) fn check_signature(entry: &Entry) -> Result<(), VerifyFailure> {
    let key = PublicKey::from_bytes(&entry.signer).map_err(|_| VerifyFailure::BadSigner)?;
    key.verify(&signed_message(&entry.hash), &Signature::from_bytes(entry.signature))
        .map_err(|_| VerifyFailure::BadSignature)
}

/// Checks one decoded entry on its own: hash, then signature.
pub(crate) fn check_self(entry: &Entry) -> Result<(), VerifyFailure> {
    check_hash(entry)?;
    check_signature(entry)
}

/// The stored record of a decoded entry (exactly the bytes it came from).
pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut record = entry.canonical();
    record.extend_from_slice(&entry.hash.0);
    record.extend_from_slice(&entry.signature);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Vec<u8> {
        let key = identity::Keypair::generate(identity::Role::Conductor);
        let signer = key.public().to_bytes();
        let canonical = canonical_bytes(3, &EntryHash([7; 32]), 1_700_000, &signer, "task.started", b"{}");
        let hash = hash_of(&canonical);
        let sig = key.sign(&signed_message(&hash));
        let mut rec = canonical;
        rec.extend_from_slice(&hash.0);
        rec.extend_from_slice(&sig.to_bytes());
        rec
    }

    #[test]
    fn encode_decode_round_trip_and_self_check() {
        let rec = record();
        let entry = decode(&rec).expect("decodes");
        assert_eq!(entry.seq, 3);
        assert_eq!(entry.kind, "task.started");
        assert_eq!(entry.payload, b"{}");
        check_self(&entry).expect("intact entry checks");
    }

    #[test]
    fn every_single_byte_flip_is_detected_and_nothing_panics() {
        let rec = record();
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x01;
            let detected = match decode(&bad) {
                Err(_) => true,
                Ok(entry) => check_self(&entry).is_err(),
            };
            assert!(detected, "flip at byte {i} went unnoticed");
        }
        for cut in 0..rec.len() {
            assert!(decode(&rec[..cut]).is_err(), "truncation at {cut} decoded");
        }
    }
}

//! Byte layouts of keys, records and postings, input checks and the
//! tokenizer. Everything stored is a compact binary form decoded without
//! allocating, so a recall touches a few hundred bytes per version.
//!
//! Fact key (both fact tables):
//! `space 0x00 subject 0x00 predicate 0x00 valid_from(8, BE, sign flipped) id(8, BE)`.
//! Names never contain control characters (checked on the way in), so
//! byte order equals (space, subject, predicate, valid_from, id) order and
//! every name prefix is a contiguous range.
//!
//! Record: `1 | recorded_at | valid_to | superseded_at` (i64 LE each,
//! [`OPEN`] for none) `| source length (u16 LE) | source | nonce | ciphertext+tag`.
//!
//! Posting key: `term 0x00 space 0x00 id(8, BE)`; value [`Posting`].

use std::collections::BTreeMap;

use crate::error::{MemoryError, corrupt};

/// Stands for "no end": an open valid interval, a version not superseded.
/// Real times are at most [`TIME_MAX`], so it never collides with one.
pub(crate) const OPEN: i64 = i64::MAX;

/// Earliest valid time accepted: 0001-01-01T00:00:00Z in Unix µs. Facts
/// may be about the past (a founding date); nothing needs earlier.
pub const TIME_MIN: i64 = -62_135_596_800_000_000;
/// Latest time accepted: 9999-12-31T23:59:59.999999Z in Unix µs. Keeps
/// every real time far from the [`OPEN`] sentinel and from overflow.
pub const TIME_MAX: i64 = 253_402_300_799_999_999;

/// Space, subject and predicate are identifiers, not content.
pub const NAME_BYTES_MAX: usize = 256;
/// Values are short text (a figure, a label, a few sentences); 16 KiB
/// bounds what one assert can add and what one recalled fact can weigh.
pub const VALUE_BYTES_MAX: usize = 16 << 10;
/// A source is a reference (a journal entry, a document id), not content.
pub const SOURCE_BYTES_MAX: usize = 1 << 10;
/// Words longer than this are not indexed: they are hashes, URLs or
/// base64, not something an agent searches by.
pub(crate) const TERM_BYTES_MAX: usize = 64;

const RECORD_FORMAT: u8 = 1;
const RECORD_HEADER: usize = 1 + 8 * 3 + 2;
pub(crate) const POSTING_BYTES: usize = 2 + 2 + 8 * 4;

/// A name must be 1..=[`NAME_BYTES_MAX`] bytes without control characters
/// (0x00 separates key parts; the rest would garble logs and journals).
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), MemoryError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(MemoryError::Invalid {
            field,
            reason: format!("must be 1..={NAME_BYTES_MAX} bytes, got {}", name.len()),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(MemoryError::Invalid { field, reason: "contains a control character".into() });
    }
    Ok(())
}

pub(crate) fn check_value(value: &str) -> Result<(), MemoryError> {
    if value.is_empty() || value.len() > VALUE_BYTES_MAX {
        return Err(MemoryError::Invalid {
            field: "value",
            reason: format!("must be 1..={VALUE_BYTES_MAX} bytes, got {}", value.len()),
        });
    }
    Ok(())
}

pub(crate) fn check_source(source: Option<&str>) -> Result<(), MemoryError> {
    let Some(source) = source else { return Ok(()) };
    if source.is_empty() || source.len() > SOURCE_BYTES_MAX {
        return Err(MemoryError::Invalid {
            field: "source",
            reason: format!("must be 1..={SOURCE_BYTES_MAX} bytes, got {}", source.len()),
        });
    }
    if source.chars().any(char::is_control) {
        return Err(MemoryError::Invalid { field: "source", reason: "contains a control character".into() });
    }
    Ok(())
}

pub(crate) fn check_time(field: &'static str, t: i64) -> Result<(), MemoryError> {
    if (TIME_MIN..=TIME_MAX).contains(&t) { Ok(()) } else { Err(MemoryError::TimeOutOfRange { field, value: t }) }
}

/// Checks a valid interval and returns its end with [`OPEN`] for none.
pub(crate) fn check_interval(from: i64, to: Option<i64>) -> Result<i64, MemoryError> {
    check_time("valid_from", from)?;
    match to {
        None => Ok(OPEN),
        Some(to) => {
            check_time("valid_to", to)?;
            if to <= from {
                return Err(MemoryError::EmptyInterval { from, to });
            }
            Ok(to)
        }
    }
}

pub(crate) fn open_to_option(t: i64) -> Option<i64> {
    (t != OPEN).then_some(t)
}

/// i64 -> 8 bytes whose byte order is the numeric order.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from_bytes(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// `a 0x00 b 0x00 ...`: the key prefix of everything under these names.
pub(crate) fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 16);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out
}

/// The first key after every key that starts with `prefix` (which ends in
/// the 0x00 separator).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    end
}

pub(crate) fn fact_key(space: &str, subject: &str, predicate: &str, valid_from: i64, id: u64) -> Vec<u8> {
    let mut key = prefix(&[space, subject, predicate]);
    key.extend_from_slice(&time_bytes(valid_from));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A decoded fact key, borrowing the stored bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FactKey<'a> {
    pub space: &'a str,
    pub subject: &'a str,
    pub predicate: &'a str,
    pub valid_from: i64,
    pub id: u64,
}

pub(crate) fn decode_key(key: &[u8]) -> Result<FactKey<'_>, MemoryError> {
    let bad = || corrupt("a fact key does not decode");
    if key.len() < 16 + 3 {
        return Err(bad());
    }
    let (names, tail) = key.split_at(key.len() - 16);
    let mut parts = names.split(|b| *b == 0);
    let mut next =
        || -> Result<&str, MemoryError> { std::str::from_utf8(parts.next().ok_or_else(bad)?).map_err(|_| bad()) };
    let (space, subject, predicate) = (next()?, next()?, next()?);
    let mut vf = [0u8; 8];
    vf.copy_from_slice(&tail[..8]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&tail[8..]);
    Ok(FactKey { space, subject, predicate, valid_from: time_from_bytes(vf), id: u64::from_be_bytes(id) })
}

/// A decoded record, borrowing the stored bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub recorded_at: i64,
    pub valid_to: i64,
    pub superseded_at: i64,
    pub source: Option<&'a str>,
    /// nonce followed by ciphertext and tag.
    pub sealed: &'a [u8],
}

fn le(bytes: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    i64::from_le_bytes(b)
}

pub(crate) fn encode_record(r: &Record<'_>) -> Vec<u8> {
    let source = r.source.unwrap_or("");
    let mut out = Vec::with_capacity(RECORD_HEADER + source.len() + r.sealed.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&r.recorded_at.to_le_bytes());
    out.extend_from_slice(&r.valid_to.to_le_bytes());
    out.extend_from_slice(&r.superseded_at.to_le_bytes());
    // Checked on the way in: a source is at most SOURCE_BYTES_MAX (< u16::MAX).
    out.extend_from_slice(&(source.len() as u16).to_le_bytes());
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(r.sealed);
    out
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record<'_>, MemoryError> {
    if bytes.len() < RECORD_HEADER || bytes[0] != RECORD_FORMAT {
        return Err(corrupt("a fact record does not decode"));
    }
    let source_len = usize::from(u16::from_le_bytes([bytes[25], bytes[26]]));
    let rest = &bytes[RECORD_HEADER..];
    if rest.len() < source_len {
        return Err(corrupt("a fact record is truncated"));
    }
    let (source, sealed) = rest.split_at(source_len);
    let source = if source.is_empty() {
        None
    } else {
        Some(std::str::from_utf8(source).map_err(|_| corrupt("a fact source is not UTF-8"))?)
    };
    Ok(Record { recorded_at: le(bytes, 1), valid_to: le(bytes, 9), superseded_at: le(bytes, 17), source, sealed })
}

/// The record with its superseded time set.
pub(crate) fn with_superseded(bytes: &[u8], at: i64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[17..25].copy_from_slice(&at.to_le_bytes());
    out
}

/// One posting: a term of one fact version, with the times that decide
/// whether a query can see it, so a search filters without loading facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Posting {
    /// Occurrences of the term in the value.
    pub tf: u16,
    /// Words in the value.
    pub len: u16,
    pub valid_from: i64,
    pub valid_to: i64,
    pub recorded_at: i64,
    pub superseded_at: i64,
}

impl Posting {
    pub(crate) fn encode(&self) -> [u8; POSTING_BYTES] {
        let mut out = [0u8; POSTING_BYTES];
        out[0..2].copy_from_slice(&self.tf.to_le_bytes());
        out[2..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..12].copy_from_slice(&self.valid_from.to_le_bytes());
        out[12..20].copy_from_slice(&self.valid_to.to_le_bytes());
        out[20..28].copy_from_slice(&self.recorded_at.to_le_bytes());
        out[28..36].copy_from_slice(&self.superseded_at.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Posting, MemoryError> {
        if bytes.len() != POSTING_BYTES {
            return Err(corrupt("a word posting does not decode"));
        }
        Ok(Posting {
            tf: u16::from_le_bytes([bytes[0], bytes[1]]),
            len: u16::from_le_bytes([bytes[2], bytes[3]]),
            valid_from: le(bytes, 4),
            valid_to: le(bytes, 12),
            recorded_at: le(bytes, 20),
            superseded_at: le(bytes, 28),
        })
    }
}

pub(crate) fn posting_key(term: &str, space: &str, id: u64) -> Vec<u8> {
    let mut key = prefix(&[term, space]);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub(crate) fn posting_id(key: &[u8]) -> Result<u64, MemoryError> {
    let at = key.len().checked_sub(8).ok_or_else(|| corrupt("a word posting key is truncated"))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[at..]);
    Ok(u64::from_be_bytes(id))
}

/// Whether a version with these times is seen by a query at `valid_at`
/// (any valid time when `None`) as known at `known_at` (as currently known
/// when `None`). Both intervals are half-open: [from, to).
pub(crate) fn visible(
    valid_from: i64,
    valid_to: i64,
    recorded_at: i64,
    superseded_at: i64,
    valid_at: Option<i64>,
    known_at: Option<i64>,
) -> bool {
    let valid = valid_at.is_none_or(|t| valid_from <= t && t < valid_to);
    let known = match known_at {
        None => superseded_at == OPEN,
        Some(tx) => recorded_at <= tx && tx < superseded_at,
    };
    valid && known
}

/// The words of a text: maximal runs of alphanumeric characters,
/// lowercased, with their counts, and the total number of words (both
/// saturate at u16::MAX, far above what a [`VALUE_BYTES_MAX`] value holds).
pub(crate) fn terms(text: &str) -> (BTreeMap<String, u16>, u16) {
    let mut counts: BTreeMap<String, u16> = BTreeMap::new();
    let mut total: u16 = 0;
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if !word.is_empty() {
            total = total.saturating_add(1);
            if word.len() <= TERM_BYTES_MAX {
                let n = counts.entry(std::mem::take(word)).or_insert(0);
                *n = n.saturating_add(1);
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    (counts, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bytes_sort_like_times() {
        let times = [TIME_MIN, -1, 0, 1, 1_700_000_000_000_000, TIME_MAX];
        for pair in times.windows(2) {
            assert!(time_bytes(pair[0]) < time_bytes(pair[1]));
            assert_eq!(time_from_bytes(time_bytes(pair[0])), pair[0]);
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_parts() {
        let key = fact_key("mission:a", "policy", "limit", -5, 42);
        let k = decode_key(&key).expect("decodes");
        assert_eq!((k.space, k.subject, k.predicate, k.valid_from, k.id), ("mission:a", "policy", "limit", -5, 42));
        // A shorter name sorts before a longer one it prefixes.
        assert!(fact_key("s", "ab", "p", 0, 0) < fact_key("s", "abc", "p", 0, 0));
        let p = prefix(&["s", "ab"]);
        assert!(fact_key("s", "ab", "zz", TIME_MAX, u64::MAX) < prefix_end(&p));
    }

    #[test]
    fn records_round_trip() {
        let bytes = encode_record(&Record {
            recorded_at: 7,
            valid_to: OPEN,
            superseded_at: OPEN,
            source: Some("journal:9"),
            sealed: b"xyz",
        });
        let superseded = with_superseded(&bytes, 11);
        let r = decode_record(&superseded).expect("decodes");
        assert_eq!(
            (r.recorded_at, r.valid_to, r.superseded_at, r.source, r.sealed),
            (7, OPEN, 11, Some("journal:9"), &b"xyz"[..])
        );
    }

    #[test]
    fn terms_are_lowercased_alphanumeric_runs() {
        let (counts, total) = terms("Paris, paris! Zürich 2024-05");
        assert_eq!(total, 5);
        let got: Vec<_> = counts.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        assert_eq!(got, [("05", 1), ("2024", 1), ("paris", 2), ("zürich", 1)]);
    }
}

//! Per-subject encryption: every value is XChaCha20-Poly1305 ciphertext
//! under a random 32-byte key kept per subject, so deleting that key
//! (crypto-shredding) makes every copy of the subject's values unreadable
//! at once: in the fact tables, in old redb pages, in backups, and in
//! journal entries that carry them as [`seal`]ed envelopes.
//!
//! XChaCha20's 24-byte nonce is drawn at random per value (no counter to
//! keep). The associated data binds a ciphertext to its subject (and, for
//! a stored fact, to its space and predicate), with a different context
//! string for facts and envelopes, so a ciphertext cannot be passed off
//! as another subject's, or an envelope as a stored value.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use redb::{ReadableTable, WriteTransaction};
use zeroize::Zeroizing;

use crate::error::{MemoryError, corrupt, storage};
use crate::read::Snapshot;
use crate::tables::{ERASED, KEYS};

const KEY_BYTES: usize = 32;
pub(crate) const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Envelopes are built around values of at most this many bytes: the
/// journal entries they go into are bounded too, and a bound here keeps a
/// hostile envelope from making [`open`] decode megabytes of hex.
pub const SEALED_PLAINTEXT_MAX: usize = 64 << 10;
/// Every envelope starts with this; the version lets a later format coexist.
pub const ENVELOPE_PREFIX: &str = "sealed:v1:";

const FACT_CONTEXT: &[u8] = b"conductor.memory.fact.v1\0";
const ENVELOPE_CONTEXT: &[u8] = b"conductor.memory.sealed.v1\0";

/// A subject key, wiped from memory when dropped.
pub(crate) type SubjectKey = Zeroizing<[u8; KEY_BYTES]>;

/// What decrypting a value gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Opened {
    /// The plaintext.
    Plain(String),
    /// The subject was erased: its key is gone and the value is unreadable.
    Erased,
}

impl Opened {
    /// The plaintext, or `None` when erased.
    pub fn plain(&self) -> Option<&str> {
        match self {
            Opened::Plain(s) => Some(s),
            Opened::Erased => None,
        }
    }
}

pub(crate) fn fact_ad(space: &str, subject: &str, predicate: &str) -> Vec<u8> {
    let mut ad = FACT_CONTEXT.to_vec();
    for part in [space, subject, predicate] {
        ad.extend_from_slice(part.as_bytes());
        ad.push(0);
    }
    ad
}

fn envelope_ad(subject: &str) -> Vec<u8> {
    let mut ad = ENVELOPE_CONTEXT.to_vec();
    ad.extend_from_slice(subject.as_bytes());
    ad
}

fn random(buf: &mut [u8]) -> Result<(), MemoryError> {
    OsRng.try_fill_bytes(buf).map_err(|e| MemoryError::Randomness(e.to_string()))
}

pub(crate) fn new_key() -> Result<SubjectKey, MemoryError> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    random(key.as_mut_slice())?;
    Ok(key)
}

/// `nonce || ciphertext || tag`.
pub(crate) fn encrypt(key: &SubjectKey, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MemoryError> {
    let mut nonce = [0u8; NONCE_BYTES];
    random(&mut nonce)?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: ad })
        .map_err(|_| MemoryError::Randomness("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The plaintext, or `None` when the ciphertext, nonce or associated data
/// was altered (or another key sealed it).
pub(crate) fn decrypt(key: &SubjectKey, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
    cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: ad }).ok().map(Zeroizing::new)
}

/// Decrypts a stored fact value; a failure here is corruption, not an
/// attacker's envelope, since only this crate writes fact records.
pub(crate) fn open_value(key: &SubjectKey, ad: &[u8], sealed: &[u8]) -> Result<String, MemoryError> {
    let plain = decrypt(key, ad, sealed).ok_or_else(|| corrupt("a fact value fails authentication"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| corrupt("a fact value is not UTF-8"))
}

pub(crate) fn key_from_stored(bytes: &[u8]) -> Result<SubjectKey, MemoryError> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    if bytes.len() != KEY_BYTES {
        return Err(corrupt("a subject key has the wrong length"));
    }
    key.copy_from_slice(bytes);
    Ok(key)
}

pub(crate) fn load_key(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    subject: &str,
) -> Result<Option<SubjectKey>, MemoryError> {
    match keys.get(subject).map_err(storage)? {
        Some(guard) => Ok(Some(key_from_stored(guard.value())?)),
        None => Ok(None),
    }
}

/// The subject's key, and whether it is new (drawn now, for the caller to
/// store); refused once the subject was erased.
pub(crate) fn key_for_writing(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    erased: &impl ReadableTable<&'static str, i64>,
    subject: &str,
) -> Result<(SubjectKey, bool), MemoryError> {
    if let Some(at) = erased.get(subject).map_err(storage)? {
        return Err(MemoryError::Erased { subject: subject.to_owned(), at: at.value() });
    }
    match load_key(keys, subject)? {
        Some(key) => Ok((key, false)),
        None => Ok((new_key()?, true)),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// Encrypts `plaintext` under `subject`'s key (created on first use) into
/// a self-describing text envelope, `sealed:v1:<hex of nonce, ciphertext
/// and tag>`, for the conductor to put in the journal instead of the
/// plaintext. After [`crate::Writer::erase_subject`] every such envelope
/// opens to [`Opened::Erased`], wherever copies of the journal went.
///
/// Refused for an erased subject and for a plaintext over
/// [`SEALED_PLAINTEXT_MAX`] bytes.
pub fn seal(txn: &WriteTransaction, subject: &str, plaintext: &str) -> Result<String, MemoryError> {
    crate::codec::check_name("subject", subject)?;
    if plaintext.len() > SEALED_PLAINTEXT_MAX {
        return Err(MemoryError::Invalid {
            field: "plaintext",
            reason: format!("{} bytes exceeds {SEALED_PLAINTEXT_MAX}", plaintext.len()),
        });
    }
    let mut keys = txn.open_table(KEYS).map_err(storage)?;
    let erased = txn.open_table(ERASED).map_err(storage)?;
    let (key, is_new) = key_for_writing(&keys, &erased, subject)?;
    if is_new {
        keys.insert(subject, key.as_slice()).map_err(storage)?;
    }
    let sealed = encrypt(&key, &envelope_ad(subject), plaintext.as_bytes())?;
    Ok(format!("{ENVELOPE_PREFIX}{}", hex_encode(&sealed)))
}

/// Opens an envelope made by [`seal`] for `subject`: the plaintext, or
/// [`Opened::Erased`] once the subject was erased (not an error: the
/// journal holding the envelope is still valid, the value is just gone).
///
/// A malformed envelope, one sealed for another subject, or an altered
/// one is [`MemoryError::Envelope`]; so is one for a subject that never
/// had a key.
pub fn open<S: Snapshot>(txn: &S, subject: &str, envelope: &str) -> Result<Opened, MemoryError> {
    crate::codec::check_name("subject", subject)?;
    let hex = envelope.strip_prefix(ENVELOPE_PREFIX).ok_or(MemoryError::Envelope("not a sealed:v1 envelope"))?;
    if hex.len() > 2 * (NONCE_BYTES + SEALED_PLAINTEXT_MAX + TAG_BYTES) {
        return Err(MemoryError::Envelope("longer than any sealed value"));
    }
    let sealed = hex_decode(hex).ok_or(MemoryError::Envelope("not lowercase hex"))?;
    let keys = txn.table(KEYS)?;
    let Some(key) = load_key(&keys, subject)? else {
        let erased = txn.table(ERASED)?;
        return match erased.get(subject).map_err(storage)? {
            Some(_) => Ok(Opened::Erased),
            None => Err(MemoryError::Envelope("no key for this subject")),
        };
    };
    let plain = decrypt(&key, &envelope_ad(subject), &sealed)
        .ok_or(MemoryError::Envelope("fails authentication (altered, or sealed for another subject)"))?;
    let text = String::from_utf8(plain.to_vec()).map_err(|_| MemoryError::Envelope("plaintext is not UTF-8"))?;
    Ok(Opened::Plain(text))
}

const BYTES_CONTEXT: &[u8] = b"conductor.memory.bytes.v1\0";

fn bytes_ad(subject: &str, label: &str) -> Vec<u8> {
    let mut ad = BYTES_CONTEXT.to_vec();
    ad.extend_from_slice(subject.as_bytes());
    ad.push(0);
    ad.extend_from_slice(label.as_bytes());
    ad
}

/// Encrypts `bytes` (a case's document, of any size) under `subject`'s key
/// (created on first use), bound to `label` (what the bytes are, such as
/// the document's hash), for storage outside the memory tables. After
/// [`crate::Writer::erase_subject`] they open to `None` with
/// [`open_bytes`]: crypto-shredded like the subject's facts. Refused for an
/// erased subject.
pub fn seal_bytes(txn: &WriteTransaction, subject: &str, label: &str, bytes: &[u8]) -> Result<Vec<u8>, MemoryError> {
    crate::codec::check_name("subject", subject)?;
    let mut keys = txn.open_table(KEYS).map_err(storage)?;
    let erased = txn.open_table(ERASED).map_err(storage)?;
    let (key, is_new) = key_for_writing(&keys, &erased, subject)?;
    if is_new {
        keys.insert(subject, key.as_slice()).map_err(storage)?;
    }
    encrypt(&key, &bytes_ad(subject, label), bytes)
}

/// Opens bytes made by [`seal_bytes`] for `subject` and `label`: `None`
/// once the subject was erased. Altered bytes, or bytes sealed for another
/// subject or label, are [`MemoryError::Envelope`].
pub fn open_bytes<S: Snapshot>(
    txn: &S,
    subject: &str,
    label: &str,
    sealed: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, MemoryError> {
    crate::codec::check_name("subject", subject)?;
    let keys = txn.table(KEYS)?;
    let Some(key) = load_key(&keys, subject)? else {
        let erased = txn.table(ERASED)?;
        return match erased.get(subject).map_err(storage)? {
            Some(_) => Ok(None),
            None => Err(MemoryError::Envelope("no key for this subject")),
        };
    };
    decrypt(&key, &bytes_ad(subject, label), sealed)
        .map(Some)
        .ok_or(MemoryError::Envelope("fails authentication (altered, or sealed for another subject or label)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex_encode(&bytes), "0001abff");
        assert_eq!(hex_decode("0001abff"), Some(bytes.to_vec()));
        assert_eq!(hex_decode("0001ABFF"), None);
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn a_value_opens_only_with_its_associated_data() {
        let key = new_key().expect("key");
        let sealed = encrypt(&key, b"ad", b"secret").expect("encrypt");
        assert_eq!(decrypt(&key, b"ad", &sealed).map(|p| p.to_vec()), Some(b"secret".to_vec()));
        assert!(decrypt(&key, b"other", &sealed).is_none());
        let other = new_key().expect("key");
        assert!(decrypt(&other, b"ad", &sealed).is_none());
    }
}

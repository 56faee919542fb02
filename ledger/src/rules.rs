//! Who may sign what: the journal's authorization rules.
//!
//! Every entry's signer must be a key the journal itself introduced, still
//! in force at that entry, whose role permits the entry's kind. Keys enter
//! the journal only through key events, all signed by the conductor key
//! in force:
//!
//! - `conductor.genesis` (seq 0 only) names the first conductor key;
//! - `key.registered` adds a key with a role (never `conductor`);
//! - `key.revoked` ends a key: entries after it by that key are invalid;
//! - `key.rotated` replaces a key by a new one of the same role; rotating
//!   the conductor key hands the conductor role to the new key.
//!
//! A key takes effect with the entry *after* the one that registers it,
//! and a revocation takes effect with the entry after it as well.
//!
//! The same logic runs in two places over two stores: when appending
//! (over the redb projection, so the conductor never writes an entry its
//! own verifier would reject) and when verifying (over an in-memory map
//! rebuilt from the entries alone, trusting no projection).

use std::collections::HashMap;

use identity::Role;
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, EntryHash};
use crate::error::VerifyFailure;
use crate::kind::Kind;

pub(crate) const GENESIS: &str = Kind::Genesis.as_str();
pub(crate) const KEY_REGISTERED: &str = Kind::KeyRegistered.as_str();
pub(crate) const KEY_REVOKED: &str = Kind::KeyRevoked.as_str();
pub(crate) const KEY_ROTATED: &str = Kind::KeyRotated.as_str();
pub(crate) const CHECKPOINT: &str = Kind::JournalCheckpoint.as_str();

/// The role that may sign `kind`, or `None` for a kind format 1 lacks.
/// The format's table of kinds is [`Kind`]; the same table is in
/// `docs/journal-format.md`, section 5, and `tests/spec.rs` fails when the
/// two differ.
pub fn signer_role(kind: &str) -> Option<Role> {
    Kind::parse(kind).map(Kind::signer)
}

/// Every kind of format 1 with the role that signs it.
pub fn kinds() -> impl Iterator<Item = (&'static str, Role)> {
    Kind::ALL.iter().map(|kind| (kind.as_str(), kind.signer()))
}

/// What the journal says about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public key, hex.
    pub public_key: String,
    #[serde(with = "role_name")]
    pub role: Role,
    /// The entry that introduced the key (genesis, registration or rotation).
    pub registered_seq: u64,
    /// The entry that revoked (or rotated away) the key, if any.
    pub revoked_seq: Option<u64>,
}

impl KeyRecord {
    /// Whether an entry at `seq` may be signed by this key.
    pub fn in_force_at(&self, seq: u64) -> bool {
        seq > self.registered_seq && self.revoked_seq.is_none_or(|r| seq <= r)
    }
}

mod role_name {
    use identity::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the key book lives: a map while verifying, redb while appending.
pub(crate) trait KeyStore {
    type Error: From<VerifyFailure>;
    fn get(&self, public: &[u8; 32]) -> Result<Option<KeyRecord>, Self::Error>;
    fn put(&mut self, public: &[u8; 32], record: &KeyRecord) -> Result<(), Self::Error>;
    fn conductor(&self) -> Result<Option<[u8; 32]>, Self::Error>;
    fn set_conductor(&mut self, public: &[u8; 32]) -> Result<(), Self::Error>;
}

/// The in-memory key book a verifier rebuilds from the entries.
#[derive(Debug, Default)]
pub(crate) struct KeyBook {
    keys: HashMap<[u8; 32], KeyRecord>,
    conductor: Option<[u8; 32]>,
}

impl KeyBook {
    pub fn records(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values()
    }
}

impl KeyStore for KeyBook {
    type Error = VerifyFailure;
    fn get(&self, public: &[u8; 32]) -> Result<Option<KeyRecord>, VerifyFailure> {
        Ok(self.keys.get(public).cloned())
    }
    fn put(&mut self, public: &[u8; 32], record: &KeyRecord) -> Result<(), VerifyFailure> {
        self.keys.insert(*public, record.clone());
        Ok(())
    }
    fn conductor(&self) -> Result<Option<[u8; 32]>, VerifyFailure> {
        Ok(self.conductor)
    }
    fn set_conductor(&mut self, public: &[u8; 32]) -> Result<(), VerifyFailure> {
        self.conductor = Some(*public);
        Ok(())
    }
}

#[derive(Deserialize)]
struct GenesisPayload {
    format: u32,
    conductor_key: String,
}

#[derive(Deserialize)]
struct RegisteredPayload {
    public_key: String,
    role: String,
}

#[derive(Deserialize)]
struct RevokedPayload {
    public_key: String,
}

#[derive(Deserialize)]
struct RotatedPayload {
    old_key: String,
    new_key: String,
}

#[derive(Deserialize)]
struct CheckpointPayload {
    entries: u64,
    head: String,
}

fn key_event(why: impl Into<String>) -> VerifyFailure {
    VerifyFailure::BadKeyEvent(why.into())
}

fn parse<T: serde::de::DeserializeOwned>(kind: &str, payload: &[u8]) -> Result<T, VerifyFailure> {
    crate::json::object(payload).map_err(|e| VerifyFailure::BadPayload(format!("`{kind}` payload: {e}")))
}

/// A key field: 64 lower-case hex digits naming a valid key.
fn public_from_hex(text: &str) -> Result<[u8; 32], VerifyFailure> {
    crate::json::public_key(text).map_err(key_event)
}

/// The parts of an entry the rules look at; an entry not yet written has
/// no hash or signature, so the rules never see those.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub seq: u64,
    pub prev: &'a EntryHash,
    pub signer: &'a [u8; 32],
    pub kind: &'a str,
    pub payload: &'a [u8],
}

impl<'a> From<&'a Entry> for Head<'a> {
    fn from(e: &'a Entry) -> Self {
        Head { seq: e.seq, prev: &e.prev, signer: &e.signer, kind: &e.kind, payload: &e.payload }
    }
}

/// Checks that the entry's signer may sign it, then applies its effect on
/// the key book (for key events) or checks its claims (for checkpoints).
/// On error the store is unchanged.
pub(crate) fn admit<S: KeyStore>(store: &mut S, e: Head<'_>) -> Result<(), S::Error> {
    let Some(required) = signer_role(e.kind) else {
        return Err(VerifyFailure::UnknownKind(e.kind.to_owned()).into());
    };
    if e.seq == 0 || e.kind == GENESIS {
        return genesis(store, e);
    }
    let Some(signer) = store.get(e.signer)? else {
        return Err(VerifyFailure::UnknownKey(hex::encode(e.signer)).into());
    };
    if let Some(revoked) = signer.revoked_seq.filter(|r| e.seq > *r) {
        return Err(VerifyFailure::RevokedKey { key: signer.public_key, revoked_seq: revoked }.into());
    }
    if e.seq <= signer.registered_seq {
        // Cannot happen for a well-formed chain; kept so the rule is total.
        return Err(VerifyFailure::UnknownKey(signer.public_key).into());
    }
    if signer.role != required {
        return Err(VerifyFailure::WrongRole { kind: e.kind.to_owned(), required, actual: signer.role }.into());
    }
    if required == Role::Conductor && store.conductor()?.as_ref() != Some(e.signer) {
        // A rotated-away conductor key is revoked, so this is only reached
        // by a store that lost its conductor row.
        return Err(VerifyFailure::UnknownKey(signer.public_key).into());
    }
    match e.kind {
        KEY_REGISTERED => {
            let p: RegisteredPayload = parse(e.kind, e.payload)?;
            let public = public_from_hex(&p.public_key)?;
            let role: Role = p.role.parse().map_err(|err| key_event(format!("{err}")))?;
            if role == Role::Conductor {
                return Err(
                    key_event("a conductor key is introduced only by genesis or rotation, not registration").into()
                );
            }
            if store.get(&public)?.is_some() {
                return Err(key_event(format!("key {} is already known to the journal", p.public_key)).into());
            }
            store.put(
                &public,
                &KeyRecord { public_key: hex::encode(public), role, registered_seq: e.seq, revoked_seq: None },
            )
        }
        KEY_REVOKED => {
            let p: RevokedPayload = parse(e.kind, e.payload)?;
            let public = public_from_hex(&p.public_key)?;
            let mut record = active(store, &public, e.seq)?;
            if record.role == Role::Conductor {
                return Err(key_event("the conductor key is replaced by rotation, not revoked").into());
            }
            record.revoked_seq = Some(e.seq);
            store.put(&public, &record)
        }
        KEY_ROTATED => {
            let p: RotatedPayload = parse(e.kind, e.payload)?;
            let old = public_from_hex(&p.old_key)?;
            let new = public_from_hex(&p.new_key)?;
            let mut record = active(store, &old, e.seq)?;
            if store.get(&new)?.is_some() {
                return Err(key_event(format!("new key {} is already known to the journal", p.new_key)).into());
            }
            if record.role == Role::Conductor {
                if e.signer != &old {
                    return Err(key_event("only the conductor key in force may rotate itself").into());
                }
                store.set_conductor(&new)?;
            }
            let role = record.role;
            record.revoked_seq = Some(e.seq);
            store.put(&old, &record)?;
            store.put(&new, &KeyRecord { public_key: hex::encode(new), role, registered_seq: e.seq, revoked_seq: None })
        }
        CHECKPOINT => {
            let p: CheckpointPayload = parse(e.kind, e.payload)?;
            if p.entries != e.seq || p.head != e.prev.to_string() {
                return Err(VerifyFailure::BadPayload(format!(
                    "checkpoint claims {} entries with head {}, but it follows {} entries with head {}",
                    p.entries, p.head, e.seq, e.prev
                ))
                .into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn genesis<S: KeyStore>(store: &mut S, e: Head<'_>) -> Result<(), S::Error> {
    if e.seq != 0 {
        return Err(key_event("`conductor.genesis` may only be entry 0").into());
    }
    if e.kind != GENESIS {
        return Err(key_event(format!("entry 0 must be `conductor.genesis`, found `{}`", e.kind)).into());
    }
    let p: GenesisPayload = parse(e.kind, e.payload)?;
    if p.format != crate::entry::FORMAT_VERSION {
        return Err(key_event(format!(
            "journal format {} is not supported (this verifier reads format {})",
            p.format,
            crate::entry::FORMAT_VERSION
        ))
        .into());
    }
    let public = public_from_hex(&p.conductor_key)?;
    if &public != e.signer {
        return Err(key_event("genesis must be signed by the conductor key it declares").into());
    }
    // Genesis is its own authority: the key signs the entry that declares
    // it, so it is in force from entry 0 on (registered_seq is "before 0").
    store.put(
        &public,
        &KeyRecord { public_key: hex::encode(public), role: Role::Conductor, registered_seq: 0, revoked_seq: None },
    )?;
    store.set_conductor(&public)
}

fn active<S: KeyStore>(store: &S, public: &[u8; 32], seq: u64) -> Result<KeyRecord, S::Error> {
    match store.get(public)? {
        None => Err(key_event(format!("key {} is not known to the journal", hex::encode(public))).into()),
        Some(r) if !r.in_force_at(seq) => Err(key_event(format!("key {} is already revoked", r.public_key)).into()),
        Some(r) => Ok(r),
    }
}

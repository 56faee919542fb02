//! Entries signed by a key this process does not hold, such as a
//! reviewer's key that never leaves their browser. The journal format and
//! the verifier are unchanged: such an entry is an ordinary entry whose
//! signature was made elsewhere. It is written in two passes over the same
//! operations:
//!
//! 1. **Capture.** Run the operations in a [`crate::Ledger::write`] with a
//!    [`RemoteKey::capture`] key ([`crate::Txn::append_remote`],
//!    [`crate::Txn::extend_remote`]). Each entry for the key is checked and
//!    hashed exactly as it would be written, and staged so the entries after
//!    it get the right sequence numbers; [`RemoteKey::captured`] then lists
//!    what must be signed. The closure must return an error so the
//!    transaction rolls back: an entry captured without a signature can never
//!    be committed ([`RemoteSignError::Unsigned`]).
//! 2. **Signed.** The key's holder signs each [`PreparedEntry::hash`] (the
//!    message is [`crate::entry::signed_message`] of it). Run the same
//!    operations, with the same times and payloads, with a
//!    [`RemoteKey::signed`] key holding the signatures in order. Each entry
//!    must hash exactly as prepared ([`RemoteSignError::Moved`] if the
//!    journal changed meanwhile) and its signature must pass the verifier's
//!    strict check ([`RemoteSignError::BadSignature`]); it is then written
//!    with that signature. Check [`RemoteKey::unused`] is 0 before letting
//!    the transaction commit.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use identity::{PublicKey, Role, Signature};

use crate::entry::{self, EntryHash};
use crate::error::{LedgerError, RemoteSignError};

/// An entry prepared for a remote key to sign, as the capture pass found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEntry {
    pub seq: u64,
    pub kind: String,
    /// The entry's time: the signed pass must use the same.
    pub time_us: i64,
    /// The entry's canonical bytes (`docs/journal-format.md` §1), for the
    /// signer to inspect and hash again before signing.
    pub canonical: Vec<u8>,
    /// What the signer signs, as [`crate::entry::signed_message`].
    pub hash: EntryHash,
}

/// One entry's signature by a remote key, with the seq and hash it was
/// prepared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedEntry {
    pub seq: u64,
    pub hash: EntryHash,
    /// The Ed25519 signature (`R ‖ S`) of `signed_message(hash)`.
    pub signature: [u8; 64],
}

/// A signing key held elsewhere: its public half, and either the entries
/// captured for it or the signatures to write them with (see the module
/// docs). Shared by reference with the operations of one transaction.
#[derive(Debug)]
pub struct RemoteKey {
    public: PublicKey,
    role: Role,
    mode: Mutex<Mode>,
}

#[derive(Debug)]
enum Mode {
    Capture(Vec<PreparedEntry>),
    Signed(VecDeque<SignedEntry>),
}

/// What staging an entry for a [`RemoteKey`] decided.
pub(crate) enum Remote {
    /// Captured: the entry must never be committed.
    Captured,
    /// The given signature, verified.
    Signed([u8; 64]),
}

impl RemoteKey {
    /// A key whose entries are captured for signing, never written.
    pub fn capture(public: PublicKey, role: Role) -> Self {
        RemoteKey { public, role, mode: Mutex::new(Mode::Capture(Vec::new())) }
    }

    /// A key whose entries are written with `entries`' signatures, one per
    /// entry staged for it, in order.
    pub fn signed(public: PublicKey, role: Role, entries: Vec<SignedEntry>) -> Self {
        RemoteKey { public, role, mode: Mutex::new(Mode::Signed(entries.into())) }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The role the key was issued for (the journal's registration is what
    /// authorizes it, as for a held key).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The entries captured so far, in order (none for a signed key).
    pub fn captured(&self) -> Vec<PreparedEntry> {
        match &*self.mode() {
            Mode::Capture(captured) => captured.clone(),
            Mode::Signed(_) => Vec::new(),
        }
    }

    /// How many given signatures no entry has used yet (0 for a capturing
    /// key). Anything but 0 when the operations are done means they wrote
    /// fewer entries than were signed: refuse rather than commit.
    pub fn unused(&self) -> usize {
        match &*self.mode() {
            Mode::Capture(_) => 0,
            Mode::Signed(queue) => queue.len(),
        }
    }

    fn mode(&self) -> MutexGuard<'_, Mode> {
        // The state is a list pushed or popped whole: a panic elsewhere
        // cannot have left it half changed.
        self.mode.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Captures the entry `canonical` (hashing to `hash`, at `seq`), or
    /// takes the next given signature after checking it is for this very
    /// entry and verifies strictly. A refused signature stays unused.
    pub(crate) fn take(
        &self,
        seq: u64,
        kind: &str,
        time_us: i64,
        canonical: &[u8],
        hash: EntryHash,
    ) -> Result<Remote, LedgerError> {
        let mut mode = self.mode();
        let queue = match &mut *mode {
            Mode::Capture(captured) => {
                captured.push(PreparedEntry {
                    seq,
                    kind: kind.to_owned(),
                    time_us,
                    canonical: canonical.to_vec(),
                    hash,
                });
                return Ok(Remote::Captured);
            }
            Mode::Signed(queue) => queue,
        };
        let Some(next) = queue.front() else {
            return Err(RemoteSignError::Missing { seq, key: self.public.key_id() }.into());
        };
        if next.seq != seq || next.hash != hash {
            return Err(RemoteSignError::Moved { expected_seq: next.seq, actual_seq: seq }.into());
        }
        self.public
            .verify(&entry::signed_message(&hash), &Signature::from_bytes(next.signature))
            .map_err(|_| RemoteSignError::BadSignature { seq, key: self.public.key_id() })?;
        let signature = next.signature;
        queue.pop_front();
        Ok(Remote::Signed(signature))
    }
}

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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use identity::Keypair;
    use serde_json::json;

    use super::*;
    use crate::error::VerifyFailure;
    use crate::{Account, Ledger, Txn};

    const FAR: i64 = 1_000_000;

    /// A ledger with a conductor (genesis) and a registered reviewer.
    fn setup(name: &str) -> (Ledger, PathBuf, Keypair, Keypair) {
        let path = std::env::temp_dir().join(format!("remote-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = Ledger::open(&path).expect("open");
        let conductor = Keypair::generate(Role::Conductor);
        let reviewer = Keypair::generate(Role::Reviewer);
        ledger.write(|t| t.genesis(&conductor, json!({}), 0)).expect("genesis");
        ledger
            .write(|t| t.register_key(&conductor, &reviewer.public(), Role::Reviewer, json!({"name": "R"}), 1))
            .expect("register reviewer");
        (ledger, path, conductor, reviewer)
    }

    /// What the capture pass's closure returns to roll back.
    fn roll_back() -> LedgerError {
        LedgerError::BadEntry("prepared for signing; rolled back".into())
    }

    /// The browser's part: signs each prepared hash with the real key.
    fn sign_all(key: &Keypair, prepared: &[PreparedEntry]) -> Vec<SignedEntry> {
        prepared
            .iter()
            .map(|p| SignedEntry {
                seq: p.seq,
                hash: p.hash,
                signature: key.sign(&entry::signed_message(&p.hash)).to_bytes(),
            })
            .collect()
    }

    /// A gate decision: the reviewer's verdict, then the conductor's
    /// bookkeeping after it in the same transaction.
    fn decide(t: &mut Txn, reviewer: &RemoteKey, conductor: &Keypair) -> Result<(u64, u64), LedgerError> {
        let verdict = json!({"gate_id": "g-deploy", "gate": "deploy", "verdict": "approve"});
        let (gate, _) = t.append_remote(reviewer, "gate.decided", &verdict, 20)?;
        let (task, _) = t.append(conductor, "task.decided", &json!({"mission": "m", "task": 1}), 20)?;
        Ok((gate, task))
    }

    /// Runs `decide` with a capturing key and rolls it back.
    fn capture(ledger: &Ledger, conductor: &Keypair, reviewer: &Keypair) -> (Vec<PreparedEntry>, (u64, u64)) {
        let key = RemoteKey::capture(reviewer.public(), Role::Reviewer);
        let mut seqs = None;
        let err = ledger
            .write(|t| -> Result<(), LedgerError> {
                seqs = Some(decide(t, &key, conductor)?);
                Err(roll_back())
            })
            .expect_err("the capture pass never commits");
        assert!(matches!(&err, LedgerError::BadEntry(why) if why.contains("rolled back")), "{err}");
        assert_eq!(key.unused(), 0);
        (key.captured(), seqs.expect("the operations ran"))
    }

    /// Runs `decide` with a signed key, refusing leftover signatures.
    fn run_signed(ledger: &Ledger, conductor: &Keypair, key: &RemoteKey) -> Result<(u64, u64), LedgerError> {
        ledger.write(|t| {
            let seqs = decide(t, key, conductor)?;
            if key.unused() != 0 {
                return Err(LedgerError::BadEntry(format!("{} signatures left unused", key.unused())));
            }
            Ok(seqs)
        })
    }

    #[test]
    fn a_captured_entry_signed_elsewhere_is_written_with_that_signature() {
        let (ledger, path, conductor, reviewer) = setup("round-trip");
        let head = ledger.head().expect("head");
        let (prepared, (gate, task)) = capture(&ledger, &conductor, &reviewer);
        assert_eq!(ledger.head().expect("head"), head, "the capture pass wrote nothing");
        assert_eq!((gate, task), (head.0, head.0 + 1), "the conductor's entry follows the reviewer's");
        assert_eq!(prepared.len(), 1);
        let p = &prepared[0];
        assert_eq!((p.seq, p.kind.as_str(), p.time_us), (gate, "gate.decided", 20));
        assert_eq!(entry::hash_of(&p.canonical), p.hash, "the canonical bytes are what was hashed");

        let given = sign_all(&reviewer, &prepared);
        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, given.clone());
        let seqs = run_signed(&ledger, &conductor, &key).expect("the signed pass commits");
        assert_eq!(seqs, (gate, task), "the same seqs in both passes");
        assert_eq!(key.unused(), 0);
        assert!(key.captured().is_empty());

        let entries = ledger.entries(gate, 10).expect("entries");
        assert_eq!(entries.len(), 2);
        let written = &entries[0];
        assert_eq!(written.kind, "gate.decided");
        assert_eq!(written.signer, reviewer.public().to_bytes());
        assert_eq!((written.hash, written.signature), (p.hash, given[0].signature));
        assert_eq!(written.canonical(), p.canonical);
        assert_eq!((entries[1].kind.as_str(), entries[1].signer), ("task.decided", conductor.public().to_bytes()));
        let report = ledger.verify().expect("the verifier accepts the remote signature");
        assert!(report.signers.contains(&reviewer.public().key_id()));
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn signatures_for_a_journal_that_moved_are_refused() {
        let (ledger, path, conductor, reviewer) = setup("moved");
        let (prepared, (gate, _)) = capture(&ledger, &conductor, &reviewer);
        ledger.write(|t| t.append(&conductor, "task.started", &json!({}), 21)).expect("another entry first");
        let head = ledger.head().expect("head");
        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, sign_all(&reviewer, &prepared));
        let err = run_signed(&ledger, &conductor, &key).expect_err("moved");
        assert!(
            matches!(err, LedgerError::Remote(RemoteSignError::Moved { expected_seq, actual_seq })
                if expected_seq == gate && actual_seq == gate + 1),
            "{err}"
        );
        assert_eq!(ledger.head().expect("head"), head, "nothing written");
        assert_eq!(key.unused(), 1, "a refused signature is not used");
        // Same seq, different entry before it: still moved.
        let (prepared, _) = capture(&ledger, &conductor, &reviewer);
        let mut given = sign_all(&reviewer, &prepared);
        ledger.write(|t| t.append(&conductor, "task.started", &json!({}), 22)).expect("another entry");
        given[0].seq += 1;
        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, given);
        let err = run_signed(&ledger, &conductor, &key).expect_err("moved");
        assert!(matches!(err, LedgerError::Remote(RemoteSignError::Moved { .. })), "{err}");
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_signature_that_does_not_verify_is_refused() {
        let (ledger, path, conductor, reviewer) = setup("bad-signature");
        let other = Keypair::generate(Role::Reviewer);
        ledger
            .write(|t| t.register_key(&conductor, &other.public(), Role::Reviewer, json!({}), 2))
            .expect("another reviewer");
        let head = ledger.head().expect("head");
        let (prepared, (gate, _)) = capture(&ledger, &conductor, &reviewer);
        let by_other = sign_all(&other, &prepared);
        let mut flipped = sign_all(&reviewer, &prepared);
        flipped[0].signature[7] ^= 0x01;
        // The same signature with S + L (L the group order): the same
        // equation holds, but strict verification refuses a second
        // signature for one message, as the verifier does.
        let mut s_plus_l = sign_all(&reviewer, &prepared);
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s, l) in s_plus_l[0].signature[32..].iter_mut().zip(L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        for given in [by_other, flipped, s_plus_l] {
            let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, given);
            let err = run_signed(&ledger, &conductor, &key).expect_err("bad signature");
            assert!(
                matches!(&err, LedgerError::Remote(RemoteSignError::BadSignature { seq, key })
                    if *seq == gate && *key == reviewer.public().key_id()),
                "{err}"
            );
            assert_eq!(ledger.head().expect("head"), head, "nothing written");
        }
        // The real signature still works afterwards.
        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, sign_all(&reviewer, &prepared));
        run_signed(&ledger, &conductor, &key).expect("signed");
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn too_few_signatures_fail_and_too_many_are_left_unused() {
        let (ledger, path, _, reviewer) = setup("count");
        let head = ledger.head().expect("head");
        let verdicts = |t: &mut Txn, key: &RemoteKey| -> Result<(), LedgerError> {
            t.append_remote(key, "gate.voted", &json!({"vote": 1}), 30)?;
            t.append_remote(key, "gate.decided", &json!({"gate_id": "g-count", "verdict": "approve"}), 30)?;
            Ok(())
        };
        let key = RemoteKey::capture(reviewer.public(), Role::Reviewer);
        // A capturing pass: the write always rolls back.
        ledger.write(|t| verdicts(t, &key).and(Err::<(), _>(roll_back()))).expect_err("rolled back");
        let prepared = key.captured();
        assert_eq!(prepared.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![head.0, head.0 + 1]);
        let given = sign_all(&reviewer, &prepared);

        let short = RemoteKey::signed(reviewer.public(), Role::Reviewer, given[..1].to_vec());
        let err = ledger.write(|t| verdicts(t, &short)).expect_err("one signature short");
        assert!(
            matches!(&err, LedgerError::Remote(RemoteSignError::Missing { seq, .. }) if *seq == head.0 + 1),
            "{err}"
        );
        assert_eq!(ledger.head().expect("head"), head, "nothing written");

        let mut extra = given.clone();
        extra.push(given[1]);
        let long = RemoteKey::signed(reviewer.public(), Role::Reviewer, extra);
        let err = ledger
            .write(|t| {
                verdicts(t, &long)?;
                match long.unused() {
                    0 => Ok(()),
                    n => Err(LedgerError::BadEntry(format!("{n} signatures left unused"))),
                }
            })
            .expect_err("the caller refuses leftover signatures");
        assert_eq!(long.unused(), 1, "{err}");
        assert_eq!(ledger.head().expect("head"), head, "nothing written");

        let exact = RemoteKey::signed(reviewer.public(), Role::Reviewer, given);
        ledger.write(|t| verdicts(t, &exact)).expect("exactly as many");
        assert_eq!(exact.unused(), 0);
        assert_eq!(ledger.head().expect("head").0, head.0 + 2);
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn capture_checks_the_key_and_the_kind_like_append() {
        let (ledger, path, conductor, reviewer) = setup("roles");
        let agent = Keypair::generate(Role::Agent);
        ledger.write(|t| t.register_key(&conductor, &agent.public(), Role::Agent, json!({}), 2)).expect("agent");
        let as_agent = RemoteKey::capture(agent.public(), Role::Agent);
        let err = ledger.write(|t| t.append_remote(&as_agent, "gate.decided", &json!({}), 3)).expect_err("role");
        assert!(matches!(err, LedgerError::Unauthorized(VerifyFailure::WrongRole { .. })), "{err}");
        // An agent key claiming to be a reviewer's is judged by its registration.
        let claims = RemoteKey::capture(agent.public(), Role::Reviewer);
        let err = ledger.write(|t| t.append_remote(&claims, "gate.decided", &json!({}), 3)).expect_err("role");
        assert!(matches!(err, LedgerError::Unauthorized(VerifyFailure::WrongRole { .. })), "{err}");
        let stranger = RemoteKey::capture(Keypair::generate(Role::Reviewer).public(), Role::Reviewer);
        let err = ledger.write(|t| t.append_remote(&stranger, "gate.decided", &json!({}), 3)).expect_err("unknown");
        assert!(matches!(err, LedgerError::Unauthorized(VerifyFailure::UnknownKey(_))), "{err}");
        let key = RemoteKey::capture(reviewer.public(), Role::Reviewer);
        for reserved in ["budget.extended", "key.registered", "journal.checkpoint"] {
            let err = ledger.write(|t| t.append_remote(&key, reserved, &json!({}), 3)).expect_err("reserved");
            assert!(matches!(err, LedgerError::BadEntry(_)), "{reserved}: {err}");
        }
        let err = ledger.write(|t| t.extend_remote(&as_agent, "m", 1, "", 3)).expect_err("not a reviewer");
        assert!(matches!(err, LedgerError::BadEntry(_)), "{err}");
        for refused in [&as_agent, &claims, &stranger, &key] {
            assert!(refused.captured().is_empty(), "nothing refused is captured");
        }
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_captured_entry_is_never_committed() {
        let (ledger, path, conductor, reviewer) = setup("never-sealed");
        let head = ledger.head().expect("head");
        let key = RemoteKey::capture(reviewer.public(), Role::Reviewer);
        // A caller that forgets to roll back.
        let err = ledger.write(|t| decide(t, &key, &conductor)).expect_err("refused at commit");
        assert!(matches!(err, LedgerError::Remote(RemoteSignError::Unsigned { seq }) if seq == head.0), "{err}");
        // Nor through an on-demand checkpoint, which seals early.
        let err = ledger
            .write(|t| {
                decide(t, &key, &conductor)?;
                t.checkpoint(&conductor, 21)
            })
            .expect_err("refused at the checkpoint");
        assert!(matches!(err, LedgerError::Remote(RemoteSignError::Unsigned { .. })), "{err}");
        assert_eq!(ledger.head().expect("head"), head, "nothing written");
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn an_automatic_checkpoint_after_a_remote_entry_is_the_conductors() {
        let (mut ledger, path, conductor, reviewer) = setup("auto-checkpoint");
        let conductor = Arc::new(conductor);
        // The journal holds 2 entries; the reviewer's is the 3rd, so a
        // checkpoint follows it.
        ledger.checkpoint_every(conductor.clone(), 3);
        let (prepared, (gate, task)) = capture(&ledger, &conductor, &reviewer);
        assert_eq!((gate, task), (2, 4), "the checkpoint takes seq 3");
        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, sign_all(&reviewer, &prepared));
        assert_eq!(run_signed(&ledger, &conductor, &key).expect("signed"), (2, 4));
        let entries = ledger.entries(2, 10).expect("entries");
        let signers: Vec<(&str, [u8; 32])> = entries.iter().map(|e| (e.kind.as_str(), e.signer)).collect();
        assert_eq!(
            signers,
            vec![
                ("gate.decided", reviewer.public().to_bytes()),
                ("journal.checkpoint", conductor.public().to_bytes()),
                ("task.decided", conductor.public().to_bytes()),
            ]
        );
        ledger.verify().expect("verifies");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_remote_extension_round_trips_and_is_never_batched() {
        let (mut ledger, path, conductor, reviewer) = setup("extend");
        ledger.batch_postings(true);
        ledger.write(|t| t.open_account(&conductor, "m", None, Some(100), 2)).expect("account");
        // Two reservations around the extension; the second needs it.
        let grant = |t: &mut Txn, key: &RemoteKey| -> Result<Account, LedgerError> {
            t.reserve(&conductor, "m", 60, FAR, json!({"call": 1}), 3)?;
            let raised = t.extend_remote(key, "m", 50, "approved overrun", 3)?;
            t.reserve(&conductor, "m", 80, FAR, json!({"call": 2}), 3)?;
            Ok(raised)
        };
        let head = ledger.head().expect("head");
        let capturing = RemoteKey::capture(reviewer.public(), Role::Reviewer);
        // A capturing pass: the write always rolls back.
        ledger.write(|t| grant(t, &capturing).and(Err::<(), _>(roll_back()))).expect_err("rolled back");
        assert_eq!(ledger.head().expect("head"), head, "the capture pass wrote nothing");
        assert_eq!(ledger.account("m").expect("m").limit, Some(100), "nor changed a balance");
        let prepared = capturing.captured();
        assert_eq!(prepared.len(), 1);
        assert_eq!((prepared[0].seq, prepared[0].kind.as_str()), (head.0 + 1, "budget.extended"));

        let key = RemoteKey::signed(reviewer.public(), Role::Reviewer, sign_all(&reviewer, &prepared));
        let raised = ledger.write(|t| grant(t, &key)).expect("signed");
        assert_eq!(raised.limit, Some(150));
        assert_eq!(key.unused(), 0);
        let kinds: Vec<(String, [u8; 32])> =
            ledger.entries(head.0, 10).expect("entries").into_iter().map(|e| (e.kind, e.signer)).collect();
        let (c, r) = (conductor.public().to_bytes(), reviewer.public().to_bytes());
        // The extension splits the batch, and a lone posting is its own entry.
        assert_eq!(
            kinds,
            vec![("budget.reserved".into(), c), ("budget.extended".into(), r), ("budget.reserved".into(), c)]
        );
        let m = ledger.account("m").expect("m");
        assert_eq!((m.limit, m.pending, m.settled), (Some(150), 140, 0));
        let report = ledger.verify().expect("the balances replay");
        assert_eq!(report.budget, vec![("m".to_owned(), m)]);
        std::fs::remove_file(path).expect("cleanup");
    }
}

//! Sign-in challenges that the server does not store until they are used.
//!
//! A challenge used to be a random value kept in a table until it was
//! answered, and anyone who could reach the port could fill that table:
//! 4,200 unauthenticated requests in 6.4 s left every reviewer with
//! `503` until the flood stopped. Limits per client address would not
//! have helped much: on loopback, and behind the TLS proxy that
//! `--allow-remote` requires, every client has the same address.
//!
//! So issuing a challenge stores nothing. A challenge carries its own
//! expiry and a keyed BLAKE3 tag under a key this process draws at start
//! (and forgets when it stops), so the server recognises its own
//! challenges without remembering them, and anonymous requests have no
//! table to fill. What is remembered is a challenge that a registered,
//! unrevoked key answered with a valid signature, until it expires, so it
//! cannot be used twice: only people who can sign in put anything there.
//!
//! Layout (32 bytes; the page signs the sign-in domain, then these):
//! a random nonce (12 bytes) ‖ the expiry in whole seconds since this
//! process started (u32, little-endian) ‖ the tag, the first 16 bytes of
//! `BLAKE3-keyed(key, nonce ‖ expiry)`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

/// How long a sign-in challenge may be answered: time to sign, not to
/// unlock the key file (the page unlocks it before it asks).
pub(super) const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Random bytes per challenge: never repeated in the lifetime of a server.
const NONCE_BYTES: usize = 12;
/// The expiry's bytes (whole seconds since start: 136 years of range).
const EXPIRY_BYTES: usize = 4;
/// The bytes the tag covers.
const TAGGED_BYTES: usize = NONCE_BYTES + EXPIRY_BYTES;
/// 128 bits: a forged challenge passes one try in 2^128.
const TAG_BYTES: usize = 16;
/// A whole challenge.
pub(super) const CHALLENGE_BYTES: usize = TAGGED_BYTES + TAG_BYTES;
/// Most used challenges remembered at once. Only successful sign-ins add
/// one, for at most [`CHALLENGE_TTL`]: 4,096 sign-ins a minute is far
/// beyond any team of reviewers.
const USED_MAX: usize = 4096;

/// Why a challenge was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum ChallengeError {
    /// Not issued by this process (made up, or from before a restart).
    #[error("that challenge was not issued by this server (or it restarted since); ask for a new one")]
    Unknown,
    #[error("that challenge expired; ask for a new one")]
    Expired,
    #[error("that challenge was used already; ask for a new one")]
    Used,
    /// [`USED_MAX`] sign-ins in the last [`CHALLENGE_TTL`].
    #[error("too many sign-ins in the last minute; try again in a minute")]
    Busy,
}

/// Issues and checks sign-in challenges (see the module docs).
pub(super) struct Challenges {
    key: [u8; 32],
    /// Expiries count whole seconds from here (a monotonic clock, so
    /// setting the wall clock neither extends nor cuts a challenge).
    epoch: Instant,
    /// Challenges answered by a registered key, by hash, with their expiry.
    used: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").field("key", &"<secret>").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

impl Challenges {
    pub(super) fn new() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Challenges { key, epoch: Instant::now(), used: Mutex::new(HashMap::new()) }
    }

    /// A fresh challenge, valid for [`CHALLENGE_TTL`] from `now`.
    pub(super) fn issue(&self, now: Instant) -> [u8; CHALLENGE_BYTES] {
        let mut challenge = [0u8; CHALLENGE_BYTES];
        OsRng.fill_bytes(&mut challenge[..NONCE_BYTES]);
        // Rounded down: a challenge may expire up to a second early.
        let expires_s = (now + CHALLENGE_TTL).saturating_duration_since(self.epoch).as_secs();
        let expires_s = u32::try_from(expires_s).unwrap_or(u32::MAX);
        challenge[NONCE_BYTES..TAGGED_BYTES].copy_from_slice(&expires_s.to_le_bytes());
        let tag = self.tag(&challenge);
        challenge[TAGGED_BYTES..].copy_from_slice(&tag);
        challenge
    }

    /// Whether `challenge` is this server's, unexpired and unused at
    /// `now`; its expiry if so. Nothing is recorded.
    pub(super) fn check(&self, challenge: &[u8; CHALLENGE_BYTES], now: Instant) -> Result<Instant, ChallengeError> {
        if !same_bytes(&self.tag(challenge), &challenge[TAGGED_BYTES..]) {
            return Err(ChallengeError::Unknown);
        }
        let mut expires_s = [0u8; EXPIRY_BYTES];
        expires_s.copy_from_slice(&challenge[NONCE_BYTES..TAGGED_BYTES]);
        let expires = self.epoch + Duration::from_secs(u64::from(u32::from_le_bytes(expires_s)));
        if expires <= now {
            return Err(ChallengeError::Expired);
        }
        if self.used_map().contains_key::<[u8; 32]>(&blake3::hash(challenge).into()) {
            return Err(ChallengeError::Used);
        }
        Ok(expires)
    }

    /// Records that `challenge` (checked, expiring at `expires`) was
    /// answered by a key allowed to sign in. Exactly one of two
    /// concurrent sign-ins with the same challenge gets `Ok`.
    pub(super) fn spend(
        &self,
        challenge: &[u8; CHALLENGE_BYTES],
        expires: Instant,
        now: Instant,
    ) -> Result<(), ChallengeError> {
        let mut used = self.used_map();
        let key: [u8; 32] = blake3::hash(challenge).into();
        if used.contains_key(&key) {
            return Err(ChallengeError::Used);
        }
        if used.len() >= USED_MAX {
            used.retain(|_, expires| *expires > now);
        }
        if used.len() >= USED_MAX {
            return Err(ChallengeError::Busy);
        }
        used.insert(key, expires);
        Ok(())
    }

    fn tag(&self, challenge: &[u8; CHALLENGE_BYTES]) -> [u8; TAG_BYTES] {
        let full = blake3::keyed_hash(&self.key, &challenge[..TAGGED_BYTES]);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full.as_bytes()[..TAG_BYTES]);
        tag
    }

    fn used_map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // The map stays consistent whatever a panicking holder did: each
        // change is one insert or one retain.
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Compares in time independent of where the bytes differ, so timing
/// says nothing about how much of a guessed tag was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_accepted_once_and_only_while_fresh() {
        let challenges = Challenges::new();
        let now = Instant::now();
        let challenge = challenges.issue(now);
        let expires = challenges.check(&challenge, now).expect("fresh");
        assert_eq!(
            challenges.check(&challenge, now + CHALLENGE_TTL + Duration::from_secs(1)),
            Err(ChallengeError::Expired)
        );
        challenges.spend(&challenge, expires, now).expect("first use");
        assert_eq!(challenges.check(&challenge, now), Err(ChallengeError::Used));
        assert_eq!(challenges.spend(&challenge, expires, now), Err(ChallengeError::Used));
    }

    #[test]
    fn a_changed_or_foreign_challenge_is_unknown() {
        let challenges = Challenges::new();
        let now = Instant::now();
        let mut challenge = challenges.issue(now);
        // A later expiry, written in by the client.
        challenge[NONCE_BYTES] ^= 0x40;
        assert_eq!(challenges.check(&challenge, now), Err(ChallengeError::Unknown));
        let other = Challenges::new().issue(now);
        assert_eq!(challenges.check(&other, now), Err(ChallengeError::Unknown));
        assert_eq!(challenges.check(&[0u8; CHALLENGE_BYTES], now), Err(ChallengeError::Unknown));
    }
}

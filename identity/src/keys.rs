use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use curve25519_dalek::Scalar;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::IdentityError;

/// What an identity is allowed to stand for. Recorded with every key so a
/// verifier can tell a reviewer's decision from the conductor's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The conductor process itself: mission bookkeeping, budget postings.
    Conductor,
    /// One agent of one mission: its host calls and proposed decisions.
    Agent,
    /// A human who decides gates.
    Reviewer,
    /// A human who declares and runs missions.
    Operator,
    /// A human who verifies and exports journals.
    Auditor,
}

impl Role {
    /// The canonical lower-case spelling used in key files and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Conductor => "conductor",
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "conductor" => Role::Conductor,
            "agent" => Role::Agent,
            "reviewer" => Role::Reviewer,
            "operator" => Role::Operator,
            "auditor" => Role::Auditor,
            other => {
                return Err(IdentityError::Encoding {
                    what: "role",
                    reason: format!("`{other}` is not one of conductor, agent, reviewer, operator, auditor"),
                });
            }
        })
    }
}

/// Short, stable name of a public key: the first 16 bytes of
/// `blake3::derive_key("conductor key id v1", public_key)`, in hex.
/// Long enough that a collision needs ~2^64 keys, short enough to read aloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    const DERIVE_CONTEXT: &'static str = "conductor key id v1";

    fn of(public: &[u8; 32]) -> Self {
        let full = blake3::derive_key(Self::DERIVE_CONTEXT, public);
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// Parses 32 raw bytes, refusing points that are invalid or of small order
    /// (a weak key would let a forger produce signatures valid for any message).
    ///
    /// Also refuses non-canonical encodings (a `y` coordinate of `p` or more,
    /// or the sign bit set on `x = 0`): [`KeyId`] and signatures hash the
    /// encoded bytes, so a second spelling of one point would be a second
    /// identity for the same key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::BadPublicKey(hex::encode(bytes)))?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
            return Err(IdentityError::BadPublicKey(hex::encode(bytes)));
        }
        Ok(PublicKey(key))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, IdentityError> {
        Self::from_bytes(&decode_hex_array::<32>("public key", text)?)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(self.0.as_bytes())
    }

    /// Strict verification: rejects non-canonical `S`, small-order or
    /// non-canonically encoded `R` and weak keys, so one message has exactly
    /// one valid signature per key. [`crate::verify_batch`] checks many at
    /// once and agrees except on signatures crafted by the key holder.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        // verify_strict checks `S < L` only while no crate in the build turns
        // on ed25519-dalek's `legacy_compatibility` feature (features unify
        // across a workspace); checking here keeps the guarantee regardless.
        if !signature.s_is_canonical() {
            return Err(IdentityError::BadSignature(self.key_id()));
        }
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &sig).map_err(|_| IdentityError::BadSignature(self.key_id()))
    }

    pub(crate) fn dalek(&self) -> VerifyingKey {
        self.0
    }
}

/// A detached Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Signature {
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
    pub fn from_hex(text: &str) -> Result<Self, IdentityError> {
        Ok(Signature(decode_hex_array::<64>("signature", text)?))
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The encoded `R` point: the first half of the signature.
    pub(crate) fn r_bytes(&self) -> [u8; 32] {
        let mut r = [0u8; 32];
        r.copy_from_slice(&self.0[..32]);
        r
    }

    /// Whether `S` (the second half) is a fully reduced scalar, `S < L`.
    /// `S + L` would verify the same message again: a second signature.
    pub(crate) fn s_is_canonical(&self) -> bool {
        let mut s = [0u8; 32];
        s.copy_from_slice(&self.0[32..]);
        Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_some()
    }
}

/// A private signing key and the role it was issued for. Cloning copies
/// the secret in memory (each copy is zeroized on drop); the ledger clones
/// keys to sign a transaction's entries in parallel at commit.
///
/// **Two implementations of one signature.** Ed25519 signing is
/// deterministic (RFC 8032): a key and a message have exactly one
/// signature, whoever computes it. The conductor signs every journal
/// entry, and signing was a third of a task's CPU
/// (`cargo xtask bench-engine`, issue #19), so signatures are computed by
/// AWS-LC (already linked for TLS, through mistral.rs), whose assembly
/// signs about 2x faster than `ed25519-dalek` on this project's x86-64
/// hosts. `ed25519-dalek` stays the key's representation (key files,
/// public keys) and the only verifier; the tests check that both produce
/// the same bytes, the RFC 8032 vector included. Should AWS-LC refuse a
/// seed (it accepts every 32-byte seed), the key signs with dalek.
#[derive(Clone)]
pub struct Keypair {
    pub(crate) signing: SigningKey,
    /// The same key in AWS-LC, shared between clones. AWS-LC zeroes a
    /// key's memory when it frees it (`OPENSSL_free` cleanses).
    fast: Option<Arc<aws_lc_rs::signature::Ed25519KeyPair>>,
    pub(crate) role: Role,
}

impl fmt::Debug for Keypair {
    // Never print secret material, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("role", &self.role)
            .field("key_id", &self.public().key_id())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(role: Role) -> Self {
        Keypair::new(SigningKey::generate(&mut rand_core::OsRng), role)
    }

    /// Rebuilds a key from its 32-byte secret seed (the RFC 8032 private
    /// key), as used by test vectors and key import.
    pub fn from_secret_bytes(role: Role, secret: &[u8; 32]) -> Self {
        Keypair::new(SigningKey::from_bytes(secret), role)
    }

    pub(crate) fn new(signing: SigningKey, role: Role) -> Self {
        let fast = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(signing.as_bytes()).ok().map(Arc::new);
        Keypair { signing, fast, role }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        if let Some(fast) = &self.fast {
            let signature = fast.sign(message);
            if let Ok(bytes) = <[u8; 64]>::try_from(signature.as_ref()) {
                return Signature(bytes);
            }
        }
        Signature(self.signing.sign(message).to_bytes())
    }
}

pub(crate) fn decode_hex_array<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|e| IdentityError::Encoding { what, reason: format!("expected {} hex digits: {e}", N * 2) })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, tests 1 to 3: (secret, public, message, signature).
    const RFC8032: [(&str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn signatures_match_rfc_8032() {
        for (secret, public, message, signature) in RFC8032 {
            let key = Keypair::from_secret_bytes(
                Role::Conductor,
                &decode_hex_array("secret", secret).expect("vector secret"),
            );
            assert!(key.fast.is_some(), "AWS-LC took the seed");
            assert_eq!(key.public().to_bytes().to_vec(), hex::decode(public).expect("vector public"));
            let signed = key.sign(&hex::decode(message).expect("vector message"));
            assert_eq!(hex::encode(signed.to_bytes()), signature);
        }
    }

    /// The signer the journal uses (AWS-LC) and the reference (dalek) give
    /// the same bytes for many keys and messages of every length a journal
    /// entry's signed message may have and more.
    #[test]
    fn the_fast_signer_gives_dalek_s_bytes() {
        for i in 0..200u32 {
            let key = Keypair::generate(Role::Conductor);
            let message: Vec<u8> = (0..i * 7 % 300).map(|b| (b * 31 + i) as u8).collect();
            let reference = key.signing.sign(&message).to_bytes();
            assert_eq!(key.sign(&message).to_bytes(), reference, "key {i}");
            key.public().verify(&message, &key.sign(&message)).expect("verifies");
        }
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let key = Keypair::generate(Role::Reviewer);
        let sig = key.sign(b"approve gate 7");
        key.public().verify(b"approve gate 7", &sig).expect("valid signature");
        assert!(key.public().verify(b"approve gate 8", &sig).is_err());
    }

    #[test]
    fn another_key_does_not_verify() {
        let a = Keypair::generate(Role::Agent);
        let b = Keypair::generate(Role::Agent);
        let sig = a.sign(b"m");
        assert!(b.public().verify(b"m", &sig).is_err());
        assert_ne!(a.public().key_id(), b.public().key_id());
    }

    #[test]
    fn small_order_public_key_is_refused() {
        // The identity point (y = 1) has order 1: a classic weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
    }

    /// `y = p + k` encodes the same point as `y = k`. dalek decodes such
    /// spellings; we refuse them so one key has one encoding and one KeyId.
    #[test]
    fn non_canonical_public_key_encoding_is_refused() {
        let mut strong = 0;
        for k in 0u8..19 {
            // p = 2^255 - 19, little-endian: ed ff .. ff 7f; p + k adds to byte 0.
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f;
            if let Ok(point) = VerifyingKey::from_bytes(&bytes)
                && !point.is_weak()
            {
                strong += 1;
                let mut canonical = [0u8; 32];
                canonical[0] = k;
                assert_eq!(point.to_edwards().compress().to_bytes(), canonical);
            }
            assert!(PublicKey::from_bytes(&bytes).is_err(), "y = p + {k}");
        }
        // Refused for the encoding alone, not for being weak (y = 3, 4, ...).
        assert!(strong > 0, "some non-canonical spellings decode to strong points");
    }

    #[test]
    fn rfc8032_test_vector_1_verifies() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let public = PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .expect("vector key");
        let sig = Signature::from_hex(concat!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ))
        .expect("vector signature");
        public.verify(b"", &sig).expect("RFC 8032 vector verifies");
    }

    #[test]
    fn role_spelling_round_trips() {
        for role in [Role::Conductor, Role::Agent, Role::Reviewer, Role::Operator, Role::Auditor] {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}

use std::fmt;
use std::str::FromStr;

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
                    reason: format!(
                        "`{other}` is not one of conductor, agent, reviewer, operator, auditor"
                    ),
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
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| IdentityError::BadPublicKey(hex::encode(bytes)))?;
        if key.is_weak() {
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

    /// Strict verification: rejects non-canonical `S`, small-order `R` and
    /// weak keys, so one message has exactly one valid signature per key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature(self.key_id()))
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
}

/// A private signing key and the role it was issued for.
pub struct Keypair {
    pub(crate) signing: SigningKey,
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
        let signing = SigningKey::generate(&mut rand_core::OsRng);
        Keypair { signing, role }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

pub(crate) fn decode_hex_array<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|e| IdentityError::Encoding {
        what,
        reason: format!("expected {} hex digits: {e}", N * 2),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rfc8032_test_vector_1_verifies() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let public =
            PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
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

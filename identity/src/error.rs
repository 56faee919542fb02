use crate::KeyId;
use std::path::PathBuf;

/// Everything that can go wrong with keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file exists already; keys are never silently overwritten.
    #[error("key file {0} already exists; choose another path or remove it first")]
    Exists(PathBuf),
    /// Group or others may read the key file.
    #[error("key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    /// The key file is not a conductor key file.
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// Hex text of a key or signature could not be decoded.
    #[error("invalid {what}: {reason}")]
    Encoding { what: &'static str, reason: String },
    /// The public key is not a valid Ed25519 point, or is of small order.
    #[error("public key {0} is not a valid (or is a weak) Ed25519 key")]
    BadPublicKey(String),
    /// A signature did not verify under strict rules.
    #[error("signature does not verify under key {0}")]
    BadSignature(KeyId),
    /// One signature of a batch is invalid, so the whole batch is rejected.
    #[error(
        "signature {index} (counting from 0) of a batch of {len} does not verify under key \
         {key_id}; the whole batch is rejected"
    )]
    BadSignatureInBatch { index: usize, len: usize, key_id: KeyId },
    /// The batch equation failed although every signature verifies on its
    /// own. Strict checks make this impossible; it would be a bug here.
    #[error(
        "a batch of {len} signatures was rejected although each verifies on its own; \
         this is a bug in the identity crate, please report it"
    )]
    BatchInconsistent { len: usize },
    /// The key file is encrypted and [`crate::Keypair::load`] was used.
    #[error(
        "key file {path} is encrypted with a passphrase; load it with the passphrase \
         (Keypair::load_with_passphrase)"
    )]
    PassphraseRequired { path: PathBuf },
    /// Decryption of an encrypted key file failed its authentication check.
    #[error(
        "key file {path}: wrong passphrase or the file was modified; try again, or restore \
         the file from a backup"
    )]
    WrongPassphrase { path: PathBuf },
    /// An empty passphrase would encrypt the key with no protection at all.
    #[error(
        "refusing to encrypt a key with an empty passphrase; choose a passphrase, or save a \
         plain owner-only key file instead"
    )]
    EmptyPassphrase,
    /// The passphrase key derivation could not run.
    #[error("passphrase key derivation (Argon2id) failed: {reason}")]
    Kdf { reason: String },
}

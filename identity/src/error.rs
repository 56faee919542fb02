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
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
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
}



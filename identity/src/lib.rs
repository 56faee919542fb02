//! Ed25519 identities for conductor: who acted, provably.
//!
//! - [`Keypair`]: a private signing key with its [`Role`], stored in an
//!   owner-only key file, plain ([`Keypair::save`], [`Keypair::load`]) or,
//!   for human keys, encrypted under a passphrase with Argon2id and
//!   XChaCha20-Poly1305 ([`Keypair::save_encrypted`],
//!   [`Keypair::load_with_passphrase`]; [`is_encrypted`] tells a command
//!   whether to prompt).
//! - [`PublicKey`]: verifies [`Signature`]s strictly (non-canonical
//!   signatures, small-order `R` and small-order or non-canonically encoded
//!   keys are rejected) and names itself with a short [`KeyId`].
//! - [`verify_batch`]: checks many signatures at once, with the same
//!   encoding checks first; see its documentation for the one way its
//!   verdict can differ from [`PublicKey::verify`].
//!
//! Tested against the RFC 8032 and Project Wycheproof Ed25519 vectors
//! (`tests/vectors.rs`, data in `tests/data/`).
//!
//! This crate knows nothing about storage layouts or HTTP: it signs bytes
//! and checks signatures over bytes.

mod batch;
mod error;
mod keyfile;
mod keys;
mod sealed;

pub use batch::verify_batch;
pub use error::IdentityError;
pub use keyfile::{is_encrypted, read_public};
pub use keys::{KeyId, Keypair, PublicKey, Role, Signature};

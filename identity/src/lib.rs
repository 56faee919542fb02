//! Ed25519 identities for conductor: who acted, provably.
//!
//! - [`Keypair`]: a private signing key with its [`Role`], stored in an
//!   owner-only key file ([`Keypair::save`], [`Keypair::load`]).
//! - [`PublicKey`]: verifies [`Signature`]s strictly (non-canonical
//!   signatures and small-order keys are rejected) and names itself with a
//!   short [`KeyId`].
//!
//! This crate knows nothing about storage layouts or HTTP: it signs bytes
//! and checks signatures over bytes.

mod error;
mod keyfile;
mod keys;

pub use error::IdentityError;
pub use keys::{KeyId, Keypair, PublicKey, Role, Signature};

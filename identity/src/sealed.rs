//! Passphrase sealing of a 32-byte secret key: Argon2id turns the
//! passphrase into an encryption key, XChaCha20-Poly1305 encrypts and
//! authenticates the secret under it.
//!
//! XChaCha20's 24-byte nonce is large enough to draw at random (no counter
//! to keep), and every file also gets a fresh random salt, so no two files
//! share an encryption key even under the same passphrase.

use std::path::Path;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::IdentityError;

pub(crate) const SALT_BYTES: usize = 16;
pub(crate) const NONCE_BYTES: usize = 24;
pub(crate) const SECRET_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
/// The sealed secret: ciphertext of the secret followed by the Poly1305 tag.
pub(crate) const SEALED_BYTES: usize = SECRET_BYTES + TAG_BYTES;
const KEY_BYTES: usize = 32;
const KIB_PER_MIB: u32 = 1024;

/// Argon2id (version 1.3) cost parameters, as written in a key file:
/// `argon2id m=<KiB> t=<passes> p=<lanes>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KdfParams {
    pub(crate) memory_kib: u32,
    pub(crate) passes: u32,
    pub(crate) lanes: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended setting
    /// (64 MiB, t=3), stronger than OWASP's minimum (19 MiB, t=2). A key is
    /// unlocked once per command by a human who is waiting anyway, so a
    /// fraction of a second is affordable, while every passphrase guess costs
    /// an attacker the same 64 MiB and three passes. One lane because the
    /// argon2 crate computes lanes one after another here: more lanes would
    /// cost us time without costing an attacker more.
    pub(crate) const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * KIB_PER_MIB, passes: 3, lanes: 1 };

    /// Largest memory a key file may ask for (1 GiB, 16x the default). The
    /// parameters come from the file, so a hostile or corrupted file could
    /// otherwise make loading allocate gigabytes or run for hours.
    pub(crate) const MEMORY_KIB_MAX: u32 = 1024 * KIB_PER_MIB;
    /// Most passes a key file may ask for.
    pub(crate) const PASSES_MAX: u32 = 16;
    /// Most lanes a key file may ask for; lanes only split the same memory.
    pub(crate) const LANES_MAX: u32 = 16;
    /// Bound on memory x passes (KiB-passes), about 21x the default's work:
    /// some seconds, not minutes, even when memory and passes are both near
    /// their own maxima.
    pub(crate) const WORK_MAX: u64 = 4 * 1024 * 1024;

    /// Refuses parameters out of bounds, before any memory is allocated.
    /// Lower bounds are argon2's own (memory of at least 8 KiB per lane).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.memory_kib > Self::MEMORY_KIB_MAX {
            return Err(format!(
                "kdf memory m={} KiB is above the maximum of {} KiB",
                self.memory_kib,
                Self::MEMORY_KIB_MAX
            ));
        }
        if self.passes == 0 || self.passes > Self::PASSES_MAX {
            return Err(format!("kdf passes t={} is outside 1..={}", self.passes, Self::PASSES_MAX));
        }
        if self.lanes == 0 || self.lanes > Self::LANES_MAX {
            return Err(format!("kdf lanes p={} is outside 1..={}", self.lanes, Self::LANES_MAX));
        }
        if u64::from(self.memory_kib) * u64::from(self.passes) > Self::WORK_MAX {
            return Err(format!(
                "kdf work m*t = {} KiB-passes is above the maximum of {}",
                u64::from(self.memory_kib) * u64::from(self.passes),
                Self::WORK_MAX
            ));
        }
        Params::new(self.memory_kib, self.passes, self.lanes, Some(KEY_BYTES))
            .map(|_| ())
            .map_err(|e| format!("kdf parameters {} are refused by Argon2: {e}", self.to_field()))
    }

    /// The value of the `kdf:` line.
    pub(crate) fn to_field(self) -> String {
        format!("argon2id m={} t={} p={}", self.memory_kib, self.passes, self.lanes)
    }

    /// Parses the value of the `kdf:` line (exactly as [`Self::to_field`]
    /// writes it) and checks the bounds.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let expected = "expected `argon2id m=<KiB> t=<passes> p=<lanes>`";
        let mut words = value.split(' ');
        if words.next() != Some("argon2id") {
            return Err(format!("kdf is not argon2id; {expected}"));
        }
        let mut number = |name: &str| -> Result<u32, String> {
            words
                .next()
                .and_then(|w| w.strip_prefix(name))
                .and_then(parse_decimal)
                .ok_or_else(|| format!("kdf `{value}`: {expected}"))
        };
        let params = KdfParams { memory_kib: number("m=")?, passes: number("t=")?, lanes: number("p=")? };
        if words.next().is_some() {
            return Err(format!("kdf `{value}`: {expected}"));
        }
        params.check()?;
        Ok(params)
    }
}

/// Plain decimal digits only (no sign, no spaces), at most `u32::MAX`.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A secret as stored in an encrypted key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) kdf: KdfParams,
    pub(crate) salt: [u8; SALT_BYTES],
    pub(crate) nonce: [u8; NONCE_BYTES],
    pub(crate) sealed: [u8; SEALED_BYTES],
}

/// Encrypts `secret` under `passphrase` with a fresh random salt and nonce.
/// `associated` is authenticated with it but not encrypted.
pub(crate) fn seal(
    secret: &[u8; SECRET_BYTES],
    passphrase: &str,
    kdf: KdfParams,
    associated: &[u8],
) -> Result<Sealed, IdentityError> {
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive_key(passphrase, &salt, kdf)?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
    // Encrypt in place in a buffer that is wiped however this returns.
    let mut buffer = Zeroizing::new(*secret);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), associated, buffer.as_mut_slice())
        .map_err(|_| IdentityError::Kdf { reason: "encryption of the secret key failed".into() })?;
    let mut sealed = [0u8; SEALED_BYTES];
    sealed[..SECRET_BYTES].copy_from_slice(buffer.as_slice());
    sealed[SECRET_BYTES..].copy_from_slice(tag.as_slice());
    Ok(Sealed { kdf, salt, nonce, sealed })
}

/// Decrypts a sealed secret; a wrong passphrase, a changed ciphertext or
/// changed `associated` data all fail the same authentication check.
pub(crate) fn open(
    sealed: &Sealed,
    passphrase: &str,
    associated: &[u8],
    path: &Path,
) -> Result<Zeroizing<[u8; SECRET_BYTES]>, IdentityError> {
    let key = derive_key(passphrase, &sealed.salt, sealed.kdf)?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
    let mut buffer = Zeroizing::new([0u8; SECRET_BYTES]);
    buffer.copy_from_slice(&sealed.sealed[..SECRET_BYTES]);
    let tag = Tag::from_slice(&sealed.sealed[SECRET_BYTES..]);
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(&sealed.nonce), associated, buffer.as_mut_slice(), tag)
        .map_err(|_| IdentityError::WrongPassphrase { path: path.to_owned() })?;
    Ok(buffer)
}

/// Argon2id(passphrase, salt) -> 32-byte key. The working memory is
/// reserved fallibly (a failure is an error, not an abort) and wiped after.
fn derive_key(
    passphrase: &str,
    salt: &[u8; SALT_BYTES],
    kdf: KdfParams,
) -> Result<Zeroizing<[u8; KEY_BYTES]>, IdentityError> {
    kdf.check().map_err(|reason| IdentityError::Kdf { reason })?;
    let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(KEY_BYTES))
        .map_err(|e| IdentityError::Kdf { reason: e.to_string() })?;
    let blocks_needed = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut blocks: Zeroizing<Vec<Block>> = Zeroizing::new(Vec::new());
    blocks.try_reserve_exact(blocks_needed).map_err(|_| IdentityError::Kdf {
        reason: format!(
            "could not allocate {} MiB of working memory; free some memory and try again",
            kdf.memory_kib / KIB_PER_MIB
        ),
    })?;
    blocks.resize(blocks_needed, Block::default());
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    argon
        .hash_password_into_with_memory(passphrase.as_bytes(), salt, key.as_mut_slice(), blocks.as_mut_slice())
        .map_err(|e| IdentityError::Kdf { reason: e.to_string() })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_field_round_trips_and_rejects_variants() {
        let p = KdfParams::DEFAULT;
        assert_eq!(p.to_field(), "argon2id m=65536 t=3 p=1");
        assert_eq!(KdfParams::parse(&p.to_field()), Ok(p));
        for bad in [
            "argon2i m=65536 t=3 p=1",
            "argon2id m=65536 t=3",
            "argon2id m=65536 t=3 p=1 x=2",
            "argon2id t=3 m=65536 p=1",
            "argon2id m=+65536 t=3 p=1",
            "argon2id m=65536  t=3 p=1",
            "argon2id m=99999999999 t=3 p=1",
            "argon2id m=4294967295 t=3 p=1",
            "argon2id m=65536 t=0 p=1",
            "argon2id m=65536 t=4294967295 p=1",
            "argon2id m=65536 t=3 p=0",
            "argon2id m=65536 t=3 p=16777215",
            "argon2id m=1048576 t=16 p=1",
            "argon2id m=7 t=1 p=1",
            "argon2id m=64 t=1 p=16",
        ] {
            assert!(KdfParams::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn seal_then_open_and_authentication() {
        let kdf = KdfParams { memory_kib: 64, passes: 1, lanes: 1 };
        let secret = [7u8; SECRET_BYTES];
        let path = Path::new("k");
        let sealed = seal(&secret, "pw", kdf, b"ad").expect("seal");
        assert_eq!(*open(&sealed, "pw", b"ad", path).expect("open"), secret);
        assert!(matches!(open(&sealed, "pW", b"ad", path), Err(IdentityError::WrongPassphrase { .. })));
        assert!(matches!(open(&sealed, "pw", b"aD", path), Err(IdentityError::WrongPassphrase { .. })));
        let mut flipped = sealed.clone();
        flipped.sealed[SEALED_BYTES - 1] ^= 1;
        assert!(matches!(open(&flipped, "pw", b"ad", path), Err(IdentityError::WrongPassphrase { .. })));
        let mut other_salt = sealed.clone();
        other_salt.salt[0] ^= 1;
        assert!(matches!(open(&other_salt, "pw", b"ad", path), Err(IdentityError::WrongPassphrase { .. })));
        let again = seal(&secret, "pw", kdf, b"ad").expect("seal");
        assert_ne!(again.salt, sealed.salt, "fresh salt every time");
        assert_ne!(again.nonce, sealed.nonce, "fresh nonce every time");
    }
}

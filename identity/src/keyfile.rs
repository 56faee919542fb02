//! Key files: one small text file per private key, in one of two kinds.
//!
//! Plain, for keys that must load unattended (the conductor's, agents'):
//!
//! ```text
//! conductor-key v1
//! role: agent
//! public: <64 hex digits>
//! secret: <64 hex digits>
//! ```
//!
//! Encrypted under a passphrase, for the keys of humans (reviewer,
//! operator, auditor), so a copied file alone does not let anyone sign:
//!
//! ```text
//! conductor-key v1
//! role: reviewer
//! public: <64 hex digits>
//! kdf: argon2id m=65536 t=3 p=1
//! salt: <32 hex digits>
//! nonce: <48 hex digits>
//! sealed-secret: <96 hex digits>
//! ```
//!
//! `sealed-secret` is the 32-byte secret encrypted with XChaCha20-Poly1305
//! under the key Argon2id (v1.3) derives from the passphrase and `salt` with
//! the `kdf` costs (memory in KiB, passes, lanes), followed by the 16-byte
//! tag. The associated data is the first four lines as written above, each
//! ending in a newline, so editing the header, role, public key or costs
//! fails decryption exactly as a wrong passphrase does. `salt` and `nonce`
//! need no such binding: changing either changes the key or the keystream
//! and fails the same check. The costs are read from the file but bounded
//! (see `KdfParams`) before any work is done.
//!
//! Files are created with mode 0600 and `create_new`, so a key is never
//! overwritten and never readable by others, and loading refuses a file
//! that group or others can read (as ssh does).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::sealed::{self, KdfParams, NONCE_BYTES, SALT_BYTES, SEALED_BYTES, SECRET_BYTES, Sealed};
use crate::{IdentityError, Keypair, PublicKey, Role};

const HEADER: &str = "conductor-key v1";
/// A key file is seven short lines at most; anything larger is not one of ours.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// The secret part of a key file.
enum Body {
    Plain(Zeroizing<[u8; SECRET_BYTES]>),
    Sealed(Sealed),
}

/// A parsed key file, before any decryption.
struct KeyFile {
    role: Role,
    public: [u8; 32],
    body: Body,
}

/// Whether the key file at `path` is passphrase-encrypted, so a command can
/// decide to prompt before calling [`Keypair::load_with_passphrase`]. The
/// file gets the same checks as when loading (permissions, format), so
/// problems show before anyone is asked for a passphrase.
pub fn is_encrypted(path: &Path) -> Result<bool, IdentityError> {
    Ok(matches!(read_key_file(path)?.body, Body::Sealed(_)))
}

/// The role and public key a key file states, read without its secret, so
/// registering someone's key needs no passphrase. A plain file's public key
/// is checked against its secret; a sealed file's public line is bound to
/// its ciphertext, so an edit shows the next time the key is unsealed.
pub fn read_public(path: &Path) -> Result<(Role, PublicKey), IdentityError> {
    let file = read_key_file(path)?;
    if let Body::Plain(secret) = &file.body {
        keypair(path, file.role, &file.public, secret)?;
    }
    Ok((file.role, PublicKey::from_bytes(&file.public)?))
}

impl Keypair {
    /// Writes the key to a new owner-only plain file. Fails if the file exists.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        write_new_owner_only(path, || {
            let secret = Zeroizing::new(hex::encode(self.signing.as_bytes()));
            let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_BYTES_MAX as usize));
            text.push_str(&key_file_start(self.role, &self.public().to_bytes()));
            text.push_str("secret: ");
            text.push_str(&secret);
            text.push('\n');
            Ok(text)
        })
    }

    /// Writes the key to a new owner-only file, encrypted under `passphrase`
    /// (Argon2id, then XChaCha20-Poly1305; see the module documentation).
    /// Fails if the file exists or the passphrase is empty. The passphrase's
    /// UTF-8 bytes are used as given: no trimming, no Unicode normalisation.
    pub fn save_encrypted(&self, path: &Path, passphrase: &str) -> Result<(), IdentityError> {
        self.save_encrypted_with(path, passphrase, KdfParams::DEFAULT)
    }

    /// [`Keypair::save_encrypted`] with chosen KDF costs (tests use cheap ones).
    pub(crate) fn save_encrypted_with(
        &self,
        path: &Path,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(), IdentityError> {
        if passphrase.is_empty() {
            return Err(IdentityError::EmptyPassphrase);
        }
        write_new_owner_only(path, || {
            let associated = associated_data(self.role, &self.public().to_bytes(), kdf);
            let sealed = sealed::seal(self.signing.as_bytes(), passphrase, kdf, associated.as_bytes())?;
            Ok(Zeroizing::new(format!(
                "{associated}salt: {}\nnonce: {}\nsealed-secret: {}\n",
                hex::encode(sealed.salt),
                hex::encode(sealed.nonce),
                hex::encode(sealed.sealed),
            )))
        })
    }

    /// Reads a plain key file written by [`Keypair::save`]. An encrypted file
    /// gives [`IdentityError::PassphraseRequired`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let file = read_key_file(path)?;
        match file.body {
            Body::Plain(secret) => keypair(path, file.role, &file.public, &secret),
            Body::Sealed(_) => Err(IdentityError::PassphraseRequired { path: path.to_owned() }),
        }
    }

    /// Reads a key file of either kind: an encrypted one is decrypted with
    /// `passphrase`; for a plain one the passphrase is ignored. A wrong
    /// passphrase or an edited file gives [`IdentityError::WrongPassphrase`].
    pub fn load_with_passphrase(path: &Path, passphrase: &str) -> Result<Self, IdentityError> {
        let file = read_key_file(path)?;
        match &file.body {
            Body::Plain(secret) => keypair(path, file.role, &file.public, secret),
            Body::Sealed(sealed) => {
                let associated = associated_data(file.role, &file.public, sealed.kdf);
                let secret = sealed::open(sealed, passphrase, associated.as_bytes(), path)?;
                keypair(path, file.role, &file.public, &secret)
            }
        }
    }
}

/// The header, role and public lines that start every key file.
fn key_file_start(role: Role, public: &[u8; 32]) -> String {
    format!("{HEADER}\nrole: {role}\npublic: {}\n", hex::encode(public))
}

/// What an encrypted file's ciphertext is bound to: its first four lines.
/// Rebuilt from the parsed values, so it is the same bytes whatever line
/// endings the file picked up on the way.
fn associated_data(role: Role, public: &[u8; 32], kdf: KdfParams) -> String {
    format!("{}kdf: {}\n", key_file_start(role, public), kdf.to_field())
}

/// Builds the key and checks the `public` line against it. For a plain
/// file the line is redundant, and the check catches a hand-edited file.
fn keypair(path: &Path, role: Role, public: &[u8; 32], secret: &[u8; SECRET_BYTES]) -> Result<Keypair, IdentityError> {
    let key = Keypair::new(SigningKey::from_bytes(secret), role);
    if key.public().to_bytes() != *public {
        return Err(IdentityError::Malformed {
            path: path.to_owned(),
            reason: "`public` does not match the secret key".to_owned(),
        });
    }
    Ok(key)
}

/// Creates `path` (owner-only, never overwriting) and writes what `text`
/// produces. The file is created first, so an existing file is reported
/// before any slow work, and removed again if anything after that fails,
/// so no half-written key file is left behind.
fn write_new_owner_only(
    path: &Path,
    text: impl FnOnce() -> Result<Zeroizing<String>, IdentityError>,
) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists { IdentityError::Exists(path.to_owned()) } else { io(e) }
    })?;
    let written = text().and_then(|text| {
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    });
    if written.is_err() {
        drop(file);
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Opens, checks and parses a key file of either kind.
fn read_key_file(path: &Path) -> Result<KeyFile, IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let malformed = |reason: &str| IdentityError::Malformed { path: path.to_owned(), reason: reason.to_owned() };
    // Refuse FIFOs and devices before opening: reading one could block forever.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(malformed("not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions { path: path.to_owned(), mode });
        }
    }
    if meta.len() > KEY_FILE_BYTES_MAX {
        return Err(malformed("larger than any key file"));
    }
    let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_BYTES_MAX as usize + 1));
    // Bounded read: the file may have grown since the size check.
    file.take(KEY_FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(malformed("larger than any key file"));
    }
    parse_key_file(path, &text)
}

fn parse_key_file(path: &Path, text: &str) -> Result<KeyFile, IdentityError> {
    let malformed = |reason: String| IdentityError::Malformed { path: path.to_owned(), reason };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(malformed(format!("first line is not `{HEADER}`")));
    }
    let mut role = None;
    let mut public = None;
    let mut secret = None;
    let mut kdf = None;
    let mut salt = None;
    let mut nonce = None;
    let mut sealed = None;
    for line in lines {
        let Some((name, value)) = line.split_once(": ") else {
            return Err(malformed("expected `name: value` lines".to_owned()));
        };
        let slot = match name {
            "role" => &mut role,
            "public" => &mut public,
            "secret" => &mut secret,
            "kdf" => &mut kdf,
            "salt" => &mut salt,
            "nonce" => &mut nonce,
            "sealed-secret" => &mut sealed,
            _ => return Err(malformed(format!("unknown field `{name}`"))),
        };
        // A second value would be ambiguous: which one did the writer mean?
        if slot.replace(value).is_some() {
            return Err(malformed(format!("field `{name}` appears more than once")));
        }
    }
    let role: Role = role
        .ok_or_else(|| malformed("missing `role`".to_owned()))?
        .parse()
        .map_err(|e: IdentityError| malformed(e.to_string()))?;
    let public = public.ok_or_else(|| malformed("missing `public`".to_owned()))?;
    let mut public_bytes = [0u8; 32];
    hex_field(path, "public", public, &mut public_bytes)?;
    let body = match (secret, kdf, salt, nonce, sealed) {
        (Some(secret), None, None, None, None) => {
            let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
            hex_field(path, "secret", secret, bytes.as_mut_slice())?;
            Body::Plain(bytes)
        }
        (None, Some(kdf), Some(salt), Some(nonce), Some(sealed)) => {
            // Bounds are checked here, before anything runs the KDF.
            let kdf = KdfParams::parse(kdf).map_err(malformed)?;
            let mut parsed = Sealed { kdf, salt: [0; SALT_BYTES], nonce: [0; NONCE_BYTES], sealed: [0; SEALED_BYTES] };
            hex_field(path, "salt", salt, &mut parsed.salt)?;
            hex_field(path, "nonce", nonce, &mut parsed.nonce)?;
            hex_field(path, "sealed-secret", sealed, &mut parsed.sealed)?;
            Body::Sealed(parsed)
        }
        (None, None, None, None, None) => {
            return Err(malformed("missing `secret` (or `sealed-secret`)".to_owned()));
        }
        (Some(_), ..) => {
            return Err(malformed(
                "has both a plain `secret` and encryption fields; which one is meant is unclear".to_owned(),
            ));
        }
        _ => {
            return Err(malformed(
                "an encrypted key file needs all of `kdf`, `salt`, `nonce` and `sealed-secret`".to_owned(),
            ));
        }
    };
    Ok(KeyFile { role, public: public_bytes, body })
}

/// Decodes a fixed-length hex field. The error names the field but never
/// repeats its value, which may be secret.
fn hex_field(path: &Path, name: &str, value: &str, out: &mut [u8]) -> Result<(), IdentityError> {
    hex::decode_to_slice(value, out).map_err(|_| IdentityError::Malformed {
        path: path.to_owned(),
        reason: format!("`{name}` must be {} hex digits", out.len() * 2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Cheap Argon2id costs so the encrypted-file tests stay fast; the
    /// default costs are exercised once, in `default_costs_round_trip`.
    const FAST: KdfParams = KdfParams { memory_kib: 64, passes: 1, lanes: 1 };

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("identity-test-{}-{}", std::process::id(), name));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    /// Rewrites the line starting with `prefix` (owner-only mode kept).
    fn edit_line(path: &Path, prefix: &str, new_line: &str) {
        let text = std::fs::read_to_string(path).expect("read");
        assert!(text.lines().any(|l| l.starts_with(prefix)), "no line {prefix}");
        let edited: String = text
            .lines()
            .map(|l| if l.starts_with(prefix) { format!("{new_line}\n") } else { format!("{l}\n") })
            .collect();
        std::fs::write(path, edited).expect("write");
    }

    fn encrypted(name: &str, role: Role) -> (std::path::PathBuf, Keypair) {
        let path = temp_path(name);
        let key = Keypair::generate(role);
        key.save_encrypted_with(&path, "correct horse", FAST).expect("save");
        (path, key)
    }

    #[test]
    fn save_then_load_gives_the_same_key() {
        let path = temp_path("roundtrip");
        let key = Keypair::generate(Role::Reviewer);
        key.save(&path).expect("save");
        let loaded = Keypair::load(&path).expect("load");
        assert_eq!(loaded.public(), key.public());
        assert_eq!(loaded.role(), Role::Reviewer);
        assert!(matches!(key.save(&path), Err(IdentityError::Exists(_))));
        assert!(!is_encrypted(&path).expect("plain"));
        // A plain file loads with a passphrase too: it is ignored.
        let again = Keypair::load_with_passphrase(&path, "anything").expect("load");
        assert_eq!(again.public(), key.public());
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_owner_only_and_loose_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("perms");
        Keypair::generate(Role::Operator).save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(Keypair::load(&path), Err(IdentityError::Permissions { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn tampered_public_line_is_refused() {
        let path = temp_path("tamper");
        Keypair::generate(Role::Agent).save(&path).expect("save");
        let other = Keypair::generate(Role::Agent).public().to_hex();
        edit_line(&path, "public: ", &format!("public: {other}"));
        assert!(matches!(Keypair::load(&path), Err(IdentityError::Malformed { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn encrypted_round_trip() {
        let (path, key) = encrypted("enc-roundtrip", Role::Reviewer);
        assert!(is_encrypted(&path).expect("encrypted"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&hex::encode(key.signing.as_bytes())), "secret not in clear");
        let names: Vec<&str> = text.lines().map(|l| l.split(": ").next().unwrap_or(l)).collect();
        assert_eq!(names, ["conductor-key v1", "role", "public", "kdf", "salt", "nonce", "sealed-secret"]);
        let loaded = Keypair::load_with_passphrase(&path, "correct horse").expect("load");
        assert_eq!(loaded.public(), key.public());
        assert_eq!(loaded.role(), Role::Reviewer);
        assert_eq!(loaded.sign(b"m"), key.sign(b"m"));
        assert!(matches!(key.save_encrypted_with(&path, "x", FAST), Err(IdentityError::Exists(_))));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn encrypted_files_are_owner_only_too() {
        use std::os::unix::fs::PermissionsExt;
        let (path, _) = encrypted("enc-perms", Role::Auditor);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            Keypair::load_with_passphrase(&path, "correct horse"),
            Err(IdentityError::Permissions { .. })
        ));
        assert!(matches!(is_encrypted(&path), Err(IdentityError::Permissions { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn plain_load_of_an_encrypted_file_asks_for_the_passphrase() {
        let (path, _) = encrypted("enc-plainload", Role::Operator);
        assert!(matches!(Keypair::load(&path), Err(IdentityError::PassphraseRequired { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let (path, _) = encrypted("enc-wrong", Role::Reviewer);
        for wrong in ["correct horsE", "correct horse ", "", "correct"] {
            let err = Keypair::load_with_passphrase(&path, wrong).expect_err("wrong passphrase");
            assert!(matches!(err, IdentityError::WrongPassphrase { .. }), "{err:?}");
            assert!(err.to_string().contains("wrong passphrase or the file was modified"));
        }
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn swapping_role_or_public_line_is_detected() {
        let (path, _) = encrypted("enc-role", Role::Reviewer);
        edit_line(&path, "role: ", "role: operator");
        assert!(matches!(
            Keypair::load_with_passphrase(&path, "correct horse"),
            Err(IdentityError::WrongPassphrase { .. })
        ));
        std::fs::remove_file(&path).expect("cleanup");

        let (path, _) = encrypted("enc-public", Role::Reviewer);
        let other = Keypair::generate(Role::Reviewer).public().to_hex();
        edit_line(&path, "public: ", &format!("public: {other}"));
        assert!(matches!(
            Keypair::load_with_passphrase(&path, "correct horse"),
            Err(IdentityError::WrongPassphrase { .. })
        ));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn tampered_ciphertext_salt_or_nonce_is_detected() {
        for field in ["sealed-secret: ", "salt: ", "nonce: "] {
            let (path, _) = encrypted("enc-cipher", Role::Reviewer);
            let text = std::fs::read_to_string(&path).expect("read");
            let line = text.lines().find(|l| l.starts_with(field)).expect("line").to_owned();
            // Flip the lowest bit of the last hex digit.
            let mut bent = line.into_bytes();
            let last = bent.len() - 1;
            bent[last] = if bent[last] == b'0' { b'1' } else { b'0' };
            let bent = String::from_utf8(bent).expect("ascii");
            edit_line(&path, field, &bent);
            assert!(
                matches!(
                    Keypair::load_with_passphrase(&path, "correct horse"),
                    Err(IdentityError::WrongPassphrase { .. })
                ),
                "{field}"
            );
            std::fs::remove_file(&path).expect("cleanup");
        }
    }

    #[test]
    fn absurd_kdf_costs_are_refused_before_any_work() {
        for absurd in [
            "kdf: argon2id m=4294967295 t=3 p=1",
            "kdf: argon2id m=65536 t=4294967295 p=1",
            "kdf: argon2id m=65536 t=3 p=16777215",
            "kdf: argon2id m=1048576 t=16 p=1",
            "kdf: argon2id m=99999999999999999999 t=3 p=1",
            "kdf: scrypt n=1 r=8 p=1",
        ] {
            let (path, _) = encrypted("enc-absurd", Role::Reviewer);
            edit_line(&path, "kdf: ", absurd);
            let start = Instant::now();
            let err = Keypair::load_with_passphrase(&path, "correct horse").expect_err("absurd");
            assert!(matches!(err, IdentityError::Malformed { .. }), "{absurd}: {err:?}");
            assert!(start.elapsed() < Duration::from_secs(1), "{absurd} took too long");
            // is_encrypted parses too, so it reports the problem before a prompt.
            assert!(is_encrypted(&path).is_err());
            std::fs::remove_file(&path).expect("cleanup");
        }
    }

    #[test]
    fn inconsistent_fields_are_malformed() {
        let (path, key) = encrypted("enc-mixed", Role::Reviewer);
        let text = std::fs::read_to_string(&path).expect("read");
        let with_secret = format!("{text}secret: {}\n", hex::encode(key.signing.as_bytes()));
        let without_nonce: String =
            text.lines().filter(|l| !l.starts_with("nonce: ")).map(|l| format!("{l}\n")).collect();
        let duplicate_role = format!("{text}role: reviewer\n");
        for bad in [with_secret, without_nonce, duplicate_role] {
            std::fs::write(&path, bad).expect("write");
            assert!(matches!(
                Keypair::load_with_passphrase(&path, "correct horse"),
                Err(IdentityError::Malformed { .. })
            ));
        }
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn empty_passphrase_is_refused_and_leaves_no_file() {
        let path = temp_path("enc-empty");
        let key = Keypair::generate(Role::Reviewer);
        assert!(matches!(key.save_encrypted(&path, ""), Err(IdentityError::EmptyPassphrase)));
        assert!(!path.exists());
    }

    #[test]
    fn crlf_line_endings_still_decrypt() {
        let (path, key) = encrypted("enc-crlf", Role::Reviewer);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace('\n', "\r\n")).expect("write");
        let loaded = Keypair::load_with_passphrase(&path, "correct horse").expect("load");
        assert_eq!(loaded.public(), key.public());
        std::fs::remove_file(&path).expect("cleanup");
    }

    /// The one test with the real (default) Argon2id costs; prints how long
    /// one load takes (`cargo test -- --nocapture`).
    #[test]
    fn default_costs_round_trip() {
        let path = temp_path("enc-default");
        let key = Keypair::generate(Role::Reviewer);
        key.save_encrypted(&path, "correct horse battery staple").expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("\nkdf: argon2id m=65536 t=3 p=1\n"));
        let start = Instant::now();
        let loaded = Keypair::load_with_passphrase(&path, "correct horse battery staple").expect("load");
        eprintln!("default-cost encrypted key load took {:?}", start.elapsed());
        assert_eq!(loaded.public(), key.public());
        assert!(matches!(Keypair::load_with_passphrase(&path, "wrong"), Err(IdentityError::WrongPassphrase { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }
}

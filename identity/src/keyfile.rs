//! Key files: one small text file per private key.
//!
//! ```text
//! conductor-key v1
//! role: reviewer
//! public: <64 hex digits>
//! secret: <64 hex digits>
//! ```
//!
//! Files are created with mode 0600 and `create_new`, so a key is never
//! overwritten and never readable by others, and loading refuses a file
//! that group or others can read (as ssh does).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::keys::decode_hex_array;
use crate::{IdentityError, Keypair, Role};

const HEADER: &str = "conductor-key v1";
/// A key file is four short lines; anything larger is not one of ours.
const KEY_FILE_BYTES_MAX: u64 = 4096;

impl Keypair {
    /// Writes the key to a new owner-only file. Fails if the file exists.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io { path: path.to_owned(), source };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        let text = format!(
            "{HEADER}\nrole: {}\npublic: {}\nsecret: {}\n",
            self.role,
            self.public().to_hex(),
            hex::encode(self.signing.to_bytes()),
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`Keypair::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io { path: path.to_owned(), source };
        let malformed = |reason: &str| IdentityError::Malformed {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let meta = std::fs::metadata(path).map_err(io)?;
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
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed("first line is not `conductor-key v1`"));
        }
        let mut role = None;
        let mut public = None;
        let mut secret = None;
        for line in lines {
            let Some((name, value)) = line.split_once(": ") else {
                return Err(malformed("expected `name: value` lines"));
            };
            match name {
                "role" => role = Some(value.parse::<Role>()?),
                "public" => public = Some(value),
                "secret" => secret = Some(decode_hex_array::<32>("secret key", value)?),
                _ => return Err(malformed("unknown field")),
            }
        }
        let role = role.ok_or_else(|| malformed("missing `role`"))?;
        let secret = secret.ok_or_else(|| malformed("missing `secret`"))?;
        let key = Keypair { signing: SigningKey::from_bytes(&secret), role };
        // The public line is redundant; checking it catches a hand-edited file.
        if public != Some(key.public().to_hex().as_str()) {
            return Err(malformed("`public` does not match the secret key"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "identity-test-{}-{}",
            std::process::id(),
            name
        ));
        let _ = std::fs::remove_file(&dir);
        dir
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
        let text = std::fs::read_to_string(&path).expect("read");
        let other = Keypair::generate(Role::Agent).public().to_hex();
        let edited: String = text
            .lines()
            .map(|l| if l.starts_with("public: ") { format!("public: {other}\n") } else { format!("{l}\n") })
            .collect();
        std::fs::write(&path, edited).expect("write");
        assert!(matches!(Keypair::load(&path), Err(IdentityError::Malformed { .. })));
        std::fs::remove_file(&path).expect("cleanup");
    }
}

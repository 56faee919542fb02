//! Module trust: detached signatures over an agent module's blake3 hash.
//!
//! `conductor modules sign MODULE --key K` writes `MODULE.sig`; a mission
//! that lists `trust.modules_signed_by` refuses, before anything runs or is
//! journaled, any agent module without a valid signature by one of those
//! keys. The signature file is text:
//!
//! ```text
//! conductor-module-signature v1
//! module-blake3 <64 hex>
//! key <64 hex: the signer's Ed25519 public key>
//! signature <128 hex>
//! ```
//!
//! The signed message is `blake3::derive_key("conductor module signature
//! v1", module blake3)`, so a module signature can never be mistaken for
//! a journal entry's or any other signature.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use identity::{Keypair, PublicKey, Role, Signature};
use missions::Mission;

const HEADER: &str = "conductor-module-signature v1";
const CONTEXT: &str = "conductor module signature v1";
/// A signature file is four short lines; anything longer is not one.
const SIGNATURE_FILE_BYTES_MAX: u64 = 1024;

/// Where a module's detached signature lives.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn message(module_hash: &blake3::Hash) -> [u8; 32] {
    blake3::derive_key(CONTEXT, module_hash.as_bytes())
}

fn module_hash(module: &Path) -> Result<blake3::Hash> {
    let bytes = crate::files::read_regular(module, "module", cells::MODULE_FILE_BYTES_MAX)?;
    Ok(blake3::hash(&bytes))
}

/// Signs `module` with `key` (an operator's key) and writes `MODULE.sig`,
/// replacing an older signature. Returns the signature file's path.
pub fn sign(module: &Path, key: &Keypair) -> Result<PathBuf> {
    if key.role() != Role::Operator {
        bail!(
            "modules are signed with an operator key (`conductor keys new --role operator`), not a {} key",
            key.role()
        );
    }
    let hash = module_hash(module)?;
    let signature = key.sign(&message(&hash));
    let text = format!(
        "{HEADER}\nmodule-blake3 {}\nkey {}\nsignature {}\n",
        hash.to_hex(),
        key.public().to_hex(),
        signature.to_hex()
    );
    let path = signature_path(module);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Who signed `module`, if its signature file is well formed, names this
/// module's content, and verifies.
pub fn verify(module: &Path) -> Result<PublicKey> {
    verify_content(module, &module_hash(module)?)
}

/// As [`verify`], for module bytes already read (and hashed as `hash`)
/// from `module`: what runs is then exactly what was checked, even if the
/// file is replaced in between.
pub fn verify_content(module: &Path, hash: &blake3::Hash) -> Result<PublicKey> {
    let path = signature_path(module);
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "{} is not signed (no {}); sign it with `conductor modules sign {} --key OPERATOR.key`",
            module.display(),
            path.display(),
            module.display()
        )
    })?;
    if meta.len() > SIGNATURE_FILE_BYTES_MAX {
        bail!("{} is {} bytes: not a module signature", path.display(), meta.len());
    }
    let text = crate::files::read_text(&path, "module signature", SIGNATURE_FILE_BYTES_MAX)?;
    let bad = |what: &str| anyhow::anyhow!("{}: {what}", path.display());
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(bad(&format!("does not start with `{HEADER}`")));
    }
    let mut field = |name: &str| -> Result<String> {
        let line = lines.next().ok_or_else(|| bad(&format!("missing `{name}` line")))?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("expected `{name} …`, found `{line}`")))
    };
    let claimed = field("module-blake3")?;
    let key = PublicKey::from_hex(&field("key")?).map_err(|e| bad(&format!("key: {e}")))?;
    let signature = Signature::from_hex(&field("signature")?).map_err(|e| bad(&format!("signature: {e}")))?;
    if claimed != hash.to_hex().as_str() {
        bail!(
            "{} was signed as blake3 {claimed} but the module is now {}: it changed after signing",
            module.display(),
            hash.to_hex()
        );
    }
    key.verify(&message(hash), &signature)
        .map_err(|e| anyhow::anyhow!("{}: the signature does not verify ({e})", path.display()))?;
    Ok(key)
}

/// Checks every agent module file of `mission` against its trust
/// settings (for `mission validate` and the early refusal in `run`).
pub fn check_mission(mission: &Mission) -> Result<()> {
    if mission.trust.modules_signed_by.is_empty() {
        return Ok(());
    }
    for agent in &mission.agents {
        check_agent(mission, agent, &module_hash(&agent.module)?)?;
    }
    Ok(())
}

/// Checks the module bytes an agent will actually run (hashed as `hash`)
/// against the mission's trust settings; nothing is required when the
/// mission lists no signers.
pub fn check_agent(mission: &Mission, agent: &missions::Agent, hash: &blake3::Hash) -> Result<()> {
    let trusted = &mission.trust.modules_signed_by;
    if trusted.is_empty() {
        return Ok(());
    }
    let signer = verify_content(&agent.module, hash).with_context(|| format!("agent `{}`", agent.name))?;
    if !trusted.contains(&signer.to_hex()) {
        bail!(
            "agent `{}`: {} is signed by key {}, which the mission does not trust (trust.modules_signed_by)",
            agent.name,
            agent.module.display(),
            signer.to_hex()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_the_module_content_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let module = dir.path().join("agent.wasm");
        std::fs::write(&module, b"\0asm\x0d\0\x01\0 pretend component").expect("write");
        let operator = Keypair::generate(Role::Operator);
        assert!(verify(&module).is_err(), "unsigned");
        sign(&module, &operator).expect("sign");
        assert_eq!(verify(&module).expect("verifies"), operator.public());
        // Any change to the module breaks it.
        std::fs::write(&module, b"\0asm\x0d\0\x01\0 another component").expect("write");
        let err = verify(&module).expect_err("changed module");
        assert!(err.to_string().contains("changed after signing"), "{err}");
        // A forged signature line (right hash, someone else's key) fails.
        sign(&module, &operator).expect("re-sign");
        let path = signature_path(&module);
        let text = std::fs::read_to_string(&path).expect("read");
        let other = Keypair::generate(Role::Operator);
        let forged = text.replace(&operator.public().to_hex(), &other.public().to_hex());
        std::fs::write(&path, forged).expect("write");
        assert!(verify(&module).is_err(), "key swapped");
        // Only operator keys sign modules.
        assert!(sign(&module, &Keypair::generate(Role::Reviewer)).is_err());
        // Garbage signature files are errors.
        for junk in ["", "hello", "conductor-module-signature v1\n", &"x".repeat(5000)] {
            std::fs::write(&path, junk).expect("write");
            assert!(verify(&module).is_err(), "{junk:.20}");
        }
    }
}

//! The document store: the bytes of cases' documents, kept in the data
//! directory under their BLAKE3 hash (`DIR/documents/ab/abcdef…`).
//!
//! A document is written (and synced) before the `case.received` that
//! names its hash is committed, so an acknowledged case never names bytes
//! that are not on disk. Content addressing makes the write idempotent: a
//! case retried after a crash, or the same attachment on many cases, is
//! stored once. Files left by a submission that was then refused are
//! harmless: nothing names them.
//!
//! A case that names its data subject (`_subject` in its input) has its
//! documents sealed under that subject's memory key (`memory::seal_bytes`)
//! and kept under `DIR/documents/sealed/<subject digest>/<hash>`: erasing
//! the subject (`conductor memory erase`) crypto-shreds them with its
//! facts, while the journal, which holds only their hashes, still
//! verifies.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const DIR: &str = "documents";

/// Where the document with hash `blake3` (hex) lives under `root`.
fn path_of(root: &Path, blake3: &str) -> Result<PathBuf> {
    let well_formed = blake3.len() == 64 && blake3.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        bail!("`{blake3}` is not a document hash (64 lowercase hex digits)");
    }
    Ok(root.join(DIR).join(&blake3[..2]).join(blake3))
}

/// Stores `bytes` and returns their BLAKE3 hash (hex), once the file and
/// its directory entry are durable.
pub fn store(root: &Path, bytes: &[u8]) -> Result<String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let path = path_of(root, &hash)?;
    if path.is_file() {
        return Ok(hash);
    }
    write_durably(&path, bytes)?;
    Ok(hash)
}

/// Where a sealed document of `subject` lives: the subject's digest keeps
/// one subject's copy apart from another's (each has its own key).
fn sealed_path_of(root: &Path, subject: &str, blake3: &str) -> Result<PathBuf> {
    let plain = path_of(root, blake3)?;
    let name = plain.file_name().context("a document path has a name")?;
    let digest = blake3::hash(subject.as_bytes()).to_hex();
    Ok(root.join(DIR).join("sealed").join(&digest[..32]).join(name))
}

/// Stores `bytes` sealed under `subject`'s key and returns their hash
/// (of the plaintext, as the journal names them), once durable. Refused
/// for an erased subject.
pub fn store_sealed(root: &Path, ledger: &ledger::Ledger, subject: &str, bytes: &[u8]) -> Result<String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let path = sealed_path_of(root, subject, &hash)?;
    if path.is_file() {
        return Ok(hash);
    }
    let sealed = ledger.write(|t| -> Result<Vec<u8>> { Ok(memory::seal_bytes(t.redb(), subject, &hash, bytes)?) })?;
    write_durably(&path, &sealed)?;
    Ok(hash)
}

/// A document as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Bytes(Vec<u8>),
    /// Its data subject was erased: the bytes are gone for good.
    Erased,
}

/// The document `blake3` (sealed under `subject`'s key when it has one),
/// checked against its hash. `snapshot` holds the subject keys.
pub fn load<S: memory::Snapshot>(root: &Path, snapshot: &S, subject: Option<&str>, blake3: &str) -> Result<Loaded> {
    let Some(subject) = subject else { return read(root, blake3).map(Loaded::Bytes) };
    let path = sealed_path_of(root, subject, blake3)?;
    let sealed = std::fs::read(&path).with_context(|| format!("reading document {blake3}"))?;
    let Some(bytes) = memory::open_bytes(snapshot, subject, blake3, &sealed)? else { return Ok(Loaded::Erased) };
    if blake3::hash(&bytes).to_hex().as_str() != blake3 {
        bail!("document {blake3} does not match its hash once opened");
    }
    Ok(Loaded::Bytes(bytes.to_vec()))
}

/// Writes `bytes` at `path` under a temporary name, syncs, renames and
/// syncs the directory: a crash leaves the whole file or none.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a document path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().context("a document path has a name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("storing {}", path.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// The document with hash `blake3`, checked against it: a file changed on
/// disk is an error, never bytes an agent or auditor would trust.
pub fn read(root: &Path, blake3: &str) -> Result<Vec<u8>> {
    let path = path_of(root, blake3)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading document {blake3}"))?;
    if blake3::hash(&bytes).to_hex().as_str() != blake3 {
        bail!("document {blake3} was changed on disk ({}): its bytes no longer match its hash", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_document_reads_back_until_its_subject_is_erased() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ledger = ledger::Ledger::open(&dir.path().join("db.redb")).expect("a database");
        ledger.write(|t| -> Result<()> { Ok(memory::create_tables(t.redb())?) }).expect("memory tables");
        let hash = store_sealed(dir.path(), &ledger, "claimant:1", b"payslip").expect("stored");
        let on_disk = sealed_path_of(dir.path(), "claimant:1", &hash).expect("a path");
        assert!(!std::fs::read(&on_disk).expect("stored bytes").windows(7).any(|w| w == b"payslip"), "sealed at rest");
        let read = ledger.read().expect("a snapshot");
        assert_eq!(
            load(dir.path(), &read, Some("claimant:1"), &hash).expect("loaded"),
            Loaded::Bytes(b"payslip".to_vec())
        );
        drop(read);
        ledger
            .write(|t| -> Result<()> {
                memory::Writer::new(t.redb(), 1)?.erase_subject("claimant:1")?;
                Ok(())
            })
            .expect("erased");
        let read = ledger.read().expect("a snapshot");
        assert_eq!(load(dir.path(), &read, Some("claimant:1"), &hash).expect("loaded"), Loaded::Erased);
        assert!(
            store_sealed(dir.path(), &ledger, "claimant:1", b"another").is_err(),
            "an erased subject takes nothing"
        );
    }

    #[test]
    fn a_document_is_stored_once_under_its_hash_and_a_changed_one_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hash = store(dir.path(), b"claim form").expect("stored");
        assert_eq!(hash, blake3::hash(b"claim form").to_hex().as_str());
        assert_eq!(store(dir.path(), b"claim form").expect("stored"), hash);
        assert_eq!(read(dir.path(), &hash).expect("read back"), b"claim form");
        std::fs::write(path_of(dir.path(), &hash).expect("a path"), b"forged").expect("overwritten");
        assert!(
            read(dir.path(), &hash).expect_err("a changed document is refused").to_string().contains("changed on disk")
        );
        assert!(read(dir.path(), "../../etc/passwd").is_err());
    }
}

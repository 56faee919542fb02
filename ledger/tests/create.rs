//! Creating and opening the database file (issue 18, item 19).
//!
//! A new database is built under a temporary name and renamed into place
//! only when complete, so a creation cut short (a full disk, a crash)
//! leaves nothing at the database's path and the next run starts clean.
//! A file at that path which is not a redb database (empty, all zeros,
//! anything else) is named, with what it holds and what to do, instead of
//! redb's "magic number mismatch".
//!
//! The full disk is real: the creation runs in a child process (this test
//! binary again) whose file size limit (`ulimit -f`, with SIGXFSZ ignored
//! so writes fail with an error instead of killing it) stops the database
//! file from growing, at several sizes, so creation fails at different
//! points.

use std::path::{Path, PathBuf};
use std::process::Command;

use identity::{Keypair, Role};
use ledger::{DamagedFile, Ledger, LedgerError, VerifyError};
use serde_json::json;

const DB: &str = "conductor.redb";
/// The name a creation in progress uses (see `Ledger::open`).
const TEMP: &str = ".conductor.redb.creating";
/// Set in the child process: the database path it creates.
const CHILD_ENV: &str = "LEDGER_CREATE_TEST_CHILD_DB";
/// Printed by the child before its result.
const CHILD_SAYS: &str = "child-result: ";

fn not_a_database(path: &Path) -> DamagedFile {
    match Ledger::open(path) {
        Err(LedgerError::NotADatabase { path: named, found }) => {
            assert_eq!(named, path);
            let message = LedgerError::NotADatabase { path: named, found }.to_string();
            assert!(message.contains(&path.display().to_string()), "names the file: {message}");
            assert!(message.contains("never completely created"), "says why: {message}");
            assert!(
                message.contains("delete the directory") && message.contains("backup"),
                "says what to do: {message}"
            );
            // Auditors' read-only opens, and verification, say the same.
            assert!(matches!(ledger::open_read_only(path), Err(LedgerError::NotADatabase { .. })));
            assert!(matches!(
                ledger::verify_database(path, &[]),
                Err(VerifyError::Ledger(LedgerError::NotADatabase { .. }))
            ));
            found
        }
        Err(other) => panic!("expected NotADatabase, got {other}"),
        Ok(_) => panic!("{} was opened as a database", path.display()),
    }
}

#[test]
fn a_zero_filled_database_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    // What a disk that filled during redb's first writes leaves: the space
    // allocated, nothing written.
    std::fs::write(&path, vec![0u8; 1 << 20]).expect("write");
    assert_eq!(not_a_database(&path), DamagedFile::Zeros);
    assert_eq!(std::fs::read(&path).expect("read").len(), 1 << 20, "the file is left as it was");
}

#[test]
fn an_empty_database_file_is_refused_not_silently_started_afresh() {
    // An empty file where a journal should be may be a journal lost to a
    // fault; starting a new one there would hide that.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    std::fs::write(&path, b"").expect("write");
    assert_eq!(not_a_database(&path), DamagedFile::Empty);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0, "nothing was written to it");
}

#[test]
fn a_file_that_is_not_a_database_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    std::fs::write(&path, b"mission: not a database\n").expect("write");
    assert_eq!(not_a_database(&path), DamagedFile::NoHeader);
}

/// The database at `path` is complete and usable: a journal can start.
fn assert_usable(path: &Path) {
    let ledger = Ledger::open(path).expect("opens");
    let key = Keypair::generate(Role::Conductor);
    ledger.write(|t| t.genesis(&key, json!({}), 1)).expect("genesis");
    ledger.verify().expect("verifies");
}

#[test]
fn a_temporary_left_by_a_crashed_creation_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    // A creator killed mid-way: its temporary holds part of a file.
    std::fs::write(dir.path().join(TEMP), vec![0u8; 70_000]).expect("write");
    assert_usable(&path);
    assert!(!dir.path().join(TEMP).exists(), "the stale temporary is gone");
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, [DB], "nothing else is left in the directory");
}

#[test]
fn creators_racing_for_one_path_make_one_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB);
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| match Ledger::open(&path) {
                    // The winner holds it open a moment; others find it in use.
                    Ok(ledger) => {
                        drop(ledger);
                        Ok(())
                    }
                    Err(LedgerError::Busy(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("no panic")).collect()
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_usable(&path);
    assert!(!dir.path().join(TEMP).exists());
}

/// The child's part: create the database at `path` under the size limit
/// the parent set, and say how it went.
fn child(path: &str) {
    let outcome = match Ledger::open(Path::new(path)) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("error: {}", chain(&e)),
    };
    println!("\n{CHILD_SAYS}{outcome}");
}

/// `e` and its causes, as `{:#}` of anyhow prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Runs this test in a child process whose files may grow to at most
/// `blocks` shell blocks (512 or 1024 bytes), creating a database at
/// `path`. Returns the child's result line.
fn create_under_limit(path: &Path, blocks: u32) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("sh")
        .arg("-c")
        // An ignored signal stays ignored across exec, so the limit
        // surfaces as an error (EFBIG) from the write, like a full disk.
        .arg(format!("trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        // The harness prints "test NAME ... " before it, on the same line.
        .find_map(|l| l.split_once(CHILD_SAYS).map(|(_, said)| said))
        .unwrap_or_else(|| panic!("the child said nothing: {stdout}"))
        .to_owned()
}

const TEST_NAME: &str = "a_creation_cut_short_by_a_full_disk_leaves_nothing_behind";

#[test]
fn a_creation_cut_short_by_a_full_disk_leaves_nothing_behind() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return child(&path);
    }
    let mut failed = 0;
    // From far below the size redb first gives the file (about 70 KB)
    // to room enough; around 140 blocks (of 512 bytes) it just fits.
    for blocks in [1, 16, 64, 140, 144, 4096] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: PathBuf = dir.path().join(DB);
        let said = create_under_limit(&path, blocks);
        eprintln!("file size limit {blocks} blocks: {said}");
        if said == "ok" {
            assert_usable(&path);
        } else {
            failed += 1;
            assert!(said.contains("could not create the ledger database"), "{blocks} blocks: {said}");
            assert!(said.contains("nothing was left in its place"), "{blocks} blocks: {said}");
            // The cause, once.
            assert_eq!(said.matches("File too large").count(), 1, "{blocks} blocks: {said}");
            let left: Vec<_> =
                std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
            assert!(left.is_empty(), "{blocks} blocks: a failed creation left {left:?}");
            // Once there is room, the same call creates it.
            assert_usable(&path);
        }
    }
    assert!(failed > 0, "the smallest limits must make creation fail");
}

//! Whether this process's storage still works.
//!
//! After redb fails a commit (an I/O error, a full disk) it refuses every
//! later write until the database is reopened. A long-lived process (the
//! server) must not stay up answering requests it can no longer record:
//! whoever sees a storage failure reports it here, and the server stops
//! with a non-zero status so that a supervisor restarts it.

use std::sync::{Mutex, PoisonError};

/// The storage failure this process saw, in words.
static FAILED: Mutex<Option<Failure>> = Mutex::new(None);

struct Failure {
    text: String,
    /// redb's "previous I/O error": a consequence of a failure that may
    /// not have been reported yet (say, by a task still unwinding).
    consequence: bool,
}

/// Records that a write to the data directory failed. The first failure
/// that says what went wrong is kept ("No space left on device"): later
/// ones are its consequences (redb answers every write after an I/O
/// error with "previous I/O error"). Such a consequence is kept only
/// until the failure itself is reported: with many writers, the one that
/// hit the full disk is not always the first to report.
pub fn storage_failed(error: &anyhow::Error) {
    let consequence = is_consequence(error);
    let mut failed = FAILED.lock().unwrap_or_else(PoisonError::into_inner);
    if failed.as_ref().is_none_or(|f| f.consequence && !consequence) {
        *failed = Some(Failure { text: describe(error), consequence });
    }
}

/// The storage failure, if any, in words.
pub fn failure() -> Option<String> {
    FAILED.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|f| f.text.clone())
}

/// Whether `error` only says that an earlier write failed.
fn is_consequence(error: &anyhow::Error) -> bool {
    error.chain().any(|link| {
        matches!(link.downcast_ref::<redb::Error>(), Some(redb::Error::PreviousIo))
            || matches!(link.downcast_ref::<redb::StorageError>(), Some(redb::StorageError::PreviousIo))
            // Some of redb's write paths hand it over as `Error::Io` of a
            // plain `io::Error` carrying only this text ("I/O error:
            // Previous I/O error occurred…"), with no variant to match; the
            // redb error's text is what tests/diskfull.rs depends on.
            || link.downcast_ref::<std::io::Error>().is_some_and(|e| e.to_string().starts_with(PREVIOUS_IO))
            || link.downcast_ref::<redb::Error>().is_some_and(|e| e.to_string().contains(PREVIOUS_IO))
    })
}

/// How redb words an error that only follows from an earlier I/O error.
const PREVIOUS_IO: &str = "Previous I/O error occurred";

/// Records `error` as the storage failure if it is one (an I/O error,
/// corruption or a closed database under the ledger), and says whether it
/// was. Refusals (budget, signatures, rules) are not storage failures.
pub fn note(error: &anyhow::Error) -> bool {
    let storage = is_storage(error);
    if storage {
        storage_failed(error);
    }
    storage
}

/// Whether `error` comes from the storage under the ledger.
pub fn is_storage(error: &anyhow::Error) -> bool {
    error.chain().any(|link| {
        if let Some(e) = link.downcast_ref::<redb::Error>() {
            return matches!(
                e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::Corrupted(_) | redb::Error::DatabaseClosed
            );
        }
        if let Some(e) = link.downcast_ref::<redb::StorageError>() {
            return matches!(
                e,
                redb::StorageError::Io(_)
                    | redb::StorageError::PreviousIo
                    | redb::StorageError::Corrupted(_)
                    | redb::StorageError::DatabaseClosed
            );
        }
        false
    })
}

/// `error` and its causes in one line, each said once. Error types that
/// print their cause and also return it as their `source` (the ledger's
/// storage error and redb's I/O error both do) would otherwise repeat it:
/// "…: No space left on device (os error 28): No space left on device
/// (os error 28)".
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for link in error.chain() {
        let part = link.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_io_error_handed_over_as_io_is_a_consequence() {
        let previous = std::io::Error::other("Previous I/O error occurred. Please close and re-open the database.");
        let error = anyhow::Error::from(ledger::LedgerError::Storage(redb::Error::Io(previous))).context("task 37");
        assert!(is_storage(&error) && is_consequence(&error), "{}", describe(&error));
        let full = std::io::Error::from_raw_os_error(28);
        let error = anyhow::Error::from(ledger::LedgerError::Storage(redb::Error::Io(full)));
        assert!(!is_consequence(&error));
    }

    #[test]
    fn a_full_disk_is_a_storage_failure_said_once() {
        let full = std::io::Error::from_raw_os_error(28);
        let error = anyhow::Error::from(ledger::LedgerError::Storage(redb::Error::Io(full))).context("deciding gate g");
        assert!(is_storage(&error));
        let text = describe(&error);
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
        assert!(text.starts_with("deciding gate g: storage error"), "{text}");
        assert_eq!(format!("{error:#}").matches("No space left on device").count(), 2, "what describe() avoids");
    }

    #[test]
    fn the_cause_is_kept_over_its_consequences() {
        let previous = anyhow::Error::from(ledger::LedgerError::Storage(redb::Error::PreviousIo));
        let full =
            anyhow::Error::from(ledger::LedgerError::Storage(redb::Error::Io(std::io::Error::from_raw_os_error(28))));
        storage_failed(&previous);
        assert!(failure().is_some_and(|f| f.contains("Previous I/O error")));
        storage_failed(&full);
        storage_failed(&previous);
        let kept = failure().expect("a failure");
        assert!(kept.contains("No space left on device") && !kept.contains("Previous"), "{kept}");
    }

    #[test]
    fn refusals_are_not_storage_failures() {
        let refused = anyhow::Error::from(ledger::LedgerError::BadEntry("too large".into()));
        assert!(!is_storage(&refused));
    }
}

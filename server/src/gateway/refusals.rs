//! Refusals of valid keys, bounded.
//!
//! A refusal costs its client nothing, so a client that keeps sending
//! what is refused (a key with no budget left, a malformed request) must
//! not cost the host a durable journal entry each time. Counting happens
//! in fixed windows of [`REFUSAL_WINDOW`]: in each, a key's first
//! [`REFUSALS_JOURNALED_PER_WINDOW`] refusals are journaled one by one
//! (`gateway.refused`, with their reason); past that, the key's requests
//! are answered `429 rate_limit_exceeded` with `Retry-After` before any
//! work is done, and only counted. When the window closes (and when the
//! server stops) the counts are journaled as one `gateway.refusals` entry
//! signed by the conductor: per key, how many refusals were not journaled
//! one by one, by code. So a key costs at most that many entries a
//! window, and the whole gateway one summary a window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use engine::entries::{self, GatewayRefusals, KeyRefusals};

use super::GatewayKey;
use engine::clock::now_us;
use engine::data::DataDir;

/// One counting window. A minute keeps an honest client's occasional
/// refusal on record individually, and bounds a hostile one's cost at
/// one summary entry a minute.
pub(super) const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Refusals per key and window journaled one by one. An honest client
/// rarely has more than a few refusals a minute; ten keep their reasons
/// on record while capping a flood at ten durable entries a minute a key.
pub(super) const REFUSALS_JOURNALED_PER_WINDOW: u32 = 10;
/// Keys counted in one window. Keys are issued by operators, so a real
/// gateway has far fewer; past this, refusals of further keys are counted
/// together (`untracked`) so the table cannot grow without bound.
const REFUSAL_KEYS_MAX: usize = 4096;
/// The code a request gets once its key is over its allowance.
pub(super) const RATE_LIMITED: &str = "rate_limit_exceeded";

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Journal it (`gateway.refused`) and answer with its own error.
    Journal,
    /// Count it and answer 429 with `Retry-After`.
    Limited { retry_after_s: u64 },
}

/// One key's refusals in the current window.
#[derive(Debug)]
struct Counts {
    account: String,
    /// Refusals journaled one by one.
    journaled: u32,
    /// Refusals only counted, by the code they would have had.
    counted: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    opened_us: i64,
    keys: HashMap<String, Counts>,
    /// Counted refusals of keys beyond [`REFUSAL_KEYS_MAX`].
    untracked: u64,
}

impl Window {
    fn new() -> Self {
        Window { opened: Instant::now(), opened_us: now_us(), keys: HashMap::new(), untracked: 0 }
    }

    /// Seconds until this window closes, at least 1.
    fn retry_after_s(&self) -> u64 {
        REFUSAL_WINDOW.saturating_sub(self.opened.elapsed()).as_secs().max(1)
    }

    /// See [`RefusalLog::limited`].
    fn limited(&mut self, key_id: &str) -> Option<u64> {
        let retry_after_s = self.retry_after_s();
        let counts = self.keys.get_mut(key_id)?;
        if counts.journaled < REFUSALS_JOURNALED_PER_WINDOW {
            return None;
        }
        *counts.counted.entry(RATE_LIMITED).or_default() += 1;
        Some(retry_after_s)
    }

    /// See [`RefusalLog::refusal`].
    fn refusal(&mut self, key_id: &str, account: &str, code: &'static str) -> Verdict {
        let retry_after_s = self.retry_after_s();
        if self.keys.len() >= REFUSAL_KEYS_MAX && !self.keys.contains_key(key_id) {
            self.untracked += 1;
            return Verdict::Limited { retry_after_s };
        }
        let counts = self.keys.entry(key_id.to_owned()).or_insert_with(|| Counts {
            account: account.to_owned(),
            journaled: 0,
            counted: BTreeMap::new(),
        });
        if counts.journaled < REFUSALS_JOURNALED_PER_WINDOW {
            counts.journaled += 1;
            return Verdict::Journal;
        }
        *counts.counted.entry(code).or_default() += 1;
        Verdict::Limited { retry_after_s }
    }

    /// Refusals counted (not journaled one by one) so far.
    fn counted(&self) -> u64 {
        self.keys.values().flat_map(|c| c.counted.values()).sum::<u64>() + self.untracked
    }
}

/// The refusal counts of one server, journaled when a window closes and
/// when the last handle is dropped (the server stopping).
pub(super) struct RefusalLog {
    window: Mutex<Window>,
    data: DataDir,
}

impl RefusalLog {
    pub(super) fn new(data: DataDir) -> Self {
        RefusalLog { window: Mutex::new(Window::new()), data }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counting never leaves the window half-updated, so a poisoned
        // lock still holds consistent counts.
        self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `key` is over its allowance in this window: then its
    /// request is refused at once (and counted), before any work.
    pub(super) fn limited(&self, key: &GatewayKey) -> Option<u64> {
        self.window().limited(&key.key_id)
    }

    /// A refusal of `key` with `code`: journal it, or count it.
    pub(super) fn refusal(&self, key: &GatewayKey, code: &'static str) -> Verdict {
        self.window().refusal(&key.key_id, &key.account, code)
    }

    /// Closes the window and opens the next: journals one
    /// `gateway.refusals` entry with every key's counted refusals (none
    /// if nothing was counted).
    pub(super) fn flush(&self) -> Result<()> {
        let closed = std::mem::replace(&mut *self.window(), Window::new());
        let total = closed.counted();
        if total == 0 {
            return Ok(());
        }
        let mut keys: Vec<KeyRefusals> = closed
            .keys
            .into_iter()
            .filter(|(_, c)| !c.counted.is_empty())
            .map(|(key_id, c)| KeyRefusals {
                count: c.counted.values().sum(),
                key_id,
                account: c.account,
                codes: c.counted.into_iter().map(|(code, n)| (code.to_owned(), n)).collect(),
            })
            .collect();
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let payload = GatewayRefusals {
            from_us: closed.opened_us,
            to_us: now_us(),
            journaled_per_key_max: REFUSALS_JOURNALED_PER_WINDOW,
            count: total,
            keys,
            untracked: closed.untracked,
        };
        let conductor = self.data.conductor.clone();
        self.data
            .ledger
            .write(|t| entries::append(t, &conductor, &payload, now_us()))
            .with_context(|| format!("journaling a summary of {total} gateway refusals"))?;
        Ok(())
    }
}

impl Drop for RefusalLog {
    /// The server is stopping: what was counted is journaled, not lost.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            super::journal_failed(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_allowance_then_is_counted() {
        let mut window = Window::new();
        for _ in 0..REFUSALS_JOURNALED_PER_WINDOW {
            assert_eq!(window.limited("a"), None);
            assert_eq!(window.refusal("a", "gateway:a", "insufficient_quota"), Verdict::Journal);
        }
        assert!(window.limited("a").is_some(), "over its allowance, refused before any work");
        assert!(
            matches!(window.refusal("a", "gateway:a", "invalid_json"), Verdict::Limited { retry_after_s } if retry_after_s >= 1)
        );
        assert_eq!(window.counted(), 2);
        assert_eq!(window.limited("b"), None, "another key is not limited");
        assert_eq!(window.refusal("b", "gateway:b", "invalid_json"), Verdict::Journal);
    }

    #[test]
    fn the_keys_counted_are_bounded() {
        let mut window = Window::new();
        for i in 0..REFUSAL_KEYS_MAX {
            assert_eq!(window.refusal(&i.to_string(), "gateway:x", "invalid_json"), Verdict::Journal);
        }
        assert!(matches!(window.refusal("one more", "gateway:y", "invalid_json"), Verdict::Limited { .. }));
        assert_eq!((window.keys.len(), window.untracked), (REFUSAL_KEYS_MAX, 1));
    }
}

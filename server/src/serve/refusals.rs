//! Refused decision attempts by signed-in people, rate-limited per key.
//!
//! Every refused attempt to decide (wrong role, someone else's gate, a
//! closed gate, a forged or replayed signature, a malformed body) is
//! journaled as `gate.refused`, so an auditor sees who tried what. But an
//! entry costs disk for good, and a signed-in reviewer could send 300 in
//! 2.4 s with text of their choosing. So, per key, the first
//! [`REFUSALS_JOURNALED_PER_WINDOW`] refusals in a [`REFUSAL_WINDOW`] are
//! journaled one by one; the later ones in the same window are answered
//! `429` and only counted, and when the window closes (or the server
//! stops) the count becomes one `gate.refused` entry with `repeated: N`,
//! signed by the conductor like the others: nothing goes unrecorded, and
//! a key's refusals cost at most 11 entries a minute.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use identity::PublicKey;

use engine::entries::GateRefused;
use engine::gates::Verdict;

/// Refusals journaled one by one per key and window: enough for every
/// honest mistake (a double click, a gate someone else just decided)
/// to be recorded as it happened.
pub(super) const REFUSALS_JOURNALED_PER_WINDOW: u32 = 10;
/// How long a key's window lasts, and so how late a summary may come.
pub(super) const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Keys with an open window at once. Only registered keys that signed in
/// have one, so this is far above any real team; past it, refusals are
/// journaled one by one (still bounded by how many keys there are).
const KEYS_MAX: usize = 4096;
/// What a summary keeps of the last attempt's gate id and reason (both
/// can carry what the caller typed), as `gate.refused` entries do.
const TEXT_BYTES_MAX: usize = 1024;

/// One refused attempt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt<'a> {
    pub public: &'a PublicKey,
    pub gate_id: &'a str,
    pub verdict: Verdict,
    pub reason: &'a str,
    pub time_us: i64,
}

/// Refusals of one key that were counted, not journaled one by one.
#[derive(Debug, Clone)]
pub(super) struct Repeated {
    pub public: PublicKey,
    pub count: u64,
    pub first_us: i64,
    pub last_us: i64,
    /// The last attempt's gate, verdict and reason.
    pub gate_id: String,
    pub verdict: Verdict,
    pub reason: String,
}

impl Repeated {
    /// The summary's `gate.refused` payload: the fields of a single
    /// refusal (for the last attempt), plus how many attempts it stands
    /// for and when they came.
    pub(super) fn payload(&self) -> GateRefused {
        GateRefused {
            gate_id: self.gate_id.clone(),
            key_id: self.public.key_id().to_string(),
            public_key: self.public.to_hex(),
            verdict: verdict_text(self.verdict).to_owned(),
            reason: self.reason.clone(),
            repeated: Some(self.count),
            first_us: Some(self.first_us),
            last_us: Some(self.last_us),
        }
    }
}

/// As `gate.refused` entries name a verdict.
fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    }
}

/// What to do with a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Journal it as its own entry, and answer as usual.
    Journal,
    /// It was counted; answer `429`, retry after this long.
    Counted { retry_after: Duration },
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    journaled: u32,
    repeated: Option<Repeated>,
}

/// Every key's current window.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    windows: Mutex<HashMap<[u8; 32], Window>>,
}

impl Refusals {
    /// Decides how `attempt` is recorded at `now`. A summary of the key's
    /// previous window, if that window closed with refusals counted, is
    /// returned to be journaled first (so entries stay in order).
    pub(super) fn admit(&self, attempt: &Attempt<'_>, now: Instant) -> (Admit, Option<Repeated>) {
        let mut windows = self.windows();
        let key = attempt.public.to_bytes();
        let mut closed = None;
        if windows.get(&key).is_some_and(|w| now.saturating_duration_since(w.opened) >= REFUSAL_WINDOW) {
            closed = windows.remove(&key).and_then(|w| w.repeated);
        }
        if !windows.contains_key(&key) && windows.len() >= KEYS_MAX {
            windows.retain(|_, w| now.saturating_duration_since(w.opened) < REFUSAL_WINDOW || w.repeated.is_some());
            if windows.len() >= KEYS_MAX {
                return (Admit::Journal, closed);
            }
        }
        let window = windows.entry(key).or_insert(Window { opened: now, journaled: 0, repeated: None });
        if window.journaled < REFUSALS_JOURNALED_PER_WINDOW {
            window.journaled += 1;
            return (Admit::Journal, closed);
        }
        count(window, attempt);
        let retry_after = REFUSAL_WINDOW.saturating_sub(now.saturating_duration_since(window.opened));
        (Admit::Counted { retry_after }, closed)
    }

    /// Takes the summaries of windows that closed by `now` (every window
    /// with refusals counted, if `now` is `None`: the server is stopping).
    pub(super) fn closed(&self, now: Option<Instant>) -> Vec<Repeated> {
        let mut windows = self.windows();
        let over = |w: &Window| now.is_none_or(|now| now.saturating_duration_since(w.opened) >= REFUSAL_WINDOW);
        let keys: Vec<[u8; 32]> = windows.iter().filter(|(_, w)| over(w)).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| windows.remove(k)).filter_map(|w| w.repeated).collect()
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<[u8; 32], Window>> {
        // Each change to the map is a single insert, remove or update.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds `attempt` to the window's count.
fn count(window: &mut Window, attempt: &Attempt<'_>) {
    let bounded = |text: &str| {
        let mut text = text.to_owned();
        engine::text::truncate_utf8(&mut text, TEXT_BYTES_MAX);
        text
    };
    let repeated = window.repeated.get_or_insert_with(|| Repeated {
        public: *attempt.public,
        count: 0,
        first_us: attempt.time_us,
        last_us: attempt.time_us,
        gate_id: String::new(),
        verdict: attempt.verdict,
        reason: String::new(),
    });
    repeated.count += 1;
    repeated.last_us = attempt.time_us;
    repeated.gate_id = bounded(attempt.gate_id);
    repeated.verdict = attempt.verdict;
    repeated.reason = bounded(attempt.reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_refusals_are_counted_and_summarised_once_the_window_closes() {
        let refusals = Refusals::default();
        let key = identity::Keypair::generate(identity::Role::Reviewer);
        let public = key.public();
        let start = Instant::now();
        let attempt =
            |i: i64| Attempt { public: &public, gate_id: "g", verdict: Verdict::Approve, reason: "no", time_us: i };
        for i in 0..i64::from(REFUSALS_JOURNALED_PER_WINDOW) {
            assert_eq!(refusals.admit(&attempt(i), start).0, Admit::Journal);
        }
        for i in 0..290 {
            assert!(matches!(refusals.admit(&attempt(100 + i), start).0, Admit::Counted { .. }));
        }
        assert!(refusals.closed(Some(start)).is_empty(), "the window is still open");
        let later = start + REFUSAL_WINDOW;
        let (admit, summary) = refusals.admit(&attempt(1000), later);
        assert_eq!(admit, Admit::Journal, "a new window");
        let summary = summary.expect("the closed window's summary");
        assert_eq!((summary.count, summary.first_us, summary.last_us), (290, 100, 389));
        assert!(refusals.closed(None).is_empty(), "nothing counted in the new window");
    }

    #[test]
    fn a_summary_is_journaled_as_a_gate_refused_with_its_count() {
        let key = identity::Keypair::generate(identity::Role::Reviewer);
        let public = key.public();
        let summary = Repeated {
            public,
            count: 3,
            first_us: 5,
            last_us: 9,
            gate_id: "g".into(),
            verdict: Verdict::Reject,
            reason: "no".into(),
        };
        let written = serde_json::to_value(summary.payload()).expect("encodes");
        assert_eq!(
            written,
            serde_json::json!({"gate_id": "g", "key_id": public.key_id().to_string(), "public_key": public.to_hex(),
                "verdict": "rejected", "reason": "no", "repeated": 3, "first_us": 5, "last_us": 9})
        );
    }
}

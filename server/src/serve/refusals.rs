//! Refused requests by known callers, rate-limited per caller.
//!
//! Every refused attempt to decide (wrong role, someone else's gate, a
//! closed gate, a forged or replayed signature, a malformed body) is
//! journaled as `gate.refused`, and every other request refused to a
//! signed-in person or an API token (a wrong role or mission, a revoked
//! or expired token) as `request.refused`, so an auditor sees who tried
//! what. But an entry costs disk for good, and a signed-in reviewer could
//! send 300 in 2.4 s with text of their choosing; a script with a revoked
//! token, thousands in a loop. So, per caller (a key or a token), the
//! first [`REFUSALS_JOURNALED_PER_WINDOW`] refusals in a
//! [`REFUSAL_WINDOW`] are journaled one by one; the later ones in the
//! same window are answered `429` and only counted, and when the window
//! closes (or the server stops) the count becomes one entry per kind,
//! signed by the conductor like the others: a `gate.refused` with
//! `repeated: N`, a `request.refused` saying how many it stands for.
//! Nothing goes unrecorded, and a caller's refusals cost at most 12
//! entries a minute.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use identity::PublicKey;

use engine::entries::{GateRefused, RequestRefused};
use engine::gates::Verdict;

/// Refusals journaled one by one per caller and window: enough for every
/// honest mistake (a double click, a gate someone else just decided)
/// to be recorded as it happened.
pub(super) const REFUSALS_JOURNALED_PER_WINDOW: u32 = 10;
/// How long a caller's window lasts, and so how late a summary may come.
pub(super) const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Callers with an open window at once. Only registered keys that signed
/// in and tokens whose secret was right have one, so this is far above
/// any real team; past it, refusals are journaled one by one (still
/// bounded by how many keys and tokens there are).
const CALLERS_MAX: usize = 4096;
/// What an entry keeps of text a caller can influence (a gate id, a
/// mission id, a reason quoting either), as `gate.refused` entries do.
pub(super) const TEXT_BYTES_MAX: usize = 1024;

/// Whose refusals a window counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Caller {
    /// A person signed in with this key.
    Key(PublicKey),
    /// A script with this API token (its id).
    Token(String),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Key(public) => write!(f, "key {}", public.key_id()),
            Caller::Token(id) => write!(f, "token {id}"),
        }
    }
}

/// One refused request, as its own entry would journal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A decision attempt (`gate.refused`).
    Gate(GateRefused),
    /// Any other request (`request.refused`).
    Request(RequestRefused),
}

impl Refusal {
    /// A refused decision attempt by `public`, its texts bounded.
    pub(super) fn gate(public: &PublicKey, gate_id: &str, verdict: Verdict, reason: &str) -> Refusal {
        Refusal::Gate(GateRefused {
            gate_id: bounded(gate_id),
            key_id: public.key_id().to_string(),
            public_key: public.to_hex(),
            verdict: verdict_text(verdict).to_owned(),
            reason: bounded(reason),
            repeated: None,
            first_us: None,
            last_us: None,
        })
    }

    /// A refused request, its texts bounded.
    pub(super) fn request(mut refused: RequestRefused) -> Refusal {
        refused.reason = bounded(&refused.reason);
        refused.route = bounded(&refused.route);
        refused.mission = refused.mission.as_deref().map(bounded);
        Refusal::Request(refused)
    }

    fn is_gate(&self) -> bool {
        matches!(self, Refusal::Gate(_))
    }
}

fn bounded(text: &str) -> String {
    let mut text = text.to_owned();
    engine::text::truncate_utf8(&mut text, TEXT_BYTES_MAX);
    text
}

/// As `gate.refused` entries name a verdict.
fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    }
}

/// Refusals of one caller and kind that were counted, not journaled one
/// by one.
#[derive(Debug, Clone)]
pub(super) struct Repeated {
    pub caller: Caller,
    pub count: u64,
    pub first_us: i64,
    pub last_us: i64,
    /// The last attempt, as its own entry would have said it.
    pub last: Refusal,
}

impl Repeated {
    /// The summary entry's payload: the fields of the last refusal, and
    /// how many attempts it stands for and when they came.
    pub(super) fn payload(&self) -> Refusal {
        match &self.last {
            Refusal::Gate(last) => Refusal::Gate(GateRefused {
                repeated: Some(self.count),
                first_us: Some(self.first_us),
                last_us: Some(self.last_us),
                ..last.clone()
            }),
            Refusal::Request(last) => Refusal::Request(RequestRefused {
                reason: bounded(&last.reason),
                repeated: Some(self.count),
                first_us: Some(self.first_us),
                last_us: Some(self.last_us),
                ..last.clone()
            }),
        }
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
    /// Counted decision attempts and other requests: one summary each.
    gate: Option<Repeated>,
    request: Option<Repeated>,
}

impl Window {
    fn summaries(self) -> impl Iterator<Item = Repeated> {
        self.gate.into_iter().chain(self.request)
    }

    fn counted(&self) -> bool {
        self.gate.is_some() || self.request.is_some()
    }
}

/// Every caller's current window.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    windows: Mutex<HashMap<Caller, Window>>,
}

impl Refusals {
    /// Decides how `refusal` by `caller` at `time_us` is recorded at
    /// `now`. The summaries of the caller's previous window, if it closed
    /// with refusals counted, are returned to be journaled first (so
    /// entries stay in order).
    pub(super) fn admit(
        &self,
        caller: &Caller,
        refusal: &Refusal,
        time_us: i64,
        now: Instant,
    ) -> (Admit, Vec<Repeated>) {
        let mut windows = self.windows();
        let mut closed = Vec::new();
        if windows.get(caller).is_some_and(|w| now.saturating_duration_since(w.opened) >= REFUSAL_WINDOW) {
            closed.extend(windows.remove(caller).into_iter().flat_map(Window::summaries));
        }
        if !windows.contains_key(caller) && windows.len() >= CALLERS_MAX {
            windows.retain(|_, w| now.saturating_duration_since(w.opened) < REFUSAL_WINDOW || w.counted());
            if windows.len() >= CALLERS_MAX {
                return (Admit::Journal, closed);
            }
        }
        let window =
            windows.entry(caller.clone()).or_insert(Window { opened: now, journaled: 0, gate: None, request: None });
        if window.journaled < REFUSALS_JOURNALED_PER_WINDOW {
            window.journaled += 1;
            return (Admit::Journal, closed);
        }
        let slot = if refusal.is_gate() { &mut window.gate } else { &mut window.request };
        let repeated = slot.get_or_insert_with(|| Repeated {
            caller: caller.clone(),
            count: 0,
            first_us: time_us,
            last_us: time_us,
            last: refusal.clone(),
        });
        repeated.count += 1;
        repeated.last_us = time_us;
        repeated.last = refusal.clone();
        let retry_after = REFUSAL_WINDOW.saturating_sub(now.saturating_duration_since(window.opened));
        (Admit::Counted { retry_after }, closed)
    }

    /// Takes the summaries of windows that closed by `now` (every window
    /// with refusals counted, if `now` is `None`: the server is stopping).
    pub(super) fn closed(&self, now: Option<Instant>) -> Vec<Repeated> {
        let mut windows = self.windows();
        let over = |w: &Window| now.is_none_or(|now| now.saturating_duration_since(w.opened) >= REFUSAL_WINDOW);
        let callers: Vec<Caller> = windows.iter().filter(|(_, w)| over(w)).map(|(c, _)| c.clone()).collect();
        callers.iter().filter_map(|c| windows.remove(c)).flat_map(Window::summaries).collect()
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<Caller, Window>> {
        // Each change to the map is a single insert, remove or update.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::entries::Requester;

    fn request(reason: &str) -> Refusal {
        Refusal::request(RequestRefused {
            method: "GET".into(),
            route: "/api/gates".into(),
            mission: None,
            status: 401,
            reason: reason.into(),
            by: Requester {
                via: "api".into(),
                role: Some("reviewer".into()),
                key: None,
                token: Some("t".into()),
                name: None,
            },
            repeated: None,
            first_us: None,
            last_us: None,
        })
    }

    #[test]
    fn past_the_limit_refusals_are_counted_and_summarised_once_the_window_closes() {
        let refusals = Refusals::default();
        let key = identity::Keypair::generate(identity::Role::Reviewer);
        let caller = Caller::Key(key.public());
        let gate = Refusal::gate(&key.public(), "g", Verdict::Approve, "no");
        let start = Instant::now();
        for i in 0..i64::from(REFUSALS_JOURNALED_PER_WINDOW) {
            assert_eq!(refusals.admit(&caller, &gate, i, start).0, Admit::Journal);
        }
        for i in 0..290 {
            assert!(matches!(refusals.admit(&caller, &gate, 100 + i, start).0, Admit::Counted { .. }));
        }
        assert!(refusals.closed(Some(start)).is_empty(), "the window is still open");
        let later = start + REFUSAL_WINDOW;
        let (admit, summaries) = refusals.admit(&caller, &gate, 1000, later);
        assert_eq!(admit, Admit::Journal, "a new window");
        let [summary] = summaries.as_slice() else { panic!("one summary: {summaries:?}") };
        assert_eq!((summary.count, summary.first_us, summary.last_us), (290, 100, 389));
        assert!(refusals.closed(None).is_empty(), "nothing counted in the new window");
    }

    #[test]
    fn a_tokens_window_is_its_own_and_its_summary_is_a_request_refused() {
        let refusals = Refusals::default();
        let (token, other) = (Caller::Token("aaaa".into()), Caller::Token("bbbb".into()));
        let start = Instant::now();
        for i in 0..i64::from(REFUSALS_JOURNALED_PER_WINDOW) {
            assert_eq!(refusals.admit(&token, &request("revoked"), i, start).0, Admit::Journal);
        }
        for i in 0..5 {
            assert!(matches!(refusals.admit(&token, &request("revoked"), 50 + i, start).0, Admit::Counted { .. }));
        }
        assert_eq!(refusals.admit(&other, &request("revoked"), 60, start).0, Admit::Journal, "another token");
        let closed = refusals.closed(None);
        let [summary] = closed.as_slice() else { panic!("one summary: {closed:?}") };
        assert_eq!((&summary.caller, summary.count), (&token, 5));
        let Refusal::Request(payload) = summary.payload() else { panic!("a request.refused") };
        assert_eq!((payload.reason.as_str(), payload.repeated), ("revoked", Some(5)), "{payload:?}");
        assert!(payload.first_us <= payload.last_us && payload.first_us.is_some(), "{payload:?}");
    }

    #[test]
    fn a_summary_is_journaled_as_a_gate_refused_with_its_count() {
        let key = identity::Keypair::generate(identity::Role::Reviewer);
        let public = key.public();
        let summary = Repeated {
            caller: Caller::Key(public),
            count: 3,
            first_us: 5,
            last_us: 9,
            last: Refusal::gate(&public, "g", Verdict::Reject, "no"),
        };
        let Refusal::Gate(payload) = summary.payload() else { panic!("a gate.refused") };
        let written = serde_json::to_value(payload).expect("encodes");
        assert_eq!(
            written,
            serde_json::json!({"gate_id": "g", "key_id": public.key_id().to_string(), "public_key": public.to_hex(),
                "verdict": "rejected", "reason": "no", "repeated": 3, "first_us": 5, "last_us": 9})
        );
    }

    #[test]
    fn texts_a_caller_chose_are_bounded() {
        let Refusal::Request(r) = request(&"x".repeat(5 * TEXT_BYTES_MAX)) else { panic!("a request") };
        assert_eq!(r.reason.len(), TEXT_BYTES_MAX);
    }
}

//! Metering: every paid model call goes through this module, a cell's
//! `host.infer` and a gateway request alike, so the two cannot count,
//! price, bound, reserve, charge or journal a call differently.
//!
//! A call takes four steps; only the model call itself (whole for a cell,
//! whole or streamed for the gateway) is the caller's:
//! 1. [`count`]: the prompt is counted by the model's own tokenizer
//!    (`Models::prompt`) and [`quote`]d: `max_tokens` must be at least 1,
//!    prompt plus `max_tokens` must fit the model's context, and its worst
//!    case (the exact prompt plus every token it may generate, at the
//!    caller's prices) must fit a `u64`. That worst case is what is
//!    reserved, never "whatever is left".
//! 2. [`Meter::reserve`]: the worst case is reserved in a group commit
//!    shared with other calls, with whatever the caller journals with it
//!    (a stream's `gateway.started`). A reservation that only other
//!    calls' pending reservations block may wait for them to settle.
//! 3. The caller runs the model.
//! 4. [`Meter::settle`] charges what the call really used
//!    ([`Quote::charge`], capped at the worst case: a backend that
//!    reported more tokens than it was allowed, or a price that would
//!    overflow, is charged the reservation, never more) and
//!    [`Meter::void`] returns a call that did not run; either commits with
//!    the caller's journal entry for the call.
//!
//! **Refusals** are journaled the same way on both paths: a call refused
//! at any step (not counted, not quoted, not affordable) reserves nothing
//! and is recorded as one entry, the caller's record of the request
//! (`host.infer` with `refused`, `gateway.refused`), committed through
//! [`Meter::record`] before the refusal is answered.
//!
//! All arithmetic is checked; nothing saturates silently.
//!
//! **Metrics.** Because every paid call passes here, this is where the
//! calls are measured, through the `metrics` facade (a no-op until the
//! server installs a recorder; see `docs/metrics.md`): the worst case
//! reserved and the cost settled, per mission and model
//! ([`TOKENS_RESERVED_METRIC`], [`TOKENS_SETTLED_METRIC`]), and each
//! answered call's latency per model ([`MODEL_CALL_SECONDS_METRIC`]). The
//! labels are the budget account's root (a mission id, or a gateway key's
//! `gateway:NAME`) and the model's name, never anything of a case.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use identity::Keypair;
use ledger::{BudgetError, GroupCommitter, Ledger, LedgerError, ReservationId, Txn};
use models::{ChatMessage, InferenceError, Models, Prompt};
use serde_json::Value;

use crate::clock::now_us;

/// How often a reservation waiting for others to settle looks at the
/// account again, at most.
const RESERVATION_POLL_MAX: Duration = Duration::from_millis(50);

/// Calls one [`Meter`] tracks between reservation and settlement, for
/// their metrics. A cell's meter holds one call at a time; the gateway's
/// holds its concurrent calls, far fewer. An entry whose call never
/// settles (a storage failure, an interrupted stream charged by
/// recovery) is dropped once its reservation's deadline has passed;
/// past this bound with none expired, a call goes unmeasured rather than
/// growing the map.
const IN_FLIGHT_MAX: usize = 16_384;

/// Budget units reserved for paid calls (each call's worst case), by
/// `mission` and `model`: a counter.
pub const TOKENS_RESERVED_METRIC: &str = "conductor_tokens_reserved_total";
/// Budget units settled for answered calls (what they cost), by `mission`
/// and `model`: a counter.
pub const TOKENS_SETTLED_METRIC: &str = "conductor_tokens_settled_total";
/// Seconds from a paid call's reservation to its answer, by `model`: a
/// histogram of the calls that were answered and settled.
pub const MODEL_CALL_SECONDS_METRIC: &str = "conductor_model_call_seconds";

use models::Price;

/// A call, counted and priced before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The model that runs the call (its registry name).
    pub model: String,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub price: Price,
    /// The most the call can cost: what is reserved.
    pub worst_case: u64,
}

/// Why a call cannot be quoted; nothing is reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("max_tokens must be at least 1")]
    NoTokens,
    #[error(
        "prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the model's context of {context} tokens"
    )]
    Context { prompt_tokens: u32, max_tokens: u32, context: u32 },
    #[error(
        "the call's price overflows: {prompt_tokens} prompt and {max_tokens} completion tokens at {} and {} a token",
        price.prompt,
        price.completion
    )]
    Overflow { prompt_tokens: u32, max_tokens: u32, price: Price },
}

/// What an answered call is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Posted to the budget: the cost, at most the reservation.
    pub posted: u64,
    /// The cost at the quoted prices, if it fits a `u64`; above `posted`
    /// only if the backend used more than it was allowed.
    pub uncapped: Option<u64>,
}

/// `prompt` and `completion` tokens at `price`, or `None` on overflow.
pub fn cost(price: Price, prompt: u32, completion: u32) -> Option<u64> {
    u64::from(prompt).checked_mul(price.prompt)?.checked_add(u64::from(completion).checked_mul(price.completion)?)
}

/// Checks a counted call to `model` against the model's `context` and
/// prices its worst case.
pub fn quote(
    model: &str,
    price: Price,
    context: u32,
    prompt_tokens: u32,
    max_tokens: u32,
) -> Result<Quote, QuoteError> {
    if max_tokens == 0 {
        return Err(QuoteError::NoTokens);
    }
    if u64::from(prompt_tokens) + u64::from(max_tokens) > u64::from(context) {
        return Err(QuoteError::Context { prompt_tokens, max_tokens, context });
    }
    let worst_case =
        cost(price, prompt_tokens, max_tokens).ok_or(QuoteError::Overflow { prompt_tokens, max_tokens, price })?;
    Ok(Quote { model: model.to_owned(), prompt_tokens, max_tokens, price, worst_case })
}

impl Quote {
    /// What the call costs for the tokens it really used, capped at the
    /// reservation.
    pub fn charge(&self, prompt_tokens: u32, completion_tokens: u32) -> Charge {
        let uncapped = cost(self.price, prompt_tokens, completion_tokens);
        Charge { posted: uncapped.map_or(self.worst_case, |c| c.min(self.worst_case)), uncapped }
    }
}

/// Why a call could not be counted or quoted; nothing is reserved.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// The model could not render or count the prompt.
    #[error(transparent)]
    Prompt(#[from] InferenceError),
    #[error(transparent)]
    Quote(#[from] QuoteError),
}

/// Step 1: counts `messages` with `model`'s own tokenizer and quotes the
/// call. `max_tokens` is told the prompt's size, so a caller can default
/// to the room the context leaves.
pub async fn count(
    models: &dyn Models,
    model: &str,
    messages: Vec<ChatMessage>,
    price: Price,
    context: u32,
    max_tokens: impl FnOnce(u32) -> u32,
) -> Result<(Prompt, Quote), CountError> {
    let prompt = models.prompt(model, messages).await?;
    let quote = quote(model, price, context, prompt.tokens(), max_tokens(prompt.tokens()))?;
    Ok((prompt, quote))
}

/// How a reservation attempt ended.
#[derive(Debug)]
pub enum Reserved<T> {
    /// Reserved, with what the caller journaled in the same commit.
    Paid { id: ReservationId, with: T },
    /// The account cannot cover the worst case; nothing was written.
    Refused(BudgetError),
}

/// Where paid calls reserve and settle: the group committer, the key that
/// signs postings, and how long a reservation may stay pending.
#[derive(Debug, Clone)]
pub struct Meter {
    committer: Arc<GroupCommitter>,
    ledger: Arc<Ledger>,
    conductor: Arc<Keypair>,
    reservation_ttl_us: i64,
    /// Reserved calls not yet settled or voided (clones share it): what
    /// their settlement is measured under, and since when.
    in_flight: Arc<Mutex<HashMap<ReservationId, InFlight>>>,
}

/// A reserved call's metric labels and the moment its reservation was
/// durable.
#[derive(Debug)]
struct InFlight {
    mission: String,
    model: String,
    reserved_at: Instant,
}

/// The root of a budget account: a mission's id (`MISSION`,
/// `MISSION/AGENT`, `MISSION/AGENT/task-N`, delegated children's tasks
/// included) or a gateway key's own account (`gateway:NAME`).
fn account_root(account: &str) -> &str {
    account.split('/').next().unwrap_or(account)
}

impl Meter {
    pub fn new(
        committer: Arc<GroupCommitter>,
        ledger: Arc<Ledger>,
        conductor: Arc<Keypair>,
        reservation_ttl_us: i64,
    ) -> Self {
        Meter { committer, ledger, conductor, reservation_ttl_us, in_flight: Arc::default() }
    }

    /// Counts a reservation and remembers the call until it settles.
    fn reserved(&self, account: &str, quote: &Quote, id: ReservationId) {
        let mission = account_root(account).to_owned();
        metrics::counter!(TOKENS_RESERVED_METRIC, "mission" => mission.clone(), "model" => quote.model.clone())
            .increment(quote.worst_case);
        let now = Instant::now();
        let mut calls = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if calls.len() >= IN_FLIGHT_MAX {
            let ttl = Duration::from_micros(u64::try_from(self.reservation_ttl_us).unwrap_or(0));
            calls.retain(|_, call| now.duration_since(call.reserved_at) < ttl);
        }
        if calls.len() < IN_FLIGHT_MAX {
            calls.insert(id, InFlight { mission, model: quote.model.clone(), reserved_at: now });
        } else {
            tracing::debug!("{IN_FLIGHT_MAX} calls in flight: reservation {} is not measured", id.0);
        }
    }

    /// The call of reservation `id`, which is settling or voided.
    fn closed(&self, id: ReservationId) -> Option<InFlight> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&id)
    }

    /// Step 2: reserves `quote`'s worst case on `account` (`memo` says what
    /// for), and runs `with` in the same durable group commit. When only
    /// other calls' pending reservations stand in the way, the attempt is
    /// repeated until `wait_until` (none: never): those calls settle at
    /// their real cost, usually well below their worst case, so waiting
    /// for them is not exhaustion.
    pub fn reserve<T: Send + 'static>(
        &self,
        account: &str,
        quote: &Quote,
        memo: Value,
        wait_until: Option<Instant>,
        with: impl Fn(&mut Txn, ReservationId, i64) -> Result<T, LedgerError> + Clone + Send + 'static,
    ) -> Result<Reserved<T>, LedgerError> {
        loop {
            let (conductor, account_, memo_, with_) =
                (self.conductor.clone(), account.to_owned(), memo.clone(), with.clone());
            let (amount, ttl_us) = (quote.worst_case, self.reservation_ttl_us);
            let post = move |t: &mut Txn| {
                let now = now_us();
                let deadline = now.saturating_add(ttl_us);
                match t.reserve(&conductor, &account_, amount, deadline, memo_.clone(), now) {
                    Ok(id) => Ok(Ok((id, now))),
                    Err(LedgerError::Budget(refusal @ BudgetError::Insufficient { .. })) => Ok(Err(refusal)),
                    Err(e) => Err(e),
                }
            };
            let then = move |t: &mut Txn, reserved: Result<(ReservationId, i64), BudgetError>| match reserved {
                Ok((id, now)) => with_(t, id, now).map(|with| Reserved::Paid { id, with }),
                Err(refusal) => Ok(Reserved::Refused(refusal)),
            };
            let attempt = crate::data::commit_posting_first(&self.committer, post, then)?;
            if let Reserved::Paid { id, .. } = &attempt {
                self.reserved(account, quote, *id);
            }
            match attempt {
                Reserved::Refused(refusal)
                    if wait_until.is_some_and(|until| Instant::now() < until)
                        && others_pending_in_the_way(&refusal) =>
                {
                    wait_for_settlements(&self.ledger, &refusal, wait_until.unwrap_or_else(Instant::now));
                }
                done => return Ok(done),
            }
        }
    }

    /// Step 4, a call that ran: settles reservation `id` at what it used,
    /// and runs `journal` with the charge in the same durable group commit.
    pub fn settle<T: Send + 'static>(
        &self,
        id: ReservationId,
        charge: Charge,
        journal: impl Fn(&mut Txn, i64) -> Result<T, LedgerError> + Clone + Send + 'static,
    ) -> Result<T, LedgerError> {
        // The model has answered: its latency ends here, before the
        // settlement waits for a shared commit.
        let answered = Instant::now();
        let call = self.closed(id);
        let conductor = self.conductor.clone();
        let settled = crate::data::commit_posting_first(
            &self.committer,
            move |t| {
                let now = now_us();
                t.settle(&conductor, id, charge.posted, now).map(|_| now)
            },
            journal,
        )?;
        if let Some(call) = call {
            metrics::histogram!(MODEL_CALL_SECONDS_METRIC, "model" => call.model.clone())
                .record(answered.duration_since(call.reserved_at).as_secs_f64());
            metrics::counter!(TOKENS_SETTLED_METRIC, "mission" => call.mission, "model" => call.model)
                .increment(charge.posted);
        }
        Ok(settled)
    }

    /// Step 4, a call that did not run: voids reservation `id` (it costs
    /// nothing) and runs `journal` in the same durable group commit.
    pub fn void<T: Send + 'static>(
        &self,
        id: ReservationId,
        journal: impl Fn(&mut Txn, i64) -> Result<T, LedgerError> + Clone + Send + 'static,
    ) -> Result<T, LedgerError> {
        // Not answered: neither a latency nor a cost to measure.
        self.closed(id);
        let conductor = self.conductor.clone();
        crate::data::commit_posting_first(
            &self.committer,
            move |t| {
                let now = now_us();
                t.void(&conductor, id, now).map(|_| now)
            },
            journal,
        )
    }

    /// A refused call's record (or any other entry of a paid call's path),
    /// in a durable group commit: the refusal is answered only once it is
    /// journaled.
    pub fn record<T: Send + 'static>(
        &self,
        journal: impl Fn(&mut Txn, i64) -> Result<T, LedgerError> + Clone + Send + 'static,
    ) -> Result<T, LedgerError> {
        crate::data::commit(&self.committer, move |t| journal(t, now_us()))
    }
}

/// A refusal that other calls' pending reservations alone caused: the
/// account's settled spending plus this call's worst case fits its limit.
fn others_pending_in_the_way(refusal: &BudgetError) -> bool {
    matches!(refusal, BudgetError::Insufficient { requested, limit, settled, pending, .. }
        if *pending > 0 && settled.checked_add(*requested).is_some_and(|total| total <= *limit))
}

/// Sleeps until the refusing account's pending or settled amounts change
/// (a reservation closed) or `until` passes. Reads only, so waiting costs
/// no commit.
fn wait_for_settlements(ledger: &Ledger, refusal: &BudgetError, until: Instant) {
    let BudgetError::Insufficient { account, settled, pending, .. } = refusal else {
        return;
    };
    let mut pause = Duration::from_millis(1);
    while Instant::now() < until {
        std::thread::sleep(pause.min(until.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(RESERVATION_POLL_MAX);
        match ledger.account(account) {
            Ok(now) if now.pending == *pending && now.settled == *settled => {}
            // Changed, or unreadable: let the next reservation decide.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Price = Price { prompt: 1, completion: 2 };

    /// A real ledger with account `a` of `limit`, and a meter on it.
    fn metered(dir: &std::path::Path, limit: u64) -> (Meter, Arc<Ledger>) {
        let ledger = Arc::new(Ledger::open(&dir.join("l.redb")).expect("ledger"));
        let conductor = Arc::new(Keypair::generate(identity::Role::Conductor));
        ledger
            .write(|t| {
                t.genesis(&conductor, serde_json::json!({}), now_us())?;
                t.open_account(&conductor, "a", None, Some(limit), now_us())
            })
            .expect("account");
        let committer = Arc::new(GroupCommitter::new(ledger.clone(), 8));
        (Meter::new(committer, ledger.clone(), conductor, 60_000_000), ledger)
    }

    #[test]
    fn a_call_reserves_its_worst_case_and_settles_what_it_used_in_the_callers_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meter, ledger) = metered(dir.path(), 1000);
        let q = quote("m", PRICE, 2048, 100, 50).expect("fits");
        let memo = serde_json::json!({"for": "a test"});
        let Reserved::Paid { id, with } = meter.reserve("a", &q, memo, None, |_, _, _| Ok(7)).expect("commits") else {
            panic!("200 of 1000 fits");
        };
        assert_eq!(with, 7, "what the caller journals comes back");
        assert_eq!(ledger.account("a").expect("account").pending, 200);
        let head = ledger.head().expect("head").0;
        let charge = q.charge(100, 10);
        let seq = meter.settle(id, charge, |_, _| Ok(())).map(|_| ledger.head().expect("head").0);
        assert_eq!(seq.expect("settled"), head + 1, "one entry: the settlement");
        let account = ledger.account("a").expect("account");
        assert_eq!((account.settled, account.pending), (120, 0));
    }

    #[test]
    fn an_unaffordable_call_writes_nothing_and_a_failed_one_costs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meter, ledger) = metered(dir.path(), 300);
        let q = quote("m", PRICE, 2048, 100, 50).expect("fits");
        let Reserved::Paid { id, .. } =
            meter.reserve("a", &q, serde_json::json!({}), None, |_, _, _| Ok(())).expect("commits")
        else {
            panic!("200 of 300 fits");
        };
        let head = ledger.head().expect("head").0;
        // 200 more does not fit beside the first: refused, nothing written
        // (the caller's record of the request is the refusal's one entry).
        let refused = meter.reserve("a", &q, serde_json::json!({}), None, |_, _, _| Ok(())).expect("commits");
        assert!(matches!(refused, Reserved::Refused(BudgetError::Insufficient { requested: 200, .. })), "{refused:?}");
        assert_eq!(ledger.head().expect("head").0, head, "a refused reservation writes nothing");
        // Waiting for the pending reservation helps only if it closes in
        // time: voided here, so the second call fits after all.
        meter.void(id, |_, _| Ok(())).expect("voided");
        assert_eq!(ledger.account("a").expect("account").pending, 0);
        let until = Some(Instant::now() + Duration::from_secs(5));
        assert!(matches!(
            meter.reserve("a", &q, serde_json::json!({}), until, |_, _, _| Ok(())).expect("commits"),
            Reserved::Paid { .. }
        ));
        // What the caller journals fails: nothing of the reservation stays.
        let pending = ledger.account("a").expect("account").pending;
        let failed = meter.reserve(
            "a",
            &quote("m", PRICE, 2048, 10, 5).expect("fits"),
            serde_json::json!({}),
            None,
            |_, _, _| Err::<(), _>(LedgerError::BadEntry("the caller's entry".into())),
        );
        assert!(failed.is_err());
        assert_eq!(ledger.account("a").expect("account").pending, pending, "rolled back with the caller's entry");
    }

    /// A recorder that keeps what it is given, for one test's thread.
    #[derive(Default)]
    struct Kept {
        counters: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
        histograms: Mutex<HashMap<String, Arc<Samples>>>,
    }

    #[derive(Default)]
    struct Samples(Mutex<Vec<f64>>);

    impl metrics::HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().expect("samples").push(value);
        }
    }

    /// `name{k=v,...}`, labels in the order given.
    fn series(key: &metrics::Key) -> String {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl metrics::Recorder for Kept {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            let mut counters = self.counters.lock().expect("counters");
            metrics::Counter::from_arc(counters.entry(series(key)).or_default().clone())
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            let mut histograms = self.histograms.lock().expect("histograms");
            metrics::Histogram::from_arc(histograms.entry(series(key)).or_default().clone())
        }
    }

    impl Kept {
        fn counter(&self, series: &str) -> u64 {
            let counters = self.counters.lock().expect("counters");
            counters.get(series).map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
        }
        fn samples(&self, series: &str) -> Vec<f64> {
            let histograms = self.histograms.lock().expect("histograms");
            histograms.get(series).map_or_else(Vec::new, |h| h.0.lock().expect("samples").clone())
        }
    }

    #[test]
    fn calls_are_measured_by_mission_and_model_and_only_answered_ones_are_timed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meter, _ledger) = metered(dir.path(), 1000);
        let kept = Kept::default();
        metrics::with_local_recorder(&kept, || {
            let q = quote("tiny", PRICE, 2048, 100, 50).expect("fits");
            let reserve = || match meter.reserve("a", &q, serde_json::json!({}), None, |_, _, _| Ok(())) {
                Ok(Reserved::Paid { id, .. }) => id,
                other => panic!("200 of 1000 fits: {other:?}"),
            };
            let answered = reserve();
            std::thread::sleep(Duration::from_millis(20));
            meter.settle(answered, q.charge(100, 10), |_, _| Ok(())).expect("settled");
            let failed = reserve();
            meter.void(failed, |_, _| Ok(())).expect("voided");
            // Refused: nothing reserved, nothing counted.
            let dear = quote("tiny", PRICE, 2048, 100, 400).expect("fits the context");
            let refused = meter.reserve("a", &dear, serde_json::json!({}), None, |_, _, _| Ok(())).expect("commits");
            assert!(matches!(refused, Reserved::Refused(_)), "{refused:?}");
        });
        assert_eq!(kept.counter("conductor_tokens_reserved_total{mission=a,model=tiny}"), 400, "two worst cases");
        assert_eq!(kept.counter("conductor_tokens_settled_total{mission=a,model=tiny}"), 120, "the answered call");
        let timed = kept.samples("conductor_model_call_seconds{model=tiny}");
        assert_eq!(timed.len(), 1, "only the answered call is timed: {timed:?}");
        assert!(timed[0] >= 0.02 && timed[0] < 30.0, "{timed:?}");
        assert!(meter.in_flight.lock().expect("in flight").is_empty(), "settled and voided calls are forgotten");
    }

    #[test]
    fn a_call_is_labelled_by_its_accounts_root() {
        assert_eq!(account_root("m-1/worker/task-3"), "m-1");
        assert_eq!(account_root("m-1"), "m-1");
        assert_eq!(account_root("gateway:billing"), "gateway:billing");
    }

    #[test]
    fn the_worst_case_is_the_prompt_plus_every_allowed_token() {
        let q = quote("m", PRICE, 2048, 100, 50).expect("fits");
        assert_eq!(q.worst_case, 100 + 2 * 50);
        assert_eq!(q.charge(100, 20), Charge { posted: 140, uncapped: Some(140) });
        // A backend that used more than it was allowed is charged the
        // reservation, never more.
        assert_eq!(q.charge(100, 80), Charge { posted: 200, uncapped: Some(260) });
    }

    #[test]
    fn context_and_zero_tokens_are_refused() {
        assert_eq!(quote("m", PRICE, 2048, 10, 0), Err(QuoteError::NoTokens));
        assert_eq!(
            quote("m", PRICE, 2048, 2000, 49),
            Err(QuoteError::Context { prompt_tokens: 2000, max_tokens: 49, context: 2048 })
        );
        assert!(quote("m", PRICE, 2048, 2000, 48).is_ok(), "exactly the context fits");
        // No overflow in the context check itself.
        assert!(matches!(quote("m", PRICE, u32::MAX, u32::MAX, u32::MAX), Err(QuoteError::Context { .. })));
    }

    #[test]
    fn overflow_is_refused_before_anything_is_reserved_and_capped_after() {
        let dear = Price { prompt: u64::MAX / 2, completion: u64::MAX / 2 };
        assert_eq!(
            quote("m", dear, u32::MAX, 2, 1),
            Err(QuoteError::Overflow { prompt_tokens: 2, max_tokens: 1, price: dear })
        );
        let q = quote("m", dear, u32::MAX, 1, 1).expect("fits: exactly u64::MAX - 1");
        assert_eq!(q.worst_case, u64::MAX - 1);
        // A report that overflows is charged the reservation.
        assert_eq!(q.charge(3, 3), Charge { posted: q.worst_case, uncapped: None });
        assert_eq!(cost(Price { prompt: u64::MAX, completion: 0 }, 1, u32::MAX), Some(u64::MAX));
        assert_eq!(cost(Price { prompt: u64::MAX, completion: 1 }, 1, 1), None);
    }
}

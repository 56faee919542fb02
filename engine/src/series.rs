//! One mission over time, for the operator's dashboard (`GET
//! /api/missions/{id}/series`) and `mission report --html`: spend against
//! the budget, reviewers' time to decision, and the latest failures.
//!
//! A [`Series`] is fed the journal's entries in order ([`Series::feed`])
//! and keeps only what it draws, within fixed bounds however long the
//! mission runs: spend in at most [`SPEND_BUCKETS_MAX`] buckets of equal
//! width (the width doubles, merging neighbours, whenever the mission
//! outgrows them), time to decision in the fixed buckets of
//! [`LATENCY_BOUNDS_US`], and the last [`FAILURES_KEPT_MAX`] failures.
//! It remembers how far it read, so the server feeds it only what was
//! appended since the last look ([`Series::catch_up`]), and the report
//! feeds it one pass over the database file ([`Series::from_journal`]).
//!
//! Where the numbers come from: spend is each answered model call's
//! settled cost (`host.infer`'s `cost`, posted in the same commit as its
//! `budget.settled`), so the series ends at the mission account's settled
//! amount. The limit starts at the declared one, rises with each budget
//! gate's grant, and is read again from the totals that `mission.finished`,
//! `mission.resumed` and `mission.recovered` carry (which also catches an
//! operator's `ledger extend`). Time to decision runs from `gate.requested`
//! to the `gate.decided` that closed it; a gate that timed out is counted
//! apart, as it was never decided by anyone.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use ledger::{Entry, Kind, Ledger, LedgerError};
use serde::Serialize;

use crate::entries::{
    self, EntryError, GateDecided, GateRequested, GateTimedOut, HostInfer, MissionDeclared, MissionFinished,
    MissionRecovered, MissionResumed, TaskDecided, TaskFailed,
};

/// Spend buckets kept at most: a chart a few hundred pixels wide has no
/// use for more points, and the answer stays a few kilobytes.
pub const SPEND_BUCKETS_MAX: usize = 240;
/// The narrowest spend bucket: journal times are microseconds, but an
/// operator reads spend by the second at the finest.
pub const SPEND_BUCKET_US_MIN: i64 = 1_000_000;
/// Upper bounds of the time-to-decision buckets (the last bucket takes
/// everything longer): steps a person reads at a glance, from a second
/// to a week, as reviewers work in minutes to days.
pub const LATENCY_BOUNDS_US: [i64; 17] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    14_400_000_000,
    28_800_000_000,
    86_400_000_000,
    172_800_000_000,
    604_800_000_000,
];
/// Failures kept, newest first: the dashboard lists the latest ones; all
/// of them are in the journal (`conductor ledger show --tasks`).
pub const FAILURES_KEPT_MAX: usize = 20;
/// A failure's message as kept: a line or two, not a whole trap trace.
pub const FAILURE_MESSAGE_BYTES_MAX: usize = 512;
/// Entries read from the database at a time.
const PAGE_ENTRIES: usize = 1024;

/// Why a series could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// The database could not be read.
    #[error("reading the journal: {0}")]
    Ledger(#[from] LedgerError),
    /// An entry of a kind the series reads does not match its struct.
    #[error("reading the journal: {0}")]
    Entry(#[from] EntryError),
    /// The journal never declared the mission.
    #[error("no mission `{mission}` in {dir}; `conductor mission list` lists missions by id")]
    UnknownMission { mission: String, dir: String },
}

/// Spend within one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Settled in this bucket.
    spent: u64,
    /// The limit in force at the bucket's end, if it changed in it.
    limit: Option<u64>,
}

/// What the series knows about one mission (see the module docs).
#[derive(Debug, Clone)]
pub struct Series {
    mission: String,
    name: Option<String>,
    /// The mission's declaration: where the time axis starts.
    origin_us: Option<i64>,
    /// The latest entry of the mission seen: where the time axis ends.
    last_us: Option<i64>,
    width_us: i64,
    buckets: Vec<Bucket>,
    /// The limit at the declaration.
    first_limit: Option<u64>,
    limit: u64,
    settled: u64,
    latency: [u64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_us: i128,
    latency_max_us: Option<i64>,
    /// Gate id -> when it was requested, for gates not yet closed.
    open: HashMap<String, i64>,
    timed_out: u64,
    failures: VecDeque<Failure>,
    failed: u64,
    /// The next journal entry to read.
    next_seq: u64,
}

/// A task that failed, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub time_us: i64,
    pub task: u32,
    pub case: String,
    pub code: String,
    /// At most [`FAILURE_MESSAGE_BYTES_MAX`] bytes.
    pub message: String,
}

/// The series as drawn: what the API answers and the report embeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub mission: String,
    pub name: Option<String>,
    /// The time axis (Unix µs): the declaration to the latest entry.
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// The width of one spend bucket.
    pub bucket_us: i64,
    /// Cumulative settled spend and the limit in force: the declaration,
    /// then the end of each bucket; at most [`SPEND_BUCKETS_MAX`] + 2.
    pub spend: Vec<SpendPoint>,
    pub settled: u64,
    pub limit: u64,
    pub latency: Latency,
    /// The latest failures, newest first.
    pub failures: Vec<Failure>,
    /// Tasks failed in all.
    pub failed: u64,
    /// Entries read: the series covers the journal up to here.
    pub journal_entries: u64,
}

/// One point of the spend line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpendPoint {
    pub t_us: i64,
    pub settled: u64,
    pub limit: u64,
}

/// Reviewers' time to decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Gates decided by a reviewer (each counted in `buckets`).
    pub decided: u64,
    pub timed_out: u64,
    /// Requested and not yet closed.
    pub pending: u64,
    pub buckets: Vec<LatencyBucket>,
    /// Estimates: the bound of the bucket holding that rank (never above
    /// the longest wait).
    pub p50_us: Option<i64>,
    pub p90_us: Option<i64>,
    pub max_us: Option<i64>,
    pub mean_us: Option<i64>,
}

/// Gates decided within `le_us` (and above the bucket before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencyBucket {
    /// `None`: longer than the last bound.
    pub le_us: Option<i64>,
    pub count: u64,
}

impl Series {
    /// An empty series of `mission` that reads the journal from `from_seq`
    /// (its `mission.declared`: nothing of it comes earlier).
    pub fn new(mission: &str, from_seq: u64) -> Self {
        Series {
            mission: mission.to_owned(),
            name: None,
            origin_us: None,
            last_us: None,
            width_us: SPEND_BUCKET_US_MIN,
            buckets: Vec::new(),
            first_limit: None,
            limit: 0,
            settled: 0,
            latency: [0; LATENCY_BOUNDS_US.len() + 1],
            latency_sum_us: 0,
            latency_max_us: None,
            open: HashMap::new(),
            timed_out: 0,
            failures: VecDeque::new(),
            failed: 0,
            next_seq: from_seq,
        }
    }

    /// The series of `mission` from the database file in the data
    /// directory `dir`, read-only, in one pass (for the report).
    pub fn from_journal(dir: &Path, mission: &str) -> anyhow::Result<Self> {
        let db = crate::data::db_path(dir)?;
        let mut series = Series::new(mission, 0);
        ledger::scan_journal(&db, |e: Entry| -> Result<bool, SeriesError> {
            series.feed(&e)?;
            series.next_seq = e.seq + 1;
            Ok(true)
        })?;
        if series.origin_us.is_none() {
            return Err(
                SeriesError::UnknownMission { mission: mission.to_owned(), dir: dir.display().to_string() }.into()
            );
        }
        Ok(series)
    }

    /// Reads what the journal gained since the last call, at most
    /// `entries_max` entries (so one request does bounded work); whether
    /// it reached the journal's end.
    pub fn catch_up(&mut self, ledger: &Ledger, entries_max: usize) -> Result<bool, SeriesError> {
        let (head, _) = ledger.head()?;
        let mut read = 0;
        while self.next_seq < head && read < entries_max {
            let page = ledger.entries(self.next_seq, PAGE_ENTRIES.min(entries_max - read))?;
            if page.is_empty() {
                break;
            }
            for entry in &page {
                self.feed(entry)?;
                self.next_seq = entry.seq + 1;
            }
            read += page.len();
        }
        Ok(self.next_seq >= head)
    }

    /// Takes one journal entry into account; entries of other missions
    /// and other kinds change nothing.
    pub fn feed(&mut self, e: &Entry) -> Result<(), EntryError> {
        let Some(kind) = Kind::parse(&e.kind) else {
            return Ok(());
        };
        let time = e.time_us;
        match kind {
            Kind::MissionDeclared => {
                let p: MissionDeclared = entries::decode(e)?;
                if p.mission == self.mission {
                    self.origin_us = Some(time);
                    self.name = Some(p.name);
                    self.first_limit = Some(p.budget.limit);
                    self.limit = p.budget.limit;
                    self.touch(time);
                }
            }
            Kind::MissionFinished => {
                let p: MissionFinished = entries::decode(e)?;
                if p.mission == self.mission {
                    self.limit_from_totals(time, p.budget.limit);
                }
            }
            Kind::MissionResumed => {
                let p: MissionResumed = entries::decode(e)?;
                if p.mission == self.mission {
                    self.limit_from_totals(time, p.budget.limit);
                }
            }
            Kind::MissionRecovered => {
                let p: MissionRecovered = entries::decode(e)?;
                if p.mission == self.mission {
                    self.limit_from_totals(time, p.budget.limit);
                }
            }
            Kind::HostInfer => {
                let p: HostInfer = entries::decode(e)?;
                if p.mission == self.mission {
                    if let Some(cost) = p.cost.filter(|_| p.refused.is_none()) {
                        let index = self.bucket(time);
                        // Amounts are at most 2^53 each (the ledger's
                        // bound); saturating only guards the display.
                        self.buckets[index].spent = self.buckets[index].spent.saturating_add(cost);
                        self.settled = self.settled.saturating_add(cost);
                    }
                    self.touch(time);
                }
            }
            Kind::TaskDecided => {
                let p: TaskDecided = entries::decode(e)?;
                if p.mission == self.mission {
                    self.touch(time);
                }
            }
            Kind::TaskFailed => {
                let p: TaskFailed = entries::decode(e)?;
                if p.mission == self.mission {
                    let mut message = p.message;
                    crate::text::truncate_utf8(&mut message, FAILURE_MESSAGE_BYTES_MAX);
                    self.failures.push_front(Failure {
                        time_us: time,
                        task: p.task,
                        case: p.case,
                        code: p.code,
                        message,
                    });
                    self.failures.truncate(FAILURES_KEPT_MAX);
                    self.failed += 1;
                    self.touch(time);
                }
            }
            Kind::GateRequested => {
                let p: GateRequested = entries::decode(e)?;
                if p.mission == self.mission {
                    self.open.insert(p.gate_id, time);
                    self.touch(time);
                }
            }
            Kind::GateDecided => {
                let p: GateDecided = entries::decode(e)?;
                if p.mission == self.mission {
                    if let Some(requested) = self.open.remove(&p.gate_id) {
                        self.decided_after(time.saturating_sub(requested).max(0));
                    }
                    // A budget gate's grant, posted in the same commit.
                    if let Some(Some(grant)) = p.budget
                        && grant.account == self.mission
                    {
                        let limit = self.limit.saturating_add(grant.amount);
                        self.set_limit(time, limit);
                    }
                    self.touch(time);
                }
            }
            Kind::GateTimedOut => {
                let p: GateTimedOut = entries::decode(e)?;
                if p.mission == self.mission {
                    if self.open.remove(&p.gate_id).is_some() {
                        self.timed_out += 1;
                    }
                    self.touch(time);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Where the series stands: its time axis reaches `until_us` if that
    /// is later than the last entry (a running mission, drawn up to now).
    pub fn view(&self, until_us: Option<i64>) -> View {
        let mut spend = Vec::with_capacity(self.buckets.len() + 2);
        if let (Some(origin), Some(last)) = (self.origin_us, self.last_us) {
            let mut limit = self.first_limit.unwrap_or(self.limit);
            let mut settled = 0u64;
            spend.push(SpendPoint { t_us: origin, settled, limit });
            for (i, bucket) in self.buckets.iter().enumerate() {
                settled = settled.saturating_add(bucket.spent);
                limit = bucket.limit.unwrap_or(limit);
                let end = i64::try_from(i + 1)
                    .ok()
                    .and_then(|n| n.checked_mul(self.width_us))
                    .and_then(|d| origin.checked_add(d))
                    .unwrap_or(i64::MAX);
                spend.push(SpendPoint { t_us: end.min(last), settled, limit });
            }
            if let Some(until) = until_us.filter(|u| *u > last) {
                spend.push(SpendPoint { t_us: until, settled, limit });
            }
        }
        View {
            mission: self.mission.clone(),
            name: self.name.clone(),
            from_us: self.origin_us,
            to_us: match (self.last_us, until_us) {
                (Some(last), Some(until)) => Some(last.max(until)),
                (last, _) => last,
            },
            bucket_us: self.width_us,
            spend,
            settled: self.settled,
            limit: self.limit,
            latency: self.latency(),
            failures: self.failures.iter().cloned().collect(),
            failed: self.failed,
            journal_entries: self.next_seq,
        }
    }

    fn latency(&self) -> Latency {
        let decided: u64 = self.latency.iter().sum();
        let bound = |i: usize| LATENCY_BOUNDS_US.get(i).copied();
        let rank = |fraction_pct: u64| -> Option<i64> {
            if decided == 0 {
                return None;
            }
            // The smallest count that is at least that fraction.
            let wanted = (decided * fraction_pct).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, count) in self.latency.iter().enumerate() {
                seen += count;
                if seen >= wanted {
                    let max = self.latency_max_us.unwrap_or(i64::MAX);
                    return Some(bound(i).map_or(max, |b| b.min(max)));
                }
            }
            self.latency_max_us
        };
        Latency {
            decided,
            timed_out: self.timed_out,
            pending: self.open.len() as u64,
            buckets: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, &count)| LatencyBucket { le_us: bound(i), count })
                .collect(),
            p50_us: rank(50),
            p90_us: rank(90),
            max_us: self.latency_max_us,
            mean_us: (decided > 0)
                .then(|| i64::try_from(self.latency_sum_us / i128::from(decided)).unwrap_or(i64::MAX)),
        }
    }

    fn decided_after(&mut self, wait_us: i64) {
        let index = LATENCY_BOUNDS_US.iter().position(|b| wait_us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[index] += 1;
        self.latency_sum_us += i128::from(wait_us);
        self.latency_max_us = Some(self.latency_max_us.map_or(wait_us, |m| m.max(wait_us)));
    }

    fn limit_from_totals(&mut self, time_us: i64, limit: Option<u64>) {
        if let Some(limit) = limit {
            self.set_limit(time_us, limit);
        }
        self.touch(time_us);
    }

    fn set_limit(&mut self, time_us: i64, limit: u64) {
        self.limit = limit;
        let index = self.bucket(time_us);
        self.buckets[index].limit = Some(limit);
    }

    /// Extends the time axis to `time_us`.
    fn touch(&mut self, time_us: i64) {
        self.last_us = Some(self.last_us.map_or(time_us, |last| last.max(time_us)));
        self.bucket(time_us);
    }

    /// The bucket of `time_us`, made to exist: the buckets widen (each
    /// pair merged) until it lies within [`SPEND_BUCKETS_MAX`] of them.
    fn bucket(&mut self, time_us: i64) -> usize {
        let origin = *self.origin_us.get_or_insert(time_us);
        // The journal's clock could step back: such an entry counts at
        // the start.
        let offset = time_us.saturating_sub(origin).max(0);
        // Ends: each pass doubles the width, so after at most 63 passes
        // every offset falls in the first bucket.
        loop {
            let index = usize::try_from(offset / self.width_us).unwrap_or(usize::MAX);
            if index < SPEND_BUCKETS_MAX {
                if self.buckets.len() <= index {
                    self.buckets.resize(index + 1, Bucket::default());
                }
                return index;
            }
            self.width_us = self.width_us.saturating_mul(2);
            self.buckets = self
                .buckets
                .chunks(2)
                .map(|pair| Bucket {
                    spent: pair.iter().fold(0u64, |sum, b| sum.saturating_add(b.spent)),
                    limit: pair.iter().rev().find_map(|b| b.limit),
                })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::{AccountTotals, BudgetGrant, DeclaredBudget, DeclaredMemoryLimits, GateWhy, Payload};

    const DAY_US: i64 = 86_400_000_000;

    /// An entry of `payload` at `time_us` (seq, hashes and signature do
    /// not matter to the series).
    fn entry<P: Payload>(seq: u64, time_us: i64, payload: &P) -> Entry {
        Entry {
            seq,
            prev: ledger::EntryHash([0; 32]),
            time_us,
            signer: [0; 32],
            kind: P::KIND.as_str().to_owned(),
            payload: serde_json::to_vec(payload).expect("payload"),
            hash: ledger::EntryHash([0; 32]),
            signature: [0; 64],
        }
    }

    fn declared(mission: &str, limit: u64) -> MissionDeclared {
        MissionDeclared {
            mission: mission.into(),
            name: "test".into(),
            file: "/m.yaml".into(),
            file_blake3: String::new(),
            budget: DeclaredBudget { limit, on_exhausted: "gate".into(), reservation_ttl_ms: 1000 },
            models: Default::default(),
            agents: Vec::new(),
            memory_limits: DeclaredMemoryLimits { facts: 1, bytes: 1 },
            gates: Vec::new(),
            tasks: 0,
            intake: None,
        }
    }

    fn call(mission: &str, cost: u64) -> HostInfer {
        HostInfer {
            mission: mission.into(),
            task: 0,
            model: "m".into(),
            routed_to: None,
            failover_refused: None,
            messages: Vec::new(),
            max_tokens: 8,
            reservation: Some(cost),
            refused: None,
            error: None,
            text: Some("ok".into()),
            prompt_tokens: Some(1),
            completion_tokens: Some(1),
            cost: Some(cost),
            cost_uncapped: Some(Some(cost)),
        }
    }

    #[test]
    fn a_year_of_spend_stays_within_the_bucket_bound_and_adds_up() {
        let mut s = Series::new("m", 0);
        let start = 1_700_000_000_000_000;
        s.feed(&entry(0, start, &declared("m", 1_000_000))).expect("an entry of the series' kinds");
        // One call an hour for a year, and calls of another mission.
        let mut total = 0;
        for hour in 0..(365 * 24) {
            let time = start + hour * 3_600_000_000;
            s.feed(&entry(1 + 2 * hour as u64, time, &call("m", 3))).expect("an entry of the series' kinds");
            s.feed(&entry(2 + 2 * hour as u64, time, &call("other", 1000))).expect("an entry of the series' kinds");
            total += 3;
            assert!(s.buckets.len() <= SPEND_BUCKETS_MAX, "at most {SPEND_BUCKETS_MAX} buckets, at every step");
        }
        let view = s.view(None);
        assert!(view.spend.len() <= SPEND_BUCKETS_MAX + 1, "{} points", view.spend.len());
        assert!(view.spend.len() > SPEND_BUCKETS_MAX / 2, "a year fills the buckets: {}", view.spend.len());
        assert!(view.bucket_us >= 365 * DAY_US / SPEND_BUCKETS_MAX as i64, "{}", view.bucket_us);
        assert_eq!(view.settled, total);
        assert_eq!(view.spend.last().map(|p| p.settled), Some(total), "the line ends at the settled total");
        assert_eq!(view.spend[0], SpendPoint { t_us: start, settled: 0, limit: 1_000_000 });
        assert!(view.spend.windows(2).all(|w| w[0].t_us <= w[1].t_us && w[0].settled <= w[1].settled));
        assert_eq!(view.spend.last().map(|p| p.t_us), view.to_us, "the axis ends at the last entry");
    }

    #[test]
    fn a_short_mission_keeps_second_buckets_and_a_late_entry_widens_them() {
        let mut s = Series::new("m", 0);
        s.feed(&entry(0, 0, &declared("m", 100))).expect("an entry of the series' kinds");
        s.feed(&entry(1, 500_000, &call("m", 10))).expect("an entry of the series' kinds");
        s.feed(&entry(2, 2_500_000, &call("m", 5))).expect("an entry of the series' kinds");
        let view = s.view(None);
        assert_eq!(view.bucket_us, SPEND_BUCKET_US_MIN);
        let settled: Vec<u64> = view.spend.iter().map(|p| p.settled).collect();
        assert_eq!(settled, [0, 10, 10, 15]);
        // Far past the buckets: widened until it fits, nothing lost.
        let far = SPEND_BUCKET_US_MIN * SPEND_BUCKETS_MAX as i64 * 10;
        s.feed(&entry(3, far, &call("m", 1))).expect("an entry of the series' kinds");
        let view = s.view(None);
        assert!(view.bucket_us >= 10 * SPEND_BUCKET_US_MIN && s.buckets.len() <= SPEND_BUCKETS_MAX);
        assert_eq!(view.spend.last().map(|p| (p.t_us, p.settled)), Some((far, 16)));
        // A clock that stepped back counts at the start, not before it.
        s.feed(&entry(4, -5, &call("m", 1))).expect("an entry of the series' kinds");
        assert_eq!(s.view(None).settled, 17);
        // Drawn up to now: one more point, flat.
        let view = s.view(Some(far + 1));
        assert_eq!(view.spend.last().map(|p| (p.t_us, p.settled)), Some((far + 1, 17)));
    }

    #[test]
    fn the_limit_follows_grants_and_totals() {
        let mut s = Series::new("m", 0);
        s.feed(&entry(0, 0, &declared("m", 100))).expect("an entry of the series' kinds");
        let decided = GateDecided {
            mission: "m".into(),
            task: None,
            case: None,
            gate_id: "g".into(),
            gate: "budget".into(),
            verdict: "approved".into(),
            note: None,
            requested_seq: 0,
            votes: Vec::new(),
            quorum: 1,
            edits: None,
            budget: Some(Some(BudgetGrant { account: "m".into(), amount: 50 })),
        };
        s.feed(&entry(1, 3_000_000, &decided)).expect("an entry of the series' kinds");
        let finished = MissionFinished {
            mission: "m".into(),
            status: crate::state::MissionStatus::Completed,
            budget: AccountTotals { limit: Some(400), settled: 0, pending: 0 },
        };
        s.feed(&entry(2, 6_000_000, &finished)).expect("an entry of the series' kinds");
        let limits: Vec<u64> = s.view(None).spend.iter().map(|p| p.limit).collect();
        assert_eq!(limits.first(), Some(&100));
        assert!(limits.contains(&150), "{limits:?}");
        assert_eq!(limits.last(), Some(&400));
    }

    #[test]
    fn time_to_decision_is_bucketed_and_timeouts_are_apart() {
        let mut s = Series::new("m", 0);
        s.feed(&entry(0, 0, &declared("m", 100))).expect("an entry of the series' kinds");
        let requested = |id: &str| GateRequested {
            mission: "m".into(),
            task: Some(0),
            case: Some("c".into()),
            gate_id: id.into(),
            gate: "g".into(),
            why: GateWhy::default(),
            proposal_seq: None,
            budget: None,
            reviewers: Vec::new(),
            quorum: 1,
        };
        let decided = |id: &str| GateDecided {
            mission: "m".into(),
            task: Some(0),
            case: Some("c".into()),
            gate_id: id.into(),
            gate: "g".into(),
            verdict: "approved".into(),
            note: None,
            requested_seq: 0,
            votes: Vec::new(),
            quorum: 1,
            edits: None,
            budget: None,
        };
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            s.feed(&entry(1 + i as u64, 0, &requested(id))).expect("an entry of the series' kinds");
        }
        s.feed(&entry(10, 500_000, &decided("a"))).expect("a decision"); // 0.5 s
        s.feed(&entry(11, 4_000_000, &decided("b"))).expect("a decision"); // 4 s
        s.feed(&entry(12, 2 * 604_800_000_000, &decided("c"))).expect("a decision"); // two weeks
        let timed_out = GateTimedOut {
            mission: "m".into(),
            task: Some(0),
            case: Some("c".into()),
            gate_id: "d".into(),
            gate: "g".into(),
            then: "deny".into(),
            deadline_us: 0,
        };
        s.feed(&entry(13, 9_000_000, &timed_out)).expect("an entry of the series' kinds");
        // Decided twice: the second closes nothing.
        s.feed(&entry(14, 9_000_000, &decided("a"))).expect("an entry of the series' kinds");
        let latency = s.view(None).latency;
        assert_eq!((latency.decided, latency.timed_out, latency.pending), (3, 1, 0));
        assert_eq!(latency.buckets.len(), LATENCY_BOUNDS_US.len() + 1);
        let count = |le: Option<i64>| latency.buckets.iter().find(|b| b.le_us == le).map(|b| b.count);
        assert_eq!(count(Some(1_000_000)), Some(1));
        assert_eq!(count(Some(5_000_000)), Some(1));
        assert_eq!(count(None), Some(1), "longer than the last bound");
        assert_eq!(latency.p50_us, Some(5_000_000));
        assert_eq!(latency.p90_us, Some(2 * 604_800_000_000), "the overflow bucket's estimate is the longest wait");
        assert_eq!(latency.max_us, Some(2 * 604_800_000_000));
    }

    #[test]
    fn failures_keep_the_latest_few_newest_first() {
        let mut s = Series::new("m", 0);
        s.feed(&entry(0, 0, &declared("m", 100))).expect("an entry of the series' kinds");
        for i in 0..(FAILURES_KEPT_MAX as u32 + 5) {
            let failed = TaskFailed {
                mission: "m".into(),
                task: i,
                case: format!("case-{i}"),
                code: "trap".into(),
                message: "x".repeat(FAILURE_MESSAGE_BYTES_MAX * 2),
            };
            s.feed(&entry(1 + u64::from(i), i64::from(i), &failed)).expect("an entry of the series' kinds");
        }
        let view = s.view(None);
        assert_eq!(view.failed, FAILURES_KEPT_MAX as u64 + 5);
        assert_eq!(view.failures.len(), FAILURES_KEPT_MAX);
        assert_eq!(view.failures[0].case, format!("case-{}", FAILURES_KEPT_MAX + 4));
        assert!(view.failures.iter().all(|f| f.message.len() == FAILURE_MESSAGE_BYTES_MAX));
    }
}

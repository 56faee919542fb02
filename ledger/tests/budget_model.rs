//! The budget against a reference model: random sequences of opens,
//! reservations, settlements, voids, expiries and extensions on a fake
//! clock, each run on the ledger and on a plain in-memory model of the
//! rules; after every step the results (value or exact error) and every
//! account's balances and pending reservations must agree, and at the end
//! the journal must verify and replay to the same balances.

use std::collections::BTreeMap;

use identity::{Keypair, Role};
use ledger::{
    ACCOUNT_DEPTH_MAX, AMOUNT_MAX, Account, BudgetError, EXPIRE_BATCH_MAX, Ledger, LedgerError, ReservationId,
};
use proptest::prelude::*;
use serde_json::json;

/// Account names; `m` is the root every case opens.
const NAMES: [&str; 16] = ["m", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "n", "o", "p"];

/// A choice among what exists when the step runs (an open account, a
/// pending reservation), now and then something that does not exist or is
/// closed, so that steps mostly do something and sometimes are refused.
#[derive(Debug, Clone, Copy)]
struct Pick(u16);

/// A settlement's actual cost, relative to what was reserved.
#[derive(Debug, Clone, Copy)]
enum Actual {
    /// Per mille of the reservation: over 1000 is an overrun.
    PerMille(u64),
    /// Beyond [`AMOUNT_MAX`].
    Absurd,
}

#[derive(Debug, Clone)]
enum Step {
    Open { name: Pick, parent: Option<Pick>, limit: Option<u64> },
    Reserve { account: Pick, amount: u64, deadline_in: i64 },
    Settle { id: Pick, actual: Actual },
    Void { id: Pick },
    Expire,
    Extend { account: Pick, amount: u64 },
}

/// A step and how far the clock moves before it.
#[derive(Debug, Clone)]
struct Timed {
    dt: i64,
    step: Step,
}

fn step() -> impl Strategy<Value = Step> {
    let pick = any::<u16>().prop_map(Pick);
    let amount = prop_oneof![40 => 1..=150u64, 1 => Just(0u64), 1 => Just(AMOUNT_MAX + 1)];
    let limit = prop_oneof![
        3 => Just(None),
        6 => (1..=400u64).prop_map(Some),
        1 => Just(Some(0u64)),
        1 => Just(Some(AMOUNT_MAX + 1)),
    ];
    prop_oneof![
        3 => (pick.clone(), prop_oneof![1 => Just(None), 6 => pick.clone().prop_map(Some)], limit)
            .prop_map(|(name, parent, limit)| Step::Open { name, parent, limit }),
        8 => (pick.clone(), amount, -3..=120i64)
            .prop_map(|(account, amount, deadline_in)| Step::Reserve { account, amount, deadline_in }),
        5 => (pick.clone(), prop_oneof![30 => (0..=1200u64).prop_map(Actual::PerMille), 1 => Just(Actual::Absurd)])
            .prop_map(|(id, actual)| Step::Settle { id, actual }),
        2 => pick.clone().prop_map(|id| Step::Void { id }),
        2 => Just(Step::Expire),
        2 => (pick, prop_oneof![12 => 1..=300u64, 1 => Just(0u64), 1 => Just(AMOUNT_MAX)])
            .prop_map(|(account, amount)| Step::Extend { account, amount }),
    ]
}

fn timed() -> impl Strategy<Value = Timed> {
    (prop_oneof![1 => Just(0i64), 3 => 1..=25i64], step()).prop_map(|(dt, step)| Timed { dt, step })
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Settled,
    Voided,
    Expired,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Settled => "settled",
            State::Voided => "voided",
            State::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
struct Res {
    account: String,
    amount: u64,
    deadline: i64,
    state: State,
}

/// The rules, written out plainly.
#[derive(Debug, Clone, Default)]
struct Model {
    accounts: BTreeMap<String, Account>,
    /// Index = reservation id.
    reservations: Vec<Res>,
}

/// What a step returned, comparable between model and ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Unit,
    Id(u64),
    Account(Account),
    Ids(Vec<u64>),
}

fn check_amount(amount: u64) -> Result<(), BudgetError> {
    if amount == 0 {
        Err(BudgetError::ZeroAmount)
    } else if amount > AMOUNT_MAX {
        Err(BudgetError::Absurd { amount, max: AMOUNT_MAX })
    } else {
        Ok(())
    }
}

impl Model {
    /// `name` and its ancestors, leaf first.
    fn path(&self, name: &str) -> Result<Vec<String>, BudgetError> {
        let mut out = Vec::new();
        let mut next = Some(name.to_owned());
        while let Some(name) = next {
            if out.len() == ACCOUNT_DEPTH_MAX {
                return Err(BudgetError::TooDeep(name));
            }
            let account = self.accounts.get(&name).ok_or_else(|| BudgetError::UnknownAccount(name.clone()))?;
            next = account.parent.clone();
            out.push(name);
        }
        Ok(out)
    }

    fn open(&mut self, name: &str, parent: Option<&str>, limit: Option<u64>) -> Result<Out, BudgetError> {
        if let Some(limit) = limit {
            check_amount(limit)?;
        }
        if self.accounts.contains_key(name) {
            return Err(BudgetError::AccountExists(name.to_owned()));
        }
        match parent {
            None if limit.is_none() => return Err(BudgetError::RootWithoutLimit(name.to_owned())),
            None => {}
            Some(parent) if self.path(parent)?.len() >= ACCOUNT_DEPTH_MAX => {
                return Err(BudgetError::TooDeep(name.to_owned()));
            }
            Some(_) => {}
        }
        let account = Account { limit, pending: 0, settled: 0, parent: parent.map(str::to_owned) };
        self.accounts.insert(name.to_owned(), account);
        Ok(Out::Unit)
    }

    fn reserve(&mut self, account: &str, amount: u64, deadline: i64, now: i64) -> Result<Out, BudgetError> {
        check_amount(amount)?;
        if deadline <= now {
            return Err(BudgetError::DeadlineInPast { deadline_us: deadline, now_us: now });
        }
        // Overdue reservations are expired first, in the same transaction:
        // kept only if the reservation is granted.
        let mut after = self.clone();
        after.expire_due(now);
        let path = after.path(account)?;
        for name in &path {
            let a = &after.accounts[name];
            let used = a.pending + a.settled;
            if let Some(limit) = a.limit
                && used + amount > limit
            {
                return Err(BudgetError::Insufficient {
                    account: name.clone(),
                    requested: amount,
                    available: limit.saturating_sub(used),
                    limit,
                    settled: a.settled,
                    pending: a.pending,
                });
            }
        }
        for name in &path {
            after.accounts.get_mut(name).expect("on the path").pending += amount;
        }
        let id = after.reservations.len() as u64;
        after.reservations.push(Res { account: account.to_owned(), amount, deadline, state: State::Pending });
        *self = after;
        Ok(Out::Id(id))
    }

    /// The pending reservation `id`; at `settle_at` or later than its
    /// deadline it counts as expired.
    fn pending(&self, id: u64, settle_at: Option<i64>) -> Result<Res, BudgetError> {
        let r = self.reservations.get(id as usize).ok_or(BudgetError::UnknownReservation(id))?;
        if r.state != State::Pending {
            return Err(BudgetError::AlreadyClosed { id, state: r.state.name() });
        }
        if settle_at.is_some_and(|t| t >= r.deadline) {
            return Err(BudgetError::AlreadyClosed { id, state: "expired" });
        }
        Ok(r.clone())
    }

    fn close(&mut self, id: u64, state: State, posted: u64) {
        let r = &mut self.reservations[id as usize];
        r.state = state;
        let (account, amount) = (r.account.clone(), r.amount);
        for name in self.path(&account).expect("reserved on an open account") {
            let a = self.accounts.get_mut(&name).expect("on the path");
            a.pending -= amount;
            a.settled += posted;
        }
    }

    fn settle(&mut self, id: u64, actual: u64, now: i64) -> Result<Out, BudgetError> {
        if actual > AMOUNT_MAX {
            return Err(BudgetError::Absurd { amount: actual, max: AMOUNT_MAX });
        }
        let r = self.pending(id, Some(now))?;
        if actual > r.amount {
            return Err(BudgetError::Overrun { id, actual, reserved: r.amount });
        }
        self.close(id, State::Settled, actual);
        Ok(Out::Account(self.accounts[&r.account].clone()))
    }

    fn void(&mut self, id: u64) -> Result<Out, BudgetError> {
        self.pending(id, None)?;
        self.close(id, State::Voided, 0);
        Ok(Out::Unit)
    }

    fn expire_due(&mut self, now: i64) -> Vec<u64> {
        let mut due: Vec<(i64, u64)> = self
            .reservations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == State::Pending && r.deadline <= now)
            .map(|(id, r)| (r.deadline, id as u64))
            .collect();
        due.sort();
        due.truncate(EXPIRE_BATCH_MAX);
        for &(_, id) in &due {
            self.close(id, State::Expired, 0);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    fn extend(&mut self, name: &str, amount: u64) -> Result<Out, BudgetError> {
        check_amount(amount)?;
        let a = self.accounts.get_mut(name).ok_or_else(|| BudgetError::UnknownAccount(name.to_owned()))?;
        let limit = a.limit.ok_or_else(|| BudgetError::NoOwnLimit(name.to_owned()))?;
        let raised = limit.checked_add(amount).filter(|l| *l <= AMOUNT_MAX);
        a.limit = Some(raised.ok_or(BudgetError::Absurd { amount, max: AMOUNT_MAX })?);
        Ok(Out::Account(a.clone()))
    }

    /// Mostly an open account; one pick in 16 is any name, open or not.
    fn account(&self, pick: Pick) -> &'static str {
        let p = usize::from(pick.0);
        let open: Vec<&'static str> = NAMES.iter().copied().filter(|n| self.accounts.contains_key(*n)).collect();
        if p % 16 == 15 || open.is_empty() { NAMES[p / 16 % NAMES.len()] } else { open[p / 16 % open.len()] }
    }

    /// Mostly a name not yet open; one pick in 8 is any name.
    fn new_name(&self, pick: Pick) -> &'static str {
        let p = usize::from(pick.0);
        let unopened: Vec<&'static str> = NAMES.iter().copied().filter(|n| !self.accounts.contains_key(*n)).collect();
        if p % 8 == 7 || unopened.is_empty() { NAMES[p / 8 % NAMES.len()] } else { unopened[p / 8 % unopened.len()] }
    }

    /// Mostly a pending reservation; otherwise any made so far, and one
    /// pick in 16 an id never made.
    fn reservation(&self, pick: Pick) -> u64 {
        let p = u64::from(pick.0);
        let made = self.reservations.len() as u64;
        let pending: Vec<u64> =
            (0..made).filter(|id| self.reservations[*id as usize].state == State::Pending).collect();
        match p % 16 {
            15 => made + p / 16 % 3,
            _ if made == 0 => made,
            0..=10 if !pending.is_empty() => pending[(p / 16) as usize % pending.len()],
            _ => p / 16 % made,
        }
    }

    fn actual(&self, id: u64, actual: Actual) -> u64 {
        let reserved = self.reservations.get(id as usize).map_or(50, |r| r.amount);
        match actual {
            Actual::PerMille(pm) => reserved * pm / 1000,
            Actual::Absurd => AMOUNT_MAX + 1,
        }
    }

    fn pending_list(&self) -> Vec<(ReservationId, String, u64, i64)> {
        self.reservations
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == State::Pending)
            .map(|(id, r)| (ReservationId(id as u64), r.account.clone(), r.amount, r.deadline))
            .collect()
    }
}

// ---------------------------------------------------------------- the run

/// A step with its choices made against the model's state.
#[derive(Debug, Clone)]
enum Concrete {
    Open { name: &'static str, parent: Option<&'static str>, limit: Option<u64> },
    Reserve { account: &'static str, amount: u64, deadline_in: i64 },
    Settle { id: u64, actual: u64 },
    Void { id: u64 },
    Expire,
    Extend { account: &'static str, amount: u64 },
}

impl Step {
    fn resolve(&self, model: &Model) -> Concrete {
        match *self {
            Step::Open { name, parent, limit } => {
                Concrete::Open { name: model.new_name(name), parent: parent.map(|p| model.account(p)), limit }
            }
            Step::Reserve { account, amount, deadline_in } => {
                Concrete::Reserve { account: model.account(account), amount, deadline_in }
            }
            Step::Settle { id, actual } => {
                let id = model.reservation(id);
                Concrete::Settle { id, actual: model.actual(id, actual) }
            }
            Step::Void { id } => Concrete::Void { id: model.reservation(id) },
            Step::Expire => Concrete::Expire,
            Step::Extend { account, amount } => Concrete::Extend { account: model.account(account), amount },
        }
    }
}

fn budget_only<T>(result: Result<T, LedgerError>, out: impl FnOnce(T) -> Out) -> Result<Out, BudgetError> {
    match result {
        Ok(value) => Ok(out(value)),
        Err(LedgerError::Budget(e)) => Err(e),
        Err(other) => panic!("only budget refusals are expected here, got: {other}"),
    }
}

/// Runs `steps` steps on a fresh ledger and the model side by side;
/// `next(model, i)` gives step `i` and how far the clock moves before it.
fn run_case(
    root_limit: u64,
    batched: bool,
    steps: usize,
    mut next: impl FnMut(&Model, usize) -> (i64, Concrete),
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ledger = Ledger::open(&dir.path().join("model.redb")).expect("open");
    // Both journal layouts: one entry per posting, and `budget.batch`.
    ledger.batch_postings(batched);
    let conductor = Keypair::generate(Role::Conductor);
    let reviewer = Keypair::generate(Role::Reviewer);
    ledger.write(|t| t.genesis(&conductor, json!({}), 0)).expect("genesis");
    ledger
        .write(|t| t.register_key(&conductor, &reviewer.public(), Role::Reviewer, json!({}), 0))
        .expect("register reviewer");
    ledger.write(|t| t.open_account(&conductor, "m", None, Some(root_limit), 0)).expect("root");
    let mut model = Model::default();
    model.open("m", None, Some(root_limit)).expect("model root");

    let mut now: i64 = 1;
    for i in 0..steps {
        let (dt, step) = next(&model, i);
        now += dt;
        let (expected, actual) = match step.clone() {
            Concrete::Open { name, parent, limit } => (
                model.open(name, parent, limit),
                budget_only(ledger.write(|t| t.open_account(&conductor, name, parent, limit, now)), |()| Out::Unit),
            ),
            Concrete::Reserve { account, amount, deadline_in } => {
                let deadline = now + deadline_in;
                let memo = json!({"call": i});
                (
                    model.reserve(account, amount, deadline, now),
                    budget_only(ledger.write(|t| t.reserve(&conductor, account, amount, deadline, memo, now)), |id| {
                        Out::Id(id.0)
                    }),
                )
            }
            Concrete::Settle { id, actual } => (
                model.settle(id, actual, now),
                budget_only(ledger.write(|t| t.settle(&conductor, ReservationId(id), actual, now)), Out::Account),
            ),
            Concrete::Void { id } => (
                model.void(id),
                budget_only(ledger.write(|t| t.void(&conductor, ReservationId(id), now)), |()| Out::Unit),
            ),
            Concrete::Expire => (
                Ok(Out::Ids(model.expire_due(now))),
                budget_only(ledger.write(|t| t.expire_due(&conductor, now)), |ids| {
                    Out::Ids(ids.into_iter().map(|id| id.0).collect())
                }),
            ),
            Concrete::Extend { account, amount } => (
                model.extend(account, amount),
                budget_only(ledger.write(|t| t.extend(&reviewer, account, amount, "model", now)), Out::Account),
            ),
        };
        prop_assert_eq!(&actual, &expected, "step {} at t={}: {:?}", i, now, step);
        let stored: BTreeMap<String, Account> = ledger.accounts().expect("accounts").into_iter().collect();
        prop_assert_eq!(&stored, &model.accounts, "balances after step {}: {:?}", i, step);
        for (name, a) in &stored {
            if let Some(limit) = a.limit {
                prop_assert!(a.pending + a.settled <= limit, "`{}` over its limit: {:?}", name, a);
            }
        }
        prop_assert_eq!(ledger.pending_reservations().expect("pending"), model.pending_list(), "after step {}", i);
    }
    let report = ledger.verify().map_err(|e| TestCaseError::fail(format!("verify: {e}")))?;
    let replayed: BTreeMap<String, Account> = report.budget.into_iter().collect();
    prop_assert_eq!(replayed, model.accounts, "the journal replays to the model's balances");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_ledger_follows_the_budget_rules(
        root_limit in 50..=500u64,
        batched in any::<bool>(),
        steps in proptest::collection::vec(timed(), 1..=60),
    ) {
        run_case(root_limit, batched, steps.len(), |model, i| (steps[i].dt, steps[i].step.resolve(model)))?;
    }
}

/// A fixed walk through the rules the random steps reach rarely (deep
/// trees, overruns, voids after the deadline, settling exactly at it),
/// compared with the model the same way.
#[test]
fn a_fixed_walk_through_the_rare_rules() {
    use Concrete::*;
    let mut steps = vec![
        Open { name: "a", parent: Some("m"), limit: Some(60) },
        Open { name: "b", parent: Some("m"), limit: None },
        Open { name: "a", parent: Some("m"), limit: None }, // exists
        Open { name: "x", parent: None, limit: None },      // a root needs a limit
        Open { name: "y", parent: Some("ghost"), limit: Some(5) },
        Reserve { account: "a", amount: 61, deadline_in: 50 }, // a's cap
        Reserve { account: "a", amount: 40, deadline_in: 10 }, // id 0, due at t = 32
        Reserve { account: "b", amount: 100, deadline_in: 50 }, // id 1
        Reserve { account: "b", amount: 1, deadline_in: 0 },
        Settle { id: 0, actual: 41 }, // overrun
        Settle { id: 1, actual: 100 },
        Settle { id: 1, actual: 1 },        // already settled
        Extend { account: "b", amount: 5 }, // no own limit
        Extend { account: "m", amount: 100 },
        Void { id: 7 },
        Settle { id: 0, actual: 1 }, // t = 49: past its deadline, so expired
        Void { id: 0 },              // not swept yet: a void still returns it
        Reserve { account: "m", amount: 250, deadline_in: 3 }, // id 2, due at t = 58
        Settle { id: 2, actual: 1 }, // t = 58: exactly at the deadline
        Reserve { account: "m", amount: 250, deadline_in: 30 }, // sweeps id 2 first
        Expire,
    ];
    // A chain as deep as allowed, then one more.
    let chain = ["c", "d", "e", "f", "g", "h", "i", "j"];
    let mut parent = "m";
    for name in chain {
        steps.push(Open { name, parent: Some(parent), limit: None });
        parent = name;
    }
    steps.push(Reserve { account: "i", amount: 10, deadline_in: 100 });
    let steps: Vec<(i64, Concrete)> = steps.into_iter().map(|s| (3, s)).collect();
    for batched in [false, true] {
        run_case(300, batched, steps.len(), |_, i| steps[i].clone()).expect("fixed walk");
    }
}

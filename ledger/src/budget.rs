//! Two-phase budget postings over a tree of accounts, kept as a
//! projection of the journal: every posting appends an entry *and* updates
//! the balances in the same transaction.
//!
//! Accounts form a tree (mission → agent → task). A reservation is made on
//! one account and holds its amount as *pending* on that account and every
//! ancestor; it is then settled (the actual amount moves to *settled* on
//! all of them, the rest returns), voided (all returns), or expires at its
//! deadline (all returns; this is what cleans up after a crash).
//!
//! Invariant, for every account with a limit, at every commit:
//! `settled + pending <= limit`. `reserve` is the only operation that
//! raises `pending`, and it refuses whenever the new total would exceed the
//! limit of any account on the path to the root; `settle` moves at most the
//! reserved amount; `void` and expiry return it all; an extension only
//! raises a limit. The journal verifier replays the same rules
//! ([`BudgetBook`]) from the entries alone and compares the result with
//! these tables.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use identity::{Keypair, Role};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::error::{BudgetError, LedgerError, storage};
use crate::journal::{Signer, Txn};
use crate::remote::RemoteKey;

/// account -> (limit or [`NO_LIMIT`], pending, settled, parent or "").
const ACCOUNTS: TableDefinition<&str, (u64, u64, u64, &str)> = TableDefinition::new("budget_accounts_v2");
/// reservation id -> (account, amount, state, deadline in Unix µs).
const RESERVATIONS: TableDefinition<u64, (&str, u64, u8, i64)> = TableDefinition::new("budget_reservations_v2");
/// (deadline, reservation id) for every *pending* reservation, so expiry
/// finds what is due without scanning every reservation ever made.
const DEADLINES: TableDefinition<(i64, u64), ()> = TableDefinition::new("budget_deadlines");
/// `next` -> the next reservation id.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("budget_counters");

/// Stored in place of a limit for an account capped only by its ancestors.
const NO_LIMIT: u64 = u64::MAX;
/// The largest amount any one posting, limit or extension may carry:
/// 2^53, so every amount is also exact in a JSON number (IEEE double) for
/// verifiers in other languages. Far above any real budget.
pub const AMOUNT_MAX: u64 = 1 << 53;
/// Account names are paths like `mission/agent/task-3`.
pub const ACCOUNT_NAME_BYTES_MAX: usize = 256;
/// Deepest account tree (mission → agent → task, with room to spare);
/// bounds the work of every posting.
pub const ACCOUNT_DEPTH_MAX: usize = 8;
/// Expiry returns at most this many reservations per call, so one sweep
/// after a long outage never makes an unbounded transaction.
pub const EXPIRE_BATCH_MAX: usize = 4096;

pub(crate) const OPENED: &str = "budget.opened";
pub(crate) const RESERVED: &str = "budget.reserved";
pub(crate) const SETTLED_KIND: &str = "budget.settled";
pub(crate) const VOIDED_KIND: &str = "budget.voided";
pub(crate) const EXPIRED_KIND: &str = "budget.expired";
pub(crate) const EXTENDED: &str = "budget.extended";
/// Many open/reserve/settle/void/expire postings in one entry (see
/// [`crate::Ledger::batch_postings`]).
pub(crate) const BATCH: &str = "budget.batch";

const PENDING: u8 = 0;
const SETTLED: u8 = 1;
const VOIDED: u8 = 2;
const EXPIRED: u8 = 3;

fn state_name(state: u8) -> &'static str {
    match state {
        PENDING => "pending",
        SETTLED => "settled",
        VOIDED => "voided",
        _ => "expired",
    }
}

/// A reservation's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReservationId(pub u64);

/// One budget account's balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// `None`: capped only by the accounts above it.
    pub limit: Option<u64>,
    pub pending: u64,
    pub settled: u64,
    /// The account above this one; `None` for a root.
    pub parent: Option<String>,
}

impl Account {
    /// What this account's own limit still allows (`None` if it has none;
    /// see [`crate::Ledger::available`] for what a reservation could take).
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.pending.saturating_add(self.settled)))
    }
}

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    txn.open_table(ACCOUNTS).map_err(storage)?;
    txn.open_table(RESERVATIONS).map_err(storage)?;
    txn.open_table(DEADLINES).map_err(storage)?;
    txn.open_table(COUNTERS).map_err(storage)?;
    Ok(())
}

fn check_amount(amount: u64) -> Result<(), BudgetError> {
    if amount == 0 {
        return Err(BudgetError::ZeroAmount);
    }
    if amount > AMOUNT_MAX {
        return Err(BudgetError::Absurd { amount, max: AMOUNT_MAX });
    }
    Ok(())
}

fn to_row(a: &Account) -> (u64, u64, u64, &str) {
    (a.limit.unwrap_or(NO_LIMIT), a.pending, a.settled, a.parent.as_deref().unwrap_or(""))
}

fn from_row((limit, pending, settled, parent): (u64, u64, u64, &str)) -> Account {
    Account {
        limit: (limit != NO_LIMIT).then_some(limit),
        pending,
        settled,
        parent: (!parent.is_empty()).then(|| parent.to_owned()),
    }
}

/// The rules, over any store of accounts: the redb projection when
/// posting, a map when the verifier replays the journal. One copy of the
/// arithmetic, so the two can only disagree if the data does.
pub(crate) trait Accounts {
    fn get(&self, name: &str) -> Result<Option<Account>, LedgerError>;
    fn put(&mut self, name: &str, account: &Account) -> Result<(), LedgerError>;

    /// The account and its ancestors, leaf first.
    fn path(&self, name: &str) -> Result<Vec<(String, Account)>, LedgerError> {
        let mut out = Vec::new();
        let mut next = Some(name.to_owned());
        while let Some(name) = next {
            if out.len() == ACCOUNT_DEPTH_MAX {
                return Err(BudgetError::TooDeep(name).into());
            }
            let account = self.get(&name)?.ok_or_else(|| BudgetError::UnknownAccount(name.clone()))?;
            next = account.parent.clone();
            out.push((name, account));
        }
        Ok(out)
    }

    /// Every change below is planned first (read-only: all checks) and
    /// applied after, so a posting whose journal entry is refused, or
    /// whose checks fail, has changed nothing.
    fn plan_open(&self, name: &str, parent: Option<&str>, limit: Option<u64>) -> Result<Updates, LedgerError> {
        if name.is_empty() || name.len() > ACCOUNT_NAME_BYTES_MAX {
            return Err(BudgetError::BadName(name.to_owned()).into());
        }
        if let Some(limit) = limit {
            check_amount(limit)?;
        }
        if self.get(name)?.is_some() {
            return Err(BudgetError::AccountExists(name.to_owned()).into());
        }
        match parent {
            None if limit.is_none() => return Err(BudgetError::RootWithoutLimit(name.to_owned()).into()),
            Some(parent) if self.path(parent)?.len() >= ACCOUNT_DEPTH_MAX => {
                return Err(BudgetError::TooDeep(name.to_owned()).into());
            }
            None | Some(_) => {}
        }
        Ok(vec![(name.to_owned(), Account { limit, pending: 0, settled: 0, parent: parent.map(str::to_owned) })])
    }

    /// Holds `amount` as pending on `name` and every ancestor, or refuses
    /// naming the first account (leaf first) that cannot cover it.
    fn plan_hold(&self, name: &str, amount: u64) -> Result<Updates, LedgerError> {
        check_amount(amount)?;
        let mut path = self.path(name)?;
        for (name, a) in &path {
            let used = a.pending.saturating_add(a.settled);
            if let Some(limit) = a.limit
                && used.saturating_add(amount) > limit
            {
                return Err(BudgetError::Insufficient {
                    account: name.clone(),
                    requested: amount,
                    available: limit.saturating_sub(used),
                    limit,
                    settled: a.settled,
                    pending: a.pending,
                }
                .into());
            }
        }
        for (_, a) in &mut path {
            a.pending += amount;
        }
        Ok(path)
    }

    /// Releases `reserved` from pending on the path and posts `posted` of
    /// it as settled.
    fn plan_release(&self, name: &str, reserved: u64, posted: u64) -> Result<Updates, LedgerError> {
        let mut path = self.path(name)?;
        for (name, a) in &mut path {
            // A projection that lost track would underflow here; refuse
            // rather than wrap.
            a.pending = a.pending.checked_sub(reserved).ok_or_else(|| BudgetError::Inconsistent(name.clone()))?;
            a.settled += posted;
        }
        Ok(path)
    }

    fn plan_raise(&self, name: &str, amount: u64) -> Result<Updates, LedgerError> {
        check_amount(amount)?;
        let mut a = self.get(name)?.ok_or_else(|| BudgetError::UnknownAccount(name.to_owned()))?;
        let Some(limit) = a.limit else {
            return Err(BudgetError::NoOwnLimit(name.to_owned()).into());
        };
        let raised = limit.checked_add(amount).filter(|l| *l <= AMOUNT_MAX);
        a.limit = Some(raised.ok_or(BudgetError::Absurd { amount, max: AMOUNT_MAX })?);
        Ok(vec![(name.to_owned(), a)])
    }

    fn apply(&mut self, updates: Updates) -> Result<(), LedgerError> {
        for (name, account) in updates {
            self.put(&name, &account)?;
        }
        Ok(())
    }
}

/// Account rows to write, computed before anything is written.
type Updates = Vec<(String, Account)>;

/// This transaction's view of the budget tables: each row is read once,
/// changed in memory, and written back once when the transaction is
/// sealed. A busy group commit makes thousands of postings against the
/// same few accounts in one transaction; reading and rewriting the same
/// B-tree rows for each of them was most of a posting's cost.
#[derive(Debug, Default)]
pub(crate) struct BudgetCache {
    /// Accounts read (`None`: known not to exist) or changed.
    accounts: RefCell<HashMap<String, Option<Account>>>,
    dirty_accounts: HashSet<String>,
    /// The next reservation id, once read; `true` once changed.
    next_id: Option<(u64, bool)>,
    /// Reservations read or changed.
    reservations: HashMap<u64, Hold>,
    dirty_reservations: BTreeSet<u64>,
    /// Deadline index rows made by this transaction and still pending.
    deadlines_added: BTreeSet<(i64, u64)>,
    /// Stored deadline index rows this transaction has closed.
    deadlines_removed: HashSet<(i64, u64)>,
    /// The earliest stored deadline, once read (`Some(None)`: none). The
    /// stored table does not change until write-back, so it stays a lower
    /// bound for the rest of the transaction.
    first_stored_deadline: Option<Option<i64>>,
}

/// Closed reservations kept in memory across transactions beyond this are
/// dropped (they are read back from the table if ever asked for again).
const CACHED_RESERVATIONS_MAX: usize = 1 << 16;
/// Accounts kept in memory across transactions.
const CACHED_ACCOUNTS_MAX: usize = 1 << 16;

impl BudgetCache {
    /// After a commit: what the cache holds is now what the tables hold.
    /// Keep what the next transactions will likely touch (accounts and
    /// pending reservations), and bound it.
    pub(crate) fn committed(&mut self) {
        self.reservations.retain(|_, hold| hold.state == PENDING);
        if self.reservations.len() > CACHED_RESERVATIONS_MAX {
            self.reservations.clear();
        }
        if self.accounts.get_mut().len() > CACHED_ACCOUNTS_MAX {
            self.accounts.get_mut().clear();
        }
    }

    /// Writes every change back to the tables; the cache stays valid.
    pub(crate) fn write_back(&mut self, txn: &WriteTransaction) -> Result<(), LedgerError> {
        if !self.dirty_accounts.is_empty() {
            let mut table = txn.open_table(ACCOUNTS).map_err(storage)?;
            let accounts = self.accounts.borrow();
            for name in self.dirty_accounts.drain() {
                if let Some(Some(account)) = accounts.get(&name) {
                    table.insert(name.as_str(), to_row(account)).map_err(storage)?;
                }
            }
        }
        if let Some((next, dirty @ true)) = &mut self.next_id {
            txn.open_table(COUNTERS).map_err(storage)?.insert("next", *next).map_err(storage)?;
            *dirty = false;
        }
        if !self.dirty_reservations.is_empty() {
            let mut table = txn.open_table(RESERVATIONS).map_err(storage)?;
            for id in std::mem::take(&mut self.dirty_reservations) {
                if let Some(h) = self.reservations.get(&id) {
                    table.insert(id, (h.account.as_str(), h.amount, h.state, h.deadline_us)).map_err(storage)?;
                }
            }
        }
        if !self.deadlines_added.is_empty() || !self.deadlines_removed.is_empty() {
            let mut table = txn.open_table(DEADLINES).map_err(storage)?;
            for key in std::mem::take(&mut self.deadlines_added) {
                table.insert(key, ()).map_err(storage)?;
            }
            for key in std::mem::take(&mut self.deadlines_removed) {
                table.remove(key).map_err(storage)?;
            }
            self.first_stored_deadline = None;
        }
        Ok(())
    }
}

/// The budget tables as seen through a transaction's [`BudgetCache`].
struct CachedAccounts<'a> {
    txn: &'a WriteTransaction,
    cache: &'a mut BudgetCache,
}

impl Accounts for CachedAccounts<'_> {
    fn get(&self, name: &str) -> Result<Option<Account>, LedgerError> {
        if let Some(hit) = self.cache.accounts.borrow().get(name) {
            return Ok(hit.clone());
        }
        let table = self.txn.open_table(ACCOUNTS).map_err(storage)?;
        let row = table.get(name).map_err(storage)?.map(|g| from_row(g.value()));
        self.cache.accounts.borrow_mut().insert(name.to_owned(), row.clone());
        Ok(row)
    }
    fn put(&mut self, name: &str, account: &Account) -> Result<(), LedgerError> {
        // The same few accounts take thousands of postings per commit:
        // update in place rather than allocate a key each time.
        let mut accounts = self.cache.accounts.borrow_mut();
        match accounts.get_mut(name) {
            Some(slot) => *slot = Some(account.clone()),
            None => {
                accounts.insert(name.to_owned(), Some(account.clone()));
            }
        }
        if !self.cache.dirty_accounts.contains(name) {
            self.cache.dirty_accounts.insert(name.to_owned());
        }
        Ok(())
    }
}

// Posting payloads as written. Serialised straight from these (no
// intermediate `serde_json::Value`): a busy group commit writes hundreds
// of thousands a second. `docs/journal-format.md` §6 lists the fields.

#[derive(Serialize)]
struct OpenedOut<'a> {
    account: &'a str,
    parent: Option<&'a str>,
    limit: Option<u64>,
}

#[derive(Serialize)]
struct ReservedOut<'a> {
    reservation: u64,
    account: &'a str,
    amount: u64,
    deadline_us: i64,
    /// The call the reservation pays for, as the caller named it.
    #[serde(rename = "for")]
    memo: &'a serde_json::Value,
}

/// `budget.settled` (with `amount`), `budget.voided`, `budget.expired`
/// (with `deadline_us`).
#[derive(Serialize)]
struct ClosedOut<'a> {
    reservation: u64,
    account: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u64>,
    released: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline_us: Option<i64>,
}

#[derive(Serialize)]
struct ExtendedOut<'a> {
    account: &'a str,
    amount: u64,
    limit: Option<u64>,
    reason: &'a str,
}

/// A reservation as the journal states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    pub account: String,
    pub amount: u64,
    pub state: u8,
    pub deadline_us: i64,
}

impl Txn {
    fn book(&mut self) -> CachedAccounts<'_> {
        CachedAccounts { txn: &self.inner, cache: &mut self.budget }
    }

    /// Opens an account. A root (no `parent`) must have a limit; a child
    /// without one is capped only by its ancestors. Journaled as
    /// `budget.opened`.
    pub fn open_account(
        &mut self,
        signer: &Keypair,
        account: &str,
        parent: Option<&str>,
        limit: Option<u64>,
        time_us: i64,
    ) -> Result<(), LedgerError> {
        let updates = self.book().plan_open(account, parent, limit)?;
        self.append_budget(signer.into(), OPENED, &OpenedOut { account, parent, limit }, time_us)?;
        self.book().apply(updates)
    }

    /// The balances of `account`, as of this transaction.
    pub fn account(&mut self, account: &str) -> Result<Account, LedgerError> {
        self.book().get(account)?.ok_or_else(|| BudgetError::UnknownAccount(account.to_owned()).into())
    }

    /// Reserves `amount` on `account` (and so on every account above it)
    /// until `deadline_us`, or refuses without changing anything. `memo`
    /// names the call the reservation pays for; it is copied into the
    /// journal entry. Reservations already past their deadline at
    /// `time_us` are expired first, so their funds count. Journaled as
    /// `budget.reserved`.
    pub fn reserve(
        &mut self,
        signer: &Keypair,
        account: &str,
        amount: u64,
        deadline_us: i64,
        memo: serde_json::Value,
        time_us: i64,
    ) -> Result<ReservationId, LedgerError> {
        check_amount(amount)?;
        if deadline_us <= time_us {
            return Err(BudgetError::DeadlineInPast { deadline_us, now_us: time_us }.into());
        }
        self.expire_due(signer, time_us)?;
        let updates = self.book().plan_hold(account, amount)?;
        let id = match self.budget.next_id {
            Some((next, _)) => next,
            None => {
                let counters = self.inner.open_table(COUNTERS).map_err(storage)?;
                counters.get("next").map_err(storage)?.map(|g| g.value()).unwrap_or(0)
            }
        };
        self.append_budget(
            signer.into(),
            RESERVED,
            &ReservedOut { reservation: id, account, amount, deadline_us, memo: &memo },
            time_us,
        )?;
        self.book().apply(updates)?;
        let cache = &mut self.budget;
        cache.next_id = Some((id + 1, true));
        cache.reservations.insert(id, Hold { account: account.to_owned(), amount, state: PENDING, deadline_us });
        cache.dirty_reservations.insert(id);
        cache.deadlines_added.insert((deadline_us, id));
        Ok(ReservationId(id))
    }

    /// Posts the real cost `actual` (at most the reserved amount) and
    /// returns the rest. A reservation past its deadline can no longer be
    /// settled: it has expired (or is about to), and its funds are already
    /// spoken for by the accounts. Journaled as `budget.settled`.
    pub fn settle(
        &mut self,
        signer: &Keypair,
        id: ReservationId,
        actual: u64,
        time_us: i64,
    ) -> Result<Account, LedgerError> {
        if actual > AMOUNT_MAX {
            return Err(BudgetError::Absurd { amount: actual, max: AMOUNT_MAX }.into());
        }
        let hold = self.pending_hold(id, Some(time_us))?;
        if actual > hold.amount {
            return Err(BudgetError::Overrun { id: id.0, actual, reserved: hold.amount }.into());
        }
        let updates = self.book().plan_release(&hold.account, hold.amount, actual)?;
        let settled = updates.first().map(|(_, a)| a.clone());
        self.append_budget(
            signer.into(),
            SETTLED_KIND,
            &ClosedOut {
                reservation: id.0,
                account: &hold.account,
                amount: Some(actual),
                released: hold.amount - actual,
                deadline_us: None,
            },
            time_us,
        )?;
        self.close(id, hold, SETTLED, updates)?;
        settled.ok_or_else(|| BudgetError::Inconsistent(format!("reservation {} has no account", id.0)).into())
    }

    /// Returns the whole reservation (the call did not run or failed).
    /// Journaled as `budget.voided`.
    pub fn void(&mut self, signer: &Keypair, id: ReservationId, time_us: i64) -> Result<(), LedgerError> {
        let hold = self.pending_hold(id, None)?;
        let updates = self.book().plan_release(&hold.account, hold.amount, 0)?;
        self.append_budget(
            signer.into(),
            VOIDED_KIND,
            &ClosedOut {
                reservation: id.0,
                account: &hold.account,
                amount: None,
                released: hold.amount,
                deadline_us: None,
            },
            time_us,
        )?;
        self.close(id, hold, VOIDED, updates)
    }

    /// Expires every pending reservation whose deadline is at or before
    /// `now_us` (at most [`EXPIRE_BATCH_MAX`]), returning their funds.
    /// Journaled as one `budget.expired` each.
    pub fn expire_due(&mut self, signer: &Keypair, now_us: i64) -> Result<Vec<ReservationId>, LedgerError> {
        let due = self.due(now_us)?;
        let mut expired = Vec::with_capacity(due.len());
        for id in due {
            let id = ReservationId(id);
            let hold = self.pending_hold(id, None)?;
            let updates = self.book().plan_release(&hold.account, hold.amount, 0)?;
            self.append_budget(
                signer.into(),
                EXPIRED_KIND,
                &ClosedOut {
                    reservation: id.0,
                    account: &hold.account,
                    amount: None,
                    released: hold.amount,
                    deadline_us: Some(hold.deadline_us),
                },
                now_us,
            )?;
            self.close(id, hold, EXPIRED, updates)?;
            expired.push(id);
        }
        Ok(expired)
    }

    /// The pending reservations due at `now_us`, earliest deadline first
    /// (at most [`EXPIRE_BATCH_MAX`]): the stored deadline index less what
    /// this transaction closed, plus what it opened.
    fn due(&mut self, now_us: i64) -> Result<Vec<u64>, LedgerError> {
        let first_stored = match self.budget.first_stored_deadline {
            Some(first) => first,
            None => {
                let table = self.inner.open_table(DEADLINES).map_err(storage)?;
                let first = table.first().map_err(storage)?.map(|(k, _)| k.value().0);
                self.budget.first_stored_deadline = Some(first);
                first
            }
        };
        let cache = &self.budget;
        let mut due: Vec<(i64, u64)> = cache.deadlines_added.range(..=(now_us, u64::MAX)).copied().collect();
        if first_stored.is_some_and(|first| first <= now_us) {
            let table = self.inner.open_table(DEADLINES).map_err(storage)?;
            for row in table.range(..=(now_us, u64::MAX)).map_err(storage)? {
                let key = row.map_err(storage)?.0.value();
                if !cache.deadlines_removed.contains(&key) {
                    due.push(key);
                    // The first EXPIRE_BATCH_MAX stored rows are all one
                    // sweep can take from the table; the rest are due
                    // again at the next sweep.
                    if due.len() >= cache.deadlines_added.len() + EXPIRE_BATCH_MAX {
                        break;
                    }
                }
            }
            due.sort_unstable();
        }
        Ok(due.into_iter().take(EXPIRE_BATCH_MAX).map(|(_, id)| id).collect())
    }

    /// Raises `account`'s limit by `amount`, signed by the reviewer who
    /// granted it (`budget.extended`). Only an account with its own limit
    /// can be extended.
    pub fn extend(
        &mut self,
        reviewer: &Keypair,
        account: &str,
        amount: u64,
        reason: &str,
        time_us: i64,
    ) -> Result<Account, LedgerError> {
        self.extend_by(reviewer.into(), account, amount, reason, time_us)
    }

    /// [`Txn::extend`] signed by a reviewer key this process does not hold
    /// (see [`crate::RemoteKey`]): a capturing `reviewer` records the
    /// `budget.extended` entry for signing (roll the transaction back
    /// after), a signed one writes it with the reviewer's signature. The
    /// posting is always an entry of its own, never part of a batch.
    pub fn extend_remote(
        &mut self,
        reviewer: &RemoteKey,
        account: &str,
        amount: u64,
        reason: &str,
        time_us: i64,
    ) -> Result<Account, LedgerError> {
        self.extend_by(Signer::Remote(reviewer), account, amount, reason, time_us)
    }

    fn extend_by(
        &mut self,
        reviewer: Signer<'_>,
        account: &str,
        amount: u64,
        reason: &str,
        time_us: i64,
    ) -> Result<Account, LedgerError> {
        if reviewer.role() != Role::Reviewer {
            return Err(LedgerError::BadEntry("a budget extension is signed by a reviewer key".into()));
        }
        let updates = self.book().plan_raise(account, amount)?;
        let raised =
            updates.first().map(|(_, a)| a.clone()).ok_or_else(|| BudgetError::UnknownAccount(account.to_owned()))?;
        self.append_budget(reviewer, EXTENDED, &ExtendedOut { account, amount, limit: raised.limit, reason }, time_us)?;
        self.book().apply(updates)?;
        Ok(raised)
    }

    /// A pending reservation, or the typed reason it cannot be closed.
    /// With `settle_at`, a reservation past its deadline counts as expired.
    fn pending_hold(&mut self, id: ReservationId, settle_at: Option<i64>) -> Result<Hold, LedgerError> {
        let hold = match self.budget.reservations.get(&id.0) {
            Some(hold) => hold.clone(),
            None => {
                let reservations = self.inner.open_table(RESERVATIONS).map_err(storage)?;
                let guard = reservations.get(id.0).map_err(storage)?.ok_or(BudgetError::UnknownReservation(id.0))?;
                let (account, amount, state, deadline_us) = guard.value();
                let hold = Hold { account: account.to_owned(), amount, state, deadline_us };
                self.budget.reservations.insert(id.0, hold.clone());
                hold
            }
        };
        if hold.state != PENDING {
            return Err(BudgetError::AlreadyClosed { id: id.0, state: state_name(hold.state) }.into());
        }
        if settle_at.is_some_and(|t| t >= hold.deadline_us) {
            return Err(BudgetError::AlreadyClosed { id: id.0, state: "expired" }.into());
        }
        Ok(hold)
    }

    fn close(&mut self, id: ReservationId, hold: Hold, state: u8, updates: Updates) -> Result<(), LedgerError> {
        self.book().apply(updates)?;
        let cache = &mut self.budget;
        let key = (hold.deadline_us, id.0);
        if !cache.deadlines_added.remove(&key) {
            cache.deadlines_removed.insert(key);
        }
        cache.reservations.insert(id.0, Hold { state, ..hold });
        cache.dirty_reservations.insert(id.0);
        Ok(())
    }
}

impl crate::Ledger {
    /// The balances of `account` in a fresh snapshot.
    pub fn account(&self, account: &str) -> Result<Account, LedgerError> {
        let read = self.read()?;
        let accounts = read.open_table(ACCOUNTS).map_err(storage)?;
        let row = accounts.get(account).map_err(storage)?;
        row.map(|g| from_row(g.value())).ok_or_else(|| BudgetError::UnknownAccount(account.to_owned()).into())
    }

    /// What a reservation on `account` could take now (see [`available_in`]).
    pub fn available(&self, account: &str) -> Result<u64, LedgerError> {
        available_in(&self.accounts()?.into_iter().collect(), account)
    }

    /// Every account and its balances, in name order (so children follow
    /// their parent).
    pub fn accounts(&self) -> Result<Vec<(String, Account)>, LedgerError> {
        let read = self.read()?;
        read_accounts(&read)
    }

    /// Every reservation still pending, with its account, amount and
    /// deadline.
    pub fn pending_reservations(&self) -> Result<Vec<(ReservationId, String, u64, i64)>, LedgerError> {
        let read = self.read()?;
        let reservations = read.open_table(RESERVATIONS).map_err(storage)?;
        let mut out = Vec::new();
        for row in reservations.iter().map_err(storage)? {
            let (id, value) = row.map_err(storage)?;
            let (account, amount, state, deadline) = value.value();
            if state == PENDING {
                out.push((ReservationId(id.value()), account.to_owned(), amount, deadline));
            }
        }
        Ok(out)
    }
}

/// What a reservation on `account` could take: the least that any account
/// on its path to the root still allows. Takes the accounts already read
/// (e.g. from [`crate::Ledger::accounts`]) so a caller listing many
/// accounts reads them once.
pub fn available_in(accounts: &BTreeMap<String, Account>, account: &str) -> Result<u64, LedgerError> {
    let path = MapAccounts(accounts).path(account)?;
    Ok(path.iter().filter_map(|(_, a)| a.available()).min().unwrap_or(0))
}

pub(crate) fn read_accounts(read: &redb::ReadTransaction) -> Result<Vec<(String, Account)>, LedgerError> {
    let accounts = read.open_table(ACCOUNTS).map_err(storage)?;
    let mut out = Vec::new();
    for row in accounts.iter().map_err(storage)? {
        let (name, balances) = row.map_err(storage)?;
        out.push((name.value().to_owned(), from_row(balances.value())));
    }
    Ok(out)
}

pub(crate) fn read_reservations(read: &redb::ReadTransaction) -> Result<BTreeMap<u64, Hold>, LedgerError> {
    let reservations = read.open_table(RESERVATIONS).map_err(storage)?;
    let mut out = BTreeMap::new();
    for row in reservations.iter().map_err(storage)? {
        let (id, value) = row.map_err(storage)?;
        let (account, amount, state, deadline_us) = value.value();
        out.insert(id.value(), Hold { account: account.to_owned(), amount, state, deadline_us });
    }
    Ok(out)
}

struct MapAccounts<'a>(&'a BTreeMap<String, Account>);

impl Accounts for MapAccounts<'_> {
    fn get(&self, name: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self.0.get(name).cloned())
    }
    fn put(&mut self, _: &str, _: &Account) -> Result<(), LedgerError> {
        Err(LedgerError::BadEntry("read-only account view".into()))
    }
}

/// The budget as the journal alone says it is: the verifier replays every
/// balance-changing entry through the same rules the ledger posts with.
#[derive(Debug, Default)]
pub(crate) struct BudgetBook {
    pub accounts: BTreeMap<String, Account>,
    pub reservations: BTreeMap<u64, Hold>,
}

impl Accounts for BudgetBook {
    fn get(&self, name: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self.accounts.get(name).cloned())
    }
    fn put(&mut self, name: &str, account: &Account) -> Result<(), LedgerError> {
        self.accounts.insert(name.to_owned(), account.clone());
        Ok(())
    }
}

#[derive(Deserialize)]
struct OpenedPayload {
    account: String,
    parent: Option<String>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct ReservedPayload {
    reservation: u64,
    account: String,
    amount: u64,
    deadline_us: i64,
}

/// `budget.settled`: `amount` is required (an absent one is not 0).
#[derive(Deserialize)]
struct SettledPayload {
    reservation: u64,
    account: String,
    amount: u64,
    released: u64,
}

/// `budget.voided` and `budget.expired`: nothing is posted, so an
/// `amount` field, if any, is not read.
#[derive(Deserialize)]
struct ReleasedPayload {
    reservation: u64,
    account: String,
    released: u64,
}

#[derive(Deserialize)]
struct ExtendedPayload {
    account: String,
    amount: u64,
}

/// Whether `kind` changes balances (and so is written only by the budget
/// methods and replayed by the verifier).
pub(crate) fn is_posting(kind: &str) -> bool {
    matches!(kind, OPENED | RESERVED | SETTLED_KIND | VOIDED_KIND | EXPIRED_KIND | EXTENDED | BATCH)
}

/// Whether a posting of `kind` may travel in a `budget.batch` entry: the
/// conductor's own postings, made many per group commit (every task
/// opens its account as it starts, and every call reserves and settles).
/// A reviewer's extension is signed by the reviewer, so it stands alone.
pub(crate) fn is_batchable(kind: &str) -> bool {
    matches!(kind, OPENED | RESERVED | SETTLED_KIND | VOIDED_KIND | EXPIRED_KIND)
}

#[derive(Deserialize)]
struct BatchPayload {
    postings: Vec<crate::json::Obj<BatchItem>>,
}

/// One posting of a batch. Its payload is decoded refusing any repeated
/// name ([`crate::json::Unique`]), then read as an entry's payload would
/// be (an object, integers only).
#[derive(Deserialize)]
struct BatchItem {
    kind: String,
    time_us: i64,
    payload: crate::json::Unique,
}

/// A posting's payload, as an entry's bytes or as one item of a batch.
enum Source<'a> {
    Bytes(&'a [u8]),
    Value(serde_json::Value),
}

impl Source<'_> {
    fn parse<T: serde::de::DeserializeOwned>(self, kind: &str) -> Result<T, String> {
        match self {
            Source::Bytes(bytes) => crate::json::object(bytes),
            Source::Value(value) => crate::json::object_of(value),
        }
        .map_err(|e| format!("`{kind}` payload: {e}"))
    }
}

impl BudgetBook {
    fn apply_updates(&mut self, updates: Updates) -> Result<(), String> {
        self.apply(updates).map_err(|e| e.to_string())
    }

    /// Applies one balance-changing entry made at `time_us`, or says why it
    /// breaks the rules.
    pub fn apply_posting(&mut self, kind: &str, payload: &[u8], time_us: i64) -> Result<(), String> {
        if kind == BATCH {
            let batch: BatchPayload = Source::Bytes(payload).parse(kind)?;
            if batch.postings.is_empty() {
                return Err("a `budget.batch` entry holds no postings".into());
            }
            for (i, crate::json::Obj(item)) in batch.postings.into_iter().enumerate() {
                if !is_batchable(&item.kind) {
                    return Err(format!("posting {i} of the batch: `{}` cannot be batched", item.kind));
                }
                if item.time_us > time_us {
                    return Err(format!("posting {i} of the batch is later than the entry"));
                }
                self.apply_one(&item.kind, Source::Value(item.payload.0), item.time_us)
                    .map_err(|e| format!("posting {i} of the batch: {e}"))?;
            }
            return Ok(());
        }
        self.apply_one(kind, Source::Bytes(payload), time_us)
    }

    fn apply_one(&mut self, kind: &str, payload: Source<'_>, time_us: i64) -> Result<(), String> {
        match kind {
            OPENED => {
                let p: OpenedPayload = payload.parse(kind)?;
                let updates = self.plan_open(&p.account, p.parent.as_deref(), p.limit).map_err(|e| e.to_string())?;
                self.apply_updates(updates)
            }
            RESERVED => {
                let p: ReservedPayload = payload.parse(kind)?;
                let expected = self.reservations.keys().next_back().map_or(0, |last| last + 1);
                if p.reservation != expected {
                    return Err(format!("reservation id {} out of order (expected {expected})", p.reservation));
                }
                if p.deadline_us <= time_us {
                    return Err(format!("reservation {} has a deadline not after its own time", p.reservation));
                }
                let updates = self.plan_hold(&p.account, p.amount).map_err(|e| e.to_string())?;
                self.apply_updates(updates)?;
                self.reservations.insert(
                    p.reservation,
                    Hold { account: p.account, amount: p.amount, state: PENDING, deadline_us: p.deadline_us },
                );
                Ok(())
            }
            SETTLED_KIND | VOIDED_KIND | EXPIRED_KIND => {
                let p = match kind {
                    SETTLED_KIND => payload.parse::<SettledPayload>(kind)?,
                    _ => {
                        let p: ReleasedPayload = payload.parse(kind)?;
                        SettledPayload {
                            reservation: p.reservation,
                            account: p.account,
                            amount: 0,
                            released: p.released,
                        }
                    }
                };
                let hold = self
                    .reservations
                    .get(&p.reservation)
                    .cloned()
                    .ok_or_else(|| format!("reservation {} was never made", p.reservation))?;
                if hold.state != PENDING {
                    return Err(format!("reservation {} is already {}", p.reservation, state_name(hold.state)));
                }
                let (state, posted) = match kind {
                    SETTLED_KIND => (SETTLED, p.amount),
                    VOIDED_KIND => (VOIDED, 0),
                    _ => (EXPIRED, 0),
                };
                if p.account != hold.account || posted.checked_add(p.released) != Some(hold.amount) {
                    return Err(format!(
                        "closing reservation {} of {} on `{}` posts {posted} and releases {} on `{}`",
                        p.reservation, hold.amount, hold.account, p.released, p.account
                    ));
                }
                match kind {
                    SETTLED_KIND if time_us >= hold.deadline_us => {
                        return Err(format!("reservation {} settled at or after its deadline", p.reservation));
                    }
                    EXPIRED_KIND if time_us < hold.deadline_us => {
                        return Err(format!("reservation {} expired before its deadline", p.reservation));
                    }
                    _ => {}
                }
                let updates = self.plan_release(&hold.account, hold.amount, posted).map_err(|e| e.to_string())?;
                self.apply_updates(updates)?;
                self.reservations.insert(p.reservation, Hold { state, ..hold });
                Ok(())
            }
            EXTENDED => {
                let p: ExtendedPayload = payload.parse(kind)?;
                let updates = self.plan_raise(&p.account, p.amount).map_err(|e| e.to_string())?;
                self.apply_updates(updates)
            }
            _ => Ok(()),
        }
    }

    /// Compares the replayed budget with the database's tables.
    pub fn compare(&self, read: &redb::ReadTransaction) -> Result<(), String> {
        let stored: BTreeMap<String, Account> = read_accounts(read).map_err(|e| e.to_string())?.into_iter().collect();
        if stored != self.accounts {
            let differing = stored
                .keys()
                .chain(self.accounts.keys())
                .find(|name| stored.get(*name) != self.accounts.get(*name))
                .cloned()
                .unwrap_or_default();
            return Err(format!(
                "budget account `{differing}` is {:?} in the database but {:?} by the journal",
                stored.get(&differing),
                self.accounts.get(&differing)
            ));
        }
        let reservations = read_reservations(read).map_err(|e| e.to_string())?;
        if reservations != self.reservations {
            let differing = reservations
                .keys()
                .chain(self.reservations.keys())
                .find(|id| reservations.get(*id) != self.reservations.get(*id))
                .copied()
                .unwrap_or_default();
            return Err(format!("reservation {differing} in the database differs from the journal"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VerifyFailure;
    use serde_json::json;

    const FAR: i64 = 1_000_000;

    fn setup(name: &str, limit: u64) -> (crate::Ledger, std::path::PathBuf, Keypair) {
        let path = std::env::temp_dir().join(format!("budget-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = crate::Ledger::open(&path).expect("open");
        let key = Keypair::generate(Role::Conductor);
        ledger.write(|t| t.genesis(&key, json!({}), 0)).expect("genesis");
        ledger.write(|t| t.open_account(&key, "m", None, Some(limit), 0)).expect("open account");
        (ledger, path, key)
    }

    fn acct(limit: Option<u64>, pending: u64, settled: u64, parent: Option<&str>) -> Account {
        Account { limit, pending, settled, parent: parent.map(str::to_owned) }
    }

    #[test]
    fn reserve_settle_releases_the_remainder() {
        let (ledger, path, key) = setup("settle", 100);
        let id = ledger.write(|t| t.reserve(&key, "m", 60, FAR, json!({}), 1)).expect("reserve");
        assert_eq!(ledger.account("m").expect("acct"), acct(Some(100), 60, 0, None));
        ledger.write(|t| t.settle(&key, id, 25, 2)).expect("settle");
        assert_eq!(ledger.account("m").expect("acct"), acct(Some(100), 0, 25, None));
        let err = ledger.write(|t| t.settle(&key, id, 1, 3)).expect_err("second settle refused");
        assert!(matches!(err, LedgerError::Budget(BudgetError::AlreadyClosed { .. })));
        ledger.verify().expect("journal intact and balances replay");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn over_limit_reservation_is_refused_and_changes_nothing() {
        let (ledger, path, key) = setup("refuse", 100);
        let a = ledger.write(|t| t.reserve(&key, "m", 70, FAR, json!({}), 1)).expect("reserve");
        let err = ledger.write(|t| t.reserve(&key, "m", 31, FAR, json!({}), 2)).expect_err("refused");
        assert!(matches!(err, LedgerError::Budget(BudgetError::Insufficient { available: 30, .. })));
        assert_eq!(ledger.account("m").expect("acct").pending, 70);
        ledger.write(|t| t.void(&key, a, 3)).expect("void");
        assert_eq!(ledger.available("m").expect("avail"), 100);
        let err = ledger.write(|t| t.settle(&key, a, 1, 4)).expect_err("settle after void");
        assert!(matches!(err, LedgerError::Budget(BudgetError::AlreadyClosed { state: "voided", .. })));
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_tree_caps_every_level_and_settles_on_every_level() {
        let (ledger, path, key) = setup("tree", 100);
        ledger.write(|t| t.open_account(&key, "m/a", Some("m"), Some(60), 1)).expect("agent a");
        ledger.write(|t| t.open_account(&key, "m/b", Some("m"), None, 1)).expect("agent b");
        ledger.write(|t| t.open_account(&key, "m/a/t1", Some("m/a"), Some(40), 1)).expect("task");
        // The task cap binds first.
        let err = ledger.write(|t| t.reserve(&key, "m/a/t1", 41, FAR, json!({}), 2)).expect_err("task cap");
        assert!(matches!(&err, LedgerError::Budget(BudgetError::Insufficient { account, .. }) if account == "m/a/t1"));
        let r1 = ledger.write(|t| t.reserve(&key, "m/a/t1", 40, FAR, json!({}), 2)).expect("r1");
        // The agent cap binds next (60 - 40 = 20 left on m/a).
        let err = ledger.write(|t| t.reserve(&key, "m/a", 21, FAR, json!({}), 3)).expect_err("agent cap");
        assert!(matches!(&err, LedgerError::Budget(BudgetError::Insufficient { account, .. }) if account == "m/a"));
        // An uncapped agent is bound by the mission (100 - 40 = 60).
        assert_eq!(ledger.available("m/b").expect("avail"), 60);
        let err = ledger.write(|t| t.reserve(&key, "m/b", 61, FAR, json!({}), 3)).expect_err("mission cap");
        assert!(matches!(&err, LedgerError::Budget(BudgetError::Insufficient { account, .. }) if account == "m"));
        ledger.write(|t| t.settle(&key, r1, 30, 4)).expect("settle");
        assert_eq!(ledger.account("m").expect("m"), acct(Some(100), 0, 30, None));
        assert_eq!(ledger.account("m/a").expect("m/a"), acct(Some(60), 0, 30, Some("m")));
        assert_eq!(ledger.account("m/a/t1").expect("t1"), acct(Some(40), 0, 30, Some("m/a")));
        ledger.verify().expect("balances replay");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn reservations_expire_at_their_deadline_and_cannot_be_settled_after() {
        let (ledger, path, key) = setup("expire", 100);
        let early = ledger.write(|t| t.reserve(&key, "m", 50, 10, json!({}), 1)).expect("early");
        let late = ledger.write(|t| t.reserve(&key, "m", 30, 1_000, json!({}), 1)).expect("late");
        let err = ledger.write(|t| t.settle(&key, early, 5, 10)).expect_err("too late to settle");
        assert!(matches!(err, LedgerError::Budget(BudgetError::AlreadyClosed { state: "expired", .. })));
        // A reservation made after the deadline sweeps the expired one first.
        let third = ledger.write(|t| t.reserve(&key, "m", 70, 2_000, json!({}), 11)).expect("room again");
        assert_eq!(ledger.account("m").expect("m"), acct(Some(100), 100, 0, None));
        let expired = ledger.write(|t| t.expire_due(&key, 5_000)).expect("sweep");
        assert_eq!(expired, vec![late, third]);
        assert_eq!(ledger.account("m").expect("m"), acct(Some(100), 0, 0, None));
        assert!(ledger.pending_reservations().expect("pending").is_empty());
        let err = ledger.write(|t| t.reserve(&key, "m", 1, 4_000, json!({}), 5_000)).expect_err("past");
        assert!(matches!(err, LedgerError::Budget(BudgetError::DeadlineInPast { .. })));
        ledger.verify().expect("balances replay");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_reviewer_extends_a_limit_with_a_signed_posting() {
        let (ledger, path, key) = setup("extend", 100);
        let reviewer = Keypair::generate(Role::Reviewer);
        ledger.write(|t| t.register_key(&key, &reviewer.public(), Role::Reviewer, json!({}), 1)).expect("register");
        ledger.write(|t| t.reserve(&key, "m", 100, FAR, json!({}), 2)).expect("all of it");
        assert!(ledger.write(|t| t.extend(&key, "m", 50, "more", 3)).is_err(), "not by the conductor");
        let raised = ledger.write(|t| t.extend(&reviewer, "m", 50, "approved overrun", 3)).expect("extend");
        assert_eq!(raised.limit, Some(150));
        ledger.write(|t| t.reserve(&key, "m", 50, FAR, json!({}), 4)).expect("the extension is usable");
        ledger.write(|t| t.open_account(&key, "m/x", Some("m"), None, 5)).expect("uncapped child");
        let err = ledger.write(|t| t.extend(&reviewer, "m/x", 5, "", 6)).expect_err("no own limit");
        assert!(matches!(err, LedgerError::Budget(BudgetError::NoOwnLimit(_))));
        ledger.verify().expect("balances replay");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn bad_amounts_and_names_are_typed_errors_that_change_nothing() {
        let (ledger, path, key) = setup("typed", 100);
        let id = ledger.write(|t| t.reserve(&key, "m", 10, FAR, json!({}), 1)).expect("reserve");
        let cases: Vec<(LedgerError, &str)> = vec![
            (ledger.write(|t| t.settle(&key, id, 11, 2)).expect_err("overrun"), "overrun"),
            (ledger.write(|t| t.settle(&key, id, u64::MAX, 2)).expect_err("absurd"), "absurd"),
            (ledger.write(|t| t.reserve(&key, "m", 0, FAR, json!({}), 3)).expect_err("zero"), "zero"),
            (ledger.write(|t| t.reserve(&key, "m", AMOUNT_MAX + 1, FAR, json!({}), 3)).expect_err("huge"), "huge"),
            (ledger.write(|t| t.reserve(&key, "nope", 1, FAR, json!({}), 3)).expect_err("unknown"), "unknown"),
            (ledger.write(|t| t.void(&key, ReservationId(99), 3)).expect_err("no such"), "no such"),
            (ledger.write(|t| t.open_account(&key, "m", None, Some(5), 3)).expect_err("exists"), "exists"),
            (ledger.write(|t| t.open_account(&key, "r", None, None, 3)).expect_err("root"), "root"),
            (ledger.write(|t| t.open_account(&key, "", None, Some(5), 3)).expect_err("name"), "name"),
            (ledger.write(|t| t.open_account(&key, "c", Some("ghost"), None, 3)).expect_err("parent"), "parent"),
        ];
        for (err, what) in &cases {
            assert!(matches!(err, LedgerError::Budget(_)), "{what}: {err}");
        }
        assert_eq!(ledger.account("m").expect("acct"), acct(Some(100), 10, 0, None));
        // Budget postings cannot be forged through the generic append.
        let forged = ledger.write(|t| t.append(&key, "budget.settled", &json!({}), 4));
        assert!(matches!(forged, Err(LedgerError::BadEntry(_))));
        ledger.verify().expect("nothing changed");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn the_verifier_catches_a_projection_that_disagrees_with_the_journal() {
        let (ledger, path, key) = setup("drift", 100);
        ledger.write(|t| t.reserve(&key, "m", 10, FAR, json!({}), 1)).expect("reserve");
        ledger
            .write(|t| -> Result<(), LedgerError> {
                let mut table = t.redb().open_table(ACCOUNTS).map_err(storage)?;
                table.insert("m", (100, 0, 0, "")).map_err(storage)?;
                Ok(())
            })
            .expect("edit the projection behind the journal's back");
        let err = ledger.verify().expect_err("drift detected");
        assert!(matches!(&err, crate::VerifyError::Bad { failure: VerifyFailure::ProjectionDiffers(_), .. }), "{err}");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn a_posting_whose_entry_is_refused_changes_no_balance() {
        let (ledger, path, key) = setup("refused-entry", 100);
        let stranger = Keypair::generate(Role::Conductor);
        let reviewer = Keypair::generate(Role::Reviewer);
        ledger
            .write(|t| -> Result<(), LedgerError> {
                // Each fails at its journal entry; the caller carries on.
                assert!(t.reserve(&stranger, "m", 10, FAR, json!({}), 1).is_err());
                let huge = json!({"for": "x".repeat(5 << 20)});
                assert!(t.reserve(&key, "m", 20, FAR, huge, 1).is_err());
                assert!(t.extend(&reviewer, "m", 1_000, "", 1).is_err());
                assert!(t.open_account(&stranger, "m/x", Some("m"), None, 1).is_err());
                Ok(())
            })
            .expect("commit what succeeded: nothing");
        assert_eq!(ledger.account("m").expect("m"), acct(Some(100), 0, 0, None));
        assert!(ledger.pending_reservations().expect("pending").is_empty());
        assert!(ledger.account("m/x").is_err());
        ledger.verify().expect("tables and journal agree");
        std::fs::remove_file(path).expect("cleanup");
    }
}

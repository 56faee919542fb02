//! Two-phase budget postings (reserve, then settle or void), kept as a
//! projection of the journal: every posting appends an entry *and* updates
//! the balances in the same transaction.
//!
//! Invariant, for every account at every commit:
//! `settled + pending <= limit`. `reserve` is the only operation that
//! raises `pending`, and it refuses whenever the new total would exceed
//! the limit; `settle` moves at most the reserved amount from pending to
//! settled; `void` returns it all.

use identity::Keypair;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde_json::json;

use crate::error::{BudgetError, LedgerError, storage};
use crate::journal::Txn;

/// account -> (limit, pending, settled), in budget units.
const ACCOUNTS: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("budget_accounts");
/// reservation id -> (account, amount, state).
const RESERVATIONS: TableDefinition<u64, (&str, u64, u8)> =
    TableDefinition::new("budget_reservations");
/// `next` -> the next reservation id.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("budget_counters");

const PENDING: u8 = 0;
const SETTLED: u8 = 1;
const VOIDED: u8 = 2;

fn state_name(state: u8) -> &'static str {
    match state {
        PENDING => "pending",
        SETTLED => "settled",
        _ => "voided",
    }
}

/// A pending reservation's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

/// One budget account's balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub limit: u64,
    pub pending: u64,
    pub settled: u64,
}

impl Account {
    /// What a new reservation could still take.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.pending + self.settled)
    }
}

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    txn.open_table(ACCOUNTS).map_err(storage)?;
    txn.open_table(RESERVATIONS).map_err(storage)?;
    txn.open_table(COUNTERS).map_err(storage)?;
    Ok(())
}

impl Txn {
    /// Opens an account with a fixed limit. Journaled as `budget.opened`.
    pub fn open_account(
        &mut self,
        signer: &Keypair,
        account: &str,
        limit: u64,
        time_us: i64,
    ) -> Result<(), LedgerError> {
        if limit == 0 {
            return Err(BudgetError::ZeroAmount.into());
        }
        {
            let mut accounts = self.inner.open_table(ACCOUNTS).map_err(storage)?;
            if accounts.get(account).map_err(storage)?.is_some() {
                return Err(BudgetError::AccountExists(account.to_owned()).into());
            }
            accounts.insert(account, (limit, 0, 0)).map_err(storage)?;
        }
        self.append(signer, "budget.opened", &json!({"account": account, "limit": limit}), time_us)?;
        Ok(())
    }

    /// The balances of `account`, as of this transaction.
    pub fn account(&self, account: &str) -> Result<Account, LedgerError> {
        let accounts = self.inner.open_table(ACCOUNTS).map_err(storage)?;
        read_account(&accounts, account)
    }

    /// Reserves `amount` against `account` or refuses without changing
    /// anything. `memo` names what the reservation pays for (it is copied
    /// into the journal entry). Journaled as `budget.reserved`.
    pub fn reserve(
        &mut self,
        signer: &Keypair,
        account: &str,
        amount: u64,
        memo: serde_json::Value,
        time_us: i64,
    ) -> Result<ReservationId, LedgerError> {
        if amount == 0 {
            return Err(BudgetError::ZeroAmount.into());
        }
        let id = {
            let mut accounts = self.inner.open_table(ACCOUNTS).map_err(storage)?;
            let balance = read_account(&accounts, account)?;
            if amount > balance.available() {
                return Err(BudgetError::Insufficient {
                    account: account.to_owned(),
                    requested: amount,
                    available: balance.available(),
                    limit: balance.limit,
                    settled: balance.settled,
                    pending: balance.pending,
                }
                .into());
            }
            accounts
                .insert(account, (balance.limit, balance.pending + amount, balance.settled))
                .map_err(storage)?;
            let mut counters = self.inner.open_table(COUNTERS).map_err(storage)?;
            let id = counters.get("next").map_err(storage)?.map(|g| g.value()).unwrap_or(0);
            counters.insert("next", id + 1).map_err(storage)?;
            let mut reservations = self.inner.open_table(RESERVATIONS).map_err(storage)?;
            reservations.insert(id, (account, amount, PENDING)).map_err(storage)?;
            id
        };
        self.append(
            signer,
            "budget.reserved",
            &json!({"reservation": id, "account": account, "amount": amount, "for": memo}),
            time_us,
        )?;
        Ok(ReservationId(id))
    }

    /// Posts the real cost `actual` (at most the reserved amount) and
    /// returns the rest to the account. Journaled as `budget.settled`.
    pub fn settle(
        &mut self,
        signer: &Keypair,
        id: ReservationId,
        actual: u64,
        time_us: i64,
    ) -> Result<Account, LedgerError> {
        let (account, reserved) = self.close(id, SETTLED, |reserved| {
            if actual > reserved {
                Err(BudgetError::Overrun { id: id.0, actual, reserved })
            } else {
                Ok(actual)
            }
        })?;
        self.append(
            signer,
            "budget.settled",
            &json!({"reservation": id.0, "account": account, "amount": actual,
                    "released": reserved - actual}),
            time_us,
        )?;
        self.account(&account)
    }

    /// Returns the whole reservation to the account (the call did not run
    /// or failed). Journaled as `budget.voided`.
    pub fn void(&mut self, signer: &Keypair, id: ReservationId, time_us: i64) -> Result<(), LedgerError> {
        let (account, reserved) = self.close(id, VOIDED, |_| Ok(0))?;
        self.append(
            signer,
            "budget.voided",
            &json!({"reservation": id.0, "account": account, "released": reserved}),
            time_us,
        )?;
        Ok(())
    }

    /// Closes a pending reservation, moving `posted(reserved)` to settled
    /// and releasing the rest. Returns (account, reserved amount).
    fn close(
        &mut self,
        id: ReservationId,
        new_state: u8,
        posted: impl FnOnce(u64) -> Result<u64, BudgetError>,
    ) -> Result<(String, u64), LedgerError> {
        let mut reservations = self.inner.open_table(RESERVATIONS).map_err(storage)?;
        let (account, reserved, state) = {
            let guard = reservations
                .get(id.0)
                .map_err(storage)?
                .ok_or(BudgetError::UnknownReservation(id.0))?;
            let (account, reserved, state) = guard.value();
            (account.to_owned(), reserved, state)
        };
        if state != PENDING {
            return Err(BudgetError::AlreadyClosed { id: id.0, state: state_name(state) }.into());
        }
        let posted = posted(reserved)?;
        let mut accounts = self.inner.open_table(ACCOUNTS).map_err(storage)?;
        let balance = read_account(&accounts, &account)?;
        accounts
            .insert(
                account.as_str(),
                (balance.limit, balance.pending - reserved, balance.settled + posted),
            )
            .map_err(storage)?;
        reservations.insert(id.0, (account.as_str(), reserved, new_state)).map_err(storage)?;
        Ok((account, reserved))
    }
}

impl crate::Ledger {
    /// The balances of `account` in a fresh snapshot.
    pub fn account(&self, account: &str) -> Result<Account, LedgerError> {
        let read = self.read()?;
        let accounts = read.open_table(ACCOUNTS).map_err(storage)?;
        read_account(&accounts, account)
    }

    /// Every account and its balances, in name order.
    pub fn accounts(&self) -> Result<Vec<(String, Account)>, LedgerError> {
        let read = self.read()?;
        let accounts = read.open_table(ACCOUNTS).map_err(storage)?;
        let mut out = Vec::new();
        for row in accounts.iter().map_err(storage)? {
            let (name, balances) = row.map_err(storage)?;
            let (limit, pending, settled) = balances.value();
            out.push((name.value().to_owned(), Account { limit, pending, settled }));
        }
        Ok(out)
    }
}

fn read_account(
    table: &impl ReadableTable<&'static str, (u64, u64, u64)>,
    account: &str,
) -> Result<Account, LedgerError> {
    let (limit, pending, settled) = table
        .get(account)
        .map_err(storage)?
        .ok_or_else(|| BudgetError::UnknownAccount(account.to_owned()))?
        .value();
    Ok(Account { limit, pending, settled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::Role;

    fn setup(name: &str, limit: u64) -> (crate::Ledger, std::path::PathBuf, Keypair) {
        let path = std::env::temp_dir().join(format!("budget-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = crate::Ledger::open(&path).expect("open");
        let key = Keypair::generate(Role::Conductor);
        ledger.write(|t| t.genesis(&key, json!({}), 0)).expect("genesis");
        ledger.write(|t| t.open_account(&key, "m", limit, 0)).expect("open account");
        (ledger, path, key)
    }

    #[test]
    fn reserve_settle_releases_the_remainder() {
        let (ledger, path, key) = setup("settle", 100);
        let id = ledger.write(|t| t.reserve(&key, "m", 60, json!({}), 1)).expect("reserve");
        assert_eq!(ledger.account("m").expect("acct"), Account { limit: 100, pending: 60, settled: 0 });
        ledger.write(|t| t.settle(&key, id, 25, 2)).expect("settle");
        assert_eq!(ledger.account("m").expect("acct"), Account { limit: 100, pending: 0, settled: 25 });
        let all = ledger.accounts().expect("accounts");
        assert_eq!(all, vec![("m".to_owned(), Account { limit: 100, pending: 0, settled: 25 })]);
        let err = ledger.write(|t| t.settle(&key, id, 1, 3)).expect_err("second settle refused");
        assert!(matches!(err, LedgerError::Budget(BudgetError::AlreadyClosed { .. })));
        ledger.verify().expect("journal intact");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn over_limit_reservation_is_refused_and_changes_nothing() {
        let (ledger, path, key) = setup("refuse", 100);
        let a = ledger.write(|t| t.reserve(&key, "m", 70, json!({}), 1)).expect("reserve");
        let err = ledger.write(|t| t.reserve(&key, "m", 31, json!({}), 2)).expect_err("refused");
        assert!(matches!(err, LedgerError::Budget(BudgetError::Insufficient { available: 30, .. })));
        assert_eq!(ledger.account("m").expect("acct").pending, 70);
        ledger.write(|t| t.void(&key, a, 3)).expect("void");
        assert_eq!(ledger.account("m").expect("acct").available(), 100);
        let err = ledger.write(|t| t.settle(&key, a, 1, 4)).expect_err("settle after void");
        assert!(matches!(err, LedgerError::Budget(BudgetError::AlreadyClosed { state: "voided", .. })));
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn overrun_zero_and_unknown_are_typed_errors() {
        let (ledger, path, key) = setup("typed", 100);
        let id = ledger.write(|t| t.reserve(&key, "m", 10, json!({}), 1)).expect("reserve");
        let overrun = ledger.write(|t| t.settle(&key, id, 11, 2)).expect_err("overrun");
        assert!(matches!(overrun, LedgerError::Budget(BudgetError::Overrun { .. })));
        assert!(ledger.write(|t| t.reserve(&key, "m", 0, json!({}), 3)).is_err());
        assert!(ledger.write(|t| t.reserve(&key, "nope", 1, json!({}), 3)).is_err());
        assert!(ledger.write(|t| t.void(&key, ReservationId(99), 3)).is_err());
        assert_eq!(ledger.account("m").expect("acct"), Account { limit: 100, pending: 10, settled: 0 });
        std::fs::remove_file(path).expect("cleanup");
    }
}

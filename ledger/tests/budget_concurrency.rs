//! Many threads reserving against one budget at once, through the
//! [`GroupCommitter`] and through plain [`Ledger::write`] side by side:
//! the budget is never overspent, exactly as many reservations are
//! acknowledged as the limit allows, racing closes close each reservation
//! once, and the journal replays to the same balances.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};

use identity::{Keypair, Role};
use ledger::{Account, BudgetError, GROUP_BATCH_DEFAULT, GroupCommitter, Ledger, LedgerError, ReservationId};
use serde_json::json;

const LIMIT: u64 = 10_000;
const AMOUNT: u64 = 37;
const RESERVERS: usize = 1_000;
const FAR: i64 = i64::MAX / 2;

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    key: Arc<Keypair>,
}

fn fixture(accounts: &[(&str, Option<&str>, Option<u64>)]) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&dir.path().join("concurrency.redb")).expect("open");
    let key = Keypair::generate(Role::Conductor);
    ledger.write(|t| t.genesis(&key, json!({}), 0)).expect("genesis");
    for (name, parent, limit) in accounts {
        ledger.write(|t| t.open_account(&key, name, *parent, *limit, 0)).expect("open account");
    }
    Fixture { _dir: dir, ledger: Arc::new(ledger), key: Arc::new(key) }
}

/// Reserves through the committer (even `who`) or its own transaction (odd).
fn reserve(f: &Fixture, group: &GroupCommitter, who: usize, account: &str) -> Result<ReservationId, LedgerError> {
    let memo = json!({"call": who});
    if who.is_multiple_of(2) {
        let (key, account) = (f.key.clone(), account.to_owned());
        group.submit(move |t| t.reserve(&key, &account, AMOUNT, FAR, memo, 1))
    } else {
        f.ledger.write(|t| t.reserve(&f.key, account, AMOUNT, FAR, memo, 1))
    }
}

/// How a reservation was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Settle(u64),
    Void,
}

/// Closes `id`, through the committer when `grouped`.
fn close(f: &Fixture, group: &GroupCommitter, id: ReservationId, how: Close, grouped: bool) -> Result<(), LedgerError> {
    let key = f.key.clone();
    let run = move |t: &mut ledger::Txn| match how {
        Close::Settle(actual) => t.settle(&key, id, actual, 2).map(|_| ()),
        Close::Void => t.void(&key, id, 2),
    };
    if grouped { group.submit(run) } else { f.ledger.write(run) }
}

fn assert_insufficient(result: &Result<ReservationId, LedgerError>) {
    assert!(
        matches!(result, Ok(_) | Err(LedgerError::Budget(BudgetError::Insufficient { requested: AMOUNT, .. }))),
        "a refusal must be Insufficient: {result:?}"
    );
}

fn assert_within_limits(ledger: &Ledger) {
    for (name, a) in ledger.accounts().expect("accounts") {
        if let Some(limit) = a.limit {
            assert!(a.pending + a.settled <= limit, "`{name}` overspent: {a:?}");
        }
    }
}

/// For every acknowledged reservation, a settle and a void race (one
/// through the committer, the other in its own transaction). Returns the
/// winning close of each, checking the loser saw the winner's state.
fn race_closes(f: &Fixture, group: &GroupCommitter, ids: &[ReservationId]) -> BTreeMap<ReservationId, Close> {
    let barrier = Barrier::new(ids.len() * 2);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, &id) in ids.iter().enumerate() {
            // Actual costs up to and including the whole reservation.
            let settle = Close::Settle(id.0 % (AMOUNT + 1));
            for (how, grouped) in [(settle, i % 2 == 0), (Close::Void, i % 2 == 1)] {
                let (barrier, outcomes) = (&barrier, &outcomes);
                s.spawn(move || {
                    barrier.wait();
                    let result = close(f, group, id, how, grouped);
                    outcomes.lock().expect("lock").push((id, how, result));
                });
            }
        }
    });
    let mut winners = BTreeMap::new();
    let mut losers = BTreeMap::new();
    for (id, how, result) in outcomes.into_inner().expect("lock") {
        match result {
            Ok(()) => assert!(winners.insert(id, how).is_none(), "reservation {id:?} closed twice"),
            Err(LedgerError::Budget(BudgetError::AlreadyClosed { id: closed, state })) => {
                assert_eq!(closed, id.0);
                losers.insert(id, state);
            }
            Err(other) => panic!("closing {id:?} failed unexpectedly: {other}"),
        }
    }
    assert_eq!(winners.len(), ids.len(), "every reservation closed exactly once");
    assert_eq!(losers.len(), ids.len(), "and its rival was refused");
    for (id, state) in losers {
        let expected = match winners[&id] {
            Close::Settle(_) => "settled",
            Close::Void => "voided",
        };
        assert_eq!(state, expected, "the loser on {id:?} saw the winner's close");
    }
    winners
}

fn settled_total(winners: &BTreeMap<ReservationId, Close>) -> u64 {
    winners
        .values()
        .map(|c| match c {
            Close::Settle(actual) => *actual,
            Close::Void => 0,
        })
        .sum()
}

#[test]
fn a_thousand_threads_compete_for_one_account() {
    let f = fixture(&[("m", None, Some(LIMIT))]);
    let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
    let barrier = Barrier::new(RESERVERS);
    let results: Vec<Result<ReservationId, LedgerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..RESERVERS)
            .map(|who| {
                let (f, group, barrier) = (&f, &group, &barrier);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        barrier.wait();
                        reserve(f, group, who, "m")
                    })
                    .expect("spawn")
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reserver")).collect()
    });
    results.iter().for_each(assert_insufficient);
    let acked: Vec<ReservationId> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let grouped_acks = results.iter().step_by(2).filter(|r| r.is_ok()).count();
    eprintln!(
        "{} of {RESERVERS} acknowledged ({grouped_acks} through the committer); {:?}",
        acked.len(),
        group.stats()
    );
    assert!(acked.len() as u64 * AMOUNT <= LIMIT, "acknowledged more than the limit");
    assert_eq!(acked.len() as u64, LIMIT / AMOUNT, "every reservation that fits was granted");
    let mut distinct = acked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), acked.len(), "reservation ids are unique");
    assert_eq!(
        f.ledger.account("m").expect("m"),
        Account { limit: Some(LIMIT), pending: acked.len() as u64 * AMOUNT, settled: 0, parent: None }
    );
    let pending = f.ledger.pending_reservations().expect("pending");
    assert_eq!(pending.len(), acked.len());
    assert!(pending.iter().all(|(id, account, amount, _)| acked.contains(id) && account == "m" && *amount == AMOUNT));
    assert_within_limits(&f.ledger);

    let winners = race_closes(&f, &group, &acked);
    let settled = settled_total(&winners);
    assert_eq!(
        f.ledger.account("m").expect("m"),
        Account { limit: Some(LIMIT), pending: 0, settled, parent: None },
        "the balance is exactly the acknowledged settlements"
    );
    assert!(f.ledger.pending_reservations().expect("pending").is_empty());

    // What was voided or settled below the reservation is available again,
    // to the unit: a second stampede gets exactly what is left.
    let left = LIMIT - settled;
    let again: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|who| {
                let (f, group) = (&f, &group);
                s.spawn(move || reserve(f, group, who, "m"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reserver")).collect()
    });
    again.iter().for_each(assert_insufficient);
    let granted = again.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(granted, (left / AMOUNT).min(200));
    assert_within_limits(&f.ledger);
    let report = f.ledger.verify().expect("journal intact and every posting replays to the tables");
    assert_eq!(report.budget, f.ledger.accounts().expect("accounts"));
}

#[test]
fn a_pool_of_threads_competes_across_an_account_tree() {
    // t (10,000) ── t/a (4,000)
    //            ├─ t/b (no own limit)
    //            └─ t/c (3,000) ── t/c/x (no own limit)
    let f = fixture(&[
        ("t", None, Some(LIMIT)),
        ("t/a", Some("t"), Some(4_000)),
        ("t/b", Some("t"), None),
        ("t/c", Some("t"), Some(3_000)),
        ("t/c/x", Some("t/c"), None),
    ]);
    let group = GroupCommitter::new(f.ledger.clone(), 64);
    const WORKERS: usize = 20;
    const EACH: usize = RESERVERS / WORKERS;
    // Attempt k goes to t/b (40%), t/a (30%) or t/c/x (30%).
    let target = |k: usize| match k % 10 {
        0..=3 => "t/b",
        4..=6 => "t/a",
        _ => "t/c/x",
    };
    let barrier = Barrier::new(WORKERS);
    let results: Vec<(&str, Result<ReservationId, LedgerError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (f, group, barrier) = (&f, &group, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..EACH)
                        .map(|i| {
                            let k = w * EACH + i;
                            (target(k), reserve(f, group, k, target(k)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    results.iter().for_each(|(_, r)| assert_insufficient(r));
    let count = |leaf: &str| results.iter().filter(|(t, r)| *t == leaf && r.is_ok()).count() as u64;
    let (a, b, x) = (count("t/a"), count("t/b"), count("t/c/x"));
    eprintln!("granted: t/a {a}, t/b {b}, t/c/x {x}; {:?}", group.stats());
    // t/b alone asks for 400 × 37 > 10,000, so the root ends full: if 37
    // were left, no t/b reservation would have been refused.
    assert_eq!(a + b + x, LIMIT / AMOUNT);
    assert!(a <= 4_000 / AMOUNT && x <= 3_000 / AMOUNT, "child caps hold: a {a}, x {x}");
    let expect = |limit, n: u64, parent: Option<&str>| Account {
        limit,
        pending: n * AMOUNT,
        settled: 0,
        parent: parent.map(str::to_owned),
    };
    let accounts: BTreeMap<String, Account> = f.ledger.accounts().expect("accounts").into_iter().collect();
    assert_eq!(accounts["t"], expect(Some(LIMIT), a + b + x, None));
    assert_eq!(accounts["t/a"], expect(Some(4_000), a, Some("t")));
    assert_eq!(accounts["t/b"], expect(None, b, Some("t")));
    assert_eq!(accounts["t/c"], expect(Some(3_000), x, Some("t")));
    assert_eq!(accounts["t/c/x"], expect(None, x, Some("t/c")));
    assert_within_limits(&f.ledger);

    // Close them all from the pool: settle (any actual up to the
    // reservation) or void, alternating paths.
    let acked: Vec<(&str, ReservationId)> =
        results.iter().filter_map(|(t, r)| r.as_ref().ok().map(|id| (*t, *id))).collect();
    let closes: Vec<(&str, Close)> = std::thread::scope(|s| {
        let handles: Vec<_> = acked
            .chunks(acked.len().div_ceil(WORKERS))
            .map(|chunk| {
                let (f, group) = (&f, &group);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(leaf, id)| {
                            let how =
                                if id.0 % 7 == 0 { Close::Void } else { Close::Settle((id.0 * 13) % (AMOUNT + 1)) };
                            close(f, group, id, how, id.0 % 2 == 0).expect("close");
                            (leaf, how)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("closer")).collect()
    });
    let settled_on = |leaf: &str| -> u64 {
        closes
            .iter()
            .filter(|(t, _)| *t == leaf)
            .map(|(_, c)| match c {
                Close::Settle(n) => *n,
                Close::Void => 0,
            })
            .sum()
    };
    let (sa, sb, sx) = (settled_on("t/a"), settled_on("t/b"), settled_on("t/c/x"));
    let accounts: BTreeMap<String, Account> = f.ledger.accounts().expect("accounts").into_iter().collect();
    for (name, settled) in [("t", sa + sb + sx), ("t/a", sa), ("t/b", sb), ("t/c", sx), ("t/c/x", sx)] {
        assert_eq!((accounts[name].pending, accounts[name].settled), (0, settled), "`{name}`");
    }
    assert!(f.ledger.pending_reservations().expect("pending").is_empty());
    f.ledger.verify().expect("journal intact and every posting replays to the tables");
}

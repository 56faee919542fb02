//! Crash safety of acknowledged postings: a child process (this test
//! binary, re-executed) reserves and settles in a burst, through the
//! [`GroupCommitter`] from several threads and in single transactions,
//! printing one line per acknowledged posting; the parent SIGKILLs it after
//! a varying number of acknowledgements, several rounds on the same
//! database, and after each round checks that everything acknowledged is
//! in the reopened ledger, the balances keep their limits and the journal
//! verifies. At the end, expiry past every deadline returns every unsettled
//! unit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use identity::{Keypair, Role};
use ledger::{BudgetError, GroupCommitter, Ledger, LedgerError, ReservationId};
use serde_json::json;

/// Set (to the database path) only in the child.
const CHILD_DB: &str = "LEDGER_BUDGET_CRASH_DB";
/// The round number, in the child.
const CHILD_ROUND: &str = "LEDGER_BUDGET_CRASH_ROUND";
/// The test that acts as the child.
const CHILD_TEST: &str = "crash_child_writer";
const ROUNDS: u64 = 4;
const WORKERS: u64 = 4;
const ROOT_LIMIT: u64 = 5_000_000;
const WORKER_LIMIT: u64 = 1_000_000;
const TIGHT_LIMIT: u64 = 3_000;
/// The child gives up on its own after this long, so a parent that died
/// never leaves it running.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The same conductor key in every round.
fn conductor() -> Keypair {
    Keypair::from_secret_bytes(Role::Conductor, &[7; 32])
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// A small xorshift generator: no dependency, different per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ------------------------------------------------------------ the child

/// Prints acknowledgement lines, whole and flushed, one writer at a time
/// (the stdout lock is held for the line and its flush).
#[derive(Clone, Copy)]
struct Acks;

impl Acks {
    fn say(self, line: std::fmt::Arguments<'_>) {
        let mut out = std::io::stdout().lock();
        out.write_fmt(format_args!("ack {line}\n")).expect("stdout");
        out.flush().expect("flush stdout");
    }
}

/// Refusals a burst runs into and shrugs off (nothing was acknowledged):
/// the budget is used up for now, or the clock passed a short deadline
/// while the posting waited for its transaction.
fn shrug(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::Budget(
            BudgetError::Insufficient { .. }
                | BudgetError::DeadlineInPast { .. }
                | BudgetError::AlreadyClosed { state: "expired", .. }
        )
    )
}

/// Runs only when re-executed by [`acknowledged_postings_survive_sigkill`].
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let round: u64 = std::env::var(CHILD_ROUND).expect("round").parse().expect("round number");
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        eprintln!("child: lived {CHILD_LIFETIME:?} without being killed");
        std::process::exit(3);
    });
    child(Path::new(&path), round);
}

fn child(path: &Path, round: u64) -> ! {
    let key = Arc::new(conductor());
    let ledger = Arc::new(Ledger::open(path).expect("child: open"));
    let root = format!("r{round}");
    ledger
        .write(|t| -> Result<(), LedgerError> {
            if round == 0 {
                t.genesis(&key, json!({"test": "budget_crash"}), now_us())?;
            }
            t.open_account(&key, &root, None, Some(ROOT_LIMIT), now_us())?;
            t.open_account(&key, &format!("{root}/tight"), Some(&root), Some(TIGHT_LIMIT), now_us())?;
            for w in 0..WORKERS {
                t.open_account(&key, &format!("{root}/w{w}"), Some(&root), Some(WORKER_LIMIT), now_us())?;
            }
            Ok(())
        })
        .expect("child: set up the round's accounts");
    let acks = Acks;
    let group = Arc::new(GroupCommitter::new(ledger.clone(), 64));
    let seed = now_us() as u64 ^ (round << 32);
    for w in 0..WORKERS {
        let (group, key) = (group.clone(), key.clone());
        let account = format!("{root}/w{w}");
        std::thread::spawn(move || grouped_worker(&group, &key, &account, acks, Rng::new(seed ^ ((w + 1) * 0x9E37))));
    }
    single_writer(&ledger, &key, &format!("{root}/tight"), acks, Rng::new(seed ^ 0xABCD))
}

/// Reserve, then mostly settle (any actual up to the reservation),
/// sometimes void, sometimes leave pending for expiry; all through the
/// committer.
fn grouped_worker(group: &GroupCommitter, key: &Arc<Keypair>, account: &str, acks: Acks, mut rng: Rng) {
    loop {
        let amount = rng.range(1, 999);
        let deadline = now_us() + rng.range(2_000, 400_000) as i64;
        let (k, a) = (key.clone(), account.to_owned());
        let id = match group.submit(move |t| t.reserve(&k, &a, amount, deadline, json!({"call": "crash"}), now_us())) {
            Ok(id) => id,
            Err(e) if shrug(&e) => continue,
            Err(e) => panic!("child: reserve failed: {e}"),
        };
        acks.say(format_args!("reserve {} {account} {amount} {deadline}", id.0));
        close(acks, &mut rng, id, amount, |op| match op {
            Close::Settle(actual) => {
                let k = key.clone();
                group.submit(move |t| t.settle(&k, id, actual, now_us()).map(|_| ()))
            }
            Close::Void => {
                let k = key.clone();
                group.submit(move |t| t.void(&k, id, now_us()))
            }
        });
    }
}

/// The same in single transactions, and now and then a reservation and
/// its settlement together in one transaction.
fn single_writer(ledger: &Ledger, key: &Keypair, account: &str, acks: Acks, mut rng: Rng) -> ! {
    loop {
        let amount = rng.range(1, 500);
        let deadline = now_us() + rng.range(2_000, 400_000) as i64;
        if rng.next().is_multiple_of(8) {
            let actual = rng.range(0, 10).min(amount);
            let both = ledger.write(|t| -> Result<ReservationId, LedgerError> {
                let id = t.reserve(key, account, amount, deadline, json!({"call": "pair"}), now_us())?;
                t.settle(key, id, actual, now_us())?;
                Ok(id)
            });
            match both {
                Ok(id) => {
                    acks.say(format_args!("reserve {} {account} {amount} {deadline}", id.0));
                    acks.say(format_args!("settle {} {actual}", id.0));
                }
                Err(e) if shrug(&e) => {}
                Err(e) => panic!("child: reserve and settle failed: {e}"),
            }
            continue;
        }
        let id = match ledger.write(|t| t.reserve(key, account, amount, deadline, json!({"call": "single"}), now_us()))
        {
            Ok(id) => id,
            Err(e) if shrug(&e) => continue,
            Err(e) => panic!("child: reserve failed: {e}"),
        };
        acks.say(format_args!("reserve {} {account} {amount} {deadline}", id.0));
        // Mostly voids, so the tight account keeps refilling.
        close(acks, &mut rng, id, amount.min(10), |op| match op {
            Close::Settle(actual) => ledger.write(|t| t.settle(key, id, actual, now_us()).map(|_| ())),
            Close::Void => ledger.write(|t| t.void(key, id, now_us())),
        });
    }
}

#[derive(Clone, Copy)]
enum Close {
    Settle(u64),
    Void,
}

/// Settles (3 in 5), voids (1 in 5) or leaves `id` to expire (1 in 5),
/// acknowledging what committed; a reservation already past its deadline
/// is refused as expired, which is no acknowledgement.
fn close(
    acks: Acks,
    rng: &mut Rng,
    id: ReservationId,
    max_actual: u64,
    run: impl FnOnce(Close) -> Result<(), LedgerError>,
) {
    let op = match rng.next() % 5 {
        0..=2 => Close::Settle(rng.range(0, max_actual)),
        3 => Close::Void,
        _ => return,
    };
    match run(op) {
        Ok(()) => match op {
            Close::Settle(actual) => acks.say(format_args!("settle {} {actual}", id.0)),
            Close::Void => acks.say(format_args!("void {}", id.0)),
        },
        Err(e) if shrug(&e) => {}
        Err(e) => panic!("child: closing {id:?} failed: {e}"),
    }
}

// ----------------------------------------------------------- the parent

/// Everything the children acknowledged.
#[derive(Debug, Default)]
struct Acked {
    /// id -> (account, amount, deadline)
    reserved: BTreeMap<u64, (String, u64, i64)>,
    settled: BTreeMap<u64, u64>,
    voided: BTreeSet<u64>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { words[i].parse().unwrap_or_else(|_| panic!("bad ack line {line:?}")) };
        match words.as_slice() {
            ["ack", "reserve", _, account, _, deadline] => {
                let deadline: i64 = deadline.parse().expect("deadline");
                let fresh = self.reserved.insert(num(2), ((*account).to_owned(), num(4), deadline)).is_none();
                assert!(fresh, "reservation id {} acknowledged twice", num(2));
            }
            ["ack", "settle", _, _] => assert!(self.settled.insert(num(2), num(3)).is_none(), "settled twice: {line}"),
            ["ack", "void", _] => assert!(self.voided.insert(num(2)), "voided twice: {line}"),
            _ => panic!("bad ack line {line:?}"),
        }
    }
    fn len(&self) -> usize {
        self.reserved.len() + self.settled.len() + self.voided.len()
    }
}

/// What the journal says about every reservation.
#[derive(Debug, Default)]
struct Journal {
    reserved: BTreeMap<u64, (String, u64, i64)>,
    /// id -> ("settled" | "voided" | "expired", amount posted)
    closed: BTreeMap<u64, (String, u64)>,
}

fn read_journal(ledger: &Ledger) -> Journal {
    let mut journal = Journal::default();
    let mut from = 0;
    loop {
        let page = ledger.entries(from, 10_000).expect("entries");
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for entry in page {
            let p = entry.payload_json();
            let id = || p["reservation"].as_u64().expect("reservation id");
            let amount = |field: &str| p[field].as_u64().expect("amount");
            match entry.kind.as_str() {
                "budget.reserved" => {
                    let account = p["account"].as_str().expect("account").to_owned();
                    let deadline = p["deadline_us"].as_i64().expect("deadline");
                    journal.reserved.insert(id(), (account, amount("amount"), deadline));
                }
                "budget.settled" => drop(journal.closed.insert(id(), ("settled".into(), amount("amount")))),
                "budget.voided" => drop(journal.closed.insert(id(), ("voided".into(), 0))),
                "budget.expired" => drop(journal.closed.insert(id(), ("expired".into(), 0))),
                _ => {}
            }
        }
    }
    journal
}

/// Reopens the database and checks everything acknowledged is there.
fn check(path: &Path, acked: &Acked) -> Journal {
    let ledger = Ledger::open(path).expect("reopen after SIGKILL");
    let report = ledger.verify().expect("journal intact and balances replay after SIGKILL");
    assert_eq!(report.budget, ledger.accounts().expect("accounts"));
    let journal = read_journal(&ledger);
    for (id, reservation) in &acked.reserved {
        assert_eq!(journal.reserved.get(id), Some(reservation), "acknowledged reservation {id} lost or changed");
    }
    for (id, actual) in &acked.settled {
        assert_eq!(journal.closed.get(id), Some(&("settled".to_owned(), *actual)), "acknowledged settlement {id}");
    }
    for id in &acked.voided {
        assert_eq!(journal.closed.get(id).map(|c| c.0.as_str()), Some("voided"), "acknowledged void {id}");
    }
    let pending: BTreeMap<u64, (String, u64, i64)> = ledger
        .pending_reservations()
        .expect("pending")
        .into_iter()
        .map(|(id, account, amount, deadline)| (id.0, (account, amount, deadline)))
        .collect();
    for (id, reservation) in &journal.reserved {
        match journal.closed.get(id) {
            None => assert_eq!(pending.get(id), Some(reservation), "open reservation {id} is pending"),
            Some(_) => assert!(!pending.contains_key(id), "closed reservation {id} is not pending"),
        }
    }
    assert_eq!(pending.len(), journal.reserved.len() - journal.closed.len());
    for (name, a) in ledger.accounts().expect("accounts") {
        if let Some(limit) = a.limit {
            assert!(a.pending + a.settled <= limit, "`{name}` over its limit after SIGKILL: {a:?}");
        }
    }
    journal
}

#[test]
fn acknowledged_postings_survive_sigkill() {
    if std::env::var_os(CHILD_DB).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("test binary");
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.subsec_nanos() as u64);
    let mut rng = Rng::new(seed);
    eprintln!("seed {seed}");
    let mut acked = Acked::default();
    for round in 0..ROUNDS {
        // Kill after anywhere from one acknowledgement to a long burst.
        let kill_after = match round {
            0 => rng.range(1, 40),
            _ => rng.range(50, 1_500),
        } as usize;
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &path)
            .env(CHILD_ROUND, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut stderr = child.stderr.take().expect("stderr");
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let started = Instant::now();
        let (mut seen, mut killed_at) = (0usize, None);
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).expect("read child") == 0 {
                break;
            }
            // A line cut short by the kill was never a whole acknowledgement.
            if !line.ends_with('\n') || !line.starts_with("ack ") {
                continue;
            }
            acked.record(line.trim_end());
            seen += 1;
            if seen == kill_after {
                child.kill().expect("SIGKILL the child");
                killed_at = Some(started.elapsed());
            }
        }
        let status = child.wait().expect("wait for child");
        let errors = errors.join().expect("stderr reader");
        let Some(killed_at) = killed_at else {
            panic!(
                "round {round}: child ended ({status}) after {seen} acknowledgements, before {kill_after}:\n{errors}"
            );
        };
        assert!(status.code().is_none(), "round {round}: the child was killed by the signal, not exited: {status}");
        let journal = check(&path, &acked);
        eprintln!(
            "round {round}: SIGKILL after {kill_after} acks ({killed_at:?}); {seen} acked in all this round; \
             journal: {} reservations, {} closed; {} acked so far",
            journal.reserved.len(),
            journal.closed.len(),
            acked.len()
        );
    }

    // Past every deadline, expiry returns every unsettled unit.
    let ledger = Ledger::open(&path).expect("reopen");
    let key = conductor();
    // Reservations committed but killed before their acknowledgement count
    // too: take the latest deadline the journal holds.
    let later = read_journal(&ledger).reserved.values().map(|r| r.2).max().unwrap_or(0) + 1;
    while !ledger.write(|t| t.expire_due(&key, later)).expect("expire").is_empty() {}
    assert!(ledger.pending_reservations().expect("pending").is_empty());
    let journal = read_journal(&ledger);
    assert!(journal.closed.len() == journal.reserved.len(), "every reservation closed");
    for (name, a) in ledger.accounts().expect("accounts") {
        assert_eq!(a.pending, 0, "`{name}` still holds funds after expiry: {a:?}");
        if let Some(limit) = a.limit {
            assert!(a.settled <= limit, "`{name}`: {a:?}");
        }
    }
    // Each root's settled total is what the journal posted under it.
    for round in 0..ROUNDS {
        let root = format!("r{round}");
        let posted: u64 = journal
            .closed
            .iter()
            .filter(|(id, _)| journal.reserved[*id].0.starts_with(&format!("{root}/")))
            .map(|(_, (_, amount))| amount)
            .sum();
        assert_eq!(ledger.account(&root).expect("root").settled, posted, "`{root}` settled");
    }
    ledger.verify().expect("journal intact and balances replay after expiry");
}

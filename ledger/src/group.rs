//! Group commit: many callers, one durable commit.
//!
//! Every [`Ledger::write`] ends in an fsync, and every posting is a signed
//! entry; one commit per posting caps a busy conductor at a few hundred
//! postings a second. A [`GroupCommitter`] owns one background thread that
//! drains whatever operations callers have queued (up to `max_batch`),
//! runs them one after another in a single write transaction, commits it
//! once (the entries are signed together, on every core, in that commit)
//! and only then has each caller answered with its own result (by a
//! second thread, while it starts the next transaction).
//!
//! An operation's result is its own:
//!
//! - `Ok` is returned only after the transaction holding the operation
//!   has committed durably;
//! - a refused budget operation (`Err(LedgerError::Budget(_))`, except
//!   [`BudgetError::Inconsistent`]) is returned to its caller alone, and
//!   the rest of the batch commits. The budget methods check everything
//!   before they change a balance, so such a refusal leaves nothing behind
//!   (a `reserve` may have expired overdue reservations first: those are
//!   complete, valid postings and are kept);
//! - any other error (an unauthorized signer, an oversized entry, a
//!   storage error) or a panic can come *after* an operation changed the
//!   tables, so the whole transaction is rolled back: that caller gets its
//!   own error (or its panic), the callers whose operations had already
//!   run in it get a retryable [`LedgerError::Io`] of kind
//!   [`std::io::ErrorKind::Interrupted`] and nothing of theirs is written,
//!   and operations not yet run go into the next transaction;
//! - if the commit itself fails, every caller in the batch gets the error
//!   and nothing is acknowledged.
//!
//! An operation may come in two parts
//! ([`GroupCommitter::submit_posting_first`]): its budget postings, which
//! run with the whole group's before any operation's main part, and the
//! rest. On a ledger that batches postings the group's reservations and
//! settlements then share one signed `budget.batch` entry, where
//! interleaved with other entries each would be its own. If such an
//! operation's postings ran in a transaction that is rolled back, its
//! caller gets the retryable error even if its main part never ran.
//!
//! Each committed transaction's latency, from its start to its durable
//! commit (running the batch's operations, sealing, fsync), is recorded
//! through the `metrics` facade as [`GroupCommitter::COMMIT_SECONDS_METRIC`],
//! a no-op unless the process installed a recorder (`conductor serve`
//! does). It is the journal's write latency as the metered calls feel it.

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use std::thread::JoinHandle;
use tokio::sync::oneshot;

use crate::error::{BudgetError, LedgerError};
use crate::journal::{Ledger, Txn};

/// Operations per transaction unless the caller says otherwise: enough to
/// amortise the fsync and the per-commit work over thousands of callers
/// (`bench_budget` peaks here on 2 cores), few enough that one commit
/// stays in the tens of milliseconds.
pub const GROUP_BATCH_DEFAULT: usize = 4096;

/// What a [`GroupCommitter`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Transactions committed.
    pub commits: u64,
    /// Operations run in those transactions (including refused ones).
    pub ops: u64,
    /// The most operations in one committed transaction.
    pub largest: u64,
    /// Transactions rolled back (an operation failed part way) or whose
    /// commit failed.
    pub failed: u64,
}

/// Runs callers' operations in shared, durably committed write
/// transactions on one background thread; see the module docs.
///
/// **Requirement on operations:** an operation that returns
/// `Err(LedgerError::Budget(_))` must not have changed the transaction,
/// because the rest of its batch commits. The ledger's own budget methods
/// ([`Txn::reserve`], [`Txn::settle`], [`Txn::void`], [`Txn::expire_due`],
/// [`Txn::extend`], [`Txn::open_account`]) meet this when called once per
/// operation. An operation that makes several postings and then fails with
/// a budget error (`t.reserve(a)?; t.reserve(b)?`) would keep the first
/// posting while its caller sees an error; give such work to
/// [`Ledger::write`] instead. Any other error rolls the batch back (see
/// the module docs), so it is always safe.
///
/// Operations run on the committer thread, one after another, inside the
/// open write transaction: keep them short (one or two postings), and never
/// call [`GroupCommitter::submit`] or [`Ledger::write`] from inside one —
/// both wait for the transaction the operation is part of, so they would
/// never return.
///
/// Dropping the committer lets the thread finish the operations already
/// queued, then joins it.
pub struct GroupCommitter {
    queue: Option<Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Counters>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    ops: AtomicU64,
    largest: AtomicU64,
    failed: AtomicU64,
}

/// What the caller blocked in [`GroupCommitter::submit`] receives.
enum Reply<T> {
    Done(Result<T, LedgerError>),
    Panicked(Box<dyn Any + Send>),
}

/// One queued operation, its result type erased.
trait Job: Send {
    /// Runs the operation's budget postings, if it has a part for them
    /// (see [`GroupCommitter::submit_posting_first`]); `Some(why)` when
    /// they may have left the transaction half changed.
    fn post(&mut self, _txn: &mut Txn) -> Option<String> {
        None
    }
    /// Whether [`Job::post`] ran something in the current transaction.
    fn posted(&self) -> bool {
        false
    }
    /// Runs the operation (the rest of it, after [`Job::post`]) in `txn`;
    /// the caller is answered later through the returned [`Finish`].
    fn run(self: Box<Self>, txn: &mut Txn) -> Ran;
    /// Answers the caller without running the operation.
    fn refuse(self: Box<Self>, error: LedgerError);
    /// The answer of an operation whose postings ran in a transaction that
    /// is being rolled back before the rest of it ran.
    fn abandon(self: Box<Self>) -> Box<dyn Finish>;
}

/// An operation that has run, waiting for its transaction's fate.
struct Ran {
    /// `Some(why)` when the operation may have left the transaction half
    /// changed, so it must not commit.
    dirty: Option<String>,
    finish: Box<dyn Finish>,
}

trait Finish: Send {
    fn finish(self: Box<Self>, fate: &Fate);
}

/// What became of the transaction an operation ran in.
enum Fate {
    Committed,
    /// Another operation (or this one) failed part way.
    RolledBack(String),
    /// Beginning, sealing or committing the transaction failed.
    Failed(LedgerError),
}

struct Op<T, F> {
    op: F,
    reply: oneshot::Sender<Reply<T>>,
}

struct Done<T> {
    outcome: Reply<T>,
    reply: oneshot::Sender<Reply<T>>,
}

impl<T, F> Job for Op<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Txn) -> Result<T, LedgerError> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &mut Txn) -> Ran {
        let Op { op, reply } = *self;
        let (dirty, outcome) = match panic::catch_unwind(AssertUnwindSafe(|| op(txn))) {
            Ok(Ok(value)) => (None, Reply::Done(Ok(value))),
            Ok(Err(e)) if leaves_nothing(&e) => (None, Reply::Done(Err(e))),
            Ok(Err(e)) => (Some(e.to_string()), Reply::Done(Err(e))),
            Err(payload) => (Some("an operation panicked".to_owned()), Reply::Panicked(payload)),
        };
        Ran { dirty, finish: Box::new(Done { outcome, reply }) }
    }

    fn refuse(self: Box<Self>, error: LedgerError) {
        // The caller may have gone (it panicked); nobody is left to tell.
        let _ = self.reply.send(Reply::Done(Err(error)));
    }

    fn abandon(self: Box<Self>) -> Box<dyn Finish> {
        Box::new(Abandoned { own: None, reply: self.reply })
    }
}

/// An operation in two parts: its budget postings, run with every other
/// queued operation's before any operation's main part, and the rest.
struct Phased<P, T, F, G> {
    post: Option<F>,
    then: G,
    posted: Option<Reply<P>>,
    reply: oneshot::Sender<Reply<T>>,
}

impl<P, T, F, G> Job for Phased<P, T, F, G>
where
    P: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut Txn) -> Result<P, LedgerError> + Send + 'static,
    G: FnOnce(&mut Txn, P) -> Result<T, LedgerError> + Send + 'static,
{
    fn post(&mut self, txn: &mut Txn) -> Option<String> {
        let post = self.post.take()?;
        let (dirty, posted) = match panic::catch_unwind(AssertUnwindSafe(|| post(txn))) {
            Ok(Ok(value)) => (None, Reply::Done(Ok(value))),
            Ok(Err(e)) if leaves_nothing(&e) => (None, Reply::Done(Err(e))),
            Ok(Err(e)) => (Some(e.to_string()), Reply::Done(Err(e))),
            Err(payload) => (Some("an operation panicked".to_owned()), Reply::Panicked(payload)),
        };
        self.posted = Some(posted);
        dirty
    }

    fn posted(&self) -> bool {
        self.posted.is_some()
    }

    fn run(mut self: Box<Self>, txn: &mut Txn) -> Ran {
        // Run alone (nothing called `post` first): both parts now.
        let dirty = if self.posted.is_none() { self.post(txn) } else { None };
        let Phased { then, posted, reply, .. } = *self;
        let outcome = match posted {
            Some(Reply::Done(Ok(value))) => {
                return Job::run(Box::new(Op { op: move |txn: &mut Txn| then(txn, value), reply }), txn);
            }
            Some(Reply::Done(Err(e))) => Reply::Done(Err(e)),
            Some(Reply::Panicked(payload)) => Reply::Panicked(payload),
            None => Reply::Done(Err(rolled_back("its postings did not run"))),
        };
        Ran { dirty, finish: Box::new(Done { outcome, reply }) }
    }

    fn refuse(self: Box<Self>, error: LedgerError) {
        let _ = self.reply.send(Reply::Done(Err(error)));
    }

    fn abandon(self: Box<Self>) -> Box<dyn Finish> {
        // Its own failure is its answer; a refusal or a success from a
        // transaction that is rolled back is not.
        let own = match self.posted {
            Some(Reply::Done(Err(e))) if !leaves_nothing(&e) => Some(Reply::Done(Err(e))),
            Some(Reply::Panicked(payload)) => Some(Reply::Panicked(payload)),
            _ => None,
        };
        Box::new(Abandoned { own, reply: self.reply })
    }
}

/// The answer of an operation cut short by a rollback: its own error or
/// panic if it caused it, else a retryable rollback.
struct Abandoned<T> {
    own: Option<Reply<T>>,
    reply: oneshot::Sender<Reply<T>>,
}

impl<T: Send + 'static> Finish for Abandoned<T> {
    fn finish(self: Box<Self>, fate: &Fate) {
        let outcome = match (self.own, fate) {
            (Some(own), _) => own,
            (None, Fate::RolledBack(why)) => Reply::Done(Err(rolled_back(why))),
            (None, Fate::Failed(e)) => Reply::Done(Err(replicate(e))),
            // Never: an abandoning transaction is always rolled back.
            (None, Fate::Committed) => Reply::Done(Err(rolled_back("the operation did not run"))),
        };
        let _ = self.reply.send(outcome);
    }
}

impl<T: Send + 'static> Finish for Done<T> {
    fn finish(self: Box<Self>, fate: &Fate) {
        let outcome = match (fate, self.outcome) {
            // A panic is the caller's whatever happened to the batch.
            (_, Reply::Panicked(payload)) => Reply::Panicked(payload),
            (Fate::Committed, done) => done,
            // The operation that spoiled the batch reports its own error.
            (Fate::RolledBack(_), Reply::Done(Err(e))) if !leaves_nothing(&e) => Reply::Done(Err(e)),
            (Fate::RolledBack(why), _) => Reply::Done(Err(rolled_back(why))),
            (Fate::Failed(e), _) => Reply::Done(Err(replicate(e))),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Whether an operation that failed with `e` has left the transaction as
/// it found it (see [`GroupCommitter`]).
fn leaves_nothing(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Budget(b) if !matches!(b, BudgetError::Inconsistent(_)))
}

fn rolled_back(why: &str) -> LedgerError {
    LedgerError::Io {
        what: "group commit: another operation in the same transaction failed part way, so the \
               transaction was rolled back and nothing of this operation was written; submit it again",
        source: io::Error::new(io::ErrorKind::Interrupted, why.to_owned()),
    }
}

fn stopped() -> LedgerError {
    LedgerError::Io {
        what: "group commit has stopped; the operation was not committed",
        source: io::Error::new(io::ErrorKind::BrokenPipe, "the committer thread is gone"),
    }
}

/// The same error again, for each caller of a failed batch
/// (`LedgerError` is not `Clone`: storage errors carry I/O errors).
fn replicate(e: &LedgerError) -> LedgerError {
    let io_copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
    match e {
        LedgerError::Busy(path) => LedgerError::Busy(path.clone()),
        LedgerError::NeedsRepair(path) => LedgerError::NeedsRepair(path.clone()),
        LedgerError::Io { what, source } => LedgerError::Io { what, source: io_copy(source) },
        LedgerError::Storage(inner) => LedgerError::Storage(storage_copy(inner)),
        LedgerError::NotADatabase { path, found } => LedgerError::NotADatabase { path: path.clone(), found: *found },
        LedgerError::CreateFailed { path, cause } => {
            LedgerError::CreateFailed { path: path.clone(), cause: storage_copy(cause) }
        }
        LedgerError::BadEntry(text) => LedgerError::BadEntry(text.clone()),
        LedgerError::Corrupt { seq, failure } => LedgerError::Corrupt { seq: *seq, failure: failure.clone() },
        LedgerError::Unauthorized(failure) => LedgerError::Unauthorized(failure.clone()),
        LedgerError::Budget(b) => LedgerError::Budget(b.clone()),
        LedgerError::Remote(r) => LedgerError::Remote(r.clone()),
    }
}

fn storage_copy(e: &redb::Error) -> redb::Error {
    let io_copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
    match e {
        redb::Error::Io(source) => redb::Error::Io(io_copy(source)),
        redb::Error::Corrupted(text) => redb::Error::Corrupted(text.clone()),
        redb::Error::TransactionPoisoned => redb::Error::TransactionPoisoned,
        redb::Error::DatabaseAlreadyOpen => redb::Error::DatabaseAlreadyOpen,
        other => redb::Error::Io(io::Error::other(other.to_string())),
    }
}

/// Why a batch's transaction did not commit.
enum Abort {
    Dirty(String),
    Ledger(LedgerError),
}

impl From<LedgerError> for Abort {
    fn from(e: LedgerError) -> Self {
        Abort::Ledger(e)
    }
}

impl GroupCommitter {
    /// The histogram of committed group transactions' latency in seconds
    /// (see the module docs); no labels.
    pub const COMMIT_SECONDS_METRIC: &'static str = "conductor_journal_group_commit_seconds";

    /// Starts the committer thread for `ledger`; each transaction holds at
    /// most `max_batch` operations (at least one; see
    /// [`GROUP_BATCH_DEFAULT`]).
    pub fn new(ledger: Arc<Ledger>, max_batch: usize) -> Self {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let max_batch = max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("ledger-group-commit".into())
            .spawn(move || commit_loop(&ledger, &jobs, max_batch, &counters))
            .ok();
        // Without a thread the queue's receiver is gone, and every submit
        // fails at once rather than waiting.
        GroupCommitter { queue: Some(queue), thread, stats }
    }

    /// Runs `op` in the next group transaction and returns its result once
    /// that transaction has committed durably (or the error that stopped
    /// it). Blocks the calling thread; call from as many threads as you
    /// like. A panic in `op` is resumed here, on the caller's thread. See
    /// the type's docs for what `op` may leave behind when it fails.
    ///
    /// Not for async code (it would block the executor's thread, and tokio
    /// refuses it there): use [`GroupCommitter::submit_async`].
    pub fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Txn) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let answer = self.enqueue(op)?;
        unpack(answer.blocking_recv())
    }

    /// [`GroupCommitter::submit`] for async callers: the future resolves
    /// once the transaction holding `op` has committed durably. Waking a
    /// task costs far less than waking a blocked thread, so thousands of
    /// concurrent callers are cheap this way.
    pub fn submit_async<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Txn) -> Result<T, LedgerError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, LedgerError>> + Send + 'static {
        let answer = self.enqueue(op);
        async move { unpack(answer?.await) }
    }

    /// [`GroupCommitter::submit`] for an operation whose budget postings
    /// (`post`) come first: every queued operation's `post` runs before
    /// any operation's main part (`then`, given what `post` returned), so
    /// on a ledger that batches postings ([`Ledger::batch_postings`]) a
    /// whole group's reservations and settlements share one signed
    /// `budget.batch` entry instead of one entry each. Each operation's own
    /// order is kept: its postings come before its other entries.
    ///
    /// `post` must not read what other operations' main parts write (it
    /// runs before them); a refusal from it (a budget error that leaves
    /// nothing) skips `then` and is the caller's answer.
    pub fn submit_posting_first<P: Send + 'static, T: Send + 'static>(
        &self,
        post: impl FnOnce(&mut Txn) -> Result<P, LedgerError> + Send + 'static,
        then: impl FnOnce(&mut Txn, P) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let answer = self.enqueue_posting_first(post, then)?;
        unpack(answer.blocking_recv())
    }

    fn enqueue_posting_first<P: Send + 'static, T: Send + 'static>(
        &self,
        post: impl FnOnce(&mut Txn) -> Result<P, LedgerError> + Send + 'static,
        then: impl FnOnce(&mut Txn, P) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Reply<T>>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.send(Box::new(Phased { post: Some(post), then, posted: None, reply }))?;
        Ok(answer)
    }

    /// Queues `op` and returns where its answer will arrive.
    fn enqueue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Txn) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Reply<T>>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.send(Box::new(Op { op, reply }))?;
        Ok(answer)
    }

    fn send(&self, job: Box<dyn Job>) -> Result<(), LedgerError> {
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(job).map_err(|_| stopped())
    }

    /// Counters since the committer started.
    pub fn stats(&self) -> GroupStats {
        GroupStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            ops: self.stats.ops.load(Ordering::Relaxed),
            largest: self.stats.largest.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }
}

/// The caller's side of an answer: its result, or its own panic resumed.
fn unpack<T>(answer: Result<Reply<T>, oneshot::error::RecvError>) -> Result<T, LedgerError> {
    match answer {
        Ok(Reply::Done(result)) => result,
        Ok(Reply::Panicked(payload)) => panic::resume_unwind(payload),
        Err(_) => Err(stopped()),
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued and stop.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread that answers a transaction's callers while the committer
/// runs the next one. Waking a blocked caller is a futex call and often
/// an interrupt to another core: about a third of the committer's time
/// at 64 concurrent tasks (`cargo xtask bench-engine`, issue #19), time in
/// which no transaction could run. Dropping it answers what is queued and
/// joins the thread.
struct Answerer {
    queue: Option<Sender<(Vec<Box<dyn Finish>>, Fate)>>,
    thread: Option<JoinHandle<()>>,
}

impl Answerer {
    fn start() -> Self {
        let (queue, answers) = mpsc::channel::<(Vec<Box<dyn Finish>>, Fate)>();
        // If the thread cannot start, its receiver is dropped with the
        // closure, every send fails, and the committer answers itself.
        let thread = std::thread::Builder::new()
            .name("ledger-answer".into())
            .spawn(move || {
                for (ran, fate) in answers {
                    answer(ran, &fate);
                }
            })
            .ok();
        Answerer { queue: Some(queue), thread }
    }

    /// Answers every operation in `ran` with `fate`, on the answering thread
    /// if there is one.
    fn answer(&self, ran: Vec<Box<dyn Finish>>, fate: Fate) {
        let unsent = match &self.queue {
            Some(queue) => queue.send((ran, fate)).err().map(|mpsc::SendError(unsent)| unsent),
            // Not reached: the queue is taken only by `drop`.
            None => Some((ran, fate)),
        };
        if let Some((ran, fate)) = unsent {
            answer(ran, &fate);
        }
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(ran: Vec<Box<dyn Finish>>, fate: &Fate) {
    for finish in ran {
        finish.finish(fate);
    }
}

fn commit_loop(ledger: &Ledger, jobs: &Receiver<Box<dyn Job>>, max_batch: usize, stats: &Counters) {
    let answerer = Answerer::start();
    // Operations taken from the queue but not yet run (left over when a
    // batch was rolled back part way).
    let mut waiting: VecDeque<Box<dyn Job>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        while waiting.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        let mut ran: Vec<Box<dyn Finish>> = Vec::with_capacity(waiting.len());
        let started = std::time::Instant::now();
        let result = ledger.write(|txn| -> Result<(), Abort> {
            // Budget postings first: they share the transaction's
            // `budget.batch` entry (see `submit_posting_first`).
            for at in 0..waiting.len() {
                if let Some(why) = waiting[at].post(txn) {
                    let (posted, rest): (Vec<_>, Vec<_>) = waiting.drain(..=at).partition(|job| job.posted());
                    ran.extend(posted.into_iter().map(Job::abandon));
                    for job in rest.into_iter().rev() {
                        waiting.push_front(job);
                    }
                    return Err(Abort::Dirty(why));
                }
            }
            while let Some(job) = waiting.pop_front() {
                let Ran { dirty, finish } = job.run(txn);
                ran.push(finish);
                if let Some(why) = dirty {
                    // An operation whose postings ran in this transaction
                    // starts again from its caller; the rest wait for the
                    // next transaction.
                    let (posted, rest): (VecDeque<_>, VecDeque<_>) = waiting.drain(..).partition(|job| job.posted());
                    ran.extend(posted.into_iter().map(Job::abandon));
                    waiting.extend(rest);
                    return Err(Abort::Dirty(why));
                }
            }
            Ok(())
        });
        let fate = match result {
            Ok(()) => {
                metrics::histogram!(GroupCommitter::COMMIT_SECONDS_METRIC).record(started.elapsed().as_secs_f64());
                let n = ran.len() as u64;
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.ops.fetch_add(n, Ordering::Relaxed);
                stats.largest.fetch_max(n, Ordering::Relaxed);
                Fate::Committed
            }
            Err(Abort::Dirty(why)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                Fate::RolledBack(why)
            }
            Err(Abort::Ledger(e)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                // The transaction could not begin (nothing ran) or could not
                // be sealed or committed (everything ran): either way no
                // operation is left to retry, and retrying a database that
                // refuses transactions would spin.
                for job in waiting.drain(..) {
                    job.refuse(replicate(&e));
                }
                Fate::Failed(e)
            }
        };
        answerer.answer(ran, fate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Account, ReservationId};
    use identity::{Keypair, Role};
    use serde_json::json;
    use std::sync::mpsc::SyncSender;
    use std::time::Duration;

    const FAR: i64 = 1_000_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        ledger: Arc<Ledger>,
        key: Arc<Keypair>,
    }

    fn fixture(limit: u64) -> Fixture {
        fixture_with(limit, false)
    }

    fn fixture_with(limit: u64, batched: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ledger = Ledger::open(&dir.path().join("group.redb")).expect("open");
        ledger.batch_postings(batched);
        let key = Keypair::generate(Role::Conductor);
        ledger.write(|t| t.genesis(&key, json!({}), 0)).expect("genesis");
        ledger.write(|t| t.open_account(&key, "m", None, Some(limit), 0)).expect("account");
        Fixture { _dir: dir, ledger: Arc::new(ledger), key: Arc::new(key) }
    }

    fn reserve(
        key: &Arc<Keypair>,
        amount: u64,
    ) -> impl FnOnce(&mut Txn) -> Result<ReservationId, LedgerError> + Send + 'static {
        let key = key.clone();
        move |t| t.reserve(&key, "m", amount, FAR, json!({"call": amount}), 1)
    }

    /// Blocks the committer inside a transaction until the returned sender
    /// is dropped or sent to, so what is queued meanwhile forms one batch.
    fn hold_committer(group: &GroupCommitter) -> (SyncSender<()>, oneshot::Receiver<Reply<()>>) {
        let (release, gate) = mpsc::sync_channel::<()>(1);
        let (entered_tx, entered) = mpsc::sync_channel::<()>(1);
        let held = group
            .enqueue(move |_| {
                let _ = entered_tx.send(());
                let _ = gate.recv();
                Ok(())
            })
            .expect("enqueue gate");
        entered.recv_timeout(Duration::from_secs(10)).expect("committer took the gate");
        (release, held)
    }

    fn wait<T>(mut answer: oneshot::Receiver<Reply<T>>) -> Result<T, LedgerError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match answer.try_recv() {
                Ok(reply) => return unpack(Ok(reply)),
                Err(oneshot::error::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("no answer: {e}"),
            }
        }
    }

    #[test]
    fn each_caller_gets_its_own_result_after_a_shared_commit() {
        let f = fixture(1_000_000);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let results: Vec<(u64, ReservationId)> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=64u64)
                .map(|amount| {
                    let (group, key) = (&group, &f.key);
                    s.spawn(move || (amount, group.submit(reserve(key, amount)).expect("reserved")))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let pending: std::collections::HashMap<ReservationId, u64> =
            f.ledger.pending_reservations().expect("pending").into_iter().map(|(id, _, amt, _)| (id, amt)).collect();
        assert_eq!(pending.len(), 64);
        for (amount, id) in results {
            assert_eq!(pending[&id], amount, "caller of {amount} got the id of its own reservation");
        }
        let stats = group.stats();
        assert_eq!(stats.ops, 64);
        assert!(stats.commits >= 1 && stats.commits <= 64 && stats.failed == 0, "{stats:?}");
        assert_eq!(f.ledger.account("m").expect("m").pending, (1..=64).sum::<u64>());
        f.ledger.verify().expect("journal and balances agree");
    }

    /// Reserves `amount` first, then journals a note naming it.
    fn enqueue_noted(
        group: &GroupCommitter,
        key: &Arc<Keypair>,
        amount: u64,
    ) -> oneshot::Receiver<Reply<(ReservationId, u64)>> {
        let note_key = key.clone();
        group
            .enqueue_posting_first(reserve(key, amount), move |t, id| {
                let (seq, _) = t.append(&note_key, "task.started", &json!({"reservation": id.0}), 1)?;
                Ok((id, seq))
            })
            .expect("enqueue")
    }

    #[test]
    fn posting_first_operations_share_one_batch_entry_and_keep_their_own_order() {
        let f = fixture_with(1_000, true);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let (release, held) = hold_committer(&group);
        let head = f.ledger.head().expect("head").0;
        let a = enqueue_noted(&group, &f.key, 10);
        let key = f.key.clone();
        let plain = group.enqueue(move |t| t.append(&key, "mission.declared", &json!({}), 1)).expect("plain");
        let b = enqueue_noted(&group, &f.key, 20);
        let refused = enqueue_noted(&group, &f.key, 5_000);
        let c = enqueue_noted(&group, &f.key, 30);
        drop(release);
        wait(held).expect("gate");
        let (a, b, c) = (wait(a).expect("a"), wait(b).expect("b"), wait(c).expect("c"));
        assert!(matches!(wait(refused), Err(LedgerError::Budget(BudgetError::Insufficient { .. }))));
        let (plain, _) = wait(plain).expect("plain");
        let entries = f.ledger.entries(head, usize::MAX).expect("entries");
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["budget.batch", "task.started", "mission.declared", "task.started", "task.started"]);
        let batch: serde_json::Value = serde_json::from_slice(&entries[0].payload).expect("json");
        let amounts: Vec<u64> = batch["postings"]
            .as_array()
            .expect("postings")
            .iter()
            .filter_map(|p| p["payload"]["amount"].as_u64())
            .collect();
        assert_eq!(amounts, [10, 20, 30], "the group's reservations, in queue order, in one entry");
        // Each caller's note follows the batch, in queue order, and names
        // the caller's own reservation.
        assert_eq!([a.1, plain, b.1, c.1], [head + 1, head + 2, head + 3, head + 4]);
        for (e, (id, _)) in [(&entries[1], a), (&entries[3], b), (&entries[4], c)] {
            assert_eq!(e.payload_json()["reservation"], json!(id.0));
        }
        assert_eq!(f.ledger.account("m").expect("m").pending, 60);
        f.ledger.verify().expect("journal and balances agree");
    }

    #[test]
    fn a_lone_posting_is_its_own_entry() {
        let f = fixture_with(1_000, true);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let head = f.ledger.head().expect("head").0;
        wait(enqueue_noted(&group, &f.key, 10)).expect("reserved");
        let kinds: Vec<String> =
            f.ledger.entries(head, usize::MAX).expect("entries").into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["budget.reserved", "task.started"]);
        f.ledger.verify().expect("verifies");
    }

    #[test]
    fn a_posting_that_fails_part_way_sends_the_group_s_postings_back_to_their_callers() {
        let f = fixture_with(100, true);
        let stranger = Arc::new(Keypair::generate(Role::Conductor));
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let (release, held) = hold_committer(&group);
        let before = enqueue_noted(&group, &f.key, 10);
        let bad = enqueue_noted(&group, &stranger, 20);
        let after = enqueue_noted(&group, &f.key, 30);
        drop(release);
        wait(held).expect("gate");
        let err = wait(before).expect_err("its reservation was rolled back");
        assert!(matches!(&err, LedgerError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted), "{err}");
        assert!(matches!(wait(bad), Err(LedgerError::Unauthorized(_))));
        wait(after).expect("not yet posted when the batch failed, so committed in the next");
        assert_eq!(f.ledger.account("m").expect("m").pending, 30);
        f.ledger.verify().expect("no hold without its journal entry");
    }

    #[test]
    fn a_main_part_that_fails_part_way_sends_every_posted_operation_back() {
        let f = fixture_with(100, true);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let (release, held) = hold_committer(&group);
        let before = enqueue_noted(&group, &f.key, 10);
        let key = f.key.clone();
        let bad = group
            .enqueue_posting_first(reserve(&f.key, 20), move |t, _| {
                t.append(&key, "Not A Kind", &json!({}), 1)?;
                Ok(())
            })
            .expect("bad");
        let after = enqueue_noted(&group, &f.key, 30);
        drop(release);
        wait(held).expect("gate");
        for (name, answer) in [("before", wait(before).map(|_| ())), ("after", wait(after).map(|_| ()))] {
            let err = answer.expect_err(name);
            assert!(
                matches!(&err, LedgerError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted),
                "{err}"
            );
        }
        assert!(matches!(wait(bad), Err(LedgerError::BadEntry(_))));
        assert_eq!(f.ledger.account("m").expect("m").pending, 0, "nothing of the group was written");
        assert!(f.ledger.pending_reservations().expect("pending").is_empty());
        f.ledger.verify().expect("verifies");
    }

    #[test]
    fn a_refused_operation_fails_alone_and_the_rest_commit() {
        let f = fixture(100);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let (release, held) = hold_committer(&group);
        let a = group.enqueue(reserve(&f.key, 60)).expect("a");
        let too_much = group.enqueue(reserve(&f.key, 41)).expect("too much");
        let key = f.key.clone();
        let unknown = group.enqueue(move |t| t.settle(&key, ReservationId(999), 1, 2)).expect("unknown");
        let b = group.enqueue(reserve(&f.key, 40)).expect("b");
        drop(release);
        wait(held).expect("gate");
        let a = wait(a).expect("a reserved");
        assert!(matches!(wait(too_much), Err(LedgerError::Budget(BudgetError::Insufficient { available: 40, .. }))));
        assert!(matches!(wait(unknown), Err(LedgerError::Budget(BudgetError::UnknownReservation(999)))));
        let b = wait(b).expect("b reserved");
        assert_ne!(a, b);
        let stats = group.stats();
        assert_eq!((stats.commits, stats.ops, stats.largest), (2, 5, 4), "gate alone, then one batch of four");
        assert_eq!(f.ledger.account("m").expect("m").pending, 100);
        f.ledger.verify().expect("journal and balances agree");
    }

    #[test]
    fn an_operation_failing_part_way_rolls_back_only_its_batch() {
        let f = fixture(100);
        // An unregistered key: `reserve` holds the funds before the append
        // refuses the signer, so committing the rest of this batch would
        // keep a hold with no journal entry.
        let stranger = Arc::new(Keypair::generate(Role::Conductor));
        let group = GroupCommitter::new(f.ledger.clone(), 3);
        let (release, held) = hold_committer(&group);
        let before = group.enqueue(reserve(&f.key, 10)).expect("before");
        let bad = group.enqueue(reserve(&stranger, 20)).expect("bad");
        let after = group.enqueue(reserve(&f.key, 30)).expect("after");
        let later = group.enqueue(reserve(&f.key, 5)).expect("next batch");
        drop(release);
        wait(held).expect("gate");
        let err = wait(before).expect_err("rolled back with the bad one");
        assert!(matches!(&err, LedgerError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted), "{err}");
        assert!(matches!(wait(bad), Err(LedgerError::Unauthorized(_))));
        wait(after).expect("not yet run when the batch failed, so committed in the next");
        wait(later).expect("committed");
        let stats = group.stats();
        assert_eq!((stats.failed, stats.commits), (1, 2), "{stats:?}");
        assert_eq!(f.ledger.account("m").expect("m").pending, 35);
        f.ledger.verify().expect("no hold without its journal entry");
    }

    #[test]
    fn a_failed_commit_fails_every_caller_in_the_batch() {
        let f = fixture(100);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let (release, held) = hold_committer(&group);
        let a = group.enqueue(reserve(&f.key, 10)).expect("a");
        // Leaking an open table poisons the transaction: redb refuses to
        // commit it.
        let poison = group
            .enqueue(|t| {
                const SCRATCH: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("group_test_scratch");
                let table = t.redb().open_table(SCRATCH).map_err(crate::error::storage)?;
                std::mem::forget(table);
                Ok(())
            })
            .expect("poison");
        let b = group.enqueue(reserve(&f.key, 20)).expect("b");
        drop(release);
        wait(held).expect("gate");
        for (name, result) in [("a", wait(a).map(|_| ())), ("poison", wait(poison)), ("b", wait(b).map(|_| ()))] {
            assert!(matches!(result, Err(LedgerError::Storage(_))), "{name}: {result:?}");
        }
        assert_eq!(f.ledger.account("m").expect("m").pending, 0, "nothing acknowledged, nothing written");
        assert_eq!(group.stats().failed, 1);
        f.ledger.verify().expect("journal and balances agree");
        // The leaked table still holds redb's write slot, so no later write
        // transaction could begin on this database: stop here.
    }

    #[test]
    fn a_panic_reaches_its_caller_and_the_committer_survives() {
        let f = fixture(100);
        let group = GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT);
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            group.submit(|_| -> Result<(), LedgerError> { panic!("op exploded") })
        }));
        let payload = caught.expect_err("the panic is resumed in the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"op exploded"));
        group.submit(reserve(&f.key, 9)).expect("committer still running");
        assert_eq!(group.stats().failed, 1);
        f.ledger.verify().expect("journal and balances agree");
    }

    #[test]
    fn dropping_finishes_queued_operations_and_never_leaves_a_caller_waiting() {
        let f = fixture(1_000);
        let group = GroupCommitter::new(f.ledger.clone(), 2);
        let (release, held) = hold_committer(&group);
        let answers: Vec<_> = (1..=5).map(|n| group.enqueue(reserve(&f.key, n)).expect("queued")).collect();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(release);
        });
        drop(group);
        releaser.join().expect("releaser");
        wait(held).expect("gate");
        for answer in answers {
            wait(answer).expect("queued before the drop, committed before the join");
        }
        assert_eq!(f.ledger.account("m").expect("m").pending, 15);
        // A committer whose thread is gone answers at once.
        let dead = GroupCommitter { queue: None, thread: None, stats: Arc::default() };
        assert!(matches!(dead.submit(|_| Ok(())), Err(LedgerError::Io { .. })));
    }

    #[test]
    fn async_callers_share_batched_commits_and_each_gets_its_own_answer() {
        const TASKS: u64 = 300;
        let f = fixture_with(1_000_000, true);
        let group = Arc::new(GroupCommitter::new(f.ledger.clone(), GROUP_BATCH_DEFAULT));
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let settled: Vec<(u64, ReservationId, Account)> = runtime.block_on(async {
            let tasks: Vec<_> = (1..=TASKS)
                .map(|amount| {
                    let (group, key) = (group.clone(), f.key.clone());
                    tokio::spawn(async move {
                        let id = group.submit_async(reserve(&key, amount)).await.expect("reserved");
                        let after =
                            group.submit_async(move |t| t.settle(&key, id, amount / 2, 2)).await.expect("settled");
                        (amount, id, after)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await.expect("task"));
            }
            out
        });
        let mut ids: Vec<ReservationId> = settled.iter().map(|(_, id, _)| *id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len() as u64, TASKS, "every caller got its own reservation");
        let total: u64 = (1..=TASKS).map(|a| a / 2).sum();
        assert_eq!(
            f.ledger.account("m").expect("m"),
            Account { limit: Some(1_000_000), pending: 0, settled: total, parent: None }
        );
        assert!(f.ledger.pending_reservations().expect("pending").is_empty());
        // The postings travelled in shared, signed batch entries.
        let entries = f.ledger.entries(0, usize::MAX).expect("entries");
        let batches: Vec<usize> = entries
            .iter()
            .filter(|e| e.kind == "budget.batch")
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("json");
                v["postings"].as_array().map_or(0, Vec::len)
            })
            .collect();
        // A commit that held one posting wrote it as its own entry.
        let lone = entries.iter().filter(|e| matches!(e.kind.as_str(), "budget.reserved" | "budget.settled")).count();
        assert_eq!((batches.iter().sum::<usize>() + lone) as u64, 2 * TASKS, "every posting is journaled once");
        assert!(batches.iter().any(|&n| n > 1), "batches hold several postings: {batches:?}");
        let report = f.ledger.verify().expect("journal and balances agree");
        assert!(report.budget.iter().any(|(name, a)| name == "m" && a.settled == total));
    }
}

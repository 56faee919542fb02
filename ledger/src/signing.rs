//! Signing a large commit's entries on every core, with helper threads
//! started once for the whole process.
//!
//! A thread started per commit (what `std::thread::scope` does) costs
//! more than the signing it takes over: its stack is mapped and unmapped,
//! the allocator sets up and purges a heap for it, and each unmapping
//! interrupts every other core to flush its TLB. On a busy conductor that
//! was a commit in every few milliseconds (`cargo xtask bench-engine`,
//! issue #19). The helpers here wait for work instead; a commit hands each
//! one share of its entries and signs the first share itself.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A share of a commit, signed on a helper.
type Job = Box<dyn FnOnce() + Send>;

/// A helper stopped before it answered (it panicked), so the share it
/// held was not signed.
#[derive(Debug)]
pub(crate) struct HelperStopped;

/// Runs `work` over `items` in about equal shares, one per core, the
/// first on this thread and the rest on the helpers; with fewer than `min`
/// items, or one core, all of it here. Returns the items in their order.
pub(crate) fn in_shares<T: Send + 'static>(
    mut items: Vec<T>,
    min: usize,
    work: fn(&mut [T]),
) -> Result<Vec<T>, HelperStopped> {
    let cores = crate::journal::cores();
    if items.len() < min || cores == 1 {
        work(&mut items);
        return Ok(items);
    }
    let per = items.len().div_ceil(cores);
    // Split from the back so that every share but the first is its own Vec.
    let mut shares = Vec::with_capacity(cores - 1);
    while items.len() > per {
        let at = per * ((items.len() - 1) / per);
        shares.push(items.split_off(at));
    }
    shares.reverse();
    let sent = shares.len();
    let (answer, answers) = mpsc::channel();
    for (i, mut share) in shares.into_iter().enumerate() {
        let answer = answer.clone();
        let job: Job = Box::new(move || {
            work(&mut share);
            // This commit stopped waiting only if it failed already.
            let _ = answer.send((i, share));
        });
        if let Err(mpsc::SendError(job)) = helpers().send(job) {
            // No helper is left (all panicked): sign here instead.
            job();
        }
    }
    drop(answer);
    work(&mut items);
    // Every share answers once, or its job dropped its sender unsent and
    // the channel closes before `sent` answers arrive.
    let mut done = Vec::with_capacity(sent);
    for _ in 0..sent {
        done.push(answers.recv().map_err(|_| HelperStopped)?);
    }
    done.sort_unstable_by_key(|&(i, _)| i);
    items.extend(done.into_iter().flat_map(|(_, share)| share));
    Ok(items)
}

/// The queue the helpers take shares from, started on first use with one
/// helper for every core but the committing thread's.
fn helpers() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 1..crate::journal::cores() {
            let jobs = jobs.clone();
            // Without helpers a share is signed by the committing thread
            // (see `in_shares`), so a refused spawn only costs speed.
            let _ = std::thread::Builder::new().name(format!("ledger-sign-{n}")).spawn(move || serve(&jobs));
        }
        queue
    })
}

fn serve(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting, never while working.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            // A job that panics drops its answer unsent, which fails its
            // own commit (`in_shares`); the helper stays for the next.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(items: &mut [u64]) {
        for i in items {
            *i *= 2;
        }
    }

    #[test]
    fn every_item_is_worked_once_and_kept_in_order() {
        for n in [0, 1, 2, 3, 15, 16, 17, 33, 1000] {
            let items: Vec<u64> = (0..n).collect();
            let out = in_shares(items, 2, double).expect("helpers answer");
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "{n} items");
        }
    }

    #[test]
    fn a_share_that_panics_fails_the_call_instead_of_losing_items() {
        fn boom(items: &mut [u64]) {
            // Only a helper's share (the first share is this thread's).
            assert!(items.first().is_none_or(|&i| i == 0), "a helper's share panics");
        }
        if crate::journal::cores() == 1 {
            eprintln!("skipped: one core, so no helper runs a share");
            return;
        }
        let items: Vec<u64> = (0..64).collect();
        assert!(in_shares(items, 2, boom).is_err());
        // The helpers are still there for later commits.
        let out = in_shares((0..64).collect(), 2, double).expect("still answered");
        assert_eq!(out, (0..64).map(|i| i * 2).collect::<Vec<_>>());
    }
}

//! Progress for operators: a bar on a terminal, plain lines otherwise
//! (CI logs, pipes), always on stderr so stdout stays machine-readable.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use engine::state::{TaskRecord, TaskStatus};

use crate::stdout::{self, Elsewhere};

#[derive(Debug)]
pub struct Progress {
    bar: Mutex<Option<ProgressBar>>,
    plain: bool,
    /// The client this mission runs for, when a server runs it for one
    /// (`local.rs`): the progress is theirs, from whichever thread.
    elsewhere: Option<Arc<dyn Elsewhere>>,
    limit: Mutex<u64>,
    total: Mutex<u32>,
    done: Mutex<u32>,
}

impl Progress {
    pub fn new() -> Self {
        let elsewhere = stdout::elsewhere();
        Progress {
            bar: Mutex::new(None),
            plain: elsewhere.is_some() || !std::io::stderr().is_terminal(),
            elsewhere,
            limit: Mutex::new(0),
            total: Mutex::new(0),
            done: Mutex::new(0),
        }
    }
}

impl engine::run::Observer for Progress {
    fn started(&self, name: &str, id: &str, total: u32, limit: u64) {
        *lock(&self.limit) = limit;
        *lock(&self.total) = total;
        stdout::err_line(self.elsewhere.as_ref(), format_args!("mission {name} ({id}): {total} tasks, budget {limit}"));
        if !self.plain {
            let bar = ProgressBar::with_draw_target(Some(u64::from(total)), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} tasks  {msg}  [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(format!("tokens 0/{limit}"));
            *lock(&self.bar) = Some(bar);
        }
    }

    fn task_finished(&self, task: &TaskRecord, spent: u64) {
        let limit = *lock(&self.limit);
        let done = {
            let mut done = lock(&self.done);
            *done += 1;
            *done
        };
        // Delegations add tasks (children, resumed parents) as the mission
        // runs: the total grows with them.
        let total = {
            let mut total = lock(&self.total);
            *total = (*total).max(done);
            *total
        };
        let what = match task.status {
            TaskStatus::Decided => format!("decided {}", task.outcome.as_deref().unwrap_or("?")),
            TaskStatus::AwaitingReview => {
                format!("proposed {} -> awaiting review", task.outcome.as_deref().unwrap_or("?"))
            }
            TaskStatus::Failed => format!("failed: {}", task.failure.as_deref().unwrap_or("?")),
            TaskStatus::Skipped => "skipped: budget exhausted".to_owned(),
            TaskStatus::AwaitingChildren => "delegated: waiting for its children".to_owned(),
            TaskStatus::Pending | TaskStatus::Running => "unfinished".to_owned(),
        };
        match &*lock(&self.bar) {
            Some(bar) => {
                if bar.length().is_some_and(|l| l < total as u64) {
                    bar.set_length(total as u64);
                }
                bar.inc(1);
                bar.set_message(format!("tokens {spent}/{limit}"));
                if task.status == TaskStatus::Failed {
                    bar.println(format!("task {} {}: {what}", task.index, task.case_id));
                }
            }
            None if self.plain => {
                stdout::err_line(
                    self.elsewhere.as_ref(),
                    format_args!(
                        "[{done}/{total}] task {} {}: {what} (tokens {spent}/{limit})",
                        task.index, task.case_id
                    ),
                );
            }
            None => {}
        }
    }

    fn finished(&self) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

//! Standard output for commands' results, quiet when the reader goes away.
//!
//! `conductor gates list | head` closes the pipe after a few lines. Rust
//! ignores SIGPIPE, so every later write fails with `BrokenPipe`, and
//! `println!` panics on that (exit 101). C tools die of the signal
//! instead; cargo and ripgrep say nothing. We do as ripgrep does, with
//! the error rather than the signal: restoring SIGPIPE's default takes an
//! `unsafe` call to `libc::signal`, and a signal would end the command
//! wherever it stands, with the signal's status instead of its own. Here,
//! once the reader has gone the rest of the output is discarded and the
//! command finishes its work and exits with its own status
//! (`audit verify --json | head -1` still exits 4 on a tampered journal).
//! Other write errors (a full disk under `> file`) stay errors.
//!
//! Every result a command prints goes through [`outln!`] or [`stdout`];
//! progress and errors go to stderr through [`errln!`]. A command a
//! server runs for a local client (`local.rs`) writes both to that
//! client instead ([`writing_elsewhere`]).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a command's output goes when it is not this process's own: the
/// connection of the client it runs for. A client that has gone away is
/// the sink's business (it discards the rest), as a closed pipe is here.
pub(crate) trait Elsewhere: Send + Sync + fmt::Debug {
    fn out(&self, bytes: &[u8]);
    fn err(&self, bytes: &[u8]);
    /// Whether the client has gone (long listings stop early).
    fn gone(&self) -> bool;
}

thread_local! {
    static ELSEWHERE: RefCell<Option<Arc<dyn Elsewhere>>> = const { RefCell::new(None) };
}

/// Runs `work` with this thread's command output (stdout and stderr)
/// going to `to`.
pub(crate) fn writing_elsewhere<T>(to: Arc<dyn Elsewhere>, work: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ELSEWHERE.with(|e| e.borrow_mut().take());
        }
    }
    ELSEWHERE.with(|e| *e.borrow_mut() = Some(to));
    let _reset = Reset;
    work()
}

/// Where this thread's output goes if not here: for work that reports
/// from other threads (a mission's progress) to take along.
pub(crate) fn elsewhere() -> Option<Arc<dyn Elsewhere>> {
    ELSEWHERE.with(|e| e.borrow().clone())
}

/// Writes one line to stderr, or to the client this thread works for.
pub(crate) fn err_line(to: Option<&Arc<dyn Elsewhere>>, args: fmt::Arguments<'_>) {
    match to {
        Some(to) => to.err(format!("{args}\n").as_bytes()),
        None => eprintln!("{args}"),
    }
}

/// `eprintln!` for a command's progress and errors (see [`err_line`]).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::err_line($crate::stdout::elsewhere().as_ref(), ::std::format_args!($($arg)*))
    };
}
pub(crate) use errln;

/// Set once a write to stdout found the pipe closed; nothing is written
/// after that.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Whether whoever read stdout has gone away (long listings stop early).
pub fn reader_gone() -> bool {
    match elsewhere() {
        Some(to) => to.gone(),
        None => READER_GONE.load(Ordering::Relaxed),
    }
}

/// Stdout, locked, discarding what is written once the reader has gone;
/// or the client this thread works for.
pub fn stdout() -> Out {
    match elsewhere() {
        Some(to) => Out::Elsewhere(to),
        None => Out::Here(Quiet(io::stdout().lock())),
    }
}

/// A command's stdout (see [`stdout`]).
pub enum Out {
    Here(Quiet<io::StdoutLock<'static>>),
    Elsewhere(Arc<dyn Elsewhere>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Here(out) => out.write(buf),
            Out::Elsewhere(to) => {
                to.out(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Here(out) => out.flush(),
            Out::Elsewhere(_) => Ok(()),
        }
    }
}

/// A writer that turns `BrokenPipe` into "written" (see the module docs).
#[derive(Debug)]
pub struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if reader_gone() {
            return Ok(buf.len());
        }
        unless_reader_gone(self.0.write(buf), buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if reader_gone() {
            return Ok(());
        }
        unless_reader_gone(self.0.flush(), ())
    }
}

fn unless_reader_gone<T>(result: io::Result<T>, instead: T) -> io::Result<T> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
            Ok(instead)
        }
        other => other,
    }
}

/// Writes one line (see [`outln!`]).
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = stdout();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Writes `text` as it is (a rendered document that ends in a newline).
pub fn text(text: &str) -> io::Result<()> {
    stdout().write_all(text.as_bytes())
}

/// `println!` for a command's results: returns an `io::Result` instead of
/// panicking, and is quiet when the reader has gone (`| head`).
macro_rules! outln {
    () => {
        $crate::stdout::line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(::std::format_args!($($arg)*))
    };
}
pub(crate) use outln;

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
//! progress and errors go to stderr.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout found the pipe closed; nothing is written
/// after that.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Whether whoever read stdout has gone away (long listings stop early).
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Relaxed)
}

/// Stdout, locked, discarding what is written once the reader has gone.
pub fn stdout() -> Quiet<io::StdoutLock<'static>> {
    Quiet(io::stdout().lock())
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

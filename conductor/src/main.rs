//! `conductor`: run missions of AI agents in wasm cells on local models,
//! metered against a budget and signed into a hash-chained journal.
//!
//! The binary is glue: the mission schema lives in `missions`, keys in
//! `identity`, the journal and budget in `ledger`, facts in `memory`, the
//! sandbox in `cells`. This crate adds the CLI, the inference router
//! (mistral.rs), the scheduler and the gates.

mod audit;
mod cli;
mod commands;
mod exit;
mod local;
mod progress;
mod render;
mod serve_cli;
mod stdout;

use std::process::ExitCode;

use anyhow::Result;

use engine::run;

use crate::cli::{Cli, Command};

// Budget postings, journal entries and host calls are many small
// allocations made on one thread and freed on another; mimalloc handles
// that pattern far better than glibc's allocator (see BENCHMARKS.md, #4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads in rayon's global pool beyond one per core. candle's CPU
/// kernels run there, about 200 short parallel matmuls per token, and
/// with one thread per core a core sits idle while a thread wakes: one
/// more made a request 6% and the sample mission 11% faster here
/// (BENCHMARKS.md, "Inference"). `RAYON_NUM_THREADS` still wins.
const RAYON_EXTRA_THREADS: usize = 1;

/// Turns transparent huge pages off for this process. mimalloc gives each
/// thread its own heap; where THP is `always`, the kernel backs those heaps
/// with 2 MiB pages that stay mostly empty: at 1,024 cells, 1,727 MB of RSS
/// against 302 MB without, and less throughput. Only an optimisation, so a
/// kernel that refuses it changes nothing else.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    // Each argument is the `unsigned long` the kernel reads.
    let (on, off): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: PR_SET_THP_DISABLE reads only its integer arguments and sets
    // a flag on the process; it touches no memory of ours. Failure is
    // ignored: the process then runs as it would have anyway.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, off, off, off) };
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let (cli, matches) = cli::parse_cli();
    // A data directory another conductor holds: the command runs there.
    if let Some(code) = local::forward(&matches) {
        return ExitCode::from(code);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // Fails only if the pool already exists; then it stays as it is.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(cores + RAYON_EXTRA_THREADS).build_global();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // mistral.rs warns about GPU device mapping even on a
                // CPU-only host; its errors still show.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mistralrs_core=error")),
        )
        .init();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error_code(&e))
        }
    }
}

/// Runs one command; also what the holder of a data directory runs for
/// a local client (`local.rs`).
fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => commands::mission::run(args),
        Command::Serve(args) => serve_cli::serve(args),
        Command::Gateway(command) => serve_cli::gateway_command(command),
        Command::Cases(command) => commands::cases::command(command),
        Command::Tokens(command) => commands::tokens::command(command),
        Command::Mission(command) => commands::mission::command(command),
        Command::Audit(command) => commands::audit::command(command),
        Command::Ledger(command) => commands::ledger::command(command),
        Command::Gates(command) => commands::gates::command(command),
        Command::Keys(command) => commands::keys::command(command),
        Command::Memory(command) => commands::memory::command(command),
        Command::Models(command) => commands::models::command(command),
        Command::Modules(command) => commands::modules::command(command),
    }
}

/// The exit status of a command that failed with `error`: the typed
/// errors that mean "invalid input" or "the host cannot do this" have
/// their own, so scripts can tell them from other failures.
fn error_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<run::InfrastructureError>().is_some() {
        exit::INFRASTRUCTURE
    } else if let Some(e) = error.downcast_ref::<run::RunError>() {
        match e {
            // Not the input's fault: the server runs that mission now.
            run::RunError::RunningHere { .. } => exit::BUSY,
            _ => exit::INVALID,
        }
    } else {
        exit::ERROR
    }
}

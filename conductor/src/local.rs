//! Every command beside a running server: the local control socket.
//!
//! `conductor serve` holds its data directory's database for as long as
//! it runs, and redb lets one handle open a database. So while it runs,
//! the server listens on `DATA/control.sock`, and any other `conductor`
//! command naming the same data directory is sent there instead of
//! opening it (a `run` or `mission resume` holds the directory too, but
//! listens on nothing: other commands wait for it). The holder runs the
//! command in its own process, on a thread of its own, against the handle
//! it holds ([`engine::data::DataDir::hold`]): the same code as when the
//! command runs alone, with its output, progress, errors, passphrase
//! questions and exit status carried back over the socket. The client
//! waits, prints, and exits with that status.
//!
//! Who may connect is who owns the data directory: the socket is created
//! in that owner-only (0700) directory with mode 0600, and each
//! connection's peer must be the directory's owner (`SO_PEERCRED`). A
//! command still proves its authority as it would alone: a reviewer's
//! decision is signed with the reviewer's key file, whose passphrase the
//! client is asked for on its own terminal.
//!
//! Two commands are refused while the directory is held, each with the
//! reason: a second `serve`, and `keys rotate-conductor` (the holder signs
//! with the conductor key; rotating it under a running holder would leave
//! it signing with a retired key).
//!
//! Relative paths and environment defaults are the client's: before
//! sending, the client writes its command line out in full
//! ([`explicit_argv`]), every path made absolute against its working
//! directory and every value taken from its environment or a default
//! spelled out; the holder parses that with the environment ignored.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use clap::{ArgAction, ArgMatches, FromArgMatches as _, ValueHint};
use serde::{Deserialize, Serialize};

use engine::data::{DataDir, Holding};
use engine::keys;

use crate::cli::{Cli, Command, KeysCommand};
use crate::exit;
use crate::stdout::{self, Elsewhere, errln};

/// The socket's file name in the data directory.
pub(crate) const SOCKET: &str = "control.sock";

/// The largest frame either side reads: a command line, a passphrase, or
/// one write of output (larger writes are sent in pieces).
const FRAME_BYTES_MAX: usize = 1 << 20;

/// How long the holder waits for a connected client's command.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a frame carries: one tag byte, a big-endian `u32` length, then
/// that many bytes.
mod tag {
    /// Client to holder: the [`super::Request`], as JSON.
    pub(super) const REQUEST: u8 = b'C';
    /// Client to holder: the answer to an [`ASK`], as JSON.
    pub(super) const ANSWER: u8 = b'A';
    /// Holder to client: bytes for the client's stdout.
    pub(super) const OUT: u8 = b'O';
    /// Holder to client: bytes for the client's stderr.
    pub(super) const ERR: u8 = b'E';
    /// Holder to client: a key file's passphrase is needed ([`super::Ask`]).
    pub(super) const ASK: u8 = b'P';
    /// Holder to client: the command's exit status, one byte; the last frame.
    pub(super) const EXIT: u8 = b'X';
}

/// Keywords some path arguments take instead of a path (`--module-cache
/// off`): they are sent as they are, not made absolute.
const PATH_KEYWORDS: [&str; 1] = ["off"];

/// Which values of an argument are paths of the client's, to be made
/// absolute before the holder reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paths {
    /// Not a path.
    No,
    /// A path (a `PathBuf` argument: clap's hint is `AnyPath`).
    Always,
    /// A path where the client has such a file, else something else: a
    /// key file or a hex public key (the hint `FilePath` on a `String`).
    IfFile,
    /// `NAME=FILE` (`--swap`): the part after the first `=`.
    AfterEquals,
}

fn paths_of(arg: &clap::Arg) -> Paths {
    if arg.get_value_names().is_some_and(|names| names.iter().any(|n| n.as_str().ends_with("=FILE"))) {
        return Paths::AfterEquals;
    }
    match arg.get_value_hint() {
        ValueHint::AnyPath | ValueHint::DirPath | ValueHint::ExecutablePath => Paths::Always,
        ValueHint::FilePath => Paths::IfFile,
        _ => Paths::No,
    }
}

/// `value` as the holder must read it (see [`Paths`]).
fn absolute(value: &str, paths: Paths, cwd: &Path) -> String {
    let join = |path: &str| -> String {
        if PATH_KEYWORDS.contains(&path) || Path::new(path).is_absolute() {
            path.to_owned()
        } else {
            cwd.join(path).to_string_lossy().into_owned()
        }
    };
    match paths {
        Paths::No => value.to_owned(),
        Paths::Always => join(value),
        Paths::IfFile if cwd.join(value).is_file() => join(value),
        Paths::IfFile => value.to_owned(),
        Paths::AfterEquals => match value.split_once('=') {
            Some((name, path)) => format!("{name}={}", join(path)),
            None => value.to_owned(),
        },
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The client's version: a command line is only read by the same one.
    version: String,
    /// The full command line ([`explicit_argv`]).
    argv: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    path: PathBuf,
    /// A new key's passphrase (asked twice, held to the minimum length).
    new: bool,
}

// ---------------------------------------------------------------------
// The client's side.

/// Runs the command in the process that holds its data directory, if one
/// does and answers on its socket: `Some(exit status)`. `None`: nothing
/// holds it (or the command names no data directory), so run it here.
pub(crate) fn forward(matches: &ArgMatches) -> Option<u8> {
    let data = data_dir(matches)?;
    let cwd = std::env::current_dir().ok()?;
    let socket = cwd.join(data).join(SOCKET);
    // Refused or absent: no holder (a socket left by a holder that was
    // killed answers nothing), so the command opens the directory itself.
    let stream = UnixStream::connect(&socket).ok()?;
    let argv = explicit_argv(&crate::cli::command(), matches, &cwd);
    Some(talk(stream, argv).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        exit::ERROR
    }))
}

/// The data directory the command names, if it has a `--data`.
fn data_dir(matches: &ArgMatches) -> Option<PathBuf> {
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    let raw = leaf.try_get_raw("data").ok()??.next()?;
    Some(PathBuf::from(raw))
}

/// Sends the command, relays what comes back, and returns its status.
fn talk(stream: UnixStream, argv: Vec<String>) -> Result<u8> {
    let mut writer = stream.try_clone().context("the server's control socket")?;
    let mut reader = BufReader::new(stream);
    let request = Request { version: env!("CARGO_PKG_VERSION").to_owned(), argv };
    write_frame(&mut writer, tag::REQUEST, &serde_json::to_vec(&request)?)
        .context("sending the command to the server that holds the data directory")?;
    let mut out = stdout::stdout();
    loop {
        let Some((tag, body)) = read_frame(&mut reader)? else {
            bail!(
                "the server holding the data directory stopped before the command finished; whether it \
                 took effect is unknown: the journal says (`conductor audit log`)"
            );
        };
        match tag {
            tag::OUT => out.write_all(&body)?,
            // As `eprintln!`: a closed stderr is not the command's failure.
            tag::ERR => drop(io::stderr().write_all(&body)),
            tag::ASK => {
                let ask: Ask = serde_json::from_slice(&body).context("a malformed question from the server")?;
                let answer = keys::ask_passphrase(&ask.path, ask.new).map_err(|e| format!("{e:#}"));
                write_frame(&mut writer, tag::ANSWER, &serde_json::to_vec(&answer)?)?;
            }
            tag::EXIT => {
                out.flush()?;
                return Ok(body.first().copied().unwrap_or(exit::ERROR));
            }
            other => bail!("the server sent an unknown frame ({other:#04x}); is it the same conductor version?"),
        }
    }
}

/// The command line of `matches` written out in full, for a process with
/// another working directory and environment: each argument that has a
/// value (typed, from the environment, or a default) is spelled out, and
/// relative paths are joined to `cwd`.
fn explicit_argv(command: &clap::Command, matches: &ArgMatches, cwd: &Path) -> Vec<String> {
    let mut argv = vec![command.get_name().to_owned()];
    let (mut command, mut matches) = (command, matches);
    while let Some((name, sub)) = matches.subcommand() {
        let Some(found) = command.find_subcommand(name) else { break };
        argv.push(name.to_owned());
        (command, matches) = (found, sub);
    }
    let mut positionals: Vec<String> = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => String::new(),
        };
        match arg.get_action() {
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version => {}
            ArgAction::SetTrue => {
                if matches.try_get_one::<bool>(id).ok().flatten() == Some(&true) {
                    argv.push(flag);
                }
            }
            ArgAction::SetFalse => {
                if matches.try_get_one::<bool>(id).ok().flatten() == Some(&false) {
                    argv.push(flag);
                }
            }
            ArgAction::Count => {
                let count = matches.try_get_one::<u8>(id).ok().flatten().copied().unwrap_or(0);
                argv.extend(std::iter::repeat_n(flag, usize::from(count)));
            }
            _ => {
                let Some(values) = matches.try_get_raw(id).ok().flatten() else { continue };
                let paths = paths_of(arg);
                for value in values {
                    let value = absolute(&value.to_string_lossy(), paths, cwd);
                    if arg.is_positional() {
                        positionals.push(value);
                    } else {
                        argv.push(format!("{flag}={value}"));
                    }
                }
            }
        }
    }
    if !positionals.is_empty() {
        // In their order (clap numbers positionals as they are declared,
        // and none of ours sets an index), after `--` so a value that
        // starts with `-` is not read as an option.
        argv.push("--".to_owned());
        argv.extend(positionals);
    }
    argv
}

// ---------------------------------------------------------------------
// The holder's side.

/// While held, other commands naming this data directory run in this
/// process (see the module docs). Dropping it removes the socket.
#[derive(Debug)]
pub(crate) struct Beside {
    _holding: Holding,
    socket: PathBuf,
}

impl Drop for Beside {
    fn drop(&mut self) {
        // Clients that connect from now on find no socket and open the
        // directory themselves once this process has let it go.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves other commands naming `data` for as long as the returned guard
/// lives.
pub(crate) fn serve_beside(data: &DataDir) -> Result<Beside> {
    let holding = data.hold()?;
    let socket = data.root.join(SOCKET);
    if UnixStream::connect(&socket).is_ok() {
        // Only reachable if the database lock failed to exclude another
        // holder; never take its socket away.
        bail!("another conductor answers on {}; stop it first", socket.display());
    }
    // Left by a holder that was killed: nothing answers on it.
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the stale {}", socket.display())),
    }
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        // A Unix socket's path has room for 107 bytes. Serving matters
        // more than this convenience: without the socket, other commands
        // wait for the server to stop, as they did before it existed.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            tracing::warn!(
                "other commands cannot run beside this server: {} is too long a path for a socket ({e}); \
                 a shorter --data path allows it",
                socket.display()
            );
            return Ok(Beside { _holding: holding, socket });
        }
        Err(e) => return Err(e).with_context(|| format!("listening on {}", socket.display())),
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} owner-only", socket.display()))?;
    }
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&data.root).with_context(|| format!("reading {}", data.root.display()))?.uid()
    };
    std::thread::Builder::new()
        .name("local-clients".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let spawned =
                    std::thread::Builder::new().name("local-client".into()).spawn(move || serve_client(stream, owner));
                if let Err(e) = spawned {
                    tracing::error!("could not start a thread for a local command: {e}");
                }
            }
        })
        .context("starting the control socket's thread")?;
    Ok(Beside { _holding: holding, socket })
}

/// One client: read its command, run it, send back its output and status.
fn serve_client(stream: UnixStream, owner: u32) {
    match peer_uid(&stream) {
        Ok(uid) if uid == owner => {}
        Ok(uid) => {
            tracing::warn!("refused a local command from uid {uid}: the data directory belongs to uid {owner}");
            return;
        }
        Err(e) => {
            tracing::warn!("refused a local command whose sender could not be identified: {e}");
            return;
        }
    }
    let Ok(writer) = stream.try_clone() else { return };
    let reply = Arc::new(Reply { stream: Mutex::new(writer), gone: AtomicBool::new(false) });
    let mut reader = stream;
    let request = read_request(&mut reader);
    let code = match request {
        None => {
            reply.err(b"error: the server could not read the command sent to it\n");
            exit::ERROR
        }
        Some(request) if request.version != env!("CARGO_PKG_VERSION") => {
            let message = format!(
                "error: this conductor is {}, the server holding the data directory is {}: use the same \
                 version for both\n",
                request.version,
                env!("CARGO_PKG_VERSION")
            );
            reply.err(message.as_bytes());
            exit::INVALID
        }
        Some(request) => run_for(&request.argv, reply.clone(), reader),
    };
    reply.send(tag::EXIT, &[code]);
}

/// The client's command. A client sends it as soon as it connects; one
/// that does not is not left holding a thread. Questions to the client
/// afterwards (a passphrase a person types) wait as long as it takes.
fn read_request(stream: &mut UnixStream) -> Option<Request> {
    stream.set_read_timeout(Some(REQUEST_WAIT)).ok()?;
    let (tag, body) = read_frame(stream).ok()??;
    stream.set_read_timeout(None).ok()?;
    if tag != tag::REQUEST {
        return None;
    }
    serde_json::from_slice(&body).ok()
}

/// Runs one client's command with its output and questions going to it.
fn run_for(argv: &[String], reply: Arc<Reply>, reader: UnixStream) -> u8 {
    let to: Arc<dyn Elsewhere> = reply.clone();
    stdout::writing_elsewhere(to, || {
        let cli = match parse_explicit(argv) {
            Ok(cli) => cli,
            Err(e) => {
                errln!("{}", e.render());
                return exit::INVALID;
            }
        };
        if let Some(reason) = refused_beside(&cli.command) {
            errln!("error: {reason}");
            return exit::BUSY;
        }
        let reader = Mutex::new(reader);
        keys::asking_elsewhere(
            move |path, new| reply.ask(&reader, path, new),
            || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::dispatch(cli))) {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    errln!("error: {e:#}");
                    crate::error_code(&e)
                }
                Err(_) => {
                    errln!("error: the command failed inside the server that holds the data directory (see its log)");
                    exit::ERROR
                }
            },
        )
    })
}

/// Parses a command line from [`explicit_argv`], ignoring this process's
/// environment (the client's was written into it).
fn parse_explicit(argv: &[String]) -> Result<Cli, clap::Error> {
    fn without_env(command: clap::Command) -> clap::Command {
        let subcommands: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        let mut command = command.mut_args(|arg| arg.env(None::<&str>));
        for name in subcommands {
            command = command.mut_subcommand(name, without_env);
        }
        command
    }
    let matches = without_env(crate::cli::command()).try_get_matches_from(argv)?;
    Cli::from_arg_matches(&matches)
}

/// Why `command` cannot run beside the holder, if it cannot.
fn refused_beside(command: &Command) -> Option<&'static str> {
    match command {
        Command::Serve(_) => Some(
            "a conductor already holds this data directory and serves it (its address is in serve.url there); \
             use that server, or stop it first",
        ),
        Command::Keys(KeysCommand::RotateConductor { .. }) => {
            Some("the running conductor signs with the conductor key; stop it, rotate the key, and start it again")
        }
        _ => None,
    }
}

/// The holder's end of one client's connection.
#[derive(Debug)]
struct Reply {
    stream: Mutex<UnixStream>,
    /// Set once a write failed: the client went away, and the rest of the
    /// output is discarded while the command finishes its work.
    gone: AtomicBool,
}

impl Reply {
    fn send(&self, tag: u8, body: &[u8]) {
        if self.gone.load(Ordering::Relaxed) {
            return;
        }
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        for piece in body.chunks(FRAME_BYTES_MAX).chain(body.is_empty().then_some(&[][..])) {
            if write_frame(&mut *stream, tag, piece).is_err() {
                self.gone.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Asks the client for a key file's passphrase and waits for it.
    fn ask(&self, reader: &Mutex<UnixStream>, path: &Path, new: bool) -> Result<String> {
        let question = serde_json::to_vec(&Ask { path: path.to_owned(), new })?;
        self.send(tag::ASK, &question);
        let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
        match read_frame(&mut *reader)? {
            Some((tag::ANSWER, body)) => {
                let answer: Result<String, String> = serde_json::from_slice(&body).context("a malformed answer")?;
                answer.map_err(anyhow::Error::msg)
            }
            _ => bail!("the client went away before giving the passphrase for {}", path.display()),
        }
    }
}

impl Elsewhere for Reply {
    fn out(&self, bytes: &[u8]) {
        self.send(tag::OUT, bytes);
    }

    fn err(&self, bytes: &[u8]) {
        self.send(tag::ERR, bytes);
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

/// The user id of the process at the other end of `stream`.
#[allow(unsafe_code)]
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap_or(0);
    // SAFETY: `cred` and `len` are live locals of the types SO_PEERCRED
    // reads and writes; the kernel writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn write_frame(to: &mut impl Write, tag: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(tag);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    to.write_all(&frame)?;
    to.flush()
}

/// The next frame, or `None` at a clean end of the stream.
fn read_frame(from: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match from.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading from the control socket"),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > FRAME_BYTES_MAX {
        bail!("a frame of {len} bytes on the control socket (at most {FRAME_BYTES_MAX})");
    }
    let mut body = vec![0; len];
    from.read_exact(&mut body).context("reading from the control socket")?;
    Ok(Some((head[0], body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf command with each kind of argument it has, relative paths
    /// included.
    const SAMPLES: &[&str] = &[
        "conductor run m.yaml --data d --new --json --concurrency 8 --models reg.yaml --module-cache off --air-gap",
        "conductor serve --data d --bind 127.0.0.1:0 --run a.yaml --run b.yaml --allow-remote",
        "conductor gateway issue --data d --name n --limit 5 --key op.key --json",
        "conductor gateway list --data d --json",
        "conductor gateway revoke --data d n --key op.key --reason why",
        "conductor cases add --data d M a.json b.json --json",
        "conductor tokens issue --data d --role operator --mission M --expires 30d --name n --key op.key --json",
        "conductor tokens list --data d --json",
        "conductor tokens revoke cdt_1 --data d --key op.key",
        "conductor mission validate m.yaml",
        "conductor mission schema",
        "conductor mission resume M --data d --concurrency 2",
        "conductor mission close M --data d",
        "conductor mission list --data d --json",
        "conductor mission show M --data d --json",
        "conductor mission report M --data d --html r.html",
        "conductor audit verify --data d --checkpoint c1 --checkpoint c2 --json",
        "conductor audit export --data d --out j.cjx --json",
        "conductor audit replay --data d --mission M --task 3 --modules mods --swap a=x.wasm --module-cache c",
        "conductor audit show --data d D --json",
        "conductor audit log --data d --kind task. --mission M --json",
        "conductor audit checkpoint --data d --out c.ckpt --latest",
        "conductor ledger show --data d --tasks --json",
        "conductor ledger extend ACC --amount 5 --key r.key --data d --reason why",
        "conductor gates list --data d --json",
        "conductor gates sweep --data d --no-resume --json --model-dir m",
        "conductor gates approve G --key r.key --data d --edit={\"a\":1} --note n --no-resume",
        "conductor gates reject G --key r.key --data d --note n --json",
        "conductor keys new --role operator --out r.key --passphrase",
        "conductor keys register --data d r.key --role reviewer --name N --init",
        "conductor keys revoke --data d r.key --reason why",
        "conductor keys rotate --data d r.key s.key --reason why",
        "conductor keys rotate-conductor --data d --reason why",
        "conductor keys list --data d --json",
        "conductor memory query --data d --subject s --predicate p --space a --space b --as-of-valid 5 --limit 3 --json",
        "conductor memory erase --data d --subject s --key op.key --reason why",
        "conductor models check a b --models reg.yaml --model-dir m --air-gap --json",
        "conductor modules sign a.wasm --key k.key",
        "conductor modules verify a.wasm --trusted aa --trusted bb",
    ];

    fn parsed(argv: &[String]) -> Option<(Cli, ArgMatches)> {
        let matches = crate::cli::command().try_get_matches_from(argv).ok()?;
        Some((Cli::from_arg_matches(&matches).ok()?, matches))
    }

    /// Written out in full and parsed again (as the holder does), a command
    /// line means what it meant: with an empty working directory the
    /// paths stay as they were, so the two parses must be identical.
    #[test]
    fn a_command_line_written_out_means_the_same() {
        let mut checked = 0;
        for sample in SAMPLES {
            let argv: Vec<String> = sample.split(' ').map(str::to_owned).collect();
            // A sample this build's CLI does not accept is skipped here
            // and caught by the coverage test below.
            let Some((cli, matches)) = parsed(&argv) else { continue };
            let explicit = explicit_argv(&crate::cli::command(), &matches, Path::new(""));
            let again = parse_explicit(&explicit).unwrap_or_else(|e| panic!("{sample}\n{explicit:?}\n{e}"));
            assert_eq!(format!("{cli:?}"), format!("{again:?}"), "{sample} -> {explicit:?}");
            checked += 1;
        }
        assert_eq!(checked, SAMPLES.len(), "every sample parses");
    }

    #[test]
    fn every_leaf_command_has_a_sample_that_parses() {
        fn leaves(command: &clap::Command, path: String, out: &mut Vec<String>) {
            let subs: Vec<_> = command.get_subcommands().filter(|c| c.get_name() != "help").collect();
            if subs.is_empty() {
                out.push(path);
                return;
            }
            for sub in subs {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut all = Vec::new();
        leaves(&crate::cli::command(), "conductor".into(), &mut all);
        let parsing: Vec<&str> = SAMPLES
            .iter()
            .copied()
            .filter(|s| parsed(&s.split(' ').map(str::to_owned).collect::<Vec<_>>()).is_some())
            .collect();
        for leaf in all {
            assert!(
                parsing.iter().any(|s| s.starts_with(&format!("{leaf} ")) || *s == leaf),
                "no sample of `{leaf}` parses: add or fix one in SAMPLES"
            );
        }
    }

    #[test]
    fn relative_paths_are_the_clients_and_keywords_stay() {
        let argv: Vec<String> =
            "conductor audit replay --data d --module-cache off --modules /abs/mods --swap a=x.wasm"
                .split(' ')
                .map(str::to_owned)
                .collect();
        let (_, matches) = parsed(&argv).expect("parses");
        let explicit = explicit_argv(&crate::cli::command(), &matches, Path::new("/home/op"));
        for expected in ["--data=/home/op/d", "--module-cache=off", "--modules=/abs/mods", "--swap=a=/home/op/x.wasm"] {
            assert!(explicit.iter().any(|a| a == expected), "{expected} not in {explicit:?}");
        }
        let argv: Vec<String> = "conductor run m.yaml --data d".split(' ').map(str::to_owned).collect();
        let (_, matches) = parsed(&argv).expect("parses");
        let explicit = explicit_argv(&crate::cli::command(), &matches, Path::new("/home/op"));
        // The default model directory is spelled out, as the client's.
        for expected in ["--model-dir=/home/op/.cache/models", "/home/op/m.yaml", "--concurrency=4"] {
            assert!(explicit.iter().any(|a| a == expected), "{expected} not in {explicit:?}");
        }
    }

    #[test]
    fn a_key_or_hex_argument_is_a_path_only_where_such_a_file_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("r.key"), "x").expect("write");
        let argv: Vec<String> = "conductor keys rotate --data d r.key aabbcc".split(' ').map(str::to_owned).collect();
        let (_, matches) = parsed(&argv).expect("parses");
        let explicit = explicit_argv(&crate::cli::command(), &matches, dir.path());
        let key = dir.path().join("r.key").to_string_lossy().into_owned();
        assert_eq!(explicit[explicit.len() - 2..], [key, "aabbcc".to_owned()], "{explicit:?}");
    }

    #[test]
    fn frames_round_trip_and_a_huge_length_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, tag::OUT, b"hello").expect("write");
        let mut reader = &buf[..];
        assert_eq!(read_frame(&mut reader).expect("read"), Some((tag::OUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut reader).expect("eof"), None);
        let mut huge = vec![tag::OUT];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}

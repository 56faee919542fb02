//! Every command beside a running server (#21 item 4): while `conductor
//! serve` holds the data directory, each other command naming it runs in
//! the server, through the local control socket (`conductor/src/local.rs`),
//! with the caller's own paths, key files and passphrase, and exits as it
//! would alone. Driven through the real binary, on the scripted model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";

/// `conductor ARGS --data DATA`, run in `cwd` so relative paths are the
/// caller's.
fn cli(cwd: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd: Command = conductor();
    cmd.current_dir(cwd).args(args).arg("--data").arg(data);
    run(&mut cmd)
}

fn ok(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commands that only read, each with `--json` where it has one:
/// what they print with the server running must be what they print alone.
fn reads(mission: &str) -> Vec<Vec<String>> {
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    vec![
        words("mission list --json"),
        words(&format!("mission show {mission} --json")),
        words(&format!("mission report {mission} --json")),
        words("ledger show --tasks --json"),
        words("gates list --json"),
        words("keys list --json"),
        words("tokens list --json"),
        words("gateway list --json"),
        words("audit log --json"),
        words("audit verify --json"),
        words(&format!("audit show {mission}/claim-3 --json")),
        words("memory query --subject policy:housing-support --json"),
    ]
}

/// A mission of three cases, two of them gated for review, run on the
/// scripted model to where it waits for its reviewers.
fn mission_awaiting_review(dir: &Path, data: &Path, registry: &Path) -> (String, Vec<String>) {
    let cases = "    - { id: claim-1, outcome: disputed, reason: one }\n\
                 \x20   - { id: claim-2, outcome: disputed, reason: two }\n\
                 \x20   - { id: claim-3, outcome: covered }\n";
    let extra = format!(
        "gates:\n  - {{ name: dispute, when: {{ field: decision.outcome, equals: disputed }} }}\nmemory:\n{}",
        policy_facts()
    );
    let mission = swarm_mission(dir, "beside", 5_000, cases, &extra);
    let out =
        run(conductor().arg("run").arg(&mission).arg("--models").arg(registry).arg("--data").arg(data).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["status"], "awaiting_review", "{summary}");
    let gates = ["claim-1", "claim-2"].map(|c| by_case(&summary, c)["gate"].as_str().expect("a gate").to_owned());
    (summary["mission_id"].as_str().expect("mission id").to_owned(), gates.to_vec())
}

/// People's keys in `dir`: an operator's and a reviewer's sealed under a
/// passphrase, both registered.
fn people(dir: &Path, data: &Path) {
    registered_operator(data, &dir.join("operator.key"));
    let out = run(conductor()
        .env("CONDUCTOR_KEY_PASSPHRASE", PASSPHRASE)
        .args(["keys", "new", "--role", "reviewer", "--passphrase", "--out"])
        .arg(dir.join("reviewer.key")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ok(&cli(dir, data, &["keys", "register", "reviewer.key", "--name", "R. Viewer"]));
}

#[test]
fn every_command_runs_in_the_server_that_holds_the_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir, data) = (dir.path(), dir.path().join("data"));
    let registry = scripted_registry(dir);
    let (mission, gates) = mission_awaiting_review(dir, &data, &registry);
    people(dir, &data);

    // Reads: the same answers through the server as alone.
    let server = Served::start(&data, &["--models".as_ref(), registry.as_os_str()]);
    assert!(data.join("control.sock").exists(), "the server listens on its control socket");
    let served: Vec<String> = reads(&mission)
        .iter()
        .map(|args| ok(&cli(dir, &data, &args.iter().map(String::as_str).collect::<Vec<_>>())))
        .collect();
    server.stop();
    assert!(!data.join("control.sock").exists(), "a stopped server leaves no socket");
    for (args, through_server) in reads(&mission).iter().zip(&served) {
        let alone = ok(&cli(dir, &data, &args.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(*through_server, alone, "`conductor {}` answers the same through the server", args.join(" "));
    }

    // Writes, with relative paths, key files and a passphrase that are
    // the caller's, not the server's (which has no passphrase set).
    let server = Served::start(&data, &["--models".as_ref(), registry.as_os_str()]);
    let out = run(conductor().current_dir(dir).args(["keys", "new", "--role", "auditor", "--out", "auditor.key"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ok(&cli(dir, &data, &["keys", "register", "auditor.key", "--name", "A. Uditor"]));
    let issued: Value = serde_json::from_str(&ok(&cli(
        dir,
        &data,
        &["gateway", "issue", "--name", "app", "--limit", "100", "--key", "operator.key", "--json"],
    )))
    .expect("gateway issue --json");
    assert!(issued["key"].as_str().is_some_and(|k| k.starts_with("cgw_")), "{issued}");
    let token: Value = serde_json::from_str(&ok(&cli(
        dir,
        &data,
        &["tokens", "issue", "--role", "auditor", "--name", "nightly", "--key", "operator.key", "--json"],
    )))
    .expect("tokens issue --json");
    let token_id = token["id"].as_str().expect("token id").to_owned();
    ok(&cli(dir, &data, &["tokens", "revoke", &token_id, "--key", "operator.key"]));

    // The passphrase is asked of the caller: from its environment here.
    let decide = |verb: &str, gate: &str, passphrase: Option<&str>| {
        let mut cmd = conductor();
        if let Some(p) = passphrase {
            cmd.env("CONDUCTOR_KEY_PASSPHRASE", p);
        }
        cmd.current_dir(dir).args(["gates", verb, gate, "--key", "reviewer.key", "--no-resume", "--data"]).arg(&data);
        run(&mut cmd)
    };
    let wrong = decide("approve", &gates[0], Some("not the passphrase at all"));
    assert_ne!(wrong.status.code(), Some(0), "a wrong passphrase decides nothing");
    ok(&decide("approve", &gates[0], Some(PASSPHRASE)));
    ok(&decide("reject", &gates[1], Some(PASSPHRASE)));

    let reg = registry.to_string_lossy().into_owned();
    // Both gates decided, the mission is complete: `resume` says so, as
    // it would alone.
    let resumed = cli(dir, &data, &["mission", "resume", &mission, "--models", &reg]);
    assert_eq!(resumed.status.code(), Some(1), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("is completed; only a paused"), "{}", stderr(&resumed));
    let extend = {
        let mut cmd = conductor();
        cmd.env("CONDUCTOR_KEY_PASSPHRASE", PASSPHRASE).current_dir(dir);
        cmd.args(["ledger", "extend", &mission, "--amount", "100", "--key", "reviewer.key", "--data"]).arg(&data);
        run(&mut cmd)
    };
    ok(&extend);
    ok(&cli(dir, &data, &["gates", "sweep", "--models", &reg]));
    ok(&cli(dir, &data, &["audit", "replay", "--mission", &mission]));
    ok(&cli(dir, &data, &["memory", "erase", "--subject", "policy:housing-support", "--key", "operator.key"]));
    ok(&cli(dir, &data, &["gateway", "revoke", "app", "--key", "operator.key", "--reason", "test over"]));
    ok(&cli(dir, &data, &["keys", "revoke", "auditor.key", "--reason", "left"]));
    let out = run(conductor().current_dir(dir).args(["keys", "new", "--role", "operator", "--out", "operator2.key"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ok(&cli(dir, &data, &["keys", "rotate", "operator.key", "operator2.key", "--reason", "scheduled"]));

    ok(&cli(dir, &data, &["audit", "export", "--out", "journal.cjx"]));
    assert!(dir.join("journal.cjx").is_file(), "the export is written where the caller named it");
    ok(&cli(dir, &data, &["audit", "checkpoint", "--out", "held.ckpt"]));
    assert!(dir.join("held.ckpt").is_file());

    // A whole mission run by the server for the caller: its progress and
    // summary come back, and the server keeps serving.
    let second = swarm_mission(dir, "second", 5_000, "    - { id: s-1, outcome: covered }\n", "");
    let out = cli(dir, &data, &["run", "second.yaml", "--models", &registry.to_string_lossy(), "--json"]);
    let summary: Value = serde_json::from_str(&ok(&out)).expect("run --json");
    assert_eq!(summary["status"], "completed", "{summary}");
    assert!(stderr(&out).contains("mission second"), "the progress is the caller's: {}", stderr(&out));
    assert!(second.is_file());

    // What cannot run beside the server says why, and exits 8.
    let again = cli(dir, &data, &["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(again.status.code(), Some(8), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds this data directory"), "{}", stderr(&again));
    let rotate = cli(dir, &data, &["keys", "rotate-conductor"]);
    assert_eq!(rotate.status.code(), Some(8), "{}", stderr(&rotate));
    assert!(stderr(&rotate).contains("stop it"), "{}", stderr(&rotate));

    // Exit statuses are the command's own: a tampered check or a bad
    // argument fails as it would alone.
    let unknown = cli(dir, &data, &["mission", "show", "no-such-mission"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("no-such-mission"), "{}", stderr(&unknown));
    let missions: Value = serde_json::from_str(&ok(&cli(dir, &data, &["mission", "list", "--json"]))).expect("json");
    assert_eq!(missions.as_array().map(Vec::len), Some(2), "{missions}");
    ok(&cli(dir, &data, &["audit", "verify"]));
    server.stop();

    // Alone again: everything the server did for its callers is in the
    // journal, which verifies, and both gates are decided.
    let listed: Value = serde_json::from_str(&ok(&cli(dir, &data, &["gates", "list", "--json"]))).expect("json");
    let listed = listed.as_array().expect("gates");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|g| g["status"] != "pending"), "{listed:?}");
    assert_eq!(journal(&data, "gate.decided").len(), 2);
    assert_eq!(journal(&data, "token.revoked").len(), 1);
    for kind in ["budget.extended", "memory.erased", "gateway.key_revoked", "key.revoked", "key.rotated"] {
        assert_eq!(journal(&data, kind).len(), 1, "one {kind}, written by the server for its caller");
    }
    assert_eq!(journal(&data, "gateway.key_issued").len(), 1);
    assert!(journal(&data, "key.registered").len() >= 3, "operator, reviewer and auditor");
    let verify = cli(dir, &data, &["audit", "verify", "--checkpoint", "held.ckpt"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    let bundle = run(conductor().current_dir(dir).args(["audit", "verify", "--bundle", "journal.cjx"]));
    assert_eq!(bundle.status.code(), Some(0), "{}", stderr(&bundle));
}

#[test]
fn a_killed_servers_socket_stops_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir, data) = (dir.path(), dir.path().join("data"));
    registered_operator(&data, &dir.join("operator.key"));
    let mut server = Served::start(&data, &[]);
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");
    assert!(data.join("control.sock").exists(), "kill -9 leaves the socket behind");
    // Nothing answers on it: the command opens the directory itself.
    ok(&cli(dir, &data, &["keys", "list"]));
    // And a new server takes the socket over.
    let server = Served::start(&data, &[]);
    let listed: Value = serde_json::from_str(&ok(&cli(dir, &data, &["keys", "list", "--json"]))).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "the conductor's and the operator's: {listed}");
    server.stop();
}

/// The socket and its directory are the owner's alone.
#[test]
fn the_socket_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let server = Served::start(&data, &[]);
    ok(&cli(dir.path(), &data, &["keys", "list"]));
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("control.sock")), 0o600);
    assert_eq!(mode(&data), 0o700);
    server.stop();
}

/// A data directory whose socket path would be too long (a Unix socket's
/// path has room for 107 bytes) is still served; commands beside it then
/// say the directory is in use, as before the socket existed.
#[test]
fn a_data_directory_too_deep_for_a_socket_is_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d".repeat(100)).join("data");
    let server = Served::start(&data, &[]);
    assert!(!data.join("control.sock").exists());
    let out = cli(dir.path(), &data, &["keys", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is in use"), "{}", stderr(&out));
    server.stop();
}

/// What the server answers on its socket to a client that sends nothing,
/// or something that is not a command: an error and exit status 1, and
/// the connection is closed (no thread waits on it forever).
#[test]
fn a_silent_or_garbled_client_gets_an_error_not_a_thread() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Served::start(&data, &[]);
    // Every frame is a tag byte, a big-endian u32 length, then the bytes.
    let answer = |mut stream: UnixStream| -> Vec<u8> {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("a read timeout");
        let mut all = Vec::new();
        stream.read_to_end(&mut all).expect("the server answers and closes");
        all
    };
    let garbled = UnixStream::connect(data.join("control.sock")).expect("connect");
    (&garbled).write_all(b"Z\0\0\0\x02hi").expect("send a frame that is no command");
    let start = std::time::Instant::now();
    let silent = UnixStream::connect(data.join("control.sock")).expect("connect");
    for reply in [answer(garbled), answer(silent)] {
        assert!(String::from_utf8_lossy(&reply).contains("could not read the command"), "{reply:?}");
        assert_eq!(reply[reply.len() - 6..], *b"X\0\0\0\x01\x01", "the last frame is exit status 1: {reply:?}");
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "the silent client waited {:?}", start.elapsed());
    ok(&cli(dir.path(), &data, &["keys", "list"]));
    server.stop();
}

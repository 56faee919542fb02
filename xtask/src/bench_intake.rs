//! `cargo xtask bench-intake`: durable, acknowledged intake of cases into
//! an open mission through the real server (#21 item 8).
//!
//! One `conductor serve` runs an open mission on the scripted backend. A
//! load generator written for the benchmark (keep-alive HTTP/1.1 over
//! std's TcpStream, one thread per connection) POSTs single cases, each
//! with its own idempotency key, with an operator API token; a case counts
//! only when the server answered 201, which it does once `case.received`
//! is durable (group commit). Three phases:
//!
//! 1. intake alone: the mission is paused, so cases only queue;
//! 2. the same with N watchers of the mission's progress stream (server-sent
//!    events, one a second while the queue grows);
//! 3. the mission resumed: it works the queue (end to end, scripted
//!    model) while the load continues; then it is closed, drains, and the
//!    journal is verified.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::bench_engine::{Bench, Conn, Server, cpu_seconds, machine, pct, prepare, proc_status};
use crate::step;

#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of load in each phase.
    pub seconds: u64,
    pub connections: usize,
    /// Event-stream watchers in phase 2.
    pub watchers: usize,
    pub no_build: bool,
    pub dir: PathBuf,
}

/// `serve --concurrency` for the mission.
const CELLS: &str = "64";

/// How long the benchmark waits for the server to do something.
const WAIT: Duration = Duration::from_secs(600);

struct Phase {
    name: &'static str,
    acknowledged: u64,
    refused: u64,
    errors: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    server_cpu_s: f64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.acknowledged as f64 / self.seconds
    }
}

pub fn intake(root: &Path, opts: &Options) -> Result<()> {
    ensure!((1..=1024).contains(&opts.connections), "--connections must be 1..=1024");
    let (dir, bin, registry) = prepare(root, opts.no_build, &opts.dir)?;
    let bench = Bench { bin, registry, dir: dir.clone(), strace: false, env: Vec::new() };
    let module = root.join("cells/guests/bench-agent/bench.wasm");
    ensure!(module.is_file(), "{} is missing: run `cargo xtask build-agents`", module.display());
    let data = dir.join("data");
    let key = dir.join("operator.key");
    let out = bench.conductor().args(["keys", "new", "--role", "operator", "--out"]).arg(&key).output()?;
    ensure!(out.status.success(), "keys new: {}", String::from_utf8_lossy(&out.stderr));
    let key_arg = key.display().to_string();
    bench.ok(&["keys", "register", "--init", &key_arg], &data)?;
    let issued =
        bench.ok(&["tokens", "issue", "--role", "operator", "--name", "bench", "--key", &key_arg, "--json"], &data)?;
    let token: Value = serde_json::from_str(issued.trim()).context("the token issue's JSON")?;
    let token = token["token"].as_str().context("no token in the answer")?.to_owned();
    let mission = dir.join("intake.yaml");
    std::fs::write(
        &mission,
        format!(
            "name: bench-intake\nbudget:\n  limit: 1000000000000\nmodels:\n  smollm2-135m: {{ prompt_price: 1, completion_price: 1 }}\n\
             agents:\n  - {{ name: clerk, module: {}, model: smollm2-135m }}\nintake:\n  agent: clerk\n  queue: 1000000\n",
            module.display()
        ),
    )?;
    // Cells at once while the mission works its queue (phase 3): as many
    // as the orchestration benchmark's middle setting.
    let server = Server::start_with(
        &bench,
        &data,
        None,
        &["--concurrency".as_ref(), CELLS.as_ref(), "--run".as_ref(), mission.as_os_str()],
    )?;
    let addr = server.addr.clone();
    let mut conn = Conn::new(&addr);
    let id = wait_for(|| {
        let (status, body) = call(&mut conn, "GET", "/api/missions", &token, b"")?;
        ensure!(status == 200, "GET /api/missions: {status}");
        let v: Value = serde_json::from_slice(&body)?;
        Ok(v["missions"].as_array().and_then(|m| m.first()).and_then(|m| m["id"].as_str()).map(str::to_owned))
    })?;
    let (status, body) = call(&mut conn, "POST", &format!("/api/missions/{id}/pause"), &token, b"{}")?;
    ensure!(status == 200, "pause: {status} {}", String::from_utf8_lossy(&body));
    wait_for(|| Ok((status_of(&mut conn, &token, &id)? == "paused").then_some(())))?;

    step(&format!("phase 1: intake alone, {} connections, {} s", opts.connections, opts.seconds));
    let next = Arc::new(AtomicU64::new(0));
    let alone = load("intake alone (mission paused)", &addr, &token, &id, opts, &next, server.pid)?;
    step(&format!("phase 2: the same with {} event-stream watchers", opts.watchers));
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..opts.watchers)
        .map(|_| watch(addr.clone(), token.clone(), id.clone(), stop.clone()))
        .collect::<Result<_>>()?;
    let watched = load("intake with watchers", &addr, &token, &id, opts, &next, server.pid);
    stop.store(true, Ordering::SeqCst);
    let mut events = 0;
    for w in watchers {
        events += w.join().map_err(|_| anyhow::anyhow!("a watcher panicked"))?;
    }
    let watched = watched?;
    step("phase 3: the mission resumed, working the queue while cases keep arriving");
    let (status, body) = call(&mut conn, "POST", &format!("/api/missions/{id}/resume"), &token, b"{}")?;
    ensure!(status == 202, "resume: {status} {}", String::from_utf8_lossy(&body));
    let started = Instant::now();
    let busy = load("intake while the mission runs", &addr, &token, &id, opts, &next, server.pid)?;
    let (status, body) = call(&mut conn, "POST", &format!("/api/missions/{id}/close"), &token, b"{}")?;
    ensure!(status == 200, "close: {status} {}", String::from_utf8_lossy(&body));
    wait_for(|| Ok((status_of(&mut conn, &token, &id)? == "completed").then_some(())))?;
    let drained = started.elapsed().as_secs_f64();
    let received = alone.acknowledged + watched.acknowledged + busy.acknowledged;
    let rss_kib = proc_status(server.pid, "VmHWM").unwrap_or(0);
    server.stop()?;
    let (verified, verify_s, line) = bench.verify(&data)?;

    println!("\nbench-intake: durable acknowledged intake into an open mission, {}", machine());
    println!("one case per request, its own idempotency key, operator API token; 201 = case.received durable");
    println!(
        "\n{:<34} {:>6} {:>12} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "phase", "conns", "acked", "cases/s", "p50 ms", "p99 ms", "max ms", "refused", "errors"
    );
    for p in [&alone, &watched, &busy] {
        println!(
            "{:<34} {:>6} {:>12} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>8}",
            p.name,
            opts.connections,
            p.acknowledged,
            p.rate(),
            p.p50_us as f64 / 1000.0,
            p.p99_us as f64 / 1000.0,
            p.max_us as f64 / 1000.0,
            p.refused,
            p.errors
        );
    }
    println!(
        "\nwatchers: {} event streams open in phase 2 got {events} events; throughput with them / without: {:.2}",
        opts.watchers,
        watched.rate() / alone.rate()
    );
    println!(
        "server CPU per acknowledged case: {:.0} us alone, {:.0} us with watchers",
        alone.server_cpu_s * 1e6 / alone.acknowledged.max(1) as f64,
        watched.server_cpu_s * 1e6 / watched.acknowledged.max(1) as f64
    );
    println!(
        "phase 3: {received} cases in all, every one decided {drained:.1} s after the resume ({:.0} tasks/s end to end, \
         {CELLS} cells, with intake running beside it for its first {} s)",
        received as f64 / drained,
        opts.seconds
    );
    println!("server peak RSS {} MiB", rss_kib / 1024);
    println!("audit verify: {} in {verify_s:.1} s ({line})", if verified { "ok" } else { "FAILED" });
    println!("\ntarget (#21): >= 5,000 durable acknowledged cases/s; watchers with no effect on throughput");
    ensure!(verified, "the journal did not verify");
    Ok(())
}

/// One request on the control connection, reconnecting once: the server
/// closes a keep-alive connection that sat idle through a phase.
fn call(conn: &mut Conn, method: &str, path: &str, token: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    conn.send(method, path, token, body).or_else(|_| conn.send(method, path, token, body))
}

fn status_of(conn: &mut Conn, token: &str, id: &str) -> Result<String> {
    let (status, body) = call(conn, "GET", &format!("/api/missions/{id}"), token, b"")?;
    ensure!(status == 200, "GET mission: {status}");
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["status"].as_str().unwrap_or("").to_owned())
}

fn wait_for<T>(mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > WAIT {
            bail!("timed out waiting for the server");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `connections` threads POSTing single cases for `opts.seconds`.
fn load(
    name: &'static str,
    addr: &str,
    token: &str,
    mission: &str,
    opts: &Options,
    next: &Arc<AtomicU64>,
    pid: u32,
) -> Result<Phase> {
    let until = Instant::now() + Duration::from_secs(opts.seconds);
    let cpu_before = cpu_seconds(&pid.to_string()).unwrap_or(0.0);
    let start = Instant::now();
    let path = format!("/api/missions/{mission}/cases");
    let threads: Vec<_> = (0..opts.connections)
        .map(|_| {
            let (addr, token, path, next) = (addr.to_owned(), token.to_owned(), path.clone(), next.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(&addr);
                let (mut latencies, mut refused, mut errors) = (Vec::with_capacity(8192), 0u64, 0u64);
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let body = json!({"id": format!("case-{n}"), "idempotency_key": format!("key-{n}"),
                                      "input": {"prompt": format!("case {n}: is the applicant eligible"), "max_tokens": 4}})
                    .to_string();
                    let sent = Instant::now();
                    match conn.post(&path, &token, body.as_bytes()) {
                        Ok((201, _)) => latencies.push(sent.elapsed().as_micros() as u64),
                        Ok(_) => refused += 1,
                        Err(_) => errors += 1,
                    }
                }
                (latencies, refused, errors)
            })
        })
        .collect();
    let (mut latencies, mut refused, mut errors) = (Vec::new(), 0, 0);
    for t in threads {
        let (l, r, e) = t.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        latencies.extend(l);
        refused += r;
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Phase {
        name,
        acknowledged: latencies.len() as u64,
        refused,
        errors,
        seconds,
        p50_us: pct(&latencies, 0.50),
        p99_us: pct(&latencies, 0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        server_cpu_s: cpu_seconds(&pid.to_string()).unwrap_or(0.0) - cpu_before,
    })
}

/// One watcher of the mission's progress stream
/// (`/api/missions/{id}/events`, a `progress` event whenever the queue or
/// spend moves) until `stop`; returns the events it got.
fn watch(addr: String, token: String, mission: String, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<u64>> {
    let mut stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    write!(
        stream,
        "GET /api/missions/{mission}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )?;
    Ok(std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let mut events = 0;
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.starts_with("event:") => events += 1,
                Ok(_) => {}
                Err(_) => {}
            }
        }
        let mut rest = Vec::new();
        let _ = reader.get_mut().set_read_timeout(Some(Duration::from_millis(1)));
        let _ = reader.read_to_end(&mut rest);
        events
    }))
}

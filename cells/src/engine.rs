use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::env::CellEnv;
use crate::host::{CellHost, Decision};
use crate::limits::{CellError, CellFailure, CellLimits};

mod bindings {
    wasmtime::component::bindgen!({
        world: "agent",
        path: "wit",
        // Host calls may trap: that is how limits stop a hostile agent.
        imports: { default: trappable },
    });
}

use bindings::conductor::agent::{host as wit_host, types as wit_types};

/// The epoch advances this often; wall-clock limits are enforced to this
/// granularity. 10 ms keeps the ticker's cost negligible.
const EPOCH_TICK_MS: u64 = 10;
/// Cells that may be alive at once. Bounds the pooling allocator's
/// reservations; the conductor runs far fewer concurrently.
const LIVE_CELLS_MAX: u32 = 128;
/// Largest memory any agent may be granted (the mission schema's bound).
const MEMORY_BYTES_CEILING: usize = 4 << 30;

/// The blake3 hash of a module's bytes: its content address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleHash(pub [u8; 32]);

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({self})")
    }
}

/// A compiled agent component, linked and ready to instantiate.
pub struct AgentModule {
    pre: bindings::AgentPre<CellState>,
    hash: ModuleHash,
    name: String,
}

impl fmt::Debug for AgentModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentModule").field("name", &self.name).field("hash", &self.hash).finish()
    }
}

impl AgentModule {
    pub fn hash(&self) -> ModuleHash {
        self.hash
    }
}

/// The process-wide wasm engine.
pub struct CellEngine {
    engine: Engine,
    linker: Linker<CellState>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl fmt::Debug for CellEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CellEngine")
    }
}

impl Drop for CellEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl CellEngine {
    /// An engine that compiles each module it loads (no cache).
    pub fn new() -> Result<Self, CellError> {
        Self::build(None)
    }

    /// An engine that keeps compiled modules in `dir` (wasmtime's own
    /// cache: keyed by the module's bytes, the engine's settings and the
    /// wasmtime version, so a changed module or setting never hits a stale
    /// entry). A large agent (a Python or JavaScript runtime) takes tens of
    /// seconds to compile and milliseconds to load from here. The
    /// directory is created private (0700): whoever can write to it can
    /// place native code the engine will run.
    pub fn with_module_cache(dir: &Path) -> Result<Self, CellError> {
        Self::build(Some(dir))
    }

    fn build(cache_dir: Option<&Path>) -> Result<Self, CellError> {
        let engine_err = |e: wasmtime::Error| CellError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(LIVE_CELLS_MAX)
            .total_core_instances(LIVE_CELLS_MAX * 4)
            .total_memories(LIVE_CELLS_MAX * 2)
            .total_tables(LIVE_CELLS_MAX * 2)
            .max_memory_size(MEMORY_BYTES_CEILING);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            // Same inputs, same outputs: replay depends on it.
            .cranelift_nan_canonicalization(true)
            // No `threads` feature is compiled in, so shared memory and
            // atomics-based nondeterminism are unavailable to agents.
            .relaxed_simd_deterministic(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            private_dir(dir)?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache).map_err(engine_err)?));
        }
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        wit_host::add_to_linker::<CellState, HasSelf<CellState>>(&mut linker, |s| s)
            .map_err(engine_err)?;

        // One thread advances the epoch for every store; a store whose
        // deadline (in ticks) has passed traps at its next check.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("cell-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| CellError::Engine(format!("epoch thread: {e}")))?
        };
        Ok(CellEngine { engine, linker, ticker_stop, ticker: Some(ticker) })
    }

    /// Compiles and links a component from a file.
    pub fn load_file(&self, path: &Path) -> Result<AgentModule, CellError> {
        let bytes = std::fs::read(path)
            .map_err(|source| CellError::Read { path: path.to_owned(), source })?;
        self.load(&path.display().to_string(), &bytes)
    }

    /// Compiles and links a component from bytes. Any bytes give an error
    /// or a module, never a crash.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<AgentModule, CellError> {
        let hash = ModuleHash(*blake3::hash(bytes).as_bytes());
        // A core module (version 1) is valid wasm but not a component; say so
        // plainly rather than surfacing a parser message.
        if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
            return Err(CellError::NotAComponent {
                name: name.to_owned(),
                reason: "it is a core wasm module".into(),
            });
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| CellError::NotAComponent {
            name: name.to_owned(),
            reason: format!("{e:#}"),
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::AgentPre::new)
            .map_err(|e| CellError::Link { name: name.to_owned(), reason: format!("{e:#}") })?;
        Ok(AgentModule { pre, hash, name: name.to_owned() })
    }

    /// Runs one task: a fresh instance, `run(input)`, then the instance is
    /// dropped. Blocking; call it from a thread that may block.
    ///
    /// The cell sees no files, no network, no environment and no
    /// arguments. Its clocks and random numbers come from `env` alone, so
    /// running the same module on the same input, host answers and `env`
    /// again does exactly the same thing (replay depends on it).
    pub fn run(
        &self,
        module: &AgentModule,
        host: Box<dyn CellHost>,
        limits: &CellLimits,
        env: &CellEnv,
        input: &str,
    ) -> Result<Decision, CellFailure> {
        let wasi = env.wasi().build();
        let state = CellState {
            wasi,
            table: ResourceTable::new(),
            host,
            memory_bytes_max: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            memory_hit: false,
            calls_left: limits.host_calls,
            call_arg_bytes_max: limits.call_arg_bytes_max,
            deadline: Instant::now() + Duration::from_millis(limits.wall_ms),
            failure: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_fuel(limits.fuel).map_err(|e| CellFailure::Instantiation(format!("{e:#}")))?;
        store.set_epoch_deadline(limits.wall_ms.div_ceil(EPOCH_TICK_MS) + 1);
        store.epoch_deadline_trap();

        let outcome = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| (true, e))
            .and_then(|agent| agent.call_run(&mut store, input).map_err(|e| (false, e)));
        match outcome {
            Ok(Ok(d)) => {
                let bytes = d.outcome.len() + d.reason.len() + d.details.len();
                if bytes > limits.output_bytes_max {
                    return Err(CellFailure::OutputTooLarge { bytes });
                }
                Ok(Decision { outcome: d.outcome, reason: d.reason, details: d.details })
            }
            Ok(Err(message)) => Err(CellFailure::AgentError(message)),
            Err((instantiating, error)) => Err(classify(store.data(), instantiating, &error)),
        }
    }
}

/// Creates `dir` (and parents) if needed and makes sure only this user can
/// use it.
fn private_dir(dir: &Path) -> Result<(), CellError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source: std::io::Error| CellError::Read { path: dir.to_owned(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Maps a wasmtime error to the limit or trap that caused it. A limit
/// recorded by the host side wins over the generic trap it produced.
fn classify(state: &CellState, instantiating: bool, error: &wasmtime::Error) -> CellFailure {
    if let Some(failure) = &state.failure {
        return failure.clone();
    }
    if state.memory_hit {
        return CellFailure::MemoryExceeded;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CellFailure::FuelExhausted,
        Some(Trap::StackOverflow) => CellFailure::StackOverflow,
        Some(Trap::Interrupt) => CellFailure::WallClockExceeded,
        _ if instantiating => CellFailure::Instantiation(format!("{error:#}")),
        _ => CellFailure::Trap(format!("{error:#}")),
    }
}

pub(crate) struct CellState {
    wasi: WasiCtx,
    table: ResourceTable,
    host: Box<dyn CellHost>,
    memory_bytes_max: usize,
    memory_hit: bool,
    calls_left: u32,
    call_arg_bytes_max: usize,
    deadline: Instant,
    failure: Option<CellFailure>,
}

impl WasiView for CellState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ResourceLimiter for CellState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            // Refusing (rather than trapping) lets a careful agent recover;
            // the flag still names the cause if the agent then traps.
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k entries is far beyond any
        // agent and bounds what a hostile one can make the host allocate.
        const TABLE_ELEMENTS_MAX: usize = 100_000;
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

impl CellState {
    /// Admits one host call of `arg_bytes` or records why not and traps.
    fn admit(&mut self, arg_bytes: usize) -> wasmtime::Result<()> {
        let failure = if self.calls_left == 0 {
            Some(CellFailure::HostCallsExceeded)
        } else if arg_bytes > self.call_arg_bytes_max {
            Some(CellFailure::CallArgumentTooLarge { bytes: arg_bytes })
        } else if Instant::now() >= self.deadline {
            Some(CellFailure::WallClockExceeded)
        } else {
            None
        };
        match failure {
            Some(f) => {
                let message = f.to_string();
                self.failure = Some(f);
                Err(wasmtime::Error::msg(message))
            }
            None => {
                self.calls_left -= 1;
                Ok(())
            }
        }
    }
}

impl wit_types::Host for CellState {}

impl wit_host::Host for CellState {
    fn infer(
        &mut self,
        model: String,
        messages: Vec<wit_types::Message>,
        max_tokens: u32,
    ) -> wasmtime::Result<Result<wit_types::Completion, String>> {
        let bytes = model.len() + messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>();
        self.admit(bytes)?;
        let request = crate::InferRequest {
            model,
            messages: messages
                .into_iter()
                .map(|m| crate::Message { role: m.role, content: m.content })
                .collect(),
            max_tokens,
        };
        Ok(self.host.infer(request).map(|c| wit_types::Completion {
            text: c.text,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
        }))
    }

    fn recall(
        &mut self,
        subject: String,
        valid_at: Option<i64>,
    ) -> wasmtime::Result<Result<Vec<wit_types::Fact>, String>> {
        self.admit(subject.len())?;
        Ok(self.host.recall(subject, valid_at).map(|facts| {
            facts
                .into_iter()
                .map(|f| wit_types::Fact {
                    subject: f.subject,
                    predicate: f.predicate,
                    value: f.value,
                    valid_from: f.valid_from,
                    valid_to: f.valid_to,
                    recorded_at: f.recorded_at,
                })
                .collect()
        }))
    }

    fn remember(
        &mut self,
        subject: String,
        predicate: String,
        value: String,
        valid_from: Option<i64>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.admit(subject.len() + predicate.len() + value.len())?;
        Ok(self.host.remember(subject, predicate, value, valid_from))
    }

    fn request_review(&mut self, gate: String, reason: String) -> wasmtime::Result<Result<(), String>> {
        self.admit(gate.len() + reason.len())?;
        Ok(self.host.request_review(gate, reason))
    }

    fn log(&mut self, message: String) -> wasmtime::Result<()> {
        self.admit(message.len())?;
        self.host.log(message);
        Ok(())
    }
}

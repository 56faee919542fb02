use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
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
/// A wasm page: linear memory grows in these.
const WASM_PAGE: u64 = 64 << 10;
/// Largest memory any agent may be granted (the mission schema's bound).
const MEMORY_BYTES_CEILING: u64 = 4 << 30;
/// Pool slots per cell. A Rust agent is one core instance with one memory
/// and one table; a componentize-py agent is 14 core instances (one owns
/// the memory) and a componentize-js one 4, with a few small tables.
const CORE_INSTANCES_PER_CELL: u32 = 16;
const MEMORIES_PER_CELL: u32 = 2;
const TABLES_PER_CELL: u32 = 16;
/// Per-slot linear-memory reservation that lets cranelift drop bounds
/// checks (a 4 GiB reservation plus guard covers every 32-bit address).
const FAST_BOUNDS_RESERVATION: u64 = 4 << 30;
/// Address space the pool may reserve with fast-bounds slots. x86-64 user
/// space is 128 TiB; past this the slots shrink to each cell's memory cap
/// and cranelift checks bounds explicitly instead.
const FAST_BOUNDS_ADDRESS_SPACE: u64 = 16 << 40;
/// Bytes of each linear memory kept resident when a cell ends and reset
/// with memset (only the pages actually touched, found with the
/// PAGEMAP_SCAN ioctl where the kernel has it) instead of madvise: the
/// next cell in that slot then takes no page faults for them. Measured
/// (bench_cells): start p50 33 µs with neither, 11 µs with both.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// The same for tables (function references: small).
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// Finished cells waiting for the teardown thread. Tearing a cell down
/// (returning its slots, resetting touched pages) is a third of a start's
/// cost; doing it off the task's path means a decision is reported that
/// much sooner. When the queue is full the task's own thread tears down,
/// so teardown can never fall behind by more than this.
const TEARDOWN_QUEUE: u32 = 64;

/// How an engine is sized. The pool reserves address space for
/// `live_cells` cells of up to `cell_memory_max` bytes each up front, so
/// a cell start never maps memory; more live cells than this wait for no
/// one, they fail to instantiate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Cells that may be alive at once (the conductor runs at most
    /// `--concurrency`, at most 1,024, at a time; its pool is sized to it).
    pub live_cells: u32,
    /// The most linear memory any one cell may be granted; a cell asking
    /// for more is refused it at `memory.grow`.
    pub cell_memory_max: u64,
    /// Where compiled modules are kept (wasmtime's cache, keyed by the
    /// module's bytes, the engine settings and the wasmtime version); none
    /// compiles every module on every load.
    pub module_cache: Option<std::path::PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { live_cells: 128, cell_memory_max: MEMORY_BYTES_CEILING, module_cache: None }
    }
}

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
    /// Each pool slot's size: no cell grows past it, whatever its limits.
    cell_memory_max: u64,
    linker: Linker<CellState>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    /// Cells started and not yet finished, and the most allowed.
    live: Arc<AtomicU32>,
    live_max: u32,
    teardown: SyncSender<Store<CellState>>,
    /// Cells handed to the teardown thread and not yet dropped there.
    teardown_pending: Arc<AtomicU32>,
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
        Self::with_settings(&EngineSettings::default())
    }

    /// An engine that keeps compiled modules in `dir` (wasmtime's own
    /// cache: keyed by the module's bytes, the engine's settings and the
    /// wasmtime version, so a changed module or setting never hits a stale
    /// entry). A large agent (a Python or JavaScript runtime) takes tens of
    /// seconds to compile and milliseconds to load from here. The
    /// directory is created private (0700): whoever can write to it can
    /// place native code the engine will run.
    pub fn with_module_cache(dir: &Path) -> Result<Self, CellError> {
        Self::with_settings(&EngineSettings { module_cache: Some(dir.to_owned()), ..EngineSettings::default() })
    }

    /// An engine sized by `settings`.
    pub fn with_settings(settings: &EngineSettings) -> Result<Self, CellError> {
        let engine_err = |e: wasmtime::Error| CellError::Engine(format!("{e:#}"));
        let live_max = settings.live_cells.max(1);
        // Slots for the live cells plus those queued for (or in) teardown.
        let cells = live_max.saturating_add(TEARDOWN_QUEUE + 1);
        let memory_max = settings.cell_memory_max.clamp(WASM_PAGE, MEMORY_BYTES_CEILING).next_multiple_of(WASM_PAGE);
        let memories = cells.saturating_mul(MEMORIES_PER_CELL);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(cells)
            .total_core_instances(cells.saturating_mul(CORE_INSTANCES_PER_CELL))
            .max_core_instances_per_component(CORE_INSTANCES_PER_CELL)
            .total_memories(memories)
            .max_memories_per_component(MEMORIES_PER_CELL)
            .total_tables(cells.saturating_mul(TABLES_PER_CELL))
            .max_tables_per_component(TABLES_PER_CELL)
            .max_memory_size(usize::try_from(memory_max).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        if u64::from(memories).saturating_mul(FAST_BOUNDS_RESERVATION) > FAST_BOUNDS_ADDRESS_SPACE {
            // Dense pools: each slot is only as big as a cell may grow.
            config.memory_reservation(memory_max).memory_guard_size(WASM_PAGE).memory_reservation_for_growth(0);
        }
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
        if let Some(dir) = &settings.module_cache {
            private_dir(dir)?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache).map_err(engine_err)?));
        }
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        wit_host::add_to_linker::<CellState, HasSelf<CellState>>(&mut linker, |s| s).map_err(engine_err)?;

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
        // The teardown thread exits once the engine and every cell that
        // could still send to it are gone; nothing waits for it.
        let (teardown, finished) = std::sync::mpsc::sync_channel::<Store<CellState>>(TEARDOWN_QUEUE as usize);
        let teardown_pending = Arc::new(AtomicU32::new(0));
        let torn_down = teardown_pending.clone();
        std::thread::Builder::new()
            .name("cell-teardown".into())
            .spawn(move || {
                for store in finished {
                    drop(store);
                    torn_down.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| CellError::Engine(format!("teardown thread: {e}")))?;
        Ok(CellEngine {
            engine,
            cell_memory_max: memory_max,
            linker,
            ticker_stop,
            ticker: Some(ticker),
            live: Arc::new(AtomicU32::new(0)),
            live_max,
            teardown,
            teardown_pending,
        })
    }

    /// Compiles and links a component from a file.
    /// Waits (at most `limit`) until every finished cell has been torn
    /// down. A cell's store holds its host, and so whatever the host holds
    /// (the embedder's database handle, say): an embedder that must know
    /// those are released, to reopen the database, waits here first.
    /// Returns whether the teardown queue emptied in time.
    pub fn wait_for_teardown(&self, limit: Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        while self.teardown_pending.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    pub fn load_file(&self, path: &Path) -> Result<AgentModule, CellError> {
        let bytes = read_module(path)?;
        self.load(&path.display().to_string(), &bytes)
    }

    /// Compiles and links a component from bytes. Any bytes give an error
    /// or a module, never a crash.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<AgentModule, CellError> {
        let hash = ModuleHash(*blake3::hash(bytes).as_bytes());
        // A core module (version 1) is valid wasm but not a component; say so
        // plainly rather than surfacing a parser message.
        if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
            return Err(CellError::NotAComponent { name: name.to_owned(), reason: "it is a core wasm module".into() });
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| CellError::NotAComponent { name: name.to_owned(), reason: format!("{e:#}") })?;
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
        self.start(module, host, limits, env)?.run(input)
    }

    /// Instantiates a cell for one task and leaves it waiting for its
    /// input. Its wall-clock limit counts from here. Holding many started
    /// cells is how the density benchmark measures the pool; the conductor
    /// starts each cell just before its task runs.
    pub fn start(
        &self,
        module: &AgentModule,
        host: Box<dyn CellHost>,
        limits: &CellLimits,
        env: &CellEnv,
    ) -> Result<LiveCell, CellFailure> {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.live_max {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(CellFailure::Instantiation(format!(
                "this engine already holds its limit of {} live cells",
                self.live_max
            )));
        }
        let live = LiveGuard(self.live.clone());
        let state = CellState {
            wasi: env.wasi().build(),
            table: ResourceTable::new(),
            host,
            // The pool's slot bounds growth too; capping here makes hitting
            // it the same named failure as hitting the agent's own limit.
            memory_bytes_max: usize::try_from(limits.memory_bytes.min(self.cell_memory_max)).unwrap_or(usize::MAX),
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
        match module.pre.instantiate(&mut store) {
            Ok(agent) => Ok(LiveCell {
                store: Some(store),
                agent,
                output_bytes_max: limits.output_bytes_max,
                teardown: self.teardown.clone(),
                teardown_pending: self.teardown_pending.clone(),
                _live: live,
            }),
            Err(error) => Err(classify(store.data(), true, &error)),
        }
    }
}

/// An instantiated cell waiting for its one task.
pub struct LiveCell {
    /// Always `Some` until dropped.
    store: Option<Store<CellState>>,
    agent: bindings::Agent,
    output_bytes_max: usize,
    teardown: SyncSender<Store<CellState>>,
    teardown_pending: Arc<AtomicU32>,
    _live: LiveGuard,
}

/// Counts a cell as live until it is dropped.
struct LiveGuard(Arc<AtomicU32>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for LiveCell {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            // Counted before it is sent, so the count never dips below
            // what is really queued.
            self.teardown_pending.fetch_add(1, Ordering::AcqRel);
            match self.teardown.try_send(store) {
                Ok(()) => {}
                // Queue full or thread gone: tear down here.
                Err(TrySendError::Full(store) | TrySendError::Disconnected(store)) => {
                    drop(store);
                    self.teardown_pending.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

impl fmt::Debug for LiveCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveCell")
    }
}

impl LiveCell {
    /// Runs the task; the cell is gone afterwards, whatever happened.
    pub fn run(mut self, input: &str) -> Result<Decision, CellFailure> {
        let Some(store) = self.store.as_mut() else {
            return Err(CellFailure::Instantiation("the cell was already used".into()));
        };
        match self.agent.call_run(&mut *store, input) {
            Ok(Ok(d)) => {
                let bytes = d.outcome.len() + d.reason.len() + d.details.len();
                if bytes > self.output_bytes_max {
                    return Err(CellFailure::OutputTooLarge { bytes });
                }
                Ok(Decision { outcome: d.outcome, reason: d.reason, details: d.details })
            }
            Ok(Err(message)) => Err(CellFailure::AgentError(message)),
            Err(error) => Err(classify(store.data(), false, &error)),
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
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            // Refusing (rather than trapping) lets a careful agent recover;
            // the flag still names the cause if the agent then traps.
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
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

    /// Stops the cell at a parking host call (`await-review`, `delegate`):
    /// records why (the host has recorded where the task stood) and returns
    /// the trap that unwinds it.
    fn park(&mut self, failure: CellFailure) -> wasmtime::Error {
        let message = failure.to_string();
        self.failure = Some(failure);
        wasmtime::Error::msg(message)
    }
}

impl wit_types::Host for CellState {}

/// One child's result as the agent sees it.
fn wit_child_result(
    result: Result<Decision, crate::DelegationError>,
) -> Result<wit_types::Decision, wit_types::DelegationError> {
    use crate::DelegationError as E;
    use wit_types::DelegationError as W;
    match result {
        Ok(d) => Ok(wit_types::Decision { outcome: d.outcome, reason: d.reason, details: d.details }),
        Err(E::Refused(m)) => Err(W::Refused(m)),
        Err(E::Budget(m)) => Err(W::Budget(m)),
        Err(E::Failed(m)) => Err(W::Failed(m)),
        Err(E::TimedOut(m)) => Err(W::TimedOut(m)),
    }
}

fn wit_fact(f: crate::Fact) -> wit_types::Fact {
    wit_types::Fact {
        subject: f.subject,
        predicate: f.predicate,
        value: f.value,
        valid_from: f.valid_from,
        valid_to: f.valid_to,
        recorded_at: f.recorded_at,
    }
}

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
            messages: messages.into_iter().map(|m| crate::Message { role: m.role, content: m.content }).collect(),
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
        Ok(self.host.recall(subject, valid_at).map(|facts| facts.into_iter().map(wit_fact).collect()))
    }

    fn query_memory(&mut self, q: wit_types::MemoryQuery) -> wasmtime::Result<Result<Vec<wit_types::Fact>, String>> {
        self.admit(q.space.len() + q.subject.len() + q.predicate.len() + q.words.len())?;
        let query = crate::MemoryQuery {
            space: q.space,
            subject: q.subject,
            predicate: q.predicate,
            words: q.words,
            valid_at: q.valid_at,
            known_at: q.known_at,
            limit: q.limit,
        };
        Ok(self.host.query_memory(query).map(|facts| facts.into_iter().map(wit_fact).collect()))
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

    fn await_review(&mut self, gate: String, reason: String) -> wasmtime::Result<Result<wit_types::Review, String>> {
        self.admit(gate.len() + reason.len())?;
        match self.host.await_review(gate, reason) {
            crate::ReviewAnswer::Decided(r) => {
                Ok(Ok(wit_types::Review { approved: r.approved, note: r.note, reviewer: r.reviewer }))
            }
            crate::ReviewAnswer::Refused(why) => Ok(Err(why)),
            crate::ReviewAnswer::Park { gate_id } => Err(self.park(CellFailure::Parked { gate: gate_id })),
        }
    }

    fn delegate(
        &mut self,
        requests: Vec<wit_types::Delegation>,
    ) -> wasmtime::Result<Result<Vec<Result<wit_types::Decision, wit_types::DelegationError>>, String>> {
        self.admit(requests.iter().map(|r| r.agent.len() + r.input.len()).sum())?;
        let requests = requests
            .into_iter()
            .map(|r| crate::Delegation { agent: r.agent, input: r.input, budget: r.budget })
            .collect();
        match self.host.delegate(requests) {
            crate::DelegateAnswer::Done(results) => Ok(Ok(results.into_iter().map(wit_child_result).collect())),
            crate::DelegateAnswer::Refused(why) => Ok(Err(why)),
            crate::DelegateAnswer::Park { delegation } => Err(self.park(CellFailure::Delegated { delegation })),
        }
    }

    fn read_document(
        &mut self,
        name: String,
        offset: u64,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.admit(name.len())?;
        let max_bytes = max_bytes.min(crate::limits::READ_DOCUMENT_BYTES_MAX);
        Ok(self.host.read_document(name, offset, max_bytes))
    }

    fn log(&mut self, message: String) -> wasmtime::Result<()> {
        self.admit(message.len())?;
        self.host.log(message);
        Ok(())
    }
}

/// The largest module file read. componentize-py's agents, which carry a
/// Python interpreter, are about 40 MB; the cap keeps a wrong path (a
/// device such as /dev/zero, a huge file) from being read whole.
pub const MODULE_FILE_BYTES_MAX: u64 = 256 << 20;

/// Reads a module file: a regular file (stat first, so a FIFO is refused
/// rather than blocking) of at most [`MODULE_FILE_BYTES_MAX`] bytes.
fn read_module(path: &Path) -> Result<Vec<u8>, CellError> {
    use std::io::Read as _;
    let error = |source| CellError::Read { path: path.to_owned(), source };
    let invalid = |what: &str| error(std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned()));
    if !std::fs::metadata(path).map_err(error)?.is_file() {
        return Err(invalid("not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(error)?;
    if !file.metadata().map_err(error)?.is_file() {
        return Err(invalid("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MODULE_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(error)?;
    if bytes.len() as u64 > MODULE_FILE_BYTES_MAX {
        return Err(invalid(&format!("larger than {MODULE_FILE_BYTES_MAX} bytes, the most a module may be")));
    }
    Ok(bytes)
}

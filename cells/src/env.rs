//! What a cell may observe of the world besides its host calls: a clock
//! and a random number generator, both derived from a [`CellEnv`] the
//! conductor journals with the task, never from the host machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// How far each read of a cell's clock moves it. A logical clock: time
/// advances with what the agent does, not with the host's scheduling, so
/// a replay reads exactly the same times.
const CLOCK_STEP_NS: u64 = 1_000;

/// The deterministic world a cell runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellEnv {
    /// What the cell's wall clock reads first (Unix µs): the task's start.
    pub clock_start_us: i64,
    /// Seeds the cell's random numbers (`wasi:random`, secure and
    /// insecure alike: nothing in a cell is a secret from the journal).
    pub seed: [u8; 32],
}

impl CellEnv {
    /// A seed for task `task` of `mission`: the same pair always gets the
    /// same seed, and the journal records it anyway.
    pub fn seed_for(mission: &str, task: u32) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("conductor cell seed v1");
        hasher.update(&(mission.len() as u64).to_le_bytes());
        hasher.update(mission.as_bytes());
        hasher.update(&task.to_le_bytes());
        *hasher.finalize().as_bytes()
    }

    /// WASI for a cell: no files (nothing preopened), no sockets or name
    /// lookups, no environment or arguments, no stdio, and clocks and
    /// randomness from this env.
    pub(crate) fn wasi(&self) -> WasiCtxBuilder {
        let ticks = Arc::new(AtomicU64::new(0));
        let start_ns = u64::try_from(self.clock_start_us).unwrap_or(0).saturating_mul(1_000);
        let mut insecure_seed = [0u8; 32];
        insecure_seed.copy_from_slice(blake3::derive_key("conductor cell insecure seed v1", &self.seed).as_slice());
        let mut builder = WasiCtxBuilder::new();
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(LogicalClock { start_ns, ticks: ticks.clone() })
            .monotonic_clock(LogicalClock { start_ns: 0, ticks })
            .secure_random(StdRng::from_seed(self.seed))
            .insecure_random(StdRng::from_seed(insecure_seed))
            .insecure_random_seed(u128::from_le_bytes(insecure_seed[..16].try_into().unwrap_or_default()));
        builder
    }
}

/// Both of a cell's clocks: `start + n × step` at the n-th read of either.
struct LogicalClock {
    start_ns: u64,
    ticks: Arc<AtomicU64>,
}

impl LogicalClock {
    fn read_ns(&self) -> u64 {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        self.start_ns.saturating_add(n.saturating_mul(CLOCK_STEP_NS))
    }
}

impl HostWallClock for LogicalClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(CLOCK_STEP_NS)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.read_ns())
    }
}

impl HostMonotonicClock for LogicalClock {
    fn resolution(&self) -> u64 {
        CLOCK_STEP_NS
    }
    fn now(&self) -> u64 {
        self.read_ns()
    }
}

use std::fmt;

/// Per-task limits. Every one of them is enforced by the cell, not by
/// trusting the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellLimits {
    /// Largest linear memory the agent may grow to.
    pub memory_bytes: u64,
    /// Wasm fuel (roughly, instructions) for the whole task.
    pub fuel: u64,
    /// Wall-clock time for the whole task, host calls included.
    pub wall_ms: u64,
    /// Host calls (infer, recall, remember, request-review, delegate,
    /// read-document, log) per task.
    pub host_calls: u32,
    /// Bytes of all arguments of one host call together.
    pub call_arg_bytes_max: usize,
    /// Bytes of the decision the agent returns.
    pub output_bytes_max: usize,
}

impl CellLimits {
    /// 64 KiB holds a long prompt (a small model's whole context is a few
    /// thousand tokens) while keeping a hostile agent from shipping
    /// megabytes into the journal per call.
    pub const CALL_ARG_BYTES_DEFAULT: usize = 64 << 10;
    /// A decision is a label, a reason and a few fields.
    pub const OUTPUT_BYTES_DEFAULT: usize = 64 << 10;
}

/// The most bytes one `read-document` call returns: an agent reads a large
/// document in pieces, each journaled, and no single answer grows the
/// cell's memory by more than this.
pub const READ_DOCUMENT_BYTES_MAX: u32 = 1 << 20;

/// Why a task's cell did not produce a decision. Each limit is its own
/// variant so the journal records exactly which one was hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellFailure {
    /// The agent trapped (unreachable, out-of-bounds access, a panic).
    Trap(String),
    /// The agent used all its fuel.
    FuelExhausted,
    /// The agent recursed past the wasm stack limit.
    StackOverflow,
    /// The task ran past its wall-clock limit.
    WallClockExceeded,
    /// The agent tried to grow memory past its cap.
    MemoryExceeded,
    /// The agent made more host calls than allowed.
    HostCallsExceeded,
    /// One host call carried more argument bytes than allowed.
    CallArgumentTooLarge { bytes: usize },
    /// The decision was larger than allowed.
    OutputTooLarge { bytes: usize },
    /// The agent's `run` returned an error of its own.
    AgentError(String),
    /// The component could not be instantiated (e.g. it imports something
    /// the conductor does not offer).
    Instantiation(String),
    /// Not a failure: the agent called `await-review` and the task is
    /// parked until a reviewer decides `gate` (the host's gate id).
    Parked { gate: String },
    /// Not a failure either: the agent called `delegate` and the task is
    /// parked until every child of `delegation` (the host's id) has ended.
    Delegated { delegation: String },
}

impl CellFailure {
    /// A stable machine-readable name, used in the journal and summaries.
    pub fn code(&self) -> &'static str {
        match self {
            CellFailure::Trap(_) => "trap",
            CellFailure::FuelExhausted => "fuel_exhausted",
            CellFailure::StackOverflow => "stack_overflow",
            CellFailure::WallClockExceeded => "wall_clock_exceeded",
            CellFailure::MemoryExceeded => "memory_exceeded",
            CellFailure::HostCallsExceeded => "host_calls_exceeded",
            CellFailure::CallArgumentTooLarge { .. } => "call_argument_too_large",
            CellFailure::OutputTooLarge { .. } => "output_too_large",
            CellFailure::AgentError(_) => "agent_error",
            CellFailure::Instantiation(_) => "instantiation_failed",
            CellFailure::Parked { .. } => "parked",
            CellFailure::Delegated { .. } => "delegated",
        }
    }
}

impl fmt::Display for CellFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellFailure::Trap(m) => write!(f, "agent trapped: {m}"),
            CellFailure::FuelExhausted => f.write_str("agent ran out of fuel (compute limit)"),
            CellFailure::StackOverflow => f.write_str("agent overflowed its stack (recursion too deep)"),
            CellFailure::WallClockExceeded => f.write_str("task exceeded its wall-clock limit"),
            CellFailure::MemoryExceeded => f.write_str("agent exceeded its memory limit"),
            CellFailure::HostCallsExceeded => f.write_str("agent exceeded its host-call limit"),
            CellFailure::CallArgumentTooLarge { bytes } => {
                write!(f, "a host call carried {bytes} argument bytes, over the limit")
            }
            CellFailure::OutputTooLarge { bytes } => {
                write!(f, "the decision is {bytes} bytes, over the limit")
            }
            CellFailure::AgentError(m) => write!(f, "agent returned an error: {m}"),
            CellFailure::Instantiation(m) => write!(f, "agent could not be instantiated: {m}"),
            CellFailure::Parked { gate } => write!(f, "parked until gate {gate} is decided"),
            CellFailure::Delegated { delegation } => {
                write!(f, "parked until the children of delegation {delegation} end")
            }
        }
    }
}

/// Errors setting up the engine or loading a module (before any task runs).
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("could not configure the wasm engine: {0}")]
    Engine(String),
    #[error("module {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "module {name} is not a WebAssembly component ({reason}); agents are built for \
         wasm32-wasip2 against cells/wit/agent.wit"
    )]
    NotAComponent { name: String, reason: String },
    #[error("module {name} does not fit the agent world: {reason}")]
    Link { name: String, reason: String },
}

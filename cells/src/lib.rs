//! Cells: each agent task runs in its own wasmtime component instance.
//!
//! - [`CellEngine`]: one per process. Pooling allocator, epoch ticker for
//!   wall-clock limits, fuel for compute limits, deterministic float
//!   settings, and a linker that offers agents WASI with no files, no
//!   sockets and no name lookups, plus the `conductor:agent/host` imports.
//! - [`AgentModule`]: a compiled, pre-linked component, named by the
//!   blake3 hash of its bytes ([`ModuleHash`]).
//! - [`CellHost`]: what the embedder implements to answer host calls
//!   (inference, memory, reviews, delegation, logging). The cell enforces call counts and sizes
//!   before the host ever sees a call.
//! - [`CellLimits`] in, [`Decision`] or [`CellFailure`] out. A trap, a
//!   limit hit or an agent error fails the task, never the process.
//!
//! The WIT contract agents are written against is `cells/wit/agent.wit`.
//! This crate knows nothing about the ledger, models or HTTP.

mod engine;
mod env;
mod host;
mod limits;

pub use engine::{AgentModule, CellEngine, EngineSettings, LiveCell, MODULE_FILE_BYTES_MAX, ModuleHash};
pub use env::CellEnv;
pub use host::{
    CellHost, Completion, Decision, DelegateAnswer, Delegation, DelegationError, Fact, InferRequest, MemoryQuery,
    Message, Review, ReviewAnswer,
};
pub use limits::{CellError, CellFailure, CellLimits, READ_DOCUMENT_BYTES_MAX};

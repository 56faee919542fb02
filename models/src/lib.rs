//! What the engine knows about models: the [`Models`] trait it calls,
//! the prompts and outputs that cross it, and the [`Registry`] that names
//! each model, its file, price and data tier.
//!
//! **Invariant:** no model runtime and no network client here. The
//! mistral.rs engine and the frontier HTTP client implement [`Models`] in
//! the `inference` crate; [`scripted`] is a deterministic backend for
//! hermetic tests and orchestration benchmarks, chosen only by a registry
//! entry that says `kind: scripted`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod registry;
pub mod scripted;

pub use registry::{Device, Frontier, ModelSpec, Price, Registry, RegistryError, Tier};

/// A chat message for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The roles a chat message may have.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// A finished completion with the backend's own token counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `stop` (the model ended) or `length` (max_tokens reached).
    pub finish_reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("model `{model}` failed to load: {reason}")]
    Load { model: String, reason: String },
    #[error("model `{model}`: {reason}")]
    Request { model: String, reason: String },
    #[error("role `{0}` is not one of system, user, assistant")]
    BadRole(String),
    #[error("model `{model}` did not answer within {seconds} s")]
    Timeout { model: String, seconds: u64 },
    #[error("model `{model}` cannot run on its device: {problem}")]
    Device {
        model: String,
        #[source]
        problem: DeviceError,
    },
}

/// Why a model cannot run on the GPU its registry entry names, found
/// before anything is loaded onto it. Each names the cause and what to do;
/// the CPU models of the same registry are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "no NVIDIA driver on this host ({library} could not be loaded); install the NVIDIA driver, \
         or set `device: cpu`"
    )]
    NoDriver { library: String },
    #[error("the NVIDIA driver is loaded but reports no GPU ({detail}); set `device: cpu` on this host")]
    NoDevice { detail: String },
    #[error("the NVIDIA driver did not start: {detail}")]
    Driver { detail: String },
    #[error(
        "GPU 0 ({gpu}) has compute capability {found}, and this build's kernels need {needed} or newer; \
         rebuild with `cargo xtask build-cuda --arch sm_{found_digits}`",
        found_digits = found.replace('.', "")
    )]
    ComputeCapability { gpu: String, found: String, needed: String },
    #[error(
        "the CUDA library {library} is not on this host (searched the loader's path: LD_LIBRARY_PATH, \
         ld.so.cache); install CUDA {cuda} or put the directory holding it on LD_LIBRARY_PATH"
    )]
    MissingLibrary { library: String, cuda: String },
    #[error(
        "the weights need {needed_mib} MiB of GPU memory and GPU 0 ({gpu}) has {free_mib} MiB free of \
         {total_mib} MiB; use a smaller or more quantised model, or free the GPU"
    )]
    OutOfMemory { gpu: String, needed_mib: u64, free_mib: u64, total_mib: u64 },
    #[error(
        "tensor `{tensor}` is stored as {quant}, which has no CUDA kernel here (CUDA runs F32, F16, \
         BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K); requantise the file or set `device: cpu`"
    )]
    UnsupportedQuant { tensor: String, quant: String },
}

/// Messages rendered and counted for one model by a backend's
/// [`Models::prompt`], so the count always belongs to these messages at
/// this model: what a reservation must cover.
#[derive(Debug, Clone)]
pub struct Prompt {
    model: String,
    messages: Vec<ChatMessage>,
    tokens: u32,
}

impl Prompt {
    /// For backends only: `tokens` is the backend's own count of
    /// `messages` at `model`.
    pub fn counted(model: &str, messages: Vec<ChatMessage>, tokens: u32) -> Self {
        Prompt { model: model.to_owned(), messages, tokens }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Prompt tokens: exact for a local model, an upper bound for a
    /// frontier one.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }
}

/// A future a backend returns; boxed so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives each piece of a streamed completion as it is produced.
pub type OnDelta<'a> = Box<dyn Fn(String) + Send + Sync + 'a>;

/// Model backends as the engine and the gateway see them: count a
/// prompt, then complete it (whole, or streamed). One implementation
/// serves every cell and every gateway request of a process.
pub trait Models: Send + Sync + std::fmt::Debug {
    /// The models this backend serves, with their prices and tiers.
    fn registry(&self) -> &Registry;

    /// `messages` rendered for `model` and counted: the exact number of
    /// prompt tokens (chat template included) for a local model, an upper
    /// bound for a frontier one.
    fn prompt<'a>(
        &'a self,
        model: &'a str,
        messages: Vec<ChatMessage>,
    ) -> BoxFuture<'a, Result<Prompt, InferenceError>>;

    /// A greedy completion of at most `max_tokens` tokens.
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, InferenceError>>;

    /// [`Models::complete`], handing each piece of text to `on_delta` as
    /// it is produced (the gateway's `stream: true`).
    fn stream<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        timeout: Duration,
        on_delta: OnDelta<'a>,
    ) -> BoxFuture<'a, Result<Output, InferenceError>>;

    /// Makes `model` ready to answer before anything depends on it: a
    /// local model's file is hash-checked and loaded onto its device (a
    /// GPU is checked first); a model with nothing to load only has to be
    /// registered. A mission calls this for every model its agents may
    /// use before it starts a task, so a model that cannot run stops it
    /// with nothing run or charged.
    fn prepare<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), InferenceError>> {
        Box::pin(async move {
            self.registry().get(model)?;
            Ok(())
        })
    }
}

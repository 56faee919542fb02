//! The inference router: one shared mistral.rs engine per model, loaded on
//! first use and shared by every cell and gateway request. It implements
//! [`models::Models`], the engine's only view of models; it also calls
//! frontier models (an OpenAI-compatible endpoint, opt-in, never on an
//! air-gapped host) and serves `kind: scripted` registry entries with
//! [`models::scripted`].
//!
//! **Invariant:** the only crate that knows mistral.rs and the frontier
//! HTTP client; it knows nothing of the journal, budgets or cells.
//!
//! On the CPU, concurrent calls are admitted to the engine in cohorts of
//! equal prompt length, which mistral.rs then runs as one batch (see
//! [`Cohorts`]). On a GPU (`device: cuda`, a `--features cuda` build) the
//! engine runs with paged attention, which batches sequences of any
//! length in every step, so calls go straight in. Before a model is put
//! on a GPU, [`gpu`] checks the host's CUDA stack and the file, and
//! refuses with a typed [`models::DeviceError`] rather than let the CUDA
//! libraries panic.

pub mod gpu;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use either::Either;
use mistralrs::core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig,
    MistralRsBuilder, ModelDType, PagedAttentionConfig, Pipeline, SchedulerConfig, TokenSource,
};
#[cfg(feature = "cuda")]
use mistralrs::core::{MemoryGpuConfig, PagedCacheType};
use mistralrs::{Device, Model, RequestBuilder, TextMessageRole, TextMessages};
use tokio::sync::{Notify, OnceCell};

use models::{BoxFuture, ChatMessage, InferenceError, Models, OnDelta, Output, Prompt, Registry};

/// A model's engine, and how calls are admitted to it.
#[derive(Clone)]
struct Loaded {
    model: Arc<Model>,
    /// Paged attention batches any prompt lengths together (GPU): no
    /// cohorts.
    paged: bool,
}

/// Routes requests to loaded models.
pub struct Router {
    registry: Registry,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Loaded>>>>,
    /// Admission to each model's engine: see [`Cohorts`].
    cohorts: Mutex<HashMap<String, Arc<Cohorts>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(registry: Registry) -> Self {
        Router { registry, loaded: Mutex::new(HashMap::new()), cohorts: Mutex::new(HashMap::new()) }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The loaded model, loading it (hash check first) on first use. Every
    /// caller waits on the same load; the model is never loaded twice.
    pub async fn model(&self, name: &str) -> Result<Arc<Model>, InferenceError> {
        Ok(self.loaded(name).await?.model)
    }

    async fn loaded(&self, name: &str) -> Result<Loaded, InferenceError> {
        let cell = {
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            loaded.entry(name.to_owned()).or_default().clone()
        };
        let model = cell
            .get_or_try_init(|| async {
                let spec = self.registry.get(name)?.clone();
                if spec.scripted.is_some() {
                    return Err(InferenceError::Load {
                        model: name.to_owned(),
                        reason: "a scripted model has no file to load".into(),
                    });
                }
                if spec.frontier.is_some() {
                    return Err(InferenceError::Load {
                        model: name.to_owned(),
                        reason: "a frontier model runs off this host; it is called, never loaded".into(),
                    });
                }
                let check = spec.clone();
                tokio::task::spawn_blocking(move || check.check_hash())
                    .await
                    .map_err(|e| InferenceError::Load { model: name.to_owned(), reason: e.to_string() })??;
                let load_err =
                    |e: &dyn std::fmt::Display| InferenceError::Load { model: name.to_owned(), reason: e.to_string() };
                let dir = spec.path.parent().ok_or_else(|| load_err(&"path has no directory"))?;
                let file = spec
                    .path
                    .file_name()
                    .ok_or_else(|| load_err(&"path has no file name"))?
                    .to_string_lossy()
                    .into_owned();
                let dir = dir.to_string_lossy().into_owned();
                let (device, paged) =
                    tokio::task::spawn_blocking(move || device_for(&spec)).await.map_err(|e| load_err(&e))??;
                let wants_paged = paged.is_some();
                let pipeline = tokio::task::spawn_blocking(move || load_gguf(dir, file, &device, paged))
                    .await
                    .map_err(|e| load_err(&e))?
                    .map_err(|e| load_err(&e))?;
                // mistral.rs sized the KV cache from the GPU's free memory
                // while loading; a pipeline without one runs unpaged.
                let cache = if wants_paged { pipeline.lock().await.get_metadata().cache_config.clone() } else { None };
                let paged = cache.is_some();
                let scheduler = match cache {
                    Some(config) => SchedulerConfig::PagedAttentionMeta { max_num_seqs: PAGED_SEQS_MAX, config },
                    None => scheduler(),
                };
                let model = Model::new(MistralRsBuilder::new(pipeline, scheduler, false, None).build().await);
                Ok::<_, InferenceError>(Loaded { model: Arc::new(model), paged })
            })
            .await?;
        Ok(model.clone())
    }

    /// `messages` rendered for model `name` and counted: the exact number
    /// of prompt tokens (chat template and generation prompt included),
    /// which is what a reservation must cover and what calls batch by. A
    /// frontier model's tokenizer is not on this host; its count is an
    /// upper bound.
    pub async fn prompt(&self, name: &str, messages: Vec<ChatMessage>) -> Result<Prompt, InferenceError> {
        let spec = self.registry.get(name)?;
        let tokens = if spec.frontier.is_some() {
            frontier_prompt_bound(&messages)
        } else if spec.scripted.is_some() {
            models::scripted::count(&messages)?
        } else {
            let model = self.model(name).await?;
            let mut text = TextMessages::new();
            for m in &messages {
                text = text.add_message(role(&m.role)?, &m.content);
            }
            let tokens = model
                .tokenize(Either::Left(text), None, true, true, None)
                .await
                .map_err(|e| InferenceError::Request { model: name.to_owned(), reason: e.to_string() })?;
            u32::try_from(tokens.len()).unwrap_or(u32::MAX)
        };
        Ok(Prompt::counted(name, messages, tokens))
    }

    /// Greedy completion of at most `max_tokens` tokens.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        max_tokens: u32,
        timeout: Duration,
    ) -> Result<Output, InferenceError> {
        let (name, messages) = (prompt.model(), prompt.messages());
        let spec = self.registry.get(name)?;
        if let Some(script) = &spec.scripted {
            return Ok(models::scripted::complete(script, prompt, max_tokens));
        }
        if let Some(frontier) = spec.frontier.clone() {
            let (owned, messages) = (name.to_owned(), messages.to_vec());
            return tokio::task::spawn_blocking(move || {
                frontier_complete(&owned, &frontier, &messages, max_tokens, timeout)
            })
            .await
            .map_err(|e| InferenceError::Request { model: name.to_owned(), reason: e.to_string() })?;
        }
        let Loaded { model, paged } = self.loaded(name).await?;
        let request = greedy_request(messages, max_tokens)?;
        let request_err =
            |e: &dyn std::fmt::Display| InferenceError::Request { model: name.to_owned(), reason: e.to_string() };
        let cohorts = self.cohorts(name);
        let generate = async {
            let _admitted = if paged { None } else { Some(cohorts.admit(prompt.tokens()).await) };
            model.send_chat_request(request).await.map_err(|e| request_err(&e))
        };
        let response = tokio::time::timeout(timeout, generate)
            .await
            .map_err(|_| InferenceError::Timeout { model: name.to_owned(), seconds: timeout.as_secs() })??;
        let text = response.choices.first().and_then(|c| c.message.content.clone()).unwrap_or_default();
        let (prompt_tokens, completion_tokens) = usage_tokens(&response.usage);
        Ok(Output {
            text,
            prompt_tokens,
            completion_tokens,
            finish_reason: response.choices.first().map_or_else(|| "stop".to_owned(), |c| c.finish_reason.clone()),
        })
    }

    /// [`Router::complete`], handing each piece of text to `on_delta` as
    /// the model produces it (the gateway's `stream: true`).
    pub async fn stream(
        &self,
        prompt: &Prompt,
        max_tokens: u32,
        timeout: Duration,
        on_delta: OnDelta<'_>,
    ) -> Result<Output, InferenceError> {
        let (name, messages) = (prompt.model(), prompt.messages());
        if let Some(script) = &self.registry.get(name)?.scripted {
            let out = models::scripted::complete(script, prompt, max_tokens);
            models::scripted::stream_words(&out.text, &on_delta);
            return Ok(out);
        }
        let Loaded { model, paged } = self.loaded(name).await?;
        let request = greedy_request(messages, max_tokens)?;
        let request_err =
            |e: &dyn std::fmt::Display| InferenceError::Request { model: name.to_owned(), reason: e.to_string() };
        let cohorts = self.cohorts(name);
        let generate = async {
            let _admitted = if paged { None } else { Some(cohorts.admit(prompt.tokens()).await) };
            let mut stream = model.stream_chat_request(request).await.map_err(|e| request_err(&e))?;
            let mut out =
                Output { text: String::new(), prompt_tokens: 0, completion_tokens: 0, finish_reason: "stop".into() };
            while let Some(response) = stream.next().await {
                match response {
                    mistralrs::Response::Chunk(chunk) => {
                        for choice in chunk.choices {
                            if let Some(piece) = choice.delta.content.filter(|p| !p.is_empty()) {
                                out.text.push_str(&piece);
                                on_delta(piece);
                            }
                            if let Some(reason) = choice.finish_reason {
                                out.finish_reason = reason;
                            }
                        }
                        if let Some(usage) = chunk.usage {
                            (out.prompt_tokens, out.completion_tokens) = usage_tokens(&usage);
                        }
                    }
                    mistralrs::Response::Done(done) => {
                        (out.prompt_tokens, out.completion_tokens) = usage_tokens(&done.usage);
                        break;
                    }
                    mistralrs::Response::InternalError(e) | mistralrs::Response::ValidationError(e) => {
                        return Err(request_err(&e));
                    }
                    mistralrs::Response::ModelError(e, _) => return Err(request_err(&e)),
                    _ => {}
                }
            }
            Ok(out)
        };
        tokio::time::timeout(timeout, generate)
            .await
            .map_err(|_| InferenceError::Timeout { model: name.to_owned(), seconds: timeout.as_secs() })?
    }

    fn cohorts(&self, name: &str) -> Arc<Cohorts> {
        let mut cohorts = self.cohorts.lock().unwrap_or_else(|p| p.into_inner());
        cohorts.entry(name.to_owned()).or_insert_with(|| Arc::new(Cohorts::new(name))).clone()
    }
}

impl Models for Router {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn prompt<'a>(
        &'a self,
        model: &'a str,
        messages: Vec<ChatMessage>,
    ) -> BoxFuture<'a, Result<Prompt, InferenceError>> {
        Box::pin(Router::prompt(self, model, messages))
    }

    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, InferenceError>> {
        Box::pin(Router::complete(self, prompt, max_tokens, timeout))
    }

    fn stream<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        timeout: Duration,
        on_delta: OnDelta<'a>,
    ) -> BoxFuture<'a, Result<Output, InferenceError>> {
        Box::pin(Router::stream(self, prompt, max_tokens, timeout, on_delta))
    }

    fn prepare<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), InferenceError>> {
        Box::pin(async move {
            let spec = self.registry.get(model)?;
            if spec.frontier.is_none() && spec.scripted.is_none() {
                self.loaded(model).await?;
            }
            Ok(())
        })
    }
}

/// Admits generations to one model's engine in cohorts of equal prompt
/// length; a cohort runs as one batch, and the next is admitted when the
/// whole cohort has finished.
///
/// Why cohorts: on the CPU, mistral.rs 0.8.1 (no paged attention there)
/// can only batch sequences of exactly the same length: its scheduler
/// buckets running sequences by length and runs one bucket per step,
/// copying every layer's KV cache in and out whenever the bucket changes.
/// Measured with `inference/examples/bench_mistralrs.rs` (8 requests at
/// once): of one prompt length they batch, 1.35x the throughput of one at
/// a time; of different lengths they come out right (with the attention
/// fix in `vendor/mistralrs-core`) but at 0.7x, slower than in turn.
/// So a cohort is the oldest waiting request and every other waiting
/// request of its prompt length (up to [`COHORT_MAX`]); requests that
/// arrive while it runs wait for a later cohort, even of the same length,
/// because a running cohort's sequences have already grown past it. The
/// oldest waiter always leads the next cohort, so nothing starves. A
/// caller that times out gives its place back while its sequence may
/// still be finishing in the engine; the next cohort then overlaps it,
/// which costs speed, not correctness.
struct Cohorts {
    model: String,
    state: Mutex<CohortState>,
    changed: Notify,
}

/// Requests one cohort admits at most: mistral.rs's batch size.
const COHORT_MAX: usize = BATCH_SEQS_MAX;

#[derive(Default)]
struct CohortState {
    next_ticket: u64,
    /// Waiting requests in arrival order: (ticket, prompt tokens).
    waiting: VecDeque<(u64, u32)>,
    /// Tickets admitted to the running cohort whose callers have not yet
    /// taken their place.
    admitted: HashSet<u64>,
    /// Members of the running cohort still generating.
    running: usize,
}

impl CohortState {
    /// With nothing running, admits the next cohort; true if it did.
    fn admit_next(&mut self, model: &str) -> bool {
        if self.running > 0 {
            return false;
        }
        let Some(&(_, tokens)) = self.waiting.front() else { return false };
        let mut rest = VecDeque::with_capacity(self.waiting.len());
        for (ticket, len) in self.waiting.drain(..) {
            if len == tokens && self.admitted.len() < COHORT_MAX {
                self.admitted.insert(ticket);
            } else {
                rest.push_back((ticket, len));
            }
        }
        self.waiting = rest;
        self.running = self.admitted.len();
        tracing::debug!(model, requests = self.running, prompt_tokens = tokens, "model cohort admitted");
        true
    }

    /// A member of the running cohort is done (or was never taken up).
    fn finish_one(&mut self, model: &str) {
        self.running = self.running.saturating_sub(1);
        self.admit_next(model);
    }
}

impl Cohorts {
    fn new(model: &str) -> Self {
        Cohorts { model: model.to_owned(), state: Mutex::new(CohortState::default()), changed: Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CohortState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request of `prompt_tokens` is admitted; it stays in
    /// the running cohort until the returned guard is dropped.
    async fn admit(&self, prompt_tokens: u32) -> Admitted<'_> {
        let mut ticket = Ticket { cohorts: self, id: 0, taken: false };
        {
            let mut state = self.state();
            ticket.id = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push_back((ticket.id, prompt_tokens));
            if state.admit_next(&self.model) {
                self.changed.notify_waiters();
            }
        }
        loop {
            // Registered before the check, so a wake-up between the check
            // and the wait is not lost.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.state().admitted.remove(&ticket.id) {
                ticket.taken = true;
                return Admitted { cohorts: self };
            }
            changed.await;
        }
    }
}

/// A waiting request. Dropped before admission (its caller timed out or
/// went away), it leaves the queue, or gives up the place it was given.
struct Ticket<'a> {
    cohorts: &'a Cohorts,
    id: u64,
    /// Admitted and handed over as [`Admitted`].
    taken: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut state = self.cohorts.state();
        if state.admitted.remove(&self.id) {
            state.finish_one(&self.cohorts.model);
        } else {
            state.waiting.retain(|(ticket, _)| *ticket != self.id);
        }
        drop(state);
        self.cohorts.changed.notify_waiters();
    }
}

/// A place in the running cohort, given back on drop.
struct Admitted<'a> {
    cohorts: &'a Cohorts,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.cohorts.state().finish_one(&self.cohorts.model);
        self.cohorts.changed.notify_waiters();
    }
}

/// Sequences the engine batches together. More than the conductor's
/// largest cell concurrency, so no cell waits for a batch slot.
const BATCH_SEQS_MAX: usize = 64;

fn scheduler() -> SchedulerConfig {
    SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(
            std::num::NonZeroUsize::new(BATCH_SEQS_MAX).unwrap_or(std::num::NonZeroUsize::MIN),
        ),
    }
}

/// Sequences one paged-attention engine (GPU) runs together: the
/// device benchmark's largest concurrency, 128, and room beside it. The KV
/// cache, not this, bounds how many long sequences fit.
const PAGED_SEQS_MAX: usize = 256;

/// Share of the GPU's memory left after the weights that paged attention
/// may take for its KV cache (mistral.rs sizes the cache once, at load).
#[cfg(feature = "cuda")]
const PAGED_KV_MEMORY: f32 = 0.85;

/// Loads a local GGUF file: on the CPU with f32 activations, on a GPU with
/// the engine's own choice (bf16 on compute capability 8.0 and newer) and
/// paged attention when `paged` is given.
///
/// mistral.rs's `GgufModelBuilder` always picks the activation dtype
/// automatically, which on a CPU is f16. With f16 activations SmolLM2
/// overflowed to NaN on some prompts and the sampler never finished the
/// request (found running the sample mission: case HS-2026-0005 hung every
/// time). f32 is what the quantised CPU kernels compute in anyway; bf16
/// has f32's range.
fn load_gguf(
    dir: String,
    file: String,
    device: &Device,
    paged: Option<PagedAttentionConfig>,
) -> anyhow::Result<Arc<tokio::sync::Mutex<dyn Pipeline + Send + Sync>>> {
    let loader =
        GGUFLoaderBuilder::new(None, None, dir, vec![file], GGUFSpecificConfig { topology: None }, false, None).build();
    let dtype = if device.is_cpu() { ModelDType::F32 } else { ModelDType::Auto };
    loader.load_model_from_hf(
        None,
        // Local files only: no hub token is read and nothing is fetched.
        TokenSource::None,
        &dtype,
        device,
        true,
        DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
        None,
        paged,
    )
}

/// The device a registry entry asks for, if this build and host have it,
/// and the paged-attention settings for it (GPU only). Blocking: the GPU
/// check reads the file's header and asks the driver.
fn device_for(spec: &models::ModelSpec) -> Result<(Device, Option<PagedAttentionConfig>), InferenceError> {
    match spec.device {
        models::Device::Cpu => Ok((Device::Cpu, None)),
        #[cfg(feature = "cuda")]
        models::Device::Cuda => {
            let refused = |problem| InferenceError::Device { model: spec.name.clone(), problem };
            match gpu::cuda_quant_problem(&spec.path) {
                Ok(None) => {}
                Ok(Some(problem)) => return Err(refused(problem)),
                Err(reason) => return Err(InferenceError::Load { model: spec.name.clone(), reason }),
            }
            let device = gpu::cuda_device(&spec.path).map_err(refused)?;
            let paged =
                PagedAttentionConfig::new(None, MemoryGpuConfig::Utilization(PAGED_KV_MEMORY), PagedCacheType::Auto)
                    .map_err(|e| InferenceError::Load { model: spec.name.clone(), reason: e.to_string() })?;
            Ok((device, Some(paged)))
        }
        #[cfg(not(feature = "cuda"))]
        models::Device::Cuda => Err(models::RegistryError::NoCuda(spec.name.clone()).into()),
    }
}

/// (prompt, completion) tokens of a mistral.rs usage report.
fn usage_tokens(usage: &mistralrs::Usage) -> (u32, u32) {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (count(usage.prompt_tokens), count(usage.completion_tokens))
}

/// A chat request decoded greedily, at most `max_tokens` long.
fn greedy_request(messages: &[ChatMessage], max_tokens: u32) -> Result<RequestBuilder, InferenceError> {
    let mut request = RequestBuilder::new()
        // Greedy decoding: the same prompt gives the same text, which is
        // what an auditor re-running a decision expects. It must come
        // before the length limit: it replaces all sampling parameters,
        // `max_len` included, and an unbounded request generates until
        // the context is full.
        .set_deterministic_sampler()
        .set_sampler_max_len(max_tokens as usize);
    for m in messages {
        request = request.add_message(role(&m.role)?, &m.content);
    }
    Ok(request)
}

/// An upper bound on a prompt's tokens at a frontier model, whose
/// tokenizer this host does not have: every token is at least one byte,
/// and each message's framing a few tokens. The reservation may be
/// larger than the call's real cost; settlement posts the real cost.
fn frontier_prompt_bound(messages: &[ChatMessage]) -> u32 {
    const FRAMING_TOKENS_PER_MESSAGE: usize = 8;
    let bytes: usize = messages.iter().map(|m| m.content.len() + m.role.len() + FRAMING_TOKENS_PER_MESSAGE).sum();
    u32::try_from(bytes + FRAMING_TOKENS_PER_MESSAGE).unwrap_or(u32::MAX)
}

/// One call to an OpenAI-compatible endpoint off this host.
fn frontier_complete(
    name: &str,
    frontier: &models::Frontier,
    messages: &[ChatMessage],
    max_tokens: u32,
    timeout: Duration,
) -> Result<Output, InferenceError> {
    let fail = |reason: String| InferenceError::Request { model: name.to_owned(), reason };
    let body = serde_json::json!({
        "model": frontier.remote_model,
        "messages": messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "max_tokens": max_tokens,
        "temperature": 0,
    });
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let mut request = agent.post(format!("{}/chat/completions", frontier.endpoint));
    if let Some(var) = &frontier.api_key_env {
        let key = std::env::var(var).map_err(|_| fail(format!("the frontier key variable `{var}` is not set")))?;
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let mut response = request.send_json(&body).map_err(|e| fail(format!("{}: {e}", frontier.endpoint)))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .body_mut()
        .read_json()
        .map_err(|e| fail(format!("{} answered {status} with no JSON: {e}", frontier.endpoint)))?;
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no message");
        return Err(fail(format!("{} answered {status}: {message}", frontier.endpoint)));
    }
    let tokens = |field: &str| u32::try_from(answer["usage"][field].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(Output {
        text: answer["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
        finish_reason: answer["choices"][0]["finish_reason"].as_str().unwrap_or("stop").to_owned(),
    })
}

fn role(name: &str) -> Result<TextMessageRole, InferenceError> {
    match name {
        "system" => Ok(TextMessageRole::System),
        "user" => Ok(TextMessageRole::User),
        "assistant" => Ok(TextMessageRole::Assistant),
        other => Err(InferenceError::BadRole(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `admit` once: admitted now, or still waiting.
    fn try_admit(cohorts: &Cohorts, tokens: u32) -> Option<Admitted<'_>> {
        use std::future::Future;
        let mut fut = Box::pin(cohorts.admit(tokens));
        let waker = std::task::Waker::noop();
        match fut.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(admitted) => Some(admitted),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_cohort_is_the_oldest_waiter_and_its_prompt_length() {
        let cohorts = Arc::new(Cohorts::new("m"));
        let first = try_admit(&cohorts, 5).expect("an idle model admits at once");
        // Arrive while the first runs: two of 10 tokens around one of 20,
        // and a 5 like the running one (which must still wait).
        let mut tasks = Vec::new();
        for (i, tokens) in [10u32, 20, 10, 5].into_iter().enumerate() {
            let (cohorts, order) = (cohorts.clone(), i);
            tasks.push(tokio::spawn(async move {
                let admitted = cohorts.admit(tokens).await;
                let cohort = cohorts.state().running;
                // Hold the place until the test lets the cohort go.
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(admitted);
                (order, tokens, cohort)
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cohorts.state().waiting.len(), 4, "nobody joins a running cohort");
        drop(first);
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.expect("task"));
        }
        // The 10s ran together (cohort of 2), then the 20, then the 5.
        assert_eq!(seen, vec![(0, 10, 2), (1, 20, 1), (2, 10, 2), (3, 5, 1)]);
        let state = cohorts.state();
        assert_eq!((state.running, state.waiting.len(), state.admitted.len()), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_frees_its_place() {
        use std::future::Future;
        let cohorts = Cohorts::new("m");
        let running = try_admit(&cohorts, 7).expect("admitted");
        // Waiting, then abandoned (a timeout): it leaves the queue.
        assert!(try_admit(&cohorts, 7).is_none());
        assert_eq!(cohorts.state().waiting.len(), 0);
        // Admitted when the running cohort ends, but dropped before it
        // took its place: the place is given back.
        let mut late = Box::pin(cohorts.admit(9));
        let waker = std::task::Waker::noop();
        assert!(late.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_pending());
        drop(running);
        let counts = |c: &Cohorts| {
            let state = c.state();
            (state.running, state.admitted.len())
        };
        assert_eq!(counts(&cohorts), (1, 1));
        drop(late);
        assert_eq!(counts(&cohorts), (0, 0));
        let next = try_admit(&cohorts, 9).expect("the model is free again");
        assert_eq!(cohorts.state().running, 1);
        drop(next);
        assert_eq!(cohorts.state().running, 0);
    }
}

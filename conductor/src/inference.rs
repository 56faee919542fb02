//! The inference router: one shared mistral.rs engine per model, loaded on
//! first use and shared by every cell, so concurrent calls from many cells
//! are batched by mistral.rs's scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use either::Either;
use mistralrs::{GgufModelBuilder, Model, RequestBuilder, TextMessageRole, TextMessages};
use tokio::sync::OnceCell;

use crate::registry::{Registry, RegistryError};

/// A chat message for a model.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A finished completion with mistral.rs's own token counts.
#[derive(Debug, Clone)]
pub struct Output {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
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
}

/// Routes requests to loaded models.
pub struct Router {
    registry: Registry,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<Model>>>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(registry: Registry) -> Self {
        Router { registry, loaded: Mutex::new(HashMap::new()) }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The loaded model, loading it (hash check first) on first use. Every
    /// caller waits on the same load; the model is never loaded twice.
    pub async fn model(&self, name: &str) -> Result<Arc<Model>, InferenceError> {
        let cell = {
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            loaded.entry(name.to_owned()).or_default().clone()
        };
        let model = cell
            .get_or_try_init(|| async {
                let spec = self.registry.get(name)?.clone();
                let check = spec.clone();
                tokio::task::spawn_blocking(move || check.check_hash())
                    .await
                    .map_err(|e| InferenceError::Load { model: name.to_owned(), reason: e.to_string() })??;
                let load_err = |e: &dyn std::fmt::Display| InferenceError::Load {
                    model: name.to_owned(),
                    reason: e.to_string(),
                };
                let dir = spec.path.parent().ok_or_else(|| load_err(&"path has no directory"))?;
                let file = spec
                    .path
                    .file_name()
                    .ok_or_else(|| load_err(&"path has no file name"))?
                    .to_string_lossy()
                    .into_owned();
                let model = GgufModelBuilder::new(dir.to_string_lossy(), vec![file])
                    .with_force_cpu()
                    .build()
                    .await
                    .map_err(|e| load_err(&e))?;
                Ok::<_, InferenceError>(Arc::new(model))
            })
            .await?;
        Ok(model.clone())
    }

    /// The exact number of prompt tokens `messages` render to, chat template
    /// and generation prompt included: what a reservation must cover.
    pub async fn count_prompt_tokens(
        &self,
        name: &str,
        messages: &[ChatMessage],
    ) -> Result<u32, InferenceError> {
        let model = self.model(name).await?;
        let mut text = TextMessages::new();
        for m in messages {
            text = text.add_message(role(&m.role)?, &m.content);
        }
        let tokens = model
            .tokenize(Either::Left(text), None, true, true, None)
            .await
            .map_err(|e| InferenceError::Request { model: name.to_owned(), reason: e.to_string() })?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    /// Greedy completion of at most `max_tokens` tokens.
    pub async fn complete(
        &self,
        name: &str,
        messages: &[ChatMessage],
        max_tokens: u32,
        timeout: Duration,
    ) -> Result<Output, InferenceError> {
        let model = self.model(name).await?;
        let mut request = RequestBuilder::new()
            .set_sampler_max_len(max_tokens as usize)
            // Greedy decoding: the same prompt gives the same text, which is
            // what an auditor re-running a decision expects.
            .set_deterministic_sampler();
        for m in messages {
            request = request.add_message(role(&m.role)?, &m.content);
        }
        let request_err =
            |e: &dyn std::fmt::Display| InferenceError::Request { model: name.to_owned(), reason: e.to_string() };
        let response = tokio::time::timeout(timeout, model.send_chat_request(request))
            .await
            .map_err(|_| InferenceError::Timeout { model: name.to_owned(), seconds: timeout.as_secs() })?
            .map_err(|e| request_err(&e))?;
        let text = response
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .unwrap_or_default();
        Ok(Output {
            text,
            prompt_tokens: u32::try_from(response.usage.prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(response.usage.completion_tokens).unwrap_or(u32::MAX),
        })
    }
}

fn role(name: &str) -> Result<TextMessageRole, InferenceError> {
    match name {
        "system" => Ok(TextMessageRole::System),
        "user" => Ok(TextMessageRole::User),
        "assistant" => Ok(TextMessageRole::Assistant),
        other => Err(InferenceError::BadRole(other.to_owned())),
    }
}

//! The scripted backend: a deterministic stand-in for a model, for
//! hermetic engine tests and orchestration benchmarks (`cargo xtask
//! bench-engine`), where inference must cost nothing so that what is
//! measured is the engine. It runs only where a registry entry says
//! `kind: scripted`; no default registry has one, and the embedded
//! registry cannot be given one.
//!
//! Counting: a message costs [`FRAMING_TOKENS_PER_MESSAGE`] plus one
//! token per whitespace-separated word, and a prompt
//! [`GENERATION_PROMPT_TOKENS`] more. The reply is the entry's `reply`
//! text, or else `scripted reply <hash>` where `<hash>` is the first 16
//! hex digits of the prompt's BLAKE3 hash, so equal prompts get equal
//! replies and different prompts (almost surely) different ones. It is
//! cut to `max_tokens` words (`finish_reason: length`).

use std::time::Duration;

use crate::{BoxFuture, ChatMessage, InferenceError, Models, OnDelta, Output, Prompt, ROLES, Registry};

/// Tokens a message's framing costs (role and separators).
pub const FRAMING_TOKENS_PER_MESSAGE: u32 = 4;
/// Tokens the generation prompt after the last message costs.
pub const GENERATION_PROMPT_TOKENS: u32 = 2;

/// What a `kind: scripted` registry entry says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The reply to every prompt; `None`: one derived from the prompt.
    pub reply: Option<String>,
}

/// The scripted count of `messages`.
pub fn count(messages: &[ChatMessage]) -> Result<u32, InferenceError> {
    let mut tokens = u64::from(GENERATION_PROMPT_TOKENS);
    for m in messages {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(InferenceError::BadRole(m.role.clone()));
        }
        tokens += u64::from(FRAMING_TOKENS_PER_MESSAGE) + m.content.split_whitespace().count() as u64;
    }
    Ok(u32::try_from(tokens).unwrap_or(u32::MAX))
}

/// The scripted completion of `prompt`.
pub fn complete(script: &Script, prompt: &Prompt, max_tokens: u32) -> Output {
    let reply = match &script.reply {
        Some(reply) => reply.clone(),
        None => {
            let mut hasher = blake3::Hasher::new();
            for m in prompt.messages() {
                hasher.update(m.role.as_bytes()).update(&[0]).update(m.content.as_bytes()).update(&[0]);
            }
            format!("scripted reply {}", &hasher.finalize().to_hex()[..16])
        }
    };
    let words: Vec<&str> = reply.split_whitespace().collect();
    let cut = words.len() > max_tokens as usize;
    let kept = if cut { &words[..max_tokens as usize] } else { &words[..] };
    Output {
        text: kept.join(" "),
        prompt_tokens: prompt.tokens(),
        completion_tokens: kept.len() as u32,
        finish_reason: if cut { "length" } else { "stop" }.to_owned(),
    }
}

/// A backend that serves only scripted models: for tests and benchmarks
/// that link the engine without any model runtime. The product's own
/// router (`inference::Router`) serves scripted entries the same way.
#[derive(Debug)]
pub struct ScriptedModels {
    registry: Registry,
}

impl ScriptedModels {
    pub fn new(registry: Registry) -> Self {
        ScriptedModels { registry }
    }

    fn script(&self, model: &str) -> Result<&Script, InferenceError> {
        self.registry.get(model)?.scripted.as_ref().ok_or_else(|| InferenceError::Load {
            model: model.to_owned(),
            reason: "this backend serves scripted models only".into(),
        })
    }
}

impl Models for ScriptedModels {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn prompt<'a>(
        &'a self,
        model: &'a str,
        messages: Vec<ChatMessage>,
    ) -> BoxFuture<'a, Result<Prompt, InferenceError>> {
        Box::pin(async move {
            self.script(model)?;
            let tokens = count(&messages)?;
            Ok(Prompt::counted(model, messages, tokens))
        })
    }

    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, InferenceError>> {
        Box::pin(async move { Ok(complete(self.script(prompt.model())?, prompt, max_tokens)) })
    }

    fn stream<'a>(
        &'a self,
        prompt: &'a Prompt,
        max_tokens: u32,
        _timeout: Duration,
        on_delta: OnDelta<'a>,
    ) -> BoxFuture<'a, Result<Output, InferenceError>> {
        Box::pin(async move {
            let out = complete(self.script(prompt.model())?, prompt, max_tokens);
            stream_words(&out.text, &on_delta);
            Ok(out)
        })
    }
}

/// Hands `text` to `on_delta` a word at a time, as a model would.
pub fn stream_words(text: &str, on_delta: &OnDelta<'_>) {
    let mut first = true;
    for word in text.split(' ') {
        on_delta(if first { word.to_owned() } else { format!(" {word}") });
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn counts_and_replies_are_deterministic() {
        let messages = vec![msg("system", "be brief"), msg("user", "is this case eligible?")];
        assert_eq!(count(&messages).expect("counted"), 2 + (4 + 2) + (4 + 4));
        let prompt = Prompt::counted("s", messages.clone(), count(&messages).expect("counted"));
        let a = complete(&Script::default(), &prompt, 100);
        let b = complete(&Script::default(), &Prompt::counted("s", messages, 16), 100);
        assert_eq!(a.text, b.text);
        assert!(a.text.starts_with("scripted reply "), "{}", a.text);
        let other = Prompt::counted("s", vec![msg("user", "something else")], 7);
        assert_ne!(complete(&Script::default(), &other, 100).text, a.text);
        assert_eq!((a.completion_tokens, a.finish_reason.as_str()), (3, "stop"));
    }

    #[test]
    fn a_reply_is_cut_at_max_tokens() {
        let script = Script { reply: Some("eligible because the income is under the limit".into()) };
        let prompt = Prompt::counted("s", vec![msg("user", "x")], 7);
        let out = complete(&script, &prompt, 3);
        assert_eq!(
            (out.text.as_str(), out.completion_tokens, out.finish_reason.as_str()),
            ("eligible because the", 3, "length")
        );
        assert!(matches!(count(&[msg("robot", "x")]), Err(InferenceError::BadRole(_))));
    }
}

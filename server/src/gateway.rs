//! The metered OpenAI-compatible gateway on `conductor serve`, for
//! programs outside the cells: `POST /v1/chat/completions` (whole or
//! streamed), `GET /v1/models` and `GET /v1/models/{id}`.
//!
//! Each client holds a key an operator issued (`conductor gateway issue`,
//! journaled `gateway.key_issued`), bound to a budget account of its own
//! (`gateway:NAME`); an operator can revoke it (`conductor gateway
//! revoke`, journaled `gateway.key_revoked`), and `conductor gateway list`
//! shows every key with its spend. A call is metered exactly as a cell's:
//! the prompt is counted with the model's tokenizer, the worst case
//! (prompt plus `max_tokens`, at the registry's prices) is reserved
//! before the model runs, and the actual cost is settled after; a call
//! that does not run is voided and costs nothing. Every call served is
//! journaled (`gateway.completion`: the messages, the text, tokens and
//! cost).
//!
//! **Refusals.** A refusal of a valid key (malformed, unknown model,
//! beyond the context, over budget) charges nothing and is journaled as
//! `gateway.refused`, up to a bound per key and minute; past it the key's
//! requests get `429 rate_limit_exceeded` with `Retry-After` and are only
//! counted, and the counts are journaled as one `gateway.refusals` entry
//! a minute (see [`refusals`]). Requests with no valid key (unknown or
//! revoked) are refused and logged but never journaled: anyone can send
//! those, and they must not be able to grow the journal.
//!
//! **Streamed calls and crashes.** A streamed call sends text before it
//! ends, so its request and reservation are journaled (`gateway.started`)
//! in one durable commit before the first byte is sent. It then ends in
//! one of three ways, each one durable commit:
//! - the model finishes: `gateway.completion` (with `started_seq`) and
//!   the reservation settled at the actual cost, whether or not the client
//!   stayed to read it;
//! - the model fails before any text was sent: `gateway.refused` (503)
//!   and the reservation voided;
//! - the call stops after text may have been sent (the model failed, or
//!   the server crashed or stopped mid-call, found when the next server
//!   starts): `gateway.interrupted`, and the reservation settled at its
//!   full amount. The client received an unknown part of the answer, and
//!   the reservation is the most the call could have cost, which the
//!   client agreed to by asking. Only if the server was down past the
//!   reservation's deadline has it expired unsettled; the entry then says
//!   so with a cost of 0.
//!
//! A whole (unstreamed) call's client receives nothing until its
//! completion is journaled, so a crash mid-call costs nothing: when the
//! next server starts, every reservation the previous one left open on a
//! `gateway:` account that is not an interrupted stream is voided
//! ([`recover`]). Reservations also expire after `serve
//! --gateway-reservation-ttl-s` (default 600 s), which bounds how long a
//! call stuck in a live server can hold its client's funds.
//!
//! Keys are random 256-bit secrets shown once; the database keeps only
//! their BLAKE3 hash. Decoding is greedy (the same request gives the same
//! text), so `temperature`, `top_p` and the like are accepted and ignored.

mod refusals;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use anyhow::{Context, Result};
use futures_util::StreamExt as _;

use ledger::{BudgetError, LedgerError, ReservationId};
use serde::Deserialize;
use serde_json::{Value, json};

use engine::data::DataDir;
use engine::entries::{self, GatewayCompletion, GatewayRefused, GatewayStarted, Message};
use engine::gateway::{GatewayKey, OpenStream, recovery};
use engine::metering::{self, CountError, Meter, QuoteError, Reserved};
use models::ModelSpec;
use models::{ChatMessage, Models, Output, Prompt};
use refusals::{RATE_LIMITED, RefusalLog, Verdict};

/// The largest request body: messages for a small model's context.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// `max_tokens` when the request gives none.
const MAX_TOKENS_DEFAULT: u32 = 256;
/// How long one call may take before it is abandoned (and voided).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a call's reservation stays open unless `serve` says otherwise.
pub const RESERVATION_TTL_DEFAULT_S: u64 = 600;
/// The shortest reservation TTL: a call is given the TTL less
/// [`SETTLE_MARGIN`] to run, and a short completion on a CPU takes
/// seconds.
pub const RESERVATION_TTL_MIN_S: u64 = 30;
/// The longest reservation TTL: a day. Longer would let one stuck call
/// hold its client's funds for longer than anyone would wait.
pub const RESERVATION_TTL_MAX_S: u64 = 86_400;
/// Time kept between a call's timeout and its reservation's deadline, to
/// settle it: a reservation past its deadline can no longer be settled.
const SETTLE_MARGIN: Duration = Duration::from_secs(10);

fn messages_out(prompt: &Prompt) -> Vec<Message> {
    prompt.messages().iter().map(Message::from).collect()
}

/// Reports a journal write that failed. A storage failure (I/O, a full
/// disk, corruption) goes to the process's health, which stops the
/// server: it must not keep serving calls it can no longer record.
fn journal_failed(error: &anyhow::Error) {
    tracing::error!("gateway: a journal write failed: {}", engine::health::describe(error));
    engine::health::note(error);
}

/// The gateway's settings, from `conductor serve`'s arguments.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a call's reservation stays open (between
    /// [`RESERVATION_TTL_MIN_S`] and [`RESERVATION_TTL_MAX_S`]).
    pub reservation_ttl: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { reservation_ttl: Duration::from_secs(RESERVATION_TTL_DEFAULT_S) }
    }
}

impl GatewayConfig {
    /// How long a call may run: within its reservation, leaving time to
    /// settle it.
    fn call_timeout(&self) -> Duration {
        CALL_TIMEOUT.min(self.reservation_ttl.saturating_sub(SETTLE_MARGIN))
    }

    fn reservation_ttl_us(&self) -> i64 {
        i64::try_from(self.reservation_ttl.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The shared pieces the gateway needs from the server.
impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("router", &self.router).finish_non_exhaustive()
    }
}

pub struct Gateway {
    data: DataDir,
    router: Arc<dyn Models>,
    /// The runtime models run on (the mission runner's): the server's
    /// workers only wait for answers.
    runtime: tokio::runtime::Handle,
    config: GatewayConfig,
    /// How calls reserve, settle and record refusals: the same as a
    /// cell's (`engine::metering`).
    meter: Meter,
    refusals: Arc<RefusalLog>,
    /// When this server started (Unix seconds): `created` of the models
    /// it lists, which have no date of their own here.
    started_s: u64,
}

impl Gateway {
    /// The gateway of one server. Starts the task that journals counted
    /// refusals once a window ([`refusals::REFUSAL_WINDOW`]); what is
    /// still counted when the gateway is dropped is journaled then.
    pub fn new(data: DataDir, router: Arc<dyn Models>, runtime: tokio::runtime::Handle, config: GatewayConfig) -> Self {
        let refusals = Arc::new(RefusalLog::new(data.clone()));
        let weak = Arc::downgrade(&refusals);
        runtime.spawn(async move {
            let mut windows = tokio::time::interval(refusals::REFUSAL_WINDOW);
            windows.tick().await;
            loop {
                windows.tick().await;
                // Gone once the server stopped (and flushed on drop).
                let Some(log) = weak.upgrade() else { break };
                match tokio::task::spawn_blocking(move || log.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => journal_failed(&e),
                    Err(e) => tracing::error!("gateway: the refusal summary task failed: {e}"),
                }
            }
        });
        let meter = Meter::new(
            data.committer.clone(),
            data.ledger.clone(),
            data.conductor.clone(),
            config.reservation_ttl_us(),
        );
        Gateway { data, router, runtime, config, meter, refusals, started_s: unix_seconds() }
    }

    /// The models this gateway serves: local, with prices.
    fn served_models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.router.registry().models().filter(|m| m.frontier.is_none() && m.price.is_some())
    }
}

/// The gateway's routes, registered by `serve` on its app. Every answer
/// is counted by its status (`conductor_gateway_requests_total`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/chat/completions",
        web::post().to(|gw: web::Data<Gateway>, req: HttpRequest, payload: web::Payload| async move {
            counted(chat_completions(gw, req, payload).await)
        }),
    )
    .route(
        "/v1/models",
        web::get().to(|gw: web::Data<Gateway>, req: HttpRequest| async move { counted(list_models(gw, req).await) }),
    )
    .route(
        "/v1/models/{id}",
        web::get().to(|gw: web::Data<Gateway>, req: HttpRequest, id: web::Path<String>| async move {
            counted(one_model(gw, req, id).await)
        }),
    );
}

/// Counts an answer by its status on its way out.
fn counted(response: HttpResponse) -> HttpResponse {
    crate::metrics::gateway_answered(response.status());
    response
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"error": {"message": message.into(), "type": kind, "code": code, "param": null}}))
}

fn internal(message: impl Into<String>) -> HttpResponse {
    error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", message)
}

/// A key over its refusal allowance: counted, not journaled.
fn rate_limited(retry_after_s: u64) -> HttpResponse {
    HttpResponse::TooManyRequests().insert_header((header::RETRY_AFTER, retry_after_s.to_string())).json(
        json!({"error": {
        "message": format!("too many refused requests with this key; retry in {retry_after_s} s"),
        "type": "requests", "code": RATE_LIMITED, "param": null}}),
    )
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<RequestMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    n: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RequestMessage {
    role: String,
    content: MessageContent,
}

/// `content` as a string, or as a list of text parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The key a request presents, if it is valid and in force; otherwise the
/// 401 (never journaled: anyone can send it).
async fn authenticate(gw: &web::Data<Gateway>, req: &HttpRequest) -> Result<GatewayKey, HttpResponse> {
    let unauthorized =
        |message: &str| error(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", message);
    let Some(token) = bearer(req).map(str::to_owned) else {
        return Err(unauthorized("send your gateway key as `Authorization: Bearer cgw_…`"));
    };
    let data = gw.data.clone();
    match web::block(move || engine::gateway::lookup(&data, &token)).await {
        Ok(Ok(Some(key))) => {
            if let Some(r) = &key.revoked {
                tracing::info!("gateway: a request with revoked key {} was refused", key.key_id);
                return Err(unauthorized(&format!("this gateway key was revoked (journal entry {})", r.seq)));
            }
            Ok(key)
        }
        Ok(Ok(None)) => {
            tracing::info!("gateway: a request with an unknown key was refused");
            Err(unauthorized("that gateway key is not valid here"))
        }
        Ok(Err(e)) => Err(internal(format!("{e:#}"))),
        Err(e) => Err(internal(e.to_string())),
    }
}

/// An OpenAI model object.
fn model_object(spec: &ModelSpec, created_s: u64) -> Value {
    json!({"id": spec.name, "object": "model", "created": created_s, "owned_by": "conductor"})
}

/// `GET /v1/models`: the models a key may call.
async fn list_models(gw: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
    if let Err(response) = authenticate(&gw, &req).await {
        return response;
    }
    let data: Vec<Value> = gw.served_models().map(|m| model_object(m, gw.started_s)).collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
async fn one_model(gw: web::Data<Gateway>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if let Err(response) = authenticate(&gw, &req).await {
        return response;
    }
    match gw.served_models().find(|m| m.name == *id) {
        Some(spec) => HttpResponse::Ok().json(model_object(spec, gw.started_s)),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("this gateway serves no model `{id}`"),
        ),
    }
}

/// Why a valid key's call was refused.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Refusal { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", code, message: message.into() }
    }

    fn server(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal { status, kind: "server_error", code, message: message.into() }
    }

    fn response(&self) -> HttpResponse {
        error(self.status, self.kind, self.code, self.message.clone())
    }
}

/// A refused call by a known key: journaled (or, past the key's
/// allowance, counted), then answered.
async fn refuse(gw: &web::Data<Gateway>, key: &GatewayKey, refusal: Refusal) -> HttpResponse {
    if let Verdict::Limited { retry_after_s } = gw.refusals.refusal(key, refusal.code) {
        return rate_limited(retry_after_s);
    }
    let (gw2, key2) = (gw.clone(), key.clone());
    let recorded = web::block(move || {
        let recorded = journal_refusal(&gw2, &key2, &refusal);
        (recorded, refusal)
    })
    .await;
    match recorded {
        Ok((Ok(()), refusal)) => refusal.response(),
        Ok((Err(e), refusal)) => {
            journal_failed(&e);
            refusal.response()
        }
        Err(e) => internal(e.to_string()),
    }
}

fn journal_refusal(gw: &Gateway, key: &GatewayKey, refusal: &Refusal) -> Result<()> {
    let conductor = gw.data.conductor.clone();
    let payload = GatewayRefused {
        key_id: key.key_id.clone(),
        account: key.account.clone(),
        status: refusal.status.as_u16(),
        code: refusal.code.to_owned(),
        reason: refusal.message.clone(),
        reservation: None,
    };
    // Recorded as a cell's refusal is (`Meter::record`), before it is
    // answered.
    gw.meter
        .record(move |t, now| entries::append(t, &conductor, &payload, now))
        .context("journaling a refused gateway call")?;
    Ok(())
}

/// A checked call, priced, not yet paid for.
#[derive(Clone)]
struct Call {
    key: GatewayKey,
    prompt: Prompt,
    max_tokens: u32,
    quote: metering::Quote,
    stream: bool,
}

/// A call whose worst case is reserved.
#[derive(Clone)]
struct Paid {
    call: Call,
    reservation: ReservationId,
    /// A streamed call's `gateway.started` entry.
    started_seq: Option<u64>,
}

impl Paid {
    fn open_stream(&self) -> Option<OpenStream> {
        self.started_seq.map(|started_seq| OpenStream {
            started_seq,
            key_id: self.call.key.key_id.clone(),
            account: self.call.key.account.clone(),
            reserved: self.call.quote.worst_case,
        })
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(gw: web::Data<Gateway>, req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
    let key = match authenticate(&gw, &req).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    if let Some(retry_after_s) = gw.refusals.limited(&key) {
        return rate_limited(retry_after_s);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refuse(&gw, &key, Refusal::bad("bad_body", "the request body could not be read")).await;
        };
        if body.len() + chunk.len() > BODY_BYTES_MAX {
            let refusal = Refusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "invalid_request_error",
                code: "request_too_large",
                message: format!("the request is larger than {BODY_BYTES_MAX} bytes"),
            };
            return refuse(&gw, &key, refusal).await;
        }
        body.extend_from_slice(&chunk);
    }
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(&gw, &key, Refusal::bad("invalid_json", format!("malformed request: {e}"))).await,
    };
    let call = match check_call(&gw, key.clone(), request).await {
        Ok(call) => call,
        Err(refusal) => return refuse(&gw, &key, refusal).await,
    };
    let paid = match pay(&gw, call).await {
        Ok(paid) => paid,
        Err(refusal) => return refuse(&gw, &key, refusal).await,
    };
    if paid.call.stream { stream_call(gw, paid) } else { whole_call(gw, paid).await }
}

/// The request's messages for the model, or why they cannot be sent.
fn chat_messages(messages: Vec<RequestMessage>) -> Result<Vec<ChatMessage>, Refusal> {
    if messages.is_empty() {
        return Err(Refusal::bad("invalid_messages", "`messages` is empty"));
    }
    let mut chat = Vec::with_capacity(messages.len());
    for m in messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(Refusal::bad(
                "invalid_role",
                format!("role `{}` is not one of system, user, assistant", m.role),
            ));
        }
        let content = match m.content {
            MessageContent::Text(text) => text,
            MessageContent::Parts(parts) => {
                if let Some(other) = parts.iter().find(|p| p.kind != "text") {
                    return Err(Refusal::bad(
                        "unsupported",
                        format!("content part `{}`: these models read text only", other.kind),
                    ));
                }
                parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("")
            }
        };
        chat.push(ChatMessage { role: m.role, content });
    }
    Ok(chat)
}

/// Checks the request, counts its prompt and prices its worst case.
async fn check_call(gw: &web::Data<Gateway>, key: GatewayKey, request: ChatRequest) -> Result<Call, Refusal> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(Refusal::bad("unsupported", "only one choice per request (n = 1)"));
    }
    let chat = chat_messages(request.messages)?;
    let model = request.model;
    let spec = match gw.router.registry().get(&model) {
        Ok(spec) => spec.clone(),
        Err(e) => {
            return Err(Refusal {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                code: "model_not_found",
                message: e.to_string(),
            });
        }
    };
    if spec.frontier.is_some() {
        return Err(Refusal::bad(
            "model_not_found",
            format!("model `{model}` runs off this host; the gateway serves local models only"),
        ));
    }
    let Some(price) = spec.price else {
        return Err(Refusal::bad(
            "model_not_priced",
            format!(
                "model `{model}` has no prompt_price/completion_price in the registry; the gateway meters every call"
            ),
        ));
    };
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    if max_tokens == Some(0) {
        return Err(Refusal::bad("invalid_max_tokens", "max_tokens must be at least 1"));
    }
    let router = gw.router.clone();
    let (name, context) = (model.clone(), spec.context_tokens);
    // Counted, checked against the context and priced as every paid call
    // is (`engine::metering`): the worst case is what is reserved. With no
    // `max_tokens`, the call may use the default or the room the prompt
    // leaves, whichever is less.
    let counted = gw.runtime.spawn(async move {
        metering::count(router.as_ref(), &name, chat, price, context, |prompt_tokens| {
            // At least 1: a prompt that fills the context is refused for
            // its length, not for asking no tokens.
            max_tokens.unwrap_or(MAX_TOKENS_DEFAULT.min(context.saturating_sub(prompt_tokens)).max(1))
        })
        .await
    });
    let (prompt, quote) = match counted.await {
        Ok(Ok(counted)) => counted,
        Ok(Err(CountError::Prompt(e))) => {
            return Err(Refusal::server(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", e.to_string()));
        }
        Ok(Err(CountError::Quote(e @ QuoteError::Overflow { .. }))) => {
            return Err(Refusal::bad("invalid_max_tokens", e.to_string()));
        }
        Ok(Err(CountError::Quote(QuoteError::Context { prompt_tokens, max_tokens, .. }))) => {
            return Err(Refusal::bad(
                "context_length_exceeded",
                format!(
                    "the prompt is {prompt_tokens} tokens and max_tokens {max_tokens}; model `{model}` has a context of {context} tokens"
                ),
            ));
        }
        // Explicit zeros were refused above; a default is at least 1.
        Ok(Err(CountError::Quote(e @ QuoteError::NoTokens))) => {
            return Err(Refusal::bad("invalid_max_tokens", e.to_string()));
        }
        Err(e) => return Err(Refusal::server(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    };
    let max_tokens = quote.max_tokens;
    Ok(Call { key, prompt, max_tokens, quote, stream: request.stream })
}

/// A reservation the key's account could not cover.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unaffordable(BudgetError);

/// Reserves the call's worst case; for a streamed call, journals
/// `gateway.started` in the same durable commit, before any byte is sent.
async fn pay(gw: &web::Data<Gateway>, call: Call) -> Result<Paid, Refusal> {
    let gw2 = gw.clone();
    let reserved = web::block(move || {
        let reserved = reserve(&gw2, &call);
        (call, reserved)
    })
    .await;
    let (call, reserved) = match reserved {
        Ok(done) => done,
        Err(e) => return Err(Refusal::server(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    };
    match reserved {
        Ok((reservation, started_seq)) => Ok(Paid { call, reservation, started_seq }),
        Err(e) => match e.downcast_ref::<Unaffordable>() {
            Some(Unaffordable(refusal)) => Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "insufficient_quota",
                code: "insufficient_quota",
                message: format!(
                    "this key's budget cannot cover the call (up to {} units): {refusal}",
                    call.quote.worst_case
                ),
            }),
            None => {
                journal_failed(&e);
                Err(Refusal::server(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{e:#}")))
            }
        },
    }
}

/// The reservation (and a stream's `gateway.started`), in one durable
/// group commit (`Meter::reserve`, as a cell's). A reservation the
/// account cannot cover writes nothing: the refusal is journaled once, as
/// `gateway.refused`.
fn reserve(gw: &Gateway, call: &Call) -> Result<(ReservationId, Option<u64>)> {
    let key = &call.key;
    let memo = json!({"gateway": key.key_id, "model": call.prompt.model(), "prompt_tokens": call.prompt.tokens(),
                      "max_tokens": call.max_tokens, "stream": call.stream});
    let (conductor, stream) = (gw.data.conductor.clone(), call.clone());
    // A client waits for its answer: a call the key cannot cover now is
    // refused, not held until other calls settle.
    let reserved = gw.meter.reserve(&key.account, &call.quote, memo, None, move |t, reservation, now| {
        if !stream.stream {
            return Ok(None);
        }
        let key = &stream.key;
        let started = GatewayStarted {
            key_id: key.key_id.clone(),
            account: key.account.clone(),
            model: stream.prompt.model().to_owned(),
            messages: messages_out(&stream.prompt),
            max_tokens: stream.max_tokens,
            prompt_tokens: stream.prompt.tokens(),
            reservation: reservation.0,
            reserved: stream.quote.worst_case,
        };
        let (started_seq, _) = entries::append(t, &conductor, &started, now)?;
        let open = OpenStream {
            started_seq,
            key_id: key.key_id.clone(),
            account: key.account.clone(),
            reserved: stream.quote.worst_case,
        };
        recovery::opened(t.redb(), reservation, &open).map_err(ledger_error)?;
        Ok(Some(started_seq))
    })?;
    match reserved {
        Reserved::Paid { id, with: started_seq } => Ok((id, started_seq)),
        Reserved::Refused(refusal) => Err(Unaffordable(refusal).into()),
    }
}

/// An error inside a group-committed operation, as the committer carries
/// it: a ledger error as it is (so a storage failure is still one), any
/// other as a refused entry. Either rolls the operation back.
fn ledger_error(error: anyhow::Error) -> LedgerError {
    error.downcast::<LedgerError>().unwrap_or_else(|other| LedgerError::BadEntry(format!("{other:#}")))
}

/// How a call that was paid for ended.
#[derive(Clone)]
enum Ending {
    /// The model finished.
    Answered(Output),
    /// The model failed before any text reached the client.
    Failed(String),
    /// The call stopped after text may have reached the client.
    Interrupted(String),
}

/// Settles a call that ran, voids one that did not (`Meter::settle` and
/// `Meter::void`, as a cell's), or charges one that was interrupted, and
/// journals it, in one durable group commit. Returns the charge.
fn finish(gw: &Gateway, paid: &Paid, ending: Ending) -> Result<u64> {
    let (conductor, call, reservation) = (gw.data.conductor.clone(), paid.call.clone(), paid.reservation);
    let (started_seq, streamed) = (paid.started_seq, paid.started_seq.is_some());
    // A stream's row in the table of open streams closes with its call.
    let close = move |t: &mut ledger::Txn| if streamed { recovery::closed(t.redb(), reservation) } else { Ok(()) };
    let written = match ending {
        Ending::Answered(out) => {
            // The reservation covered the real prompt and every allowed
            // token; it is the most that may be posted.
            let charge = call.quote.charge(out.prompt_tokens, out.completion_tokens);
            let payload = GatewayCompletion {
                key_id: call.key.key_id.clone(),
                account: call.key.account.clone(),
                model: call.prompt.model().to_owned(),
                messages: (!streamed).then(|| messages_out(&call.prompt)),
                started_seq,
                max_tokens: call.max_tokens,
                text: out.text,
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.completion_tokens,
                cost: charge.posted,
                reservation: reservation.0,
            };
            gw.meter.settle(reservation, charge, move |t, now| {
                entries::append(t, &conductor, &payload, now)?;
                close(t).map_err(ledger_error)?;
                Ok(charge.posted)
            })
        }
        Ending::Failed(reason) => {
            let payload = GatewayRefused {
                key_id: call.key.key_id.clone(),
                account: call.key.account.clone(),
                status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
                code: "model_error".to_owned(),
                reason,
                reservation: Some(reservation.0),
            };
            gw.meter.void(reservation, move |t, now| {
                entries::append(t, &conductor, &payload, now)?;
                close(t).map_err(ledger_error)?;
                Ok(0)
            })
        }
        // Text may have reached the client: the reservation is charged in
        // full (see the module's documentation).
        Ending::Interrupted(reason) => match paid.open_stream() {
            Some(open) => gw.meter.record(move |t, _| {
                recovery::charge_interrupted(t, &conductor, reservation, &open, &reason).map_err(ledger_error)
            }),
            None => Err(LedgerError::BadEntry("an unstreamed call cannot be interrupted after sending text".into())),
        },
    };
    written.map_err(anyhow::Error::from).inspect_err(journal_failed)
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn usage(out: &Output) -> Value {
    json!({"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
           "total_tokens": out.prompt_tokens + out.completion_tokens})
}

async fn whole_call(gw: web::Data<Gateway>, paid: Paid) -> HttpResponse {
    let router = gw.router.clone();
    let (prompt, max_tokens, timeout) = (paid.call.prompt.clone(), paid.call.max_tokens, gw.config.call_timeout());
    let result = match gw.runtime.spawn(async move { router.complete(&prompt, max_tokens, timeout).await }).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let gw2 = gw.clone();
    let settled = web::block(move || {
        let ending = match &result {
            Ok(out) => Ending::Answered(out.clone()),
            Err(reason) => Ending::Failed(reason.clone()),
        };
        let cost = finish(&gw2, &paid, ending);
        (cost, result, paid.call.prompt.model().to_owned())
    })
    .await;
    match settled {
        Ok((Ok(_), Ok(out), model)) => HttpResponse::Ok().json(json!({
            "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), "object": "chat.completion",
            "created": unix_seconds(), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                         "finish_reason": out.finish_reason, "logprobs": null}],
            "usage": usage(&out),
        })),
        Ok((Ok(_), Err(reason), _)) => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "model_error", reason),
        Ok((Err(e), _, _)) => internal(format!("{e:#}")),
        Err(e) => internal(e.to_string()),
    }
}

/// Server-sent chunks as the model writes, then the usage and `[DONE]`.
/// The call's `gateway.started` is already durable (see [`pay`]); it is
/// settled when the model finishes, whether or not the client is still
/// reading: it ran, so it is paid for.
fn stream_call(gw: web::Data<Gateway>, paid: Paid) -> HttpResponse {
    // Unbounded: a completion is at most max_tokens pieces, and a slow
    // client must not make the model's pieces drop.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let chunk = {
        let (id, model) = (id.clone(), paid.call.prompt.model().to_owned());
        move |delta: Value, finish: Value, usage: Value| {
            let body = json!({"id": id, "object": "chat.completion.chunk", "created": unix_seconds(), "model": model,
                              "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
                              "usage": usage});
            Bytes::from(format!("data: {body}\n\n"))
        }
    };
    let router = gw.router.clone();
    let runtime = gw.runtime.clone();
    let timeout = gw.config.call_timeout();
    let gw2 = gw.clone();
    runtime.spawn(async move {
        // A client that went away stops reading; the call still ends, so
        // a failed send is not an error here.
        tx.send(chunk(json!({"role": "assistant", "content": ""}), Value::Null, Value::Null)).ok();
        let (prompt, max_tokens) = (paid.call.prompt.clone(), paid.call.max_tokens);
        let sender = tx.clone();
        let piece = chunk.clone();
        let delivered = Arc::new(AtomicBool::new(false));
        let sent = delivered.clone();
        let result = router
            .stream(
                &prompt,
                max_tokens,
                timeout,
                Box::new(move |text| {
                    sent.store(true, Ordering::Relaxed);
                    sender.send(piece(json!({"content": text}), Value::Null, Value::Null)).ok();
                }),
            )
            .await
            .map_err(|e| e.to_string());
        let finished = tokio::task::spawn_blocking(move || {
            let ending = match &result {
                Ok(out) => Ending::Answered(out.clone()),
                Err(reason) if delivered.load(Ordering::Relaxed) => Ending::Interrupted(reason.clone()),
                Err(reason) => Ending::Failed(reason.clone()),
            };
            let cost = finish(&gw2, &paid, ending);
            (cost, result)
        })
        .await;
        let tail = match finished {
            Ok((Ok(_), Ok(out))) => chunk(json!({}), json!(out.finish_reason), usage(&out)),
            Ok((_, Err(reason))) => Bytes::from(format!(
                "data: {}\n\n",
                json!({"error": {"message": reason, "type": "server_error", "code": "model_error"}})
            )),
            Ok((Err(e), _)) => Bytes::from(format!(
                "data: {}\n\n",
                json!({"error": {"message": format!("{e:#}"), "type": "server_error"}})
            )),
            Err(e) => Bytes::from(format!(
                "data: {}\n\n",
                json!({"error": {"message": e.to_string(), "type": "server_error"}})
            )),
        };
        tx.send(tail).ok();
        tx.send(Bytes::from_static(b"data: [DONE]\n\n")).ok();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

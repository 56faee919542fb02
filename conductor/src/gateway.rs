//! The metered OpenAI-compatible gateway: `POST /v1/chat/completions` on
//! `conductor serve`, for programs outside the cells.
//!
//! Each client holds a key an operator issued (`conductor gateway issue`),
//! bound to a budget account of its own. A call is metered exactly as a
//! cell's: the prompt is counted with the model's tokenizer, the worst case
//! (prompt plus `max_tokens`, at the registry's prices) is reserved before
//! the model runs, and the actual cost is settled after; a call that does
//! not run is voided and costs nothing. Every call served is journaled
//! (`gateway.completion`: the messages, the text, tokens and cost), and so
//! is every refusal of a valid key (`gateway.refused`). Requests with no
//! valid key are refused and logged but not journaled: anyone can send
//! those, and they must not be able to grow the journal.
//!
//! Keys are random 256-bit secrets shown once; the database keeps only
//! their BLAKE3 hash. Decoding is greedy (the same request gives the same
//! text), so `temperature`, `top_p` and the like are accepted and ignored.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt as _;
use ledger::{BudgetError, LedgerError};
use rand_core::{OsRng, RngCore};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::now_us;
use crate::data::DataDir;
use crate::inference::{ChatMessage, Output, Prompt, Router};

/// BLAKE3 of a key (hex) -> the key's record (JSON).
const KEYS: TableDefinition<&str, &str> = TableDefinition::new("gateway_keys");
/// What a key looks like: this prefix and 64 hex digits.
const KEY_PREFIX: &str = "cgw_";
/// The largest request body: messages for a small model's context.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// `max_tokens` when the request gives none.
const MAX_TOKENS_DEFAULT: u32 = 256;
/// How long one call may take before it is abandoned (and voided).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a reservation may stay open (a crash returns it after this).
const RESERVATION_TTL: Duration = Duration::from_secs(600);

/// A client key's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayKey {
    /// The first 16 hex digits of the key's hash: names the key in the
    /// journal without revealing it.
    pub key_id: String,
    pub name: String,
    /// The budget account every call is charged to.
    pub account: String,
    pub issued_seq: u64,
}

pub fn create_tables(txn: &redb::WriteTransaction) -> Result<()> {
    txn.open_table(KEYS).context("creating the gateway key table")?;
    Ok(())
}

fn key_hash(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// What `gateway issue` made: the key (shown once) and its record.
#[derive(Debug)]
pub struct Issued {
    pub key: String,
    pub record: GatewayKey,
    pub limit: u64,
}

/// Issues a client key named `name`, bound to a new budget account
/// `gateway:NAME` with `limit` units, signed by an operator's key.
pub fn issue(data_dir: &Path, name: &str, limit: u64, operator_key: &Path) -> Result<Issued> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        bail!("a key name is 1 to 64 letters, digits, `-` or `_`; `{name}` is not");
    }
    let operator = crate::keys::load_role_key(operator_key, identity::Role::Operator, "gateway keys are issued")?;
    let data = DataDir::open_or_create(data_dir)?;
    crate::keys::require_registered(&data, &operator.public(), operator_key)?;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let hash = key_hash(&key);
    let account = format!("gateway:{name}");
    let conductor = data.conductor.clone();
    let record = data.ledger.write(|t| -> Result<GatewayKey> {
        if t.account(&account).is_ok() {
            bail!("a gateway key named `{name}` exists already (account {account}); pick another name");
        }
        let now = now_us();
        t.open_account(&conductor, &account, None, Some(limit), now)?;
        let key_id = hash[..16].to_owned();
        let (seq, _) = t.append(
            &operator,
            "gateway.key_issued",
            &json!({"key_id": key_id, "name": name, "account": account, "limit": limit}),
            now,
        )?;
        let record = GatewayKey { key_id, name: name.to_owned(), account: account.clone(), issued_seq: seq };
        let mut table = t.redb().open_table(KEYS)?;
        table.insert(hash.as_str(), serde_json::to_string(&record)?.as_str())?;
        Ok(record)
    })?;
    Ok(Issued { key, record, limit })
}

/// The record of a presented key, if it is one.
fn lookup(data: &DataDir, key: &str) -> Result<Option<GatewayKey>> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let read = data.ledger.read()?;
    let table = match read.open_table(KEYS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let row = table.get(key_hash(key).as_str())?;
    row.map(|r| serde_json::from_str(r.value()).context("a gateway key record is corrupt")).transpose()
}

/// The shared pieces the gateway needs from the server.
pub struct Gateway {
    pub data: DataDir,
    pub router: Arc<Router>,
    /// The runtime models run on (the mission runner's): the server's
    /// workers only wait for answers.
    pub runtime: tokio::runtime::Handle,
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"message": message.into(), "type": kind, "code": code, "param": null}}))
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

/// A refused call by a known key: journaled, then answered.
fn refuse(gw: &Gateway, key: &GatewayKey, status: StatusCode, kind: &str, code: &str, message: String) -> HttpResponse {
    let conductor = gw.data.conductor.clone();
    let recorded = gw.data.ledger.write(|t| {
        t.append(
            &conductor,
            "gateway.refused",
            &json!({"key_id": key.key_id, "account": key.account, "status": status.as_u16(), "code": code, "reason": message}),
            now_us(),
        )
    });
    if let Err(e) = recorded {
        tracing::warn!("could not journal a refused gateway call: {e}");
    }
    error(status, kind, code, message)
}

/// What a call needs once it has been checked and paid for.
struct Paid {
    key: GatewayKey,
    prompt: Prompt,
    max_tokens: u32,
    price: crate::registry::Price,
    reservation: ledger::ReservationId,
    cost_max: u64,
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(gw: web::Data<Gateway>, req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
    let Some(token) = bearer(&req).map(str::to_owned) else {
        return error(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "send your gateway key as `Authorization: Bearer cgw_…`");
    };
    let data = gw.data.clone();
    let key = match web::block(move || lookup(&data, &token)).await {
        Ok(Ok(Some(key))) => key,
        Ok(Ok(None)) => {
            tracing::info!("gateway: a request with an unknown key was refused");
            return error(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "that gateway key is not valid here");
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", format!("{e:#}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", e.to_string()),
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refuse(&gw, &key, StatusCode::BAD_REQUEST, "invalid_request_error", "bad_body", "the request body could not be read".into());
        };
        if body.len() + chunk.len() > BODY_BYTES_MAX {
            let message = format!("the request is larger than {BODY_BYTES_MAX} bytes");
            return refuse(&gw, &key, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large", message);
        }
        body.extend_from_slice(&chunk);
    }
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(&gw, &key, StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_json", format!("malformed request: {e}"));
        }
    };
    let gw2 = gw.clone();
    let paid = match prepare_call(gw2, key.clone(), request.model.clone(), request.messages, request.max_completion_tokens.or(request.max_tokens), request.n).await {
        Ok(paid) => paid,
        Err(response) => return response,
    };
    if request.stream {
        stream_call(gw, paid)
    } else {
        whole_call(gw, paid).await
    }
}

/// Checks the request and reserves its worst case; every refusal here is
/// journaled and charges nothing.
async fn prepare_call(
    gw: web::Data<Gateway>,
    key: GatewayKey,
    model: String,
    messages: Vec<RequestMessage>,
    max_tokens: Option<u32>,
    n: Option<u32>,
) -> Result<Paid, HttpResponse> {
    let bad = |code: &str, message: String| Err(refuse(&gw, &key, StatusCode::BAD_REQUEST, "invalid_request_error", code, message));
    if n.is_some_and(|n| n != 1) {
        return bad("unsupported", "only one choice per request (n = 1)".into());
    }
    if messages.is_empty() {
        return bad("invalid_messages", "`messages` is empty".into());
    }
    let mut chat = Vec::with_capacity(messages.len());
    for m in messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return bad("invalid_role", format!("role `{}` is not one of system, user, assistant", m.role));
        }
        let content = match m.content {
            MessageContent::Text(text) => text,
            MessageContent::Parts(parts) => {
                if let Some(other) = parts.iter().find(|p| p.kind != "text") {
                    return bad("unsupported", format!("content part `{}`: these models read text only", other.kind));
                }
                parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("")
            }
        };
        chat.push(ChatMessage { role: m.role, content });
    }
    let spec = match gw.router.registry().get(&model) {
        Ok(spec) => spec.clone(),
        Err(e) => return Err(refuse(&gw, &key, StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found", e.to_string())),
    };
    if spec.frontier.is_some() {
        return bad("model_not_found", format!("model `{model}` runs off this host; the gateway serves local models only"));
    }
    let Some(price) = spec.price else {
        return bad("model_not_priced", format!("model `{model}` has no prompt_price/completion_price in the registry; the gateway meters every call"));
    };
    if max_tokens == Some(0) {
        return bad("invalid_max_tokens", "max_tokens must be at least 1".into());
    }
    let router = gw.router.clone();
    let name = model.clone();
    let prompt = match gw.runtime.spawn(async move { router.prompt(&name, chat).await }).await {
        Ok(Ok(prompt)) => prompt,
        Ok(Err(e)) => return Err(refuse(&gw, &key, StatusCode::SERVICE_UNAVAILABLE, "server_error", "model_unavailable", e.to_string())),
        Err(e) => return Err(refuse(&gw, &key, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", e.to_string())),
    };
    let prompt_tokens = prompt.tokens();
    let room = spec.context_tokens.saturating_sub(prompt_tokens);
    let max_tokens = max_tokens.unwrap_or(MAX_TOKENS_DEFAULT.min(room));
    if max_tokens == 0 || u64::from(prompt_tokens) + u64::from(max_tokens) > u64::from(spec.context_tokens) {
        return bad(
            "context_length_exceeded",
            format!(
                "the prompt is {prompt_tokens} tokens and max_tokens {max_tokens}; model `{model}` has a context of {} tokens",
                spec.context_tokens
            ),
        );
    }
    let cost = |p: u32, c: u32| u64::from(p).checked_mul(price.prompt)?.checked_add(u64::from(c).checked_mul(price.completion)?);
    let Some(cost_max) = cost(prompt_tokens, max_tokens) else {
        return bad("invalid_max_tokens", "the call's price overflows".into());
    };
    let gw2 = gw.clone();
    let key2 = key.clone();
    let model2 = model.clone();
    let reserved = web::block(move || {
        let conductor = gw2.data.conductor.clone();
        gw2.data.ledger.write(|t| {
            let now = now_us();
            let deadline = now.saturating_add(i64::try_from(RESERVATION_TTL.as_micros()).unwrap_or(i64::MAX));
            let call = json!({"gateway": key2.key_id, "model": model2, "prompt_tokens": prompt_tokens, "max_tokens": max_tokens});
            match t.reserve(&conductor, &key2.account, cost_max, deadline, call.clone(), now) {
                Err(LedgerError::Budget(refusal @ BudgetError::Insufficient { .. })) => {
                    t.append(&conductor, "budget.refused", &json!({"account": key2.account, "for": call, "reason": refusal.to_string()}), now)?;
                    Ok(Err(refusal.to_string()))
                }
                other => other.map(Ok),
            }
        })
    })
    .await;
    let reservation = match reserved {
        Ok(Ok(Ok(id))) => id,
        Ok(Ok(Err(refusal))) => {
            let message = format!("this key's budget cannot cover the call (up to {cost_max} units): {refusal}");
            return Err(refuse(&gw, &key, StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota", message));
        }
        Ok(Err(e)) => return Err(refuse(&gw, &key, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", e.to_string())),
        Err(e) => return Err(refuse(&gw, &key, StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", e.to_string())),
    };
    Ok(Paid { key, prompt, max_tokens, price, reservation, cost_max })
}

/// Settles a call that ran (or voids one that did not) and journals it.
fn finish(gw: &Gateway, paid: &Paid, result: &Result<Output, String>) -> Result<u64> {
    let conductor = gw.data.conductor.clone();
    let messages: Vec<Value> = paid.prompt.messages().iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    Ok(gw.data.ledger.write(|t| -> Result<u64> {
        let now = now_us();
        match result {
            Ok(out) => {
                let actual = u64::from(out.prompt_tokens)
                    .saturating_mul(paid.price.prompt)
                    .saturating_add(u64::from(out.completion_tokens).saturating_mul(paid.price.completion));
                // The reservation covered the real prompt and every allowed
                // token; it is the most that may be posted.
                let posted = actual.min(paid.cost_max);
                t.settle(&conductor, paid.reservation, posted, now)?;
                t.append(
                    &conductor,
                    "gateway.completion",
                    &json!({"key_id": paid.key.key_id, "account": paid.key.account, "model": paid.prompt.model(),
                            "messages": messages, "max_tokens": paid.max_tokens, "text": out.text,
                            "prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                            "cost": posted, "reservation": paid.reservation.0}),
                    now,
                )?;
                Ok(posted)
            }
            Err(reason) => {
                t.void(&conductor, paid.reservation, now)?;
                t.append(
                    &conductor,
                    "gateway.refused",
                    &json!({"key_id": paid.key.key_id, "account": paid.key.account, "status": 503,
                            "code": "model_error", "reason": reason, "reservation": paid.reservation.0}),
                    now,
                )?;
                Ok(0)
            }
        }
    })?)
}

fn created() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn usage(out: &Output) -> Value {
    json!({"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
           "total_tokens": out.prompt_tokens + out.completion_tokens})
}

async fn whole_call(gw: web::Data<Gateway>, paid: Paid) -> HttpResponse {
    let router = gw.router.clone();
    let (prompt, max_tokens) = (paid.prompt.clone(), paid.max_tokens);
    let result = match gw.runtime.spawn(async move { router.complete(&prompt, max_tokens, CALL_TIMEOUT).await }).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let gw2 = gw.clone();
    let settled = web::block(move || {
        let cost = finish(&gw2, &paid, &result);
        (cost, result, paid.prompt.model().to_owned())
    })
    .await;
    match settled {
        Ok((Ok(_), Ok(out), model)) => HttpResponse::Ok().json(json!({
            "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), "object": "chat.completion",
            "created": created(), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                         "finish_reason": out.finish_reason, "logprobs": null}],
            "usage": usage(&out),
        })),
        Ok((Ok(_), Err(reason), _)) => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "model_error", reason),
        Ok((Err(e), _, _)) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal", e.to_string()),
    }
}

/// Server-sent chunks as the model writes, then the usage and `[DONE]`.
/// The call is settled when the model finishes, whether or not the client
/// is still reading: it ran, so it is paid for.
fn stream_call(gw: web::Data<Gateway>, paid: Paid) -> HttpResponse {
    // Unbounded: a completion is at most max_tokens pieces, and a slow
    // client must not make the model's pieces drop.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let chunk = {
        let (id, model) = (id.clone(), paid.prompt.model().to_owned());
        move |delta: Value, finish: Value, usage: Value| {
            let body = json!({"id": id, "object": "chat.completion.chunk", "created": created(), "model": model,
                              "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
                              "usage": usage});
            Bytes::from(format!("data: {body}\n\n"))
        }
    };
    let router = gw.router.clone();
    let runtime = gw.runtime.clone();
    let gw2 = gw.clone();
    runtime.spawn(async move {
        let _ = tx.send(chunk(json!({"role": "assistant", "content": ""}), Value::Null, Value::Null));
        let (prompt, max_tokens) = (paid.prompt.clone(), paid.max_tokens);
        let sender = tx.clone();
        let piece = chunk.clone();
        let result = router
            .stream(&prompt, max_tokens, CALL_TIMEOUT, move |text| {
                // A client that went away stops reading; the call still ends.
                let _ = sender.send(piece(json!({"content": text}), Value::Null, Value::Null));
            })
            .await
            .map_err(|e| e.to_string());
        let finished = tokio::task::spawn_blocking(move || {
            let cost = finish(&gw2, &paid, &result);
            (cost, result)
        })
        .await;
        let tail = match finished {
            Ok((Ok(_), Ok(out))) => chunk(json!({}), json!(out.finish_reason), usage(&out)),
            Ok((_, Err(reason))) => Bytes::from(format!("data: {}\n\n", json!({"error": {"message": reason, "type": "server_error", "code": "model_error"}}))),
            Ok((Err(e), _)) => Bytes::from(format!("data: {}\n\n", json!({"error": {"message": format!("{e:#}"), "type": "server_error"}}))),
            Err(e) => Bytes::from(format!("data: {}\n\n", json!({"error": {"message": e.to_string(), "type": "server_error"}}))),
        };
        let _ = tx.send(tail);
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

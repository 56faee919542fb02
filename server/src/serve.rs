//! `conductor serve`: the reviewer page and its JSON API (actix-web), and
//! the missions that run in the same process.
//!
//! One process holds the data directory (redb allows one), so the server
//! is also where missions run while reviewers work: `--run FILE` starts
//! missions on a runner thread, and a decided gate whose agent is parked
//! resumes its mission there.
//!
//! **Who may do what.** Every `/api/` request but the sign-in challenge
//! needs a session. A session is opened by signing a fresh server
//! challenge with a key the journal has registered and not revoked
//! (reviewer, operator or auditor; agent and conductor keys cannot sign
//! in), so the server learns who is there without ever holding a
//! password or a private key. Challenges are not stored until answered
//! (`challenge.rs`), so unauthenticated requests cannot fill anything.
//! People look by role: reviewers and operators see the queue of pending
//! gates, auditors the decided ones (all three see recent decisions).
//! Only reviewer keys decide gates, and only the gates whose reviewers
//! include them; anything else is refused and journaled (`gate.refused`,
//! rate-limited per key: `refusals.rs`). Operators start missions by
//! sending their YAML (`upload.rs`). The page itself and its scripts are
//! served to anyone: they hold no data.
//!
//! **Scripts** use API tokens instead of sessions (`Authorization:
//! Bearer cdt_...`; issued by an operator, `tokens.rs` and
//! `engine::tokens`). A token carries a role and perhaps one mission;
//! every route says which roles and which mission it is for with
//! `require`, and any other refusal of a known caller goes through
//! `refuse`: both journal `request.refused`, rate-limited per key or
//! token like decisions are. A token holds no key, so it never decides
//! a gate.
//!
//! **Storage failures.** After a failed write the database refuses every
//! other until it is reopened, so the server stops, with the first
//! failure as its error and a non-zero exit status, for a supervisor to
//! restart it (see `health.rs`).
//!
//! **Signing in the browser.** The reviewer opens their own key file in
//! the page; it is unlocked there (Argon2id + XChaCha20-Poly1305, as
//! `identity` seals it) and imported into WebCrypto as a non-extractable
//! Ed25519 key. A decision takes two requests: `prepare` runs the
//! decision against the journal as it is now, captures the exact entries
//! the reviewer must sign (seq, previous hash, time, payload) and rolls
//! back; the browser parses those bytes, checks they say what the
//! reviewer chose, hashes them itself and signs; `decide` runs the same
//! decision again with those signatures, and the journal takes the
//! entries only if they are byte for byte what was signed (else 409: the
//! journal moved, prepare again). So each `gate.decided` is signed by the
//! reviewer's key, verifiable like any other entry, and the server cannot
//! sign a decision in anyone's name.
//!
//! **Live updates.** A poller watches the journal head and tells every
//! open event stream (server-sent events) when gates or cases change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use actix_web::{App, FromRequest, HttpRequest, HttpResponse, HttpServer, ResponseError};
use anyhow::{Context, Result};
use base64::Engine as _;
use futures_util::StreamExt as _;
use identity::{PublicKey, Role, Signature};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use engine::clock::now_us;
use engine::data::DataDir;
use engine::entries::{self, JournaledFact};
use engine::gates::{self, Decision, Verdict};
use engine::state::{self, GateRecord, GateStatus};
use ledger::Kind;

mod challenge;
mod dashboard;
mod operator;
mod refusals;
mod tokens;
mod upload;

use challenge::{CHALLENGE_BYTES, CHALLENGE_TTL, Challenges};
use refusals::{Admit, Caller, Refusal, Refusals, Repeated};

/// How long a session lasts: a working day.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long prepared entries wait for their signatures.
const PREPARED_TTL: Duration = Duration::from_secs(60);
/// Most sessions or prepared decisions held at once (each map); past it,
/// expired ones are dropped, then new ones refused. Only people who
/// signed in add to either.
const PENDING_MAX: usize = 4096;
/// Sessions one key may hold at once (tabs, browsers, a script); signing
/// in again past it ends that key's oldest session, so no one key can
/// fill the session table and keep everyone else out.
const SESSIONS_PER_KEY_MAX: usize = 16;
/// How often the server looks for a storage failure reported by any of
/// its parts (missions, gateway, decisions), to stop.
const HEALTH_POLL: Duration = Duration::from_millis(250);
/// The largest request body: a decision with edits is a few KiB.
pub const BODY_BYTES_MAX: usize = 64 << 10;
/// How often the event poller looks at the journal head.
const EVENT_POLL: Duration = Duration::from_millis(250);
/// A comment line on idle event streams, so proxies keep them open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Seconds open requests (event streams) get to finish at shutdown.
const SHUTDOWN_GRACE_S: u64 = 2;
/// Reasoning shown per gate: a page, not the whole transcript.
const REASONING_TEXT_MAX: usize = 8 << 10;
/// What a reviewer signs to sign in: this domain, then the challenge.
pub const SIGN_IN_DOMAIN: &[u8] = b"conductor sign-in v1\0";
const COOKIE: &str = "conductor_session";

/// The page and its scripts, built into the binary: nothing is fetched
/// from anywhere else.
const ASSETS: [(&str, &str, &str); 9] = [
    ("/", include_str!("../web/index.html"), "text/html; charset=utf-8"),
    ("/dashboard", include_str!("../web/dashboard.html"), "text/html; charset=utf-8"),
    ("/static/dashboard.js", include_str!("../web/dashboard.js"), "text/javascript; charset=utf-8"),
    ("/static/dashboard-charts.js", include_str!("../web/dashboard-charts.js"), "text/javascript; charset=utf-8"),
    ("/static/dashboard.css", include_str!("../web/dashboard.css"), "text/css; charset=utf-8"),
    ("/static/app.js", include_str!("../web/app.js"), "text/javascript; charset=utf-8"),
    ("/static/crypto.js", include_str!("../web/crypto.js"), "text/javascript; charset=utf-8"),
    ("/static/noble.js", include_str!("../web/noble.js"), "text/javascript; charset=utf-8"),
    ("/static/style.css", include_str!("../web/style.css"), "text/css; charset=utf-8"),
];

/// The page may load only itself: no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// What `conductor serve` needs.
#[derive(Debug)]
pub struct ServeConfig {
    pub data: DataDir,
    pub bind: SocketAddr,
    /// Mission files to run once the server is up.
    pub run: Vec<PathBuf>,
    /// How missions run here (models, concurrency); `open` is `data`.
    pub run_config: engine::run::RunConfig,
    pub router: Arc<dyn models::Models>,
    /// Told how each mission run here goes (the command line's progress).
    pub observer: Arc<dyn engine::run::Observer>,
    pub gateway: crate::gateway::GatewayConfig,
}

/// Work for the mission runner thread.
#[derive(Debug)]
enum Job {
    /// A mission file named on the command line (`--run`).
    Run(PathBuf),
    /// A mission an operator uploaded, kept in the uploads directory:
    /// the files it names are checked again before it runs.
    Upload {
        file: PathBuf,
        again: engine::run::Again,
    },
    Resume(String),
}

struct Session {
    public: PublicKey,
    role: Role,
    name: Option<String>,
    expires: Instant,
}

struct Prepared {
    public: PublicKey,
    gate_id: String,
    verdict: Verdict,
    note: Option<String>,
    edits: Option<Map<String, Value>>,
    amount: Option<u64>,
    time_us: i64,
    entries: Vec<(u64, ledger::EntryHash)>,
    expires: Instant,
}

/// The server's state, shared by every worker.
pub(crate) struct State {
    pub(crate) data: DataDir,
    challenges: Challenges,
    /// Keyed by the BLAKE3 hash of the secret, so a lookup's timing
    /// says nothing about the secret itself.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    prepared: Mutex<HashMap<[u8; 32], Prepared>>,
    events: tokio::sync::broadcast::Sender<String>,
    jobs: Mutex<mpsc::Sender<Job>>,
    refusals: Arc<Refusals>,
    /// Where uploaded missions are kept (`upload.rs`).
    uploads: PathBuf,
}

/// An API error: a status and a sentence saying what to do.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// The journal moved under a prepared decision: prepare again.
    pub(crate) retry: bool,
    /// For `429`: when to try again (the `Retry-After` header).
    pub(crate) retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry: false, retry_after: None }
    }

    /// The data directory can no longer be written: the server is
    /// stopping (see `health.rs`).
    pub(crate) fn storage_failed(e: &anyhow::Error) -> Self {
        tracing::error!("serve: storage failed: {}", engine::health::describe(e));
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server can no longer write to its data directory and is stopping; try again once it is restarted",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut body = json!({"error": self.message});
        if self.retry {
            body["retry"] = json!(true);
        }
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: never earlier than allowed.
            response.insert_header((
                header::RETRY_AFTER,
                (after.as_secs() + u64::from(after.subsec_nanos() > 0)).to_string(),
            ));
        }
        response.json(body)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("serve: {e}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}"))
}

fn random_secret() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn secret_key(secret: &[u8]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

fn hex32(text: &str, what: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("`{what}` must be 64 hex digits")))?;
    Ok(out)
}

/// A sign-in challenge as the client sent it back.
fn challenge_bytes(text: &str) -> Result<[u8; CHALLENGE_BYTES], ApiError> {
    let mut out = [0u8; CHALLENGE_BYTES];
    hex::decode_to_slice(text, &mut out).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("`challenge` must be {} hex digits", 2 * CHALLENGE_BYTES))
    })?;
    Ok(out)
}

/// Inserts into a bounded map, dropping expired entries when it is full.
fn insert_bounded<V>(
    map: &mut HashMap<[u8; 32], V>,
    key: [u8; 32],
    value: V,
    expired: impl Fn(&V) -> bool,
) -> Result<(), ApiError> {
    if map.len() >= PENDING_MAX {
        map.retain(|_, v| !expired(v));
    }
    if map.len() >= PENDING_MAX {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many sign-ins or decisions in progress; try again in a minute",
        ));
    }
    map.insert(key, value);
    Ok(())
}

/// Who made a request: a person signed in with their key (the session
/// cookie), or a script with an API token (`Authorization: Bearer
/// cdt_...`, see `engine::tokens`). Every `/api/` route but sign-in takes
/// one, and checks what it may do with [`require`].
pub(crate) struct Signed {
    /// The session (BLAKE3 of its cookie secret); `None` for a token.
    session: Option<[u8; 32]>,
    /// The signed-in person's key; `None` for a token: a script holds no
    /// key, so it cannot sign anything (a gate decision).
    pub(crate) public: Option<PublicKey>,
    pub(crate) role: Role,
    /// The key's registered name, or the token's name.
    pub(crate) name: Option<String>,
    /// The API token's id, for a request made with one.
    pub(crate) token: Option<String>,
    /// The one mission the token may touch; `None`: any (always, for a
    /// session).
    pub(crate) mission: Option<String>,
}

impl Signed {
    /// Who asked, as the journal names them (`by` in `request.refused`,
    /// `token.issued`, ...): by a key id or a token id, never a secret.
    pub(crate) fn requester(&self) -> entries::Requester {
        entries::Requester {
            via: "api".to_owned(),
            role: Some(self.role.as_str().to_owned()),
            key: self.public.map(|p| p.key_id().to_string()),
            token: self.token.clone(),
            name: self.name.clone(),
        }
    }

    /// Whose refusals these are, for the rate limit (`refusals.rs`).
    fn caller(&self) -> Caller {
        match (&self.public, &self.token) {
            (Some(public), _) => Caller::Key(*public),
            (None, Some(token)) => Caller::Token(token.clone()),
            // Neither cannot be built (see `signed`); counted as one caller.
            (None, None) => Caller::Token(String::new()),
        }
    }

    /// "keys" or "tokens", as messages name the caller's kind.
    fn kind(&self) -> &'static str {
        if self.token.is_some() { "tokens" } else { "keys" }
    }

    /// Whether the session or token still works (for event streams, which
    /// outlive the request that opened them).
    fn alive(&self, state: &State) -> bool {
        match (&self.session, &self.token) {
            (Some(key), _) => {
                state.sessions.lock().ok().is_some_and(|s| s.get(key).is_some_and(|s| s.expires > Instant::now()))
            }
            (None, Some(id)) => state.data.ledger.read().ok().is_some_and(|read| {
                engine::tokens::get(&read, id)
                    .ok()
                    .flatten()
                    .is_some_and(|t| t.state_at(now_us()) == engine::tokens::TokenState::InForce)
            }),
            (None, None) => false,
        }
    }
}

impl FromRequest for Signed {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(signed(req))
    }
}

fn signed(req: &HttpRequest) -> Result<Signed, ApiError> {
    let state = req.app_data::<web::Data<State>>().ok_or_else(|| internal("no server state"))?;
    // A script says who it is in the header; it never has a cookie worth
    // looking at, and a request naming both is taken at its header.
    if let Some(authorization) = req.headers().get(header::AUTHORIZATION) {
        return token_signed(state, req, authorization);
    }
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in with your key first (or, from a script, send `Authorization: Bearer TOKEN` with an API token)",
        )
    };
    let cookie = req.cookie(COOKIE).ok_or_else(unauthenticated)?;
    let key = secret_key(cookie.value().as_bytes());
    let (public, role, name) = {
        let mut sessions = state.sessions.lock().map_err(internal)?;
        let Some(session) = sessions.get(&key) else { return Err(unauthenticated()) };
        if session.expires <= Instant::now() {
            sessions.remove(&key);
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "your session expired; sign in again"));
        }
        (session.public, session.role, session.name.clone())
    };
    // A key revoked since sign-in loses its session at once.
    let record = state.data.ledger.key(&public).map_err(internal)?;
    if record.is_none_or(|r| r.revoked_seq.is_some()) {
        state.sessions.lock().map_err(internal)?.remove(&key);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "your key was revoked in the journal; the session is closed",
        ));
    }
    Ok(Signed { session: Some(key), public: Some(public), role, name, token: None, mission: None })
}

/// A request with an `Authorization` header: an API token, checked
/// against the token table on every request, so a revocation counts at
/// once. A revoked or expired token whose secret was right is a known
/// caller: its refusal is journaled (`request.refused`, rate-limited per
/// token). An unknown or malformed one proves nothing and journals
/// nothing, so guessing cannot fill the journal.
fn token_signed(state: &State, req: &HttpRequest, authorization: &HeaderValue) -> Result<Signed, ApiError> {
    let presented = authorization
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the Authorization header must be `Bearer TOKEN`, with an API token from an operator",
        ));
    };
    let read = state.data.ledger.read().map_err(internal)?;
    let refused = match engine::tokens::verify(&read, presented, now_us()) {
        Ok(token) => {
            return Ok(Signed {
                session: None,
                public: None,
                role: token.role,
                name: Some(token.name),
                token: Some(token.id),
                mission: token.mission,
            });
        }
        Err(e @ (engine::tokens::VerifyError::Malformed | engine::tokens::VerifyError::Unknown { .. })) => {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
        }
        Err(e @ (engine::tokens::VerifyError::Revoked { .. } | engine::tokens::VerifyError::Expired { .. })) => e,
        Err(e) => {
            let e = anyhow::Error::from(e);
            return Err(if engine::health::note(&e) { ApiError::storage_failed(&e) } else { internal(e) });
        }
    };
    let (engine::tokens::VerifyError::Revoked { id, .. } | engine::tokens::VerifyError::Expired { id, .. }) = &refused
    else {
        return Err(internal("a token refusal changed shape"));
    };
    let error = ApiError::new(StatusCode::UNAUTHORIZED, refused.to_string());
    let Some(token) = engine::tokens::get(&read, id).map_err(internal)? else { return Err(error) };
    drop(read);
    let who = Signed {
        session: None,
        public: None,
        role: token.role,
        name: Some(token.name),
        token: Some(token.id),
        mission: token.mission,
    };
    Err(refuse(state, &who, req, None, error))
}

/// Lets `who` use this route only in one of `roles` and, for a token
/// scoped to one mission, only on that mission: `mission` is the one the
/// request is about (`None`: a route about no single mission, which a
/// scoped token may not use). Otherwise `403`, journaled as
/// `request.refused` (rate-limited: see [`refuse`]).
pub(crate) fn require(
    state: &State,
    who: &Signed,
    req: &HttpRequest,
    roles: &[Role],
    mission: Option<&str>,
) -> Result<(), ApiError> {
    let route = || format!("{} {}", req.method(), req.match_pattern().unwrap_or_else(|| req.path().to_owned()));
    let reason = if !roles.contains(&who.role) {
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let allowed = if allowed.is_empty() { "no".to_owned() } else { allowed.join(" or ") };
        format!("{} {kind} cannot use {}; {allowed} {kind} can", who.role, route(), kind = who.kind())
    } else if let Some(scope) = &who.mission {
        match mission {
            Some(m) if m == scope => return Ok(()),
            Some(m) => format!("this token may touch mission `{scope}` only, not `{m}`"),
            None => format!("this token may touch mission `{scope}` only, and {} is not about one mission", route()),
        }
    } else {
        return Ok(());
    };
    Err(refuse(state, who, req, mission, ApiError::new(StatusCode::FORBIDDEN, reason)))
}

/// Records that a request by `who` (about `mission`, if one) was refused
/// with `error`, and returns the error to answer with: journaled as its
/// own `request.refused` while the caller is within its limit, else
/// counted for a summary entry and answered `429` (`refusals.rs`). For
/// every refusal of a known caller that is not a gate decision.
pub(crate) fn refuse(
    state: &State,
    who: &Signed,
    req: &HttpRequest,
    mission: Option<&str>,
    error: ApiError,
) -> ApiError {
    let refusal = Refusal::request(entries::RequestRefused {
        method: req.method().as_str().to_owned(),
        // The pattern, not the path: no caller-chosen text but the
        // mission id.
        route: req.match_pattern().unwrap_or_else(|| "(no route)".to_owned()),
        mission: mission.map(str::to_owned),
        status: error.status.as_u16(),
        reason: error.message.clone(),
        by: who.requester(),
        repeated: None,
        first_us: None,
        last_us: None,
    });
    match admit(state, &who.caller(), &refusal) {
        Admit::Journal => {
            journal_refusal(&state.data, &refusal);
            error
        }
        Admit::Counted { retry_after } => too_many(error, who.kind(), retry_after),
    }
}

/// Asks the rate limit about `refusal`, journaling first the summaries
/// of the caller's window that just closed.
fn admit(state: &State, caller: &Caller, refusal: &Refusal) -> Admit {
    let (admit, closed) = state.refusals.admit(caller, refusal, now_us(), Instant::now());
    for summary in &closed {
        journal_repeated(&state.data, summary);
    }
    admit
}

/// The `429` for a refusal that was counted, not journaled on its own.
fn too_many(error: ApiError, kind: &str, retry_after: Duration) -> ApiError {
    let whose = if kind == "tokens" { "token" } else { "key" };
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!(
            "{} (and too many refused attempts from your {whose}: until the minute is over, they are counted in \
             one journal entry instead of one each)",
            error.message
        ),
        retry: false,
        retry_after: Some(retry_after),
    }
}

/// A request body sent as `application/json`, of at most `limit` bytes
/// (413 past it), unparsed.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_type {
        // A cross-site form cannot send this type without the browser
        // asking first, which this server never allows.
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as Content-Type: application/json",
        ));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("reading the request: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {limit} bytes; send less at a time"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON request body of at most [`BODY_BYTES_MAX`] bytes.
async fn read_json<T: serde::de::DeserializeOwned>(req: &HttpRequest, payload: web::Payload) -> Result<T, ApiError> {
    let body = read_body(req, payload, BODY_BYTES_MAX).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed request: {e}")))
}

async fn asset(req: HttpRequest) -> HttpResponse {
    match ASSETS.iter().find(|(path, _, _)| *path == req.path()) {
        Some((_, body, kind)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *kind))
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(*body),
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no page {}", req.path())).error_response(),
    }
}

/// A sign-in challenge. Nothing is stored (see `challenge.rs`), so any
/// number of these requests leaves sign-in working for everyone else.
async fn challenge(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let challenge = state.challenges.issue(Instant::now());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"challenge": hex::encode(challenge), "expires_in_s": CHALLENGE_TTL.as_secs()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    public_key: String,
    challenge: String,
    signature: String,
}

/// The name a key was registered under, from its registration entry.
fn registered_name(state: &State, record: &ledger::KeyRecord) -> Option<String> {
    let entry = state.data.ledger.entries(record.registered_seq, 1).ok()?.pop()?;
    // The ledger's own kinds (`key.registered`, `key.rotated`) have no
    // struct: `name` is in the free-form object the operator gave.
    entry.payload_json()["name"].as_str().map(str::to_owned)
}

async fn sign_in(state: web::Data<State>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body: SignIn = read_json(&req, payload).await?;
    let challenge = challenge_bytes(&body.challenge)?;
    let unauthorized = |e: challenge::ChallengeError| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string());
    let expires = state.challenges.check(&challenge, Instant::now()).map_err(unauthorized)?;
    let public = PublicKey::from_bytes(&hex32(&body.public_key, "public_key")?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("public_key: {e}")))?;
    let signature = Signature::from_hex(&body.signature)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "`signature` must be 128 hex digits"))?;
    let mut message = SIGN_IN_DOMAIN.to_vec();
    message.extend_from_slice(&challenge);
    public
        .verify(&message, &signature)
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "the signature does not verify with that key"))?;
    let record = state.data.ledger.key(&public).map_err(internal)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "key {} is not registered in this journal; an operator registers it (`conductor keys register`)",
                public.key_id()
            ),
        )
    })?;
    if record.revoked_seq.is_some() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("key {} was revoked", public.key_id())));
    }
    if !matches!(record.role, Role::Reviewer | Role::Operator | Role::Auditor) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} keys do not sign in; use a reviewer, operator or auditor key", record.role),
        ));
    }
    // Used once: of two sign-ins with one challenge, the second fails.
    state.challenges.spend(&challenge, expires, Instant::now()).map_err(|e| match e {
        challenge::ChallengeError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        other => unauthorized(other),
    })?;
    let name = registered_name(&state, &record);
    let token = hex::encode(random_secret());
    let session = Session { public, role: record.role, name: name.clone(), expires: Instant::now() + SESSION_TTL };
    {
        let mut sessions = state.sessions.lock().map_err(internal)?;
        let mut own: Vec<([u8; 32], Instant)> =
            sessions.iter().filter(|(_, s)| s.public == public).map(|(k, s)| (*k, s.expires)).collect();
        if own.len() >= SESSIONS_PER_KEY_MAX {
            own.sort_by_key(|(_, expires)| *expires);
            for (key, _) in &own[..=own.len() - SESSIONS_PER_KEY_MAX] {
                sessions.remove(key);
            }
        }
        insert_bounded(&mut sessions, secret_key(token.as_bytes()), session, |s| s.expires <= Instant::now())?;
    }
    let cookie = Cookie::build(COOKIE, token)
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX)))
        .finish();
    tracing::info!("serve: {} ({}) signed in", public.key_id(), record.role);
    Ok(HttpResponse::Ok().cookie(cookie).json(me_json(&public, record.role, name.as_deref())))
}

fn me_json(public: &PublicKey, role: Role, name: Option<&str>) -> Value {
    json!({"key_id": public.key_id().to_string(), "name": name, "role": role.as_str(), "public_key": public.to_hex()})
}

async fn me(who: Signed) -> HttpResponse {
    let body = match &who.public {
        Some(public) => me_json(public, who.role, who.name.as_deref()),
        None => json!({"token": who.token, "name": who.name, "role": who.role.as_str(), "mission": who.mission}),
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

async fn sign_out(state: web::Data<State>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Some(session) = who.session else {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "this request carries an API token, not a session, so there is nothing to sign out of; an operator \
             revokes tokens (DELETE /api/tokens/ID)",
        );
        return Err(refuse(&state, &who, &req, None, e));
    };
    state.sessions.lock().map_err(internal)?.remove(&session);
    let mut gone = Cookie::build(COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::Ok().cookie(gone).json(json!({"signed_out": true})))
}

/// Runs blocking ledger work off the server's event loop.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    web::block(f).await.map_err(internal)?
}

/// Whether `role` sees the queue of pending gates: reviewers, to decide
/// them, and operators, to run the work. Auditors see what was decided.
fn sees_queue(role: Role) -> bool {
    matches!(role, Role::Reviewer | Role::Operator)
}

/// The roles people sign in with, and tokens carry: every one of them
/// may read the gates (each sees what its role sees).
const PEOPLE: [Role; 3] = [Role::Reviewer, Role::Operator, Role::Auditor];

async fn list_gates(state: web::Data<State>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // Every mission's gates: not for a token scoped to one mission.
    require(&state, &who, &req, &PEOPLE, None)?;
    let body = blocking(move || {
        let read = state.data.ledger.read().map_err(internal)?;
        let mut all = state::gates(&read).map_err(internal)?;
        all.sort_by_key(|g| std::cmp::Reverse(g.requested_seq));
        let mut pending = Vec::new();
        let mut decided = Vec::new();
        for gate in &all {
            if gate.status == GateStatus::Pending {
                if sees_queue(who.role) {
                    pending.push(gate_view(&state.data, &read, gate, &who).map_err(internal)?);
                }
            } else if decided.len() < RECENT_DECIDED {
                decided.push(decided_view(&state.data, &read, gate).map_err(internal)?);
            }
        }
        pending.reverse();
        Ok(json!({"gates": pending, "decided": decided}))
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// Decided gates listed beside the pending ones, newest first.
const RECENT_DECIDED: usize = 50;

async fn one_gate(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let st = state.clone();
    let gate = blocking(move || {
        let read = st.data.ledger.read().map_err(internal)?;
        state::gate(&read, &id)
            .map_err(internal)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no gate `{id}`")))
    })
    .await?;
    // A gate belongs to its mission: a token scoped to another is refused.
    require(&state, &who, &req, &PEOPLE, Some(&gate.mission))?;
    if gate.status == GateStatus::Pending && !sees_queue(who.role) {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            format!("gate `{}` is still pending; {} {} see gates once they are decided", gate.id, who.role, who.kind()),
        );
        return Err(refuse(&state, &who, &req, Some(&gate.mission), e));
    }
    let body = blocking(move || {
        let read = state.data.ledger.read().map_err(internal)?;
        if gate.status != GateStatus::Pending {
            decided_view(&state.data, &read, &gate).map_err(internal)
        } else {
            gate_view(&state.data, &read, &gate, &who).map_err(internal)
        }
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// A decided gate and what became of its case.
fn decided_view(data: &DataDir, read: &redb::ReadTransaction, gate: &GateRecord) -> Result<Value> {
    let task = state::task(read, &gate.mission, gate.task)?;
    let decided_at = match gate.decided_seq {
        Some(seq) => data.ledger.entries(seq, 1)?.pop().map(|e| missions::format_timestamp(e.time_us)),
        None => None,
    };
    Ok(json!({
        "id": gate.id, "gate": gate.gate, "status": json!(gate.status), "mission": gate.mission,
        "kind": if gate.budget.is_some() { "budget" } else { "case" },
        "task": gate.budget.is_none().then_some(gate.task), "case_id": gate.budget.is_none().then_some(&gate.case_id),
        "reviewer": gate.reviewer, "note": gate.note, "decided_at": decided_at,
        "proposed_outcome": gate.budget.is_none().then_some(&gate.proposed_outcome),
        "case_status": task.as_ref().map(|t| json!(t.status)),
        "outcome": task.as_ref().and_then(|t| t.outcome.clone()),
        "tree": tree_view(read, gate, task.as_ref())?,
    }))
}

/// Why `who` may not decide `gate`, if they may not.
fn why_not(gate: &GateRecord, who: &Signed) -> Option<String> {
    if who.role != Role::Reviewer {
        return Some(format!("{} {} cannot decide gates; sign in with a reviewer key", who.role, who.kind()));
    }
    let Some(public) = &who.public else {
        return Some(
            "an API token cannot decide gates: each decision is signed with a reviewer's own key; sign in with yours"
                .to_owned(),
        );
    };
    let id = public.key_id().to_string();
    if !gate.reviewers.is_empty() && !gate.reviewers.contains(&id) {
        return Some(format!("this gate is for reviewers {}", gate.reviewers.join(", ")));
    }
    if gate.votes.iter().any(|v| v.reviewer == id) {
        return Some("you approved already; the quorum needs other reviewers".to_owned());
    }
    None
}

fn cut(text: &str) -> String {
    let mut text = text.to_owned();
    engine::text::truncate_utf8(&mut text, REASONING_TEXT_MAX);
    text
}

/// The most tasks one gate's delegation tree lists (its parent aside). A
/// mission's `delegation:` limits bound a task's children, but not how
/// many a reviewer can read under one card, nor the answer's size.
const TREE_NODES_MAX: usize = 256;

/// The delegation tree under a gate's task (`null` for a budget gate,
/// which belongs to the mission): see [`delegation_tree`]. Built from the
/// task records alone; the mission's records are read only when the task
/// delegated or was delegated, so a mission without delegation pays one
/// field test per gate.
fn tree_view(read: &redb::ReadTransaction, gate: &GateRecord, task: Option<&state::TaskRecord>) -> Result<Value> {
    if gate.budget.is_some() {
        return Ok(Value::Null);
    }
    match task {
        // Only a task that delegated needs the mission's records; a child
        // that did not (the common gated case: one of 100,000 parked
        // children) needs its parent's alone, so listing the gates stays
        // linear in them.
        Some(t) if t.children > 0 => Ok(delegation_tree(&state::tasks(read, &gate.mission)?, gate.task)),
        Some(t) if t.parent.is_some() => {
            let parent = t.parent.and_then(|p| state::task(read, &gate.mission, p).transpose()).transpose()?;
            Ok(delegation_tree(&parent.into_iter().chain([t.clone()]).collect::<Vec<_>>(), gate.task))
        }
        _ => Ok(json!({"parent": null, "children": []})),
    }
}

/// The delegation around task `task` among one mission's `tasks`: the task
/// that delegated it (`parent`, or `null`) and the tasks it delegated
/// (`children`, in the order they were started), each with its own
/// children below it, at most [`TREE_NODES_MAX`] in all; `"truncated":
/// true` says some were left out. The node bound also ends any cycle a
/// damaged projection could hold.
fn delegation_tree(tasks: &[state::TaskRecord], task: u32) -> Value {
    let mut children_of: HashMap<u32, Vec<&state::TaskRecord>> = HashMap::new();
    for t in tasks {
        if let Some(parent) = t.parent {
            children_of.entry(parent).or_default().push(t);
        }
    }
    // Child indices are allocated in order, so index order is start order.
    for children in children_of.values_mut() {
        children.sort_by_key(|t| t.index);
    }
    let parent = tasks.iter().find(|t| t.index == task).and_then(|t| t.parent).map(|p| {
        match tasks.iter().find(|t| t.index == p) {
            Some(r) => json!({"task": r.index, "case_id": r.case_id, "agent": r.agent, "status": json!(r.status)}),
            // The record is missing (it never should be): say which task.
            None => json!({"task": p, "case_id": null, "agent": null, "status": null}),
        }
    });
    let mut left = TREE_NODES_MAX;
    let mut truncated = false;
    let children = tree_children(&children_of, task, &mut left, &mut truncated);
    let mut tree = json!({"parent": parent, "children": children});
    if truncated {
        tree["truncated"] = Value::Bool(true);
    }
    tree
}

/// The children of `task`, depth first, while `left` nodes remain; each
/// call takes at least one node, so the recursion is at most
/// [`TREE_NODES_MAX`] deep.
fn tree_children(
    children_of: &HashMap<u32, Vec<&state::TaskRecord>>,
    task: u32,
    left: &mut usize,
    truncated: &mut bool,
) -> Vec<Value> {
    let mut view = Vec::new();
    for child in children_of.get(&task).map(Vec::as_slice).unwrap_or_default() {
        if *left == 0 {
            *truncated = true;
            break;
        }
        *left -= 1;
        let below = tree_children(children_of, child.index, left, truncated);
        view.push(json!({
            "task": child.index, "case_id": child.case_id, "agent": child.agent, "status": json!(child.status),
            "outcome": child.outcome, "reason": child.reason.as_deref().map(cut),
            "decided_by": child.decided_by, "gate": child.gate,
            "children": below,
        }));
    }
    view
}

#[cfg(test)]
mod tree_tests {
    use super::*;
    use engine::state::{TaskRecord, TaskStatus};

    fn record(index: u32, parent: Option<u32>, outcome: Option<&str>) -> TaskRecord {
        TaskRecord {
            mission: "m".to_owned(),
            index,
            case_id: format!("case-{index}"),
            agent: if parent.is_some() { "checker" } else { "lead" }.to_owned(),
            status: if outcome.is_some() { TaskStatus::Decided } else { TaskStatus::AwaitingChildren },
            outcome: outcome.map(str::to_owned),
            reason: outcome.map(|_| "r".repeat(REASONING_TEXT_MAX + 10)),
            decided_by: outcome.map(|_| "agent".to_owned()),
            failure: None,
            gate: None,
            tokens_reserved: 0,
            tokens_settled: 0,
            model_calls: 0,
            spans: Vec::new(),
            parent,
            children: 0,
            delegation: None,
        }
    }

    #[test]
    fn a_tree_names_the_parent_and_nests_children_in_start_order() {
        // 0 delegated 3 and 2 (listed out of order); 2 delegated 4; 1 is
        // another case.
        let tasks = [
            record(0, None, None),
            record(1, None, Some("alone")),
            record(3, Some(0), Some("b")),
            record(2, Some(0), None),
            record(4, Some(2), Some("deep")),
        ];
        let tree = delegation_tree(&tasks, 0);
        assert!(tree["parent"].is_null(), "{tree}");
        assert!(tree.get("truncated").is_none(), "{tree}");
        let children = tree["children"].as_array().expect("children");
        assert_eq!(children.iter().map(|c| c["task"].clone()).collect::<Vec<_>>(), [json!(2), json!(3)]);
        assert_eq!(children[0]["status"], "awaiting_children");
        assert_eq!(children[0]["children"][0]["outcome"], "deep");
        assert_eq!(children[1]["reason"].as_str().map(str::len), Some(REASONING_TEXT_MAX), "reasons are cut");

        let tree = delegation_tree(&tasks, 4);
        assert_eq!(
            tree["parent"],
            json!({"task": 2, "case_id": "case-2", "agent": "checker",
                                          "status": "awaiting_children"})
        );
        assert_eq!(tree["children"], json!([]));
        assert_eq!(delegation_tree(&tasks, 1), json!({"parent": null, "children": []}));
    }

    #[test]
    fn a_tree_stops_at_its_node_bound_even_on_a_cycle() {
        // Wide: more children than the bound.
        let wide: Vec<TaskRecord> =
            std::iter::once(record(0, None, None)).chain((1..=300).map(|i| record(i, Some(0), Some("x")))).collect();
        let tree = delegation_tree(&wide, 0);
        assert_eq!(tree["children"].as_array().map(Vec::len), Some(TREE_NODES_MAX));
        assert_eq!(tree["truncated"], true);
        // A damaged projection: 1 and 2 each other's parent.
        let cycle = [record(1, Some(2), None), record(2, Some(1), None)];
        let tree = delegation_tree(&cycle, 1);
        assert_eq!(tree["truncated"], true, "the bound ends the cycle");
        assert_eq!(tree["parent"]["task"], 2);
    }
}

/// The facts a memory read returned, their values unsealed (`null` when
/// the subject was erased since).
fn memory_view(read: &redb::ReadTransaction, facts: Option<Vec<JournaledFact>>) -> Result<Vec<Value>> {
    let mut view = Vec::new();
    for fact in facts.into_iter().flatten() {
        let mut sealed = json!({"subject": fact.subject, "value": fact.value});
        engine::facts::unseal(read, &mut sealed)?;
        view.push(json!({
            "space": fact.space, "subject": fact.subject, "predicate": fact.predicate,
            "value": sealed["value"],
            "valid_from": missions::format_timestamp(fact.valid_from),
            "known_since": missions::format_timestamp(fact.recorded_at),
        }));
    }
    Ok(view)
}

/// A pending gate with what a reviewer needs to judge it: the case, the
/// agent's proposal and reasoning, and the memory it used, all read from
/// the task's own journal entries.
fn gate_view(data: &DataDir, read: &redb::ReadTransaction, gate: &GateRecord, who: &Signed) -> Result<Value> {
    let mut case = Value::Null;
    let mut question = Value::Null;
    let mut reasoning = Vec::new();
    let mut memory = Vec::new();
    let task = state::task(read, &gate.mission, gate.task)?;
    // The task's spans may hold other tasks' entries (tasks run side by
    // side): only its own are read.
    let ours = |mission: &str, task: u32| mission == gate.mission && task == gate.task;
    for (first, last) in task.iter().flat_map(|t| t.spans.clone()) {
        let count = last.map_or(usize::MAX, |l| usize::try_from(l.saturating_sub(first) + 1).unwrap_or(usize::MAX));
        for entry in data.ledger.entries(first, count)? {
            match Kind::parse(&entry.kind) {
                Some(Kind::TaskStarted) => {
                    let p: entries::TaskStarted = entries::decode(&entry)?;
                    if ours(&p.mission, p.task) {
                        case = p.input;
                    }
                }
                Some(Kind::HostInfer) => {
                    let p: entries::HostInfer = entries::decode(&entry)?;
                    if ours(&p.mission, p.task) {
                        let prompt = p.messages.last().map(|m| m.content.as_str()).unwrap_or_default();
                        reasoning.push(json!({
                            "model": p.model,
                            "prompt": cut(prompt),
                            "completion": cut(p.text.as_deref().unwrap_or_default()),
                            "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
                        }));
                    }
                }
                Some(Kind::HostRecall) => {
                    let p: entries::HostRecall = entries::decode(&entry)?;
                    if ours(&p.mission, p.task) {
                        memory.extend(memory_view(read, p.facts)?);
                    }
                }
                Some(Kind::HostQuery) => {
                    let p: entries::HostQuery = entries::decode(&entry)?;
                    if ours(&p.mission, p.task) {
                        memory.extend(memory_view(read, p.facts)?);
                    }
                }
                // The question of a parked agent. (`host.review` names no
                // gate id: the gate it asks for is raised on the proposal.)
                Some(Kind::HostAwait) if gate.parked => {
                    let p: entries::HostAwait = entries::decode(&entry)?;
                    if ours(&p.mission, p.task) && p.gate_id.as_deref() == Some(gate.id.as_str()) {
                        question = Value::String(p.reason);
                    }
                }
                _ => {}
            }
        }
    }
    let requested_at = data.ledger.entries(gate.requested_seq, 1)?.pop().map(|e| missions::format_timestamp(e.time_us));
    let why_not = why_not(gate, who);
    let budget = match &gate.budget {
        Some(ask) => {
            // A fresh snapshot, a moment after `read`: balances only.
            let account = data.ledger.account(&ask.account).ok();
            json!({"account": ask.account, "limit": account.as_ref().and_then(|a| a.limit),
                   "settled": account.as_ref().map(|a| a.settled), "requested": ask.amount})
        }
        None => Value::Null,
    };
    Ok(json!({
        "id": gate.id, "gate": gate.gate, "kind": if gate.budget.is_some() { "budget" } else { "case" },
        "status": json!(gate.status),
        "mission": gate.mission,
        // A budget gate belongs to the mission, not a task.
        "task": gate.budget.is_none().then_some(gate.task),
        "case_id": gate.budget.is_none().then_some(&gate.case_id), "case": case,
        "proposal": if gate.parked || gate.budget.is_some() { Value::Null } else {
            json!({"outcome": gate.proposed_outcome, "reason": gate.proposed_reason, "details": gate.proposed_details})
        },
        "question": question, "parked": gate.parked, "budget": budget,
        "reasoning": reasoning, "memory": memory,
        "reviewers": gate.reviewers, "quorum": gate.quorum, "approvals": gate.votes.len(),
        // The outcomes a decision may have (the page offers only these).
        "decision_rules": gate.decision_rules,
        "requested_at": requested_at,
        "deadline": gate.deadline.as_ref().map(|d| missions::format_timestamp(d.due_us)),
        "on_timeout": gate.deadline.as_ref().map(|d| d.on_timeout.clone()),
        "can_decide": why_not.is_none(), "why_not": why_not,
        // Who delegated this case and what it delegated (issue #20).
        "tree": tree_view(read, gate, task.as_ref())?,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareBody {
    verdict: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    edits: Option<Map<String, Value>>,
    /// For a budget gate: the extension to grant (default: what it asks).
    #[serde(default)]
    amount: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    token: String,
    signatures: Vec<String>,
}

/// Records a refused decision attempt by a signed-in person, and returns
/// the error to answer with: journaled as its own `gate.refused` while
/// the key is within its limit, else counted for a summary entry and
/// answered `429` (`refusals.rs`).
fn refused(state: &State, public: &PublicKey, gate_id: &str, verdict: Verdict, error: ApiError) -> ApiError {
    let refusal = Refusal::gate(public, gate_id, verdict, &error.message);
    match admit(state, &Caller::Key(*public), &refusal) {
        Admit::Journal => {
            gates::refuse(&state.data, gate_id, public, verdict, &error.message);
            error
        }
        Admit::Counted { retry_after } => too_many(error, "keys", retry_after),
    }
}

/// Journals one refusal as its own entry (`gate.refused` or
/// `request.refused`), signed by the conductor. A failure is logged and,
/// if the storage failed, stops the server (`health.rs`); the request is
/// refused either way.
fn journal_refusal(data: &DataDir, refusal: &Refusal) {
    let conductor = data.conductor.clone();
    let written = data.ledger.write(|t| match refusal {
        Refusal::Gate(payload) => entries::append(t, &conductor, payload, now_us()).map(|_| ()),
        Refusal::Request(payload) => entries::append(t, &conductor, payload, now_us()).map(|_| ()),
    });
    if let Err(e) = written {
        let e = anyhow::Error::from(e);
        engine::health::note(&e);
        tracing::error!("could not journal a refused request: {}", engine::health::describe(&e));
    }
}

/// Journals one caller's counted refusals of one kind as a single entry
/// (a `gate.refused` with `repeated`, or a `request.refused` that says
/// how many it stands for), signed by the conductor.
fn journal_repeated(data: &DataDir, repeated: &Repeated) {
    tracing::info!("journaling {} refused attempts by {} in one entry", repeated.count, repeated.caller);
    journal_refusal(data, &repeated.payload());
}

/// The key a decision is signed with: the session's. A token holds none,
/// so it cannot decide (`403`, journaled as `request.refused`).
fn signer(state: &State, who: &Signed, req: &HttpRequest) -> Result<PublicKey, ApiError> {
    who.public.ok_or_else(|| {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "gate decisions are signed with a reviewer's own key, which an API token does not hold; sign in with \
             your key to decide",
        );
        refuse(state, who, req, None, e)
    })
}

/// The status a refused decision answers with.
fn refusal_status(state: &State, gate_id: &str) -> StatusCode {
    let gate = state.data.ledger.read().ok().and_then(|r| state::gate(&r, gate_id).ok().flatten());
    match gate {
        None => StatusCode::NOT_FOUND,
        Some(g) if g.status != GateStatus::Pending => StatusCode::CONFLICT,
        Some(_) => StatusCode::FORBIDDEN,
    }
}

async fn prepare(
    state: web::Data<State>,
    who: Signed,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let public = signer(&state, &who, &req)?;
    let gate_id = id.into_inner();
    let body: PrepareBody = match read_json(&req, payload).await {
        Ok(body) => body,
        Err(e) => return Err(refused(&state, &public, &gate_id, Verdict::Approve, e)),
    };
    let verdict = match body.verdict.as_str() {
        "approve" => Verdict::Approve,
        "reject" => Verdict::Reject,
        other => {
            let e =
                ApiError::new(StatusCode::BAD_REQUEST, format!("verdict `{other}` is neither `approve` nor `reject`"));
            return Err(refused(&state, &public, &gate_id, Verdict::Approve, e));
        }
    };
    if who.role != Role::Reviewer {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} keys cannot decide gates; a reviewer signs decisions with their own key", who.role),
        );
        return Err(refused(&state, &public, &gate_id, verdict, e));
    }
    let time_us = now_us();
    let st = state.clone();
    let (gid, note, edits, amount) = (gate_id.clone(), body.note.clone(), body.edits.clone(), body.amount);
    let captured = blocking(move || {
        let key = ledger::RemoteKey::capture(public, Role::Reviewer);
        let decision = Decision { gate_id: &gid, verdict, note: note.as_deref(), edits: edits.as_ref(), amount };
        match gates::decide_remote(&st.data, &decision, &key, time_us, true) {
            Ok(_) => Ok(Ok(key.captured())),
            Err(e) if engine::health::note(&e) => Err(ApiError::storage_failed(&e)),
            Err(e) => Ok(Err(engine::health::describe(&e))),
        }
    })
    .await?;
    let entries = match captured {
        Ok(entries) => entries,
        Err(message) => {
            let status = refusal_status(&state, &gate_id);
            return Err(refused(&state, &public, &gate_id, verdict, ApiError::new(status, message)));
        }
    };
    let token = random_secret();
    let listed: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"seq": e.seq, "kind": e.kind, "time_us": e.time_us,
                   "canonical": base64::engine::general_purpose::STANDARD.encode(&e.canonical),
                   "hash": e.hash.to_string()})
        })
        .collect();
    let prepared = Prepared {
        public,
        gate_id,
        verdict,
        note: body.note,
        edits: body.edits,
        amount: body.amount,
        time_us,
        entries: entries.iter().map(|e| (e.seq, e.hash)).collect(),
        expires: Instant::now() + PREPARED_TTL,
    };
    {
        let mut all = state.prepared.lock().map_err(internal)?;
        insert_bounded(&mut all, secret_key(&token), prepared, |p| p.expires <= Instant::now())?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"token": hex::encode(token), "entries": listed, "expires_in_s": PREPARED_TTL.as_secs()})))
}

async fn decide(
    state: web::Data<State>,
    who: Signed,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let public = signer(&state, &who, &req)?;
    let gate_id = id.into_inner();
    // Only a reviewer ever has a prepared decision to send: anyone else is
    // refused before the body is read.
    if who.role != Role::Reviewer {
        let e =
            ApiError::new(StatusCode::FORBIDDEN, format!("{} keys cannot decide gates; reviewer keys can", who.role));
        return Err(refused(&state, &public, &gate_id, Verdict::Approve, e));
    }
    let body: DecideBody = match read_json(&req, payload).await {
        Ok(body) => body,
        Err(e) => return Err(refused(&state, &public, &gate_id, Verdict::Approve, e)),
    };
    let token = hex32(&body.token, "token").map_err(|e| refused(&state, &public, &gate_id, Verdict::Approve, e))?;
    // Used once, whatever happens next: a replayed request finds nothing.
    let prepared = state.prepared.lock().map_err(internal)?.remove(&secret_key(&token));
    let Some(prepared) = prepared.filter(|p| p.expires > Instant::now()) else {
        let e =
            ApiError::new(StatusCode::CONFLICT, "that prepared decision is unknown, used or expired; prepare it again");
        return Err(refused(&state, &public, &gate_id, Verdict::Approve, e));
    };
    let verdict = prepared.verdict;
    if prepared.public != public || prepared.gate_id != gate_id {
        let e = ApiError::new(StatusCode::FORBIDDEN, "that decision was prepared for another reviewer or gate");
        return Err(refused(&state, &public, &gate_id, verdict, e));
    }
    if body.signatures.len() != prepared.entries.len() {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{} entries were prepared and {} signatures sent", prepared.entries.len(), body.signatures.len()),
        );
        return Err(refused(&state, &public, &gate_id, verdict, e));
    }
    let mut signed = Vec::new();
    for ((seq, hash), text) in prepared.entries.iter().zip(&body.signatures) {
        let Ok(signature) = Signature::from_hex(text) else {
            let e = ApiError::new(StatusCode::BAD_REQUEST, "each signature must be 128 hex digits");
            return Err(refused(&state, &public, &gate_id, verdict, e));
        };
        signed.push(ledger::SignedEntry { seq: *seq, hash: *hash, signature: signature.to_bytes() });
    }
    let st = state.clone();
    let gid = gate_id.clone();
    let outcome = blocking(move || {
        let key = ledger::RemoteKey::signed(prepared.public, Role::Reviewer, signed);
        let decision = Decision {
            gate_id: &gid,
            verdict: prepared.verdict,
            note: prepared.note.as_deref(),
            edits: prepared.edits.as_ref(),
            amount: prepared.amount,
        };
        Ok(gates::decide_remote(&st.data, &decision, &key, prepared.time_us, false))
    })
    .await?;
    let decided = match outcome {
        Ok(decided) => decided,
        Err(e) if journal_moved(&e) => {
            // Not a refusal: another entry took the prepared seq first.
            return Err(ApiError {
                retry: true,
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "the journal moved on since this decision was prepared; prepare and sign it again",
                )
            });
        }
        // Not the reviewer's doing, and nothing more can be journaled.
        Err(e) if engine::health::note(&e) => return Err(ApiError::storage_failed(&e)),
        Err(e) => {
            let status = if bad_signature(&e) { StatusCode::BAD_REQUEST } else { refusal_status(&state, &gate_id) };
            let e = ApiError::new(status, engine::health::describe(&e));
            return Err(refused(&state, &public, &gate_id, verdict, e));
        }
    };
    // A parked task of a mission running here goes straight back to it;
    // otherwise the mission is resumed.
    let woken_here = gates::wake_running(&decided);
    if gates::resumes_mission(&decided) && !woken_here {
        let jobs = state.jobs.lock().map_err(internal)?;
        if jobs.send(Job::Resume(decided.gate.mission.clone())).is_err() {
            tracing::warn!(
                "the mission runner is gone; resume with `conductor mission resume {}`",
                decided.gate.mission
            );
        }
    }
    let read = state.data.ledger.read().map_err(internal)?;
    let task = state::task(&read, &decided.gate.mission, decided.gate.task).map_err(internal)?;
    let mission = state::mission(&read, &decided.gate.mission).map_err(internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": json!(decided.gate.status), "closed": decided.closed, "needed": decided.needed,
        "gate": decided.gate.gate, "case_id": decided.gate.case_id,
        "case": task.map(|t| json!({"status": json!(t.status), "outcome": t.outcome})),
        "mission_status": mission.map(|m| engine::summary::status_text(m.status)),
    })))
}

fn journal_moved(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ledger::LedgerError>(),
        Some(ledger::LedgerError::Remote(ledger::RemoteSignError::Moved { .. }))
    )
}

fn bad_signature(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ledger::LedgerError>(),
        Some(ledger::LedgerError::Remote(ledger::RemoteSignError::BadSignature { .. }))
    )
}

async fn event_stream(state: web::Data<State>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // Events about every mission's gates: not for a scoped token.
    require(&state, &who, &req, &PEOPLE, None)?;
    let rx = state.events.subscribe();
    let first = Bytes::from_static(b"retry: 2000\nevent: gates\ndata: {}\n\n");
    let stream =
        futures_util::stream::unfold((rx, Some(first), state, who), |(mut rx, first, state, who)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (rx, None, state, who)));
            }
            let message = tokio::select! {
                got = rx.recv() => match got {
                    Ok(data) => format!("event: gates\ndata: {data}\n\n"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => "event: gates\ndata: {}\n\n".to_owned(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(KEEPALIVE) => ": keep-alive\n\n".to_owned(),
            };
            // A stream outlives no session or token: sign-out, expiry or
            // revocation ends it.
            let alive = who.alive(&state);
            alive.then(|| (Ok(Bytes::from(message)), (rx, None, state, who)))
        });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartMission {
    /// The mission file's text (YAML). Files it names are relative to
    /// the server's `DATA/missions/` and must be inside it (`upload.rs`).
    yaml: String,
    /// Start it even if the same mission already ran to its end here
    /// (`conductor run --new`).
    #[serde(default)]
    new: bool,
}

/// An operator starts a mission on this host by sending its YAML (it
/// runs after any before it).
async fn start_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A new mission is about no mission yet: not for a scoped token.
    require(&state, &who, &req, &[Role::Operator], None)?;
    let body: StartMission = read_json(&req, payload).await.map_err(|e| refuse(&state, &who, &req, None, e))?;
    let uploads = state.uploads.clone();
    // Checked here so the operator hears about a bad mission, not the log.
    let file = blocking(move || {
        let unusable = |e: upload::UploadError| match e {
            upload::UploadError::Store(e) => {
                tracing::error!("serve: storing an uploaded mission: {e}");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, format!("the server could not store the mission: {e}"))
            }
            refused => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, refused.to_string()),
        };
        let mission = upload::check(&uploads, &body.yaml).map_err(unusable)?;
        // What fails here names a module and its signature, never content.
        engine::modules::check_mission(&mission)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, engine::health::describe(&e)))?;
        upload::store(&uploads, &body.yaml).map_err(unusable)
    })
    .await
    // The operator's mistakes are refusals; the server's own are not.
    .map_err(|e| if e.status.is_client_error() { refuse(&state, &who, &req, None, e) } else { e })?;
    let again = if body.new { engine::run::Again::StartNew } else { engine::run::Again::Refuse };
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tracing::info!("serve: operator ({}) starts {}", who.caller(), file.display());
    state.jobs.lock().map_err(internal)?.send(Job::Upload { file, again }).map_err(internal)?;
    Ok(HttpResponse::Accepted().json(json!({"queued": format!("{}/{name}", upload::UPLOADS_DIR)})))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {} {}", req.method(), req.path())).error_response()
}

/// Whether journal entries of `kind` change what the page shows.
fn page_relevant(kind: &str) -> bool {
    matches!(
        Kind::parse(kind),
        Some(
            Kind::GateRequested
                | Kind::GateReminder
                | Kind::GateEscalated
                | Kind::GateTimedOut
                | Kind::GateRefused
                | Kind::GateDecided
                | Kind::GateVoted
                | Kind::TaskDecided
                | Kind::MissionDeclared
                | Kind::MissionFinished
                | Kind::MissionCompleted
                | Kind::MissionResumed
                | Kind::MissionRecovered
        )
    )
}

/// Watches the journal head and tells event streams when gates or cases
/// changed; journals the summaries of refusal windows that closed (all of
/// them once `stop` is set, before the database closes).
fn poll_events(data: DataDir, events: tokio::sync::broadcast::Sender<String>, refusals: &Refusals, stop: &AtomicBool) {
    let mut seen = data.ledger.head().map(|(next, _)| next).unwrap_or(0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(EVENT_POLL);
        for repeated in refusals.closed(Some(Instant::now())) {
            journal_repeated(&data, &repeated);
        }
        let Ok((next, _)) = data.ledger.head() else { continue };
        if next == seen {
            continue;
        }
        // With no page open, nothing is read.
        let relevant = events.receiver_count() > 0
            && data
                .ledger
                .entries(seen, usize::try_from(next - seen).unwrap_or(usize::MAX))
                .map(|entries| entries.iter().any(|e| page_relevant(&e.kind)))
                .unwrap_or(true);
        seen = next;
        if relevant {
            // Pages refetch what they show; the event only says when. A
            // send fails only when no page listens, which is fine.
            let _ = events.send(json!({"head": next}).to_string());
        }
    }
    for repeated in refusals.closed(None) {
        journal_repeated(&data, &repeated);
    }
}

/// Runs missions and resumes on a runtime of their own (the mission
/// engine is not tied to the server's workers), each on its own thread:
/// an open mission runs until it is closed, and others run beside it. A
/// resume waits while the same mission runs here (a decided gate's task
/// normally reaches the running mission directly: `intake::wake`).
fn run_jobs(
    cfg: engine::run::RunConfig,
    router: Arc<dyn models::Models>,
    jobs: mpsc::Receiver<Job>,
    runtime: Arc<tokio::runtime::Runtime>,
    progress: Arc<dyn engine::run::Observer>,
) {
    let active: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let mut threads = Vec::new();
    for job in jobs {
        let (cfg, router, runtime, progress, active) =
            (cfg.clone(), router.clone(), runtime.clone(), progress.clone(), active.clone());
        let thread = std::thread::Builder::new().name("mission".into()).spawn(move || {
            let outcome = match &job {
                Job::Run(path) => runtime.block_on(run_file(path, None, router, &cfg, progress)),
                Job::Upload { file, again } => {
                    let cfg = engine::run::RunConfig { again: *again, ..cfg };
                    runtime.block_on(run_file(file, file.parent(), router, &cfg, progress))
                }
                Job::Resume(mission) => {
                    let _turn = Turn::take(&active, mission);
                    if resumable(&cfg, mission) {
                        runtime.block_on(engine::run::resume_mission(mission, router, &cfg, progress)).map(Some)
                    } else {
                        Ok(None)
                    }
                }
            };
            match outcome {
                Ok(Some(done)) => {
                    eprintln!("mission {}: {}", done.mission_id, engine::summary::status_text(done.status));
                }
                Ok(None) => {}
                Err(e) => {
                    // A full disk here stops the server (`health.rs`).
                    engine::health::note(&e);
                    eprintln!("{job:?} failed: {}", engine::health::describe(&e));
                }
            }
        });
        match thread {
            Ok(handle) => threads.push(handle),
            Err(e) => eprintln!("could not start a mission thread: {e}"),
        }
        threads.retain(|t| !t.is_finished());
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// One resume of a mission at a time in this process: a second waits for
/// the first (and for the mission to stop running here) before it looks.
struct Turn {
    active: Arc<Mutex<std::collections::HashSet<String>>>,
    mission: String,
}

/// How often a waiting resume looks again.
const TURN_POLL: Duration = Duration::from_millis(100);

impl Turn {
    fn take(active: &Arc<Mutex<std::collections::HashSet<String>>>, mission: &str) -> Turn {
        loop {
            let taken =
                active.lock().is_ok_and(|mut a| !engine::run::runs_here(mission) && a.insert(mission.to_owned()));
            if taken {
                return Turn { active: active.clone(), mission: mission.to_owned() };
            }
            std::thread::sleep(TURN_POLL);
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Ok(mut active) = self.active.lock() {
            active.remove(&self.mission);
        }
    }
}

/// Whether `mission` has anything to resume now: a resume queued behind a
/// run that since finished the work finds nothing, and says nothing.
fn resumable(cfg: &engine::run::RunConfig, mission: &str) -> bool {
    let Some(data) = &cfg.open else { return true };
    let status =
        data.ledger.read().ok().and_then(|read| state::mission(&read, mission).ok().flatten()).map(|m| m.status);
    matches!(
        status,
        Some(state::MissionStatus::Paused | state::MissionStatus::AwaitingBudget | state::MissionStatus::Running)
    )
}

/// The file in the data directory that holds the running server's address.
pub const SERVE_URL_FILE: &str = "serve.url";

fn url_file(root: &std::path::Path) -> PathBuf {
    root.join(SERVE_URL_FILE)
}

/// Open missions left running (the server stopped or was killed while
/// they were open): resumed when the server starts.
fn open_missions(data: &DataDir) -> Vec<String> {
    let Ok(read) = data.ledger.read() else { return Vec::new() };
    let Ok(missions) = state::missions(&read) else { return Vec::new() };
    missions
        .into_iter()
        .filter(|m| m.status == state::MissionStatus::Running)
        .filter(|m| engine::intake::intake(&read, &m.id).ok().flatten().is_some())
        .map(|m| m.id)
        .collect()
}

/// Loads and runs the mission file at `path`; with `confined_to`, only if
/// every file it names is inside that directory (an upload). `None` if it
/// was refused before anything ran (the reason is logged).
async fn run_file(
    path: &std::path::Path,
    confined_to: Option<&std::path::Path>,
    router: Arc<dyn models::Models>,
    cfg: &engine::run::RunConfig,
    progress: Arc<dyn engine::run::Observer>,
) -> Result<Option<engine::run::RunOutcome>> {
    let mission = match missions::load(path) {
        Ok(mission) => mission,
        Err(d) => {
            eprintln!("{d}");
            return Ok(None);
        }
    };
    if let Some(dir) = confined_to
        && let Err(e) = upload::confined(&mission, dir, &path.display().to_string())
    {
        eprintln!("{}: {e}; not run", path.display());
        return Ok(None);
    }
    if let Err(e) = engine::modules::check_mission(&mission) {
        eprintln!("{}: {}; not run", path.display(), engine::health::describe(&e));
        return Ok(None);
    }
    engine::run::run_mission(path, mission, router, cfg, progress).await.map(Some)
}

/// The server's health for a supervisor: `503` once storage failed (the
/// server is then stopping). Says nothing else, so anyone may ask.
async fn health() -> HttpResponse {
    let body = |status| json!({"status": status});
    match engine::health::failure() {
        None => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body("ok")),
        Some(_) => {
            HttpResponse::ServiceUnavailable().insert_header((header::CACHE_CONTROL, "no-store")).json(body("failing"))
        }
    }
}

/// Stops the server (as SIGTERM would) once any part of the process
/// reports a storage failure.
async fn stop_when_storage_fails(server: actix_web::dev::ServerHandle) {
    while engine::health::failure().is_none() {
        actix_web::rt::time::sleep(HEALTH_POLL).await;
    }
    eprintln!("stopping: the data directory can no longer be written");
    server.stop(true).await;
}

/// Whether `addr` is reachable only from this host.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves until interrupted (Ctrl-C). Prints `listening on http://ADDR`
/// on stdout once the socket is bound, so scripts can wait for it.
pub fn serve(cfg: ServeConfig) -> Result<()> {
    // Before any work starts: what is measured before the recorder is
    // installed is lost (`metrics.rs`).
    crate::metrics::install();
    let (events, _) = tokio::sync::broadcast::channel(64);
    let (jobs, job_queue) = mpsc::channel();
    upload::create_dir(&cfg.data.root)
        .with_context(|| format!("creating {}", upload::dir(&cfg.data.root).display()))?;
    let refusals = Arc::new(Refusals::default());
    let state = web::Data::new(State {
        data: cfg.data.clone(),
        challenges: Challenges::new(),
        sessions: Mutex::new(HashMap::new()),
        prepared: Mutex::new(HashMap::new()),
        events: events.clone(),
        jobs: Mutex::new(jobs.clone()),
        refusals: refusals.clone(),
        uploads: upload::dir(&cfg.data.root),
    });
    let mut run_config = cfg.run_config;
    run_config.open = Some(cfg.data.clone());
    // Missions and gateway calls run models here, not on the server's
    // single-threaded workers.
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            // Each running cell holds a blocking thread: room for every one.
            .max_blocking_threads(engine::run::BLOCKING_THREADS)
            .enable_all()
            .build()
            .context("starting the model runtime")?,
    );
    let gateway = web::Data::new(crate::gateway::Gateway::new(
        cfg.data.clone(),
        cfg.router.clone(),
        runtime.handle().clone(),
        cfg.gateway,
    ));
    let (router, observer) = (cfg.router, cfg.observer);
    let runner_runtime = runtime.clone();
    let runner = std::thread::Builder::new()
        .name("missions".into())
        .spawn(move || run_jobs(run_config, router, job_queue, runner_runtime, observer))
        .context("starting the mission runner")?;
    let poll_data = cfg.data.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = std::thread::Builder::new()
        .name("events".into())
        .spawn({
            let stop = stop.clone();
            move || poll_events(poll_data, events, &refusals, &stop)
        })
        .context("starting the event poller")?;
    let open_data = cfg.data.clone();
    let url_root = cfg.data.root.clone();
    let url_path = url_file(&url_root);
    drop(cfg.data);
    let system = actix_web::rt::System::new();
    let served = system.block_on(async move {
        let app_state = state.clone();
        let app_gateway = gateway.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(app_gateway.clone())
                .configure(crate::gateway::routes)
                .configure(crate::metrics::routes)
                .route("/", web::get().to(asset))
                .route("/static/{name}", web::get().to(asset))
                .route("/health", web::get().to(health))
                .route("/api/challenge", web::get().to(challenge))
                .route("/api/session", web::post().to(sign_in))
                .route("/api/session", web::delete().to(sign_out))
                .route("/api/me", web::get().to(me))
                .route("/api/gates", web::get().to(list_gates))
                .route("/api/gates/{id}", web::get().to(one_gate))
                .route("/api/gates/{id}/prepare", web::post().to(prepare))
                .route("/api/gates/{id}/decide", web::post().to(decide))
                .route("/api/events", web::get().to(event_stream))
                .route("/api/missions", web::post().to(start_mission))
                .configure(operator::routes)
                .configure(dashboard::routes)
                .configure(tokens::routes)
                .default_service(web::to(not_found))
        })
        .workers(2)
        // Event streams never finish on their own; on shutdown they get
        // this long to close, not actix's default 30 s.
        .shutdown_timeout(SHUTDOWN_GRACE_S)
        .bind(cfg.bind)
        .with_context(|| format!("binding {}", cfg.bind))?;
        for addr in server.addrs() {
            println!("listening on http://{addr}");
        }
        // Where commands on this host find the server while it holds the
        // data directory (`conductor cases add`, `mission close`).
        if let Some(addr) = server.addrs().first() {
            let written = std::fs::write(url_file(&url_root), format!("http://{addr}\n"));
            if let Err(e) = written {
                tracing::warn!("serve: could not write {}: {e}", url_file(&url_root).display());
            }
        }
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        // Open missions that were running when the server last stopped
        // (or was killed) carry on: they take cases until closed.
        for mission in open_missions(&open_data) {
            jobs.send(Job::Resume(mission)).ok();
        }
        for path in cfg.run {
            jobs.send(Job::Run(path)).ok();
        }
        let running = server.run();
        actix_web::rt::spawn(stop_when_storage_fails(running.handle()));
        running.await.context("serving")
    });
    // Every handle on the database must be gone before the process ends,
    // so redb closes it cleanly (a reader would otherwise find it in need
    // of repair). The job queue closed with the server's state: the
    // runner finishes the mission in progress, if any, and stops.
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_file(&url_path);
    eprintln!("stopping: finishing the tasks in progress, if any");
    // Open missions would wait for cases forever: they stop starting
    // tasks, finish the running ones and stay open for the next start.
    engine::intake::shutdown_all();
    let _ = poller.join();
    let _ = runner.join();
    // mistral.rs keeps engine threads alive; don't wait for them.
    if let Ok(runtime) = Arc::try_unwrap(runtime) {
        runtime.shutdown_background();
    }
    served?;
    match engine::health::failure() {
        // Exits non-zero, so that a supervisor restarts the server (redb
        // takes writes again only once the database is reopened).
        Some(failure) => anyhow::bail!(
            "the server stopped because its data directory can no longer be written ({failure}); fix the cause and \
             start it again"
        ),
        None => Ok(()),
    }
}

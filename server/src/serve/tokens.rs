//! API tokens over HTTP: an operator issues, lists and revokes the tokens
//! scripts use (`engine::tokens` keeps them; `Signed` accepts them).
//!
//! Issuing and revoking take an operator *signed in with their own key*:
//! a token cannot mint or revoke tokens, so a leaked one cannot make
//! itself a successor that outlives its revocation. Listing is open to
//! operator tokens too. A token's secret is in the answer that issued it
//! and nowhere else: listings show ids, names, roles, scopes and expiry,
//! never a secret or its hash.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use identity::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use engine::clock::now_us;
use engine::tokens::{self, Token, TokenError, TokenSpec};

use super::{ApiError, Signed, State, blocking, internal, read_json, refuse, require};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/tokens", web::post().to(issue))
        .route("/api/tokens", web::get().to(list))
        .route("/api/tokens/{id}", web::delete().to(revoke));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    /// `operator`, `reviewer` or `auditor`.
    role: String,
    /// The one mission the token may touch.
    #[serde(default)]
    mission: Option<String>,
    /// How long it lasts (default: `tokens::LIFETIME_DEFAULT`).
    #[serde(default)]
    expires_in_s: Option<u64>,
    /// A label for people (`nightly-intake`).
    name: String,
}

/// Refuses a token where only a person signed in with their own key may
/// act (issuing and revoking tokens).
fn require_session(state: &State, who: &Signed, req: &HttpRequest) -> Result<(), ApiError> {
    if who.token.is_none() {
        return Ok(());
    }
    let e = ApiError::new(
        StatusCode::FORBIDDEN,
        "tokens are issued and revoked by an operator signed in with their own key, not with a token",
    );
    Err(refuse(state, who, req, None, e))
}

/// The answer to a refused issue or revocation.
fn token_error(e: TokenError) -> ApiError {
    let status = match &e {
        TokenError::Role { .. }
        | TokenError::UnknownMission { .. }
        | TokenError::Name { .. }
        | TokenError::Lifetime { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        TokenError::TooMany | TokenError::AlreadyRevoked { .. } => StatusCode::CONFLICT,
        TokenError::NotFound { .. } => StatusCode::NOT_FOUND,
        TokenError::NoFreshId
        | TokenError::Ledger(_)
        | TokenError::State(_)
        | TokenError::Storage(_)
        | TokenError::Corrupt { .. } => {
            let e = anyhow::Error::from(e);
            return if engine::health::note(&e) { ApiError::storage_failed(&e) } else { internal(e) };
        }
    };
    ApiError::new(status, e.to_string())
}

/// `POST /api/tokens`: answers the token (once; `201`).
async fn issue(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator], None)?;
    require_session(&state, &who, &req)?;
    let body: IssueBody = read_json(&req, payload).await.map_err(|e| refuse(&state, &who, &req, None, e))?;
    let role = match body.role.parse::<Role>() {
        Ok(role) => role,
        Err(_) => {
            let e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`role` is `operator`, `reviewer` or `auditor`: the role the token acts in",
            );
            return Err(refuse(&state, &who, &req, body.mission.as_deref(), e));
        }
    };
    let by = who.requester();
    let data = state.data.clone();
    let mission = body.mission.clone();
    let issued = blocking(move || {
        let spec = TokenSpec {
            role,
            mission: body.mission.as_deref(),
            lifetime: body.expires_in_s.map(Duration::from_secs),
            name: &body.name,
        };
        Ok(tokens::issue(&data, &spec, by).map_err(token_error))
    })
    .await?;
    let issued = issued.map_err(|e| refused(&state, &who, &req, mission.as_deref(), e))?;
    tracing::info!("serve: {} issued {} token {}", who.caller(), issued.token.role, issued.token.id);
    let mut body = view(&issued.token, now_us());
    body["token"] = Value::String(issued.secret);
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// `GET /api/tokens`: every token, oldest first; no secrets, no hashes.
async fn list(state: web::Data<State>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator], None)?;
    let data = state.data.clone();
    let listed = blocking(move || {
        let read = data.ledger.read().map_err(internal)?;
        tokens::list(&read).map_err(token_error)
    })
    .await?;
    let now = now_us();
    let listed: Vec<Value> = listed.iter().map(|t| view(t, now)).collect();
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"tokens": listed})))
}

/// `DELETE /api/tokens/{id}`: the token is refused from the next request
/// on.
async fn revoke(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator], None)?;
    require_session(&state, &who, &req)?;
    let id = id.into_inner();
    let by = who.requester();
    let data = state.data.clone();
    let revoked = blocking(move || Ok(tokens::revoke(&data, &id, by).map_err(token_error))).await?;
    let revoked = revoked.map_err(|e| refused(&state, &who, &req, None, e))?;
    tracing::info!("serve: {} revoked token {}", who.caller(), revoked.id);
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(view(&revoked, now_us())))
}

/// A refusal to journal (the operator's mistake), or the server's own
/// failure, answered as it is.
fn refused(state: &State, who: &Signed, req: &HttpRequest, mission: Option<&str>, e: ApiError) -> ApiError {
    if e.status.is_client_error() { refuse(state, who, req, mission, e) } else { e }
}

/// A token as the API shows it: never its secret nor the secret's hash.
fn view(token: &Token, now: i64) -> Value {
    json!(token.listing(now))
}

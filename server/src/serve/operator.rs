//! The operator's API: missions (list, show, close, pause, resume),
//! their tasks, and cases for open missions.
//!
//! Every route needs a signed-in identity, and each says which roles may
//! use it: operators change things, auditors read. A refusal by a known
//! identity is journaled (`request.refused`). Cases are acknowledged only
//! once their `case.received` is durable (`engine::intake`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use identity::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use engine::intake::{self, Control, NewCase, NewDocument, Refusal};
use engine::state::{self, MissionStatus, TaskStatus};

use super::{ApiError, Job, Signed, State, blocking, internal, read_body, refuse, require};

/// The largest case submission: documents travel base64-encoded in the
/// JSON body, so this bounds a batch's documents at about 48 MiB. Larger
/// sets are split over several submissions.
pub const CASES_BODY_BYTES_MAX: usize = 64 << 20;
/// How long a caller refused for a full queue is told to wait.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(1);
/// Tasks one listing returns at most (`?limit=`).
const TASKS_LISTED_MAX: usize = 10_000;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/missions", web::get().to(list_missions))
        .route("/api/missions/{id}", web::get().to(show_mission))
        .route("/api/missions/{id}/cases", web::post().to(add_cases))
        .route("/api/missions/{id}/close", web::post().to(close_mission))
        .route("/api/missions/{id}/pause", web::post().to(pause_mission))
        .route("/api/missions/{id}/cancel", web::post().to(cancel_mission))
        .route("/api/missions/{id}/events", web::get().to(mission_events))
        .route("/api/missions/{id}/resume", web::post().to(resume_mission))
        .route("/api/tasks", web::get().to(list_tasks));
}

fn refusal_error(refusal: &Refusal) -> ApiError {
    let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::CONFLICT);
    let mut error = ApiError::new(status, refusal.to_string());
    if matches!(refusal, Refusal::QueueFull { .. }) {
        error.retry_after = Some(QUEUE_FULL_RETRY);
    }
    error
}

async fn list_missions(state: web::Data<State>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], None)?;
    let data = state.data.clone();
    let missions = blocking(move || {
        let listed = engine::summary::list(&data.ledger).map_err(internal)?;
        let read = data.ledger.read().map_err(internal)?;
        listed
            .into_iter()
            .map(|m| {
                let intake = intake::intake(&read, &m.mission_id).map_err(internal)?;
                Ok(json!({
                    "id": m.mission_id, "name": m.name, "status": m.status,
                    "settled": m.settled, "limit": m.limit, "tasks": m.tasks, "counts": m.counts,
                    "running_here": intake::running_here(&m.mission_id),
                    "intake": intake.map(|i| json!({
                        "open": i.closed_seq.is_none(), "queued": i.queued, "queue_max": i.queue_max,
                        "received": i.received,
                    })),
                }))
            })
            .collect::<Result<Vec<Value>, ApiError>>()
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"missions": missions})))
}

async fn show_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], Some(&id))?;
    let data = state.data.clone();
    let shown = blocking(move || {
        let read = data.ledger.read().map_err(internal)?;
        if state::mission(&read, &id).map_err(internal)?.is_none() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("there is no mission `{id}` here")));
        }
        let summary = engine::summary::build(&data.ledger, &id).map_err(internal)?;
        let intake = intake::intake(&read, &id).map_err(internal)?;
        Ok(json!({
            "id": summary.mission_id, "name": summary.name, "status": summary.status,
            "budget": summary.budget, "tokens": summary.tokens, "counts": summary.counts,
            "running_here": intake::running_here(&id),
            "intake": intake.map(|i| json!({
                "open": i.closed_seq.is_none(), "queued": i.queued, "queue_max": i.queue_max,
                "received": i.received, "agent": i.agent, "documents": i.documents,
            })),
        }))
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(shown))
}

#[derive(Deserialize)]
struct TaskQuery {
    mission: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_tasks(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    query: web::Query<TaskQuery>,
) -> Result<HttpResponse, ApiError> {
    let TaskQuery { mission, status, limit } = query.into_inner();
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], mission.as_deref())?;
    let status = match status.as_deref() {
        None => None,
        Some(text) => Some(serde_json::from_value::<TaskStatus>(Value::String(text.to_owned())).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "`status` is {text:?}; use pending, running, decided, awaiting_review, awaiting_children, failed or skipped"
                ),
            )
        })?),
    };
    let limit = limit.unwrap_or(TASKS_LISTED_MAX).min(TASKS_LISTED_MAX);
    let data = state.data.clone();
    let tasks = blocking(move || {
        let read = data.ledger.read().map_err(internal)?;
        let missions: Vec<String> = match mission {
            Some(id) => vec![id],
            None => state::missions(&read).map_err(internal)?.into_iter().map(|m| m.id).collect(),
        };
        let mut found = Vec::new();
        for id in missions {
            for task in state::tasks(&read, &id).map_err(internal)? {
                if status.is_none_or(|s| task.status == s) && found.len() < limit {
                    found.push(json!({
                        "mission": task.mission, "task": task.index, "case": task.case_id, "agent": task.agent,
                        "status": task.status, "outcome": task.outcome, "gate": task.gate,
                        "tokens_settled": task.tokens_settled, "model_calls": task.model_calls,
                        "failure": task.failure, "parent": task.parent,
                    }));
                }
            }
        }
        Ok(found)
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"tasks": tasks})))
}

/// One case in a submission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseBody {
    /// The case id; else the input's `id`, else one is made.
    id: Option<String>,
    input: Value,
    #[serde(default)]
    documents: Vec<DocumentBody>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentBody {
    name: String,
    media_type: String,
    /// The bytes, standard base64.
    content_base64: String,
}

/// A submission: one case, or `{"cases": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Submission {
    Batch { cases: Vec<CaseBody> },
    One(CaseBody),
}

fn new_case(index: usize, body: CaseBody, header_key: Option<&str>) -> Result<NewCase, ApiError> {
    let mut documents = Vec::with_capacity(body.documents.len());
    for doc in body.documents {
        let bytes = base64::engine::general_purpose::STANDARD.decode(doc.content_base64.as_bytes()).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("case {index}: document {:?}: `content_base64` is not base64: {e}", doc.name),
            )
        })?;
        documents.push(NewDocument { name: doc.name, media_type: doc.media_type, bytes });
    }
    Ok(NewCase {
        id: body.id,
        input: body.input,
        documents,
        idempotency_key: body.idempotency_key.or_else(|| header_key.map(str::to_owned)),
    })
}

async fn add_cases(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mission = id.into_inner();
    require(&state, &who, &req, &[Role::Operator], Some(&mission))?;
    let body = match read_body(&req, payload, CASES_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(e) => return Err(refuse(&state, &who, &req, Some(&mission), e)),
    };
    let header_key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed = serde_json::from_slice::<Submission>(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed case: {e}; send {{\"input\": {{...}}, \"id\"?, \"documents\"?: [{{\"name\", \"media_type\", \"content_base64\"}}], \"idempotency_key\"?}} or {{\"cases\": [...]}}"
            ),
        )
    });
    let cases = parsed.and_then(|submission| {
        let (bodies, single) = match submission {
            Submission::Batch { cases } => (cases, false),
            Submission::One(case) => (vec![case], true),
        };
        let key = if single { header_key.as_deref() } else { None };
        bodies.into_iter().enumerate().map(|(i, b)| new_case(i, b, key)).collect::<Result<Vec<_>, _>>()
    });
    let cases = match cases {
        Ok(cases) => cases,
        Err(e) => return Err(refuse(&state, &who, &req, Some(&mission), e)),
    };
    let by = who.requester();
    let (data, id) = (state.data.clone(), mission.clone());
    let received = blocking(move || {
        intake::receive(&data, &id, cases, &by).map_err(|e| {
            if engine::health::note(&e) { ApiError::storage_failed(&e) } else { internal(engine::health::describe(&e)) }
        })
    })
    .await?;
    match received {
        Ok(receipts) => {
            let fresh = receipts.iter().any(|r| !r.duplicate);
            let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
            Ok(HttpResponse::build(status).json(json!({"mission": mission, "cases": receipts})))
        }
        // Journaled (rate-limited per caller, so a script retrying a full
        // queue in a loop is counted rather than journaled each time).
        Err(refusal) => Err(refuse(&state, &who, &req, Some(&mission), refusal_error(&refusal))),
    }
}

async fn close_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(state, who, req, id.into_inner(), Control::Close).await
}

async fn pause_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(state, who, req, id.into_inner(), Control::Pause).await
}

async fn cancel_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(state, who, req, id.into_inner(), Control::Cancel).await
}

/// How often a mission's progress stream looks for a change.
const PROGRESS_POLL: Duration = Duration::from_secs(1);

/// One mission's progress as a stream of server-sent events: a `progress`
/// event (status, tasks, queue, spend) at once and whenever it changes.
/// Each look reads three records, whatever the mission's size, so many
/// watchers cost the server little.
async fn mission_events(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mission = id.into_inner();
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], Some(&mission))?;
    let data = state.data.clone();
    let first = {
        let (data, mission) = (data.clone(), mission.clone());
        blocking(move || progress(&data, &mission)).await?
    };
    let Some(first) = first else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("there is no mission `{mission}` here")));
    };
    let opening = format!("retry: 2000\nevent: progress\ndata: {first}\n\n");
    let stream = futures_util::stream::unfold(
        (Some(opening), first, data, mission),
        |(opening, last, data, mission)| async move {
            if let Some(opening) = opening {
                return Some((
                    Ok::<_, std::convert::Infallible>(web::Bytes::from(opening)),
                    (None, last, data, mission),
                ));
            }
            let mut waited = Duration::ZERO;
            loop {
                tokio::time::sleep(PROGRESS_POLL).await;
                waited += PROGRESS_POLL;
                let (d, m) = (data.clone(), mission.clone());
                let now = web::block(move || progress(&d, &m)).await.ok()?.ok()??;
                if now != last {
                    let event = format!("event: progress\ndata: {now}\n\n");
                    return Some((Ok(web::Bytes::from(event)), (None, now, data, mission)));
                }
                if waited >= PROGRESS_KEEPALIVE {
                    return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), (None, last, data, mission)));
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

/// A comment line on a quiet progress stream, so proxies keep it open.
const PROGRESS_KEEPALIVE: Duration = Duration::from_secs(15);

/// A mission's progress, as its stream sends it; `None`: no such mission.
fn progress(data: &engine::data::DataDir, mission: &str) -> Result<Option<Value>, ApiError> {
    let read = data.ledger.read().map_err(internal)?;
    let Some(record) = state::mission(&read, mission).map_err(internal)? else { return Ok(None) };
    let intake = intake::intake(&read, mission).map_err(internal)?;
    let account = data.ledger.account(mission).map_err(internal)?;
    Ok(Some(json!({
        "mission": mission, "status": record.status, "tasks": record.tasks_total,
        "settled": account.settled, "limit": account.limit.unwrap_or(record.budget_limit),
        "running_here": intake::running_here(mission),
        "intake": intake.map(|i| json!({"open": i.closed_seq.is_none(), "queued": i.queued, "received": i.received})),
    })))
}

async fn control(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    mission: String,
    action: Control,
) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator], Some(&mission))?;
    let by = who.requester();
    let (data, id) = (state.data.clone(), mission.clone());
    let done = blocking(move || intake::control(&data, &id, action, &by).map_err(internal)).await?;
    match done {
        Ok(seq) => {
            tracing::info!("serve: {:?} {} mission {mission}", who.requester(), action.as_str());
            Ok(HttpResponse::Ok().json(json!({"mission": mission, "action": action.as_str(), "seq": seq})))
        }
        Err(refusal) => Err(refuse(&state, &who, &req, Some(&mission), refusal_error(&refusal))),
    }
}

/// Resumes a paused mission (or one waiting for budget, once extended)
/// on this server; journaled as `mission.resumed` when it starts.
async fn resume_mission(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mission = id.into_inner();
    require(&state, &who, &req, &[Role::Operator], Some(&mission))?;
    let data = state.data.clone();
    let id = mission.clone();
    let record =
        blocking(move || state::mission(&data.ledger.read().map_err(internal)?, &id).map_err(internal)).await?;
    let refusal = match record {
        None => Some(Refusal::UnknownMission(mission.clone())),
        Some(_) if intake::running_here(&mission) => Some(Refusal::WrongState {
            mission: mission.clone(),
            status: "running here".into(),
            action: "resuming",
            needs: "a paused mission",
        }),
        Some(r) if !matches!(r.status, MissionStatus::Paused | MissionStatus::AwaitingBudget) => {
            Some(Refusal::WrongState {
                mission: mission.clone(),
                status: engine::summary::status_text(r.status).to_owned(),
                action: "resuming",
                needs: "a paused mission",
            })
        }
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        return Err(refuse(&state, &who, &req, Some(&mission), refusal_error(&refusal)));
    }
    state.jobs.lock().map_err(internal)?.send(Job::Resume(mission.clone())).map_err(internal)?;
    tracing::info!("serve: {:?} resumes mission {mission}", who.requester());
    Ok(HttpResponse::Accepted().json(json!({"mission": mission, "action": "resume"})))
}

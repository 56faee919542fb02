//! The operator's dashboard: its page (`/dashboard`, served from the
//! assets like the reviewer page, with the same sign-in) and the one API
//! it adds, `GET /api/missions/{id}/series`: spend against the budget over
//! time, reviewers' time to decision and the latest failures of one
//! mission, for operators and auditors (`engine::series`, which `mission
//! report --html` draws too). The page reads everything else from the
//! operator API (`operator.rs`).
//!
//! A series is read from the journal once and then kept up to date: the
//! server remembers each mission's series and how far it read, so a
//! dashboard polling every few seconds costs only the entries appended
//! since its last look.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use identity::Role;
use serde_json::json;

use engine::series::Series;
use engine::state::{self, MissionStatus};

use super::{ApiError, Signed, State, blocking, internal, require};

/// Journal entries one request reads at most: the first look at a long
/// mission after a restart answers with what it has (`complete: false`)
/// and the next request carries on, so no request holds a worker for
/// long. About a second of reading.
const SERIES_ENTRIES_PER_REQUEST_MAX: usize = 100_000;
/// Missions whose series the server keeps; past it, the one looked at
/// longest ago is dropped (and read again from its start if asked for).
/// Each is a few kilobytes plus its pending gates.
const SERIES_CACHED_MAX: usize = 64;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(super::asset)).route("/api/missions/{id}/series", web::get().to(series));
}

/// Each mission's series as far as it was read, shared by the server's
/// workers (one process serves one data directory).
static CACHE: LazyLock<Mutex<HashMap<String, Cached>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

struct Cached {
    series: Arc<Mutex<Series>>,
    used: Instant,
}

/// The series of `mission`, kept or new (reading from `from_seq`).
fn cached(mission: &str, from_seq: u64) -> Result<Arc<Mutex<Series>>, ApiError> {
    let mut cache = CACHE.lock().map_err(internal)?;
    if !cache.contains_key(mission) && cache.len() >= SERIES_CACHED_MAX {
        let oldest = cache.iter().min_by_key(|(_, c)| c.used).map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            cache.remove(&oldest);
        }
    }
    let entry = cache.entry(mission.to_owned()).or_insert_with(|| Cached {
        series: Arc::new(Mutex::new(Series::new(mission, from_seq))),
        used: Instant::now(),
    });
    entry.used = Instant::now();
    Ok(entry.series.clone())
}

async fn series(
    state: web::Data<State>,
    who: Signed,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], Some(&id))?;
    let data = state.data.clone();
    let body = blocking(move || {
        let record = state::mission(&data.ledger.read().map_err(internal)?, &id).map_err(internal)?;
        let Some(record) = record else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("there is no mission `{id}` here")));
        };
        let series = cached(&id, record.declared_seq)?;
        // One request reads a mission's new entries at a time; another
        // mission's request does not wait for it.
        let mut series = series.lock().map_err(internal)?;
        let complete = series.catch_up(&data.ledger, SERIES_ENTRIES_PER_REQUEST_MAX).map_err(internal)?;
        // A mission still at work is drawn up to now, so a flat stretch
        // reads as "nothing spent since", not as the end of the chart.
        let live = record.status == MissionStatus::Running || engine::intake::running_here(&id);
        let view = series.view(live.then(engine::clock::now_us));
        Ok(json!({"series": view, "complete": complete, "live": live}))
    })
    .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

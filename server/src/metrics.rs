//! `GET /metrics`: the conductor's metrics in the Prometheus text format,
//! for operators and auditors. Every metric, its type, labels and meaning
//! are listed in `docs/metrics.md`.
//!
//! Two kinds of metric, one exposition:
//! - **Recorded where things happen**, through the `metrics` facade, into
//!   the process's Prometheus recorder ([`install`]): the metered calls'
//!   budget units and latency (`engine::metering`), gate waits
//!   (`engine::gates`), the ledger's group-commit latency
//!   (`ledger::GroupCommitter`) and the gateway's answers (`gateway.rs`).
//!   Counters and histograms since this process started, as Prometheus
//!   expects of them (`rate()` handles the restart).
//! - **Read at scrape time** from the database, so they are right after a
//!   restart: tasks by status per mission, queue depth, live and parked
//!   cells, missions by status. One read transaction, one pass over each
//!   mission's task records; the result is kept until the journal's head
//!   moves (every task and mission change is journaled in the same
//!   transaction), so scraping an idle conductor reads nothing twice.
//!
//! **Why these crates.** `metrics` is a facade like `log`: the engine and
//! the ledger record through it without knowing who listens, and it costs
//! an atomic load when nobody does (the command line, tests).
//! `metrics-exporter-prometheus` is its maintained Prometheus recorder,
//! used here without its own HTTP listener or push gateway
//! (`default-features = false`): this server already serves HTTP, with
//! sign-in. `prometheus-client` would need a registry handed to every
//! crate that records, which the engine and the ledger should not know.
//!
//! **No case data.** Labels are mission ids and names (from the mission
//! file), model names (from the registry), gate names (from the mission
//! file), status names and HTTP status codes. Nothing of a case (its id,
//! input, the agents' outputs, a reviewer's note) is ever a label or a
//! value.
//!
//! **Who may read.** Operators (they run the host) and auditors (they
//! check it), signed in or with an API token that is not bound to one
//! mission (the metrics cover every mission). Anyone else known is
//! refused (403) and journaled like any refusal (`serve::require`);
//! nobody known, 401.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use identity::Role;
use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use engine::data::DataDir;
use engine::state::{self, MissionRecord, MissionStatus, StateError, TaskRecord, TaskStatus};

use crate::serve::{ApiError, Signed, State as ServerState, require};

/// What `GET /metrics` answers with: the text exposition format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples recorded since the last scrape are folded
/// into their buckets when nobody scrapes: the recorder keeps raw samples
/// until then, so this bounds its memory on a busy, unscraped server.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Model call latency buckets, seconds: a scripted or cached answer in
/// milliseconds, a small CPU model in seconds, up to the gateway's
/// 300-second call timeout.
const MODEL_CALL_BUCKETS_S: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Gate wait buckets, seconds: a reviewer at the page (a minute) to a
/// week-long deadline.
const GATE_WAIT_BUCKETS_S: &[f64] =
    &[1.0, 10.0, 60.0, 300.0, 900.0, 3_600.0, 14_400.0, 28_800.0, 86_400.0, 259_200.0, 604_800.0];
/// Group commit buckets, seconds: one fsync on an SSD (under a
/// millisecond) to a large batch on a slow disk.
const COMMIT_BUCKETS_S: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Gateway answers by HTTP `status`: a counter (recorded in `gateway.rs`).
pub(crate) const GATEWAY_REQUESTS_METRIC: &str = "conductor_gateway_requests_total";
/// Tasks per `mission` and `status`: a gauge read at scrape time.
pub(crate) const TASKS_METRIC: &str = "conductor_tasks";
/// Pending tasks (runnable, waiting for a cell) per `mission`.
pub(crate) const QUEUE_DEPTH_METRIC: &str = "conductor_queue_depth";
/// Running tasks, each in a live cell, per `mission`.
pub(crate) const CELLS_LIVE_METRIC: &str = "conductor_cells_live";
/// Parked tasks per `mission` and what they await (`review`, `children`).
pub(crate) const CELLS_PARKED_METRIC: &str = "conductor_cells_parked";
/// Missions per `status`.
pub(crate) const MISSIONS_METRIC: &str = "conductor_missions";
/// 1 per mission, labelled `mission` (its id) and `name`: how a mission
/// id in the other metrics is named (join on `mission`).
pub(crate) const MISSION_INFO_METRIC: &str = "conductor_mission_info";

/// The process's recorder, installed by the first [`install`].
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The scrape-time part of the last scrape, and the data directory and
/// journal head it was read at.
static STATE_CACHE: Mutex<Option<(PathBuf, u64, String)>> = Mutex::new(None);

/// `GET /metrics`, registered by `serve` on its app. Installs the
/// process's recorder if nothing has yet.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    install();
    cfg.route("/metrics", web::get().to(scrape));
}

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// once; later calls return the same handle. What is recorded before it
/// is installed is not kept, so a server calls this before it starts any
/// work. `None` if another recorder was installed first (logged): the
/// scrape-time metrics are still served.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| match builder().and_then(PrometheusBuilder::install_recorder) {
            Ok(handle) => {
                describe_recorded();
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
                if let Err(e) = spawned {
                    // Scrapes still fold the samples in, only later.
                    tracing::warn!("metrics: the upkeep thread did not start: {e}");
                }
                Some(handle)
            }
            Err(e) => {
                tracing::warn!("metrics: the Prometheus recorder could not be installed: {e}");
                None
            }
        })
        .as_ref()
}

/// The recorder's configuration: true Prometheus histograms (buckets,
/// not summaries) for every histogram the conductor records.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(engine::metering::MODEL_CALL_SECONDS_METRIC.into()),
            MODEL_CALL_BUCKETS_S,
        )?
        .set_buckets_for_metric(Matcher::Full(engine::gates::WAIT_SECONDS_METRIC.into()), GATE_WAIT_BUCKETS_S)?
        .set_buckets_for_metric(Matcher::Full(ledger::GroupCommitter::COMMIT_SECONDS_METRIC.into()), COMMIT_BUCKETS_S)
}

/// `# HELP` for the metrics recorded where things happen.
fn describe_recorded() {
    use engine::metering::{MODEL_CALL_SECONDS_METRIC, TOKENS_RESERVED_METRIC, TOKENS_SETTLED_METRIC};
    metrics::describe_counter!(
        TOKENS_RESERVED_METRIC,
        "Budget units reserved for paid model calls (each call's worst case), by mission (a gateway key's account \
         for gateway calls) and model."
    );
    metrics::describe_counter!(
        TOKENS_SETTLED_METRIC,
        "Budget units settled for answered model calls (what they cost), by mission (a gateway key's account for \
         gateway calls) and model."
    );
    metrics::describe_histogram!(
        MODEL_CALL_SECONDS_METRIC,
        Unit::Seconds,
        "Seconds from a paid model call's reservation to its answer, by model; answered calls only."
    );
    metrics::describe_histogram!(
        engine::gates::WAIT_SECONDS_METRIC,
        Unit::Seconds,
        "Seconds a gate waited from its request to its decision or timeout, by gate name and outcome."
    );
    metrics::describe_histogram!(
        ledger::GroupCommitter::COMMIT_SECONDS_METRIC,
        Unit::Seconds,
        "Seconds one group-committed journal transaction took, from its start to its durable commit."
    );
    metrics::describe_counter!(GATEWAY_REQUESTS_METRIC, "Answers of the OpenAI-compatible gateway, by HTTP status.");
}

/// Counts one gateway answer.
pub(crate) fn gateway_answered(status: StatusCode) {
    metrics::counter!(GATEWAY_REQUESTS_METRIC, "status" => status.as_str().to_owned()).increment(1);
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    /// The journal or its database could not be read.
    #[error("reading the journal: {0}")]
    Ledger(#[from] ledger::LedgerError),
    /// A mission or task record could not be read.
    #[error("reading the task records: {0}")]
    State(#[from] StateError),
}

async fn scrape(state: web::Data<ServerState>, who: Signed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require(&state, &who, &req, &[Role::Operator, Role::Auditor], None)?;
    let data = state.data.clone();
    let failed = |message: String| {
        tracing::error!("metrics: {message}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    };
    let body = web::block(move || render(&data))
        .await
        .map_err(|e| failed(format!("internal error: {e}")))?
        .map_err(|e| failed(format!("the metrics could not be read: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

/// The whole exposition: the recorded metrics, then the scrape-time
/// ones (their names differ, so each family appears once).
fn render(data: &DataDir) -> Result<String, ScrapeError> {
    let mut body = install().map(PrometheusHandle::render).unwrap_or_default();
    body.push_str(&state_metrics(data)?);
    Ok(body)
}

/// The scrape-time metrics, read again only when the journal has moved.
fn state_metrics(data: &DataDir) -> Result<String, ScrapeError> {
    // Read before the records: the records are then at least this new, so
    // a cache keyed by this head is never older than the head says.
    let (head, _) = data.ledger.head()?;
    let root = data.root.clone();
    let cached = |cache: &Option<(PathBuf, u64, String)>| match cache {
        Some((at, seen, text)) if *at == root && *seen == head => Some(text.clone()),
        _ => None,
    };
    if let Some(text) = cached(&STATE_CACHE.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(text);
    }
    let read = data.ledger.read()?;
    let mut counted = Vec::new();
    for mission in state::missions(&read)? {
        let tasks = state::tasks(&read, &mission.id)?;
        counted.push(MissionCounts::of(mission, &tasks));
    }
    let text = render_state(&counted);
    *STATE_CACHE.lock().unwrap_or_else(PoisonError::into_inner) = Some((root, head, text.clone()));
    Ok(text)
}

/// Every task status, each at its [`task_slot`].
const TASK_STATUSES: [TaskStatus; 7] = [
    TaskStatus::Pending,
    TaskStatus::Running,
    TaskStatus::AwaitingReview,
    TaskStatus::AwaitingChildren,
    TaskStatus::Decided,
    TaskStatus::Failed,
    TaskStatus::Skipped,
];

/// Where `status` is counted: exhaustive, so a new status cannot be
/// added without being counted.
fn task_slot(status: TaskStatus) -> usize {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Running => 1,
        TaskStatus::AwaitingReview => 2,
        TaskStatus::AwaitingChildren => 3,
        TaskStatus::Decided => 4,
        TaskStatus::Failed => 5,
        TaskStatus::Skipped => 6,
    }
}

/// Every mission status, each at its [`mission_slot`].
const MISSION_STATUSES: [MissionStatus; 8] = [
    MissionStatus::Running,
    MissionStatus::Completed,
    MissionStatus::CompletedWithFailures,
    MissionStatus::AwaitingReview,
    MissionStatus::BudgetExhausted,
    MissionStatus::Paused,
    MissionStatus::AwaitingBudget,
    MissionStatus::Cancelled,
];

fn mission_slot(status: MissionStatus) -> usize {
    match status {
        MissionStatus::Running => 0,
        MissionStatus::Completed => 1,
        MissionStatus::CompletedWithFailures => 2,
        MissionStatus::AwaitingReview => 3,
        MissionStatus::BudgetExhausted => 4,
        MissionStatus::Paused => 5,
        MissionStatus::AwaitingBudget => 6,
        MissionStatus::Cancelled => 7,
    }
}

/// A status as the API and the journal name it (`awaiting_review`), from
/// its serde name: one vocabulary.
fn status_name(status: impl serde::Serialize) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_owned(),
    }
}

/// One mission's task counts: its id, name and status, nothing of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MissionCounts {
    id: String,
    name: String,
    status: MissionStatus,
    /// Tasks by status, at [`task_slot`].
    tasks: [u64; TASK_STATUSES.len()],
}

impl MissionCounts {
    fn of(mission: MissionRecord, tasks: &[TaskRecord]) -> Self {
        let mut counts = [0u64; TASK_STATUSES.len()];
        for task in tasks {
            counts[task_slot(task.status)] += 1;
        }
        MissionCounts { id: mission.id, name: mission.name, status: mission.status, tasks: counts }
    }

    fn count(&self, status: TaskStatus) -> u64 {
        self.tasks[task_slot(status)]
    }
}

/// The scrape-time gauges, rendered by a recorder of their own: values
/// read now, not accumulated, so nothing of an earlier scrape lingers.
fn render_state(missions: &[MissionCounts]) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_gauge!(TASKS_METRIC, "Tasks by mission and status, read from the database.");
        metrics::describe_gauge!(QUEUE_DEPTH_METRIC, "Pending tasks (runnable, waiting for a cell) by mission.");
        metrics::describe_gauge!(CELLS_LIVE_METRIC, "Running tasks, each in a live cell, by mission.");
        metrics::describe_gauge!(
            CELLS_PARKED_METRIC,
            "Parked tasks (no cell held; resumed by replay) by mission and what they await: review or children."
        );
        metrics::describe_gauge!(MISSIONS_METRIC, "Missions by status.");
        metrics::describe_gauge!(MISSION_INFO_METRIC, "1 per mission: its id (`mission`) and name.");
        let mut by_status = [0u64; MISSION_STATUSES.len()];
        for m in missions {
            by_status[mission_slot(m.status)] += 1;
            let mission = || m.id.clone();
            metrics::gauge!(MISSION_INFO_METRIC, "mission" => mission(), "name" => m.name.clone()).set(1.0);
            for status in TASK_STATUSES {
                metrics::gauge!(TASKS_METRIC, "mission" => mission(), "status" => status_name(status))
                    .set(m.count(status) as f64);
            }
            metrics::gauge!(QUEUE_DEPTH_METRIC, "mission" => mission()).set(m.count(TaskStatus::Pending) as f64);
            metrics::gauge!(CELLS_LIVE_METRIC, "mission" => mission()).set(m.count(TaskStatus::Running) as f64);
            for (awaiting, status) in
                [("review", TaskStatus::AwaitingReview), ("children", TaskStatus::AwaitingChildren)]
            {
                metrics::gauge!(CELLS_PARKED_METRIC, "mission" => mission(), "awaiting" => awaiting)
                    .set(m.count(status) as f64);
            }
        }
        for status in MISSION_STATUSES {
            metrics::gauge!(MISSIONS_METRIC, "status" => status_name(status))
                .set(by_status[mission_slot(status)] as f64);
        }
    });
    recorder.handle().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mission(id: &str, name: &str, status: MissionStatus) -> MissionRecord {
        MissionRecord { id: id.into(), name: name.into(), status, budget_limit: 100, tasks_total: 0, declared_seq: 1 }
    }

    fn task(index: u32, case_id: &str, status: TaskStatus) -> TaskRecord {
        TaskRecord {
            mission: "m-1".into(),
            index,
            case_id: case_id.into(),
            agent: "worker".into(),
            status,
            outcome: Some("secret outcome".into()),
            reason: Some("secret reason".into()),
            decided_by: None,
            failure: None,
            gate: None,
            tokens_reserved: 0,
            tokens_settled: 0,
            model_calls: 0,
            spans: Vec::new(),
            parent: None,
            children: 0,
            delegation: None,
        }
    }

    /// The value of the one sample line `series` (name and labels as
    /// rendered) in `text`.
    fn sample(text: &str, series: &str) -> f64 {
        let values: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
            .collect();
        assert_eq!(values.len(), 1, "one sample {series} in:\n{text}");
        values[0]
    }

    #[test]
    fn every_status_is_counted_once_and_nothing_of_a_case_is_rendered() {
        let statuses = [
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::AwaitingReview,
            TaskStatus::AwaitingChildren,
            TaskStatus::AwaitingChildren,
            TaskStatus::Decided,
            TaskStatus::Decided,
            TaskStatus::Decided,
            TaskStatus::Failed,
        ];
        let tasks: Vec<TaskRecord> =
            statuses.iter().enumerate().map(|(i, s)| task(i as u32, &format!("case-{i}-private"), *s)).collect();
        let counted = vec![
            MissionCounts::of(mission("m-1", "claims \"north\"", MissionStatus::AwaitingReview), &tasks),
            MissionCounts::of(mission("m-2", "idle", MissionStatus::Completed), &[]),
        ];
        assert_eq!(counted[0].tasks.iter().sum::<u64>(), statuses.len() as u64);
        let text = render_state(&counted);
        for (status, n) in [
            ("pending", 2.0),
            ("running", 1.0),
            ("awaiting_review", 1.0),
            ("awaiting_children", 2.0),
            ("decided", 3.0),
            ("failed", 1.0),
            ("skipped", 0.0),
        ] {
            assert_eq!(sample(&text, &format!("conductor_tasks{{mission=\"m-1\",status=\"{status}\"}}")), n);
            assert_eq!(sample(&text, &format!("conductor_tasks{{mission=\"m-2\",status=\"{status}\"}}")), 0.0);
        }
        assert_eq!(sample(&text, "conductor_queue_depth{mission=\"m-1\"}"), 2.0);
        assert_eq!(sample(&text, "conductor_cells_live{mission=\"m-1\"}"), 1.0);
        assert_eq!(sample(&text, "conductor_cells_parked{mission=\"m-1\",awaiting=\"review\"}"), 1.0);
        assert_eq!(sample(&text, "conductor_cells_parked{mission=\"m-1\",awaiting=\"children\"}"), 2.0);
        assert_eq!(sample(&text, "conductor_missions{status=\"awaiting_review\"}"), 1.0);
        assert_eq!(sample(&text, "conductor_missions{status=\"completed\"}"), 1.0);
        assert_eq!(sample(&text, "conductor_missions{status=\"running\"}"), 0.0);
        // A name is escaped as the format says, not trusted to be plain.
        assert_eq!(sample(&text, "conductor_mission_info{mission=\"m-1\",name=\"claims \\\"north\\\"\"}"), 1.0);
        assert!(text.contains("# TYPE conductor_tasks gauge"), "{text}");
        assert!(text.contains("# HELP conductor_queue_depth "), "{text}");
        for private in ["case-", "private", "secret", "worker"] {
            assert!(!text.contains(private), "{private:?} leaked into:\n{text}");
        }
    }

    #[test]
    fn statuses_are_named_as_the_api_names_them() {
        for status in TASK_STATUSES {
            assert_eq!(TASK_STATUSES[task_slot(status)], status);
        }
        for status in MISSION_STATUSES {
            assert_eq!(MISSION_STATUSES[mission_slot(status)], status);
        }
        assert_eq!(status_name(TaskStatus::AwaitingChildren), "awaiting_children");
        assert_eq!(status_name(MissionStatus::CompletedWithFailures), "completed_with_failures");
    }
}

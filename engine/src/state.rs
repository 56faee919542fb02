//! The conductor's own projections of the journal: mission status, task
//! status and the gate queue. Each is written in the same transaction as
//! the journal entry that changes it.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// mission id -> [`MissionRecord`] (JSON).
const MISSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_missions");
/// "{mission id}/{task index:06}" -> [`TaskRecord`] (JSON).
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_tasks");
/// gate id -> [`GateRecord`] (JSON).
const GATES: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_gates");
/// delegation id -> [`DelegationRecord`] (JSON).
const DELEGATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_delegations");
/// "{mission id}/{task index:06}" of a child task -> [`ChildSpec`] (JSON).
const CHILDREN: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_children");

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("stored {what} `{key}` is corrupt: {reason}")]
    Corrupt { what: &'static str, key: String, reason: String },
}

fn storage<E: Into<redb::Error>>(e: E) -> StateError {
    StateError::Storage(e.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionStatus {
    Running,
    /// Every task ended and none failed.
    Completed,
    /// Every task ended, and at least one failed (`task.failed`): the
    /// mission did not do all its work, so it is not `completed`.
    CompletedWithFailures,
    AwaitingReview,
    BudgetExhausted,
    /// Out of budget under the `pause` policy; `conductor mission resume`.
    Paused,
    /// Out of budget under the `gate` policy: a reviewer approving its
    /// budget gate extends the budget and resumes the mission.
    AwaitingBudget,
    /// An operator cancelled it: what had not started was skipped
    /// (`task.skipped`, reason `cancelled`); it takes no more cases.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissionRecord {
    pub id: String,
    pub name: String,
    pub status: MissionStatus,
    /// The limit the mission was declared with; extensions raise the
    /// budget account's limit, which is the one in force.
    pub budget_limit: u64,
    pub tasks_total: u32,
    pub declared_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Decided,
    AwaitingReview,
    Failed,
    Skipped,
    /// Parked on its children (`delegate`): runnable again, replayed to
    /// the call, once the last of them ends.
    AwaitingChildren,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub mission: String,
    pub index: u32,
    pub case_id: String,
    pub agent: String,
    pub status: TaskStatus,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    /// Who made the final decision: "agent" or "reviewer:<key id>".
    pub decided_by: Option<String>,
    pub failure: Option<String>,
    pub gate: Option<String>,
    pub tokens_reserved: u64,
    pub tokens_settled: u64,
    pub model_calls: u32,
    /// Where the task's current attempt lies in the journal: one (first,
    /// last) entry span per stretch it ran. A park closes a span; a
    /// recovery or resume opens the next; an open span of a crashed run
    /// ends where the next begins (or at the journal's head). A resume
    /// reads just these spans, not the whole journal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<(u64, Option<u64>)>,
    /// A child task: its parent's index (see [`ChildSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// Children this task has started, in all its `delegate` calls.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub children: u32,
    /// The delegation the task is parked on, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One `delegate` call that was accepted: its children are the tasks
/// `first_child .. first_child + count` of the mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRecord {
    pub id: String,
    pub mission: String,
    /// The parent task's index and case.
    pub parent: u32,
    pub case_id: String,
    /// Its `task.delegated` entry.
    pub delegated_seq: u64,
    pub first_child: u32,
    pub count: u32,
    /// Children that have not ended yet.
    pub open: u32,
    /// Its `task.joined`, once every child has ended.
    pub joined_seq: Option<u64>,
}

/// What a child task is to run, kept from its parent's `delegate` call
/// until it ends (and its result, once it has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildSpec {
    pub delegation: String,
    pub parent: u32,
    /// The case's own (entry) task at the root of the tree: the child
    /// inherits its data tier and failover.
    pub root: u32,
    pub depth: u32,
    pub agent: String,
    /// The input exactly as the parent's agent sent it (a JSON object).
    pub input: String,
    /// The limit of the child's budget account.
    pub budget: Option<u64>,
    /// How the child ended, for its parent's `task.joined`.
    pub result: Option<crate::entries::ChildResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    Pending,
    Approved,
    Rejected,
    /// Nobody decided before the deadline (its own outcome, never a
    /// rejection or an approval).
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub id: String,
    pub gate: String,
    pub mission: String,
    pub task: u32,
    pub case_id: String,
    pub status: GateStatus,
    pub proposed_outcome: String,
    pub proposed_reason: String,
    pub proposed_details: serde_json::Value,
    pub reviewer: Option<String>,
    pub note: Option<String>,
    pub requested_seq: u64,
    /// The agent is waiting on this gate (`await-review`): deciding it
    /// makes the task runnable again rather than final.
    #[serde(default)]
    pub parked: bool,
    /// The `gate.decided` entry, once decided.
    #[serde(default)]
    pub decided_seq: Option<u64>,
    /// Key ids that may decide (empty: any registered reviewer).
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Approvals needed (n of m); one rejection decides.
    #[serde(default = "quorum_of_one")]
    pub quorum: u32,
    /// Approvals so far, before the quorum was reached.
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// The gate's clock, when its mission gives it a deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<GateDeadline>,
    /// A budget gate (the mission ran out under `on_exhausted: gate`):
    /// approving it extends `account`. Such a gate belongs to the mission,
    /// not a task: `task` is [`MISSION_GATE_TASK`] and `case_id` empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetAsk>,
    /// What the decision may say (the mission's `decisions:`), copied when
    /// the gate is requested; `None` for gates recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_rules: Option<crate::decisions::DecisionRules>,
}

/// The `task` of a gate that belongs to a whole mission (a budget gate).
pub const MISSION_GATE_TASK: u32 = u32::MAX;

/// What a budget gate asks reviewers for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAsk {
    /// The mission's root account.
    pub account: String,
    /// Budget units asked for; the approving reviewer may grant another amount.
    pub amount: u64,
}

/// A gate's deadline and what happens at it (see `gates::sweep`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDeadline {
    /// The policy's time limit, for an escalation's fresh deadline.
    pub after_us: i64,
    /// When the current reviewers' time runs out (Unix µs).
    pub due_us: i64,
    /// "deny", "approve" or "escalate".
    pub on_timeout: String,
    /// Key ids that take over on escalation.
    pub escalate_to: Vec<String>,
    pub remind_before_us: Option<i64>,
    pub remind_at_us: Option<i64>,
    pub reminded: bool,
    pub escalated: bool,
}

/// One reviewer's approval on the way to a quorum (a `gate.voted` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub reviewer: String,
    pub seq: u64,
    /// Edits this reviewer made to the proposal: field -> new value.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub edits: serde_json::Map<String, serde_json::Value>,
}

/// Gates recorded before quorums existed needed one approval.
fn quorum_of_one() -> u32 {
    1
}

pub fn create_tables(txn: &WriteTransaction) -> Result<(), StateError> {
    txn.open_table(MISSIONS).map_err(storage)?;
    txn.open_table(TASKS).map_err(storage)?;
    txn.open_table(GATES).map_err(storage)?;
    txn.open_table(DELEGATIONS).map_err(storage)?;
    txn.open_table(CHILDREN).map_err(storage)?;
    Ok(())
}

fn task_key(mission: &str, index: u32) -> String {
    format!("{mission}/{index:06}")
}

fn put<T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StateError::Corrupt {
        what: "record",
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    txn.open_table(table).map_err(storage)?.insert(key, bytes.as_slice()).map_err(storage)?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt { what, key: key.to_owned(), reason: e.to_string() })
}

pub fn put_mission(txn: &WriteTransaction, m: &MissionRecord) -> Result<(), StateError> {
    put(txn, MISSIONS, &m.id, m)
}

pub fn put_task(txn: &WriteTransaction, t: &TaskRecord) -> Result<(), StateError> {
    put(txn, TASKS, &task_key(&t.mission, t.index), t)
}

pub fn put_gate(txn: &WriteTransaction, g: &GateRecord) -> Result<(), StateError> {
    put(txn, GATES, &g.id, g)
}

pub fn put_delegation(txn: &WriteTransaction, d: &DelegationRecord) -> Result<(), StateError> {
    put(txn, DELEGATIONS, &d.id, d)
}

pub fn put_child(txn: &WriteTransaction, mission: &str, index: u32, c: &ChildSpec) -> Result<(), StateError> {
    put(txn, CHILDREN, &task_key(mission, index), c)
}

pub fn delegation_in(txn: &WriteTransaction, id: &str) -> Result<Option<DelegationRecord>, StateError> {
    let table = txn.open_table(DELEGATIONS).map_err(storage)?;
    let value = table.get(id).map_err(storage)?;
    value.map(|v| decode("delegation", id, v.value())).transpose()
}

pub fn child_in(txn: &WriteTransaction, mission: &str, index: u32) -> Result<Option<ChildSpec>, StateError> {
    let key = task_key(mission, index);
    let table = txn.open_table(CHILDREN).map_err(storage)?;
    let value = table.get(key.as_str()).map_err(storage)?;
    value.map(|v| decode("child", &key, v.value())).transpose()
}

/// One delegation, by id.
pub fn delegation(txn: &ReadTransaction, id: &str) -> Result<Option<DelegationRecord>, StateError> {
    one(txn, DELEGATIONS, "delegation", id)
}

/// What a child task runs.
pub fn child(txn: &ReadTransaction, mission: &str, index: u32) -> Result<Option<ChildSpec>, StateError> {
    one(txn, CHILDREN, "child", &task_key(mission, index))
}

/// Reads inside a write transaction (for read-modify-write).
pub fn task_in(txn: &WriteTransaction, mission: &str, index: u32) -> Result<Option<TaskRecord>, StateError> {
    let key = task_key(mission, index);
    let table = txn.open_table(TASKS).map_err(storage)?;
    let value = table.get(key.as_str()).map_err(storage)?;
    value.map(|v| decode("task", &key, v.value())).transpose()
}

pub fn gate_in(txn: &WriteTransaction, id: &str) -> Result<Option<GateRecord>, StateError> {
    let table = txn.open_table(GATES).map_err(storage)?;
    let value = table.get(id).map_err(storage)?;
    value.map(|v| decode("gate", id, v.value())).transpose()
}

pub fn mission_in(txn: &WriteTransaction, id: &str) -> Result<Option<MissionRecord>, StateError> {
    let table = txn.open_table(MISSIONS).map_err(storage)?;
    let value = table.get(id).map_err(storage)?;
    value.map(|v| decode("mission", id, v.value())).transpose()
}

/// Every task of a mission, in index order.
pub fn tasks_in(txn: &WriteTransaction, mission: &str) -> Result<Vec<TaskRecord>, StateError> {
    let table = txn.open_table(TASKS).map_err(storage)?;
    collect_prefix(&table, mission)
}

pub fn tasks(txn: &ReadTransaction, mission: &str) -> Result<Vec<TaskRecord>, StateError> {
    let table = txn.open_table(TASKS).map_err(storage)?;
    collect_prefix(&table, mission)
}

fn collect_prefix(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    mission: &str,
) -> Result<Vec<TaskRecord>, StateError> {
    let start = format!("{mission}/");
    let end = format!("{mission}0"); // '0' sorts right after '/'
    let mut out = Vec::new();
    for row in table.range(start.as_str()..end.as_str()).map_err(storage)? {
        let (key, value) = row.map_err(storage)?;
        out.push(decode("task", key.value(), value.value())?);
    }
    Ok(out)
}

pub fn mission(txn: &ReadTransaction, id: &str) -> Result<Option<MissionRecord>, StateError> {
    one(txn, MISSIONS, "mission", id)
}

/// One task of a mission.
pub fn task(txn: &ReadTransaction, mission: &str, index: u32) -> Result<Option<TaskRecord>, StateError> {
    one(txn, TASKS, "task", &task_key(mission, index))
}

/// The record of `table` at `key`, if any.
fn one<T: for<'de> Deserialize<'de>>(
    txn: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    what: &'static str,
    key: &str,
) -> Result<Option<T>, StateError> {
    let table = txn.open_table(table).map_err(storage)?;
    let value = table.get(key).map_err(storage)?;
    value.map(|v| decode(what, key, v.value())).transpose()
}

/// Every mission, in id order.
pub fn missions(txn: &ReadTransaction) -> Result<Vec<MissionRecord>, StateError> {
    all(txn, MISSIONS, "mission")
}

/// One gate, by id.
pub fn gate(txn: &ReadTransaction, id: &str) -> Result<Option<GateRecord>, StateError> {
    one(txn, GATES, "gate", id)
}

/// Every gate, in id order.
pub fn gates(txn: &ReadTransaction) -> Result<Vec<GateRecord>, StateError> {
    all(txn, GATES, "gate")
}

/// A mission's pending budget gate, read inside a write transaction.
pub fn pending_budget_gate_in(txn: &WriteTransaction, mission: &str) -> Result<Option<GateRecord>, StateError> {
    let table = txn.open_table(GATES).map_err(storage)?;
    for row in table.iter().map_err(storage)? {
        let (key, value) = row.map_err(storage)?;
        let gate: GateRecord = decode("gate", key.value(), value.value())?;
        if gate.mission == mission && gate.budget.is_some() && gate.status == GateStatus::Pending {
            return Ok(Some(gate));
        }
    }
    Ok(None)
}

/// Every record of `table`, in key order.
fn all<T: for<'de> Deserialize<'de>>(
    txn: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    what: &'static str,
) -> Result<Vec<T>, StateError> {
    let table = txn.open_table(table).map_err(storage)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(storage)? {
        let (key, value) = row.map_err(storage)?;
        out.push(decode(what, key.value(), value.value())?);
    }
    Ok(out)
}

/// The mission's status once no task is running, from its tasks.
pub fn settle_status(tasks: &[TaskRecord], budget_exhausted: bool) -> MissionStatus {
    if budget_exhausted {
        MissionStatus::BudgetExhausted
    } else if tasks.iter().any(|t| t.status == TaskStatus::AwaitingReview) {
        MissionStatus::AwaitingReview
    } else if tasks.iter().any(|t| matches!(t.status, TaskStatus::Pending | TaskStatus::AwaitingChildren)) {
        // A parked task whose gate was decided waits for `mission resume`.
        MissionStatus::Paused
    } else if tasks.iter().any(|t| t.status == TaskStatus::Failed) {
        MissionStatus::CompletedWithFailures
    } else {
        MissionStatus::Completed
    }
}

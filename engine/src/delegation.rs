//! Delegation: a task asks other agents of its mission to handle
//! sub-tasks, and gets their decisions back.
//!
//! The shape follows parking on a reviewer (`await-review`), because the
//! parent must hold nothing while it waits:
//!
//! 1. The parent's `delegate` call is checked (who it may call, the
//!    mission's `delegation:` limits, input sizes, budget caps) before
//!    anything is spent; a refusal is one `task.delegated` entry with
//!    `refused`, and the agent gets the reason.
//! 2. An accepted call is one durable commit: `task.delegated` (signed by
//!    the parent's agent), a budget account per child under the parent
//!    task's account, a pending record per child (task indices after the
//!    mission's others), and the parent's `task.parked`. The parent's
//!    cell then stops; the children are queued like any task, each in its
//!    own cell with its own agent's key.
//! 3. Each child's end (`task.decided`, `task.failed`, `task.skipped`) is
//!    recorded on its [`ChildSpec`]; the last one's commit also writes
//!    `task.joined` with every child's result, and makes the parent
//!    pending again.
//! 4. The parent is resumed by replay: its `delegate` call is answered
//!    from `task.joined` (`replay::attempts` attaches it to the call), and
//!    it carries on live.
//!
//! Budget: a child's account hangs under its parent task's account, so
//! every reservation a child makes is also held on the parent task, the
//! parent's agent and the mission: the children together can never spend
//! more than the parent had left. A child's own cap is the request's
//! `budget`, else its agent's `task_limit`, whichever is lower.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cells::{DelegateAnswer, Delegation, DelegationError};
use identity::Keypair;
use ledger::LedgerError;
use serde_json::Value;

use crate::clock::now_us;
use crate::entries::{self, ChildResult, DelegatedChild, TaskDelegated, TaskJoined, TaskParked};
use crate::host::TaskHost;
use crate::run::projection;
use crate::state::{self, ChildSpec, DelegationRecord, TaskRecord, TaskStatus};

/// Who may delegate to whom, and within what limits (from the mission).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Agent name → the agents it may delegate to.
    delegates_to: BTreeMap<String, Vec<String>>,
    /// Agent name → its `task_limit`.
    task_limits: BTreeMap<String, Option<u64>>,
    pub limits: missions::Delegation,
}

impl Policy {
    pub fn of(mission: &missions::Mission) -> Policy {
        Policy {
            delegates_to: mission.agents.iter().map(|a| (a.name.clone(), a.delegates_to.clone())).collect(),
            task_limits: mission.agents.iter().map(|a| (a.name.clone(), a.budget.task_limit)).collect(),
            limits: mission.delegation,
        }
    }
}

/// The requests as `task.delegated` records them (before any task exists):
/// what a replay compares the re-run's call with.
pub fn requested(requests: &[Delegation]) -> Vec<DelegatedChild> {
    requests
        .iter()
        .map(|r| DelegatedChild {
            agent: r.agent.clone(),
            input_blake3: blake3::hash(r.input.as_bytes()).to_hex().to_string(),
            cap: r.budget,
            task: None,
            budget: None,
        })
        .collect()
}

/// Why a call is refused before anything is spent, or `None`.
fn refusal(host: &TaskHost, parent: &TaskRecord, requests: &[Delegation]) -> Option<String> {
    let policy = &host.ctx.delegation;
    let limits = &policy.limits;
    let allowed = policy.delegates_to.get(&host.agent).map(Vec::as_slice).unwrap_or_default();
    if requests.is_empty() {
        return Some("a delegate call needs at least one request".into());
    }
    if requests.len() > limits.fan_out as usize {
        return Some(format!(
            "{} requests in one call; the mission allows {} (`delegation.fan_out`)",
            requests.len(),
            limits.fan_out
        ));
    }
    let depth = host.depth + 1;
    if depth > limits.depth {
        return Some(format!(
            "the children would be {depth} delegations deep; the mission allows {} (`delegation.depth`)",
            limits.depth
        ));
    }
    let total = u64::from(parent.children) + requests.len() as u64;
    if total > u64::from(limits.children_per_task) {
        return Some(format!(
            "this task would have {total} children; the mission allows {} per task (`delegation.children_per_task`)",
            limits.children_per_task
        ));
    }
    for (i, r) in requests.iter().enumerate() {
        if !allowed.iter().any(|a| a == &r.agent) {
            return Some(if allowed.is_empty() {
                format!("agent `{}` may not delegate (its `delegates_to` is empty)", host.agent)
            } else {
                format!(
                    "request {i}: agent `{}` is not among those `{}` may delegate to ({})",
                    r.agent,
                    host.agent,
                    allowed.join(", ")
                )
            });
        }
        if r.input.len() as u64 > limits.input_bytes {
            return Some(format!(
                "request {i}: the input is {} bytes; the mission allows {} (`delegation.input_bytes`)",
                r.input.len(),
                limits.input_bytes
            ));
        }
        match serde_json::from_str::<Value>(&r.input) {
            Ok(Value::Object(_)) => {}
            _ => return Some(format!("request {i}: the input must be a JSON object, as text")),
        }
        if r.budget == Some(0) {
            return Some(format!("request {i}: a budget of 0 could pay for nothing"));
        }
    }
    None
}

/// What a reservation on `account` could take now: the least any account
/// on its path to the root still allows (`None`: no limit anywhere).
fn available(ledger: &ledger::Ledger, account: &str) -> Result<Option<u64>, LedgerError> {
    let mut least: Option<u64> = None;
    let mut next = Some(account.to_owned());
    while let Some(name) = next {
        let a = ledger.account(&name)?;
        if let Some(left) = a.available() {
            least = Some(least.map_or(left, |l| l.min(left)));
        }
        next = a.parent;
    }
    Ok(least)
}

/// The parent's `delegate` call, live: refused (journaled), or the
/// children created and the parent parked.
pub(crate) fn delegate(host: &TaskHost, requests: Vec<Delegation>) -> DelegateAnswer {
    let ctx = host.ctx.clone();
    let parent = match ctx.ledger.read().map_err(anyhow::Error::from).and_then(|r| {
        state::task(&r, &ctx.id, host.task)?.ok_or_else(|| anyhow::anyhow!("task {} has no record", host.task))
    }) {
        Ok(record) => record,
        Err(e) => return DelegateAnswer::Refused(host.unrecorded("task.delegated (reading the task)", e)),
    };
    let mut refused = refusal(host, &parent, &requests);
    // A cap above what the parent has left is refused, not silently
    // lowered: the agent asked for something it cannot have.
    if refused.is_none() {
        match available(&ctx.ledger, &host.account) {
            Ok(Some(left)) => {
                if let Some((i, cap)) =
                    requests.iter().enumerate().find_map(|(i, r)| r.budget.filter(|c| *c > left).map(|c| (i, c)))
                {
                    refused = Some(format!("request {i}: a budget of {cap}, but this task has {left} left"));
                }
            }
            Ok(None) => {}
            Err(e) => return DelegateAnswer::Refused(host.unrecorded("task.delegated (reading the budget)", e)),
        }
    }
    let depth = host.depth + 1;
    if let Some(reason) = refused {
        let payload = TaskDelegated {
            mission: ctx.id.clone(),
            task: host.task,
            case: host.case_id.clone(),
            delegation: None,
            depth,
            children: requested(&requests),
            refused: Some(reason.clone()),
        };
        return match ctx.ledger.write_deferred(|t| entries::append(t, &host.agent_key, &payload, now_us())) {
            Ok(_) => DelegateAnswer::Refused(reason),
            Err(e) => DelegateAnswer::Refused(host.unrecorded("refused task.delegated", e)),
        };
    }
    let delegation = uuid::Uuid::new_v4().to_string();
    let create = Create {
        mission: ctx.id.clone(),
        parent: host.task,
        case_id: host.case_id.clone(),
        parent_account: host.account.clone(),
        root: host.root,
        depth,
        delegation: delegation.clone(),
        requests: requests.clone(),
        task_limits: requests.iter().map(|r| ctx.delegation.task_limits.get(&r.agent).copied().flatten()).collect(),
        agent_key: host.agent_key.clone(),
        conductor: ctx.conductor.clone(),
        spent: (
            host.meter.reserved.load(Ordering::Relaxed),
            host.meter.settled.load(Ordering::Relaxed),
            host.meter.model_calls.load(Ordering::Relaxed),
        ),
    };
    let create = Arc::new(create);
    let children = crate::data::commit(&ctx.committer, move |t| create.write(t));
    match children {
        Ok(children) => {
            if let Ok(mut slot) = host.meter.delegated.lock() {
                *slot = Some(delegation.clone());
            }
            for child in children {
                ctx.wake(child, false);
            }
            DelegateAnswer::Park { delegation }
        }
        Err(e) => DelegateAnswer::Refused(host.unrecorded("task.delegated", e)),
    }
}

/// Everything an accepted call's commit writes, owned, so the group
/// committer can run it (again, if its batch was interrupted).
#[derive(Debug)]
struct Create {
    mission: String,
    parent: u32,
    case_id: String,
    parent_account: String,
    root: u32,
    depth: u32,
    delegation: String,
    requests: Vec<Delegation>,
    /// Each request's agent's `task_limit`.
    task_limits: Vec<Option<u64>>,
    agent_key: Arc<Keypair>,
    conductor: Arc<Keypair>,
    /// The parent's (reserved, settled, model calls) so far.
    spent: (u64, u64, u32),
}

impl Create {
    /// Returns the children's task indices.
    fn write(&self, t: &mut ledger::Txn) -> Result<Vec<u32>, LedgerError> {
        let now = now_us();
        let corrupt = |what: String| LedgerError::Storage(redb::Error::Corrupted(what));
        let mut mission = state::mission_in(t.redb(), &self.mission)
            .map_err(projection)?
            .ok_or_else(|| corrupt(format!("mission {} has no record", self.mission)))?;
        let mut parent = state::task_in(t.redb(), &self.mission, self.parent)
            .map_err(projection)?
            .ok_or_else(|| corrupt(format!("task {} has no record", self.parent)))?;
        let count = u32::try_from(self.requests.len()).map_err(|_| corrupt("too many children".into()))?;
        let first = mission.tasks_total;
        mission.tasks_total = first.checked_add(count).ok_or_else(|| corrupt("task indices ran out".into()))?;
        let mut children = requested(&self.requests);
        for (i, child) in children.iter_mut().enumerate() {
            child.task = Some(first + i as u32);
            child.budget = match (child.cap, self.task_limits[i]) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let delegated = TaskDelegated {
            mission: self.mission.clone(),
            task: self.parent,
            case: self.case_id.clone(),
            delegation: Some(self.delegation.clone()),
            depth: self.depth,
            children: children.clone(),
            refused: None,
        };
        let (delegated_seq, _) = entries::append(t, &self.agent_key, &delegated, now)?;
        let parked = TaskParked {
            mission: self.mission.clone(),
            task: self.parent,
            case: self.case_id.clone(),
            gate_id: None,
            delegation: Some(self.delegation.clone()),
        };
        let (parked_seq, _) = entries::append(t, &self.conductor, &parked, now)?;
        let root_case = self.case_id.split('/').next().unwrap_or(&self.case_id).to_owned();
        for (child, request) in children.iter().zip(&self.requests) {
            let index = child.task.unwrap_or_default();
            let account = crate::run::task_account(&self.mission, &request.agent, index);
            t.open_account(&self.conductor, &account, Some(&self.parent_account), child.budget, now)?;
            let spec = ChildSpec {
                delegation: self.delegation.clone(),
                parent: self.parent,
                root: self.root,
                depth: self.depth,
                agent: request.agent.clone(),
                input: request.input.clone(),
                budget: child.budget,
                result: None,
            };
            state::put_child(t.redb(), &self.mission, index, &spec).map_err(projection)?;
            let mut record = crate::run::new_task(
                &self.mission,
                index,
                &format!("{root_case}/{}-{index}", request.agent),
                &request.agent,
            );
            record.parent = Some(self.parent);
            state::put_task(t.redb(), &record).map_err(projection)?;
        }
        state::put_delegation(
            t.redb(),
            &DelegationRecord {
                id: self.delegation.clone(),
                mission: self.mission.clone(),
                parent: self.parent,
                case_id: self.case_id.clone(),
                delegated_seq,
                first_child: first,
                count,
                open: count,
                joined_seq: None,
            },
        )
        .map_err(projection)?;
        state::put_mission(t.redb(), &mission).map_err(projection)?;
        parent.status = TaskStatus::AwaitingChildren;
        parent.delegation = Some(self.delegation.clone());
        parent.children = parent.children.saturating_add(count);
        (parent.tokens_reserved, parent.tokens_settled, parent.model_calls) = self.spent;
        if let Some(open) = parent.spans.last_mut() {
            open.1 = Some(parked_seq);
        }
        state::put_task(t.redb(), &parent).map_err(projection)?;
        Ok((first..first + count).collect())
    }
}

/// How a child ended, as its parent will learn it.
pub fn result_of(record: &TaskRecord, details: Option<Value>, code: Option<&str>) -> ChildResult {
    let status = match record.status {
        TaskStatus::Decided => "decided",
        TaskStatus::Skipped => "skipped",
        _ => "failed",
    };
    let decided = record.status == TaskStatus::Decided;
    ChildResult {
        task: record.index,
        agent: record.agent.clone(),
        status: status.to_owned(),
        outcome: if decided { record.outcome.clone() } else { None },
        reason: if decided { Some(record.reason.clone().unwrap_or_default()) } else { None },
        details: if decided { Some(details.unwrap_or_else(|| Value::Object(Default::default()))) } else { None },
        code: if decided { None } else { Some(code.unwrap_or("failed").to_owned()) },
        message: if decided { None } else { Some(record.failure.clone().unwrap_or_default()) },
    }
}

/// Records that a child task ended (in the transaction that journaled its
/// end). When it was its delegation's last open child, journals
/// `task.joined` and makes the parent pending; returns the parent's index
/// then, to be queued once this commits. A task that is no child: `None`.
pub(crate) fn child_ended(
    t: &mut ledger::Txn,
    conductor: &Keypair,
    record: &TaskRecord,
    result: ChildResult,
) -> Result<Option<u32>, LedgerError> {
    if record.parent.is_none() {
        return Ok(None);
    }
    let corrupt = |what: String| LedgerError::Storage(redb::Error::Corrupted(what));
    let mission = record.mission.as_str();
    let mut spec = state::child_in(t.redb(), mission, record.index)
        .map_err(projection)?
        .ok_or_else(|| corrupt(format!("child task {} has no spec", record.index)))?;
    spec.result = Some(result);
    state::put_child(t.redb(), mission, record.index, &spec).map_err(projection)?;
    let mut delegation = state::delegation_in(t.redb(), &spec.delegation)
        .map_err(projection)?
        .ok_or_else(|| corrupt(format!("delegation {} has no record", spec.delegation)))?;
    delegation.open = delegation.open.saturating_sub(1);
    if delegation.open > 0 {
        state::put_delegation(t.redb(), &delegation).map_err(projection)?;
        return Ok(None);
    }
    let mut results = Vec::with_capacity(delegation.count as usize);
    for index in delegation.first_child..delegation.first_child + delegation.count {
        let child = state::child_in(t.redb(), mission, index).map_err(projection)?;
        let result = child
            .and_then(|c| c.result)
            .ok_or_else(|| corrupt(format!("delegation {}: child {index} has no result", delegation.id)))?;
        results.push(result);
    }
    let joined = TaskJoined {
        mission: mission.to_owned(),
        task: delegation.parent,
        case: delegation.case_id.clone(),
        delegation: delegation.id.clone(),
        delegated_seq: delegation.delegated_seq,
        results,
    };
    let (seq, _) = entries::append(t, conductor, &joined, now_us())?;
    delegation.joined_seq = Some(seq);
    state::put_delegation(t.redb(), &delegation).map_err(projection)?;
    if let Some(mut parent) = state::task_in(t.redb(), mission, delegation.parent).map_err(projection)? {
        parent.status = TaskStatus::Pending;
        state::put_task(t.redb(), &parent).map_err(projection)?;
    }
    // Decided outside a run (a reviewer deciding a gated child): the
    // mission waits for `mission resume`, which `gates approve` runs.
    if let Some(mut m) = state::mission_in(t.redb(), mission).map_err(projection)?
        && m.status == state::MissionStatus::AwaitingReview
    {
        m.status = state::MissionStatus::Paused;
        state::put_mission(t.redb(), &m).map_err(projection)?;
    }
    Ok(Some(delegation.parent))
}

/// What the parent's `delegate` call returns, from its `task.joined`.
pub fn answers(joined: &TaskJoined) -> Vec<Result<cells::Decision, DelegationError>> {
    joined
        .results
        .iter()
        .map(|r| match r.status.as_str() {
            "decided" => Ok(cells::Decision {
                outcome: r.outcome.clone().unwrap_or_default(),
                reason: r.reason.clone().unwrap_or_default(),
                details: r.details.as_ref().map_or_else(|| "{}".to_owned(), Value::to_string),
            }),
            status => Err(error_of(status, r.code.as_deref().unwrap_or(""), r.message.clone().unwrap_or_default())),
        })
        .collect()
}

/// The typed error an agent gets for a child that did not decide.
fn error_of(status: &str, code: &str, message: String) -> DelegationError {
    if status == "skipped" || code.contains("budget") {
        return DelegationError::Budget(message);
    }
    match code {
        "wall_clock_exceeded" => DelegationError::TimedOut(message),
        "decision_refused" | "journal_refused" => DelegationError::Refused(message),
        _ => DelegationError::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: TaskStatus) -> TaskRecord {
        let mut r = crate::run::new_task("m", 7, "c/x-7", "x");
        r.status = status;
        r.parent = Some(1);
        r
    }

    #[test]
    fn a_decided_child_answers_with_its_decision_and_others_with_typed_errors() {
        let mut decided = record(TaskStatus::Decided);
        decided.outcome = Some("ok".into());
        decided.reason = Some("fine".into());
        let mut failed = record(TaskStatus::Failed);
        failed.failure = Some("ran out of time".into());
        let skipped = record(TaskStatus::Skipped);
        let joined = TaskJoined {
            mission: "m".into(),
            task: 1,
            case: "c".into(),
            delegation: "d".into(),
            delegated_seq: 3,
            results: vec![
                result_of(&decided, Some(serde_json::json!({"n": 1})), None),
                result_of(&failed, None, Some("wall_clock_exceeded")),
                result_of(&failed, None, Some("trap")),
                result_of(&failed, None, Some("decision_refused")),
                result_of(&skipped, None, Some("budget_exhausted")),
            ],
        };
        let got = answers(&joined);
        assert_eq!(
            got[0],
            Ok(cells::Decision { outcome: "ok".into(), reason: "fine".into(), details: r#"{"n":1}"#.into() })
        );
        assert_eq!(got[1], Err(DelegationError::TimedOut("ran out of time".into())));
        assert_eq!(got[2], Err(DelegationError::Failed("ran out of time".into())));
        assert_eq!(got[3], Err(DelegationError::Refused("ran out of time".into())));
        assert!(matches!(got[4], Err(DelegationError::Budget(_))));
    }
}

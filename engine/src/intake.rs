//! Open missions: cases that arrive while a mission runs.
//!
//! A mission that declares `intake:` stays open after its own cases: new
//! ones arrive through the API, `conductor cases add` or a watched inbox,
//! and each is **acknowledged only once it is durable**: its
//! `case.received` entry (signed by the conductor, naming who submitted
//! it and its documents' hashes), its pending task record and its queue
//! slot are one group commit. A crash after that commit loses nothing (the
//! task is pending, and the mission's next run starts it); a crash before
//! it leaves nothing behind, and the submitter, unanswered, sends again.
//! An idempotency key makes that retry safe: the same key is answered with
//! the case it first created.
//!
//! The queue is the mission's received cases not yet started; past the
//! mission's `intake.queue` a submission is refused whole ([`Refusal::QueueFull`],
//! HTTP 429), so callers slow down rather than the host filling up.
//!
//! A running mission listens at its [`Door`]: a received case is knocked
//! on it after its commit, and a close or pause is too. Nothing depends
//! on the knock arriving: a mission that is not running here finds the
//! pending tasks when it next runs, and a close makes the running mission
//! read the queue from the database before it finishes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use anyhow::{Context, Result};
use ledger::LedgerError;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_us;
use crate::data::DataDir;
use crate::entries::{self, DocumentRef, Requester};
use crate::state::{self, MissionStatus, TaskRecord, TaskStatus};

/// mission id -> [`IntakeRecord`] (JSON), for open missions only.
const INTAKE: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_intake");
/// "{mission}/{task:06}" -> [`ReceivedCase`] (JSON).
const RECEIVED: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_received");
/// "{mission}/{task:06}" of a received case not yet started.
const QUEUED: TableDefinition<&str, ()> = TableDefinition::new("conductor_queued");
/// "{mission}\0{idempotency key}" -> task index.
const KEYS: TableDefinition<&str, u32> = TableDefinition::new("conductor_intake_keys");
/// "{mission}\0{case id}" -> task index: case ids are unique in a mission.
const CASE_IDS: TableDefinition<&str, u32> = TableDefinition::new("conductor_case_ids");

/// Cases in one submission: a batch is one commit, all or nothing.
pub const CASES_PER_SUBMISSION_MAX: usize = 1000;
/// A case id: short, printable, the same alphabet as file names.
pub const CASE_ID_LEN_MAX: usize = 128;
/// An idempotency key (a UUID or a caller's own reference).
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;
/// A case's input as JSON text: the size of a case file.
pub const CASE_INPUT_BYTES_MAX: usize = missions::MAX_CASE_FILE_BYTES as usize;
/// A case's data subject (`_subject`), as memory names subjects.
pub const SUBJECT_LEN_MAX: usize = 256;
/// A document's name: a file name, no directories.
pub const DOCUMENT_NAME_LEN_MAX: usize = 255;

/// An open mission's intake settings (from its declaration) and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeRecord {
    pub mission: String,
    pub agent: String,
    /// The most received cases not yet started.
    pub queue_max: u32,
    pub tier: String,
    pub documents: entries::DeclaredDocuments,
    /// Received cases not yet started.
    pub queued: u32,
    /// Cases received in all.
    pub received: u64,
    /// The `mission.control` entry that closed intake.
    pub closed_seq: Option<u64>,
}

/// What a received case runs (its task's input), kept until it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedCase {
    pub case: String,
    pub agent: String,
    /// The input as submitted (a JSON object), as text.
    pub input: String,
    pub tier: String,
    pub documents: Vec<DocumentRef>,
    pub received_seq: u64,
}

/// One case as submitted.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// The case id; `None`: the input's `"id"` string, else `received-N`.
    pub id: Option<String>,
    /// A JSON object.
    pub input: Value,
    pub documents: Vec<NewDocument>,
    pub idempotency_key: Option<String>,
}

/// One document of a submitted case.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A case accepted (or accepted before, under the same idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub case: String,
    pub task: u32,
    /// Its `case.received` entry.
    pub seq: u64,
    /// An earlier submission with the same idempotency key made this case.
    pub duplicate: bool,
}

/// Why a submission or a control was refused: nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("there is no mission `{0}` here")]
    UnknownMission(String),
    #[error("mission `{0}` takes no cases: its file declares no `intake`")]
    NotOpen(String),
    #[error("mission `{0}` is closed to new cases")]
    Closed(String),
    #[error("mission `{mission}` has {queued} cases waiting, and its queue holds {limit}; try again shortly")]
    QueueFull { mission: String, queued: u32, limit: u32 },
    #[error("case {index}: {why}")]
    Invalid { index: usize, why: String },
    #[error(
        "case {index}: mission `{mission}` already has a case `{case}` (task {task}); give a new id, or the same idempotency key to get that case back"
    )]
    DuplicateCase { index: usize, mission: String, case: String, task: u32 },
    #[error("mission `{mission}` is {status}; {action} needs {needs}")]
    WrongState { mission: String, status: String, action: &'static str, needs: &'static str },
}

impl Refusal {
    /// The HTTP status that says this refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::UnknownMission(_) => 404,
            Refusal::QueueFull { .. } => 429,
            Refusal::Invalid { .. } => 422,
            Refusal::NotOpen(_) | Refusal::Closed(_) | Refusal::DuplicateCase { .. } | Refusal::WrongState { .. } => {
                409
            }
        }
    }
}

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(INTAKE)?;
    txn.open_table(RECEIVED)?;
    txn.open_table(QUEUED)?;
    txn.open_table(KEYS)?;
    txn.open_table(CASE_IDS)?;
    Ok(())
}

fn task_key(mission: &str, index: u32) -> String {
    format!("{mission}/{index:06}")
}

fn pair_key(mission: &str, name: &str) -> String {
    format!("{mission}\0{name}")
}

fn corrupt(what: &str, key: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::BadEntry(format!("stored {what} `{key}` is corrupt: {e}"))
}

fn storage(e: impl Into<redb::Error>) -> LedgerError {
    LedgerError::from(e.into())
}

fn put_json<T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), LedgerError> {
    let bytes = serde_json::to_vec(value).map_err(|e| corrupt("record", key, e))?;
    txn.open_table(table).map_err(storage)?.insert(key, bytes.as_slice()).map_err(storage)?;
    Ok(())
}

fn intake_in(txn: &WriteTransaction, mission: &str) -> Result<Option<IntakeRecord>, LedgerError> {
    let table = txn.open_table(INTAKE).map_err(storage)?;
    let found = table.get(mission).map_err(storage)?;
    found.map(|v| serde_json::from_slice(v.value()).map_err(|e| corrupt("intake", mission, e))).transpose()
}

/// An open mission's intake, `None` for a mission without one.
pub fn intake(read: &ReadTransaction, mission: &str) -> Result<Option<IntakeRecord>> {
    let table = read.open_table(INTAKE)?;
    let found = table.get(mission)?;
    Ok(found.map(|v| serde_json::from_slice(v.value())).transpose()?)
}

/// The received case that task `index` runs, if it is one.
pub fn received(read: &ReadTransaction, mission: &str, index: u32) -> Result<Option<ReceivedCase>> {
    let table = read.open_table(RECEIVED)?;
    let found = table.get(task_key(mission, index).as_str())?;
    Ok(found.map(|v| serde_json::from_slice(v.value())).transpose()?)
}

/// Received cases of `mission` not yet started, in arrival order.
pub fn queued(read: &ReadTransaction, mission: &str) -> Result<Vec<u32>> {
    let table = read.open_table(QUEUED)?;
    let prefix = format!("{mission}/");
    let mut found = Vec::new();
    for row in table.range(prefix.as_str()..)? {
        let (key, _) = row?;
        let Some(index) = key.value().strip_prefix(&prefix) else { break };
        found.push(index.parse().context("a queued task's key")?);
    }
    Ok(found)
}

/// Declares `mission`'s intake, in its declaration's transaction; the
/// ids of its own cases are taken, so an arriving case cannot reuse one.
pub(crate) fn declare(
    txn: &WriteTransaction,
    mission: &str,
    intake: &entries::DeclaredIntake,
    case_ids: &[String],
) -> Result<(), LedgerError> {
    let record = IntakeRecord {
        mission: mission.to_owned(),
        agent: intake.agent.clone(),
        queue_max: intake.queue,
        tier: intake.tier.clone(),
        documents: intake.documents.clone(),
        queued: 0,
        received: 0,
        closed_seq: None,
    };
    put_json(txn, INTAKE, mission, &record)?;
    let mut ids = txn.open_table(CASE_IDS).map_err(storage)?;
    for (index, id) in (0u32..).zip(case_ids) {
        ids.insert(pair_key(mission, id).as_str(), index).map_err(storage)?;
    }
    Ok(())
}

/// A task started: if it was a received case, it leaves the queue. In the
/// task's `task.started` transaction.
pub(crate) fn dequeue(txn: &WriteTransaction, mission: &str, index: u32) -> Result<(), LedgerError> {
    let removed = {
        let mut queue = txn.open_table(QUEUED).map_err(storage)?;
        queue.remove(task_key(mission, index).as_str()).map_err(storage)?.is_some()
    };
    if removed && let Some(mut record) = intake_in(txn, mission)? {
        record.queued = record.queued.saturating_sub(1);
        put_json(txn, INTAKE, mission, &record)?;
    }
    Ok(())
}

/// A case's shape checked against the mission's limits, before anything
/// is stored.
struct Checked {
    id: Option<String>,
    input: Value,
    input_text: String,
    tier: String,
    documents: Vec<(DocumentRef, Vec<u8>)>,
    idempotency_key: Option<String>,
}

fn check_case(index: usize, case: NewCase, intake: &IntakeRecord) -> Result<Checked, Refusal> {
    let invalid = |why: String| Refusal::Invalid { index, why };
    let Value::Object(fields) = &case.input else {
        return Err(invalid("the case's input must be a JSON object".into()));
    };
    let id = case.id.clone().or_else(|| fields.get("id").and_then(Value::as_str).map(str::to_owned));
    if let Some(id) = &id {
        let printable = id.chars().all(|c| !c.is_control());
        if id.is_empty() || id.len() > CASE_ID_LEN_MAX || !printable || id.contains('/') {
            return Err(invalid(format!(
                "the case id must be 1 to {CASE_ID_LEN_MAX} printable characters without `/`"
            )));
        }
    }
    let subject = match fields.get("_subject") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= SUBJECT_LEN_MAX && !s.chars().any(char::is_control) => {
            Some(s.clone())
        }
        Some(other) => {
            return Err(invalid(format!(
                "`_subject` is {other}; a data subject is 1 to {SUBJECT_LEN_MAX} printable characters, such as `claimant:4411`"
            )));
        }
    };
    let tier = match fields.get("_tier") {
        None => intake.tier.clone(),
        Some(Value::String(t)) if missions::DataTier::parse(t).is_some() => t.clone(),
        Some(other) => {
            return Err(invalid(format!("`_tier` is {other}; a data tier is `public`, `internal` or `restricted`")));
        }
    };
    let input_text = serde_json::to_string(&case.input).map_err(|e| invalid(e.to_string()))?;
    if input_text.len() > CASE_INPUT_BYTES_MAX {
        return Err(invalid(format!(
            "the input is {} bytes of JSON, more than {CASE_INPUT_BYTES_MAX}; send large content as a document",
            input_text.len()
        )));
    }
    if let Some(key) = &case.idempotency_key
        && (key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX || key.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "the idempotency key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable characters"
        )));
    }
    let limits = &intake.documents;
    if case.documents.len() > limits.count as usize {
        return Err(invalid(format!(
            "{} documents, more than the mission's limit of {} per case",
            case.documents.len(),
            limits.count
        )));
    }
    let mut documents = Vec::new();
    for doc in case.documents {
        let name_ok = !doc.name.is_empty()
            && doc.name.len() <= DOCUMENT_NAME_LEN_MAX
            && !doc.name.starts_with('.')
            && !doc.name.contains(['/', '\\'])
            && !doc.name.chars().any(char::is_control);
        if !name_ok {
            return Err(invalid(format!(
                "document name {:?} must be a file name: 1 to {DOCUMENT_NAME_LEN_MAX} characters, no `/`, not starting with `.`",
                doc.name
            )));
        }
        if documents.iter().any(|(d, _): &(DocumentRef, Vec<u8>)| d.name == doc.name) {
            return Err(invalid(format!("two documents are named {:?}", doc.name)));
        }
        if !limits.types.contains(&doc.media_type) {
            return Err(invalid(format!(
                "document {:?} is of type {:?}, which the mission does not accept (it takes {})",
                doc.name,
                doc.media_type,
                limits.types.join(", ")
            )));
        }
        let size = doc.bytes.len() as u64;
        if size > limits.bytes {
            return Err(invalid(format!(
                "document {:?} is {size} bytes, more than the mission's limit of {} per document",
                doc.name, limits.bytes
            )));
        }
        let reference = DocumentRef {
            name: doc.name,
            media_type: doc.media_type,
            bytes: size,
            blake3: blake3::hash(&doc.bytes).to_hex().to_string(),
            subject: subject.clone(),
        };
        documents.push((reference, doc.bytes));
    }
    Ok(Checked { id, input: case.input, input_text, tier, documents, idempotency_key: case.idempotency_key })
}

/// What one submission's commit found.
enum Admitted {
    Accepted(Vec<Receipt>, Vec<u32>),
    Refused(Refusal),
}

/// Takes `cases` into open mission `mission` for `by`: every case, or
/// (with a refusal) none. Documents are stored first; the entries, task
/// records and queue slots are one group commit, durable before this
/// returns. The running mission, if it runs in this process, is told.
pub fn receive(
    data: &DataDir,
    mission: &str,
    cases: Vec<NewCase>,
    by: &Requester,
) -> Result<Result<Vec<Receipt>, Refusal>> {
    if cases.is_empty() || cases.len() > CASES_PER_SUBMISSION_MAX {
        return Ok(Err(Refusal::Invalid {
            index: 0,
            why: format!("send 1 to {CASES_PER_SUBMISSION_MAX} cases at a time (this was {})", cases.len()),
        }));
    }
    // The limits never change after the declaration: checked outside the
    // commit, which re-reads what does change (closed, queue, ids).
    let Some(intake) = intake(&data.ledger.read()?, mission)? else {
        let known = state::mission(&data.ledger.read()?, mission)?.is_some();
        return Ok(Err(if known { Refusal::NotOpen(mission.into()) } else { Refusal::UnknownMission(mission.into()) }));
    };
    if intake.closed_seq.is_some() {
        return Ok(Err(Refusal::Closed(mission.into())));
    }
    let mut checked = Vec::with_capacity(cases.len());
    for (index, case) in cases.into_iter().enumerate() {
        match check_case(index, case, &intake) {
            Ok(c) => checked.push(c),
            Err(refusal) => return Ok(Err(refusal)),
        }
    }
    for (index, case) in checked.iter().enumerate() {
        for (doc, bytes) in &case.documents {
            let Some(subject) = &doc.subject else {
                crate::documents::store(&data.root, bytes)?;
                continue;
            };
            match crate::documents::store_sealed(&data.root, &data.ledger, subject, bytes) {
                Ok(_) => {}
                // An erased subject (or a subject memory cannot key) is the
                // submitter's to fix; storage failures are the host's.
                Err(e) if e.chain().any(|c| c.is::<memory::MemoryError>()) => {
                    return Ok(Err(Refusal::Invalid {
                        index,
                        why: format!("document {:?} cannot be sealed for subject `{subject}`: {e:#}", doc.name),
                    }));
                }
                Err(e) => return Err(e),
            }
        }
    }
    let prepared: Vec<(Checked, Vec<DocumentRef>)> = checked
        .into_iter()
        .map(|mut c| {
            let refs = c.documents.drain(..).map(|(r, _)| r).collect();
            (c, refs)
        })
        .collect();
    let prepared = std::sync::Arc::new(prepared);
    let (conductor, mission_id, by) = (data.conductor.clone(), mission.to_owned(), by.clone());
    let admitted = data.commit(move |t| admit(t, &conductor, &mission_id, &prepared, &by))?;
    match admitted {
        Admitted::Accepted(receipts, fresh) => {
            for index in fresh {
                knock(mission, Arrival::Case(index));
            }
            Ok(Ok(receipts))
        }
        Admitted::Refused(refusal) => Ok(Err(refusal)),
    }
}

/// The commit of one submission: everything checked before anything is
/// written, so a refusal leaves the transaction as it found it.
fn admit(
    t: &mut ledger::Txn,
    conductor: &identity::Keypair,
    mission: &str,
    cases: &[(Checked, Vec<DocumentRef>)],
    by: &Requester,
) -> Result<Admitted, LedgerError> {
    let Some(mut intake) = intake_in(t.redb(), mission)? else {
        return Ok(Admitted::Refused(Refusal::UnknownMission(mission.into())));
    };
    if intake.closed_seq.is_some() {
        return Ok(Admitted::Refused(Refusal::Closed(mission.into())));
    }
    let Some(mut record) = state::mission_in(t.redb(), mission).map_err(|e| corrupt("mission", mission, e))? else {
        return Ok(Admitted::Refused(Refusal::UnknownMission(mission.into())));
    };
    // A mission that ended (out of budget under `stop`) would never run
    // what it took: refused rather than queued forever.
    if !matches!(
        record.status,
        MissionStatus::Running | MissionStatus::Paused | MissionStatus::AwaitingBudget | MissionStatus::AwaitingReview
    ) {
        return Ok(Admitted::Refused(Refusal::WrongState {
            mission: mission.into(),
            status: crate::summary::status_text(record.status).to_owned(),
            action: "taking cases",
            needs: "a running or paused mission",
        }));
    }
    // Earlier submissions under the same idempotency keys, and case ids
    // already taken.
    let mut receipts: Vec<Option<Receipt>> = Vec::with_capacity(cases.len());
    {
        let keys = t.redb().open_table(KEYS).map_err(storage)?;
        let ids = t.redb().open_table(CASE_IDS).map_err(storage)?;
        let received = t.redb().open_table(RECEIVED).map_err(storage)?;
        let mut batch_ids = std::collections::HashSet::new();
        for (index, (case, _)) in cases.iter().enumerate() {
            if let Some(key) = &case.idempotency_key
                && let Some(task) = keys.get(pair_key(mission, key).as_str()).map_err(storage)?
            {
                let task = task.value();
                let tk = task_key(mission, task);
                let earlier = received.get(tk.as_str()).map_err(storage)?;
                let earlier: ReceivedCase = earlier
                    .ok_or_else(|| corrupt("idempotency key", &tk, "it names no received case"))
                    .and_then(|g| serde_json::from_slice(g.value()).map_err(|e| corrupt("received case", &tk, e)))?;
                receipts.push(Some(Receipt { case: earlier.case, task, seq: earlier.received_seq, duplicate: true }));
                continue;
            }
            if let Some(id) = &case.id {
                if let Some(task) = ids.get(pair_key(mission, id).as_str()).map_err(storage)? {
                    return Ok(Admitted::Refused(Refusal::DuplicateCase {
                        index,
                        mission: mission.into(),
                        case: id.clone(),
                        task: task.value(),
                    }));
                }
                if !batch_ids.insert(id.clone()) {
                    return Ok(Admitted::Refused(Refusal::Invalid {
                        index,
                        why: format!("case id `{id}` appears twice in this submission"),
                    }));
                }
            }
            receipts.push(None);
        }
    }
    let fresh_count = receipts.iter().filter(|r| r.is_none()).count();
    let fresh_count = u32::try_from(fresh_count).unwrap_or(u32::MAX);
    if intake.queued.saturating_add(fresh_count) > intake.queue_max {
        return Ok(Admitted::Refused(Refusal::QueueFull {
            mission: mission.into(),
            queued: intake.queued,
            limit: intake.queue_max,
        }));
    }
    let now = now_us();
    let mut fresh = Vec::new();
    let mut out = Vec::with_capacity(cases.len());
    for ((case, documents), earlier) in cases.iter().zip(receipts) {
        if let Some(receipt) = earlier {
            out.push(receipt);
            continue;
        }
        let task = record.tasks_total;
        record.tasks_total =
            task.checked_add(1).ok_or_else(|| LedgerError::BadEntry("the mission's task indices ran out".into()))?;
        let case_id = case.id.clone().unwrap_or_else(|| format!("received-{task}"));
        let entry = entries::CaseReceived {
            mission: mission.to_owned(),
            task,
            case: case_id.clone(),
            agent: intake.agent.clone(),
            input: case.input.clone(),
            documents: documents.clone(),
            submitted_by: by.clone(),
            idempotency_key: case.idempotency_key.clone(),
        };
        let (seq, _) = entries::append(t, conductor, &entry, now)?;
        let tk = task_key(mission, task);
        let spec = ReceivedCase {
            case: case_id.clone(),
            agent: intake.agent.clone(),
            input: case.input_text.clone(),
            tier: case.tier.clone(),
            documents: documents.clone(),
            received_seq: seq,
        };
        put_json(t.redb(), RECEIVED, &tk, &spec)?;
        t.redb().open_table(QUEUED).map_err(storage)?.insert(tk.as_str(), ()).map_err(storage)?;
        if let Some(key) = &case.idempotency_key {
            t.redb()
                .open_table(KEYS)
                .map_err(storage)?
                .insert(pair_key(mission, key).as_str(), task)
                .map_err(storage)?;
        }
        t.redb()
            .open_table(CASE_IDS)
            .map_err(storage)?
            .insert(pair_key(mission, &case_id).as_str(), task)
            .map_err(storage)?;
        state::put_task(t.redb(), &pending_task(mission, task, &case_id, &intake.agent))
            .map_err(|e| corrupt("task", &tk, e))?;
        fresh.push(task);
        out.push(Receipt { case: case_id, task, seq, duplicate: false });
    }
    intake.queued += fresh_count;
    intake.received += u64::from(fresh_count);
    put_json(t.redb(), INTAKE, mission, &intake)?;
    state::put_mission(t.redb(), &record).map_err(|e| corrupt("mission", mission, e))?;
    Ok(Admitted::Accepted(out, fresh))
}

fn pending_task(mission: &str, index: u32, case: &str, agent: &str) -> TaskRecord {
    TaskRecord {
        mission: mission.to_owned(),
        index,
        case_id: case.to_owned(),
        agent: agent.to_owned(),
        status: TaskStatus::Pending,
        outcome: None,
        reason: None,
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

/// An operator's control of a mission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop taking cases; the mission finishes what it has, then ends.
    Close,
    /// Start nothing more; what runs finishes, and the mission is paused
    /// (resumed by `resume`).
    Pause,
    /// Take no more cases and skip every task not yet started; what runs
    /// finishes, and the mission ends `cancelled`.
    Cancel,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Close => "close",
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }
    }
}

/// Journals `control` of `mission` by `by` (`mission.control`) and tells
/// the running mission. Closing needs an open mission not closed yet;
/// pausing, a running one.
pub fn control(data: &DataDir, mission: &str, control: Control, by: &Requester) -> Result<Result<u64, Refusal>> {
    let (conductor, mission_id, by) = (data.conductor.clone(), mission.to_owned(), by.clone());
    let done = data.commit(move |t| -> Result<Result<u64, Refusal>, LedgerError> {
        let Some(record) = state::mission_in(t.redb(), &mission_id).map_err(|e| corrupt("mission", &mission_id, e))?
        else {
            return Ok(Err(Refusal::UnknownMission(mission_id.clone())));
        };
        let mut intake = intake_in(t.redb(), &mission_id)?;
        match control {
            Control::Close => match &intake {
                None => return Ok(Err(Refusal::NotOpen(mission_id.clone()))),
                Some(i) if i.closed_seq.is_some() => return Ok(Err(Refusal::Closed(mission_id.clone()))),
                Some(_) => {}
            },
            Control::Pause if record.status != MissionStatus::Running => {
                return Ok(Err(Refusal::WrongState {
                    mission: mission_id.clone(),
                    status: crate::summary::status_text(record.status).to_owned(),
                    action: "pausing",
                    needs: "a running mission",
                }));
            }
            Control::Pause => {}
            Control::Cancel => {
                let ended = !matches!(
                    record.status,
                    MissionStatus::Running
                        | MissionStatus::Paused
                        | MissionStatus::AwaitingBudget
                        | MissionStatus::AwaitingReview
                );
                if ended {
                    return Ok(Err(Refusal::WrongState {
                        mission: mission_id.clone(),
                        status: crate::summary::status_text(record.status).to_owned(),
                        action: "cancelling",
                        needs: "a mission that has not ended",
                    }));
                }
            }
        }
        let entry = entries::MissionControl {
            mission: mission_id.clone(),
            action: control.as_str().to_owned(),
            by: by.clone(),
        };
        let (seq, _) = entries::append(t, &conductor, &entry, now_us())?;
        if let (Control::Close | Control::Cancel, Some(i)) = (control, &mut intake)
            && i.closed_seq.is_none()
        {
            i.closed_seq = Some(seq);
            put_json(t.redb(), INTAKE, &mission_id, i)?;
        }
        Ok(Ok(seq))
    })?;
    if done.is_ok() {
        let arrival = match control {
            Control::Close => Arrival::Close,
            Control::Pause => Arrival::Pause,
            Control::Cancel => Arrival::Cancel,
        };
        // A mission not running here is cancelled at once: its pending
        // tasks skipped and its status set, in one commit.
        if !knock(mission, arrival) && control == Control::Cancel {
            cancel_here(data, mission)?;
        }
    }
    Ok(done)
}

/// Cancels a mission that no process runs: its pending entry tasks are
/// skipped (`task.skipped`, reason `cancelled`) and it ends `cancelled`.
/// A child waiting to start stays pending (its parent is parked on it).
fn cancel_here(data: &DataDir, mission: &str) -> Result<()> {
    let (conductor, mission) = (data.conductor.clone(), mission.to_owned());
    data.commit(move |t| -> Result<(), LedgerError> {
        let now = now_us();
        let tasks = state::tasks_in(t.redb(), &mission).map_err(|e| corrupt("tasks", &mission, e))?;
        for mut task in tasks.into_iter().filter(|t| t.status == TaskStatus::Pending && t.parent.is_none()) {
            let skipped = entries::TaskSkipped {
                mission: mission.clone(),
                task: task.index,
                case: task.case_id.clone(),
                reason: CANCELLED.into(),
            };
            entries::append(t, &conductor, &skipped, now)?;
            t.redb()
                .open_table(QUEUED)
                .map_err(storage)?
                .remove(task_key(&mission, task.index).as_str())
                .map_err(storage)?;
            task.status = TaskStatus::Skipped;
            task.failure = Some("cancelled by an operator before it started".into());
            state::put_task(t.redb(), &task).map_err(|e| corrupt("task", &mission, e))?;
        }
        if let Some(mut intake) = intake_in(t.redb(), &mission)? {
            intake.queued = 0;
            put_json(t.redb(), INTAKE, &mission, &intake)?;
        }
        if let Some(mut record) = state::mission_in(t.redb(), &mission).map_err(|e| corrupt("mission", &mission, e))? {
            let account = t.account(&mission)?;
            let finished = entries::MissionFinished {
                mission: mission.clone(),
                status: MissionStatus::Cancelled,
                budget: entries::AccountTotals {
                    limit: account.limit,
                    settled: account.settled,
                    pending: account.pending,
                },
            };
            entries::append(t, &conductor, &finished, now)?;
            record.status = MissionStatus::Cancelled;
            state::put_mission(t.redb(), &record).map_err(|e| corrupt("mission", &mission, e))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `task.skipped`'s reason for a task an operator's cancel skipped.
pub const CANCELLED: &str = "cancelled";

/// What a running mission hears at its door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// A received case (its task index) is durable and pending.
    Case(u32),
    /// A parked task's gate was decided, or its children ended: it runs
    /// again, replayed to where it waited.
    Woken(u32),
    Close,
    Pause,
    Cancel,
    /// The process is stopping: start nothing more and leave the mission
    /// running in the journal, for the next start to carry on.
    Shutdown,
}

type Doors = Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Arrival>>>;

/// Missions running in this process, by id.
static DOORS: LazyLock<Doors> = LazyLock::new(Doors::default);

/// Where a running mission hears of arrivals; closed when dropped.
pub(crate) struct Door {
    mission: String,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
}

impl Door {
    pub(crate) fn open(mission: &str) -> Door {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Ok(mut doors) = DOORS.lock() {
            doors.insert(mission.to_owned(), tx);
        }
        Door { mission: mission.to_owned(), rx }
    }

    /// Stops listening, and returns what arrived before: once this
    /// returns, [`wake`] and [`receive`] no longer find the mission here,
    /// so nothing sent to it can be missed by a caller told it arrived.
    pub(crate) fn shut(&mut self) -> Vec<Arrival> {
        if let Ok(mut doors) = DOORS.lock() {
            doors.remove(&self.mission);
        }
        let mut late = Vec::new();
        while let Ok(arrival) = self.rx.try_recv() {
            late.push(arrival);
        }
        late
    }
}

/// Tells every mission running in this process that it is stopping.
pub fn shutdown_all() {
    if let Ok(doors) = DOORS.lock() {
        for tx in doors.values() {
            let _ = tx.send(Arrival::Shutdown);
        }
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        if let Ok(mut doors) = DOORS.lock() {
            doors.remove(&self.mission);
        }
    }
}

/// Tells `mission`, if it runs in this process, that its parked task
/// `task` may run again (its gate was decided); false if it does not run
/// here (then `mission resume` carries it on).
pub fn wake(mission: &str, task: u32) -> bool {
    running_here(mission) && knock(mission, Arrival::Woken(task))
}

/// Whether a mission with this id runs in this process now.
pub fn running_here(mission: &str) -> bool {
    DOORS.lock().is_ok_and(|d| d.contains_key(mission))
}

/// Whether the arrival reached a mission listening in this process. One
/// that just finished has no one listening: what it missed is in the
/// database for its next run.
fn knock(mission: &str, arrival: Arrival) -> bool {
    DOORS.lock().is_ok_and(|doors| doors.get(mission).is_some_and(|tx| tx.send(arrival).is_ok()))
}

/// The file names an inbox leaves alone: hidden, or still being written.
fn inbox_ignores(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// Where inbox files that are not valid cases are moved, with a note.
pub const INBOX_REJECTED: &str = ".rejected";

/// Takes every case file waiting in `inbox` into `mission`: each is
/// received (durable) before it is removed from the inbox, under an
/// idempotency key made of its name and content, so a crash between the
/// two takes it once. A file that is not a valid case is moved to
/// `inbox/.rejected/` with a `.why.txt` beside it. Returns the cases taken
/// and whether the queue was full (the rest wait for the next look).
pub fn take_inbox(data: &DataDir, mission: &str, inbox: &Path) -> Result<(usize, bool)> {
    let mut names: Vec<String> = std::fs::read_dir(inbox)
        .with_context(|| format!("reading the inbox {}", inbox.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !inbox_ignores(n))
        .collect();
    names.sort();
    let by = Requester { via: "inbox".into(), role: None, key: None, token: None, name: None };
    let mut taken = 0;
    for name in names {
        let path = inbox.join(&name);
        let stem = name.trim_end_matches(".json");
        let docs_dir = inbox.join(stem);
        let parsed = read_inbox_case(&path, &docs_dir);
        let case = match parsed {
            Ok(case) => case,
            Err(why) => {
                reject(inbox, &name, &docs_dir, &why)?;
                continue;
            }
        };
        match receive(data, mission, vec![case], &by)? {
            Ok(_) => {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                if docs_dir.is_dir() {
                    std::fs::remove_dir_all(&docs_dir).with_context(|| format!("removing {}", docs_dir.display()))?;
                }
                taken += 1;
            }
            Err(Refusal::QueueFull { .. }) => return Ok((taken, true)),
            Err(Refusal::Closed(_)) => return Ok((taken, false)),
            Err(refusal) => reject(inbox, &name, &docs_dir, &refusal.to_string())?,
        }
    }
    Ok((taken, false))
}

fn read_inbox_case(path: &Path, docs_dir: &Path) -> Result<NewCase, String> {
    let bytes =
        crate::files::read_regular(path, "case file", missions::MAX_CASE_FILE_BYTES).map_err(|e| format!("{e:#}"))?;
    let input: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    let mut documents = Vec::new();
    let mut digest = blake3::Hasher::new();
    digest.update(&bytes);
    if docs_dir.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(docs_dir)
            .map_err(|e| format!("reading {}: {e}", docs_dir.display()))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).map_err(|e| format!("reading document {name}: {e}"))?;
            digest.update(name.as_bytes());
            digest.update(blake3::hash(&bytes).as_bytes());
            documents.push(NewDocument { media_type: media_type_of(&name).to_owned(), name, bytes });
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(NewCase {
        id: None,
        input,
        documents,
        idempotency_key: Some(format!("inbox:{name}:{}", &digest.finalize().to_hex()[..32])),
    })
}

/// A document's media type from its file name's extension (inbox files
/// carry no type of their own).
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "text" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

fn reject(inbox: &Path, name: &str, docs_dir: &Path, why: &str) -> Result<()> {
    let rejected = inbox.join(INBOX_REJECTED);
    std::fs::create_dir_all(&rejected).with_context(|| format!("creating {}", rejected.display()))?;
    std::fs::rename(inbox.join(name), rejected.join(name)).with_context(|| format!("moving {name} aside"))?;
    if docs_dir.is_dir() {
        let stem = name.trim_end_matches(".json");
        std::fs::rename(docs_dir, rejected.join(stem)).with_context(|| format!("moving {stem}/ aside"))?;
    }
    std::fs::write(rejected.join(format!("{name}.why.txt")), format!("{why}\n"))
        .with_context(|| format!("explaining {name}"))?;
    tracing::warn!("inbox {}: {name} is not a case: {why}", inbox.display());
    Ok(())
}

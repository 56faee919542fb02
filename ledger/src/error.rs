use std::path::PathBuf;

/// Errors opening or writing the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process has the database open (redb takes an exclusive lock).
    #[error("{0} is in use by another conductor process; wait for it to finish or stop it, then retry")]
    Busy(PathBuf),
    /// The database was not closed cleanly, and a read-only open cannot
    /// repair it.
    #[error(
        "{0} needs a repair before it can be read: it was not closed cleanly (a conductor stopped \
         abruptly) or it is damaged (for example cut short). Verify a copy: opening the copy for \
         writing (e.g. `conductor ledger show --data COPY_DIR`) repairs it if it can"
    )]
    NeedsRepair(PathBuf),
    /// The database file exists but is not a complete redb database: it
    /// was never completely created (a full disk or a crash while the data
    /// directory was first set up, by a version that did not create it
    /// atomically), or something else overwrote it.
    #[error(
        "{path} is not a usable ledger database: {found}. It was probably never completely created \
         (for example, the disk filled while the data directory was first set up). If this data \
         directory is new and holds nothing else of value, delete the directory and run the command \
         again; otherwise move this file aside and restore it from a backup"
    )]
    NotADatabase { path: PathBuf, found: DamagedFile },
    /// Creating a new database failed. It is built under a temporary name
    /// and renamed into place only when complete, so nothing was left at
    /// `path` and the same command creates it once the cause is fixed.
    #[error(
        "could not create the ledger database {path} (nothing was left in its place; fix the cause, \
         for example free disk space or the directory's permissions, and run the same command again)"
    )]
    CreateFailed {
        path: PathBuf,
        /// Why, as the error's source only (not repeated in the message),
        /// so a chain printer (`{:#}`) says it once.
        #[source]
        cause: redb::Error,
    },
    /// Writing an export or other output failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The storage engine failed: I/O, corruption, or a full disk.
    #[error("storage error in the ledger database: {0}")]
    Storage(#[from] redb::Error),
    /// An entry was too large or its kind malformed; nothing was written.
    #[error("journal entry refused: {0}")]
    BadEntry(String),
    /// The stored chain head is unreadable; the database is corrupt.
    #[error("journal is corrupt at sequence {seq}: {failure}")]
    Corrupt { seq: u64, failure: VerifyFailure },
    /// The entry's signer may not sign it (unknown, revoked or wrong-role
    /// key, or an invalid key event); nothing was written.
    #[error("journal entry refused: {0}")]
    Unauthorized(#[from] VerifyFailure),
    /// A budget operation was refused; nothing was changed.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// An entry for a key this process does not hold
    /// ([`crate::RemoteKey`]) was refused; nothing was written.
    #[error(transparent)]
    Remote(#[from] RemoteSignError),
}

/// What was found in a database file that is not a redb database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DamagedFile {
    /// The file has no bytes at all.
    #[error("the file is empty")]
    Empty,
    /// The file's first page (where redb's header belongs) holds only
    /// zeros: space was allocated but the header was never written.
    #[error("the file holds only zero bytes where the database header belongs")]
    Zeros,
    /// Something else: the header is missing or damaged.
    #[error("the file does not begin with a redb database header")]
    NoHeader,
}

pub(crate) fn storage<E: Into<redb::Error>>(e: E) -> LedgerError {
    LedgerError::Storage(e.into())
}

/// Refused budget operations. None of them changes a balance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The account cannot cover the reservation.
    #[error(
        "budget exhausted on `{account}`: {requested} requested, {available} available \
         (limit {limit}, settled {settled}, pending {pending})"
    )]
    Insufficient { account: String, requested: u64, available: u64, limit: u64, settled: u64, pending: u64 },
    /// No such account.
    #[error("unknown budget account `{0}`")]
    UnknownAccount(String),
    /// The account exists already.
    #[error("budget account `{0}` already exists")]
    AccountExists(String),
    /// No such reservation.
    #[error("unknown reservation {0}")]
    UnknownReservation(u64),
    /// The reservation was already settled, voided or expired.
    #[error("reservation {id} is already {state}; it can be closed only once")]
    AlreadyClosed { id: u64, state: &'static str },
    /// Settling more than was reserved would break `settled + pending <= limit`.
    #[error("settlement of {actual} exceeds reservation {id} of {reserved}")]
    Overrun { id: u64, actual: u64, reserved: u64 },
    /// Zero-sized postings are refused: they hide mistakes in pricing.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// An amount beyond any real budget: a bug or an overflow upstream.
    #[error("amount {amount} exceeds the largest allowed ({max}); check the prices and limits")]
    Absurd { amount: u64, max: u64 },
    /// The deadline is not after the time of the reservation.
    #[error("reservation deadline {deadline_us} is not after now ({now_us}); give the call time to run")]
    DeadlineInPast { deadline_us: i64, now_us: i64 },
    /// A root account must have a limit.
    #[error("budget account `{0}` has no parent, so it needs a limit")]
    RootWithoutLimit(String),
    /// Only an account with its own limit can be extended.
    #[error("budget account `{0}` has no limit of its own (its parent caps it); extend the parent")]
    NoOwnLimit(String),
    /// Account names are non-empty and short.
    #[error("budget account name `{0}` is empty or longer than 256 bytes")]
    BadName(String),
    /// The account tree is deeper than allowed.
    #[error("budget account `{0}` would be nested deeper than 8 levels")]
    TooDeep(String),
    /// A stored balance is lower than what is being released: the
    /// projection is corrupt (`conductor audit verify` says where).
    #[error("budget account `{0}` holds less pending than it is releasing; the database is inconsistent")]
    Inconsistent(String),
}

/// Refused entries for a key this process does not hold
/// ([`crate::RemoteKey`]). Each is returned before the entry is staged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteSignError {
    /// The entry no longer hashes as it did when it was prepared: other
    /// entries were written since (or the operations differ), so the
    /// signature is for an entry that can no longer be written.
    #[error(
        "the journal moved since the entries were prepared for signing: the entry prepared as \
         sequence {expected_seq} is now sequence {actual_seq} (or follows a different entry); \
         prepare the entries again and have them signed again"
    )]
    Moved { expected_seq: u64, actual_seq: u64 },
    /// The given signature does not pass strict verification under the key.
    #[error("the signature given for entry {seq} does not verify under key {key}; nothing was written")]
    BadSignature { seq: u64, key: identity::KeyId },
    /// More entries are being written for the key than signatures were given.
    #[error(
        "no signature was given for entry {seq} by key {key}: more entries are being written than \
         were prepared; prepare the entries again"
    )]
    Missing { seq: u64, key: identity::KeyId },
    /// A captured entry (prepared, never signed) reached the commit.
    #[error(
        "entry {seq} was only prepared for signing by a key this process does not hold and has no \
         signature; a transaction that captures entries must be rolled back, never committed"
    )]
    Unsigned { seq: u64 },
}

/// Why verification stopped at an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("record is malformed: {0}")]
    Malformed(String),
    #[error("stored hash does not match the entry's bytes (entry was changed)")]
    HashMismatch,
    #[error("signature does not verify under the entry's signer")]
    BadSignature,
    #[error("signer is not a valid Ed25519 public key")]
    BadSigner,
    #[error("entry's previous-hash does not match the entry before it (entry removed, inserted or reordered)")]
    BrokenLink,
    #[error("expected sequence {expected}, found {found} (entries removed)")]
    Missing { expected: u64, found: u64 },
    #[error("expected sequence {expected}, found {found} (entry duplicated or moved)")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("journal ends at {found} entries but {expected} were recorded or checkpointed (tail removed)")]
    Truncated { expected: u64, found: u64 },
    #[error("data follows the last entry the export declares")]
    TrailingData,
    #[error("the journal has no entries; every journal starts with its genesis entry")]
    Empty,
    #[error("kind `{0}` is not part of journal format 1")]
    UnknownKind(String),
    #[error("signer {0} was never registered in this journal")]
    UnknownKey(String),
    #[error("signer {key} was revoked at sequence {revoked_seq}")]
    RevokedKey { key: String, revoked_seq: u64 },
    #[error("`{kind}` must be signed by a {required} key, but the signer is a {actual} key")]
    WrongRole { kind: String, required: identity::Role, actual: identity::Role },
    #[error("invalid key event: {0}")]
    BadKeyEvent(String),
    #[error("invalid payload: {0}")]
    BadPayload(String),
    #[error("entry differs from the held checkpoint {expected} (journal rewritten at or before this entry)")]
    CheckpointMismatch { expected: crate::EntryHash },
    #[error("budget posting breaks the budget rules: {0}")]
    BudgetRule(String),
    #[error("the database's projections disagree with the journal: {0}")]
    ProjectionDiffers(String),
    /// A second terminal entry for one task (see [`crate::outcomes`]).
    #[error(
        "task {task} of mission `{mission}` already ended at sequence {first_seq}: a task has exactly \
         one terminal entry (`task.decided`, `task.failed` or `task.skipped`), and this one contradicts it"
    )]
    TaskEndedTwice { mission: String, task: u64, first_seq: u64 },
    /// A second decision for one gate (see [`crate::outcomes`]).
    #[error(
        "gate `{gate_id}` was already decided at sequence {first_seq}: a gate has exactly one decision \
         (`gate.decided` or `gate.timed_out`), and this one contradicts it"
    )]
    GateDecidedTwice { gate_id: String, first_seq: u64 },
    /// A delegation id registered a second time, by a `task.delegated` or
    /// after its join (see `crate::links`).
    #[error(
        "delegation `{delegation}` of mission `{mission}` was already registered at sequence {first_seq}: \
         each `task.delegated` has its own delegation id"
    )]
    DelegationTwice { mission: String, delegation: String, first_seq: u64 },
    /// A `task.delegated` whose children do not fit its `delegation`: a
    /// child without a task index in an accepted delegation, or one with
    /// an index in a refused one (see `crate::links`).
    #[error(
        "`task.delegated` of task {task} of mission `{mission}`: child {position} {}",
        child_index_why(.refused)
    )]
    DelegationChildIndex { mission: String, task: u64, position: u64, refused: bool },
    /// One task listed as a child twice, in one delegation or two.
    #[error(
        "task {child} of mission `{mission}` is listed as a child of delegation `{delegation}`, but it was \
         already listed as a child at sequence {first_seq}: a child belongs to one delegation"
    )]
    ChildListedTwice { mission: String, delegation: String, child: u64, first_seq: u64 },
    /// A child's `task.started` or a `task.joined` names a delegation no
    /// earlier `task.delegated` of the mission registered.
    #[error(
        "`{kind}` of task {task} names delegation `{delegation}` of mission `{mission}`, which no earlier \
         `task.delegated` of the mission registered"
    )]
    UnknownDelegation { kind: &'static str, mission: String, task: u64, delegation: String },
    /// A child's `task.started` or a `task.joined` names another parent
    /// task than the one that delegated.
    #[error(
        "delegation `{delegation}` of mission `{mission}` was made by task {expected}, but `{kind}` names \
         task {got} as its parent"
    )]
    WrongParent { kind: &'static str, mission: String, delegation: String, expected: u64, got: u64 },
    /// A child's `task.started` says another depth than its delegation.
    #[error(
        "task {child} of mission `{mission}` starts at depth {got}, but delegation `{delegation}` put its \
         children at depth {expected}"
    )]
    WrongDepth { mission: String, delegation: String, child: u64, expected: u64, got: u64 },
    /// A `task.started` names a delegation that does not list the task.
    #[error(
        "task {child} of mission `{mission}` starts as a child of delegation `{delegation}`, which does not \
         list it among its children"
    )]
    NotAChild { mission: String, delegation: String, child: u64 },
    /// A child's `task.started` after its delegation was joined (so
    /// after the child ended).
    #[error(
        "task {child} of mission `{mission}` starts as a child of delegation `{delegation}`, which was \
         already joined at sequence {joined_seq}: a child runs before its delegation's join"
    )]
    ChildAfterJoin { mission: String, delegation: String, child: u64, joined_seq: u64 },
    /// A second `task.joined` for one delegation.
    #[error(
        "delegation `{delegation}` of mission `{mission}` was already joined at sequence {first_seq}: a \
         delegation is joined once"
    )]
    JoinedTwice { mission: String, delegation: String, first_seq: u64 },
    /// A `task.joined` whose results are not the delegation's children, in
    /// order: `expected` and `got` are the child task at `position` (none:
    /// past the end of that list).
    #[error(
        "`task.joined` of delegation `{delegation}` of mission `{mission}` does not list its children in \
         order: result {position} is {}, but the delegation's child {position} is {}",
        task_or_none(.got),
        task_or_none(.expected)
    )]
    JoinChildren { mission: String, delegation: String, position: u64, expected: Option<u64>, got: Option<u64> },
    /// A `task.joined` written before one of its children ended.
    #[error(
        "`task.joined` of delegation `{delegation}` of mission `{mission}` comes before its child task \
         {child} ended: the join is written with (after) the last child's terminal entry"
    )]
    JoinBeforeEnd { mission: String, delegation: String, child: u64 },
    /// A `task.joined` result that says another ending than the child's
    /// terminal entry (`decided <outcome>`, `failed <code>`, `skipped
    /// <reason>`).
    #[error(
        "`task.joined` of delegation `{delegation}` of mission `{mission}` says child task {child} ended \
         {got}, but its terminal entry (sequence {ended_seq}) says {expected}"
    )]
    JoinResultDiffers {
        mission: String,
        delegation: String,
        child: u64,
        // Boxed: the largest variant sizes every `Result` that carries a
        // failure.
        expected: Box<str>,
        got: Box<str>,
        ended_seq: u64,
    },
}

/// `task N` or `nothing`, for [`VerifyFailure::JoinChildren`].
fn task_or_none(task: &Option<u64>) -> String {
    task.map_or_else(|| "nothing (the list ends)".to_owned(), |t| format!("task {t}"))
}

/// What is wrong with a child's task index, for
/// [`VerifyFailure::DelegationChildIndex`].
fn child_index_why(refused: &bool) -> &'static str {
    if *refused {
        "has a task index, but the delegation was refused (`delegation` is null), so no child was created"
    } else {
        "has no task index, but the delegation was accepted, so every child must name its task"
    }
}

/// Verification found a bad entry.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("journal verification failed at sequence {seq}: {failure}")]
    Bad { seq: u64, failure: VerifyFailure },
    /// An export's header or framing could not be read at all.
    #[error("export is unreadable: {0}")]
    BadExport(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl VerifyError {
    /// The first bad sequence number, if verification reached the entries.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Bad { seq, .. } => Some(*seq),
            VerifyError::Ledger(_) | VerifyError::BadExport(_) => None,
        }
    }
}

/// A checkpoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is malformed: {0}")]
    Malformed(String),
    #[error("checkpoint entry does not verify: {0}")]
    Invalid(VerifyFailure),
}

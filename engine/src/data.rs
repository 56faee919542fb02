//! The data directory: the ledger database and the private keys.
//!
//! ```text
//! DIR/conductor.redb            journal + every projection
//! DIR/keys/conductor.key        the conductor's own key (0600)
//! DIR/keys/agents/<mission>-<agent>.key
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, bail};
use identity::{Keypair, Role};
use ledger::{GroupCommitter, Ledger, LedgerError};
use serde_json::json;

use crate::clock::now_us;

const DB_FILE: &str = "conductor.redb";

/// Cloning shares the open database and key (both are behind `Arc`).
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    pub ledger: Arc<Ledger>,
    pub conductor: Arc<Keypair>,
    /// Durable writes of many callers (cells' and gateway calls'
    /// reservations and settlements) share one commit here: see
    /// [`DataDir::commit`].
    pub committer: Arc<GroupCommitter>,
}

impl DataDir {
    /// Opens `root`, creating it (owner-only) and a conductor key and
    /// genesis entry on first use.
    pub fn open_or_create(root: &Path) -> Result<Self> {
        if let Some(held) = held(root) {
            return Ok(held);
        }
        create_private_dir(root)?;
        create_private_dir(&root.join("keys"))?;
        create_private_dir(&root.join("keys/agents"))?;
        let key_path = root.join("keys/conductor.key");
        if !key_path.exists() {
            Keypair::generate(Role::Conductor).save(&key_path)?;
        }
        let data = Self::open_with_key(root, &key_path)?;
        if data.ledger.head()?.0 == 0 {
            let key = data.conductor.clone();
            data.ledger.write(|t| t.genesis(&key, json!({"version": env!("CARGO_PKG_VERSION")}), now_us()))?;
        }
        // Reservations left pending by a run that died return their funds
        // once their deadline passes; do it before any new work.
        let key = data.conductor.clone();
        data.ledger.write(|t| t.expire_due(&key, now_us()).map(|_| ()))?;
        Ok(data)
    }

    /// Opens an existing data directory; never creates one.
    pub fn open_existing(root: &Path) -> Result<Self> {
        if let Some(held) = held(root) {
            return Ok(held);
        }
        db_path(root)?;
        Self::open_with_key(root, &root.join("keys/conductor.key"))
    }

    fn open_with_key(root: &Path, key_path: &Path) -> Result<Self> {
        finish_conductor_rotation(root, key_path)?;
        let conductor =
            Keypair::load(key_path).with_context(|| format!("loading the conductor key of {}", root.display()))?;
        let conductor = Arc::new(conductor);
        let mut ledger = Ledger::open(&root.join(DB_FILE))?;
        ledger.checkpoint_every(conductor.clone(), ledger::CHECKPOINT_EVERY_DEFAULT);
        // Many calls' reservations and settlements in one group commit
        // share one signed `budget.batch` entry (a lone posting is still
        // its own entry): one signature instead of one per call.
        ledger.batch_postings(true);
        ledger.write(|t| -> Result<()> {
            memory::create_tables(t.redb())?;
            crate::state::create_tables(t.redb())?;
            crate::intake::create_tables(t.redb())?;
            crate::gateway::tables::create(t.redb())?;
            Ok(())
        })?;
        let ledger = Arc::new(ledger);
        let committer = Arc::new(GroupCommitter::new(ledger.clone(), ledger::GROUP_BATCH_DEFAULT));
        Ok(DataDir { root: root.to_owned(), ledger, conductor, committer })
    }

    /// Runs `op` in a group commit and returns its result once that commit
    /// is durable: many concurrent callers share one fsync. An operation
    /// rolled back only because another caller's operation in the same
    /// transaction failed (a retryable `Interrupted`) is run again.
    pub fn commit<T: Send + 'static>(
        &self,
        op: impl Fn(&mut ledger::Txn) -> Result<T, LedgerError> + Clone + Send + 'static,
    ) -> Result<T, LedgerError> {
        commit(&self.committer, op)
    }

    /// Lets the rest of this process open this data directory while the
    /// returned guard is held: [`DataDir::open_existing`],
    /// [`DataDir::open_or_create`], [`open_ledger_only`] and the read-only
    /// readers then share this handle. redb lets one handle open a
    /// database, so this is how a server runs its local clients' commands
    /// (`conductor/src/local.rs`) against the directory it holds.
    pub fn hold(&self) -> Result<Holding> {
        let root = std::fs::canonicalize(&self.root).with_context(|| format!("resolving {}", self.root.display()))?;
        let ledger = self.ledger.share()?;
        let mut list = held_list();
        list.retain(|d| d.root != root);
        list.push(DataDir { root: root.clone(), ..self.clone() });
        Ok(Holding { root, _ledger: ledger })
    }

    /// Where an agent's key for one mission lives.
    pub fn agent_key_path(&self, mission: &str, agent: &str) -> PathBuf {
        self.root.join("keys/agents").join(format!("{mission}-{agent}.key"))
    }
}

/// The data directories this process holds for its other work (see
/// [`DataDir::hold`]), by canonical root.
static HELD: Mutex<Vec<DataDir>> = Mutex::new(Vec::new());

fn held_list() -> MutexGuard<'static, Vec<DataDir>> {
    // Whole after every push and retain: a panic elsewhere while it was
    // locked left nothing half-done.
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The data directory at `root` if this process holds it.
fn held(root: &Path) -> Option<DataDir> {
    let root = std::fs::canonicalize(root).ok()?;
    held_list().iter().find(|d| d.root == root).cloned()
}

/// While held, this process's opens of a data directory share one handle
/// (see [`DataDir::hold`]).
#[derive(Debug)]
#[must_use = "the data directory is shared only while this is held"]
pub struct Holding {
    root: PathBuf,
    _ledger: ledger::Sharing,
}

impl Drop for Holding {
    fn drop(&mut self) {
        held_list().retain(|d| d.root != self.root);
    }
}

/// `conductor keys rotate-conductor` writes the new key to
/// `conductor.key.next`, journals the rotation, then swaps the files. If it
/// was interrupted, the journal decides: if it names the new key, finish
/// the swap; if not, the rotation never happened and the spare is removed.
fn finish_conductor_rotation(root: &Path, key_path: &Path) -> Result<()> {
    let staged = root.join("keys/conductor.key.next");
    if !staged.exists() || !root.join(DB_FILE).is_file() {
        return Ok(());
    }
    let next = Keypair::load(&staged).with_context(|| format!("loading {}", staged.display()))?;
    let in_force = Ledger::open(&root.join(DB_FILE))?.conductor_key()?;
    if in_force == Some(next.public()) {
        let old = Keypair::load(key_path)?;
        let retired = root.join(format!("keys/conductor-{}.key.retired", old.public().key_id()));
        std::fs::rename(key_path, &retired).with_context(|| format!("retiring {}", key_path.display()))?;
        std::fs::rename(&staged, key_path).with_context(|| format!("installing {}", key_path.display()))?;
    } else {
        std::fs::remove_file(&staged).with_context(|| format!("removing {}", staged.display()))?;
    }
    Ok(())
}

/// Opens a data directory for reading only what is committed, without
/// the conductor's key.
pub fn open_ledger_only(root: &Path) -> Result<Arc<Ledger>> {
    if let Some(held) = held(root) {
        return Ok(held.ledger);
    }
    Ok(Arc::new(Ledger::open(&db_path(root)?)?))
}

/// Every journal entry of an existing data directory, read without
/// writing (for the auditor's commands).
pub fn read_journal(root: &Path) -> Result<Vec<ledger::Entry>> {
    // A held directory is read through its shared handle by
    // `ledger::read_journal` itself (`ledger::open_read_only`).
    let db = db_path(root)?;
    ledger::read_journal(&db).with_context(|| format!("reading the journal in {}", db.display()))
}

/// The commands that may create a data directory, for the error that
/// refuses a missing one. Only what starts something new creates one, so
/// a mistyped --data is an error rather than a second, empty journal.
const CREATED_BY: &str = "`conductor run` and `conductor serve` create one, and so does \
     `conductor keys register --init` (to register people before the first mission)";

/// The database file of an existing data directory; never creates one.
pub fn db_path(root: &Path) -> Result<PathBuf> {
    let db = root.join(DB_FILE);
    if db.is_file() {
        return Ok(db);
    }
    if !root.exists() {
        bail!("there is no data directory at {}: check --data; {CREATED_BY}", root.display());
    }
    bail!("{} is not a conductor data directory (it has no {DB_FILE}): check --data; {CREATED_BY}", root.display())
}

fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).with_context(|| format!("creating {}", path.display()))
}

/// [`DataDir::commit`] on a committer held elsewhere.
pub fn commit<T: Send + 'static>(
    committer: &GroupCommitter,
    op: impl Fn(&mut ledger::Txn) -> Result<T, LedgerError> + Clone + Send + 'static,
) -> Result<T, LedgerError> {
    retrying(|| committer.submit(op.clone()))
}

/// [`commit`] for an operation whose budget postings (`post`) run with the
/// whole group's before any main part (`then`), so that one commit's
/// postings share one signed entry
/// ([`GroupCommitter::submit_posting_first`]).
pub fn commit_posting_first<P: Send + 'static, T: Send + 'static>(
    committer: &GroupCommitter,
    post: impl Fn(&mut ledger::Txn) -> Result<P, LedgerError> + Clone + Send + 'static,
    then: impl Fn(&mut ledger::Txn, P) -> Result<T, LedgerError> + Clone + Send + 'static,
) -> Result<T, LedgerError> {
    retrying(|| committer.submit_posting_first(post.clone(), then.clone()))
}

/// Submits again an operation rolled back only because another one in
/// its transaction failed part way (a retryable `Interrupted`).
fn retrying<T>(mut submit: impl FnMut() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
    loop {
        match submit() {
            Err(LedgerError::Io { source, .. }) if source.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

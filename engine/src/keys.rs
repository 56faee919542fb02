//! Key management: people's key files, and the key events (registration,
//! rotation, revocation) that make a key count in a journal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use identity::{IdentityError, Keypair, PublicKey, Role};
use ledger::{KeyRecord, Kind, Ledger};
use serde::Serialize;
use serde_json::json;

use crate::clock::now_us;
use crate::data::{self, DataDir};

/// Non-interactive passphrase source, for scripts and tests. Prefer the
/// prompt: environment variables can leak into process listings and logs.
pub const PASSPHRASE_ENV: &str = "CONDUCTOR_KEY_PASSPHRASE";
/// Shorter passphrases are refused when a key is created: Argon2 slows a
/// guesser down, it cannot make a four-letter word strong.
const PASSPHRASE_CHARS_MIN: usize = 12;

/// Loads a person's key file, asking for its passphrase if it has one.
pub fn load_human_key(path: &Path) -> Result<Keypair> {
    match Keypair::load(path) {
        Ok(key) => Ok(key),
        Err(IdentityError::PassphraseRequired { .. }) => {
            let passphrase = passphrase_for(path, false)?;
            Ok(Keypair::load_with_passphrase(path, &passphrase)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads a reviewer's key file, refusing any other role; `action` says
/// what the key was for ("gates are decided", "budgets are extended").
pub fn load_reviewer_key(path: &Path, action: &str) -> Result<Keypair> {
    load_role_key(path, Role::Reviewer, action)
}

/// "a reviewer", "an operator".
fn with_article(role: Role) -> String {
    let vowel = role.as_str().starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {role}", if vowel { "an" } else { "a" })
}

/// Loads a person's key file, refusing any role but `role`.
pub fn load_role_key(path: &Path, role: Role, action: &str) -> Result<Keypair> {
    let key = load_human_key(path)?;
    if key.role() != role {
        bail!(
            "{} is {} key; {action} with {} key (`conductor keys new --role {role}`)",
            path.display(),
            with_article(key.role()),
            with_article(role)
        );
    }
    Ok(key)
}

/// Creates a key file for a person; with `encrypt`, sealed under a
/// passphrase (prompted twice, or taken from `CONDUCTOR_KEY_PASSPHRASE`).
pub fn create(out: &Path, role: Role, encrypt: bool) -> Result<Keypair> {
    let key = Keypair::generate(role);
    if encrypt {
        let passphrase = passphrase_for(out, true)?;
        key.save_encrypted(out, &passphrase)?;
    } else {
        key.save(out)?;
    }
    Ok(key)
}

/// How a passphrase is asked for on this thread, when not here (see
/// [`asking_elsewhere`]).
type Asker = Box<dyn Fn(&Path, bool) -> Result<String>>;

thread_local! {
    static ASKER: std::cell::RefCell<Option<Asker>> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` with every passphrase it needs asked through `ask` (the
/// key file's path, and whether the key is new) instead of this
/// process's terminal and environment. A server runs a local client's
/// command on a thread of its own: the passphrase belongs to that
/// client, who answers with [`ask_passphrase`] on their side.
pub fn asking_elsewhere<T>(ask: impl Fn(&Path, bool) -> Result<String> + 'static, work: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ASKER.with(|a| a.borrow_mut().take());
        }
    }
    ASKER.with(|a| *a.borrow_mut() = Some(Box::new(ask)));
    let _reset = Reset;
    work()
}

fn passphrase_for(path: &Path, new: bool) -> Result<String> {
    if let Some(answer) = ASKER.with(|a| a.borrow().as_ref().map(|ask| ask(path, new))) {
        return answer;
    }
    ask_passphrase(path, new)
}

/// A key file's passphrase from `CONDUCTOR_KEY_PASSPHRASE` or this
/// process's terminal (twice for a new key).
pub fn ask_passphrase(path: &Path, new: bool) -> Result<String> {
    if let Ok(passphrase) = std::env::var(PASSPHRASE_ENV) {
        if new && passphrase.chars().count() < PASSPHRASE_CHARS_MIN {
            bail!("{PASSPHRASE_ENV} is shorter than {PASSPHRASE_CHARS_MIN} characters; choose a longer passphrase");
        }
        return Ok(passphrase);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} {} a passphrase and there is no terminal to ask on; set {PASSPHRASE_ENV}",
            path.display(),
            if new { "needs" } else { "is sealed with" }
        );
    }
    let prompt = format!("passphrase for {}: ", path.display());
    let passphrase = rpassword::prompt_password(&prompt).context("reading the passphrase")?;
    if new {
        if passphrase.chars().count() < PASSPHRASE_CHARS_MIN {
            bail!("the passphrase is shorter than {PASSPHRASE_CHARS_MIN} characters; nothing was written");
        }
        let again = rpassword::prompt_password("again: ").context("reading the passphrase")?;
        if again != passphrase {
            bail!("the two passphrases differ; nothing was written");
        }
    }
    Ok(passphrase)
}

/// Refuses a person's key the journal does not hold in force, saying
/// what to do.
pub fn require_registered(data: &DataDir, public: &PublicKey, key_path: &Path) -> Result<()> {
    let id = public.key_id();
    match data.ledger.key(public)? {
        None => bail!(
            "key {id} ({}) is not registered in {}; an operator registers it with \
             `conductor keys register --data {} {}`",
            key_path.display(),
            data.root.display(),
            data.root.display(),
            key_path.display()
        ),
        Some(record) => match record.revoked_seq {
            Some(seq) => bail!("key {id} was revoked at journal entry {seq}; use your current key"),
            None => Ok(()),
        },
    }
}

/// A key named on the command line: a key file, a public key (64 hex
/// digits) or a key id (32 hex digits) the journal knows.
pub fn resolve(data: &DataDir, spec: &str) -> Result<PublicKey> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(identity::read_public(path)?.1);
    }
    if spec.len() == 64 {
        return Ok(PublicKey::from_hex(spec)?);
    }
    let known = data.ledger.keys()?;
    let matches: Vec<&KeyRecord> = known
        .iter()
        .filter(|k| PublicKey::from_hex(&k.public_key).is_ok_and(|p| p.key_id().to_string() == spec))
        .collect();
    match matches.as_slice() {
        [one] => Ok(PublicKey::from_hex(&one.public_key)?),
        _ => bail!(
            "`{spec}` is not a key file, a public key (64 hex digits) or the id of a key in this \
             journal; `conductor keys list --data {}` shows them",
            data.root.display()
        ),
    }
}

/// What `keys register` records, and where.
#[derive(Debug)]
pub struct Registration<'a> {
    pub data_dir: &'a Path,
    /// A key file, or a public key (64 hex digits).
    pub spec: &'a str,
    /// The role, when `spec` is not a key file that says it.
    pub role: Option<Role>,
    /// Whose key it is (`--name`).
    pub name: Option<&'a str>,
    /// Create the data directory if it does not exist (`--init`): a new
    /// host's people may be registered before its first mission.
    pub init: bool,
}

/// Registers a person's key (public part only) with the role in its file
/// or the one given.
pub fn register(r: &Registration<'_>) -> Result<(PublicKey, Role)> {
    let &Registration { data_dir, spec, role, name, init } = r;
    let data = if init { DataDir::open_or_create(data_dir)? } else { DataDir::open_existing(data_dir)? };
    let path = Path::new(spec);
    let (file_role, public) = if path.is_file() {
        let (role, public) = identity::read_public(path)?;
        (Some(role), public)
    } else {
        (None, resolve(&data, spec)?)
    };
    let role = match (file_role, role) {
        (Some(f), Some(r)) if f != r => bail!("{spec} is a {f} key, not a {r} key"),
        (Some(f), _) => f,
        (None, Some(r)) => r,
        (None, None) => bail!("say which role the key has: --role reviewer|operator|auditor"),
    };
    if matches!(role, Role::Conductor | Role::Agent) {
        bail!("{role} keys are registered by the conductor itself; register reviewer, operator or auditor keys");
    }
    let conductor = data.conductor.clone();
    data.ledger.write(|t| t.register_key(&conductor, &public, role, json!({"name": name}), now_us()))?;
    Ok((public, role))
}

pub fn revoke(data_dir: &Path, spec: &str, reason: &str) -> Result<PublicKey> {
    let data = DataDir::open_existing(data_dir)?;
    let public = resolve(&data, spec)?;
    let conductor = data.conductor.clone();
    data.ledger.write(|t| t.revoke_key(&conductor, &public, reason, now_us()))?;
    Ok(public)
}

/// Replaces a person's or agent's key by a new one of the same role.
pub fn rotate(data_dir: &Path, old: &str, new: &str, reason: &str) -> Result<(PublicKey, PublicKey)> {
    let data = DataDir::open_existing(data_dir)?;
    let old = resolve(&data, old)?;
    let new_path = Path::new(new);
    let new = resolve(&data, new)?;
    // The successor inherits the old key's role in the journal; a key file
    // that says otherwise would be refused wherever it is used.
    if new_path.is_file() {
        let (file_role, _) = identity::read_public(new_path)?;
        let journal_role = data.ledger.key(&old)?.map(|k| k.role);
        if journal_role.is_some_and(|r| r != file_role) {
            bail!(
                "{} is a {file_role} key but it would replace a {} key; create the successor with \
                 `conductor keys new --role {}`",
                new_path.display(),
                journal_role.map_or("?", |r| r.as_str()),
                journal_role.map_or("?", |r| r.as_str())
            );
        }
    }
    let conductor = data.conductor.clone();
    data.ledger.write(|t| t.rotate_key(&conductor, &old, &new, reason, now_us()))?;
    Ok((old, new))
}

/// Gives the data directory a new conductor key. The old key signs the
/// hand-over and is kept (renamed) so earlier entries stay attributable.
pub fn rotate_conductor(data_dir: &Path, reason: &str) -> Result<(PublicKey, PublicKey)> {
    let data = DataDir::open_existing(data_dir)?;
    let old = data.conductor.clone();
    let new = Keypair::generate(Role::Conductor);
    let key_path = data.root.join("keys/conductor.key");
    let staged = data.root.join("keys/conductor.key.next");
    if staged.exists() {
        bail!(
            "{} exists: an earlier rotation did not finish. Check `conductor keys list` to see \
             which conductor key the journal holds, then remove or rename that file",
            staged.display()
        );
    }
    // Write the new key before the journal names it, so a crash between the
    // two leaves a spare file, never a journal whose conductor key is lost.
    new.save(&staged)?;
    data.ledger.write(|t| t.rotate_key(&old, &old.public(), &new.public(), reason, now_us()))?;
    let retired = data.root.join(format!("keys/conductor-{}.key.retired", old.public().key_id()));
    std::fs::rename(&key_path, &retired).with_context(|| format!("retiring {}", key_path.display()))?;
    std::fs::rename(&staged, &key_path).with_context(|| format!("installing {}", key_path.display()))?;
    Ok((old.public(), new.public()))
}

/// One key as `keys list` shows it: the journal's record, with its id and
/// the name it was registered with.
#[derive(Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub key_id: String,
    pub name: Option<String>,
}

pub fn list(data_dir: &Path) -> Result<Vec<Listed>> {
    let ledger = data::open_ledger_only(data_dir)?;
    let names = names(&ledger)?;
    ledger
        .keys()?
        .into_iter()
        .map(|record| {
            let key_id = PublicKey::from_hex(&record.public_key)?.key_id().to_string();
            Ok(Listed { name: names.get(&key_id).cloned(), key_id, record })
        })
        .collect()
}

/// Key id -> the name its key was registered with (`keys register
/// --name`); a rotated key's successor keeps its predecessor's name.
/// Reads the one entry that introduced each key, not the whole journal.
pub fn names(ledger: &Ledger) -> Result<BTreeMap<String, String>> {
    // Public key (hex) -> name, for successors to inherit.
    let mut by_public: BTreeMap<String, String> = BTreeMap::new();
    let mut names = BTreeMap::new();
    // In registration order, so a predecessor comes before its successor.
    for record in ledger.keys()? {
        let Some(entry) = ledger.entries(record.registered_seq, 1)?.into_iter().next() else { continue };
        if entry.seq != record.registered_seq {
            continue;
        }
        // Key events are the ledger's own kinds, their payloads checked by
        // the ledger (`entries` has no structs for them): read as JSON.
        let payload = entry.payload_json();
        let name = match Kind::parse(&entry.kind) {
            Some(Kind::KeyRegistered) => payload["name"].as_str().map(str::to_owned),
            Some(Kind::KeyRotated) => payload["old_key"].as_str().and_then(|old| by_public.get(old).cloned()),
            _ => None,
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else { continue };
        let key_id = PublicKey::from_hex(&record.public_key)?.key_id().to_string();
        by_public.insert(record.public_key, name.clone());
        names.insert(key_id, name);
    }
    Ok(names)
}

/// A key id as people read it: `Name (id)` when it was registered with a
/// name, else the id.
pub fn display(names: &BTreeMap<String, String>, key_id: &str) -> String {
    match names.get(key_id) {
        Some(name) => format!("{name} ({key_id})"),
        None => key_id.to_owned(),
    }
}

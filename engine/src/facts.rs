//! The conductor's side of memory: which spaces an agent may touch, how
//! facts enter the journal, and the operator's commands (`memory query`,
//! `memory erase`).
//!
//! A fact's value is personal data, so wherever one is journaled it is
//! sealed under its subject's key (`memory::seal`), which lives in the
//! memory store, not the journal. Erasing the subject deletes that key:
//! the value becomes unreadable in the database, the journal, exports and
//! backups at once, while the hash chain and signatures (which cover the
//! envelopes) still verify.

use std::path::Path;

use anyhow::{Context, Result, bail};
use memory::{Opened, Snapshot};
use serde_json::Value;

use crate::clock::now_us;
use crate::entries;

/// The stored space a mission's own facts live in.
pub fn own_space(mission: &str) -> String {
    format!("mission:{mission}")
}

/// A space as declared (`mission` or a shared name) as stored. Shared
/// names cannot contain `:` (they are validated names), so they never
/// collide with a mission's own space.
pub fn resolve(mission: &str, declared: &str) -> String {
    if declared == missions::OWN_SPACE { own_space(mission) } else { declared.to_owned() }
}

/// A mission's `memory_limits` as the memory store takes them.
pub fn limits(declared: &missions::MemoryLimits) -> memory::Limits {
    memory::Limits { facts: declared.facts, bytes: declared.bytes }
}

/// What one agent of one mission may read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Stored space names it may read.
    pub read: Vec<String>,
    /// The stored space its `remember` writes to, if any.
    pub write: Option<String>,
    /// The names as the mission declared them, for messages.
    declared: Vec<String>,
    own: String,
}

impl Scope {
    pub fn of(mission: &str, declared: &missions::MemoryScope) -> Scope {
        Scope {
            read: declared.read.iter().map(|s| resolve(mission, s)).collect(),
            write: declared.write.as_deref().map(|s| resolve(mission, s)),
            declared: declared.read.clone(),
            own: own_space(mission),
        }
    }

    /// The stored space an agent's `space` argument names ("" or
    /// `mission`: its own), if the mission lets it read there.
    pub fn readable(&self, asked: &str) -> Result<String, String> {
        let space = match asked {
            "" | missions::OWN_SPACE => self.own.clone(),
            other => other.to_owned(),
        };
        if self.read.contains(&space) {
            Ok(space)
        } else {
            Err(format!(
                "memory space `{asked}` is outside this agent's scope; the mission lets it read: {}",
                if self.declared.is_empty() { "nothing".to_owned() } else { self.declared.join(", ") }
            ))
        }
    }
}

/// The transaction time for a memory write now: memory refuses to go
/// back in transaction time, and the wall clock can step back.
pub fn tx_time(txn: &redb::WriteTransaction) -> Result<i64> {
    Ok(now_us().max(memory::last_transaction_time(txn)?))
}

/// A fact as journaled, its value sealed under its subject's key; `None`
/// for a fact whose subject was erased (nothing of its value is left).
pub fn journaled(txn: &redb::WriteTransaction, f: &memory::Fact) -> Result<Option<entries::JournaledFact>> {
    let Opened::Plain(plain) = &f.value else { return Ok(None) };
    Ok(Some(entries::JournaledFact {
        id: f.id.0,
        space: f.space.clone(),
        subject: f.subject.clone(),
        predicate: f.predicate.clone(),
        value: memory::seal(txn, &f.subject, plain)?,
        source: f.source.clone(),
        valid_from: f.valid_from,
        valid_to: f.valid_to,
        recorded_at: f.recorded_at,
        superseded_at: f.superseded_at,
        score: None,
    }))
}

/// Opens every sealed value in `payload` in place: any object with a
/// `subject` string and a `value` envelope. A value whose subject was
/// erased becomes `null` beside `"erased": true`. Returns the erased
/// subjects met, each once.
pub fn unseal<S: Snapshot>(snapshot: &S, payload: &mut Value) -> Result<Vec<String>> {
    let mut erased = Vec::new();
    unseal_into(snapshot, payload, None, &mut erased)?;
    Ok(erased)
}

fn unseal_into<S: Snapshot>(
    snapshot: &S,
    value: &mut Value,
    subject: Option<&str>,
    erased: &mut Vec<String>,
) -> Result<()> {
    match value {
        Value::Object(map) => {
            let here = map.get("subject").and_then(Value::as_str).map(str::to_owned);
            let subject = here.as_deref().or(subject);
            if let (Some(subject), Some(Value::String(text))) = (subject, map.get("value"))
                && text.starts_with(memory::ENVELOPE_PREFIX)
            {
                match memory::open(snapshot, subject, text)? {
                    Opened::Plain(plain) => {
                        map.insert("value".into(), Value::String(plain));
                    }
                    Opened::Erased => {
                        map.insert("value".into(), Value::Null);
                        map.insert("erased".into(), Value::Bool(true));
                        if !erased.iter().any(|s| s == subject) {
                            erased.push(subject.to_owned());
                        }
                    }
                }
            }
            let subject = subject.map(str::to_owned);
            for (key, child) in map.iter_mut() {
                if key != "value" {
                    unseal_into(snapshot, child, subject.as_deref(), erased)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                unseal_into(snapshot, item, subject, erased)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What `conductor memory query` asks.
#[derive(Debug, Clone, Default)]
pub struct QueryArgs {
    pub subject: Option<String>,
    pub predicate: Option<String>,
    pub words: Option<String>,
    /// Stored space names; empty: every space that holds facts.
    pub spaces: Vec<String>,
    pub valid_at: Option<i64>,
    pub known_at: Option<i64>,
    pub limit: usize,
}

/// What `memory query` found, and whether memory knows the subject asked
/// about at all (`None` for a word search).
#[derive(Debug)]
pub struct Found {
    pub recalled: memory::Recalled,
    pub subject_known: Option<bool>,
}

/// Reads memory for an operator or auditor, without writing.
pub fn query(data: &Path, args: &QueryArgs) -> Result<Found> {
    let select = match (&args.subject, &args.words) {
        (Some(subject), None) => match &args.predicate {
            Some(predicate) => memory::Select::Predicate { subject: subject.clone(), predicate: predicate.clone() },
            None => memory::Select::Subject(subject.clone()),
        },
        (None, Some(words)) => {
            if args.predicate.is_some() {
                bail!("--predicate goes with --subject, not with --words");
            }
            memory::Select::Words(words.clone())
        }
        (Some(_), Some(_)) => bail!("give --subject or --words, not both"),
        (None, None) => bail!("say what to look for: --subject ID (optionally --predicate P) or --words \"...\""),
    };
    let db = ledger::open_read_only(&crate::data::db_path(data)?)?;
    let read = db.begin_read().context("opening a read snapshot")?;
    let spaces = if args.spaces.is_empty() { memory::spaces(&read)? } else { args.spaces.clone() };
    if spaces.is_empty() {
        bail!("{} holds no facts yet", data.display());
    }
    let mut q = memory::Query::new(spaces, select);
    q.valid_at = args.valid_at;
    q.known_at = args.known_at;
    q.max_facts = args.limit.clamp(1, memory::RECALL_FACTS_MAX);
    let subject_known = match &args.subject {
        Some(subject) => Some(memory::knows_subject(&read, subject)?),
        None => None,
    };
    Ok(Found { recalled: memory::recall(&read, &q)?, subject_known })
}

/// Crypto-shreds one data subject, signed by an operator's key: the
/// erasure and its journal entry commit together.
pub fn erase(data: &Path, subject: &str, key_path: &Path, reason: &str) -> Result<memory::Erasure> {
    let key = crate::keys::load_role_key(key_path, identity::Role::Operator, "subjects are erased")?;
    let data = crate::data::DataDir::open_existing(data)?;
    let erasure = data.ledger.write(|t| -> Result<memory::Erasure> {
        let at = tx_time(t.redb())?;
        let erasure = memory::Writer::new(t.redb(), at)?.erase_subject(subject)?;
        if erasure.already {
            bail!("subject `{subject}` was already erased; nothing was changed");
        }
        if !erasure.keyed {
            // Most likely a typo: say so rather than journal an erasure
            // of nothing (this transaction is dropped, nothing changes).
            bail!(
                "memory holds nothing about subject `{subject}`; nothing was erased (check the id with \
                 `conductor memory query --subject ...`)"
            );
        }
        let erased = entries::MemoryErased {
            subject: subject.to_owned(),
            versions: erasure.versions,
            postings: erasure.postings,
            reason: reason.to_owned(),
        };
        entries::append(t, &key, &erased, now_us()).with_context(|| {
            format!("{} is not a registered operator key of this data directory", key_path.display())
        })?;
        Ok(erasure)
    })?;
    Ok(erasure)
}

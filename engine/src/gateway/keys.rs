//! The gateway's client keys: issued and revoked by an operator (each a
//! signed journal entry), listed for the operator, looked up per request.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::ACCOUNT_PREFIX;
use super::tables::KEYS;
use crate::clock::now_us;
use crate::data::{self, DataDir};
use crate::entries;

/// What a key looks like: this prefix and 64 hex digits.
pub(super) const KEY_PREFIX: &str = "cgw_";
/// The longest key name: it becomes part of an account name.
const NAME_BYTES_MAX: usize = 64;
/// The longest revocation reason: it is journaled, and a reason is a
/// sentence or a ticket reference, not a document.
const REASON_BYTES_MAX: usize = 1024;

/// A client key's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayKey {
    /// The first 16 hex digits of the key's hash: names the key in the
    /// journal without revealing it.
    pub key_id: String,
    pub name: String,
    /// The budget account every call is charged to.
    pub account: String,
    pub issued_seq: u64,
    /// Set once an operator revoked the key; it is refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When, why and by whom a key was revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revocation {
    /// The `gateway.key_revoked` entry.
    pub seq: u64,
    pub time_us: i64,
    pub reason: String,
    /// The operator key's id.
    pub by: String,
}

fn key_hash(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// What `gateway issue` made: the key (shown once) and its record.
#[derive(Debug)]
pub struct Issued {
    pub key: String,
    pub record: GatewayKey,
    pub limit: u64,
}

/// Issues a client key named `name`, bound to a new budget account
/// `gateway:NAME` with `limit` units, signed by an operator's key.
pub fn issue(data_dir: &Path, name: &str, limit: u64, operator_key: &Path) -> Result<Issued> {
    if name.is_empty()
        || name.len() > NAME_BYTES_MAX
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("a key name is 1 to {NAME_BYTES_MAX} letters, digits, `-` or `_`; `{name}` is not");
    }
    let operator = crate::keys::load_role_key(operator_key, identity::Role::Operator, "gateway keys are issued")?;
    // Only what starts something new creates a data directory; a key is
    // issued by an operator already registered in one.
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &operator.public(), operator_key)?;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let hash = key_hash(&key);
    let account = format!("{ACCOUNT_PREFIX}{name}");
    let conductor = data.conductor.clone();
    let record = data.ledger.write(|t| -> Result<GatewayKey> {
        if t.account(&account).is_ok() {
            bail!("a gateway key named `{name}` exists already (account {account}); pick another name");
        }
        let now = now_us();
        t.open_account(&conductor, &account, None, Some(limit), now)?;
        let key_id = hash[..16].to_owned();
        let issued = entries::GatewayKeyIssued {
            key_id: key_id.clone(),
            name: name.to_owned(),
            account: account.clone(),
            limit,
        };
        let (seq, _) = entries::append(t, &operator, &issued, now)?;
        let record =
            GatewayKey { key_id, name: name.to_owned(), account: account.clone(), issued_seq: seq, revoked: None };
        let mut table = t.redb().open_table(KEYS)?;
        table.insert(hash.as_str(), serde_json::to_string(&record)?.as_str())?;
        Ok(record)
    })?;
    Ok(Issued { key, record, limit })
}

/// The record of a presented key, if it is one (revoked or not: the
/// caller says which refusal applies).
pub fn lookup(data: &DataDir, key: &str) -> Result<Option<GatewayKey>> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let read = data.ledger.read()?;
    let table = match read.open_table(KEYS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let row = table.get(key_hash(key).as_str())?;
    row.map(|r| serde_json::from_str(r.value()).context("a gateway key record is corrupt")).transpose()
}

/// Every key's record, keyed by the key's hash, in hash order.
fn records(table: &impl redb::ReadableTable<&'static str, &'static str>) -> Result<Vec<(String, GatewayKey)>> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (hash, record) = row?;
        let record: GatewayKey = serde_json::from_str(record.value()).context("a gateway key record is corrupt")?;
        out.push((hash.value().to_owned(), record));
    }
    Ok(out)
}

/// One key as `gateway list` shows it.
#[derive(Debug, Serialize)]
pub struct KeyListing {
    pub name: String,
    pub key_id: String,
    pub account: String,
    pub limit: Option<u64>,
    pub settled: u64,
    pub pending: u64,
    pub issued_seq: u64,
    /// RFC 3339, from the `gateway.key_issued` entry.
    pub issued: String,
    pub revoked: Option<RevocationListing>,
}

#[derive(Debug, Serialize)]
pub struct RevocationListing {
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
    pub by: String,
}

/// Every key issued in `data_dir`, in name order, with its account's
/// balances; reads only.
pub fn list(data_dir: &Path) -> Result<Vec<KeyListing>> {
    let ledger = data::open_ledger_only(data_dir)?;
    let read = ledger.read()?;
    let mut keys = match read.open_table(KEYS) {
        Ok(table) => records(&table)?.into_iter().map(|(_, record)| record).collect::<Vec<_>>(),
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    drop(read);
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    let accounts: std::collections::BTreeMap<String, ledger::Account> = ledger.accounts()?.into_iter().collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let account = accounts.get(&key.account);
        let issued = ledger
            .entries(key.issued_seq, 1)?
            .first()
            .map_or_else(|| "unknown".to_owned(), |e| missions::format_timestamp(e.time_us));
        out.push(KeyListing {
            limit: account.and_then(|a| a.limit),
            settled: account.map_or(0, |a| a.settled),
            pending: account.map_or(0, |a| a.pending),
            issued,
            issued_seq: key.issued_seq,
            revoked: key.revoked.map(|r| RevocationListing {
                seq: r.seq,
                at: missions::format_timestamp(r.time_us),
                reason: r.reason,
                by: r.by,
            }),
            name: key.name,
            key_id: key.key_id,
            account: key.account,
        });
    }
    Ok(out)
}

/// Revokes the key named `which` (its name or key id), signed by an
/// operator's key (`gateway.key_revoked`). The key is refused (401) by
/// every server started after this; its account and spend stay.
pub fn revoke(data_dir: &Path, which: &str, reason: &str, operator_key: &Path) -> Result<GatewayKey> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > REASON_BYTES_MAX {
        bail!("give a reason of 1 to {REASON_BYTES_MAX} bytes with --reason: it is journaled with the revocation");
    }
    let operator = crate::keys::load_role_key(operator_key, identity::Role::Operator, "gateway keys are revoked")?;
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &operator.public(), operator_key)?;
    let by = operator.public().key_id().to_string();
    data.ledger.write(|t| -> Result<GatewayKey> {
        let all = records(&t.redb().open_table(KEYS)?)?;
        // A name is matched before a key id, so a name that happens to be
        // sixteen hex digits still names its own key.
        let found = all.iter().find(|(_, r)| r.name == which).or_else(|| all.iter().find(|(_, r)| r.key_id == which));
        let Some((hash, record)) = found else {
            let names: Vec<&str> = all.iter().map(|(_, r)| r.name.as_str()).collect();
            bail!("no gateway key is named `{which}` or has that key id; issued: {}", names.join(", "));
        };
        if let Some(r) = &record.revoked {
            bail!("gateway key `{}` ({}) was already revoked at journal entry {}", record.name, record.key_id, r.seq);
        }
        let now = now_us();
        let revoked = entries::GatewayKeyRevoked {
            key_id: record.key_id.clone(),
            name: record.name.clone(),
            account: record.account.clone(),
            reason: reason.to_owned(),
        };
        let (seq, _) = entries::append(t, &operator, &revoked, now)?;
        let mut record = record.clone();
        record.revoked = Some(Revocation { seq, time_us: now, reason: reason.to_owned(), by: by.clone() });
        t.redb().open_table(KEYS)?.insert(hash.as_str(), serde_json::to_string(&record)?.as_str())?;
        Ok(record)
    })
}

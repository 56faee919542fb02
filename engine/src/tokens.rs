//! API tokens: how scripts authenticate to `conductor serve` (issue #21).
//!
//! People sign in with their own key; a script cannot hold a session, so
//! an operator issues it a token: `cdt_<id>_<secret>`, where `id` is 16
//! hex digits naming the token (in the journal, in listings, in refusals)
//! and `secret` 64 hex digits of randomness shown once, to whoever issued
//! it. Each token carries one role (operator, reviewer or auditor, never
//! agent or conductor), optionally one mission it may touch, and an
//! expiry.
//!
//! **Nothing can be recovered from storage.** The journal's `token.issued`
//! and the `conductor_tokens` table hold BLAKE3 of the secret only. A
//! presented token is looked up by its id and its secret's hash compared
//! in constant time ([`blake3::Hash`]'s equality), so an answer's timing
//! says nothing about how much of a guess was right. Ids are not secret:
//! they are journaled, so knowing one proves nothing.
//!
//! **The table is a projection of the journal.** Issuing writes
//! `token.issued` and the record in one transaction, revoking writes
//! `token.revoked` and updates the record in another, so the table never
//! says what the journal does not.
//!
//! **Who asked.** Each entry names its requester ([`Requester`]): the
//! operator's key on the command line, or the session or token on the
//! API. The entries are signed by the conductor, which is what journaled
//! them; the journal's own rules keep `token.*` conductor-only.

use std::time::Duration;

use identity::Role;
use ledger::LedgerError;
use rand_core::{OsRng, RngCore};
use redb::{ReadTransaction, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::clock::now_us;
use crate::data::DataDir;
use crate::entries::{self, Requester};
use crate::state::{self, StateError};

/// What every token starts with, so a leaked one is recognisable (secret
/// scanners match prefixes) and a gateway key (`cgw_`) is never mistaken
/// for one.
pub const TOKEN_PREFIX: &str = "cdt_";
/// Random bytes of a token's id: 64 bits, so ids do not collide among
/// the tokens one deployment issues (a collision is retried anyway).
const ID_BYTES: usize = 8;
/// Random bytes of a token's secret: 256 bits, beyond guessing.
const SECRET_BYTES: usize = 32;
/// Characters of a whole token: prefix, id, `_`, secret (hex).
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + 2 * ID_BYTES + 1 + 2 * SECRET_BYTES;
/// The longest token name: a label for people, journaled with the token.
pub const NAME_BYTES_MAX: usize = 64;
/// How long a token lasts when its issuer says nothing: a quarter.
pub const LIFETIME_DEFAULT: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest lifetime: a token that expires before a script has read
/// it is a mistake in the arguments.
pub const LIFETIME_MIN: Duration = Duration::from_secs(60);
/// The longest lifetime: every token expires, so one that nobody
/// remembers stops working by itself; renewing once a year is cheap.
pub const LIFETIME_MAX: Duration = Duration::from_secs(366 * 24 * 3600);
/// Tokens in force at once (neither revoked nor expired). A bound on
/// what one operator's script gone wrong can issue; far above a real
/// deployment's scripts.
pub const TOKENS_IN_FORCE_MAX: usize = 1024;
/// Ids drawn before giving up on a fresh one. With 64-bit ids a second
/// draw is already astronomically unlikely; a bound keeps a broken random
/// source from looping forever.
const ID_ATTEMPTS_MAX: usize = 4;

/// token id -> the token's record ([`Stored`], JSON).
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("conductor_tokens");

/// The roles a token may carry: the people's roles. Agent and conductor
/// keys act only inside the engine, never over the API.
pub const ROLES: [Role; 3] = [Role::Operator, Role::Reviewer, Role::Auditor];

/// Why a token could not be issued, revoked or listed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The role is not one a token may carry.
    #[error("tokens carry an operator, reviewer or auditor role, not `{role}`")]
    Role { role: Role },
    /// The mission the token was to be scoped to is not in this journal.
    #[error(
        "there is no mission `{mission}` here; scope the token to a mission id that `conductor mission list` shows"
    )]
    UnknownMission { mission: String },
    /// The name is empty, too long, or has characters other than letters,
    /// digits, `-`, `_` and `.`.
    #[error("a token name is 1 to {NAME_BYTES_MAX} letters, digits, `-`, `_` or `.`; `{name}` is not")]
    Name { name: String },
    /// The lifetime asked for is outside what tokens may have.
    #[error(
        "a token lasts from {} seconds to {} days; {given_s} seconds is outside that",
        LIFETIME_MIN.as_secs(),
        LIFETIME_MAX.as_secs() / 86_400
    )]
    Lifetime { given_s: u64 },
    /// Issuing one more would pass [`TOKENS_IN_FORCE_MAX`].
    #[error("{TOKENS_IN_FORCE_MAX} tokens are in force already; revoke the ones no script uses before issuing more")]
    TooMany,
    /// No token has this id.
    #[error("no token has id `{id}`; `conductor tokens list` (or GET /api/tokens) shows the ids")]
    NotFound { id: String },
    /// The token was revoked before.
    #[error("token `{id}` was already revoked at journal entry {seq}")]
    AlreadyRevoked { id: String, seq: u64 },
    /// No fresh id could be drawn (the random source repeats itself).
    #[error("could not draw an unused token id in {ID_ATTEMPTS_MAX} attempts; the random source is broken")]
    NoFreshId,
    /// The journal refused the entry or could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A projection (missions) could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The token table could not be read or written.
    #[error("token storage: {0}")]
    Storage(#[from] redb::Error),
    /// A stored record does not decode: the database was damaged.
    #[error("the stored record of token `{id}` is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

/// Why a presented token is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// It does not have a token's shape.
    #[error(
        "that is not an API token: a token is `{TOKEN_PREFIX}`, 16 hex digits, `_` and 64 hex digits, as it was \
         printed when issued"
    )]
    Malformed,
    /// No token has this id, or its secret is not this one. Said the same
    /// way for both, so a caller learns nothing about which.
    #[error("API token `{id}` is not known here (or its secret is wrong); ask an operator for a token")]
    Unknown { id: String },
    /// The token was revoked (its secret was right).
    #[error("API token `{id}` was revoked (journal entry {seq}); ask an operator for a new one")]
    Revoked { id: String, seq: u64 },
    /// The token expired (its secret was right).
    #[error("API token `{id}` expired at {}; ask an operator for a new one", missions::format_timestamp(*expires_us))]
    Expired { id: String, expires_us: i64 },
    /// The token table could not be read.
    #[error("token storage: {0}")]
    Storage(#[from] redb::Error),
    /// The token's stored record does not decode.
    #[error("the stored record of token `{id}` is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

/// A token as listed and as a verified request carries it: never its
/// secret nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public id (16 hex digits).
    pub id: String,
    #[serde(with = "role_text")]
    pub role: Role,
    /// The one mission it may touch; `None`: any.
    pub mission: Option<String>,
    /// When it stops working (Unix µs); `None`: never (no token issued
    /// by this version, which always sets one).
    pub expires_us: Option<i64>,
    pub name: String,
    /// The `token.issued` entry.
    pub issued_seq: u64,
    pub issued_us: i64,
    pub issued_by: Requester,
    /// Set once it is revoked.
    pub revoked: Option<Revocation>,
}

/// When and by whom a token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The `token.revoked` entry.
    pub seq: u64,
    pub time_us: i64,
    pub by: Requester,
}

/// Whether a token works at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    InForce,
    Revoked,
    Expired,
}

impl Token {
    /// Whether the token works at `now_us`: a revocation outranks expiry.
    pub fn state_at(&self, now_us: i64) -> TokenState {
        if self.revoked.is_some() {
            TokenState::Revoked
        } else if self.expires_us.is_some_and(|at| at <= now_us) {
            TokenState::Expired
        } else {
            TokenState::InForce
        }
    }
}

/// A token as `conductor tokens list --json` and `GET /api/tokens` show
/// it: the record, whether it works now, and times in RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub mission: Option<String>,
    pub status: TokenState,
    pub issued: String,
    pub issued_seq: u64,
    pub issued_by: Requester,
    pub expires: Option<String>,
    pub revoked: Option<RevocationListing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevocationListing {
    pub at: String,
    pub seq: u64,
    pub by: Requester,
}

impl Token {
    /// The token as listings show it at `now_us`.
    pub fn listing(&self, now_us: i64) -> Listing {
        Listing {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role.as_str(),
            mission: self.mission.clone(),
            status: self.state_at(now_us),
            issued: missions::format_timestamp(self.issued_us),
            issued_seq: self.issued_seq,
            issued_by: self.issued_by.clone(),
            expires: self.expires_us.map(missions::format_timestamp),
            revoked: self.revoked.as_ref().map(|r| RevocationListing {
                at: missions::format_timestamp(r.time_us),
                seq: r.seq,
                by: r.by.clone(),
            }),
        }
    }
}

/// The record as stored: the token and its secret's hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    token: Token,
    /// BLAKE3 of the 32 secret bytes, hex.
    secret_blake3: String,
}

/// What issuing made: the token to hand over (shown once) and its record.
pub struct IssuedToken {
    /// The whole token, `cdt_<id>_<secret>`.
    pub secret: String,
    pub token: Token,
}

impl std::fmt::Debug for IssuedToken {
    // The secret never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("secret", &"<redacted>").field("token", &self.token).finish()
    }
}

/// What a token is to be: everything an operator chooses.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub role: Role,
    /// The one mission it may touch; `None`: any.
    pub mission: Option<&'a str>,
    /// How long it lasts; `None`: [`LIFETIME_DEFAULT`].
    pub lifetime: Option<Duration>,
    pub name: &'a str,
}

/// Issues a token as `spec` says, journaled as `token.issued` (signed by
/// the conductor, naming `by`) in the same transaction as its record.
pub fn issue(data: &DataDir, spec: &TokenSpec<'_>, by: Requester) -> Result<IssuedToken, TokenError> {
    if !ROLES.contains(&spec.role) {
        return Err(TokenError::Role { role: spec.role });
    }
    check_name(spec.name)?;
    let lifetime = spec.lifetime.unwrap_or(LIFETIME_DEFAULT);
    if !(LIFETIME_MIN..=LIFETIME_MAX).contains(&lifetime) {
        return Err(TokenError::Lifetime { given_s: lifetime.as_secs() });
    }
    let mut secret = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    let secret_blake3 = blake3::hash(&secret).to_hex().to_string();
    let conductor = data.conductor.clone();
    let token = data.ledger.write(|t| -> Result<Token, TokenError> {
        if let Some(mission) = spec.mission
            && state::mission_in(t.redb(), mission)?.is_none()
        {
            return Err(TokenError::UnknownMission { mission: mission.to_owned() });
        }
        let now = now_us();
        let table = t.redb().open_table(TOKENS).map_err(redb::Error::from)?;
        let mut in_force = 0;
        for row in table.iter().map_err(redb::Error::from)? {
            let (id, value) = row.map_err(redb::Error::from)?;
            if stored(id.value(), value.value())?.token.state_at(now) == TokenState::InForce {
                in_force += 1;
            }
        }
        if in_force >= TOKENS_IN_FORCE_MAX {
            return Err(TokenError::TooMany);
        }
        let mut id = None;
        for _ in 0..ID_ATTEMPTS_MAX {
            let mut bytes = [0u8; ID_BYTES];
            OsRng.fill_bytes(&mut bytes);
            let candidate = hex::encode(bytes);
            if table.get(candidate.as_str()).map_err(redb::Error::from)?.is_none() {
                id = Some(candidate);
                break;
            }
        }
        drop(table);
        let id = id.ok_or(TokenError::NoFreshId)?;
        // Saturating: LIFETIME_MAX in µs is far inside an i64.
        let lifetime_us = i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX);
        let expires_us = now.saturating_add(lifetime_us);
        let issued = entries::TokenIssued {
            token: id.clone(),
            role: spec.role.as_str().to_owned(),
            mission: spec.mission.map(str::to_owned),
            expires_us: Some(expires_us),
            secret_blake3: secret_blake3.clone(),
            name: spec.name.to_owned(),
            by: by.clone(),
        };
        let (seq, _) = entries::append(t, &conductor, &issued, now)?;
        let token = Token {
            id,
            role: spec.role,
            mission: spec.mission.map(str::to_owned),
            expires_us: Some(expires_us),
            name: spec.name.to_owned(),
            issued_seq: seq,
            issued_us: now,
            issued_by: by,
            revoked: None,
        };
        put(t.redb(), &Stored { token: token.clone(), secret_blake3 })?;
        Ok(token)
    })?;
    let secret = format!("{TOKEN_PREFIX}{}_{}", token.id, hex::encode(secret));
    Ok(IssuedToken { secret, token })
}

/// Revokes token `id`, journaled as `token.revoked` (naming `by`) in the
/// same transaction as its record's change. Requests with it are refused
/// from then on, by a running server too (it reads the record on each).
pub fn revoke(data: &DataDir, id: &str, by: Requester) -> Result<Token, TokenError> {
    let conductor = data.conductor.clone();
    data.ledger.write(|t| -> Result<Token, TokenError> {
        let found = {
            let table = t.redb().open_table(TOKENS).map_err(redb::Error::from)?;
            let row = table.get(id).map_err(redb::Error::from)?;
            row.map(|v| stored(id, v.value())).transpose()?
        };
        let Some(mut record) = found else {
            return Err(TokenError::NotFound { id: id.to_owned() });
        };
        if let Some(r) = &record.token.revoked {
            return Err(TokenError::AlreadyRevoked { id: id.to_owned(), seq: r.seq });
        }
        let now = now_us();
        let revoked = entries::TokenRevoked { token: id.to_owned(), by: by.clone() };
        let (seq, _) = entries::append(t, &conductor, &revoked, now)?;
        record.token.revoked = Some(Revocation { seq, time_us: now, by });
        put(t.redb(), &record)?;
        Ok(record.token)
    })
}

/// The token `presented` stands for, if it is one in force at `now_us`.
/// The secret is checked before anything else is said: only its holder
/// learns that a token was revoked or expired.
pub fn verify(read: &ReadTransaction, presented: &str, now_us: i64) -> Result<Token, VerifyError> {
    let (id, secret) = parse(presented)?;
    let record = match read.open_table(TOKENS) {
        Ok(table) => {
            let row = table.get(id).map_err(redb::Error::from)?;
            let decoded = row.map(|v| serde_json::from_slice::<Stored>(v.value())).transpose();
            decoded.map_err(|e| VerifyError::Corrupt { id: id.to_owned(), reason: e.to_string() })?
        }
        // No token was ever issued here.
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let presented_hash = blake3::hash(&secret);
    // An unknown id is compared against a hash no secret has (a 256-bit
    // preimage of zeros), so both refusals do the same work.
    let expected = record.as_ref().and_then(|r| blake3::Hash::from_hex(&r.secret_blake3).ok());
    let matches = presented_hash == expected.unwrap_or(blake3::Hash::from_bytes([0; 32]));
    let Some(record) = record.filter(|_| matches && expected.is_some()) else {
        return Err(VerifyError::Unknown { id: id.to_owned() });
    };
    let token = record.token;
    match token.state_at(now_us) {
        TokenState::InForce => Ok(token),
        TokenState::Revoked => {
            Err(VerifyError::Revoked { id: token.id.clone(), seq: token.revoked.as_ref().map_or(0, |r| r.seq) })
        }
        TokenState::Expired => Err(VerifyError::Expired { id: token.id, expires_us: token.expires_us.unwrap_or(0) }),
    }
}

/// One token by id (revoked and expired ones too).
pub fn get(read: &ReadTransaction, id: &str) -> Result<Option<Token>, TokenError> {
    let table = match read.open_table(TOKENS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let row = table.get(id).map_err(redb::Error::from)?;
    row.map(|v| stored(id, v.value()).map(|s| s.token)).transpose()
}

/// Every token issued here (revoked and expired ones too), in the order
/// they were issued.
pub fn list(read: &ReadTransaction) -> Result<Vec<Token>, TokenError> {
    let table = match read.open_table(TOKENS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let mut out = Vec::new();
    for row in table.iter().map_err(redb::Error::from)? {
        let (id, value) = row.map_err(redb::Error::from)?;
        out.push(stored(id.value(), value.value())?.token);
    }
    out.sort_by_key(|t| t.issued_seq);
    Ok(out)
}

/// Splits a presented token into its id and secret bytes.
fn parse(presented: &str) -> Result<(&str, [u8; SECRET_BYTES]), VerifyError> {
    let rest = presented.strip_prefix(TOKEN_PREFIX).ok_or(VerifyError::Malformed)?;
    if presented.len() != TOKEN_CHARS {
        return Err(VerifyError::Malformed);
    }
    // Lengths are checked and the prefix is ASCII, so these are char
    // boundaries unless the text holds multi-byte characters: `get`
    // answers `None` then, never panics.
    let id = rest.get(..2 * ID_BYTES).ok_or(VerifyError::Malformed)?;
    let secret_hex = rest.get(2 * ID_BYTES..).and_then(|s| s.strip_prefix('_')).ok_or(VerifyError::Malformed)?;
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex(id) || !lower_hex(secret_hex) {
        return Err(VerifyError::Malformed);
    }
    let mut secret = [0u8; SECRET_BYTES];
    hex::decode_to_slice(secret_hex, &mut secret).map_err(|_| VerifyError::Malformed)?;
    Ok((id, secret))
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        let mut shown = name.to_owned();
        crate::text::truncate_utf8(&mut shown, NAME_BYTES_MAX);
        Err(TokenError::Name { name: shown })
    }
}

fn stored(id: &str, bytes: &[u8]) -> Result<Stored, TokenError> {
    serde_json::from_slice(bytes).map_err(|e| TokenError::Corrupt { id: id.to_owned(), reason: e.to_string() })
}

fn put(txn: &redb::WriteTransaction, record: &Stored) -> Result<(), TokenError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| TokenError::Corrupt { id: record.token.id.clone(), reason: e.to_string() })?;
    let mut table = txn.open_table(TOKENS).map_err(redb::Error::from)?;
    table.insert(record.token.id.as_str(), bytes.as_slice()).map_err(redb::Error::from)?;
    Ok(())
}

/// A role as the journal spells it (`identity::Role` has no serde).
mod role_text {
    use identity::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (tempfile::TempDir, DataDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open_or_create(&dir.path().join("data")).expect("data dir");
        (dir, data)
    }

    fn cli() -> Requester {
        Requester {
            via: "cli".into(),
            role: Some("operator".into()),
            key: Some("k".into()),
            token: None,
            name: Some("Op".into()),
        }
    }

    fn spec(role: Role) -> TokenSpec<'static> {
        TokenSpec { role, mission: None, lifetime: None, name: "nightly" }
    }

    /// A mission record, as `run` declares one.
    fn mission(data: &DataDir, id: &str) {
        let record = state::MissionRecord {
            id: id.to_owned(),
            name: "m".into(),
            status: state::MissionStatus::Running,
            budget_limit: 1,
            tasks_total: 0,
            declared_seq: 0,
        };
        data.ledger.write(|t| state::put_mission(t.redb(), &record).map_err(TokenError::from)).expect("mission");
    }

    fn verify_now(data: &DataDir, presented: &str) -> Result<Token, VerifyError> {
        verify(&data.ledger.read().expect("read"), presented, now_us())
    }

    #[test]
    fn an_issued_token_verifies_with_its_role_and_scope_and_is_journaled_by_hash() {
        let (_dir, data) = data();
        mission(&data, "m-1");
        let issued = issue(&data, &TokenSpec { mission: Some("m-1"), ..spec(Role::Reviewer) }, cli()).expect("issued");
        assert_eq!(issued.secret.len(), TOKEN_CHARS);
        assert!(issued.secret.starts_with(&format!("{TOKEN_PREFIX}{}_", issued.token.id)));
        let token = verify_now(&data, &issued.secret).expect("verifies");
        assert_eq!((token.role, token.mission.as_deref()), (Role::Reviewer, Some("m-1")));
        assert_eq!(token, issued.token);
        assert!(!format!("{issued:?}").contains(&issued.secret[TOKEN_PREFIX.len() + 17..]), "Debug hides the secret");

        let entry = data.ledger.entries(token.issued_seq, 1).expect("entries").pop().expect("token.issued");
        let payload: entries::TokenIssued = entries::decode(&entry).expect("a token.issued");
        let secret_hex = &issued.secret[TOKEN_PREFIX.len() + 17..];
        let secret = hex::decode(secret_hex).expect("hex");
        assert_eq!(payload.secret_blake3, blake3::hash(&secret).to_hex().to_string());
        assert_eq!((payload.token.as_str(), payload.by), (token.id.as_str(), cli()));
        assert!(!String::from_utf8_lossy(&entry.payload).contains(secret_hex), "the journal holds no secret");
        let listed = list(&data.ledger.read().expect("read")).expect("list");
        assert_eq!(listed, vec![token]);
    }

    #[test]
    fn a_wrong_secret_or_unknown_id_is_unknown_and_a_bad_shape_malformed() {
        let (_dir, data) = data();
        let issued = issue(&data, &spec(Role::Operator), cli()).expect("issued");
        // Same id, one secret digit changed: told apart from an unknown id
        // neither by the answer nor by the work done (both compare hashes).
        let mut wrong = issued.secret.clone();
        let last = wrong.pop().expect("a digit");
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(verify_now(&data, &wrong), Err(VerifyError::Unknown { id }) if id == issued.token.id));
        let other = format!("{TOKEN_PREFIX}{}_{}", "0".repeat(16), &issued.secret[TOKEN_PREFIX.len() + 17..]);
        assert!(matches!(verify_now(&data, &other), Err(VerifyError::Unknown { .. })));
        for bad in [
            "",
            "cdt_",
            "Bearer x",
            &issued.secret[..issued.secret.len() - 1],
            &format!("{}0", issued.secret),
            &issued.secret.to_uppercase(),
            &issued.secret.replace(&format!("{}_", issued.token.id), &format!("{}-", issued.token.id)),
            &format!("cgw_{}", &issued.secret[4..]),
            // Multi-byte characters where the id and secret split: no panic.
            &format!("{TOKEN_PREFIX}{}é{}", "a".repeat(15), "b".repeat(64)),
        ] {
            assert!(matches!(verify_now(&data, bad), Err(VerifyError::Malformed)), "{bad:?}");
        }
    }

    #[test]
    fn a_revoked_token_is_refused_and_cannot_be_revoked_twice() {
        let (_dir, data) = data();
        let issued = issue(&data, &spec(Role::Auditor), cli()).expect("issued");
        let revoked = revoke(&data, &issued.token.id, cli()).expect("revoked");
        let seq = revoked.revoked.as_ref().expect("revocation").seq;
        let entry = data.ledger.entries(seq, 1).expect("entries").pop().expect("token.revoked");
        let payload: entries::TokenRevoked = entries::decode(&entry).expect("a token.revoked");
        assert_eq!(payload.token, issued.token.id);
        assert!(matches!(verify_now(&data, &issued.secret), Err(VerifyError::Revoked { seq: s, .. }) if s == seq));
        assert!(matches!(
            revoke(&data, &issued.token.id, cli()),
            Err(TokenError::AlreadyRevoked { seq: s, .. }) if s == seq
        ));
        assert!(matches!(revoke(&data, "0123456789abcdef", cli()), Err(TokenError::NotFound { .. })));
        let head = data.ledger.head().expect("head").0;
        assert_eq!(head, seq + 1, "refused revocations journal nothing");
    }

    #[test]
    fn a_token_stops_working_when_it_expires() {
        let (_dir, data) = data();
        let issued =
            issue(&data, &TokenSpec { lifetime: Some(LIFETIME_MIN), ..spec(Role::Operator) }, cli()).expect("issued");
        let expires = issued.token.expires_us.expect("an expiry");
        let read = data.ledger.read().expect("read");
        assert!(verify(&read, &issued.secret, expires - 1).is_ok());
        assert!(matches!(
            verify(&read, &issued.secret, expires),
            Err(VerifyError::Expired { expires_us, .. }) if expires_us == expires
        ));
    }

    #[test]
    fn issuing_refuses_machine_roles_unknown_missions_bad_names_and_lifetimes() {
        let (_dir, data) = data();
        for role in [Role::Agent, Role::Conductor] {
            assert!(matches!(issue(&data, &spec(role), cli()), Err(TokenError::Role { .. })));
        }
        let unknown = TokenSpec { mission: Some("nope"), ..spec(Role::Operator) };
        assert!(
            matches!(issue(&data, &unknown, cli()), Err(TokenError::UnknownMission { mission }) if mission == "nope")
        );
        let long = "n".repeat(NAME_BYTES_MAX + 1);
        for name in ["", "has space", "new\nline", long.as_str()] {
            let bad = TokenSpec { name, ..spec(Role::Operator) };
            assert!(matches!(issue(&data, &bad, cli()), Err(TokenError::Name { .. })), "{name:?}");
        }
        for lifetime in [Duration::from_secs(1), LIFETIME_MAX + Duration::from_secs(1)] {
            let bad = TokenSpec { lifetime: Some(lifetime), ..spec(Role::Operator) };
            assert!(matches!(issue(&data, &bad, cli()), Err(TokenError::Lifetime { .. })));
        }
        assert_eq!(data.ledger.head().expect("head").0, 1, "nothing but genesis was journaled");
        assert!(list(&data.ledger.read().expect("read")).expect("list").is_empty());
    }

    #[test]
    fn no_more_than_the_limit_are_in_force_at_once() {
        let (_dir, data) = data();
        // Records only, as issuing the limit one by one would take a
        // commit each: the count is over the table, whatever wrote it.
        let by = cli();
        data.ledger
            .write(|t| -> Result<(), TokenError> {
                for i in 0..TOKENS_IN_FORCE_MAX {
                    let token = Token {
                        id: format!("{i:016x}"),
                        role: Role::Reviewer,
                        mission: None,
                        expires_us: Some(i64::MAX),
                        name: "n".into(),
                        issued_seq: 0,
                        issued_us: 0,
                        issued_by: by.clone(),
                        revoked: None,
                    };
                    put(t.redb(), &Stored { token, secret_blake3: String::new() })?;
                }
                Ok(())
            })
            .expect("records");
        assert!(matches!(issue(&data, &spec(Role::Operator), cli()), Err(TokenError::TooMany)));
        revoke(&data, &format!("{:016x}", 7), cli()).expect("revoked");
        issue(&data, &spec(Role::Operator), cli()).expect("room for one again");
    }
}

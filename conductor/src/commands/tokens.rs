//! `conductor tokens`: API tokens for scripts, issued, listed and revoked
//! on this host with the data directory (no server may hold it: redb
//! allows one process). While a server runs, an operator signed in to it
//! does the same over `POST`, `GET` and `DELETE /api/tokens`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use identity::Role;

use engine::data::{self, DataDir};
use engine::entries::Requester;
use engine::tokens::{self, TokenError, TokenSpec, TokenState};

use crate::cli::{DataArg, HumanRole};
use crate::exit;
use crate::stdout::{errln, outln};

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Issue an API token for a script, signed off by your operator key
    /// and journaled (`token.issued`, naming your key). The token is
    /// printed once; the journal and the database keep only its hash.
    /// Scripts send it as `Authorization: Bearer TOKEN` to `conductor
    /// serve`, and may then do what the role allows (on one mission only,
    /// with --mission). Every token expires.
    #[command(after_help = "Examples:\n  \
        conductor tokens issue --role operator --name nightly-intake --data ./data --key operator.key\n  \
        conductor tokens issue --role reviewer --mission MISSION_ID --expires 30d --name triage-bot \\\n      \
        --data ./data --key operator.key\n  \
        curl -H \"Authorization: Bearer cdt_…\" http://127.0.0.1:8080/api/gates\n\n\
        Exit status 2: the role, mission, name or lifetime is not one a token may have; nothing was issued.")]
    Issue {
        #[command(flatten)]
        data: DataArg,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: HumanRole,
        /// The one mission the token may touch (its id, from `conductor
        /// mission list`); routes about no single mission refuse it.
        #[arg(long, value_name = "ID")]
        mission: Option<String>,
        /// How long it lasts: a number and a unit, s, m, h or d (`30d`),
        /// from a minute to 366 days.
        #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_lifetime)]
        expires: Duration,
        /// A label for people (letters, digits, `-`, `_`, `.`), journaled.
        #[arg(long)]
        name: String,
        /// Your operator key file (registered in this data directory).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print the token and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens issued here: id, name, role, mission, expiry and
    /// status. Never a secret. Reads only.
    #[command(after_help = "Example:\n  conductor tokens list --data ./data")]
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token, signed off by your operator key and journaled
    /// (`token.revoked`). Requests with it are refused (401) from then on.
    /// Stop the server first, or revoke it over the API
    /// (`DELETE /api/tokens/ID`) while it runs.
    #[command(after_help = "Example:\n  conductor tokens revoke 3f9a0c1e5b7d2468 --data ./data --key operator.key")]
    Revoke {
        /// The token's id (`conductor tokens list`).
        id: String,
        #[command(flatten)]
        data: DataArg,
        /// Your operator key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

/// `--expires`: `90d`, `12h`, `30m`, `600s`.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let usage = || format!("`{text}` is not a duration: give a number and a unit, s, m, h or d (e.g. 30d)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(usage()),
    };
    number.checked_mul(unit_s).map(Duration::from_secs).ok_or_else(usage)
}

pub(crate) fn command(command: TokensCommand) -> Result<u8> {
    match command {
        TokensCommand::Issue { data, role, mission, expires, name, key, json } => {
            let dir = DataDir::open_existing(&data.data)?;
            let by = operator(&dir, &key, "tokens are issued")?;
            let spec =
                TokenSpec { role: Role::from(role), mission: mission.as_deref(), lifetime: Some(expires), name: &name };
            let issued = match tokens::issue(&dir, &spec, by) {
                Ok(issued) => issued,
                Err(e) => return refused(e),
            };
            let t = &issued.token;
            let expires = t.expires_us.map_or_else(|| "never".to_owned(), missions::format_timestamp);
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"token": issued.secret, "id": t.id, "name": t.name, "role": t.role.as_str(),
                                       "mission": t.mission, "expires": expires, "issued_seq": t.issued_seq})
                )?;
            } else {
                outln!("API token `{}` (shown once; keep it secret):\n{}", t.name, issued.secret)?;
                outln!("id       {}", t.id)?;
                outln!("role     {}", t.role)?;
                outln!("mission  {}", t.mission.as_deref().unwrap_or("any"))?;
                outln!("expires  {expires}")?;
                outln!("send it as `Authorization: Bearer TOKEN` to `conductor serve`")?;
            }
            Ok(exit::OK)
        }
        TokensCommand::List { data, json } => {
            let ledger = data::open_ledger_only(&data.data)?;
            let listed = tokens::list(&ledger.read()?)?;
            let now = engine::clock::now_us();
            if json {
                let rows: Vec<tokens::Listing> = listed.iter().map(|t| t.listing(now)).collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?)?;
                return Ok(exit::OK);
            }
            outln!("{:<16}  {:<24} {:<9} {:<36} {:<27} status", "id", "name", "role", "mission", "expires")?;
            for t in &listed {
                let expires = t.expires_us.map_or_else(|| "never".to_owned(), missions::format_timestamp);
                outln!(
                    "{:<16}  {:<24} {:<9} {:<36} {:<27} {}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.mission.as_deref().unwrap_or("any"),
                    expires,
                    status(t.state_at(now))
                )?;
            }
            Ok(exit::OK)
        }
        TokensCommand::Revoke { id, data, key } => {
            let dir = DataDir::open_existing(&data.data)?;
            let by = operator(&dir, &key, "tokens are revoked")?;
            let revoked = match tokens::revoke(&dir, &id, by) {
                Ok(revoked) => revoked,
                Err(e) => return refused(e),
            };
            let seq = revoked.revoked.as_ref().map_or(0, |r| r.seq);
            outln!("revoked API token `{}` ({}) at journal entry {seq}", revoked.name, revoked.id)?;
            Ok(exit::OK)
        }
    }
}

/// The operator named in `by`: `key` must be an operator key registered
/// and in force in `data`.
fn operator(data: &DataDir, key: &Path, action: &str) -> Result<Requester> {
    let operator = engine::keys::load_role_key(key, Role::Operator, action)?;
    engine::keys::require_registered(data, &operator.public(), key)?;
    let key_id = operator.public().key_id().to_string();
    let name = engine::keys::names(&data.ledger)?.remove(&key_id);
    Ok(Requester {
        via: "cli".to_owned(),
        role: Some(Role::Operator.as_str().to_owned()),
        key: Some(key_id),
        token: None,
        name,
    })
}

/// Exits 2 for arguments no token may have, 1 for the rest.
fn refused(e: TokenError) -> Result<u8> {
    match e {
        TokenError::Role { .. }
        | TokenError::UnknownMission { .. }
        | TokenError::Name { .. }
        | TokenError::Lifetime { .. } => {
            errln!("error: {e}");
            Ok(exit::INVALID)
        }
        other => Err(other.into()),
    }
}

fn status(state: TokenState) -> &'static str {
    match state {
        TokenState::InForce => "in force",
        TokenState::Revoked => "revoked",
        TokenState::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_lifetime("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_lifetime("600s"), Ok(Duration::from_secs(600)));
        for bad in ["", "d", "30", "30w", "-1d", "1.5d", "99999999999999999999d", "18446744073709551615d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}

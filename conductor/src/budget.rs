//! Budget extensions: a reviewer raises a mission's limit with a posting
//! signed by their own key.

use std::path::Path;

use anyhow::{Result, bail};
use identity::Role;

use crate::clock::now_us;
use crate::data::DataDir;
use crate::state;

/// Raises `account`'s limit by `amount`, signed by the reviewer key at
/// `key_path` (which the journal must have registered).
pub fn extend(data_dir: &Path, account: &str, amount: u64, key_path: &Path, reason: &str) -> Result<ledger::Account> {
    let reviewer = crate::keys::load_human_key(key_path)?;
    if reviewer.role() != Role::Reviewer {
        bail!(
            "{} is a {} key; budgets are extended with a reviewer key (`conductor keys new --role reviewer`)",
            key_path.display(),
            reviewer.role()
        );
    }
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &reviewer.public(), key_path)?;
    data.ledger.write(|t| -> Result<ledger::Account> {
        let raised = t.extend(&reviewer, account, amount, reason, now_us())?;
        if let Some(mut mission) = state::mission_in(t.redb(), account)? {
            mission.budget_limit = raised.limit.unwrap_or(mission.budget_limit);
            state::put_mission(t.redb(), &mission)?;
        }
        Ok(raised)
    })
}

//! Budget extensions: a reviewer raises a mission's limit with a posting
//! signed by their own key.

use std::path::Path;

use anyhow::Result;

use crate::clock::now_us;
use crate::data::DataDir;

/// Raises `account`'s limit by `amount`, signed by the reviewer key at
/// `key_path` (which the journal must have registered).
pub fn extend(data_dir: &Path, account: &str, amount: u64, key_path: &Path, reason: &str) -> Result<ledger::Account> {
    let reviewer = crate::keys::load_reviewer_key(key_path, "budgets are extended")?;
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &reviewer.public(), key_path)?;
    // The limit in force lives in the budget account alone; the mission
    // record keeps the limit it was declared with.
    Ok(data.ledger.write(|t| t.extend(&reviewer, account, amount, reason, now_us()))?)
}

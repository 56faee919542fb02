//! Budget extensions: a reviewer raises a mission's limit with a posting
//! signed by their own key.

use std::path::Path;

use anyhow::{Result, bail};

use crate::clock::now_us;
use crate::data::DataDir;

/// Raises `account`'s limit by `amount`, signed by the reviewer key at
/// `key_path` (which the journal must have registered).
pub fn extend(data_dir: &Path, account: &str, amount: u64, key_path: &Path, reason: &str) -> Result<ledger::Account> {
    let reviewer = crate::keys::load_reviewer_key(key_path, "budgets are extended")?;
    let data = DataDir::open_existing(data_dir)?;
    crate::keys::require_registered(&data, &reviewer.public(), key_path)?;
    // A mission waiting on its budget gate is extended through the gate,
    // so the gate's reviewers, quorum and deadline are what decide.
    let read = data.ledger.read()?;
    if let Some(gate) = crate::state::gates(&read)?.into_iter().find(|g| {
        g.status == crate::state::GateStatus::Pending && g.budget.as_ref().is_some_and(|b| b.account == account)
    }) {
        bail!(
            "mission {} is waiting on its budget gate {}; decide it with `conductor gates approve {} --amount {amount} --key {}`",
            gate.mission,
            gate.id,
            gate.id,
            key_path.display()
        );
    }
    drop(read);
    // The limit in force lives in the budget account alone; the mission
    // record keeps the limit it was declared with.
    Ok(data.ledger.write(|t| t.extend(&reviewer, account, amount, reason, now_us()))?)
}

//! `conductor ledger`: inspect budget accounts; extend a budget.

use std::path::Path;

use anyhow::Result;

use engine::{budget, data};

use crate::cli::LedgerCommand;
use crate::exit;
use crate::stdout::outln;

pub(crate) fn command(command: LedgerCommand) -> Result<u8> {
    match command {
        LedgerCommand::Show { data, tasks, json } => show_ledger(&data.data, tasks, json),
        LedgerCommand::Extend { account, amount, key, data, reason } => {
            let raised = budget::extend(&data.data, &account, amount, &key, &reason)?;
            outln!(
                "budget `{account}` extended by {amount} to {}; resume the mission with \
                 `conductor mission resume {account} --data {}`",
                raised.limit.unwrap_or_default(),
                data.data.display()
            )?;
            Ok(exit::OK)
        }
    }
}

fn show_ledger(data: &Path, tasks: bool, json: bool) -> Result<u8> {
    let ledger = data::open_ledger_only(data)?;
    // Read once: availability walks each account's path to the root.
    let accounts: std::collections::BTreeMap<String, ledger::Account> = ledger.accounts()?.into_iter().collect();
    if json {
        let rows = accounts
            .iter()
            .map(|(name, a)| {
                Ok(serde_json::json!({"account": name, "parent": a.parent, "limit": a.limit,
                                      "pending": a.pending, "settled": a.settled,
                                      "available": ledger::available_in(&accounts, name)?}))
            })
            .collect::<Result<Vec<_>>>()?;
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(exit::OK);
    }
    outln!("{:<52} {:>12} {:>12} {:>12} {:>12}", "account", "limit", "pending", "settled", "available")?;
    let mut hidden = 0usize;
    for (name, a) in &accounts {
        let depth = name.matches('/').count();
        if depth >= 2 && !tasks {
            hidden += 1;
            continue;
        }
        // Children sort after their parent (names are paths); indent them.
        let label = format!("{}{}", "  ".repeat(depth), name.rsplit('/').next().unwrap_or(name));
        let limit = a.limit.map_or_else(|| "-".to_owned(), |l| l.to_string());
        outln!(
            "{label:<52} {limit:>12} {:>12} {:>12} {:>12}",
            a.pending,
            a.settled,
            ledger::available_in(&accounts, name)?
        )?;
    }
    if hidden > 0 {
        outln!("({hidden} task accounts not shown; --tasks lists them)")?;
    }
    Ok(exit::OK)
}

//! `conductor memory`: read the bitemporal memory; erase a data subject.

use anyhow::Result;

use engine::facts;

use crate::cli::MemoryCommand;
use crate::exit;
use crate::stdout::{errln, outln};

pub(crate) fn command(command: MemoryCommand) -> Result<u8> {
    match command {
        MemoryCommand::Query { data, subject, predicate, words, spaces, as_of_valid, as_of_tx, limit, json } => {
            let args = facts::QueryArgs {
                subject,
                predicate,
                words,
                spaces,
                valid_at: as_of_valid,
                known_at: as_of_tx,
                limit: usize::from(limit),
            };
            let found = facts::query(&data.data, &args)?;
            print_facts(&found.recalled, json)?;
            if !json && found.subject_known == Some(false) {
                errln!(
                    "memory holds nothing about subject `{}` in any space; check the id",
                    args.subject.as_deref().unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        MemoryCommand::Erase { data, subject, key, reason } => {
            let erasure = facts::erase(&data.data, &subject, &key, &reason)?;
            outln!(
                "subject `{subject}` erased: {} fact versions can no longer be read, here or in any copy of the \
                 journal; the erasure is journaled as memory.erased",
                erasure.versions
            )?;
            Ok(exit::OK)
        }
    }
}

/// `memory query` output: one line per fact version, or JSON.
fn print_facts(found: &memory::Recalled, json: bool) -> Result<()> {
    let value = |f: &memory::Fact| f.value.plain().map_or(serde_json::Value::Null, |v| serde_json::json!(v));
    if json {
        let facts: Vec<serde_json::Value> = found
            .facts
            .iter()
            .enumerate()
            .map(|(i, f)| {
                serde_json::json!({"id": f.id.0, "space": f.space, "subject": f.subject, "predicate": f.predicate,
                                   "value": value(f), "erased": f.value.plain().is_none(), "source": f.source,
                                   "valid_from": f.valid_from, "valid_to": f.valid_to,
                                   "recorded_at": f.recorded_at, "superseded_at": f.superseded_at,
                                   "score": found.scores.get(i)})
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"facts": facts, "truncated": found.truncated}))?
        )?;
        return Ok(());
    }
    if found.facts.is_empty() {
        outln!("no facts")?;
    }
    let time = |t: Option<i64>| t.map_or_else(|| "…".to_owned(), missions::format_timestamp);
    for f in &found.facts {
        outln!(
            "#{} [{}] {} {} = {}  valid [{}, {})  known [{}, {}){}",
            f.id.0,
            f.space,
            f.subject,
            f.predicate,
            f.value.plain().map_or_else(|| "<erased>".to_owned(), |v| format!("{v:?}")),
            time(Some(f.valid_from)),
            time(f.valid_to),
            time(Some(f.recorded_at)),
            time(f.superseded_at),
            f.source.as_deref().map_or_else(String::new, |s| format!("  source {s}")),
        )?;
    }
    if found.truncated {
        outln!("(more facts match; narrow the query or raise --limit)")?;
    }
    Ok(())
}

use redb::{
    MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::error::{MemoryError, storage};

/// fact id -> JSON record ([`Fact`]).
const FACTS: TableDefinition<u64, &[u8]> = TableDefinition::new("memory_facts");
/// subject -> fact ids (every version ever recorded).
const BY_SUBJECT: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("memory_by_subject");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("memory_counters");

/// A recall returns at most this many facts, so an agent cannot make the
/// host build an unbounded answer.
pub const RECALL_FACTS_MAX: usize = 64;
/// Values are short text (a figure, a label, a sentence); 16 KiB bounds
/// what one assert can add.
pub const VALUE_BYTES_MAX: usize = 16 << 10;
/// Subjects and predicates are identifiers.
const NAME_BYTES_MAX: usize = 256;

/// Identifier of one stored fact version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FactId(pub u64);

/// A fact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFact {
    pub subject: String,
    pub predicate: String,
    pub value: String,
    /// Unix microseconds from which the fact holds in the world.
    pub valid_from: i64,
    /// Unix microseconds at which it stops holding; `None`: until further notice.
    pub valid_to: Option<i64>,
}

/// One stored fact version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub id: FactId,
    pub subject: String,
    pub predicate: String,
    pub value: String,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    /// Transaction time at which this version was recorded.
    pub recorded_at: i64,
    /// Transaction time at which a later assert replaced this version.
    pub superseded_at: Option<i64>,
}

impl Fact {
    fn holds(&self, q: &Recall) -> bool {
        let valid = self.valid_from <= q.valid_at && self.valid_to.is_none_or(|to| q.valid_at < to);
        let known = self.recorded_at <= q.known_at
            && self.superseded_at.is_none_or(|gone| q.known_at < gone);
        valid && known
    }
}

/// A bitemporal query about one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recall {
    pub subject: String,
    /// The valid time asked about (Unix µs).
    pub valid_at: i64,
    /// The transaction time asked about: what was known then (Unix µs).
    pub known_at: i64,
}

/// Creates the memory tables; call once when the database is opened.
pub fn create_tables(txn: &WriteTransaction) -> Result<(), MemoryError> {
    txn.open_table(FACTS).map_err(storage)?;
    txn.open_multimap_table(BY_SUBJECT).map_err(storage)?;
    txn.open_table(COUNTERS).map_err(storage)?;
    Ok(())
}

/// Records `new` at transaction time `recorded_at` and returns its id.
pub fn assert(txn: &WriteTransaction, new: NewFact, recorded_at: i64) -> Result<FactId, MemoryError> {
    validate(&new)?;
    let mut facts = txn.open_table(FACTS).map_err(storage)?;
    let mut by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(storage)?;
    let mut counters = txn.open_table(COUNTERS).map_err(storage)?;
    let mut next_id = counters.get("next").map_err(storage)?.map(|g| g.value()).unwrap_or(0);

    // Versions of the same subject+predicate that are currently believed and
    // still open at the new fact's start are superseded, not edited.
    let mut replaced = Vec::new();
    for id in by_subject.get(new.subject.as_str()).map_err(storage)? {
        let id = id.map_err(storage)?.value();
        let fact = load(&facts, id)?;
        if fact.predicate == new.predicate
            && fact.superseded_at.is_none()
            && fact.valid_to.is_none()
            && fact.valid_from < new.valid_from
        {
            replaced.push(fact);
        }
    }
    for mut old in replaced {
        let closed = Fact {
            id: FactId(next_id),
            valid_to: Some(new.valid_from),
            recorded_at,
            superseded_at: None,
            ..old.clone()
        };
        next_id += 1;
        old.superseded_at = Some(recorded_at);
        store(&mut facts, &old)?;
        store(&mut facts, &closed)?;
        by_subject.insert(closed.subject.as_str(), closed.id.0).map_err(storage)?;
    }

    let fact = Fact {
        id: FactId(next_id),
        subject: new.subject,
        predicate: new.predicate,
        value: new.value,
        valid_from: new.valid_from,
        valid_to: new.valid_to,
        recorded_at,
        superseded_at: None,
    };
    store(&mut facts, &fact)?;
    by_subject.insert(fact.subject.as_str(), fact.id.0).map_err(storage)?;
    counters.insert("next", next_id + 1).map_err(storage)?;
    Ok(fact.id)
}

/// Recall in a read snapshot.
pub fn recall(txn: &ReadTransaction, q: &Recall) -> Result<Vec<Fact>, MemoryError> {
    let facts = txn.open_table(FACTS).map_err(storage)?;
    let by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(storage)?;
    select(&facts, &by_subject, q)
}

/// Recall inside a write transaction, so the answer can be journaled in
/// the same commit that observed it.
pub fn recall_in(txn: &WriteTransaction, q: &Recall) -> Result<Vec<Fact>, MemoryError> {
    let facts = txn.open_table(FACTS).map_err(storage)?;
    let by_subject = txn.open_multimap_table(BY_SUBJECT).map_err(storage)?;
    select(&facts, &by_subject, q)
}

fn select(
    facts: &impl ReadableTable<u64, &'static [u8]>,
    by_subject: &impl ReadableMultimapTable<&'static str, u64>,
    q: &Recall,
) -> Result<Vec<Fact>, MemoryError> {
    let mut out = Vec::new();
    for id in by_subject.get(q.subject.as_str()).map_err(storage)? {
        let fact = load(facts, id.map_err(storage)?.value())?;
        if fact.holds(q) {
            out.push(fact);
            if out.len() == RECALL_FACTS_MAX {
                break;
            }
        }
    }
    // Stable, meaningful order for agents and for replay: by predicate,
    // then the most recent valid time first.
    out.sort_by(|a, b| a.predicate.cmp(&b.predicate).then(b.valid_from.cmp(&a.valid_from)));
    Ok(out)
}

fn validate(new: &NewFact) -> Result<(), MemoryError> {
    let invalid = |m: String| Err(MemoryError::Invalid(m));
    if new.subject.is_empty() || new.subject.len() > NAME_BYTES_MAX {
        return invalid(format!("subject must be 1..={NAME_BYTES_MAX} bytes"));
    }
    if new.predicate.is_empty() || new.predicate.len() > NAME_BYTES_MAX {
        return invalid(format!("predicate must be 1..={NAME_BYTES_MAX} bytes"));
    }
    if new.value.len() > VALUE_BYTES_MAX {
        return invalid(format!(
            "value of {} bytes exceeds {VALUE_BYTES_MAX}",
            new.value.len()
        ));
    }
    if let Some(to) = new.valid_to
        && to <= new.valid_from
    {
        return invalid(format!("valid_to ({to}) must be after valid_from ({})", new.valid_from));
    }
    Ok(())
}

fn load(facts: &impl ReadableTable<u64, &'static [u8]>, id: u64) -> Result<Fact, MemoryError> {
    let guard = facts
        .get(id)
        .map_err(storage)?
        .ok_or_else(|| MemoryError::Corrupt { id, reason: "indexed but missing".into() })?;
    serde_json::from_slice(guard.value())
        .map_err(|e| MemoryError::Corrupt { id, reason: e.to_string() })
}

fn store(facts: &mut redb::Table<u64, &[u8]>, fact: &Fact) -> Result<(), MemoryError> {
    let bytes = serde_json::to_vec(fact)
        .map_err(|e| MemoryError::Corrupt { id: fact.id.0, reason: e.to_string() })?;
    facts.insert(fact.id.0, bytes.as_slice()).map_err(storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn db(name: &str) -> (Database, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("memory-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let db = Database::create(&path).expect("db");
        let txn = db.begin_write().expect("txn");
        create_tables(&txn).expect("tables");
        txn.commit().expect("commit");
        (db, path)
    }

    fn fact(value: &str, valid_from: i64) -> NewFact {
        NewFact {
            subject: "policy".into(),
            predicate: "limit".into(),
            value: value.into(),
            valid_from,
            valid_to: None,
        }
    }

    fn values(db: &Database, valid_at: i64, known_at: i64) -> Vec<String> {
        let read = db.begin_read().expect("read");
        recall(&read, &Recall { subject: "policy".into(), valid_at, known_at })
            .expect("recall")
            .into_iter()
            .map(|f| f.value)
            .collect()
    }

    #[test]
    fn the_worked_example_in_the_crate_docs_holds() {
        let (db, path) = db("worked");
        let txn = db.begin_write().expect("txn");
        assert(&txn, fact("2400", 0), 10).expect("assert");
        txn.commit().expect("commit");
        let txn = db.begin_write().expect("txn");
        assert(&txn, fact("2600", 100), 20).expect("assert");
        txn.commit().expect("commit");

        assert_eq!(values(&db, 50, 30), ["2400"]);
        assert_eq!(values(&db, 150, 30), ["2600"]);
        assert_eq!(values(&db, 150, 15), ["2400"], "as believed before the change");
        assert_eq!(values(&db, 50, 5), Vec::<String>::new(), "nothing known before tx 10");
        assert_eq!(values(&db, -1, 30), Vec::<String>::new(), "not valid before t=0");
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn invalid_facts_are_refused() {
        let (db, path) = db("invalid");
        let txn = db.begin_write().expect("txn");
        let mut inverted = fact("x", 10);
        inverted.valid_to = Some(5);
        assert!(matches!(assert(&txn, inverted, 1), Err(MemoryError::Invalid(_))));
        let huge = fact(&"x".repeat(VALUE_BYTES_MAX + 1), 0);
        assert!(matches!(assert(&txn, huge, 1), Err(MemoryError::Invalid(_))));
        let mut nameless = fact("x", 0);
        nameless.subject.clear();
        assert!(matches!(assert(&txn, nameless, 1), Err(MemoryError::Invalid(_))));
        std::fs::remove_file(path).expect("cleanup");
    }

    #[test]
    fn recall_is_bounded() {
        let (db, path) = db("bounded");
        let txn = db.begin_write().expect("txn");
        for i in 0..(RECALL_FACTS_MAX + 10) {
            let mut f = fact("v", 0);
            f.predicate = format!("p{i}");
            assert(&txn, f, 1).expect("assert");
        }
        txn.commit().expect("commit");
        assert_eq!(values(&db, 1, 2).len(), RECALL_FACTS_MAX);
        std::fs::remove_file(path).expect("cleanup");
    }
}

//! Shared test helpers: a temporary database and short constructors.
#![allow(dead_code)]

use memory::{Change, Fact, MemoryError, NewFact, Opened, Query, Recalled, Select, Writer};
use redb::{Database, ReadableDatabase};

pub const SPACE: &str = "mission:a";

pub struct Db {
    pub db: Database,
    pub dir: tempfile::TempDir,
}

pub fn db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("memory.redb")).expect("db");
    let txn = db.begin_write().expect("txn");
    memory::create_tables(&txn).expect("tables");
    txn.commit().expect("commit");
    Db { db, dir }
}

impl Db {
    /// Runs `f` with a writer at `at` in one transaction, committed if it succeeds.
    pub fn write<R>(&self, at: i64, f: impl FnOnce(&Writer<'_>) -> Result<R, MemoryError>) -> Result<R, MemoryError> {
        let txn = self.db.begin_write().expect("txn");
        let out = {
            let w = Writer::new(&txn, at)?;
            f(&w)?
        };
        txn.commit().expect("commit");
        Ok(out)
    }

    pub fn assert(&self, at: i64, fact: NewFact) -> Change {
        self.write(at, |w| w.assert(fact)).expect("assert")
    }

    pub fn recall(&self, q: &Query) -> Recalled {
        let read = self.db.begin_read().expect("read");
        memory::recall(&read, q).expect("recall")
    }

    /// (value, valid_from, valid_to) of `policy`/`limit` in SPACE as of the times given.
    pub fn seen(&self, valid_at: Option<i64>, known_at: Option<i64>) -> Vec<(String, i64, Option<i64>)> {
        let mut q = Query::new([SPACE], Select::Predicate { subject: "policy".into(), predicate: "limit".into() });
        q.valid_at = valid_at;
        q.known_at = known_at;
        self.recall(&q).facts.iter().map(|f| (value(f), f.valid_from, f.valid_to)).collect()
    }
}

pub fn value(f: &Fact) -> String {
    match &f.value {
        Opened::Plain(v) => v.clone(),
        Opened::Erased => "<erased>".into(),
    }
}

pub fn fact(value: &str, from: i64, to: Option<i64>) -> NewFact {
    NewFact {
        space: SPACE.into(),
        subject: "policy".into(),
        predicate: "limit".into(),
        value: value.into(),
        source: None,
        valid_from: from,
        valid_to: to,
    }
}

pub fn v(value: &str, from: i64, to: Option<i64>) -> (String, i64, Option<i64>) {
    (value.to_owned(), from, to)
}

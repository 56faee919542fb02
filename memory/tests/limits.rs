//! Bad input and per-space limits: clear typed errors, nothing stored.

mod common;

use common::{SPACE, db, fact};
use memory::{Limits, MemoryError, NewFact, Query, Select, TIME_MAX, TIME_MIN, Writer};
use redb::ReadableDatabase;

fn refused(f: NewFact) -> MemoryError {
    let db = db();
    db.write(1, |w| w.assert(f)).expect_err("refused")
}

#[test]
fn inverted_and_empty_intervals_are_refused() {
    assert!(matches!(refused(fact("x", 10, Some(5))), MemoryError::EmptyInterval { from: 10, to: 5 }));
    assert!(matches!(refused(fact("x", 10, Some(10))), MemoryError::EmptyInterval { .. }));
}

#[test]
fn times_out_of_range_are_refused() {
    assert!(matches!(refused(fact("x", TIME_MIN - 1, None)), MemoryError::TimeOutOfRange { field: "valid_from", .. }));
    assert!(matches!(refused(fact("x", 0, Some(TIME_MAX + 1))), MemoryError::TimeOutOfRange { field: "valid_to", .. }));
    assert!(matches!(refused(fact("x", 0, Some(i64::MAX))), MemoryError::TimeOutOfRange { .. }));
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    assert!(matches!(Writer::new(&txn, -1), Err(MemoryError::TimeOutOfRange { .. })));
    assert!(matches!(Writer::new(&txn, i64::MAX), Err(MemoryError::TimeOutOfRange { .. })));
    let mut q = Query::new([SPACE], Select::Subject("policy".into()));
    q.valid_at = Some(i64::MIN);
    assert!(matches!(memory::recall(&txn, &q), Err(MemoryError::TimeOutOfRange { field: "valid_at", .. })));
}

#[test]
fn empty_oversized_and_control_character_names_are_refused() {
    let long = "n".repeat(memory::NAME_BYTES_MAX + 1);
    for (field, name) in [("subject", ""), ("subject", long.as_str()), ("subject", "a\0b"), ("subject", "a\nb")] {
        let mut f = fact("x", 0, None);
        f.subject = name.into();
        assert!(matches!(refused(f), MemoryError::Invalid { field: got, .. } if got == field));
    }
    let mut f = fact("x", 0, None);
    f.predicate = String::new();
    assert!(matches!(refused(f), MemoryError::Invalid { field: "predicate", .. }));
    let mut f = fact("x", 0, None);
    f.space = long.clone();
    assert!(matches!(refused(f), MemoryError::Invalid { field: "space", .. }));
}

#[test]
fn empty_or_oversized_values_and_sources_are_refused() {
    assert!(matches!(refused(fact("", 0, None)), MemoryError::Invalid { field: "value", .. }));
    let huge = "x".repeat(memory::VALUE_BYTES_MAX + 1);
    assert!(matches!(refused(fact(&huge, 0, None)), MemoryError::Invalid { field: "value", .. }));
    for source in [String::new(), "s".repeat(memory::SOURCE_BYTES_MAX + 1)] {
        let mut f = fact("x", 0, None);
        f.source = Some(source);
        assert!(matches!(refused(f), MemoryError::Invalid { field: "source", .. }));
    }
}

#[test]
fn a_space_refuses_facts_beyond_its_limit_and_others_are_unaffected() {
    let db = db();
    let limits = Limits { facts: 3, bytes: u64::MAX };
    let txn = db.db.begin_write().expect("txn");
    {
        let w = Writer::new(&txn, 1).expect("writer").with_limits(limits);
        w.assert(fact("a", 0, Some(10))).expect("1");
        w.assert(fact("b", 10, Some(20))).expect("2");
        // Splitting the first into a remainder and a new version needs two.
        let err = w.assert(fact("c", 5, Some(10))).expect_err("full");
        assert!(matches!(err, MemoryError::SpaceFull { what: "facts", limit: 3, .. }));
        w.assert(fact("d", 20, Some(30))).expect("3: exactly at the limit");
        assert!(matches!(w.assert(fact("e", 30, None)), Err(MemoryError::SpaceFull { .. })));
        let mut other = fact("e", 30, None);
        other.space = "mission:b".into();
        w.assert(other).expect("another space has its own count");
    }
    // The refused writes left nothing behind: the transaction commits cleanly.
    txn.commit().expect("commit");
    let q = Query::new([SPACE], Select::Subject("policy".into()));
    let values: Vec<_> = db.recall(&q).facts.iter().map(common::value).collect();
    assert_eq!(values, ["a", "b", "d"]);
}

#[test]
fn a_space_refuses_bytes_beyond_its_limit() {
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    let w = Writer::new(&txn, 1).expect("writer").with_limits(Limits { facts: u64::MAX, bytes: 2_000 });
    let mut refused_at = None;
    for i in 0..100 {
        let mut f = fact(&"word ".repeat(20), 0, None);
        f.predicate = format!("p{i}");
        if let Err(e) = w.assert(f) {
            assert!(matches!(e, MemoryError::SpaceFull { what: "bytes", limit: 2_000, .. }));
            refused_at = Some(i);
            break;
        }
    }
    assert!(matches!(refused_at, Some(n) if n > 0 && n < 100));
}

#[test]
fn limits_can_only_be_lowered() {
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    let w = Writer::new(&txn, 1).expect("writer").with_limits(Limits { facts: u64::MAX, bytes: u64::MAX });
    assert!(format!("{w:?}").contains(&format!("facts: {}", memory::SPACE_FACTS_MAX)));
}

#[test]
fn too_many_spaces_in_a_query_are_refused() {
    let db = db();
    let read = db.db.begin_read().expect("read");
    let spaces: Vec<String> = (0..=memory::QUERY_SPACES_MAX).map(|i| format!("s{i}")).collect();
    let q = Query::new(spaces, Select::Subject("policy".into()));
    assert!(matches!(memory::recall(&read, &q), Err(MemoryError::Invalid { field: "spaces", .. })));
}

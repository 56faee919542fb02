//! The bitemporal semantics of the crate docs, case by case.

mod common;

use common::{SPACE, db, fact, v, value};
use memory::{Correction, FactId, Interval, MemoryError, Query, Select};
use redb::ReadableDatabase;

#[test]
fn the_worked_example_in_the_crate_docs_holds() {
    let db = db();
    db.assert(10, fact("2400", 0, None));
    let change = db.assert(20, fact("2600", 100, Some(200)));
    assert_eq!(change.superseded.len(), 1);
    assert_eq!(change.remainders.len(), 2);

    assert_eq!(db.seen(Some(150), None), [v("2600", 100, Some(200))]);
    assert_eq!(db.seen(Some(50), None), [v("2400", 0, Some(100))]);
    assert_eq!(db.seen(Some(250), None), [v("2400", 200, None)]);
    assert_eq!(db.seen(Some(150), Some(15)), [v("2400", 0, None)], "as believed before the change");
    assert_eq!(db.seen(Some(150), Some(20)), [v("2600", 100, Some(200))], "tx intervals are half-open");
    assert_eq!(db.seen(None, Some(15)), [v("2400", 0, None)]);
    assert_eq!(db.seen(None, None), [v("2400", 0, Some(100)), v("2600", 100, Some(200)), v("2400", 200, None)]);
    assert_eq!(db.seen(Some(50), Some(5)), [], "nothing was known before tx 10");

    db.write(30, |w| w.retract(SPACE, "policy", "limit", Interval { from: 150, to: Some(300) })).expect("retract");
    assert_eq!(db.seen(Some(160), None), []);
    assert_eq!(db.seen(Some(160), Some(25)), [v("2600", 100, Some(200))]);
    assert_eq!(db.seen(None, None), [v("2400", 0, Some(100)), v("2600", 100, Some(150)), v("2400", 300, None)]);
}

#[test]
fn an_assert_overlapping_the_left_of_a_version_keeps_its_right() {
    let db = db();
    db.assert(1, fact("old", 10, Some(100)));
    db.assert(2, fact("new", 0, Some(50)));
    assert_eq!(db.seen(None, None), [v("new", 0, Some(50)), v("old", 50, Some(100))]);
    assert_eq!(db.seen(None, Some(1)), [v("old", 10, Some(100))]);
}

#[test]
fn an_assert_overlapping_the_right_of_a_version_keeps_its_left() {
    let db = db();
    db.assert(1, fact("old", 0, Some(100)));
    db.assert(2, fact("new", 50, Some(150)));
    assert_eq!(db.seen(None, None), [v("old", 0, Some(50)), v("new", 50, Some(150))]);
}

#[test]
fn an_assert_inside_a_version_splits_it_in_two() {
    let db = db();
    let first = db.assert(1, fact("old", 0, Some(100)));
    let change = db.assert(2, fact("new", 40, Some(60)));
    assert_eq!(change.superseded, [first.id.expect("id")]);
    assert_eq!(change.remainders.len(), 2);
    assert_eq!(db.seen(None, None), [v("old", 0, Some(40)), v("new", 40, Some(60)), v("old", 60, Some(100))]);
}

#[test]
fn an_assert_covering_a_version_supersedes_it_without_remainders() {
    let db = db();
    db.assert(1, fact("old", 40, Some(60)));
    let change = db.assert(2, fact("new", 0, Some(100)));
    assert_eq!((change.superseded.len(), change.remainders.len()), (1, 0));
    assert_eq!(db.seen(None, None), [v("new", 0, Some(100))]);
    assert_eq!(db.seen(Some(50), Some(1)), [v("old", 40, Some(60))]);
}

#[test]
fn an_assert_spanning_several_versions_keeps_only_the_outer_parts() {
    let db = db();
    db.assert(1, fact("a", 0, Some(10)));
    db.assert(1, fact("b", 10, Some(20)));
    db.assert(1, fact("c", 20, Some(30)));
    let change = db.assert(2, fact("n", 5, Some(25)));
    assert_eq!((change.superseded.len(), change.remainders.len()), (3, 2));
    assert_eq!(db.seen(None, None), [v("a", 0, Some(5)), v("n", 5, Some(25)), v("c", 25, Some(30))]);
}

#[test]
fn an_assert_adjacent_to_a_version_does_not_touch_it() {
    let db = db();
    db.assert(1, fact("a", 0, Some(100)));
    let change = db.assert(2, fact("b", 100, Some(200)));
    assert!(change.superseded.is_empty());
    assert_eq!(db.seen(Some(99), None), [v("a", 0, Some(100))], "valid_to is exclusive");
    assert_eq!(db.seen(Some(100), None), [v("b", 100, Some(200))], "valid_from is inclusive");
}

#[test]
fn a_later_open_ended_assert_closes_the_earlier_one() {
    let db = db();
    db.assert(1, fact("a", 0, None));
    db.assert(2, fact("b", 100, None));
    assert_eq!(db.seen(None, None), [v("a", 0, Some(100)), v("b", 100, None)]);
}

#[test]
fn an_earlier_open_ended_assert_replaces_everything_after_it() {
    let db = db();
    db.assert(1, fact("a", 100, None));
    db.assert(2, fact("b", 0, None));
    assert_eq!(db.seen(None, None), [v("b", 0, None)]);
}

#[test]
fn supersede_corrects_one_version_and_keeps_the_old_belief() {
    let db = db();
    let id = db.assert(1, fact("2400", 0, Some(100))).id.expect("id");
    let change = db
        .write(2, |w| {
            w.supersede(SPACE, id, Correction { value: "2500".into(), source: Some("audit:7".into()), valid: None })
        })
        .expect("supersede");
    assert_eq!(change.superseded, [id]);
    assert!(change.remainders.is_empty());
    assert_eq!(db.seen(Some(50), None), [v("2500", 0, Some(100))]);
    assert_eq!(db.seen(Some(50), Some(1)), [v("2400", 0, Some(100))]);
    let q = Query::new([SPACE], Select::Subject("policy".into()));
    assert_eq!(db.recall(&q).facts[0].source.as_deref(), Some("audit:7"));
}

#[test]
fn supersede_with_a_new_interval_splits_the_versions_it_overlaps() {
    let db = db();
    let a = db.assert(1, fact("a", 0, Some(10))).id.expect("id");
    db.assert(1, fact("b", 10, Some(20)));
    let correction = Correction { value: "a2".into(), source: None, valid: Some(Interval { from: 0, to: Some(15) }) };
    let change = db.write(2, |w| w.supersede(SPACE, a, correction)).expect("supersede");
    assert_eq!((change.superseded.len(), change.remainders.len()), (2, 1));
    assert_eq!(db.seen(None, None), [v("a2", 0, Some(15)), v("b", 15, Some(20))]);
}

#[test]
fn supersede_refuses_unknown_foreign_and_superseded_versions() {
    let db = db();
    let id = db.assert(1, fact("a", 0, None)).id.expect("id");
    let fix = || Correction { value: "x".into(), source: None, valid: None };
    let err = db.write(2, |w| w.supersede(SPACE, FactId(999), fix())).expect_err("unknown");
    assert!(matches!(err, MemoryError::UnknownFact { id: 999 }));
    let err = db.write(2, |w| w.supersede("mission:b", id, fix())).expect_err("foreign");
    assert!(matches!(err, MemoryError::UnknownFact { .. }), "another space's version is not revealed");
    db.write(3, |w| w.supersede(SPACE, id, fix())).expect("first correction");
    let err = db.write(4, |w| w.supersede(SPACE, id, fix())).expect_err("already superseded");
    assert!(matches!(err, MemoryError::NotCurrent { superseded_at: 3, .. }));
}

#[test]
fn retract_stops_believing_an_interval_and_keeps_the_rest() {
    let db = db();
    db.assert(1, fact("a", 0, None));
    let change =
        db.write(2, |w| w.retract(SPACE, "policy", "limit", Interval { from: 10, to: Some(20) })).expect("retract");
    assert_eq!((change.id, change.superseded.len(), change.remainders.len()), (None, 1, 2));
    assert_eq!(db.seen(None, None), [v("a", 0, Some(10)), v("a", 20, None)]);
    assert_eq!(db.seen(Some(15), None), []);
    assert_eq!(db.seen(Some(15), Some(1)), [v("a", 0, None)]);
}

#[test]
fn retracting_where_nothing_is_believed_changes_nothing() {
    let db = db();
    let change = db.write(1, |w| w.retract(SPACE, "policy", "limit", Interval { from: 0, to: None })).expect("retract");
    assert_eq!(change, memory::Change::default());
}

#[test]
fn retract_fact_supersedes_one_version_whole() {
    let db = db();
    db.assert(1, fact("a", 0, Some(10)));
    let b = db.assert(1, fact("b", 10, Some(20))).id.expect("id");
    let change = db.write(2, |w| w.retract_fact(SPACE, b)).expect("retract");
    assert_eq!(change.superseded, [b]);
    assert_eq!(db.seen(None, None), [v("a", 0, Some(10))]);
    let err = db.write(3, |w| w.retract_fact(SPACE, b)).expect_err("twice");
    assert!(matches!(err, MemoryError::NotCurrent { .. }));
    let err = db.write(3, |w| w.retract_fact(SPACE, FactId(77))).expect_err("unknown");
    assert!(matches!(err, MemoryError::UnknownFact { id: 77 }));
}

#[test]
fn queries_combine_valid_and_transaction_time() {
    let db = db();
    db.assert(10, fact("a", 0, None));
    db.assert(20, fact("b", 50, None));
    // Valid time only: as currently known.
    assert_eq!(db.seen(Some(60), None), [v("b", 50, None)]);
    // Transaction time only: everything believed then, across valid time.
    assert_eq!(db.seen(None, Some(10)), [v("a", 0, None)]);
    assert_eq!(db.seen(None, Some(20)), [v("a", 0, Some(50)), v("b", 50, None)]);
    // Both.
    assert_eq!(db.seen(Some(60), Some(15)), [v("a", 0, None)]);
    // Neither: the current valid-time history.
    assert_eq!(db.seen(None, None), [v("a", 0, Some(50)), v("b", 50, None)]);
}

#[test]
fn at_one_transaction_time_the_last_write_wins() {
    let db = db();
    db.write(5, |w| {
        w.assert(fact("first", 0, None))?;
        w.assert(fact("second", 0, None))
    })
    .expect("writes");
    assert_eq!(db.seen(Some(1), Some(5)), [v("second", 0, None)]);
    assert_eq!(db.seen(Some(1), Some(4)), []);
    assert_eq!(db.seen(None, Some(i64::from(i32::MAX))), [v("second", 0, None)], "the first is never seen");
}

#[test]
fn transaction_intervals_are_half_open() {
    let db = db();
    db.assert(10, fact("a", 0, None));
    db.assert(20, fact("b", 0, None));
    assert_eq!(db.seen(Some(0), Some(9)), []);
    assert_eq!(db.seen(Some(0), Some(10)), [v("a", 0, None)], "recorded_at is inclusive");
    assert_eq!(db.seen(Some(0), Some(19)), [v("a", 0, None)]);
    assert_eq!(db.seen(Some(0), Some(20)), [v("b", 0, None)], "superseded_at is exclusive");
}

#[test]
fn transaction_time_never_goes_backwards() {
    let db = db();
    db.assert(10, fact("a", 0, None));
    let err = db.write(9, |w| w.assert(fact("b", 0, None))).expect_err("behind");
    assert!(matches!(err, MemoryError::TxTimeBehind { at: 9, last: 10 }));
    db.assert(10, fact("c", 0, None));
    let read = db.db.begin_read().expect("read");
    assert_eq!(memory::last_transaction_time(&read).expect("last"), 10);
}

#[test]
fn spaces_are_independent_and_queries_never_leave_theirs() {
    let db = db();
    db.assert(1, fact("mine", 0, None));
    let mut other = fact("theirs", 0, None);
    other.space = "precedent".into();
    let change = db.assert(2, other);
    assert!(change.superseded.is_empty(), "an assert never supersedes another space's facts");

    let subject = |spaces: &[&str]| {
        let q = Query::new(spaces.iter().copied(), Select::Subject("policy".into()));
        db.recall(&q).facts.iter().map(|f| (f.space.clone(), value(f))).collect::<Vec<_>>()
    };
    assert_eq!(subject(&[SPACE]), [(SPACE.to_owned(), "mine".to_owned())]);
    assert_eq!(subject(&["precedent"]), [("precedent".to_owned(), "theirs".to_owned())]);
    assert_eq!(
        subject(&["precedent", SPACE, "precedent"]),
        [(SPACE.to_owned(), "mine".to_owned()), ("precedent".to_owned(), "theirs".to_owned())],
        "spaces in name order, duplicates ignored"
    );
    assert_eq!(subject(&[]), []);
    assert_eq!(subject(&["mission:b"]), []);
}

#[test]
fn recall_by_subject_orders_by_space_predicate_and_valid_time() {
    let db = db();
    for (predicate, value, from, to) in [("b", "b2", 10, None), ("a", "a1", 0, None), ("b", "b1", 0, Some(10))] {
        let mut f = fact(value, from, to);
        f.predicate = predicate.into();
        db.assert(1, f);
    }
    let mut q = Query::new([SPACE], Select::Subject("policy".into()));
    let got: Vec<_> = db.recall(&q).facts.iter().map(value).collect();
    assert_eq!(got, ["a1", "b1", "b2"]);
    q.select = Select::Predicate { subject: "policy".into(), predicate: "b".into() };
    let got: Vec<_> = db.recall(&q).facts.iter().map(value).collect();
    assert_eq!(got, ["b1", "b2"]);
    q.select = Select::Subject("polic".into());
    assert!(db.recall(&q).facts.is_empty(), "a subject is not matched by its prefix");
}

#[test]
fn answers_are_bounded_in_count_and_bytes() {
    let db = db();
    db.write(1, |w| {
        for i in 0..(memory::RECALL_FACTS_MAX + 10) {
            let mut f = fact(&"x".repeat(100), 0, None);
            f.predicate = format!("p{i:03}");
            w.assert(f)?;
        }
        Ok(())
    })
    .expect("asserts");
    let mut q = Query::new([SPACE], Select::Subject("policy".into()));
    let all = db.recall(&q);
    assert_eq!(all.facts.len(), memory::RECALL_FACTS_MAX);
    assert!(all.truncated);
    q.max_facts = 3;
    let few = db.recall(&q);
    assert_eq!((few.facts.len(), few.truncated), (3, true));
    assert_eq!(few.facts[..], all.facts[..3], "a bound cuts the same order");
    q.max_facts = 1000;
    q.max_bytes = 2 * few.facts[0].bytes() + 1;
    assert_eq!(db.recall(&q).facts.len(), 2);
    q.max_bytes = usize::MAX;
    assert_eq!(db.recall(&q).facts.len(), memory::RECALL_FACTS_MAX, "clamped to the crate's bound");
}

#[test]
fn recall_works_inside_a_write_transaction() {
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    memory::Writer::new(&txn, 1).expect("writer").assert(fact("a", 0, None)).expect("assert");
    let q = Query::new([SPACE], Select::Subject("policy".into()));
    let got = memory::recall(&txn, &q).expect("recall");
    assert_eq!(got.facts.len(), 1, "a write sees its own uncommitted facts");
    drop(txn);
    assert!(db.recall(&q).facts.is_empty(), "and they vanish with it");
}

//! Recall by words: the inverted index, BM25 ranking, time and space filters.

mod common;

use common::{SPACE, db, fact, value};
use memory::{MemoryError, NewFact, Query, Select};
use redb::ReadableDatabase;

fn note(subject: &str, value: &str) -> NewFact {
    NewFact { subject: subject.into(), predicate: "note".into(), ..fact(value, 0, None) }
}

fn search(db: &common::Db, text: &str) -> Vec<String> {
    let q = Query::new([SPACE], Select::Words(text.into()));
    db.recall(&q).facts.iter().map(value).collect()
}

#[test]
fn words_find_facts_ranked_by_bm25() {
    let db = db();
    db.write(1, |w| {
        w.assert(note("a", "the supplier ships steel"))?;
        w.assert(note("b", "steel steel steel beams"))?;
        w.assert(note("c", "the invoice is paid"))?;
        w.assert(note("d", "the the the"))
    })
    .expect("asserts");
    assert_eq!(search(&db, "steel"), ["steel steel steel beams", "the supplier ships steel"]);
    // A rare word outweighs a common one.
    assert_eq!(search(&db, "the invoice")[0], "the invoice is paid");
    // Case and punctuation do not matter.
    assert_eq!(search(&db, "INVOICE?!"), ["the invoice is paid"]);
    assert!(search(&db, "copper").is_empty());
    let q = Query::new([SPACE], Select::Words("steel".into()));
    let got = db.recall(&q);
    assert_eq!(got.scores.len(), got.facts.len());
    assert!(got.scores[0] > got.scores[1]);
}

#[test]
fn equal_scores_rank_the_newest_version_first() {
    let db = db();
    db.write(1, |w| {
        w.assert(note("a", "alpha one"))?;
        w.assert(note("b", "alpha two"))?;
        w.assert(note("c", "alpha six"))
    })
    .expect("asserts");
    assert_eq!(search(&db, "alpha"), ["alpha six", "alpha two", "alpha one"]);
    assert_eq!(search(&db, "alpha"), search(&db, "alpha"), "deterministic");
}

#[test]
fn word_search_follows_valid_and_transaction_time() {
    let db = db();
    db.assert(10, fact("paris office", 0, None));
    db.assert(20, fact("berlin office", 100, None));
    assert_eq!(search(&db, "paris"), ["paris office"], "the remainder [0, 100) is still believed");
    let mut q = Query::new([SPACE], Select::Words("paris".into()));
    q.valid_at = Some(150);
    assert!(db.recall(&q).facts.is_empty());
    q.known_at = Some(15);
    let old: Vec<_> = db.recall(&q).facts.iter().map(|f| (value(f), f.valid_to)).collect();
    assert_eq!(old, [("paris office".to_owned(), None)], "as believed at tx 15");
    q.valid_at = None;
    q.known_at = None;
    q.select = Select::Words("office".into());
    assert_eq!(db.recall(&q).facts.len(), 2);
}

#[test]
fn word_search_stays_in_the_given_spaces() {
    let db = db();
    db.assert(1, note("a", "secret plan"));
    let mut other = note("b", "secret recipe");
    other.space = "mission:b".into();
    db.assert(1, other);
    assert_eq!(search(&db, "secret"), ["secret plan"]);
    let q = Query::new(["mission:b", SPACE], Select::Words("secret".into()));
    assert_eq!(db.recall(&q).facts.len(), 2);
    let q = Query::new(Vec::<String>::new(), Select::Words("secret".into()));
    assert!(db.recall(&q).facts.is_empty());
}

#[test]
fn word_queries_without_words_or_with_too_many_are_refused() {
    let db = db();
    let read = db.db.begin_read().expect("read");
    for text in [String::new(), "?! ...".into(), (0..20).map(|i| format!("w{i} ")).collect()] {
        let q = Query::new([SPACE], Select::Words(text));
        assert!(matches!(memory::recall(&read, &q), Err(MemoryError::Invalid { field: "words", .. })));
    }
}

//! Crypto-shredding: erased subjects read as an explicit marker everywhere.

mod common;

use common::{SPACE, db, fact, value};
use memory::{MemoryError, Opened, Query, Select};
use redb::ReadableDatabase;

const SECRET: &str = "alice-lives-at-42-rue-des-lilas";

#[test]
fn values_are_not_stored_in_clear() {
    let db = db();
    db.assert(1, fact(SECRET, 0, None));
    let path = db.dir.path().join("memory.redb");
    drop(db.db);
    let bytes = std::fs::read(path).expect("read file");
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}

#[test]
fn an_erased_subject_reads_as_erased_in_every_version_and_space() {
    let db = db();
    db.assert(1, fact(SECRET, 0, None));
    db.assert(2, fact("moved away", 100, None));
    let mut elsewhere = fact("also about alice", 0, None);
    elsewhere.space = "precedent".into();
    db.assert(2, elsewhere);
    let erased = db.write(3, |w| w.erase_subject("policy")).expect("erase");
    assert_eq!(erased.versions, 4, "the superseded one, its remainder, the new one, the precedent one");
    assert!(!erased.already);

    let mut q = Query::new([SPACE, "precedent"], Select::Subject("policy".into()));
    let now = db.recall(&q);
    assert_eq!(now.facts.len(), 3);
    assert!(now.facts.iter().all(|f| f.value == Opened::Erased));
    q.known_at = Some(1);
    let before = db.recall(&q);
    assert_eq!(before.facts.len(), 1);
    assert_eq!(value(&before.facts[0]), "<erased>", "history too");
    assert_eq!(before.facts[0].valid_from, 0, "times stay");
}

#[test]
fn word_search_never_finds_an_erased_subject() {
    let db = db();
    db.assert(1, fact("lilas street", 0, None));
    db.assert(2, fact("rose street", 10, None));
    let mut other = fact("lilas garden", 0, None);
    other.subject = "bob".into();
    db.assert(2, other);
    db.write(3, |w| w.erase_subject("policy")).expect("erase");
    let mut q = Query::new([SPACE], Select::Words("lilas street rose".into()));
    let found: Vec<_> = db.recall(&q).facts.iter().map(value).collect();
    assert_eq!(found, ["lilas garden"]);
    q.known_at = Some(1);
    assert!(db.recall(&q).facts.is_empty(), "not as of earlier transaction times either");
}

#[test]
fn nothing_new_is_recorded_about_an_erased_subject() {
    let db = db();
    db.assert(1, fact("x", 0, None));
    db.write(2, |w| w.erase_subject("policy")).expect("erase");
    let err = db.write(3, |w| w.assert(fact("y", 0, None))).expect_err("refused");
    assert!(matches!(err, MemoryError::Erased { at: 2, .. }));
    let txn = db.db.begin_write().expect("txn");
    assert!(matches!(memory::seal(&txn, "policy", "y"), Err(MemoryError::Erased { .. })));
    drop(txn);
    let again = db.write(4, |w| w.erase_subject("policy")).expect("erase again");
    assert!(again.already);
    // Retracting what is left is still allowed.
    db.write(5, |w| w.retract(SPACE, "policy", "limit", memory::Interval { from: 0, to: None })).expect("retract");
    let q = Query::new([SPACE], Select::Subject("policy".into()));
    assert!(db.recall(&q).facts.is_empty());
}

#[test]
fn sealed_envelopes_open_until_the_subject_is_erased() {
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    let envelope = memory::seal(&txn, "alice", SECRET).expect("seal");
    txn.commit().expect("commit");
    assert!(envelope.starts_with(memory::ENVELOPE_PREFIX));
    assert!(!envelope.contains(SECRET));

    let read = db.db.begin_read().expect("read");
    assert_eq!(memory::open(&read, "alice", &envelope).expect("open"), Opened::Plain(SECRET.into()));
    drop(read);

    db.write(1, |w| w.erase_subject("alice")).expect("erase");
    let read = db.db.begin_read().expect("read");
    assert_eq!(memory::open(&read, "alice", &envelope).expect("open"), Opened::Erased);
}

#[test]
fn altered_foreign_or_malformed_envelopes_are_refused() {
    let db = db();
    let txn = db.db.begin_write().expect("txn");
    let envelope = memory::seal(&txn, "alice", "hello").expect("seal");
    memory::seal(&txn, "bob", "other").expect("seal");
    let last = envelope.chars().last().expect("non-empty");
    let flipped = format!("{}{}", &envelope[..envelope.len() - 1], if last == '0' { '1' } else { '0' });
    for (subject, text) in [
        ("alice", flipped.as_str()),
        ("bob", envelope.as_str()),
        ("alice", "sealed:v1:zz"),
        ("alice", "plain text"),
        ("alice", "sealed:v1:00"),
        ("carol", envelope.as_str()),
    ] {
        let got = memory::open(&txn, subject, text);
        assert!(matches!(got, Err(MemoryError::Envelope(_))), "{subject} {text}: {got:?}");
    }
}

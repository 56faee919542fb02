//! The rules `docs/journal-format.md` states for the edge cases an
//! independent verifier found unstated (issue #19, item 9), each checked
//! on journals built record by record, as an outside writer would.

use identity::{Keypair, Role};
use ledger::entry::signed_record;
use ledger::{Checkpoint, CheckpointError, EntryHash, Ledger, LedgerError, VerifyError, VerifyFailure, verify_export};
use serde_json::json;

fn key(i: u8, role: Role) -> Keypair {
    Keypair::from_secret_bytes(role, &[i; 32])
}

/// A journal written record by record.
struct Chain {
    records: Vec<Vec<u8>>,
    prev: EntryHash,
    time_us: i64,
}

impl Chain {
    /// Genesis by `conductor`, declared with `conductor_key` as written.
    fn with_genesis_text(conductor: &Keypair, conductor_key: &str) -> Self {
        let mut chain = Chain { records: Vec::new(), prev: EntryHash::default(), time_us: 1_000_000 };
        chain.push(conductor, "conductor.genesis", &format!(r#"{{"format":1,"conductor_key":"{conductor_key}"}}"#));
        chain
    }

    fn new(conductor: &Keypair) -> Self {
        Self::with_genesis_text(conductor, &conductor.public().to_hex())
    }

    fn push(&mut self, signer: &Keypair, kind: &str, payload: &str) -> &mut Self {
        self.push_at(signer, kind, payload, self.time_us + 1)
    }

    fn push_at(&mut self, signer: &Keypair, kind: &str, payload: &str, time_us: i64) -> &mut Self {
        self.time_us = time_us;
        let seq = self.records.len() as u64;
        let record = signed_record(seq, &self.prev, time_us, signer, kind, payload.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&record[record.len() - 96..record.len() - 64]);
        self.prev = EntryHash(hash);
        self.records.push(record);
        self
    }

    fn register(&mut self, conductor: &Keypair, public_key: &str, role: &str) -> &mut Self {
        self.push(conductor, "key.registered", &format!(r#"{{"public_key":"{public_key}","role":"{role}"}}"#))
    }

    fn export(&self) -> Vec<u8> {
        export_of(&self.records)
    }

    fn verify(&self) -> Result<u64, VerifyError> {
        verify_export(&mut self.export().as_slice(), &[]).map(|r| r.entries)
    }
}

fn export_of(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"CJEXPORT".to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&(records.len() as u64).to_be_bytes());
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

#[track_caller]
fn fails_at(result: Result<u64, VerifyError>, seq: u64, what: impl Fn(&VerifyFailure) -> bool) {
    match result {
        Err(VerifyError::Bad { seq: got, failure }) if got == seq && what(&failure) => {}
        other => panic!("expected a failure at sequence {seq}, got {other:?}"),
    }
}

fn is_key_event(f: &VerifyFailure) -> bool {
    matches!(f, VerifyFailure::BadKeyEvent(_))
}

fn is_budget(f: &VerifyFailure) -> bool {
    matches!(f, VerifyFailure::BudgetRule(_))
}

// ---------------------------------------------------------------------------
// Hex: lower case only, everywhere
// ---------------------------------------------------------------------------

#[test]
fn key_fields_take_lower_case_hex_only() {
    let conductor = key(1, Role::Conductor);
    let agent = key(2, Role::Agent);
    let lower = agent.public().to_hex();

    let mut ok = Chain::new(&conductor);
    ok.register(&conductor, &lower, "agent").push(&agent, "host.log", r#"{"message":"hi"}"#);
    assert_eq!(ok.verify().expect("lower-case key verifies"), 3);

    for bad in [lower.to_uppercase(), format!(" {lower}"), format!("{lower} "), format!("{lower}00")] {
        let mut chain = Chain::new(&conductor);
        chain.register(&conductor, &bad, "agent");
        fails_at(chain.verify(), 1, is_key_event);
    }
    let upper = conductor.public().to_hex().to_uppercase();
    fails_at(Chain::with_genesis_text(&conductor, &upper).verify(), 0, is_key_event);

    let mut chain = Chain::new(&conductor);
    chain.register(&conductor, &lower, "agent");
    chain.push(&conductor, "key.revoked", &format!(r#"{{"public_key":"{}"}}"#, lower.to_uppercase()));
    fails_at(chain.verify(), 2, is_key_event);

    let agent2 = key(3, Role::Agent);
    let mut chain = Chain::new(&conductor);
    chain.register(&conductor, &lower, "agent");
    let rotated = format!(r#"{{"old_key":"{lower}","new_key":"{}"}}"#, agent2.public().to_hex().to_uppercase());
    chain.push(&conductor, "key.rotated", &rotated);
    fails_at(chain.verify(), 2, is_key_event);
}

#[test]
fn a_checkpoint_head_is_lower_case_hex() {
    let conductor = key(1, Role::Conductor);
    let mut chain = Chain::new(&conductor);
    let head = chain.prev.to_string();
    chain.push(&conductor, "journal.checkpoint", &format!(r#"{{"entries":1,"head":"{head}"}}"#));
    assert_eq!(chain.verify().expect("checkpoint verifies"), 2);

    let mut chain = Chain::new(&conductor);
    chain.push(&conductor, "journal.checkpoint", &format!(r#"{{"entries":1,"head":"{}"}}"#, head.to_uppercase()));
    fails_at(chain.verify(), 1, |f| matches!(f, VerifyFailure::BadPayload(_)));
}

// ---------------------------------------------------------------------------
// Payload JSON
// ---------------------------------------------------------------------------

#[test]
fn payloads_the_verifier_reads_must_be_objects() {
    let conductor = key(1, Role::Conductor);
    // `["m", 0]` would pass as `{"mission": "m", "task": 0}` to a reader
    // that took a struct's fields in order.
    let mut chain = Chain::new(&conductor);
    chain.push(&conductor, "task.decided", r#"["m",0]"#);
    fails_at(chain.verify(), 1, |f| matches!(f, VerifyFailure::BadPayload(_)));

    let mut chain = Chain::new(&conductor);
    chain.push(&conductor, "budget.opened", r#"["m",null,100]"#);
    fails_at(chain.verify(), 1, is_budget);

    let mut chain = Chain::new(&conductor);
    chain.register(&conductor, &key(2, Role::Agent).public().to_hex(), "agent");
    let mut array = Chain::new(&conductor);
    array.push(&conductor, "key.registered", &format!(r#"["{}","agent"]"#, key(2, Role::Agent).public().to_hex()));
    assert!(chain.verify().is_ok());
    fails_at(array.verify(), 1, |f| matches!(f, VerifyFailure::BadPayload(_)));

    // Payloads of kinds the verifier does not read are not examined.
    let agent = key(2, Role::Agent);
    let mut chain = Chain::new(&conductor);
    chain.register(&conductor, &agent.public().to_hex(), "agent").push(&agent, "host.log", "not json \u{feff}[");
    assert_eq!(chain.verify().expect("opaque payload verifies"), 3);
}

#[test]
fn a_batch_posting_is_read_like_an_entry_payload() {
    let conductor = key(1, Role::Conductor);
    let open = |chain: &mut Chain| {
        chain.push(&conductor, "budget.opened", r#"{"account":"m","parent":null,"limit":100}"#);
    };
    let batch =
        |inner: &str| format!(r#"{{"postings":[{{"kind":"budget.reserved","time_us":5000000,"payload":{inner}}}]}}"#);
    let good = r#"{"reservation":0,"account":"m","amount":10,"deadline_us":9000000}"#;
    let mut chain = Chain::new(&conductor);
    open(&mut chain);
    chain.push_at(&conductor, "budget.batch", &batch(good), 5_000_000);
    assert_eq!(chain.verify().expect("batch verifies"), 3);

    // A repeated name: a reader keeping the last `amount` would see 10.
    let twice = r#"{"reservation":0,"account":"m","amount":500,"amount":10,"deadline_us":9000000}"#;
    let array = r#"[0,"m",10,9000000]"#;
    for inner in [twice, array] {
        let mut chain = Chain::new(&conductor);
        open(&mut chain);
        chain.push_at(&conductor, "budget.batch", &batch(inner), 5_000_000);
        fails_at(chain.verify(), 2, is_budget);
    }
    // The posting itself is an object too.
    let mut chain = Chain::new(&conductor);
    open(&mut chain);
    chain.push_at(
        &conductor,
        "budget.batch",
        &format!(r#"{{"postings":[["budget.reserved",5000000,{good}]]}}"#),
        5_000_000,
    );
    fails_at(chain.verify(), 2, is_budget);
}

/// An account may be opened inside a batch, and a later posting of the
/// same batch may use it; the opening is held to `budget.opened`'s rules
/// there too. A reviewer's `budget.extended` cannot travel in a batch.
#[test]
fn a_batch_may_open_an_account_but_not_extend_one() {
    let conductor = key(1, Role::Conductor);
    let batch = |postings: &[(&str, &str)]| {
        let items: Vec<String> = postings
            .iter()
            .map(|(kind, payload)| format!(r#"{{"kind":"{kind}","time_us":5000000,"payload":{payload}}}"#))
            .collect();
        format!(r#"{{"postings":[{}]}}"#, items.join(","))
    };
    let root = ("budget.opened", r#"{"account":"m","parent":null,"limit":100}"#);
    let child = ("budget.opened", r#"{"account":"m/a","parent":"m"}"#);
    let reserve = ("budget.reserved", r#"{"reservation":0,"account":"m/a","amount":10,"deadline_us":9000000}"#);

    let mut chain = Chain::new(&conductor);
    chain.push_at(&conductor, "budget.batch", &batch(&[root, child, reserve]), 5_000_000);
    assert_eq!(chain.verify().expect("openings and a reservation in one batch verify"), 2);

    // The reservation before its account's opening; an account opened
    // twice; a root without a limit; an extension.
    let no_limit = ("budget.opened", r#"{"account":"n","parent":null}"#);
    let extend = ("budget.extended", r#"{"account":"m","amount":5,"limit":105,"reason":"x"}"#);
    for postings in [vec![root, reserve, child], vec![root, child, child], vec![no_limit], vec![root, extend]] {
        let mut chain = Chain::new(&conductor);
        chain.push_at(&conductor, "budget.batch", &batch(&postings), 5_000_000);
        fails_at(chain.verify(), 1, is_budget);
    }
}

// ---------------------------------------------------------------------------
// Budget: settled amounts, released, absent fields, depth
// ---------------------------------------------------------------------------

/// Genesis, a root account `m` (limit 100), reservation 0 of 10 on it
/// with deadline 9 s, made at 2 s; the closing posting comes next.
fn reserved(conductor: &Keypair) -> Chain {
    let mut chain = Chain::new(conductor);
    chain.push(conductor, "budget.opened", r#"{"account":"m","limit":100}"#);
    chain.push_at(
        conductor,
        "budget.reserved",
        r#"{"reservation":0,"account":"m","amount":10,"deadline_us":9000000}"#,
        2_000_000,
    );
    chain
}

#[test]
fn a_settlement_states_its_amount_and_voids_ignore_one() {
    let conductor = key(1, Role::Conductor);
    let close = |kind: &str, payload: &str, time_us: i64| {
        let mut chain = reserved(&conductor);
        chain.push_at(&conductor, kind, payload, time_us);
        chain.verify()
    };
    assert!(close("budget.settled", r#"{"reservation":0,"account":"m","amount":0,"released":10}"#, 3_000_000).is_ok());
    assert!(close("budget.settled", r#"{"reservation":0,"account":"m","amount":10,"released":0}"#, 3_000_000).is_ok());
    // No `amount` is not an amount of 0.
    fails_at(close("budget.settled", r#"{"reservation":0,"account":"m","released":10}"#, 3_000_000), 3, is_budget);
    fails_at(
        close("budget.settled", r#"{"reservation":0,"account":"m","amount":11,"released":0}"#, 3_000_000),
        3,
        is_budget,
    );
    fails_at(
        close("budget.settled", r#"{"reservation":0,"account":"m","amount":4,"released":5}"#, 3_000_000),
        3,
        is_budget,
    );
    // Void and expiry post nothing; an `amount` there is not read.
    assert!(
        close("budget.voided", r#"{"reservation":0,"account":"m","released":10,"amount":"n/a"}"#, 3_000_000).is_ok()
    );
    assert!(close("budget.expired", r#"{"reservation":0,"account":"m","released":10,"amount":7}"#, 9_000_000).is_ok());
    fails_at(close("budget.voided", r#"{"reservation":0,"account":"m","released":9}"#, 3_000_000), 3, is_budget);
}

#[test]
fn deadlines_settle_before_expire_at_or_after_void_any_time() {
    let conductor = key(1, Role::Conductor);
    let close = |kind: &str, time_us: i64| {
        let amount = if kind == "budget.settled" { r#""amount":1,"released":9"# } else { r#""released":10"# };
        let mut chain = reserved(&conductor);
        chain.push_at(&conductor, kind, &format!(r#"{{"reservation":0,"account":"m",{amount}}}"#), time_us);
        chain.verify()
    };
    assert!(close("budget.settled", 8_999_999).is_ok());
    fails_at(close("budget.settled", 9_000_000), 3, is_budget);
    fails_at(close("budget.expired", 8_999_999), 3, is_budget);
    assert!(close("budget.expired", 9_000_000).is_ok());
    for t in [i64::MIN, 0, 8_999_999, 9_000_000, i64::MAX] {
        assert!(close("budget.voided", t).is_ok(), "void at {t}");
    }
    // The deadline must be later than the reservation's own time.
    let mut chain = Chain::new(&conductor);
    chain.push(&conductor, "budget.opened", r#"{"account":"m","limit":100}"#);
    let reserve = r#"{"reservation":0,"account":"m","amount":10,"deadline_us":2000000}"#;
    chain.push_at(&conductor, "budget.reserved", reserve, 2_000_000);
    fails_at(chain.verify(), 2, is_budget);
}

#[test]
fn limits_and_extensions_are_positive_and_absent_means_null() {
    let conductor = key(1, Role::Conductor);
    let reviewer = key(3, Role::Reviewer);
    let open = |payload: &str| {
        let mut chain = Chain::new(&conductor);
        chain.push(&conductor, "budget.opened", payload);
        chain.verify()
    };
    assert!(open(r#"{"account":"m","limit":1}"#).is_ok());
    assert!(open(r#"{"account":"m","parent":null,"limit":9007199254740992}"#).is_ok());
    fails_at(open(r#"{"account":"m","limit":0}"#), 1, is_budget);
    fails_at(open(r#"{"account":"m","limit":9007199254740993}"#), 1, is_budget);
    fails_at(open(r#"{"account":"m"}"#), 1, is_budget);
    fails_at(open(r#"{"account":"m","limit":null}"#), 1, is_budget);
    fails_at(open(r#"{"account":"","limit":5}"#), 1, is_budget);

    let extend = |amount: &str| {
        let mut chain = Chain::new(&conductor);
        chain.push(&conductor, "budget.opened", r#"{"account":"m","limit":100}"#);
        chain.register(&conductor, &reviewer.public().to_hex(), "reviewer");
        chain.push(&reviewer, "budget.extended", &format!(r#"{{"account":"m","amount":{amount}}}"#));
        chain.verify()
    };
    assert!(extend("1").is_ok());
    assert!(extend("9007199254740892").is_ok(), "up to 2^53 in all");
    fails_at(extend("0"), 3, is_budget);
    fails_at(extend("9007199254740893"), 3, is_budget);
}

#[test]
fn the_root_is_level_one_and_eight_levels_is_the_most() {
    let conductor = key(1, Role::Conductor);
    let tree = |levels: usize| {
        let mut chain = Chain::new(&conductor);
        chain.push(&conductor, "budget.opened", r#"{"account":"a1","parent":null,"limit":100}"#);
        for level in 2..=levels {
            let payload = format!(r#"{{"account":"a{level}","parent":"a{}"}}"#, level - 1);
            chain.push(&conductor, "budget.opened", &payload);
        }
        chain.verify()
    };
    assert_eq!(tree(8).expect("eight levels"), 9);
    fails_at(tree(9), 9, is_budget);
    assert_eq!(ledger::ACCOUNT_DEPTH_MAX, 8);

    // The ledger's own accounts follow the same count.
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("conductor.redb")).expect("open");
    ledger.write(|t| t.genesis(&conductor, json!({}), 0)).expect("genesis");
    ledger.write(|t| t.open_account(&conductor, "a1", None, Some(100), 1)).expect("root");
    for level in 2..=8 {
        let (name, parent) = (format!("a{level}"), format!("a{}", level - 1));
        ledger.write(|t| t.open_account(&conductor, &name, Some(&parent), None, 1)).expect("level");
    }
    let err = ledger.write(|t| t.open_account(&conductor, "a9", Some("a8"), None, 1)).expect_err("ninth level");
    assert!(matches!(err, LedgerError::Budget(ledger::BudgetError::TooDeep(_))), "{err}");
}

// ---------------------------------------------------------------------------
// Sequence numbers reported, empty exports, tails
// ---------------------------------------------------------------------------

#[test]
fn failures_are_reported_at_the_expected_position() {
    let conductor = key(1, Role::Conductor);
    let mut chain = Chain::new(&conductor);
    for i in 0..4 {
        chain.push(&conductor, "mission.declared", &format!(r#"{{"mission":"m{i}"}}"#));
    }
    // Record 2 removed: the record found at position 2 says seq 3.
    let mut records = chain.records.clone();
    records.remove(2);
    let got = verify_export(&mut export_of(&records).as_slice(), &[]);
    assert!(matches!(got, Err(VerifyError::Bad { seq: 2, failure: VerifyFailure::Missing { expected: 2, found: 3 } })));
    // Record 1 repeated: the record found at position 2 says seq 1.
    let mut records = chain.records.clone();
    records.insert(2, records[1].clone());
    let got = verify_export(&mut export_of(&records).as_slice(), &[]);
    assert!(matches!(
        got,
        Err(VerifyError::Bad { seq: 2, failure: VerifyFailure::OutOfOrder { expected: 2, found: 1 } })
    ));

    // An empty export (N = 0) does not verify: at sequence 0.
    let got = verify_export(&mut export_of(&[]).as_slice(), &[]);
    assert!(matches!(got, Err(VerifyError::Bad { seq: 0, failure: VerifyFailure::Empty })), "{got:?}");
}

// ---------------------------------------------------------------------------
// Checkpoint files
// ---------------------------------------------------------------------------

fn checkpoint_file() -> (Checkpoint, String) {
    let conductor = key(1, Role::Conductor);
    let mut chain = Chain::new(&conductor);
    let head = chain.prev.to_string();
    chain.push(&conductor, "journal.checkpoint", &format!(r#"{{"entries":1,"head":"{head}"}}"#));
    let checkpoint = Checkpoint::from_record(chain.records[1].clone()).expect("checkpoint");
    let text = checkpoint.to_text();
    (checkpoint, text)
}

#[test]
fn checkpoint_files_have_one_exact_syntax() {
    let (checkpoint, text) = checkpoint_file();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(text.ends_with('\n') && !text.contains('\r'));
    let (header, seq, hash, record) = (lines[0], lines[1], lines[2], lines[3]);
    let hash_hex = hash.trim_start_matches("hash: ");
    let record_hex = record.trim_start_matches("record: ");

    let valid = [
        text.clone(),
        text.trim_end_matches('\n').to_owned(),
        text.replace('\n', "\r\n"),
        format!("{header}\r\n{seq}\n{hash}\r\n{record}"),
        format!("{header}\n{record}\n{hash}\n{seq}\n"),
    ];
    for file in &valid {
        assert_eq!(Checkpoint::parse(file).as_ref().ok(), Some(&checkpoint), "{file:?}");
    }
    let malformed = [
        String::new(),
        format!("{text}\n"),
        format!("\n{text}"),
        format!("\u{feff}{text}"),
        format!("{header} \n{seq}\n{hash}\n{record}\n"),
        format!("{header}\n{seq} \n{hash}\n{record}\n"),
        format!("{header}\n{seq}\n{hash}\n{record}\t\n"),
        format!("{header}\n{seq}\n\n{hash}\n{record}\n"),
        format!("{header}\n{seq}\n{hash}\n{record}\r"),
        format!("{header}\r\r\n{seq}\n{hash}\n{record}\n"),
        format!("{header}\nseq:  1\n{hash}\n{record}\n"),
        format!("{header}\nseq:1\n{hash}\n{record}\n"),
        format!("{header}\nSeq: 1\n{hash}\n{record}\n"),
        format!("{header}\nseq: +1\n{hash}\n{record}\n"),
        format!("{header}\nseq: 01\n{hash}\n{record}\n"),
        format!("{header}\nseq: 2\n{hash}\n{record}\n"),
        format!("{header}\n{seq}\nhash: {}\n{record}\n", hash_hex.to_uppercase()),
        format!("{header}\n{seq}\n{hash}\nrecord: {}\n", record_hex.to_uppercase()),
        format!("{header}\n{seq}\n{hash}\n{record}\n{seq}\n"),
        format!("{header}\n{seq}\n{hash}\n"),
        format!("{header}\n{seq}\n{hash}\n{record}\nnote: kept by A.\n"),
        text.replace("conductor-checkpoint v1", "Conductor-Checkpoint v1"),
    ];
    for file in &malformed {
        let got = Checkpoint::parse(file);
        assert!(matches!(got, Err(CheckpointError::Malformed(_))), "{file:?}: {got:?}");
    }
    // A record that does not decode, or whose signature fails, is invalid.
    let mut cut = record_hex.to_owned();
    cut.truncate(cut.len() - 2);
    let got = Checkpoint::parse(&format!("{header}\n{seq}\n{hash}\nrecord: {cut}\n"));
    assert!(matches!(got, Err(CheckpointError::Invalid(VerifyFailure::Malformed(_)))), "{got:?}");
    let mut forged = hex::decode(record_hex).expect("hex");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let got = Checkpoint::parse(&format!("{header}\n{seq}\n{hash}\nrecord: {}\n", hex::encode(forged)));
    assert!(matches!(got, Err(CheckpointError::Invalid(VerifyFailure::BadSignature))), "{got:?}");
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

#[test]
fn the_ledger_writes_only_object_payloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("conductor.redb")).expect("open");
    let conductor = key(1, Role::Conductor);
    ledger.write(|t| t.genesis(&conductor, json!({}), 0)).expect("genesis");
    for payload in [json!(null), json!([1]), json!("text"), json!(5)] {
        let err = ledger.write(|t| t.append(&conductor, "mission.declared", &payload, 1)).expect_err("refused");
        assert!(matches!(err, LedgerError::BadEntry(_)), "{payload}: {err}");
        let items = [("mission.declared", payload.clone())];
        assert!(ledger.write(|t| t.append_batch(&conductor, &items, 1)).is_err(), "{payload}");
    }
    ledger.write(|t| t.append(&conductor, "mission.declared", &json!({"mission": "m"}), 1)).expect("object");
    assert_eq!(ledger.verify().expect("verifies").entries, 2);
}

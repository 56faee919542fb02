//! The test vectors in `docs/vectors/journal-v1.json` (described in
//! `docs/journal-format.md`, appendix A).
//!
//! The file is generated here from fixed inputs (secret keys, times,
//! payload texts) and checked three ways:
//!
//! 1. every value in the file is re-derived from the file's own inputs by
//!    code written from the document (layout, hash, signature, key id,
//!    export framing), not by the ledger's encoder;
//! 2. the ledger's verifier gives every verdict the file states (valid
//!    journal, checkpoint files, invalid cases with their sequence number
//!    and the step of section 7 that fails);
//! 3. the generator, run again, produces exactly the file, so a change to
//!    the format (or to a verdict) fails until the file is regenerated:
//!
//! ```text
//! CONDUCTOR_WRITE_VECTORS=1 cargo test --release -p ledger --test vectors
//! ```

use std::collections::BTreeMap;

use identity::{Keypair, PublicKey, Role, Signature};
use ledger::entry::signed_record;
use ledger::{Checkpoint, CheckpointError, EntryHash, VerifyError, VerifyFailure, verify_export};
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/journal-v1.json");
/// 2023-11-14T22:13:20Z, in microseconds.
const T0: i64 = 1_700_000_000_000_000;
const DEADLINE: i64 = T0 + 60_000_000;

// ---------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------

struct Key {
    name: &'static str,
    /// The 32-byte Ed25519 secret key (the RFC 8032 seed): one byte
    /// repeated, so a reader can type it.
    secret: [u8; 32],
    pair: Keypair,
}

fn keys() -> Vec<Key> {
    [
        ("conductor", Role::Conductor, 0x01u8),
        ("agent", Role::Agent, 0x02),
        ("agent2", Role::Agent, 0x03),
        ("reviewer", Role::Reviewer, 0x04),
    ]
    .into_iter()
    .map(|(name, role, byte)| Key { name, secret: [byte; 32], pair: Keypair::from_secret_bytes(role, &[byte; 32]) })
    .collect()
}

fn key<'a>(keys: &'a [Key], name: &str) -> &'a Keypair {
    &keys.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("no key {name}")).pair
}

fn hash_in(record: &[u8]) -> EntryHash {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&record[record.len() - 96..record.len() - 64]);
    EntryHash(hash)
}

/// One entry of the valid journal, before it is signed.
struct Planned {
    signer: &'static str,
    kind: &'static str,
    payload: String,
}

fn plan(keys: &[Key]) -> Vec<Planned> {
    let hex = |name: &str| key(keys, name).public().to_hex();
    let id = |name: &str| key(keys, name).public().key_id().to_string();
    let p = |signer, kind, payload: String| Planned { signer, kind, payload };
    let (c, a, r) = (hex("conductor"), hex("agent"), hex("reviewer"));
    vec![
        p("conductor", "conductor.genesis", format!(r#"{{"format":1,"conductor_key":"{c}","key_id":"{}"}}"#, id("conductor"))),
        p("conductor", "key.registered", format!(r#"{{"public_key":"{a}","key_id":"{}","role":"agent","mission":"m-1"}}"#, id("agent"))),
        p("conductor", "key.registered", format!(r#"{{"public_key":"{r}","key_id":"{}","role":"reviewer","name":"R. Viewer"}}"#, id("reviewer"))),
        p("conductor", "budget.opened", r#"{"account":"m-1","parent":null,"limit":1000}"#.into()),
        p("conductor", "budget.opened", r#"{"account":"m-1/agent","parent":"m-1"}"#.into()),
        p("conductor", "task.started", r#"{"mission":"m-1","task":0,"input":{"text":"hello"}}"#.into()),
        p("conductor", "budget.reserved", format!(r#"{{"reservation":0,"account":"m-1/agent","amount":100,"deadline_us":{DEADLINE},"for":"host.infer"}}"#)),
        p("agent", "host.infer", r#"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"text":"hello","prompt_tokens":3,"completion_tokens":2,"cost":40}"#.into()),
        p("conductor", "budget.settled", r#"{"reservation":0,"account":"m-1/agent","amount":40,"released":60}"#.into()),
        p("agent", "task.proposed", r#"{"mission":"m-1","task":0,"output":{"ok":true}}"#.into()),
        p("conductor", "task.decided", r#"{"mission":"m-1","task":0,"verdict":"approve"}"#.into()),
        p("reviewer", "budget.extended", r#"{"account":"m-1","amount":500,"limit":1500,"reason":"approved overrun"}"#.into()),
        p("conductor", "budget.batch", format!(
            r#"{{"postings":[{{"kind":"budget.reserved","time_us":{},"payload":{{"reservation":1,"account":"m-1","amount":200,"deadline_us":{DEADLINE}}}}},{{"kind":"budget.voided","time_us":{},"payload":{{"reservation":1,"account":"m-1","released":200}}}}]}}"#,
            time(12) - 500,
            time(12),
        )),
        // The head before it is filled in when the journal is built.
        p("conductor", "journal.checkpoint", String::new()),
        p("conductor", "key.rotated", format!(r#"{{"old_key":"{a}","new_key":"{}","new_key_id":"{}","reason":"rotation"}}"#, hex("agent2"), id("agent2"))),
        p("agent2", "host.log", r#"{"message":"signed by the rotated-in key"}"#.into()),
        p("conductor", "key.revoked", format!(r#"{{"public_key":"{r}","key_id":"{}","reason":"left the team"}}"#, id("reviewer"))),
    ]
}

/// The valid journal's entry times: one millisecond apart.
fn time(seq: u64) -> i64 {
    T0 + 1_000 * seq as i64
}

struct Built {
    records: Vec<Vec<u8>>,
    entries: Vec<Value>,
}

fn build(keys: &[Key]) -> Built {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut entries = Vec::new();
    let mut prev = EntryHash::default();
    for (seq, mut planned) in plan(keys).into_iter().enumerate() {
        let seq = seq as u64;
        if planned.kind == "journal.checkpoint" {
            planned.payload = format!(r#"{{"entries":{seq},"head":"{prev}"}}"#);
        }
        let record =
            signed_record(seq, &prev, time(seq), key(keys, planned.signer), planned.kind, planned.payload.as_bytes());
        let canonical = &record[..record.len() - 96];
        entries.push(json!({
            "seq": seq,
            "prev": prev.to_string(),
            "time_us": time(seq),
            "signer": planned.signer,
            "kind": planned.kind,
            "payload": planned.payload,
            "canonical": hex::encode(canonical),
            "hash": hash_in(&record).to_string(),
            "signature": hex::encode(&record[record.len() - 64..]),
        }));
        prev = hash_in(&record);
        records.push(record);
    }
    Built { records, entries }
}

fn export_of(declared: u64, records: &[Vec<u8>], trailing: &[u8]) -> Vec<u8> {
    let mut out = b"CJEXPORT".to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&declared.to_be_bytes());
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out.extend_from_slice(trailing);
    out
}

/// An invalid case: records given as an index into the valid journal or
/// as a new record.
enum Rec {
    Valid(usize),
    New(Vec<u8>),
}

struct Case {
    name: &'static str,
    reason: &'static str,
    records: Vec<Rec>,
    declared: Option<u64>,
    trailing: Vec<u8>,
    held: Vec<usize>,
    seq: u64,
    step: &'static str,
}

fn case(name: &'static str, reason: &'static str, records: Vec<Rec>, seq: u64, step: &'static str) -> Case {
    Case { name, reason, records, declared: None, trailing: Vec::new(), held: Vec::new(), seq, step }
}

fn valid(range: std::ops::Range<usize>) -> Vec<Rec> {
    range.map(Rec::Valid).collect()
}

fn invalid_cases(keys: &[Key], built: &Built) -> Vec<Case> {
    let n = built.records.len();
    let prev_of = |seq: usize| if seq == 0 { EntryHash::default() } else { hash_in(&built.records[seq - 1]) };
    let payload_of = |seq: usize| built.entries[seq]["payload"].as_str().unwrap_or_default().to_owned();
    // A new, correctly signed entry at `seq` following the valid entry before it.
    let new = |seq: usize, signer: &str, kind: &str, payload: &str| {
        Rec::New(signed_record(
            seq as u64,
            &prev_of(seq),
            time(seq as u64),
            key(keys, signer),
            kind,
            payload.as_bytes(),
        ))
    };
    let with = |mut records: Vec<Rec>, last: Rec| {
        records.push(last);
        records
    };
    let agent_hex = key(keys, "agent").public().to_hex();

    let mut flipped = built.records[7].clone();
    let at = flipped.windows(7).position(|w| w == b"\"hello\"").unwrap_or(0) + 1;
    flipped[at] = b'j';
    let mut bad_signature = built.records[7].clone();
    let r_at = bad_signature.len() - 64;
    bad_signature[r_at] ^= 0x01;
    let unlinked =
        signed_record(7, &EntryHash::default(), time(7), key(keys, "agent"), "host.infer", payload_of(7).as_bytes());
    let mut changed_checkpoint = built.records.clone();
    changed_checkpoint.truncate(13);
    let head12 = hash_in(&built.records[12]);
    let late_checkpoint = signed_record(
        13,
        &head12,
        time(13) + 1,
        key(keys, "conductor"),
        "journal.checkpoint",
        payload_of(13).as_bytes(),
    );

    vec![
        case(
            "hash",
            "a payload byte of entry 7 changed (`hello` to `jello`); the stored hash no longer matches",
            with(valid(0..7), Rec::New(flipped)),
            7,
            "hash",
        ),
        case(
            "signature",
            "the first byte of entry 7's signature (in R) changed",
            with(valid(0..7), Rec::New(bad_signature)),
            7,
            "signature",
        ),
        case(
            "link",
            "entry 7 re-made and re-signed by its signer with `prev` = 32 zero bytes",
            with(valid(0..7), Rec::New(unlinked)),
            7,
            "link",
        ),
        case(
            "removed",
            "entry 5 removed: the record at position 5 says seq 6 (reported at 5, `entries removed`)",
            (0..n).filter(|i| *i != 5).map(Rec::Valid).collect(),
            5,
            "sequence",
        ),
        case(
            "duplicated",
            "entry 5 repeated: the record at position 6 says seq 5 (reported at 6, `duplicated or moved`)",
            with(valid(0..6), Rec::Valid(5)),
            6,
            "sequence",
        ),
        case(
            "wrong-role",
            "`task.proposed` (an agent kind) signed by the conductor key",
            with(valid(0..9), new(9, "conductor", "task.proposed", &payload_of(9))),
            9,
            "authorization",
        ),
        case(
            "unregistered",
            "entry 1 signed by the agent key before any `key.registered` introduced it",
            with(valid(0..1), new(1, "agent", "host.log", r#"{"message":"too early"}"#)),
            1,
            "authorization",
        ),
        case(
            "rotated-away",
            "the agent key signs after `key.rotated` (seq 14) ended it",
            with(valid(0..16), new(16, "agent", "host.log", r#"{"message":"old key"}"#)),
            16,
            "authorization",
        ),
        case(
            "revoked",
            "the reviewer key signs after `key.revoked` (seq 16) ended it",
            with(valid(0..n), new(n, "reviewer", "budget.extended", r#"{"account":"m-1","amount":1}"#)),
            n as u64,
            "authorization",
        ),
        case(
            "upper-case-key",
            "`key.registered` names the agent key in upper-case hex",
            with(
                valid(0..1),
                new(
                    1,
                    "conductor",
                    "key.registered",
                    &format!(r#"{{"public_key":"{}","role":"agent"}}"#, agent_hex.to_uppercase()),
                ),
            ),
            1,
            "authorization",
        ),
        case(
            "upper-case-head",
            "the checkpoint states its `head` in upper-case hex",
            with(
                valid(0..13),
                new(
                    13,
                    "conductor",
                    "journal.checkpoint",
                    &format!(r#"{{"entries":13,"head":"{}"}}"#, head12.to_string().to_uppercase()),
                ),
            ),
            13,
            "authorization",
        ),
        case(
            "unknown-kind",
            "`task.begun` is not a kind of format 1",
            with(valid(0..5), new(5, "conductor", "task.begun", r#"{"mission":"m-1","task":0}"#)),
            5,
            "authorization",
        ),
        case(
            "array-payload",
            "`budget.opened` with its fields as an array, not an object",
            with(valid(0..3), new(3, "conductor", "budget.opened", r#"["m-1",null,1000]"#)),
            3,
            "budget",
        ),
        case(
            "settled-without-amount",
            "`budget.settled` without `amount` (absent is not 0), releasing all 100",
            with(
                valid(0..8),
                new(8, "conductor", "budget.settled", r#"{"reservation":0,"account":"m-1/agent","released":100}"#),
            ),
            8,
            "budget",
        ),
        case(
            "settled-at-deadline",
            "reservation 0 settled at exactly its `deadline_us` (settling must come before it)",
            with(
                valid(0..8),
                Rec::New(signed_record(
                    8,
                    &prev_of(8),
                    DEADLINE,
                    key(keys, "conductor"),
                    "budget.settled",
                    payload_of(8).as_bytes(),
                )),
            ),
            8,
            "budget",
        ),
        case(
            "duplicate-name",
            "`task.decided` names `task` twice",
            with(valid(0..10), new(10, "conductor", "task.decided", r#"{"mission":"m-1","task":0,"task":1}"#)),
            10,
            "outcomes",
        ),
        case(
            "second-outcome",
            "task 0 of `m-1` ends a second time (`task.failed` after `task.decided` at 10)",
            with(valid(0..11), new(11, "conductor", "task.failed", r#"{"mission":"m-1","task":0}"#)),
            11,
            "outcomes",
        ),
        case("empty", "an export of no records (N = 0)", Vec::new(), 0, "empty"),
        Case {
            trailing: vec![0],
            ..case("trailing", "one byte after the last declared record", valid(0..n), n as u64, "trailing")
        },
        Case {
            declared: Some(n as u64 + 1),
            ..case(
                "count-too-large",
                "the header declares one record more than the file holds",
                valid(0..n),
                n as u64,
                "framing",
            )
        },
        Case {
            held: vec![0],
            ..case(
                "tail-cut-past-held-checkpoint",
                "cut to 13 entries (header says 13) while checkpoint file 0 (seq 13) is held",
                valid(0..13),
                13,
                "tail",
            )
        },
        Case {
            held: vec![0],
            ..case(
                "checkpoint-differs",
                "entry 13 re-signed one microsecond later: valid on its own, but not the held checkpoint",
                with(valid(0..13), Rec::New(late_checkpoint)),
                13,
                "checkpoint",
            )
        },
    ]
}

fn checkpoint_files(built: &Built) -> Vec<Value> {
    let checkpoint = Checkpoint::from_record(built.records[13].clone()).expect("entry 13 is a checkpoint");
    let text = checkpoint.to_text();
    let lines: Vec<&str> = text.lines().collect();
    let mut forged = built.records[13].clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let forged = format!("{}\n{}\n{}\nrecord: {}\n", lines[0], lines[1], lines[2], hex::encode(forged));
    let file = |text: String, expect: &str, reason: &str| json!({"text": text, "expect": expect, "reason": reason});
    vec![
        file(text.clone(), "valid", "as `conductor audit checkpoint` writes it"),
        file(text.replace('\n', "\r\n"), "valid", "CR LF line ends"),
        file(
            format!("{}\n{}\n{}\n{}", lines[0], lines[3], lines[1], lines[2]),
            "valid",
            "fields in another order, no line end after the last",
        ),
        file(
            text.replace(lines[3], &lines[3].to_uppercase().replace("RECORD: ", "record: ")),
            "malformed",
            "`record` in upper-case hex",
        ),
        file(format!("{text}\n"), "malformed", "a blank line at the end"),
        file(text.replace("seq: 13", "seq: 013"), "malformed", "`seq` with a leading zero"),
        file(text.replace("seq: 13", "seq: 13 "), "malformed", "a space after the `seq` value"),
        file(forged, "invalid", "the record's signature does not verify"),
    ]
}

fn generate() -> Value {
    let keys = keys();
    let built = build(&keys);
    let records: Vec<Vec<u8>> = built.records.clone();
    let n = records.len() as u64;
    let invalid: Vec<Value> = invalid_cases(&keys, &built)
        .into_iter()
        .map(|c| {
            let records: Vec<Value> = c
                .records
                .iter()
                .map(|r| match r {
                    Rec::Valid(i) => json!(i),
                    Rec::New(bytes) => json!(hex::encode(bytes)),
                })
                .collect();
            let mut case = json!({
                "name": c.name,
                "reason": c.reason,
                "records": records,
                "expect": {"seq": c.seq, "step": c.step},
            });
            if let Some(declared) = c.declared {
                case["declared"] = json!(declared);
            }
            if !c.trailing.is_empty() {
                case["trailing"] = json!(hex::encode(&c.trailing));
            }
            if !c.held.is_empty() {
                case["held"] = json!(c.held);
            }
            case
        })
        .collect();
    json!({
        "about": "Test vectors for the conductor journal, format 1. See docs/journal-format.md, appendix A. Generated by ledger/tests/vectors.rs; do not edit by hand.",
        "keys": keys.iter().map(|k| json!({
            "name": k.name,
            "role": k.pair.role().as_str(),
            "secret_key": hex::encode(k.secret),
            "public_key": k.pair.public().to_hex(),
            "key_id": k.pair.public().key_id().to_string(),
        })).collect::<Vec<_>>(),
        "entries": built.entries,
        "export": hex::encode(export_of(n, &records, &[])),
        "verifies": {"entries": n, "head": hash_in(&records[records.len() - 1]).to_string()},
        "checkpoint_files": checkpoint_files(&built),
        "invalid": invalid,
    })
}

// ---------------------------------------------------------------------------
// Checking the file from its own contents
// ---------------------------------------------------------------------------

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("`{field}` is a string in {v}"))
}

fn unhex(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(text(v, field)).unwrap_or_else(|e| panic!("`{field}` is hex: {e}"))
}

fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("`{field}` is an integer in {v}"))
}

/// Section 1's layout, written out from the document.
fn canonical(seq: u64, prev: &[u8], time_us: i64, signer: &[u8], kind: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"CJE1");
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(prev);
    out.extend_from_slice(&time_us.to_be_bytes());
    out.extend_from_slice(signer);
    out.extend_from_slice(&(kind.len() as u16).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The steps of section 7 (and the end-of-journal checks) a failure can
/// belong to.
fn steps_of(failure: &VerifyFailure) -> &'static [&'static str] {
    match failure {
        VerifyFailure::Malformed(_) => &["framing", "decoding"],
        VerifyFailure::Truncated { .. } => &["framing", "tail"],
        VerifyFailure::Missing { .. } | VerifyFailure::OutOfOrder { .. } => &["sequence"],
        VerifyFailure::HashMismatch => &["hash"],
        VerifyFailure::BrokenLink => &["link"],
        VerifyFailure::UnknownKind(_)
        | VerifyFailure::UnknownKey(_)
        | VerifyFailure::RevokedKey { .. }
        | VerifyFailure::WrongRole { .. }
        | VerifyFailure::BadKeyEvent(_) => &["authorization"],
        VerifyFailure::BadPayload(_) => &["authorization", "outcomes", "links"],
        VerifyFailure::BudgetRule(_) => &["budget"],
        VerifyFailure::TaskEndedTwice { .. } | VerifyFailure::GateDecidedTwice { .. } => &["outcomes"],
        VerifyFailure::DelegationTwice { .. }
        | VerifyFailure::DelegationChildIndex { .. }
        | VerifyFailure::ChildListedTwice { .. }
        | VerifyFailure::UnknownDelegation { .. }
        | VerifyFailure::WrongParent { .. }
        | VerifyFailure::WrongDepth { .. }
        | VerifyFailure::NotAChild { .. }
        | VerifyFailure::ChildAfterJoin { .. }
        | VerifyFailure::JoinedTwice { .. }
        | VerifyFailure::JoinChildren { .. }
        | VerifyFailure::JoinBeforeEnd { .. }
        | VerifyFailure::JoinResultDiffers { .. } => &["links"],
        VerifyFailure::CheckpointMismatch { .. } => &["checkpoint"],
        VerifyFailure::BadSignature | VerifyFailure::BadSigner => &["signature"],
        VerifyFailure::TrailingData => &["trailing"],
        VerifyFailure::Empty => &["empty"],
        VerifyFailure::ProjectionDiffers(_) => &["database"],
    }
}

fn check(file: &Value) {
    // Keys: public key and key id from the secret key alone.
    let mut public: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    for k in file["keys"].as_array().expect("keys") {
        let role: Role = text(k, "role").parse().expect("role");
        let secret: [u8; 32] = unhex(k, "secret_key").try_into().expect("32-byte secret key");
        let pair = Keypair::from_secret_bytes(role, &secret);
        assert_eq!(pair.public().to_hex(), text(k, "public_key"), "public key of {k}");
        let id = blake3::derive_key("conductor key id v1", &pair.public().to_bytes());
        assert_eq!(hex::encode(&id[..16]), text(k, "key_id"), "key id of {k}");
        public.insert(text(k, "name").to_owned(), pair.public().to_bytes());
    }

    // Entries: canonical bytes, hash, chain, signature.
    let mut prev = [0u8; 32];
    let mut records = Vec::new();
    for (i, e) in file["entries"].as_array().expect("entries").iter().enumerate() {
        let seq = int(e, "seq") as u64;
        assert_eq!(seq, i as u64, "entries are in order from 0");
        assert_eq!(unhex(e, "prev"), prev, "prev of {seq}");
        let signer = public[text(e, "signer")];
        let bytes = canonical(seq, &prev, int(e, "time_us"), &signer, text(e, "kind"), text(e, "payload").as_bytes());
        assert_eq!(hex::encode(&bytes), text(e, "canonical"), "canonical bytes of {seq}");
        let hash = blake3::derive_key("conductor journal entry v1", &bytes);
        assert_eq!(hex::encode(hash), text(e, "hash"), "hash of {seq}");
        let mut message = b"conductor journal signature v1\0".to_vec();
        message.extend_from_slice(&hash);
        assert_eq!(message.len(), 63);
        let signature: [u8; 64] = unhex(e, "signature").try_into().expect("64-byte signature");
        PublicKey::from_bytes(&signer)
            .expect("signer")
            .verify(&message, &Signature::from_bytes(signature))
            .unwrap_or_else(|err| panic!("signature of {seq}: {err}"));
        let mut record = bytes;
        record.extend_from_slice(&hash);
        record.extend_from_slice(&signature);
        let decoded = ledger::entry::decode(&record).expect("decodes");
        assert_eq!((decoded.seq, decoded.kind.as_str()), (seq, text(e, "kind")));
        records.push(record);
        prev = hash;
    }
    let n = records.len() as u64;
    let export = export_of(n, &records, &[]);
    assert_eq!(hex::encode(&export), text(file, "export"), "export framing");

    // Checkpoint files.
    let mut held = Vec::new();
    for (i, f) in file["checkpoint_files"].as_array().expect("checkpoint files").iter().enumerate() {
        let got = Checkpoint::parse(text(f, "text"));
        match (text(f, "expect"), got) {
            ("valid", Ok(c)) => held.push(Some(c)),
            ("malformed", Err(CheckpointError::Malformed(_))) | ("invalid", Err(CheckpointError::Invalid(_))) => {
                held.push(None)
            }
            (expect, got) => panic!("checkpoint file {i} ({}): expected {expect}, got {got:?}", text(f, "reason")),
        }
    }
    let held_file = |i: usize| held[i].clone().unwrap_or_else(|| panic!("checkpoint file {i} is valid"));

    // The valid journal verifies, alone and against every valid file.
    let expected = &file["verifies"];
    let valid_held: Vec<Checkpoint> = held.iter().flatten().cloned().collect();
    for with in [Vec::new(), valid_held] {
        let report = verify_export(&mut export.as_slice(), &with).expect("the valid journal verifies");
        assert_eq!(report.entries, expected["entries"].as_u64().expect("entries"));
        assert_eq!(report.head.to_string(), text(expected, "head"));
        assert_eq!(report.checkpoints_matched, with.len());
    }

    // Every invalid case fails where and how the file says.
    for c in file["invalid"].as_array().expect("invalid cases") {
        let name = text(c, "name");
        let case_records: Vec<Vec<u8>> = c["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| match r {
                Value::Number(i) => records[i.as_u64().expect("index") as usize].clone(),
                Value::String(h) => hex::decode(h).expect("record hex"),
                other => panic!("{name}: record {other}"),
            })
            .collect();
        let declared = c["declared"].as_u64().unwrap_or(case_records.len() as u64);
        let trailing = c.get("trailing").map_or_else(Vec::new, |_| unhex(c, "trailing"));
        let case_held: Vec<Checkpoint> = c
            .get("held")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |h| h.iter().map(|i| held_file(i.as_u64().expect("file index") as usize)).collect());
        let bytes = export_of(declared, &case_records, &trailing);
        let (seq, step) = (c["expect"]["seq"].as_u64().expect("seq"), text(&c["expect"], "step"));
        match verify_export(&mut bytes.as_slice(), &case_held) {
            Err(VerifyError::Bad { seq: got, failure }) => {
                assert!(
                    got == seq && steps_of(&failure).contains(&step),
                    "{name}: expected {step} at {seq}, got `{failure}` at {got}"
                );
            }
            other => panic!("{name}: expected {step} at {seq}, got {other:?}"),
        }
    }
}

#[test]
fn the_vector_file_is_what_the_format_gives() {
    let generated = generate();
    if std::env::var_os("CONDUCTOR_WRITE_VECTORS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&generated).expect("serialises") + "\n";
        std::fs::write(FILE, text).unwrap_or_else(|e| panic!("writing {FILE}: {e}"));
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).unwrap_or_else(|e| panic!("reading {FILE}: {e}")))
            .expect("the vector file is JSON");
    check(&stored);
    assert!(
        stored == generated,
        "{FILE} is not what the format gives today; if the change is intended, regenerate it with \
         CONDUCTOR_WRITE_VECTORS=1 cargo test --release -p ledger --test vectors"
    );
}

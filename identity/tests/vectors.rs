//! Published Ed25519 test vectors, run through the crate's public API:
//! RFC 8032 section 7.1 and Project Wycheproof's `ed25519_test.json`
//! (sources and licenses in `tests/data/README.md`).

use std::path::Path;

use identity::{IdentityError, Keypair, PublicKey, Role, Signature, verify_batch};
use serde::Deserialize;

// Read at run time (cargo sets it for every test it runs), not with
// `env!`: a target directory shared between checkouts (CI keeps one)
// can reuse a test binary built in another checkout.
fn read_data(name: &str) -> String {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = Path::new(&manifest).join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unhex(text: &str) -> Vec<u8> {
    hex_decode(text).unwrap_or_else(|| panic!("bad hex in test data: {text}"))
}

/// Hex decoding without a dependency on the `hex` crate from the tests.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn flip_bit(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

// ---------------------------------------------------------------- RFC 8032

#[derive(Deserialize)]
struct RfcFile {
    tests: Vec<RfcVector>,
}

#[derive(Deserialize)]
struct RfcVector {
    name: String,
    secret_key: String,
    public_key: String,
    message: String,
    signature: String,
}

fn rfc_vectors() -> Vec<RfcVector> {
    let file: RfcFile = serde_json::from_str(&read_data("rfc8032_ed25519.json")).expect("json");
    assert_eq!(
        file.tests.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    );
    file.tests
}

#[test]
fn rfc8032_signing_gives_exactly_the_vector_signature() {
    for v in rfc_vectors() {
        let secret: [u8; 32] = unhex(&v.secret_key).try_into().expect("32-byte secret");
        let key = Keypair::from_secret_bytes(Role::Agent, &secret);
        assert_eq!(key.public().to_hex(), v.public_key, "{}: public key", v.name);
        let message = unhex(&v.message);
        let sig = key.sign(&message);
        assert_eq!(sig.to_hex(), v.signature, "{}: signature", v.name);
        let public = PublicKey::from_hex(&v.public_key).expect("vector key");
        public.verify(&message, &sig).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        verify_batch(&[(public, message.as_slice(), sig)]).unwrap_or_else(|e| panic!("{}: batch: {e}", v.name));
    }
}

#[test]
fn rfc8032_vectors_verify_together_in_one_batch() {
    let items: Vec<(PublicKey, Vec<u8>, Signature)> = rfc_vectors()
        .iter()
        .map(|v| {
            (
                PublicKey::from_hex(&v.public_key).expect("key"),
                unhex(&v.message),
                Signature::from_hex(&v.signature).expect("signature"),
            )
        })
        .collect();
    verify_batch(&items).expect("all five in one batch");
}

#[test]
fn rfc8032_any_one_bit_flip_is_rejected() {
    for v in rfc_vectors() {
        let public = PublicKey::from_hex(&v.public_key).expect("key");
        let message = unhex(&v.message);
        let sig_bytes = unhex(&v.signature);
        let sig = Signature::from_hex(&v.signature).expect("signature");
        for bit in 0..message.len() * 8 {
            let bent = flip_bit(&message, bit);
            assert!(public.verify(&bent, &sig).is_err(), "{}: message bit {bit}", v.name);
        }
        for bit in 0..64 * 8 {
            let bent = Signature::from_bytes(flip_bit(&sig_bytes, bit).try_into().expect("64"));
            assert!(public.verify(&message, &bent).is_err(), "{}: signature bit {bit}", v.name);
            assert!(
                verify_batch(&[(public, message.as_slice(), bent)]).is_err(),
                "{}: batch, signature bit {bit}",
                v.name
            );
        }
    }
}

// ---------------------------------------------------------------- Wycheproof

#[derive(Deserialize)]
struct WycheproofFile {
    algorithm: String,
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    test_groups: Vec<WycheproofGroup>,
}

#[derive(Deserialize)]
struct WycheproofGroup {
    #[serde(rename = "publicKey")]
    public_key: WycheproofKey,
    tests: Vec<WycheproofCase>,
}

#[derive(Deserialize)]
struct WycheproofKey {
    pk: String,
}

#[derive(Deserialize)]
struct WycheproofCase {
    #[serde(rename = "tcId")]
    tc_id: u64,
    comment: String,
    msg: String,
    sig: String,
    result: String,
}

/// Cases where this crate's policy is deliberately stricter than
/// Wycheproof's expectation, with the reason. Every mismatch not listed
/// here fails the test. (None so far: weak keys and non-canonical
/// encodings are already `invalid` in Wycheproof's own verdicts.)
const STRICTER_THAN_WYCHEPROOF: &[(u64, &str)] = &[];

/// One case, parsed through the public API. `None` where the key or the
/// signature cannot even be constructed, which is a rejection too.
struct Parsed {
    tc_id: u64,
    comment: String,
    expect_valid: bool,
    item: Option<(PublicKey, Vec<u8>, Signature)>,
    why_unparsed: Option<String>,
}

fn wycheproof_cases() -> Vec<Parsed> {
    let file: WycheproofFile = serde_json::from_str(&read_data("ed25519_test.json")).expect("json");
    assert_eq!(file.algorithm, "EDDSA");
    let mut cases = Vec::new();
    for group in &file.test_groups {
        for case in &group.tests {
            let expect_valid = match case.result.as_str() {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {}: result `{other}` needs a decision here", case.tc_id),
            };
            let key = PublicKey::from_hex(&group.public_key.pk);
            let sig = Signature::from_hex(&case.sig);
            let (item, why_unparsed) = match (key, sig) {
                (Ok(key), Ok(sig)) => (Some((key, unhex(&case.msg), sig)), None),
                (Err(e), _) => (None, Some(format!("key refused: {e}"))),
                (_, Err(e)) => (None, Some(format!("signature refused: {e}"))),
            };
            cases.push(Parsed { tc_id: case.tc_id, comment: case.comment.clone(), expect_valid, item, why_unparsed });
        }
    }
    assert_eq!(cases.len(), file.number_of_tests, "numberOfTests");
    cases
}

fn check_mismatches(what: &str, mismatches: Vec<String>) {
    let unexplained: Vec<&String> = mismatches
        .iter()
        .filter(|m| !STRICTER_THAN_WYCHEPROOF.iter().any(|(id, _)| m.starts_with(&format!("tcId {id} "))))
        .collect();
    assert!(unexplained.is_empty(), "{what}: verdicts differ from Wycheproof:\n{unexplained:#?}");
}

#[test]
fn wycheproof_strict_verify_matches_every_verdict() {
    let cases = wycheproof_cases();
    let mut mismatches = Vec::new();
    let (mut valid, mut invalid, mut unparsed) = (0, 0, 0);
    for case in &cases {
        let accepted = match &case.item {
            Some((key, msg, sig)) => key.verify(msg, sig).is_ok(),
            None => {
                unparsed += 1;
                false
            }
        };
        if case.expect_valid {
            valid += 1;
        } else {
            invalid += 1;
        }
        if accepted != case.expect_valid {
            mismatches.push(format!(
                "tcId {} ({}): expected {}, got {}{}",
                case.tc_id,
                case.comment,
                if case.expect_valid { "valid" } else { "invalid" },
                if accepted { "accepted" } else { "rejected" },
                case.why_unparsed.as_deref().map(|w| format!(" ({w})")).unwrap_or_default(),
            ));
        }
    }
    eprintln!(
        "wycheproof ed25519: {} cases, {valid} valid, {invalid} invalid ({unparsed} of them \
         refused already when parsing key or signature), {} mismatches",
        cases.len(),
        mismatches.len()
    );
    check_mismatches("strict verify", mismatches);
}

#[test]
fn wycheproof_batch_verify_matches_every_verdict() {
    let cases = wycheproof_cases();
    let mut mismatches = Vec::new();
    // Invalid cases that ed25519-dalek's batch check alone accepts, i.e.
    // that only our strict pre-checks catch (with dalek 2.2: tcId 151, an
    // `R` that is a non-canonical encoding of the identity point).
    let mut caught_by_pre_checks = Vec::new();
    for case in &cases {
        let Some((key, msg, sig)) = &case.item else { continue };
        let accepted = verify_batch(&[(*key, msg.as_slice(), *sig)]).is_ok();
        let raw = ed25519_dalek::verify_batch(
            &[msg.as_slice()],
            &[ed25519_dalek::Signature::from_bytes(&sig.to_bytes())],
            &[ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).expect("parsed key")],
        );
        if raw.is_ok() && !case.expect_valid {
            caught_by_pre_checks.push(case.tc_id);
        }
        if accepted != case.expect_valid {
            mismatches.push(format!(
                "tcId {} ({}): expected {}, batch of one {}",
                case.tc_id,
                case.comment,
                if case.expect_valid { "valid" } else { "invalid" },
                if accepted { "accepted" } else { "rejected" },
            ));
        }
    }
    eprintln!("wycheproof: invalid cases only the pre-checks catch: {caught_by_pre_checks:?}");
    check_mismatches("batch of one", mismatches);
}

#[test]
fn wycheproof_all_valid_in_one_batch_and_any_invalid_spoils_it() {
    let cases = wycheproof_cases();
    let valid: Vec<(PublicKey, Vec<u8>, Signature)> =
        cases.iter().filter(|c| c.expect_valid).filter_map(|c| c.item.clone()).collect();
    assert_eq!(valid.len(), cases.iter().filter(|c| c.expect_valid).count());
    verify_batch(&valid).expect("every valid vector in one batch");

    let mut spoiled = 0;
    for case in cases.iter().filter(|c| !c.expect_valid) {
        let Some(bad) = &case.item else { continue };
        // Put the invalid item in the middle, so neither end is special.
        let middle = valid.len() / 2;
        let mut items = valid.clone();
        items.insert(middle, bad.clone());
        match verify_batch(&items) {
            Err(IdentityError::BadSignatureInBatch { index, len, .. }) => {
                assert_eq!((index, len), (middle, items.len()), "tcId {}", case.tc_id);
            }
            other => panic!("tcId {} ({}): batch gave {other:?}", case.tc_id, case.comment),
        }
        spoiled += 1;
    }
    eprintln!(
        "wycheproof batch: {} valid in one batch; {spoiled} batches of them plus one invalid \
         all rejected, naming the invalid one",
        valid.len()
    );
}

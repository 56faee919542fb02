//! `docs/journal-format.md` and the code state the same format: the table
//! of kinds and the role that signs each (section 5) is the one the
//! verifier enforces (`ledger::rules::kinds`), and the constants the
//! document quotes are the code's.

use std::collections::{BTreeMap, BTreeSet};

use identity::Role;

fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/journal-format.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The lines of the section that starts with the heading `## {number}.`.
fn section(doc: &str, number: u32) -> Vec<&str> {
    let heading = format!("## {number}. ");
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(&heading));
    let mut out = vec![lines.next().unwrap_or_else(|| panic!("no section {number}"))];
    out.extend(lines.take_while(|l| !l.starts_with("## ")));
    out
}

/// The names in backticks in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Section 5's table `| role | kinds |`: each kind with the role of its row.
fn documented_signers(doc: &str) -> BTreeMap<String, Role> {
    let lines = section(doc, 5);
    let header = lines
        .iter()
        .position(|l| l.replace(' ', "") == "|role|kinds|")
        .expect("section 5 has the table `| role | kinds |`");
    let mut out = BTreeMap::new();
    for row in lines[header + 2..].iter().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 2, "row `{row}` has two cells");
        let role: Role = match quoted(cells[0]).as_slice() {
            [role] => role.parse().unwrap_or_else(|e| panic!("row `{row}`: {e}")),
            _ => panic!("row `{row}` names one role in backticks"),
        };
        for kind in quoted(cells[1]) {
            if let Some(other) = out.insert(kind.to_owned(), role) {
                panic!("`{kind}` is listed for both {other} and {role}");
            }
        }
    }
    assert!(!out.is_empty(), "the table lists kinds");
    out
}

#[test]
fn the_documented_signer_table_is_the_enforced_one() {
    let documented = documented_signers(&document());
    let mut enforced = BTreeMap::new();
    for (kind, role) in ledger::rules::kinds() {
        assert!(enforced.insert(kind.to_owned(), role).is_none(), "`{kind}` is in KIND_SIGNERS twice");
    }
    let mut problems = Vec::new();
    for (kind, role) in &enforced {
        match documented.get(kind) {
            None => problems.push(format!("`{kind}` ({role}) is enforced but not in the document's table")),
            Some(doc_role) if doc_role != role => {
                problems.push(format!("`{kind}`: the document says {doc_role}, the code enforces {role}"));
            }
            Some(_) => {}
        }
    }
    for (kind, role) in &documented {
        if !enforced.contains_key(kind) {
            problems.push(format!("`{kind}` ({role}) is in the document's table but not enforced"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/journal-format.md section 5 and ledger/src/rules.rs differ:\n{}",
        problems.join("\n")
    );
    for (kind, role) in &enforced {
        assert_eq!(ledger::rules::signer_role(kind), Some(*role));
    }
}

#[test]
fn every_kind_the_document_describes_is_in_the_table() {
    let doc = document();
    let table: BTreeSet<String> = documented_signers(&doc).into_keys().collect();
    // The first column of the tables of key events (section 3), host calls
    // and outcomes (section 5) and budget postings (section 6).
    let mut described = BTreeSet::new();
    for number in [3, 5, 6] {
        for row in section(&doc, number).iter().filter(|l| l.starts_with("| `")) {
            let first = row.trim_start_matches('|').split('|').next().unwrap_or_default();
            described.extend(quoted(first).into_iter().filter(|k| k.contains('.')).map(str::to_owned));
        }
    }
    assert!(described.len() >= 15, "found the kinds of the tables: {described:?}");
    let missing: Vec<_> = described.difference(&table).collect();
    assert!(missing.is_empty(), "described but not in section 5's table: {missing:?}");
}

#[test]
fn the_constants_the_document_quotes_are_the_codes() {
    let doc = document();
    // Section 1: "at most `90 + 64 + 4 194 304 + 96` = 4 194 554 bytes".
    assert_eq!(ledger::entry::KIND_BYTES_MAX, 64);
    assert_eq!(ledger::entry::PAYLOAD_BYTES_MAX, 4_194_304);
    assert_eq!(ledger::entry::RECORD_BYTES_MAX, 90 + 64 + 4_194_304 + 96);
    assert_eq!(ledger::entry::RECORD_BYTES_MAX, 4_194_554);
    assert!(doc.contains("`90 + 64 + 4 194 304 + 96` = 4 194 554 bytes"), "section 1 states the record maximum");
    assert!(section(&doc, 8).join(" ").contains("4 194 554"), "section 8 states the record maximum");
    // Section 6: levels and amounts.
    assert_eq!(ledger::ACCOUNT_DEPTH_MAX, 8);
    assert!(doc.contains("an account may be at most at level 8"), "section 6 states the depth");
    assert_eq!(ledger::AMOUNT_MAX, 1 << 53);
    assert!(doc.contains("`1 ≤ amount ≤ 2^53`"), "section 6 states the amount bound");
}

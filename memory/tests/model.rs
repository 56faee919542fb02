//! Random histories of asserts and retracts against a naive model: for
//! every transaction time, the belief is a map from valid time to value,
//! overwritten over each written interval. Every (valid, tx) pair must
//! see exactly the model's value.

mod common;

use common::{SPACE, db, fact, value};
use memory::{Interval, Query, Select};
use proptest::prelude::*;

/// Valid times are sampled on 0..GRID; an open end covers the rest.
const GRID: i64 = 24;

#[derive(Debug, Clone)]
enum Op {
    Assert { from: i64, to: Option<i64> },
    Retract { from: i64, to: Option<i64> },
}

fn interval() -> impl Strategy<Value = (i64, Option<i64>)> {
    (0..GRID, proptest::option::of(1..=8i64)).prop_map(|(from, len)| (from, len.map(|l| from + l)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => interval().prop_map(|(from, to)| Op::Assert { from, to }),
        1 => interval().prop_map(|(from, to)| Op::Retract { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_valid_and_transaction_time_sees_the_model(
        steps in proptest::collection::vec((op(), 0..2i64), 1..16)
    ) {
        let db = db();
        // model[tx] = value at each grid valid time after all writes at tx.
        let mut beliefs: Vec<Vec<Option<String>>> = vec![vec![None; GRID as usize]];
        let mut tx = 1;
        let mut state = vec![None; GRID as usize];
        for (n, (op, advance)) in steps.iter().enumerate() {
            if n > 0 && *advance == 1 {
                beliefs.push(state.clone());
                tx += 1;
            }
            let label = format!("v{n}");
            let (from, to, value) = match op {
                Op::Assert { from, to } => (*from, *to, Some(label.clone())),
                Op::Retract { from, to } => (*from, *to, None),
            };
            for (t, slot) in state.iter_mut().enumerate() {
                let t = t as i64;
                if t >= from && to.is_none_or(|to| t < to) {
                    slot.clone_from(&value);
                }
            }
            db.write(tx, |w| match op {
                Op::Assert { from, to } => w.assert(fact(&label, *from, *to)),
                Op::Retract { from, to } => w.retract(SPACE, "policy", "limit", Interval { from: *from, to: *to }),
            }).expect("write");
        }
        beliefs.push(state.clone());

        for (known, belief) in beliefs.iter().enumerate() {
            for valid in 0..GRID {
                let mut q = Query::new([SPACE], Select::Subject("policy".into()));
                q.valid_at = Some(valid);
                q.known_at = Some(known as i64);
                let seen: Vec<_> = db.recall(&q).facts.iter().map(value).collect();
                let expected: Vec<_> = belief[valid as usize].iter().cloned().collect();
                prop_assert_eq!(&seen, &expected, "valid {} known {}", valid, known);
                if known as i64 == tx {
                    q.known_at = None;
                    let now: Vec<_> = db.recall(&q).facts.iter().map(value).collect();
                    prop_assert_eq!(&now, &expected, "as currently known, valid {}", valid);
                }
            }
        }
        // The word index agrees with the fact tables: every current value
        // is found by its label, and only current ones.
        let q = Query::new([SPACE], Select::Words("v0 v1 v2 v3 v4 v5 v6 v7 v8 v9 v10 v11 v12 v13 v14 v15".into()));
        let mut found: Vec<_> = db.recall(&q).facts.iter().map(|f| (value(f), f.valid_from)).collect();
        found.sort();
        let mut all = Query::new([SPACE], Select::Subject("policy".into()));
        all.max_facts = usize::MAX;
        let mut listed: Vec<_> = db.recall(&all).facts.iter().map(|f| (value(f), f.valid_from)).collect();
        listed.sort();
        prop_assert_eq!(found, listed);
    }
}

//! Same prompt, same answer, bit for bit, whatever ran before it and
//! whatever it was batched with. mistral.rs loaded on the real model as
//! `inference/src/lib.rs` loads it; each answer's every token and
//! log-probability must equal the same prompt answered alone by a fresh
//! engine without a prefix cache. (`examples/determinism.rs` prints the
//! same comparison as a table.)
//!
//! The first test's second step (two prompts reusing different lengths of
//! the first's cache) gave prompt 1 a different answer from token 15 on
//! before the vendored scheduler fix (`vendor/README.md`, mistralrs-core
//! 4). The second batches caches of two capacities, which 0.8.1's
//! `clone_in_cache` refuses with a shape error, and unwraps (a panic in
//! the engine); mistralrs-core 6 sizes the batch for the largest.

mod common;
#[path = "../inference/examples/support/load.rs"]
mod load;
#[path = "../inference/examples/support/probe.rs"]
mod probe;

/// Runs `plan` on an engine with the prefix cache (as the conductor's) and
/// requires every answer to equal its reference.
async fn every_answer_equals_its_reference(prompts: &[String], plan: &[Vec<usize>], max_tokens: usize) {
    let path = common::model_file();
    let reference = probe::references(&path, prompts, max_tokens).await.expect("reference answers");
    let model = probe::engine(&path, true).await.expect("engine");
    let answers = probe::run_plan(&model, prompts, plan, max_tokens).await.expect("answers");
    assert_eq!(answers.len(), plan.iter().map(Vec::len).sum::<usize>());
    for (step, i, at_once, answer) in &answers {
        let c = answer.compare(&reference[*i]);
        assert!(
            c.same_text && c.bit_equal,
            "step {step}, prompt {i} ({at_once} at once): {c:?}\n reference: {:?}\n this run:  {:?}",
            reference[*i].text,
            answer.text
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_do_not_depend_on_the_prefix_cache_or_the_batch() {
    let prompts: Vec<String> = probe::CASES.iter().map(|c| (*c).to_owned()).collect();
    let all: Vec<usize> = (0..prompts.len()).collect();
    // Case 0 alone; cases 1 and 2 at once, each reusing a different length
    // of case 0's prompt from the cache (what set a completion aside, and
    // then prefilled it again at the wrong positions); each again with its
    // whole prompt cached; then all six at once, of three lengths.
    let plan = vec![vec![0], vec![1, 2], vec![0], vec![1], vec![2], all];
    every_answer_equals_its_reference(&prompts, &plan, 48).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sequences_whose_caches_differ_in_capacity_batch_correctly() {
    // A KV cache grows in steps of 512 tokens, and one taken from the
    // prefix cache keeps the capacity of the sequence it came from. Once a
    // short conversation (prompt 0) and a long one (prompt 1, over 800
    // tokens) are cached, prompts 2 and 3 reuse the same length of each
    // (the shared opening and their case line), so they run as one batch
    // (MISTRALRS_DEBUG=1 logs `Prompt[66, 66]` then `Completion[67, 67]`)
    // with caches of 1024 and 512 tokens' capacity.
    let opening = "Case file for review. ";
    let note = "Short note: the roof needs repairs. State the verdict and why.";
    let prompts = vec![
        format!(
            "{opening}Beta case. {}State the verdict and why.",
            "The tenant reports a leaking roof and asks for repairs. ".repeat(8)
        ),
        format!(
            "{opening}Alpha case. {}State the verdict and why.",
            "The applicant lists monthly income, rent, household members and residency. ".repeat(50)
        ),
        format!("{opening}Alpha case. {note}"),
        format!("{opening}Beta case. {note}"),
    ];
    let plan = vec![vec![0], vec![1], vec![2, 3]];
    every_answer_equals_its_reference(&prompts, &plan, 100).await;
}

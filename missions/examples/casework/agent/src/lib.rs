//! `eligibility-agent`: the casework example's housing-support agent.
//!
//! The published policy decides each case; the model is a second opinion,
//! not the decision-maker. The agent computes the rule result itself, asks
//! the model for a verdict, and only reports `eligible`/`ineligible` when
//! the two agree. Any disagreement or unreadable answer becomes
//! `undetermined`, which the mission's gates route to a human. A tiny model
//! can therefore add a reason a reviewer may read, but can never flip an
//! outcome against the rules.
//!
//! The guest uses no clock, randomness, files or network: everything it
//! learns comes through journaled host calls, so a run can be replayed
//! from the journal and must reach the same decision.

use conductor_agent::{Agent as Guest, Decision};

use conductor_agent::host;
use conductor_agent::{Fact, Message};
use serde::Deserialize;
use serde_json::json;

/// Memory subject the mission seeds with the policy figures.
const POLICY_SUBJECT: &str = "policy:housing-support";
/// Used when the conductor did not inject `_model` into the input.
const DEFAULT_MODEL: &str = "smollm2-135m";
/// Enough for a verdict word and one short sentence; every token is
/// reserved against the mission budget before the call, so stay small.
const MAX_TOKENS: u32 = 48;
/// Longest model reason quoted in a decision's `reason`.
const MAX_MODEL_REASON_CHARS: usize = 300;
/// Longest raw model answer kept in `details.model_answer`.
const MAX_MODEL_ANSWER_CHARS: usize = 200;

struct EligibilityAgent;

conductor_agent::export_agent!(EligibilityAgent);

impl Guest for EligibilityAgent {
    fn run(input: String) -> Result<Decision, String> {
        let case = Case::parse(&input)?;
        let subject = format!("applicant:{}", case.applicant);

        let policy_facts = host::recall(POLICY_SUBJECT, None)
            .map_err(|e| format!("cannot read policy '{POLICY_SUBJECT}': {e}"))?;
        let policy = Policy::from_facts(&policy_facts)?;

        // History only informs the reviewer, so a failed read is logged and
        // the case still gets decided on its own facts.
        let history = host::recall(&subject, None).unwrap_or_else(|e| {
            host::log(&format!("history unavailable for {subject}: {e}"));
            Vec::new()
        });
        let prior_decision = latest_value(&history, "last-decision").map(str::to_owned);
        host::log(&format!(
            "{}: policy {} facts; history {} facts{}",
            case.id,
            policy_facts.len(),
            history.len(),
            prior_decision
                .as_deref()
                .map(|p| format!(" (last: {p})"))
                .unwrap_or_default(),
        ));

        let assessment = Assessment::new(&case, &policy);
        let rule = assessment.verdict();
        host::log(&format!("{}: rule says {}", case.id, rule.label()));

        let model = case.model.as_deref().unwrap_or(DEFAULT_MODEL);
        let completion = host::infer(model, &prompt(&case, &assessment), MAX_TOKENS)
            .map_err(|e| format!("inference refused: {e}"))?;
        let answer = completion.text.trim();
        let parsed = parse_answer(answer);
        host::log(&format!(
            "{}: model {} ({}+{} tokens) says {}",
            case.id,
            model,
            completion.prompt_tokens,
            completion.completion_tokens,
            parsed.map_or("nothing parseable", |a| a.verdict.label()),
        ));

        let rule_summary = assessment.summary(&case);
        let (outcome, mut reason) = match parsed {
            Some(a) if a.verdict == rule => (
                rule.label(),
                format!(
                    "{} by rule: {rule_summary}. Model agrees: {}",
                    capitalise(rule.label()),
                    a.reason
                ),
            ),
            Some(a) => (
                "undetermined",
                format!(
                    "Rule and model disagree; needs human review. Rule says {}: {rule_summary}. \
                     Model says {}: {}",
                    rule.label(),
                    a.verdict.label(),
                    a.reason
                ),
            ),
            None => (
                "undetermined",
                format!(
                    "Model gave no ELIGIBLE/INELIGIBLE verdict; needs human review. \
                     Rule says {}: {rule_summary}. Model said: \"{}\"",
                    rule.label(),
                    tidy(answer, MAX_MODEL_REASON_CHARS)
                ),
            ),
        };
        let exceeds_max_award = policy
            .max_award
            .is_some_and(|max| case.requested_amount > max);
        if let (true, Some(max)) = (exceeds_max_award, policy.max_award) {
            reason.push_str(&format!(
                " Requested {} exceeds the maximum award {max}.",
                case.requested_amount
            ));
        }

        // The decision stands even if it cannot be remembered; the journal
        // still holds it, and failing here would waste the inference spent.
        if let Err(e) = host::remember(
            &subject,
            "last-decision",
            &format!("{outcome} for {}", case.id),
            None,
        ) {
            host::log(&format!("could not remember decision for {subject}: {e}"));
        }

        let details = json!({
            "case_id": case.id,
            "income_limit": assessment.income_limit,
            "eligible_by_rule": rule == Verdict::Eligible,
            "model_answer": truncate_chars(answer, MAX_MODEL_ANSWER_CHARS),
            "model_verdict": parsed.map(|a| a.verdict.label()),
            "requested_amount": case.requested_amount,
            "max_award": policy.max_award,
            "exceeds_max_award": exceeds_max_award,
            "prior_decision": prior_decision,
        });

        Ok(Decision {
            outcome: outcome.to_owned(),
            reason,
            details: details.to_string(),
        })
    }
}

/// One case from the queue. Unknown fields (such as `notes`) are ignored:
/// free text written by or for the applicant never reaches the model, so it
/// cannot be used to talk the model into a verdict.
#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    applicant: String,
    household_size: u32,
    monthly_income: u64,
    requested_amount: u64,
    residency_months: u32,
    /// Injected by the conductor: which local model this mission may use.
    #[serde(rename = "_model", default)]
    model: Option<String>,
}

impl Case {
    fn parse(input: &str) -> Result<Self, String> {
        let mut case: Case = serde_json::from_str(input).map_err(|e| {
            format!(
                "invalid case input (expected a JSON object with id, applicant, household_size, \
                 monthly_income, requested_amount, residency_months; amounts in whole units): {e}"
            )
        })?;
        case.id = case.id.trim().to_owned();
        case.applicant = case.applicant.trim().to_owned();
        if case.id.is_empty() {
            return Err("invalid case input: `id` is empty".to_owned());
        }
        if case.applicant.is_empty() {
            return Err(format!("invalid case {}: `applicant` is empty", case.id));
        }
        if case.household_size == 0 {
            return Err(format!(
                "invalid case {}: `household_size` must be at least 1",
                case.id
            ));
        }
        if case.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            case.model = None;
        }
        Ok(case)
    }
}

/// The policy figures, as currently recorded in memory.
#[derive(Debug)]
struct Policy {
    income_limit_monthly: u64,
    per_extra_member: u64,
    min_residency_months: u32,
    /// Optional: only used to flag large requests for the reviewer.
    max_award: Option<u64>,
}

impl Policy {
    fn from_facts(facts: &[Fact]) -> Result<Self, String> {
        let required = |predicate: &str| {
            latest_value(facts, predicate).ok_or_else(|| {
                format!(
                    "policy fact '{predicate}' is missing under '{POLICY_SUBJECT}'; \
                     the mission must seed it"
                )
            })
        };
        Ok(Self {
            income_limit_monthly: number(
                required("income-limit-monthly")?,
                "income-limit-monthly",
            )?,
            per_extra_member: number(
                required("income-limit-per-extra-member")?,
                "income-limit-per-extra-member",
            )?,
            min_residency_months: number(
                required("min-residency-months")?,
                "min-residency-months",
            )?,
            max_award: latest_value(facts, "max-award")
                .map(|v| number(v, "max-award"))
                .transpose()?,
        })
    }
}

/// The current value of `predicate`: the fact that became valid last, with
/// the latest recording breaking ties, so corrections win over originals.
fn latest_value<'a>(facts: &'a [Fact], predicate: &str) -> Option<&'a str> {
    facts
        .iter()
        .filter(|f| f.predicate == predicate)
        .max_by_key(|f| (f.valid_from, f.recorded_at))
        .map(|f| f.value.as_str())
}

fn number<T: std::str::FromStr>(value: &str, predicate: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("policy fact '{predicate}' is not a whole number: '{value}'"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Eligible,
    Ineligible,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Eligible => "eligible",
            Verdict::Ineligible => "ineligible",
        }
    }
}

/// The deterministic rule result with the figures behind it.
#[derive(Debug)]
struct Assessment {
    income_limit: u64,
    base_limit: u64,
    per_extra_member: u64,
    extra_members: u32,
    min_residency_months: u32,
    income_ok: bool,
    residency_ok: bool,
}

impl Assessment {
    fn new(case: &Case, policy: &Policy) -> Self {
        let extra_members = case.household_size.saturating_sub(1);
        // Saturating: absurd seeded figures must not wrap into a low limit.
        let income_limit = policy.income_limit_monthly.saturating_add(
            policy
                .per_extra_member
                .saturating_mul(u64::from(extra_members)),
        );
        Self {
            income_limit,
            base_limit: policy.income_limit_monthly,
            per_extra_member: policy.per_extra_member,
            extra_members,
            min_residency_months: policy.min_residency_months,
            income_ok: case.monthly_income <= income_limit,
            residency_ok: case.residency_months >= policy.min_residency_months,
        }
    }

    fn verdict(&self) -> Verdict {
        if self.income_ok && self.residency_ok {
            Verdict::Eligible
        } else {
            Verdict::Ineligible
        }
    }

    /// The figures a reviewer needs to check the rule by hand.
    fn summary(&self, case: &Case) -> String {
        format!(
            "income {} {} limit {} ({} base + {} extra members x {}); residency {} months {} minimum {}",
            case.monthly_income,
            if self.income_ok { "within" } else { "above" },
            self.income_limit,
            self.base_limit,
            self.extra_members,
            self.per_extra_member,
            case.residency_months,
            if self.residency_ok { "meets" } else { "below" },
            self.min_residency_months,
        )
    }
}

/// A short prompt: SmolLM2-135M is tiny and runs on CPU, so it gets the
/// computed comparisons rather than raw policy text to reason over.
fn prompt(case: &Case, a: &Assessment) -> Vec<Message> {
    let system = "You check housing-support cases. Answer with one word first, \
                  ELIGIBLE or INELIGIBLE, then one short reason.";
    // A 135M model cannot do the arithmetic reliably (it answered
    // "eligible" to every case when asked to judge the figures itself), so
    // the prompt states the rule's verdict and asks the model to explain
    // it. The agent still checks that the model's verdict matches: an
    // answer that contradicts or omits it goes to a reviewer.
    let user = format!(
        "Household of {}. Monthly income {}, limit {}: {}.\n\
         Residency {} months, minimum {}: {}.\n\
         By the rules the applicant is {}.\n\
         State the verdict and why.",
        case.household_size,
        case.monthly_income,
        a.income_limit,
        if a.income_ok {
            "within the limit"
        } else {
            "above the limit"
        },
        case.residency_months,
        a.min_residency_months,
        if a.residency_ok {
            "meets the minimum"
        } else {
            "below the minimum"
        },
        a.verdict().label().to_uppercase(),
    );
    vec![
        Message {
            role: "system".to_owned(),
            content: system.to_owned(),
        },
        Message {
            role: "user".to_owned(),
            content: user,
        },
    ]
}

/// What the model said, once a verdict has been found in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer<'a> {
    verdict: Verdict,
    /// The model's reason, tidied and bounded; never empty.
    reason: &'a str,
}

/// Finds the model's verdict: the first ELIGIBLE / INELIGIBLE word, matched
/// as a whole word and case-insensitively (so "ineligible" is never read as
/// "eligible"), with "not eligible" / "isn't eligible" read as INELIGIBLE.
///
/// The first verdict wins because the prompt asks for it first; anything
/// later is the model's reasoning, and it is shown to the reviewer anyway.
fn parse_answer(text: &str) -> Option<Answer<'_>> {
    const NEGATIONS: [&str; 4] = ["not", "isn't", "isnt", "never"];
    let mut previous: Option<(usize, &str)> = None;
    for (start, word) in words(text) {
        let found = if word.eq_ignore_ascii_case("ineligible") {
            Some((Verdict::Ineligible, start))
        } else if word.eq_ignore_ascii_case("eligible") {
            match previous {
                Some((neg_start, neg)) if NEGATIONS.iter().any(|n| neg.eq_ignore_ascii_case(n)) => {
                    Some((Verdict::Ineligible, neg_start))
                }
                _ => Some((Verdict::Eligible, start)),
            }
        } else {
            None
        };
        if let Some((verdict, verdict_start)) = found {
            // In the requested format the verdict leads and the rest is the
            // reason; if the model wrote a sentence instead, keep all of it.
            let leads = !text[..verdict_start].chars().any(char::is_alphanumeric);
            let rest = if leads {
                &text[start + word.len()..]
            } else {
                text
            };
            let reason = tidy(rest, MAX_MODEL_REASON_CHARS);
            let reason = if reason.is_empty() {
                "(no reason given)"
            } else {
                reason
            };
            return Some(Answer { verdict, reason });
        }
        previous = Some((start, word));
    }
    None
}

/// Words with their byte offsets; apostrophes stay inside words so that
/// "isn't" is one word.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let is_word = |c: char| c.is_alphanumeric() || c == '\'';
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while rest.next_if(|&(_, c)| !is_word(c)).is_some() {}
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some((i, c)) = rest.next_if(|&(_, c)| is_word(c)) {
            end = i + c.len_utf8();
        }
        Some((start, &text[start..end]))
    })
}

/// Strips the separators a model puts after a verdict ("ELIGIBLE. ...",
/// "INELIGIBLE - ...") and surrounding space, then bounds the length.
fn tidy(text: &str, max_chars: usize) -> &str {
    let trimmed = text
        .trim_start_matches(|c: char| {
            c.is_whitespace() || ".,:;!-*_\"'()[]".contains(c) || c == '\u{2013}' || c == '\u{2014}'
        })
        .trim_end();
    truncate_chars(trimmed, max_chars).trim_end()
}

/// The first `max_chars` characters, cut on a character boundary.
fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ineligible_is_not_read_as_eligible() {
        let a = parse_answer("INELIGIBLE. Income above limit.").unwrap();
        assert_eq!(a.verdict, Verdict::Ineligible);
        assert_eq!(a.reason, "Income above limit.");
    }

    #[test]
    fn eligible_leading_word_is_stripped_from_reason() {
        let a = parse_answer("  eligible - income is within the limit").unwrap();
        assert_eq!(a.verdict, Verdict::Eligible);
        assert_eq!(a.reason, "income is within the limit");
    }

    #[test]
    fn negated_eligible_is_ineligible() {
        for text in ["The applicant is not eligible.", "She isn't ELIGIBLE here"] {
            let a = parse_answer(text).unwrap();
            assert_eq!(a.verdict, Verdict::Ineligible, "{text}");
            assert_eq!(a.reason, text.trim(), "sentence answers keep their text");
        }
        let a = parse_answer("NOT ELIGIBLE: residency too short").unwrap();
        assert_eq!(a.verdict, Verdict::Ineligible);
        assert_eq!(a.reason, "residency too short");
    }

    #[test]
    fn first_verdict_wins_and_words_must_be_whole() {
        assert_eq!(
            parse_answer("Eligibility unclear, ineligible.")
                .unwrap()
                .verdict,
            Verdict::Ineligible
        );
        assert_eq!(
            parse_answer("ELIGIBLE, not ineligible").unwrap().verdict,
            Verdict::Eligible
        );
        assert!(parse_answer("Eligibility depends on income.").is_none());
        assert!(parse_answer("").is_none());
        assert_eq!(
            parse_answer("**ELIGIBLE**").unwrap().reason,
            "(no reason given)"
        );
    }

    #[test]
    fn reason_is_bounded_on_char_boundaries() {
        let long = format!("ELIGIBLE. {}", "é".repeat(1000));
        let a = parse_answer(&long).unwrap();
        assert_eq!(a.reason.chars().count(), MAX_MODEL_REASON_CHARS);
    }

    fn fact(predicate: &str, value: &str, valid_from: i64, recorded_at: i64) -> Fact {
        Fact {
            subject: POLICY_SUBJECT.to_owned(),
            predicate: predicate.to_owned(),
            value: value.to_owned(),
            valid_from,
            valid_to: None,
            recorded_at,
        }
    }

    fn policy() -> Policy {
        Policy::from_facts(&[
            fact("income-limit-monthly", "2000", 1, 1),
            fact("income-limit-monthly", "2400", 2, 2),
            fact("income-limit-per-extra-member", "350", 1, 1),
            fact("min-residency-months", "12", 1, 1),
            fact("max-award", "5000", 1, 1),
        ])
        .unwrap()
    }

    #[test]
    fn latest_policy_fact_wins_and_missing_is_an_error() {
        assert_eq!(policy().income_limit_monthly, 2400);
        let err = Policy::from_facts(&[fact("income-limit-monthly", "2400", 1, 1)]).unwrap_err();
        assert!(err.contains("income-limit-per-extra-member"), "{err}");
    }

    #[test]
    fn rule_uses_household_size_and_residency() {
        let case = Case::parse(
            r#"{"id":"HS-1","applicant":"A","household_size":3,"monthly_income":3100,
                "requested_amount":1,"residency_months":12}"#,
        )
        .unwrap();
        let a = Assessment::new(&case, &policy());
        assert_eq!(a.income_limit, 3100);
        assert_eq!(a.verdict(), Verdict::Eligible);

        let short = Case {
            residency_months: 11,
            ..case
        };
        assert_eq!(
            Assessment::new(&short, &policy()).verdict(),
            Verdict::Ineligible
        );
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(
            Case::parse("not json")
                .unwrap_err()
                .contains("invalid case input")
        );
        let err = Case::parse(r#"{"id":"X","applicant":"A","household_size":0,"monthly_income":1,"requested_amount":1,"residency_months":1}"#).unwrap_err();
        assert!(err.contains("household_size"), "{err}");
    }
}

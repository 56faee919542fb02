//! `claims-risk-agent`: the claims example's risk specialist.
//!
//! The intake agent delegates one check per claim to it: was the claim
//! reported in time, and has the claimant claimed too often this year.
//! The policy's limits come from memory (`policy:<name>`); the rule
//! decides `pass` or `fail`. The model is asked to state and explain the
//! rule's verdict, and its answer is recorded (with whether it agreed) as
//! the explanation a handler reads: SmolLM2-135M cannot be trusted with
//! the comparison itself, so it can never flip the outcome.

use conductor_agent::{Agent, Decision, Fact, Message, host};
use serde::Deserialize;
use serde_json::json;

/// Used when the conductor did not inject `_model` into the input.
const DEFAULT_MODEL: &str = "smollm2-135m";
/// A verdict word and a short reason; every token is reserved first.
const MAX_TOKENS: u32 = 32;
/// Longest raw model answer kept in `details.model_answer`.
const MAX_MODEL_ANSWER_CHARS: usize = 200;

struct Risk;

conductor_agent::export_agent!(Risk);

impl Agent for Risk {
    fn run(input: String) -> Result<Decision, String> {
        let check = RiskCheck::parse(&input)?;
        let subject = format!("policy:{}", check.policy);
        let facts = host::recall(&subject, None).map_err(|e| format!("cannot read policy '{subject}': {e}"))?;
        let limits = Limits::from_facts(&facts, &subject)?;
        let rule = Rule::new(&check, &limits);
        let verdict = rule.verdict();

        let model = check.model.as_deref().unwrap_or(DEFAULT_MODEL);
        let completion = host::infer(model, &prompt(&check, &limits, &rule), MAX_TOKENS)
            .map_err(|e| format!("inference refused: {e}"))?;
        let answer = truncate_chars(completion.text.trim(), MAX_MODEL_ANSWER_CHARS);
        let said = parse_verdict(answer);
        host::log(&format!(
            "{} risk: rule says {}, model says {}",
            check.case_id,
            verdict.label(),
            said.map_or("nothing parseable", Verdict::label)
        ));

        let reason = format!(
            "reported after {} days (limit {}), {} claims this year (limit {})",
            check.days_to_report, limits.max_report_days, check.prior_claims_12m, limits.max_prior_claims
        );
        let details = json!({
            "case_id": check.case_id,
            "check": "risk",
            "disagreement": false,
            "model_answer": answer,
            "model_verdict": said.map(Verdict::label),
            "model_agrees": said == Some(verdict),
        });
        Ok(Decision { outcome: verdict.label().to_owned(), reason, details: details.to_string() })
    }
}

/// The fields of a claim this check reads, as the intake agent sends them.
#[derive(Debug, Deserialize)]
struct RiskCheck {
    case_id: String,
    policy: String,
    days_to_report: u32,
    prior_claims_12m: u32,
    #[serde(rename = "_model", default)]
    model: Option<String>,
}

impl RiskCheck {
    fn parse(input: &str) -> Result<Self, String> {
        let check: RiskCheck = serde_json::from_str(input).map_err(|e| {
            format!("invalid risk check (expected case_id, policy, days_to_report, prior_claims_12m): {e}")
        })?;
        if check.policy.trim().is_empty() {
            return Err(format!("invalid risk check for {}: `policy` is empty", check.case_id));
        }
        Ok(check)
    }
}

/// The policy's risk limits, as recorded in memory.
#[derive(Debug, PartialEq, Eq)]
struct Limits {
    max_report_days: u32,
    max_prior_claims: u32,
}

impl Limits {
    fn from_facts(facts: &[Fact], subject: &str) -> Result<Self, String> {
        let number = |predicate: &str| -> Result<u32, String> {
            let value = facts
                .iter()
                .filter(|f| f.predicate == predicate)
                .max_by_key(|f| (f.valid_from, f.recorded_at))
                .map(|f| f.value.as_str())
                .ok_or_else(|| format!("policy fact '{predicate}' is missing under '{subject}'"))?;
            value.trim().parse().map_err(|_| format!("policy fact '{predicate}' is not a whole number: '{value}'"))
        };
        Ok(Limits { max_report_days: number("max-report-days")?, max_prior_claims: number("max-prior-claims")? })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

struct Rule {
    on_time: bool,
    few_claims: bool,
}

impl Rule {
    fn new(check: &RiskCheck, limits: &Limits) -> Rule {
        Rule {
            on_time: check.days_to_report <= limits.max_report_days,
            few_claims: check.prior_claims_12m <= limits.max_prior_claims,
        }
    }

    fn verdict(&self) -> Verdict {
        if self.on_time && self.few_claims { Verdict::Pass } else { Verdict::Fail }
    }
}

/// The computed comparisons, not the raw figures to reason over: a 135M
/// model gets the arithmetic wrong, but can put a stated verdict in words.
fn prompt(check: &RiskCheck, limits: &Limits, rule: &Rule) -> Vec<Message> {
    let user = format!(
        "Reported after {} days, limit {}: {}.\nClaims this year {}, limit {}: {}.\n\
         By the rules the risk check is {}.\nState the verdict and why.",
        check.days_to_report,
        limits.max_report_days,
        if rule.on_time { "on time" } else { "too late" },
        check.prior_claims_12m,
        limits.max_prior_claims,
        if rule.few_claims { "within the limit" } else { "above the limit" },
        rule.verdict().label().to_uppercase(),
    );
    vec![
        Message {
            role: "system".to_owned(),
            content: "You check insurance claims for risk. Answer with one word first, PASS or FAIL, then one short \
                      reason."
                .to_owned(),
        },
        Message { role: "user".to_owned(), content: user },
    ]
}

/// The first PASS / FAIL word, whole and case-insensitive ("passed" and
/// "failure" do not count: only the words the prompt asked for).
fn parse_verdict(text: &str) -> Option<Verdict> {
    text.split(|c: char| !c.is_alphanumeric()).find_map(|word| {
        if word.eq_ignore_ascii_case("pass") {
            Some(Verdict::Pass)
        } else if word.eq_ignore_ascii_case("fail") {
            Some(Verdict::Fail)
        } else {
            None
        }
    })
}

/// The first `max_chars` characters, cut on a character boundary.
fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(predicate: &str, value: &str, valid_from: i64) -> Fact {
        Fact {
            subject: "policy:p".to_owned(),
            predicate: predicate.to_owned(),
            value: value.to_owned(),
            valid_from,
            valid_to: None,
            recorded_at: valid_from,
        }
    }

    fn check(days: u32, prior: u32) -> RiskCheck {
        RiskCheck {
            case_id: "CL".to_owned(),
            policy: "p".to_owned(),
            days_to_report: days,
            prior_claims_12m: prior,
            model: None,
        }
    }

    #[test]
    fn the_rule_needs_a_timely_report_and_few_claims() {
        let limits = Limits { max_report_days: 30, max_prior_claims: 2 };
        assert_eq!(Rule::new(&check(30, 2), &limits).verdict(), Verdict::Pass, "limits are inclusive");
        assert_eq!(Rule::new(&check(31, 0), &limits).verdict(), Verdict::Fail);
        assert_eq!(Rule::new(&check(1, 3), &limits).verdict(), Verdict::Fail);
    }

    #[test]
    fn latest_fact_wins_and_missing_is_an_error() {
        let facts =
            [fact("max-report-days", "14", 1), fact("max-report-days", "30", 2), fact("max-prior-claims", "2", 1)];
        assert_eq!(
            Limits::from_facts(&facts, "policy:p").unwrap(),
            Limits { max_report_days: 30, max_prior_claims: 2 }
        );
        let err = Limits::from_facts(&facts[..2], "policy:p").unwrap_err();
        assert!(err.contains("max-prior-claims"), "{err}");
    }

    #[test]
    fn verdict_words_are_whole() {
        assert_eq!(parse_verdict("PASS. Reported on time."), Some(Verdict::Pass));
        assert_eq!(parse_verdict("**fail** - too late"), Some(Verdict::Fail));
        assert_eq!(parse_verdict("It passed the check"), None);
        assert_eq!(parse_verdict(""), None);
    }
}

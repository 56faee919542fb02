"""The claims example's coverage specialist, in Python (componentize-py).

The intake agent delegates one check per claim to it: is the peril one the
policy covers, and is the amount within the policy's limit. The policy's
terms come from memory (`policy:<name>`); the rule decides `pass` or
`fail`. The model is asked to state and explain the rule's verdict, and its
answer is recorded (with whether it agreed) as the explanation a handler
reads; it never changes the outcome.

The module is `app`, not `agent`: componentize-py refuses a module named
like the world. Records and imports are generated from cells/wit at build
time; a `result<_, string>` error arrives as `componentize_py_types.Err`.
"""

import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Decision, Message

DEFAULT_MODEL = "smollm2-135m"
# A verdict word and a short reason; every token is reserved first.
MAX_TOKENS = 32
# Longest raw model answer kept in `details.model_answer`.
MAX_MODEL_ANSWER_CHARS = 200


def fail(message: str):
    raise Err(message)


def whole_number(value, name: str) -> int:
    # bool is an int in Python; JSON true is not an amount.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        fail(f"invalid coverage check: `{name}` is not a whole number")
    return value


def latest(facts, predicate: str):
    """The current value of `predicate`: the fact valid last, the latest
    recording breaking ties, so corrections win over originals."""
    matching = [f for f in facts if f.predicate == predicate]
    if not matching:
        return None
    return max(matching, key=lambda f: (f.valid_from, f.recorded_at)).value


def parse_verdict(text: str):
    """The first whole PASS / FAIL word, case-insensitive."""
    for word in re.split(r"[^A-Za-z0-9]+", text):
        if word.lower() in ("pass", "fail"):
            return word.lower()
    return None


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> Decision:
        try:
            check = json.loads(input)
        except ValueError as e:
            fail(f"invalid coverage check: {e}")
        if not isinstance(check, dict):
            fail("invalid coverage check: not a JSON object")
        case_id, policy, peril = check.get("case_id"), check.get("policy"), check.get("peril")
        for name, value in (("case_id", case_id), ("policy", policy), ("peril", peril)):
            if not isinstance(value, str) or not value.strip():
                fail(f"invalid coverage check: `{name}` is not a non-empty string")
        amount = whole_number(check.get("amount"), "amount")
        model = check.get("_model") if isinstance(check.get("_model"), str) else DEFAULT_MODEL

        subject = f"policy:{policy}"
        facts = host.recall(subject, None)
        perils_text = latest(facts, "covered-perils")
        limit_text = latest(facts, "coverage-limit")
        if perils_text is None or limit_text is None:
            fail(f"policy facts 'covered-perils' and 'coverage-limit' are required under '{subject}'")
        try:
            limit = int(limit_text.strip())
        except ValueError:
            fail(f"policy fact 'coverage-limit' is not a whole number: '{limit_text}'")
        covered_perils = [p.strip() for p in perils_text.split(",") if p.strip()]

        covered = peril.strip() in covered_perils
        within = amount <= limit
        verdict = "pass" if covered and within else "fail"

        # The comparisons are stated, not left to the model: a 135M model
        # gets them wrong, but can put a stated verdict in words.
        completion = host.infer(
            model,
            [
                Message(
                    role="system",
                    content="You check insurance claims for coverage. "
                    "Answer with one word first, PASS or FAIL, then one short reason.",
                ),
                Message(
                    role="user",
                    content=f"Peril {peril}: {'covered' if covered else 'not covered'} by the policy.\n"
                    f"Amount {amount}, limit {limit}: {'within' if within else 'above'} the limit.\n"
                    f"By the rules the coverage check is {verdict.upper()}.\n"
                    "State the verdict and why.",
                ),
            ],
            MAX_TOKENS,
        )
        answer = completion.text.strip()[:MAX_MODEL_ANSWER_CHARS]
        said = parse_verdict(answer)
        host.log(f"{case_id} coverage: rule says {verdict}, model says {said or 'nothing parseable'}")

        reason = (
            f"peril {peril} {'covered' if covered else 'not covered'}; "
            f"amount {amount} {'within' if within else 'above'} limit {limit}"
        )
        details = {
            "case_id": case_id,
            "check": "coverage",
            "disagreement": False,
            "model_answer": answer,
            "model_verdict": said,
            "model_agrees": said == verdict,
        }
        return Decision(outcome=verdict, reason=reason, details=json.dumps(details, separators=(",", ":")))

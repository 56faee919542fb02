"""The triage agent in Python (componentize-py); see ../README.md.

The module is `app`, not `agent`: componentize-py refuses a module named
like the world. Records and imports are generated from cells/wit at build
time; a `result<_, string>` error arrives as `componentize_py_types.Err`.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Decision, Message

LANG = "python"
POLICY = "policy:triage"
GATE = "large-amount"
DEFAULT_MODEL = "smollm2-135m"
SUMMARY_TOKENS = 8


def fail(message: str):
    raise Err(message)


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> Decision:
        try:
            case = json.loads(input)
        except ValueError as e:
            fail(f"input: {e}")
        case_id = case.get("id")
        if not isinstance(case_id, str):
            fail("input: `id` is not a string")
        amount = case.get("amount")
        # bool is an int in Python; JSON true is not an amount.
        if not isinstance(amount, int) or isinstance(amount, bool):
            fail("input: `amount` is not an integer")
        model = case.get("_model") if isinstance(case.get("_model"), str) else DEFAULT_MODEL
        host.log(f"triage[{LANG}] {case_id}")

        values = [f.value for f in host.recall(POLICY, None) if f.predicate == "review-above"]
        if not values:
            fail(f"no review-above in {POLICY}")
        try:
            limit = int(values[0])
        except ValueError as e:
            fail(f"review-above: {e}")
        summary = host.infer(
            model,
            [
                Message(role="system", content="Summarise the case in five words."),
                Message(role="user", content=f"Case {case_id}: amount {amount}"),
            ],
            SUMMARY_TOKENS,
        )
        host.remember(f"case:{case_id}", "triaged-by", LANG, None)
        if amount > limit:
            host.request_review(GATE, f"amount {amount} above {limit}")
            outcome = "refer"
        else:
            outcome = "accept"
        details = {
            "lang": LANG,
            "limit": limit,
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
        }
        return Decision(
            outcome=outcome,
            reason=f"amount {amount} vs limit {limit}",
            details=json.dumps(details, separators=(",", ":")),
        )

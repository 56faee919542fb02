"""Concurrent completions through `conductor serve`'s gateway, with the
official `openai` client, compared with the same requests one at a time.

Usage: openai_batch.py BASE_URL KEY
After a warm-up request loads the model, a long request goes first and
keeps it busy; while it runs, four
requests whose prompts render to the same number of tokens and one of
another length arrive together, so the router has a cohort to form. Then
every request runs again alone. Prints one JSON object.
"""
import json
import sys
import threading
import time

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=600)
MODEL = "smollm2-135m"

blocker = "Write a long poem about the sea, the wind and the rain."
# Same words, one digit apart: the same token count, different answers.
same = [f"Case {d}: name one colour of the sky and one of the grass." for d in "1234"]
other = "Case 5: name one colour of the sky, one of the grass and one of the sun."
prompts = same + [other]


def ask(prompt, max_tokens=24):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
    )
    return {"text": r.choices[0].message.content, "prompt_tokens": r.usage.prompt_tokens,
            "completion_tokens": r.usage.completion_tokens}


together = [None] * len(prompts)
failures = []


def run(i):
    try:
        if i is None:
            ask(blocker, max_tokens=64)
        else:
            together[i] = ask(prompts[i])
    except Exception as e:  # reported below: a thread's exception is otherwise lost
        failures.append(repr(e))


# Load the model first: otherwise every request waits on the load, and
# which one is admitted first is a race.
ask("Hi.", max_tokens=1)
first = threading.Thread(target=run, args=(None,))
first.start()
time.sleep(0.5)
threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
for t in threads:
    t.start()
for t in threads + [first]:
    t.join()
if failures:
    sys.exit("concurrent requests failed: " + "; ".join(failures))

alone = [ask(p) for p in prompts]
print(json.dumps({"together": together, "alone": alone}))

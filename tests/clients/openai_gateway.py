"""Drives `conductor serve`'s gateway with the official `openai` client.

Usage: openai_gateway.py BASE_URL KEY POOR_KEY
Prints one JSON object with what each call returned or raised.
"""
import json
import sys

import openai

base, key, poor_key = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
messages = [{"role": "user", "content": "Name one colour of the sky."}]
out = {}

# OpenAI clients list the models first (GET /v1/models).
out["models"] = [m.id for m in client.models.list()]

whole = client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16)
out["whole"] = {
    "text": whole.choices[0].message.content,
    "finish_reason": whole.choices[0].finish_reason,
    "prompt_tokens": whole.usage.prompt_tokens,
    "completion_tokens": whole.usage.completion_tokens,
}

pieces = []
usage = None
for chunk in client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
out["stream"] = {
    "pieces": len(pieces),
    "text": "".join(pieces),
    "prompt_tokens": usage.prompt_tokens if usage else None,
    "completion_tokens": usage.completion_tokens if usage else None,
}


def refused(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "type": type(e).__name__, "code": body.get("code"), "message": body.get("message")}
    return {"status": 200}


bad = openai.OpenAI(base_url=base, api_key="cgw_" + "0" * 64, max_retries=0)
out["bad_key"] = refused(lambda: bad.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=4))
out["unknown_model"] = refused(lambda: client.chat.completions.create(model="gpt-9", messages=messages, max_tokens=4))
long = [{"role": "user", "content": "sky " * 3000}]
out["too_long"] = refused(lambda: client.chat.completions.create(model="smollm2-135m", messages=long, max_tokens=4))
poor = openai.OpenAI(base_url=base, api_key=poor_key, max_retries=0)
out["over_budget"] = refused(lambda: poor.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16))
print(json.dumps(out))

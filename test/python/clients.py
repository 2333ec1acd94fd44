"""The Python `openai` SDK as its users run it, against the gateway.

    python clients.py SCENARIO BASE_URL API_KEY

Prints one JSON object: what the SDK returned or raised, and how many HTTP requests it made
(counted by an httpx event hook, so the SDK's own retries show). Driven by
test/integration/python-clients.test.ts, which sets up the fake upstream for each scenario.
"""

import json
import sys

import httpx
import openai
from openai import OpenAI

scenario, base_url, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
attempts = 0


def count(_request):
    global attempts
    attempts += 1


client = OpenAI(
    base_url=base_url,
    api_key=api_key,
    # Counts every HTTP request the SDK makes, its own retries included.
    http_client=httpx.Client(event_hooks={"request": [count]}),
)


def seed_stream():
    # The catalog's Python example for minimaxai/minimax-m2.1, unchanged but for base_url and api_key.
    completion = client.chat.completions.create(
        model="minimaxai/minimax-m2.1",
        messages=[{"role": "user", "content": ""}],
        temperature=1,
        top_p=0.95,
        max_tokens=8192,
        stream=True,
    )
    text = ""
    reasoning = ""
    for chunk in completion:
        if not getattr(chunk, "choices", None):
            continue
        r = getattr(chunk.choices[0].delta, "reasoning_content", None)
        if r:
            reasoning += r
        if chunk.choices and chunk.choices[0].delta.content is not None:
            text += chunk.choices[0].delta.content
    return {"text": text, "reasoning": reasoning}


def non_stream():
    answer = client.chat.completions.create(model="minimaxai/minimax-m2.1", messages=[{"role": "user", "content": "Hello!"}])
    return {"text": answer.choices[0].message.content, "usage": answer.usage.model_dump() if answer.usage else None}


def include_usage():
    stream = client.chat.completions.create(
        model="minimaxai/minimax-m2.1",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        if chunk.choices and chunk.choices[0].delta.content is not None:
            text += chunk.choices[0].delta.content
    return {"text": text, "usage": usage}


def reasoning_content():
    stream = client.chat.completions.create(model="minimaxai/minimax-m2.1", messages=[{"role": "user", "content": "Think."}], stream=True)
    reasoning = ""
    for chunk in stream:
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
    return {"reasoning": reasoning}


SCENARIOS = {
    "seed-stream": seed_stream,
    "non-stream": non_stream,
    "include-usage": include_usage,
    "reasoning-content": reasoning_content,
    # The error scenarios make the same call; the fake upstream or the gateway's limits fail it.
    "stream": seed_stream,
    "call": non_stream,
}

try:
    result = {"ok": SCENARIOS[scenario]()}
except openai.APIStatusError as err:
    result = {"raised": type(err).__name__, "status": err.status_code, "code": getattr(err, "code", None), "message": err.message}
except openai.APIError as err:
    result = {"raised": type(err).__name__, "code": getattr(err, "code", None), "message": err.message}
except Exception as err:  # noqa: BLE001 (what a user would see instead of an openai error)
    result = {"raised": type(err).__name__, "message": str(err)}
result["attempts"] = attempts
print(json.dumps(result))

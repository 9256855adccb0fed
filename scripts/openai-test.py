#!/usr/bin/env python3
"""OpenAI test: the stock OpenAI Python client (PyPI `openai`, pinned) against the gateway's
OpenAI-compatible routes, on a real gateway serving the example prefabs. Checks that
`models.list()` gives exactly the chat-capable functions of /manifest; that a streamed completion's
text equals the function's own `content` events (read from `POST /invoke` as SSE) and ends with
finish_reason "stop"; that a non-streamed one has the same text and is a normal invocation (its
X-Invocation-Id at /invocations/<id>); that an unknown model raises NotFoundError; that an error
mid-stream raises APIError with the function's code after the text that came before it; that a
failed call is not run again by a client that retries (max_retries=2); and that API keys work
unchanged (a wrong key raises AuthenticationError, the right one answers). Every client but the
retrying one has max_retries=0.

Usage: python3 scripts/openai-test.py [--no-build]. Installs the client into .build-ci-openai-venv/
(ignored by git) on first use. Exits non-zero on any failed check."""
import pathlib
import sys

OPENAI_VERSION = "3.51.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".build-ci-openai-venv"

sys.path.insert(0, str(ROOT / "scripts"))
from pinned_venv import reexec_in_venv  # noqa: E402

reexec_in_venv(VENV, "openai", OPENAI_VERSION, "openai-test")

import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import openai  # noqa: E402

import live_gateway  # noqa: E402
from live_gateway import LiveGateway  # noqa: E402

failures = []
PROMPT = "what is a prefab?"
KEY = "openai-test-key-0123456789"


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition:
        failures.append(what)


def chat_capable(function):
    """The gateway's rule: a chat block, or a string `prompt`/`message`, or an array `messages`."""
    if "chat" in function:
        return True
    kinds = {"string": "string", "str": "string", "array": "array", "list": "array"}
    for parameter in function.get("parameters", []):
        kind = kinds.get(parameter.get("type"))
        if (parameter["name"] in ("prompt", "message") and kind == "string") or \
                (parameter["name"] == "messages" and kind == "array"):
            return True
    return False


def native_text(gateway, inputs):
    """The text of the function's own content events, streamed by POST /invoke as SSE."""
    status, _, messages = gateway.invoke("chat_stream", inputs)
    events = [json.loads(message["data"]) for message in messages]
    check(status == 200 and events[-1]["type"] == "done", "the native SSE call ends with done")
    return "".join(event["data"] for event in events if event["type"] == "content")


def started_calls(gateway):
    """prefab_invocations_started_total{format="openai"}: calls started through /v1."""
    metrics = gateway.request("GET", "/metrics")[2].decode()
    found = re.search(r'prefab_invocations_started_total\{format="openai"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def checks(gateway):
    base_url = f"http://127.0.0.1:{gateway.port}/v1"
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)
    functions = json.loads(gateway.request("GET", "/manifest")[2])["functions"]
    expected = sorted(function["name"] for function in functions if chat_capable(function))

    models = client.models.list()
    ids = sorted(model.id for model in models.data)
    check(ids == expected and "chat_stream" in ids, f"models.list() lists the chat-capable functions: {ids}")
    check(all(model.owned_by == "prefab-gateway" and model.object == "model" for model in models.data),
          "each model is owned_by prefab-gateway")

    inputs = {"prompt": PROMPT, "delay_ms": 5}
    native = native_text(gateway, inputs)
    stream = client.chat.completions.create(
        model="chat_stream", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
        stream=True, extra_body={"delay_ms": 5})
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    check(len(chunks) > 2 and chunks[0].choices[0].delta.role == "assistant",
          f"the stream's first chunk says role assistant ({len(chunks)} chunks)")
    check(chunks[-1].choices[0].finish_reason == "stop", "the stream's last chunk has finish_reason stop")
    check(text == native and text.startswith(f"You said: {PROMPT}"),
          f"the streamed text equals the native content events: {text!r}")

    raw = client.chat.completions.with_raw_response.create(
        model="chat_stream", messages=[{"role": "user", "content": PROMPT}], extra_body={"delay_ms": 0})
    completion = raw.parse()
    check(completion.object == "chat.completion" and completion.choices[0].message.role == "assistant",
          "a non-streamed call is one chat.completion")
    check(completion.choices[0].message.content == native, "its text equals the native content events")
    check(completion.choices[0].finish_reason == "stop", "its finish_reason is stop")
    invocation = raw.headers.get("x-invocation-id")
    status = json.loads(gateway.request("GET", f"/invocations/{invocation}")[2]) if invocation else {}
    check(status.get("state") == "done" and status.get("function") == "chat_stream",
          f"it is a normal invocation, done at /invocations/<id>: {status.get('state')}")

    try:
        client.chat.completions.create(model="no_such_function", messages=[{"role": "user", "content": "hi"}])
        check(False, "an unknown model raises NotFoundError")
    except openai.NotFoundError as error:
        check(error.status_code == 404 and error.code == "FUNCTION_NOT_FOUND",
              f"an unknown model raises NotFoundError (404, {error.code})")

    try:
        client.chat.completions.create(model="chat_stream", messages=[])
        check(False, "an empty conversation raises BadRequestError")
    except openai.BadRequestError as error:
        check(error.status_code == 400, f"an empty conversation raises BadRequestError ({error.code})")

    received = []
    try:
        failing = client.chat.completions.create(
            model="chat_stream", messages=[{"role": "user", "content": PROMPT}], stream=True,
            extra_body={"delay_ms": 5, "fail_after": 3})
        for chunk in failing:
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        check(False, "an error mid-stream raises APIError")
    except openai.APIError as error:
        check("REPLY_FAILED" in str(error.code) and "failed after 3 tokens" in error.message,
              f"an error mid-stream raises APIError with the function's code ({error.code}: {error.message})")
    check("".join(received) == "".join(native.split(" ")[i] + " " for i in range(3)),
          f"the text before the error came first: {''.join(received)!r}")

    # The stock client retries a 5xx twice by default: a call that ran and failed says not to.
    retrying = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=2, timeout=30)
    before = started_calls(gateway)
    try:
        retrying.chat.completions.create(
            model="chat_stream", messages=[{"role": "user", "content": PROMPT}],
            extra_body={"delay_ms": 0, "fail_after": 2})
        check(False, "a failed non-streamed call raises InternalServerError")
    except openai.InternalServerError as error:
        check(error.status_code == 500 and error.code == "REPLY_FAILED",
              f"a failed non-streamed call raises InternalServerError ({error.code})")
    calls = started_calls(gateway) - before
    check(calls == 1, f"a retrying client (max_retries=2) ran the failed call once: {calls:g} calls")


def key_checks(keys_file):
    with LiveGateway(ROOT / "prefabs", "--api-keys-file", keys_file) as gateway:
        base_url = f"http://127.0.0.1:{gateway.port}/v1"
        wrong = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
        try:
            wrong.models.list()
            check(False, "a wrong API key raises AuthenticationError")
        except openai.AuthenticationError as error:
            check(error.status_code == 401, f"a wrong API key raises AuthenticationError ({error.code})")
        right = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        completion = right.chat.completions.create(
            model="chat_stream", messages=[{"role": "user", "content": "hi"}], extra_body={"delay_ms": 0})
        check(completion.choices[0].message.content.startswith("You said: hi"),
              "the right key (Authorization: Bearer) gets the answer")


def main():
    if "--no-build" not in sys.argv:
        live_gateway.build()
    started = time.monotonic()
    with LiveGateway(ROOT / "prefabs") as gateway:
        try:
            checks(gateway)
        except Exception as error:  # a failure of the client is a failed check, with the gateway's log
            check(False, f"the OpenAI client ran without error: {error!r}")
            print(gateway.log_tail())
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as keys:
        keys.write(KEY + "\n")
        keys.flush()
        try:
            key_checks(keys.name)
        except Exception as error:
            check(False, f"the OpenAI client with API keys ran without error: {error!r}")
    print(f"openai-test: {time.monotonic() - started:.1f} s")
    if failures:
        print(f"openai-test: {len(failures)} failed checks")
        sys.exit(1)
    print("openai-test: every check passed")


if __name__ == "__main__":
    main()

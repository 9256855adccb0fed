#!/usr/bin/env python3
"""Hostile HTTP input against a live gateway on the example prefabs: malformed requests sent on raw
sockets (garbage, bad methods, broken Content-Length and chunked framing, NUL and CR in headers,
truncated bodies, slow clients, pipelining) and hostile JSON bodies (invalid UTF-8, NUL, strings
that would break SSE framing, huge numbers, deep nesting, 10 MB, wrong content types, empty).

Every answer must be a clear 4xx with the JSON error body {"error": {"code", "message",
"details"}}, or a correct 200 whose every SSE event parses and gives back the exact input; a
connection the server cannot make sense of after a first request may instead be answered with a
bare 400 and closed. Each malformed request gets exactly the statuses it should (400 where RFC 9112
asks for it), never a silent close unless no request was sent at all. Never a 5xx, a hang, or a
dead gateway. Also: requests a web page on another site or on a rebound DNS name would send are
refused, and a few PREFAB_GATEWAY_* variables (and flags) reach the real binary.
Usage: python3 scripts/http-fuzz.py [--no-build]."""
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile
import time

import live_gateway
from live_gateway import LiveGateway, Tally

IDLE_TIMEOUT = 2.0
tally = Tally("http-fuzz")


# MARK: raw HTTP


def exchange(gateway, data, read_timeout=10.0, shut=True):
    """Sends raw bytes, then reads until the server closes or goes quiet; (bytes, closed by server)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=read_timeout) as connection:
        try:
            connection.sendall(data)
            if shut:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            # The server may answer and close before it has read everything we sent (a request it
            # refused early): its reset then reaches us here. What it answered is still readable.
            pass
        received = b""
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return received, True
                received += chunk
        except socket.timeout:
            return received, False
        except ConnectionResetError:
            return received, True


def responses(data):
    """The HTTP responses in `data`: (status, headers dict, body) each; bodies by Content-Length or
    chunked framing."""
    found = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError(f"an incomplete response: {data[:200]!r}")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, data = rest[:length], rest[length:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body += rest[:size]
                rest = rest[size + 2:]
                if size == 0:
                    break
            data = rest
        else:
            body, data = rest, b""
        found.append((status, headers, body))
    return found


def is_json_error(body):
    try:
        error = json.loads(body)["error"]
        return isinstance(error["code"], str) and isinstance(error["message"], str) and isinstance(
            error["details"], list)
    except (ValueError, KeyError, TypeError):
        return False


def check_raw(gateway, name, data, expect, shut=True):
    """A malformed request: exactly the statuses `expect` (one per request the server could make
    out), each 4xx with the JSON error body, or, after a first answered request, a bare 400 and a
    closed connection (NIO refuses what it cannot parse before the router sees it). An empty
    `expect` means no request was sent at all: then, and only then, a silent close is right."""
    received, closed = exchange(gateway, data, shut=shut)
    try:
        answers = responses(received)
    except (ValueError, IndexError) as error:
        tally.check(False, f"raw {name}: unparsable answer ({error}): {received[:200]!r}")
        return
    statuses = [status for status, _, _ in answers]
    tally.check(statuses == list(expect), f"raw {name}: answered {statuses}, expected {list(expect)} "
                f"(closed: {closed}) {received[:200]!r}")
    if not answers:
        tally.check(closed, f"raw {name}: no answer and the connection stayed open")
    for index, (status, _, body) in enumerate(answers):
        if status < 400:
            continue
        bare_after_first = index > 0 and status == 400 and not body and closed
        tally.check(is_json_error(body) or bare_after_first,
                    f"raw {name}: status {status} without the JSON error body: {body[:200]!r}")


def request(method, path, body=b"", headers=()):
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [header if isinstance(header, bytes) else header.encode() for header in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


ECHO = b'{"inputs": {"text": "hi"}}'


def check_malformed_http(gateway):
    print("== malformed HTTP on raw sockets", flush=True)
    length = f"Content-Length: {len(ECHO)}"
    # (name, bytes, the statuses they must get). RFC 9112 asks for 400 for a request line or header
    # it cannot parse, whitespace before a colon, conflicting lengths, and a body cut short.
    cases = [
        ("garbage request line", b"HELLO\r\n\r\n", [400]),
        ("binary garbage", bytes(random.Random(1).randrange(256) for _ in range(4096)), [400]),
        ("only empty lines (no request at all)", b"\r\n\r\n", []),
        ("unknown method", request("FOO", "/health"), [400]),
        ("method not allowed", request("PUT", "/invoke/echo", ECHO, [length]), [405]),
        ("lower-case method", request("get", "/health"), [400]),
        ("no HTTP version", b"GET /health\r\n\r\n", [400]),
        ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", [400]),
        # The body then reads as a second request, which is garbage.
        ("missing Content-Length (body read as the next request)", request("POST", "/invoke/echo", ECHO), [422, 400]),
        ("two different Content-Lengths", request("POST", "/invoke/echo", ECHO, [length, "Content-Length: 3"]), [400]),
        ("huge Content-Length", request("POST", "/invoke/echo", ECHO, ["Content-Length: 99999999999999999999999"]),
         [400]),
        ("negative Content-Length", request("POST", "/invoke/echo", ECHO, ["Content-Length: -5"]), [400]),
        ("Content-Length that is not a number", request("POST", "/invoke/echo", ECHO, ["Content-Length: ten"]), [400]),
        # 413 before the body; the client then closes without sending it.
        ("10 MB Content-Length, body never sent", request("POST", "/invoke/echo", b"", ["Content-Length: 10485760"]),
         [413, 400]),
        ("Content-Length and chunked together",
         request("POST", "/invoke/echo", b"5\r\nhello\r\n0\r\n\r\n", [length, "Transfer-Encoding: chunked"]), [400]),
        ("chunk size not hex", request("POST", "/invoke/echo", b"zz\r\nhello\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"]),
         [400]),
        ("chunk size overflow",
         request("POST", "/invoke/echo", b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"]), [400]),
        ("chunk without CRLF", request("POST", "/invoke/echo", b"5\r\nhelloXX0\r\n\r\n", ["Transfer-Encoding: chunked"]),
         [400]),
        ("chunked body cut short", request("POST", "/invoke/echo", b"100\r\nabc", ["Transfer-Encoding: chunked"]), [400]),
        ("unknown transfer coding", request("POST", "/invoke/echo", ECHO, ["Transfer-Encoding: gzip, chunked, zz"]),
         [400]),
        ("NUL in a header value", request("GET", "/health", b"", [b"X-Test: a\0b"]), [400]),
        ("NUL in a header name", request("GET", "/health", b"", [b"X-\0Test: a"]), [400]),
        ("bare CR in a header", request("GET", "/health", b"", [b"X-Test: a\rb"]), [400]),
        ("header without a colon", request("GET", "/health", b"", ["JustAName"]), [400]),
        ("space before the colon", request("GET", "/health", b"", ["X-Test : a"]), [400]),
        ("tab before the colon", request("GET", "/health", b"", ["X-Test\t: a"]), [400]),
        ("space before the colon of Transfer-Encoding",
         request("POST", "/invoke/echo", b"5\r\nhello\r\n0\r\n\r\n", [length, "Transfer-Encoding : chunked"]), [400]),
        ("obsolete line folding", request("GET", "/health", b"", ["X-Test: a", " folded"]), [400]),
        ("NUL in the path", b"GET /hea\0lth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", [400]),
        ("space in the path", b"GET /a b/c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", [400]),
        ("bad percent-encoding", request("GET", "/files/%zz/%", b""), [404]),
        ("path traversal", request("GET", "/files/../../etc/passwd"), [404]),
        ("encoded traversal", request("GET", "/files/abc/..%2F..%2Fetc%2Fpasswd"), [404]),
        ("truncated body, then the client stops sending", request("POST", "/invoke/echo", ECHO[:10], [length]), [400]),
        ("huge header (100 KB)", request("GET", "/health", b"", ["X-Big: " + "a" * 100_000]), [400]),
        ("10,000 headers", request("GET", "/health", b"", [f"X-H{i}: v" for i in range(10_000)]), [400]),
        ("100 KB URL", request("GET", "/invoke/" + "a" * 100_000), [400]),
        ("invalid UTF-8 in the path", b"GET /invoke/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", [400]),
        ("absolute-form target", b"GET http://127.0.0.1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", [200]),
        ("Expect: 100-continue never followed", request("POST", "/invoke/echo", b"", [length, "Expect: 100-continue"]),
         [400]),
        ("upgrade to an unknown protocol", request("GET", "/health", b"", ["Connection: Upgrade", "Upgrade: h2c"]),
         [200]),
        ("control character in a header value", request("GET", "/health", b"", [b"X-Test: a\x01b"]), [400]),
        ("DEL in a header value", request("POST", "/invoke/echo", ECHO, [length, b"Content-Type: \x7f/\x7f"]), [400]),
        ("bad header on a kept-alive second request",
         request("GET", "/health") + request("GET", "/health", b"", [b"X-Test: a\x01b"]), [200, 400]),
        ("space before the colon on a kept-alive second request",
         request("GET", "/health") + request("GET", "/health", b"", ["X-Test : a"]), [200, 400]),
        ("garbage after a good request", request("GET", "/health") + b"\x00\x01garbage\r\n\r\n", [200, 400]),
        # The WebSocket library does not check the key's form; the socket then closes normally.
        ("websocket upgrade with a bad key",
         request("GET", "/invoke/echo/ws", b"", ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: x",
                                                  "Sec-WebSocket-Version: 13"]), [101]),
        # What a web page could send (docs/security.md, Browsers): refused before any work.
        ("a rebound Host", b"GET /manifest HTTP/1.1\r\nHost: rebound.example\r\n\r\n", [421]),
        ("a cross-site call", request("POST", "/invoke/echo", ECHO, [length, "Origin: http://evil.example",
                                                                     "Content-Type: text/plain"]), [403]),
        ("Origin: null", request("POST", "/invoke/echo", ECHO, [length, "Origin: null"]), [403]),
        ("a cross-site WebSocket",
         request("GET", "/invoke/echo/ws", b"", ["Connection: Upgrade", "Upgrade: websocket",
                                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                                  "Sec-WebSocket-Version: 13", "Origin: http://evil.example"]), [403]),
    ]
    for name, data, expect in cases:
        check_raw(gateway, name, data, expect)
    # Pipelined: four requests in one write get four answers, in order.
    pipelined = request("GET", "/health") + request("POST", "/invoke/echo", ECHO, [f"Content-Length: {len(ECHO)}"])
    pipelined += request("GET", "/nope") + request("GET", "/manifest")
    received, _ = exchange(gateway, pipelined)
    statuses = [status for status, _, _ in responses(received)]
    tally.check(statuses == [200, 200, 404, 200], f"pipelined requests answered {statuses}, expected [200, 200, 404, 200]")
    for status, _, body in responses(received)[1:2]:
        tally.check(json.loads(body)["result"]["text"] == "hi", f"pipelined echo answered {body[:100]!r}")
    check_slow_clients(gateway)


def check_slow_clients(gateway):
    """Connections that never finish a request are closed within a bound (--idle-timeout)."""
    bound = IDLE_TIMEOUT + 3
    slow = [
        ("connects and sends nothing", [], None),
        ("headers one byte at a time", list(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "), b"a"),
        ("second request never finished", [request("GET", "/health"), b"GET /health HTTP/1.1\r\n"], b"X"),
        ("body never finished", [request("POST", "/invoke/echo", ECHO[:5], [f"Content-Length: {len(ECHO)}"])], None),
    ]
    for name, parts, drip in slow:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=bound + 5) as connection:
            closed = False
            deadline = started + bound + 5
            for part in parts:
                connection.sendall(bytes([part]) if isinstance(part, int) else part)
                time.sleep(0.05 if isinstance(part, int) else 0)
            connection.settimeout(0.3)
            while time.monotonic() < deadline:
                try:
                    if drip:
                        connection.sendall(drip)
                    chunk = connection.recv(65536)
                    if not chunk:
                        closed = True
                        break
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                    break
        seconds = time.monotonic() - started
        print(f"  slow client '{name}': closed by the server after {seconds:.1f} s", flush=True)
        tally.check(closed and seconds <= bound + 1.5 + len(parts) * 0.05,
                    f"slow client '{name}': not closed within {bound} s (closed: {closed}, {seconds:.1f} s)")


# MARK: hostile JSON


def post(gateway, path, body, content_type="application/json", accept=None):
    """(status, headers, body) of a POST with a raw body."""
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
    return gateway.request("POST", path, body=body, headers=headers, timeout=30)


def sse_events(body):
    parser = live_gateway.SSEParser()
    messages = parser.feed(body)
    if parser.pending():
        raise ValueError(f"the stream ends inside a message: {parser.pending()[:100]!r}")
    return [json.loads(message["data"]) for message in messages]


def check_error(name, status, body, statuses=range(400, 500)):
    tally.check(status in statuses and is_json_error(body), f"{name}: status {status}, body {body[:200]!r}")


# batch_process spends 300 ms per item by default: nothing here needs it (about 200 calls).
NO_DELAY = {"batch_process": {"delay_ms": 0}}


def round_trip(gateway, value, label):
    """`value` through echo (a string), batch_process (Swift) and batch_items (Python): the answer
    gives back exactly the same value, and every SSE event parses."""
    if isinstance(value, str):
        status, _, body = post(gateway, "/invoke/echo", json.dumps({"inputs": {"text": value}}).encode())
        ok = status == 200 and json.loads(body)["result"]["text"] == value
        tally.check(ok, f"echo {label}: {status} {body[:200]!r}")
    for function in ("batch_process", "batch_items"):
        inputs = {"items": [value], **NO_DELAY.get(function, {})}
        status, headers, body = post(gateway, f"/invoke/{function}", json.dumps({"inputs": inputs}).encode())
        try:
            events = sse_events(body)
            items = [event["data"]["item"] for event in events if event["type"] == "progress"]
            ok = status == 200 and len(items) == 1 and same(items[0], value) and events[-1]["type"] == "done"
        except (ValueError, KeyError, TypeError, IndexError) as error:
            ok, items = False, repr(error)
        tally.check(ok, f"{function} {label}: {status} gave back {items!r:.200}, sent {value!r:.100}")


def same(a, b):
    """Equal JSON values; numbers by value (2**70 may come back as a float)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or (abs(a - b) <= abs(b) * 1e-15)
    return type(a) is type(b) and a == b


NASTY = ["\n", "\r", "\r\n", "\n\n", "\r\n\r\n", "data: ", "id: 9", "event: x", ":", "\0", "\u2028", "\u2029",
         "\ufeff", "\"", "\\", "/", "\t", "\x7f", "\x1b[31m", "é", "𝄞", "😀", "\U0010ffff", "<script>", "%00", "{", "}"]


def check_hostile_json(gateway):
    print("== hostile JSON bodies", flush=True)
    # Strings that would break SSE framing if they were not escaped, and random mixes of them.
    # 200,000 bytes is under the default string limit (256 KiB); 300,000 is over it.
    for text in NASTY + ["\n\ndata: {\"type\":\"done\"}\n\n", "line\rbreak", "x" * 200_000]:
        round_trip(gateway, text, f"{text[:20]!r}")
    status, _, body = post(gateway, "/invoke/echo", json.dumps({"inputs": {"text": "x" * 300_000}}).encode())
    check_error("a 300,000-byte string is 422 INPUT_TOO_LONG", status, body, statuses=[422])
    tally.check(b"INPUT_TOO_LONG" in body, f"a 300,000-byte string names INPUT_TOO_LONG: {body[:200]!r}")
    rng = random.Random(7)
    for index in range(150):
        text = "".join(rng.choice(NASTY + ["a", " ", "0"]) for _ in range(rng.randrange(1, 40)))
        round_trip(gateway, text, f"random string {index}")
    # Numbers at the edges: back exactly, or refused with a 4xx; never an SSE stream of bad JSON.
    for literal in ["0", "-0", "1e308", "-1e-308", "5e-324", "9007199254740993", "-9223372036854775808",
                    "9223372036854775807", "1180591620717411303424", "0.1", "1E2", "1e400", "-1e400", "1e-400"]:
        for function in ("batch_process", "batch_items"):
            delay = b', "delay_ms": 0' if function in NO_DELAY else b""
            body = b'{"inputs": {"items": [%s]%s}}' % (literal.encode(), delay)
            status, _, answer = post(gateway, f"/invoke/{function}", body)
            if status == 200:
                try:
                    events = sse_events(answer)
                    item = [event["data"]["item"] for event in events if event["type"] == "progress"][0]
                    ok = same(item, json.loads(literal)) or (literal == "-0" and item == 0)
                except (ValueError, KeyError, IndexError) as error:
                    ok, item = False, repr(error)
                tally.check(ok, f"{function} number {literal}: gave back {item!r}")
            else:
                check_error(f"{function} number {literal}", status, answer)
    # Bodies that are not a call: a 4xx with the JSON error body.
    bad_bodies = [
        ("invalid UTF-8 in a string", b'{"inputs": {"text": "\xff\xfe"}}'),
        ("invalid UTF-8 overlong", b'{"inputs": {"text": "\xc0\xaf"}}'),
        ("raw NUL in a string", b'{"inputs": {"text": "a\0b"}}'),
        ("raw NUL outside strings", b'{"inputs"\0: {"text": "a"}}'),
        ("raw newline in a string", b'{"inputs": {"text": "a\nb"}}'),
        ("lone surrogate escape", b'{"inputs": {"text": "\\ud800"}}'),
        ("bad escape", b'{"inputs": {"text": "\\x41"}}'),
        ("truncated JSON", b'{"inputs": {"text": "a'),
        ("trailing garbage", b'{"inputs": {"text": "a"}} x'),
        ("two documents", b'{"inputs": {}}{"inputs": {}}'),
        ("a JSON array", b"[]"),
        ("a JSON string", b'"text"'),
        ("null", b"null"),
        ("inputs not an object", b'{"inputs": [1, 2]}'),
        ("unknown member", b'{"input": {"text": "a"}}'),
        ("wrong input type", b'{"inputs": {"text": 5}}'),
        ("missing input", b'{"inputs": {}}'),
        ("empty body", b""),
        ("whitespace body", b"   \n "),
        ("NaN", b'{"inputs": {"text": NaN}}'),
        ("comments", b'{"inputs": /* hi */ {"text": "a"}}'),
        ("single quotes", b"{'inputs': {'text': 'a'}}"),
        ("10,000 deep", b'{"inputs": {"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}"),
        ("1,000,000 deep", b'{"inputs": {"text": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}}"),
        ("1,000,000 deep, unclosed", b"[" * 1_000_000),
        ("500,000 deep objects", b'{"a":' * 500_000),
        ("10 MB body", b'{"inputs": {"text": "' + b"x" * 10_000_000 + b'"}}'),
        ("a million keys", b'{"inputs": {' + b",".join(b'"k%d": 1' % i for i in range(100_000)) + b"}}"),
    ]
    for name, body in bad_bodies:
        status, _, answer = post(gateway, "/invoke/echo", body)
        check_error(f"echo {name}", status, answer)
    for name, body in bad_bodies[:8] + bad_bodies[-6:]:
        status, _, answer = post(gateway, "/invoke/batch_process", body)
        check_error(f"batch_process {name}", status, answer)
    # A byte order mark may be skipped (RFC 8259 allows it) or refused.
    status, _, answer = post(gateway, "/invoke/echo", b'\xef\xbb\xbf{"inputs": {"text": "a"}}')
    if status == 200:
        tally.check(json.loads(answer)["result"]["text"] == "a", f"BOM then JSON: {answer[:100]!r}")
    else:
        check_error("BOM then JSON", status, answer)
    check_error("10 MB body is 413", *post(gateway, "/invoke/echo", b"x" * 10_000_000)[::2], statuses=[413])
    # Duplicate keys: one of the values wins, or a 4xx; never a crash.
    status, _, answer = post(gateway, "/invoke/echo", b'{"inputs": {"text": "a", "text": "b"}}')
    if status == 200:
        tally.check(json.loads(answer)["result"]["text"] in ("a", "b"), f"duplicate keys: {answer[:100]!r}")
    else:
        check_error("duplicate keys", status, answer)
    # Content types: the body is what counts; a body that is not JSON is a 4xx whatever its type.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "application/json; charset=latin1", "", "\x7f/\x7f", None]:
        status, _, answer = post(gateway, "/invoke/echo", ECHO, content_type=content_type)
        if status == 200:
            tally.check(json.loads(answer)["result"]["text"] == "hi", f"content type {content_type!r}: {answer[:100]!r}")
        else:
            check_error(f"content type {content_type!r}", status, answer)
        status, _, answer = post(gateway, "/invoke/echo", b"text=hi", content_type=content_type)
        check_error(f"form body as {content_type!r}", status, answer)
    # Other routes with hostile input.
    for path in ["/invoke/", "/invoke/no_such", "/invoke/echo%00", "/invoke/..%2Fhealth", "/invocations/x/messages",
                 "/invocations/" + "f" * 32 + "/messages"]:
        status, _, answer = post(gateway, path, b'{"type": "answer", "data": {}}')
        check_error(f"POST {path[:40]}", status, answer)
    for method, path in [("DELETE", "/invocations/zzz"), ("GET", "/invocations/%ff"), ("GET", "/files/x/y"),
                         ("GET", "/invocations/" + "0" * 32 + "/events?after=-1"), ("GET", "/playground/..%2F..%2Fetc")]:
        status, _, answer = gateway.request(method, path)
        check_error(f"{method} {path[:40]}", status, answer)


# MARK: configuration


class environment:
    """Sets environment variables for the gateways started inside the block (they inherit them)."""

    def __init__(self, values):
        self.values = values
        self.saved = {}

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return False


def refused_start(label, flags, env, expected_message):
    """`serve` with these flags and variables must exit at once, non-zero, saying why."""
    with tempfile.TemporaryDirectory() as data:
        command = [str(live_gateway.BINARY), "serve", "--port", "0", "--prefabs", str(live_gateway.ROOT / "prefabs"),
                   "--data", data, *flags]
        try:
            run = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
            code, output = run.returncode, run.stdout + run.stderr
        except subprocess.TimeoutExpired:
            code, output = None, "still running after 30 s"
    tally.check(code not in (0, None) and expected_message in output,
                f"{label}: exit {code}, expected a refusal naming '{expected_message}': {output[-300:]!r}")


def check_configuration():
    """A few PREFAB_GATEWAY_* variables through the real binary, as the Configuration
    table in docs/configuration.md promises: keys from a file (comments and blank lines skipped), allowed hosts, CORS
    origins, the body limit; a flag wins over its variable; bad values stop the start."""
    print("== configuration: PREFAB_GATEWAY_* variables and flags, through the real binary", flush=True)
    key = "fuzz-key-0123456789abcdef"
    with tempfile.TemporaryDirectory() as scratch:
        keys = pathlib.Path(scratch) / "keys.txt"
        keys.write_text(f"# the fuzz's key\n\n  {key}\n")
        variables = {
            "PREFAB_GATEWAY_API_KEYS_FILE": str(keys),
            "PREFAB_GATEWAY_ALLOWED_HOSTS": "gw.internal, *.example.org",
            "PREFAB_GATEWAY_CORS_ORIGINS": "https://app.example.com",
            "PREFAB_GATEWAY_MAX_BODY": "300",
        }
        bearer = {"Authorization": f"Bearer {key}"}
        with environment(variables), LiveGateway(live_gateway.ROOT / "prefabs", "--log-level", "warning") as gateway:
            status, _, body = gateway.request("GET", "/manifest")
            tally.check(status == 401 and b"UNAUTHORIZED" in body, f"keys file from the environment: {status} {body[:100]!r}")
            status, _, _ = gateway.request("GET", "/manifest", headers=bearer)
            tally.check(status == 200, f"the key from the file is accepted: {status}")
            status, _, _ = gateway.request("GET", "/manifest", headers={"Authorization": f"Bearer {key}" + "x" * 256})
            tally.check(status == 401, f"the key plus 256 characters is refused: {status}")
            for host, expected in [("gw.internal:1", 200), ("a.example.org", 200), ("rebound.example", 421)]:
                status, _, body = gateway.request("GET", "/manifest", headers={**bearer, "Host": host})
                tally.check(status == expected, f"PREFAB_GATEWAY_ALLOWED_HOSTS, Host {host}: {status}, expected {expected}")
            status, headers, _ = gateway.request("GET", "/manifest",
                                                 headers={**bearer, "Origin": "https://app.example.com"})
            tally.check(status == 200 and headers.get("Access-Control-Allow-Origin") == "https://app.example.com",
                        f"PREFAB_GATEWAY_CORS_ORIGINS: {status} {headers.get('Access-Control-Allow-Origin')!r}")
            big = json.dumps({"inputs": {"text": "x" * 400}}).encode()
            status, _, body = post_with(gateway, "/invoke/echo", big, bearer)
            tally.check(status == 413, f"PREFAB_GATEWAY_MAX_BODY=300 refuses 400 bytes: {status} {body[:100]!r}")
        # A flag wins over its variable.
        with environment({"PREFAB_GATEWAY_MAX_BODY": "300"}), \
                LiveGateway(live_gateway.ROOT / "prefabs", "--max-body-bytes", "100000", "--log-level", "warning") as gateway:
            status, _, body = post_with(gateway, "/invoke/echo", big, {})
            tally.check(status == 200, f"--max-body-bytes wins over PREFAB_GATEWAY_MAX_BODY: {status} {body[:100]!r}")
        short = pathlib.Path(scratch) / "short.txt"
        short.write_text(f"{key}\nfifteen-chars!!\n")
        refused_start("a 15-character key in --api-keys-file", ["--api-keys-file", str(short)], {},
                      "at least 16 characters")
        refused_start("a 15-character key in PREFAB_GATEWAY_API_KEYS", [], {"PREFAB_GATEWAY_API_KEYS": "fifteen-chars!!"},
                      "at least 16 characters")
        refused_start("a missing keys file", [], {"PREFAB_GATEWAY_API_KEYS_FILE": str(pathlib.Path(scratch) / "none")},
                      "cannot read the API keys file")
        refused_start("an --allowed-host with a scheme", ["--allowed-host", "http://gw.internal"], {},
                      "--allowed-host takes a host name")
        refused_start("a PREFAB_GATEWAY_MAX_CONCURRENT that is not a number", [],
                      {"PREFAB_GATEWAY_MAX_CONCURRENT": "many"}, "PREFAB_GATEWAY_MAX_CONCURRENT=many")


def post_with(gateway, path, body, headers):
    return gateway.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers}, timeout=30)


def main():
    if "--no-build" not in sys.argv:
        live_gateway.build()
    with LiveGateway(live_gateway.ROOT / "prefabs", "--idle-timeout", IDLE_TIMEOUT, "--log-level", "warning") as gateway:
        check_malformed_http(gateway)
        tally.check(gateway.alive(), "the gateway is alive after the malformed requests")
        check_hostile_json(gateway)
        tally.check(gateway.alive(), "the gateway is alive after the hostile bodies")
        status, _, body = post(gateway, "/invoke/echo", ECHO)
        tally.check(status == 200 and json.loads(body)["result"]["text"] == "hi", "echo still answers at the end")
        stats = gateway.stats()
        print(f"  gateway at the end: {stats}")
        if tally.failures:
            print(gateway.log_tail())
    check_configuration()
    tally.finish(unit="requests")


if __name__ == "__main__":
    main()

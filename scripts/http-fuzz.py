#!/usr/bin/env python3
"""Hostile HTTP input against a live gateway on the example prefabs: malformed requests sent on raw
sockets (garbage, bad methods, broken Content-Length and chunked framing, NUL and CR in headers,
truncated bodies, slow clients, pipelining) and hostile JSON bodies (invalid UTF-8, NUL, strings
that would break SSE framing, huge numbers, deep nesting, 10 MB, wrong content types, empty).

Every answer must be a clear 4xx with the JSON error body {"error": {"code", "message",
"details"}}, or a correct 200 whose every SSE event parses and gives back the exact input; a
connection the server cannot make sense of may instead be answered with a bare 400 and closed.
Never a 5xx, a hang, or a dead gateway. Usage: python3 scripts/http-fuzz.py [--no-build]."""
import json
import random
import socket
import sys
import time

import live_gateway
from live_gateway import LiveGateway, Tally

IDLE_TIMEOUT = 2.0
tally = Tally("http-fuzz")


# MARK: raw HTTP


def exchange(gateway, data, read_timeout=10.0, shut=True):
    """Sends raw bytes, then reads until the server closes or goes quiet; (bytes, closed by server)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=read_timeout) as connection:
        connection.sendall(data)
        if shut:
            connection.shutdown(socket.SHUT_WR)
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


def check_raw(gateway, name, data, allow_ok=False, shut=True, expect=None):
    """A malformed request: a 4xx with the JSON error body, or a bare 400 and a closed connection
    (NIO refuses what it cannot parse before the router sees it), or nothing and a close."""
    received, closed = exchange(gateway, data, shut=shut)
    try:
        answers = responses(received)
    except (ValueError, IndexError) as error:
        tally.check(False, f"raw {name}: unparsable answer ({error}): {received[:200]!r}")
        return
    if not answers:
        tally.check(closed, f"raw {name}: no answer and the connection stayed open")
        return
    for status, _, body in answers:
        if expect is not None:
            tally.check(status == expect, f"raw {name}: status {status}, expected {expect}")
        if 100 < status < 300 and allow_ok:
            continue
        clear = 400 <= status < 500 and (is_json_error(body) or (status == 400 and not body and closed))
        tally.check(clear, f"raw {name}: status {status} body {body[:200]!r} (closed: {closed})")


def request(method, path, body=b"", headers=()):
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [header if isinstance(header, bytes) else header.encode() for header in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


ECHO = b'{"inputs": {"text": "hi"}}'


def check_malformed_http(gateway):
    print("== malformed HTTP on raw sockets", flush=True)
    length = f"Content-Length: {len(ECHO)}"
    cases = [
        ("garbage request line", b"HELLO\r\n\r\n"),
        ("binary garbage", bytes(random.Random(1).randrange(256) for _ in range(4096))),
        ("only a newline", b"\r\n\r\n"),
        ("unknown method", request("FOO", "/health")),
        ("method not allowed", request("PUT", "/invoke/echo", ECHO, [length])),
        ("lower-case method", request("get", "/health")),
        ("no HTTP version", b"GET /health\r\n\r\n"),
        ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("missing Content-Length (body read as the next request)", request("POST", "/invoke/echo", ECHO)),
        ("two different Content-Lengths", request("POST", "/invoke/echo", ECHO, [length, "Content-Length: 3"])),
        ("huge Content-Length", request("POST", "/invoke/echo", ECHO, ["Content-Length: 99999999999999999999999"])),
        ("negative Content-Length", request("POST", "/invoke/echo", ECHO, ["Content-Length: -5"])),
        ("Content-Length that is not a number", request("POST", "/invoke/echo", ECHO, ["Content-Length: ten"])),
        ("10 MB Content-Length, body never sent", request("POST", "/invoke/echo", b"", ["Content-Length: 10485760"])),
        ("Content-Length and chunked together",
         request("POST", "/invoke/echo", b"5\r\nhello\r\n0\r\n\r\n", [length, "Transfer-Encoding: chunked"])),
        ("chunk size not hex", request("POST", "/invoke/echo", b"zz\r\nhello\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"])),
        ("chunk size overflow",
         request("POST", "/invoke/echo", b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"])),
        ("chunk without CRLF", request("POST", "/invoke/echo", b"5\r\nhelloXX0\r\n\r\n", ["Transfer-Encoding: chunked"])),
        ("chunked body cut short", request("POST", "/invoke/echo", b"100\r\nabc", ["Transfer-Encoding: chunked"])),
        ("unknown transfer coding", request("POST", "/invoke/echo", ECHO, ["Transfer-Encoding: gzip, chunked, zz"])),
        ("NUL in a header value", request("GET", "/health", b"", [b"X-Test: a\0b"])),
        ("NUL in a header name", request("GET", "/health", b"", [b"X-\0Test: a"])),
        ("bare CR in a header", request("GET", "/health", b"", [b"X-Test: a\rb"])),
        ("header without a colon", request("GET", "/health", b"", ["JustAName"])),
        ("space before the colon", request("GET", "/health", b"", ["X-Test : a"])),
        ("obsolete line folding", request("GET", "/health", b"", ["X-Test: a", " folded"])),
        ("NUL in the path", b"GET /hea\0lth HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("space in the path", b"GET /a b/c HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("bad percent-encoding", request("GET", "/files/%zz/%", b"")),
        ("path traversal", request("GET", "/files/../../etc/passwd")),
        ("encoded traversal", request("GET", "/files/abc/..%2F..%2Fetc%2Fpasswd")),
        ("truncated body, then the client stops sending",
         request("POST", "/invoke/echo", ECHO[:10], [length])),
        ("huge header (100 KB)", request("GET", "/health", b"", ["X-Big: " + "a" * 100_000])),
        ("10,000 headers", request("GET", "/health", b"", [f"X-H{i}: v" for i in range(10_000)])),
        ("100 KB URL", request("GET", "/invoke/" + "a" * 100_000)),
        ("invalid UTF-8 in the path", b"GET /invoke/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("absolute-form target", b"GET http://127.0.0.1/health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("Expect: 100-continue never followed", request("POST", "/invoke/echo", b"", [length, "Expect: 100-continue"])),
        ("upgrade to an unknown protocol", request("GET", "/health", b"", ["Connection: Upgrade", "Upgrade: h2c"])),
        ("control character in a header value", request("GET", "/health", b"", [b"X-Test: a\x01b"])),
        ("DEL in a header value", request("POST", "/invoke/echo", ECHO, [length, b"Content-Type: \x7f/\x7f"])),
        ("bad header on a kept-alive second request",
         request("GET", "/health") + request("GET", "/health", b"", [b"X-Test: a\x01b"])),
        ("garbage after a good request", request("GET", "/health") + b"\x00\x01garbage\r\n\r\n"),
        ("websocket upgrade with a bad key",
         request("GET", "/invoke/echo/ws", b"", ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: x",
                                                  "Sec-WebSocket-Version: 13"])),
    ]
    ok_allowed = {"lower-case method", "obsolete line folding", "absolute-form target", "space before the colon",
                  "upgrade to an unknown protocol", "bad header on a kept-alive second request",
                  "garbage after a good request"}
    # The WebSocket library does not check the key's form; the socket then closes normally.
    ok_allowed.add("websocket upgrade with a bad key")
    for name, data in cases:
        check_raw(gateway, name, data, allow_ok=name in ok_allowed)
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


def round_trip(gateway, value, label):
    """`value` through echo (a string), batch_process (Swift) and batch_items (Python): the answer
    gives back exactly the same value, and every SSE event parses."""
    if isinstance(value, str):
        status, _, body = post(gateway, "/invoke/echo", json.dumps({"inputs": {"text": value}}).encode())
        ok = status == 200 and json.loads(body)["result"]["text"] == value
        tally.check(ok, f"echo {label}: {status} {body[:200]!r}")
    for function in ("batch_process", "batch_items"):
        status, headers, body = post(gateway, f"/invoke/{function}", json.dumps({"inputs": {"items": [value]}}).encode())
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
        body = b'{"inputs": {"items": [%s]}}' % literal.encode()
        for function in ("batch_process", "batch_items"):
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
    tally.finish(unit="requests")


if __name__ == "__main__":
    main()

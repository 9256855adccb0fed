#!/usr/bin/env python3
"""Fault test: serves Tests/Fixtures/fault-prefabs (prefabs that crash, die by a signal, hang,
flood, print a line with no end, ignore SIGTERM, write 1 GB) and checks that each call ends with
exactly one terminal event with a sensible code and no 5xx, that its process (and what it
started) is gone afterwards, that a healthy function keeps answering during and after, and that
the gateway's memory stays bounded. Then, on the example prefabs, a client disconnects at every
point of a stream (before, inside and after the headers, inside and between events): no function
keeps running, no process or descriptor leaks, and the gateway still serves.

Usage: python3 scripts/fault-test.py [--no-build]. Exits non-zero on any failed check."""
import json
import random
import socket
import string
import sys
import threading
import time

import live_gateway
from live_gateway import LiveGateway, Tally

FAULT_PREFABS = live_gateway.ROOT / "Tests/Fixtures/fault-prefabs"
GRACE = 1.0
# The gateway's peak RSS while floods and 1 GB writes run, and its growth once they are over.
MAX_PEAK_RSS_MB = 400
MAX_RSS_GROWTH_MB = 150
# The slowest answer of the healthy function while faults run (a Python start, on a busy machine).
MAX_HEALTHY_SECONDS = 10

tally = Tally("fault-test")

# (function, inputs, terminal type, error code, content events expected or None)
FAULTS = [
    ("py_crash", {}, "error", "PREFAB_CRASHED", None),
    ("py_signal", {}, "error", "PREFAB_CRASHED", None),
    ("py_hang", {}, "error", "TIMEOUT", None),
    ("py_flood", {"count": 300000}, "done", None, 300000),
    ("py_flood_forever", {}, "error", "TIMEOUT", None),
    ("py_ignore_term", {}, "error", "TIMEOUT", None),
    ("py_write_1gb", {}, "error", "OUTPUT_TOO_LARGE", None),
    ("sh_crash", {}, "error", "PREFAB_CRASHED", None),
    ("sh_signal", {}, "error", "PREFAB_CRASHED", None),
    ("sh_hang", {}, "error", "TIMEOUT", None),
    ("sh_flood", {}, "done", None, 2000000),
    ("sh_huge_line", {}, "error", "PROTOCOL_ERROR", None),
    ("sh_ignore_term", {}, "error", "TIMEOUT", None),
    ("sh_write_1gb", {}, "error", "OUTPUT_TOO_LARGE", None),
]


class Watcher(threading.Thread):
    """Calls `healthy` over and over and samples the gateway's RSS and its fault children, until
    stopped."""

    def __init__(self, gateway):
        super().__init__(daemon=True)
        self.gateway = gateway
        self.stop = threading.Event()
        self.calls = 0
        self.failures = []
        self.slowest = 0.0
        self.peak_rss = 0.0
        self.fault_pids = set()

    def run(self):
        last_call = 0.0
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, live_gateway.rss_mb(self.gateway.pid))
            for pid in live_gateway.children(self.gateway.pid):
                if "faults_" in live_gateway.cmdline(pid):
                    self.fault_pids.add(pid)
            if time.monotonic() - last_call > 0.2:
                last_call = time.monotonic()
                self.call_healthy()
            time.sleep(0.02)

    def call_healthy(self):
        text = "".join(random.choice(string.printable) for _ in range(32))
        started = time.monotonic()
        try:
            status, _, messages = self.gateway.invoke("healthy", {"text": text}, timeout=MAX_HEALTHY_SECONDS * 2)
            answer = live_gateway.events(messages) if status == 200 else messages
            expected = [{"type": "content", "data": text}, {"type": "done", "data": {"length": len(text)}}]
            if status != 200 or [{k: v for k, v in e.items() if k != "invocation_id"} for e in answer] != expected:
                self.failures.append(f"healthy answered {status} {answer!r:.200}")
        except Exception as error:  # noqa: BLE001 - any failure of the control counts
            self.failures.append(f"healthy failed: {error!r}")
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.calls += 1


def check_fault(gateway, watcher, function, inputs, terminal, code, contents):
    watcher.fault_pids.clear()
    count = {"content": 0, "terminal": [], "pids": set(), "ids_ok": True, "last_id": 0, "other": 0}

    def on_message(message):
        event = json.loads(message["data"])
        number = int(message["id"] or 0)
        if number != count["last_id"] + 1:
            count["ids_ok"] = False
        count["last_id"] = number
        kind = event.get("type")
        if kind == "content":
            count["content"] += 1
        elif kind in ("done", "error"):
            count["terminal"].append(event)
        elif kind == "start" and isinstance(event.get("data"), dict):
            count["pids"].add(event["data"].get("pid"))
        else:
            count["other"] += 1

    started = time.monotonic()
    try:
        status, headers, _ = gateway.invoke(function, inputs, on_message=on_message, timeout=120)
    except Exception as error:  # noqa: BLE001 - a broken stream is a failure of this case
        tally.check(False, f"{function}: the stream broke: {error!r}")
        return
    seconds = time.monotonic() - started
    terminals = count["terminal"]
    summary = terminals[-1] if terminals else None
    print(f"  {function}: {status}, {count['content']} content events, terminal "
          f"{summary and (summary.get('type'), summary.get('error_code'))} in {seconds:.1f} s", flush=True)
    tally.check(status == 200, f"{function}: status {status}, expected 200")
    tally.check(len(terminals) == 1, f"{function}: {len(terminals)} terminal events, expected exactly one")
    if terminals:
        tally.check(terminals[0].get("type") == terminal and terminals[0].get("error_code") == code,
                    f"{function}: ended with {terminals[0]!r:.300}, expected {terminal} {code}")
    tally.check(count["ids_ok"], f"{function}: event ids are not consecutive from 1: events were lost")
    if contents is not None:
        tally.check(count["content"] == contents, f"{function}: {count['content']} content events, expected {contents}")
    pids = {pid for pid in count["pids"] | watcher.fault_pids if isinstance(pid, int)}
    if function not in ("py_hang", "sh_hang") or pids:
        tally.check(bool(pids), f"{function}: no process of the call was seen")
    tally.check(live_gateway.gone(pids, timeout=GRACE + 5),
                f"{function}: processes {sorted(pids)} (or ones they started) still exist after the call")
    invocation = headers.get("X-Invocation-Id", "")
    if code == "OUTPUT_TOO_LARGE":
        tally.check(invocation and not (gateway.outputs / invocation).exists(),
                    f"{function}: the output folder of {invocation} was not deleted")


def check_faults():
    print("== faults: each call ends with one terminal event; no process is left; healthy keeps answering")
    flags = ["--timeout", "20", "--termination-grace", GRACE, "--max-output-bytes", 50000000,
             "--resume-grace", 0, "--log-level", "warning"]
    with LiveGateway(FAULT_PREFABS, *flags) as gateway:
        load_errors = gateway.health()["load_errors"]
        tally.check(load_errors == [], f"the fault prefabs load without problems: {load_errors}")
        before = gateway.stats()
        watcher = Watcher(gateway)
        watcher.start()
        try:
            for function, inputs, terminal, code, contents in FAULTS:
                check_fault(gateway, watcher, function, inputs, terminal, code, contents)
            check_flood_disconnect(gateway, watcher)
            # Every fault at once, while the healthy function keeps answering.
            threads = [threading.Thread(target=check_fault, args=(gateway, watcher, *fault)) for fault in FAULTS
                       if fault[0] not in ("py_write_1gb", "sh_write_1gb")]
            print("  all at once:", flush=True)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            watcher.stop.set()
            watcher.join()
        tally.check(gateway.wait_idle(10), "a function still runs after every fault ended")
        time.sleep(1)
        after = gateway.stats()
        print(f"  healthy: {watcher.calls} calls during the faults, slowest {watcher.slowest:.2f} s, "
              f"{len(watcher.failures)} failed")
        for failure in watcher.failures[:10]:
            print(f"    {failure}")
        tally.check(watcher.calls >= 10, f"healthy was called only {watcher.calls} times")
        tally.check(not watcher.failures, f"healthy failed {len(watcher.failures)} times during the faults")
        tally.check(watcher.slowest <= MAX_HEALTHY_SECONDS,
                    f"healthy took {watcher.slowest:.1f} s at worst (bound {MAX_HEALTHY_SECONDS} s)")
        print(f"  resources before: {before}")
        print(f"  resources after:  {after}; peak RSS {watcher.peak_rss} MB "
              f"(bounds: peak {MAX_PEAK_RSS_MB} MB, growth {MAX_RSS_GROWTH_MB} MB)")
        tally.check(watcher.peak_rss <= MAX_PEAK_RSS_MB, f"peak RSS {watcher.peak_rss} MB > {MAX_PEAK_RSS_MB} MB")
        tally.check(after["rss_mb"] - before["rss_mb"] <= MAX_RSS_GROWTH_MB,
                    f"RSS grew from {before['rss_mb']} to {after['rss_mb']} MB")
        tally.check(after["children"] == 0, f"{after['children']} child processes remain")
        tally.check(after["fds"] <= before["fds"] + 4, f"open descriptors grew from {before['fds']} to {after['fds']}")
        tally.check(gateway.alive(), "the gateway is still running")


def check_flood_disconnect(gateway, watcher):
    """A client that stops reading a flood and hangs up: the child is stopped."""
    watcher.fault_pids.clear()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as connection:
        body = b'{"inputs": {}}'
        connection.sendall(b"POST /invoke/py_flood_forever HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while len(received) < 200000:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        pid = int(received.split(b'"pid":', 1)[1].split(b"}", 1)[0])
    print(f"  py_flood_forever: the client hung up after {len(received)} bytes", flush=True)
    tally.check(live_gateway.gone({pid}, timeout=GRACE + 5), "py_flood_forever: the process outlived its client")


# Streaming example functions, with inputs that make them last a while.
DISCONNECT_CALLS = [
    ("batch_process", {"items": list("abcdefghij"), "delay_ms": 30}),
    ("chat_stream", {"prompt": "hang up on me", "delay_ms": 15}),
    ("fail_midway", {"steps": 8, "fail_at": 6, "delay_ms": 30}),
    ("report", {"rows": 5}),
    ("wizard", {}),
    ("count_lines", {"text": "a\nb\nc\nd\ne\nf\ng\nh", "every": 1, "delay_ms": 30}),
    ("batch_items", {"items": [1, 2, 3, 4, 5]}),
    ("wizard_py", {}),
]


def raw_request(name, inputs):
    body = json.dumps({"inputs": inputs}).encode()
    return (b"POST /invoke/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(body), body))


def read_whole(port, request, settle=3.0):
    """The whole answer to `request`, until the stream ends or goes quiet (a question waits)."""
    with socket.create_connection(("127.0.0.1", port), timeout=settle) as connection:
        connection.sendall(request)
        received = b""
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
    return received


def cut_points(answer):
    """Byte counts to read before hanging up: 0, inside the status line and headers, right after
    them, and before, inside and after each of the first events."""
    head_end = answer.find(b"\r\n\r\n") + 4
    points = {0, 1, 5, head_end // 2, head_end - 2, head_end, head_end + 1, len(answer) - 1}
    for boundary in [i + 2 for i in range(head_end, len(answer)) if answer[i:i + 2] == b"\n\n"][:4]:
        points |= {boundary - 8, boundary, boundary + 3}
    return sorted(point for point in points if 0 <= point < len(answer))


def check_disconnects():
    print("== a client hangs up at every point of a stream: nothing keeps running or leaks")
    with LiveGateway(live_gateway.ROOT / "prefabs", "--resume-grace", 0.2, "--log-level", "warning") as gateway:
        before = gateway.stats()
        cases = 0
        for name, inputs in DISCONNECT_CALLS:
            request = raw_request(name, inputs)
            answer = read_whole(gateway.port, request)
            tally.check(answer.startswith(b"HTTP/1.1 200"), f"{name}: a whole read answers 200: {answer[:80]!r}")
            tally.check(gateway.wait_idle(10), f"{name}: still running after a whole read")
            half_request = [request[:len(request) // 2], request[:20], request[:-3]]
            for k in [("request", part) for part in half_request] + cut_points(answer):
                cases += 1
                with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as connection:
                    if isinstance(k, tuple):
                        connection.sendall(k[1])
                    else:
                        connection.sendall(request)
                        received = b""
                        while len(received) < k:
                            chunk = connection.recv(k - len(received))
                            if not chunk:
                                break
                            received += chunk
                    if cases % 2:
                        # Half the cases reset the connection instead of closing it.
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                where = f"after {k} bytes" if not isinstance(k, tuple) else f"after {len(k[1])} request bytes"
                tally.check(gateway.wait_idle(10), f"{name}: a function still runs 10 s after a hang-up {where}")
                tally.check(live_gateway.gone(set(live_gateway.children(gateway.pid)), timeout=GRACE + 5),
                            f"{name}: a child process outlived a hang-up {where}")
            status, _, messages = gateway.invoke(name if name not in ("wizard", "wizard_py") else "chat_stream",
                                                 inputs if name not in ("wizard", "wizard_py") else {"prompt": "x"})
            tally.check(status == 200 and messages, f"{name}: the gateway serves after the hang-ups")
        status, _, body = gateway.request("POST", "/invoke/echo", b'{"inputs": {"text": "still here"}}')
        tally.check(status == 200 and json.loads(body)["result"]["text"] == "still here",
                    f"echo answers after every hang-up: {status} {body[:200]!r}")
        time.sleep(0.5)
        after = gateway.stats()
        # Function threads stay idle for 30 s after use: a few more threads are not a leak.
        print(f"  {cases} hang-ups; resources before: {before}")
        print(f"  after: {after} (bounds: descriptors +4, threads +16 for idle function threads, no children)")
        tally.check(after["fds"] <= before["fds"] + 4, f"descriptors grew from {before['fds']} to {after['fds']}")
        tally.check(after["threads"] <= before["threads"] + 16,
                    f"threads grew from {before['threads']} to {after['threads']}")
        tally.check(after["children"] == 0, f"{after['children']} child processes remain")
        tally.check(gateway.alive(), "the gateway is still running")


def main():
    if "--no-build" not in sys.argv:
        live_gateway.build()
    check_faults()
    check_disconnects()
    tally.finish()


if __name__ == "__main__":
    main()

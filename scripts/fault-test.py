#!/usr/bin/env python3
"""Fault test: serves Tests/Fixtures/fault-prefabs (prefabs that crash, die by a signal, hang,
flood, print a line with no end, ignore SIGTERM, write 1 GB) and checks that each call ends with
exactly one terminal event with a sensible code and no 5xx, that its process (and what it
started) is gone afterwards, that a healthy function keeps answering during and after, and that
the gateway's memory stays bounded. Then, on the example prefabs, a client disconnects at every
point of a stream (before, inside and after the headers, inside and between events): no function
keeps running, no process or descriptor leaks, and the gateway still serves.

Also: hostile prefab folders (wrong types, duplicates, invalid JSON, empty, huge, a FIFO, a link out of
the prefabs folder, an entry file that escapes) are each named by `validate` and /health.

Usage: python3 scripts/fault-test.py [--no-build]. Exits non-zero on any failed check."""
import json
import os
import pathlib
import random
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
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
MAX_HEALTHY_SECONDS = 15

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
    ("sh_flood", {}, "done", None, 1000000),
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
        self.current = "(start)"
        # The slowest call and the fault running when it began: a flood once held every request
        # on its event loop until it ended (20 s).
        self.slowest_during = "(none)"

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
        phase = self.current
        try:
            status, _, messages = self.gateway.invoke("healthy", {"text": text}, timeout=MAX_HEALTHY_SECONDS * 2)
            answer = live_gateway.events(messages) if status == 200 else messages
            expected = [{"type": "content", "data": text}, {"type": "done", "data": {"length": len(text)}}]
            if status != 200 or [{k: v for k, v in e.items() if k != "invocation_id"} for e in answer] != expected:
                self.failures.append(f"healthy answered {status} {answer!r:.200}")
        except Exception as error:  # noqa: BLE001 - any failure of the control counts
            self.failures.append(f"healthy failed during {phase}: {error!r}")
        seconds = time.monotonic() - started
        if seconds > self.slowest:
            self.slowest, self.slowest_during = seconds, phase
        self.calls += 1


def check_fault(gateway, watcher, function, inputs, terminal, code, contents, alone=True):
    """One call of a fault. `alone`: no other fault runs, so every fault process the watcher saw
    belongs to this call; otherwise only the process the call reported is checked here."""
    if alone:
        watcher.fault_pids.clear()
        watcher.current = function
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
    pids = {pid for pid in count["pids"] | (watcher.fault_pids if alone else set()) if isinstance(pid, int)}
    # A Python worker that served the call lives on to serve the next one (those that crashed,
    # timed out or hit a limit were killed); what it ran below it must be gone.
    time.sleep(0.2)
    kept = {pid for pid in pids if live_gateway.is_worker(pid)}
    pids = (pids - kept) | {child for pid in kept for child in live_gateway.children(pid)}
    if function not in ("py_hang", "sh_hang") and (alone or function not in ("py_ignore_term",)):
        tally.check(bool(pids | kept), f"{function}: no process of the call was seen")
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
            check_requests_beside_flood(gateway, watcher)
            # Every fault at once, while the healthy function keeps answering.
            # The long floods and 1 GB writes ran alone above: together on two cores they only
            # measure CPU starvation.
            threads = [threading.Thread(target=check_fault, args=(gateway, watcher, *fault), kwargs={"alone": False})
                       for fault in FAULTS if fault[0] not in ("py_write_1gb", "sh_write_1gb", "py_flood", "sh_flood")]
            print("  all at once:", flush=True)
            watcher.current = "all at once"
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
        print(f"  healthy: {watcher.calls} calls during the faults, slowest {watcher.slowest:.2f} s "
              f"(begun during {watcher.slowest_during}), {len(watcher.failures)} failed")
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
        check_descriptors(before, after, gateway)
        tally.check(gateway.alive(), "the gateway is still running")


def check_descriptors(before, after, gateway):
    """Sockets, pipes and files come back to their count (+2): a leak shows there. The runtime's
    own epoll/eventfd/timerfd descriptors come and go with its threads and timers (seen: +6 with one
    more thread), so they get three per extra thread plus a fixed 8; the soak test checks that the
    total comes back after 5,000 calls."""
    threads = max(0, after["threads"] - before["threads"])
    print(f"  descriptor bounds: sockets, pipes and files +2; all +10 + 3 per extra thread ({threads})")
    ok = tally.check(after["io_fds"] <= before["io_fds"] + 2,
                     f"sockets, pipes and files grew from {before['io_fds']} to {after['io_fds']}")
    ok &= tally.check(after["fds"] <= before["fds"] + 10 + 3 * threads,
                      f"descriptors grew from {before['fds']} to {after['fds']} with {threads} more threads")
    if not ok:
        print(f"  descriptors: {live_gateway.describe_fds(gateway.pid)}")


def check_flood_disconnect(gateway, watcher):
    """A client that stops reading a flood and hangs up: the child is stopped."""
    watcher.fault_pids.clear()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as connection:
        connection.sendall(live_gateway.invoke_request("py_flood_forever", {}))
        received = b""
        while len(received) < 200000:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        pid = int(received.split(b'"pid":', 1)[1].split(b"}", 1)[0])
    print(f"  py_flood_forever: the client hung up after {len(received)} bytes", flush=True)
    tally.check(live_gateway.gone({pid}, timeout=GRACE + 5), "py_flood_forever: the process outlived its client")


# How long a request may wait while a flood streams to a fast reader (it answers in milliseconds).
MAX_SECONDS_BESIDE_FLOOD = 2.0


def check_requests_beside_flood(gateway, watcher):
    """A client reads sh_flood as fast as it can while others ask for /health on new connections,
    which land on each event loop in turn. Each must answer at once: the flood's writes once kept
    its loop from serving any other connection until the flood ended (20 s)."""
    watcher.current = "sh_flood beside requests"
    done = threading.Event()

    def read_flood():
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as connection:
            connection.sendall(live_gateway.invoke_request("sh_flood", {}))
            while connection.recv(1 << 20):
                pass
        done.set()

    reader = threading.Thread(target=read_flood, daemon=True)
    reader.start()
    time.sleep(1)
    times = []
    for _ in range(8):
        started = time.monotonic()
        status, _, _ = gateway.request("GET", "/health", timeout=60)
        times.append(time.monotonic() - started)
        tally.check(status == 200, f"beside a flood: /health answered {status}")
    flooding = not done.is_set()
    print(f"  beside a flood: 8 requests on new connections, slowest {max(times):.3f} s "
          f"(bound {MAX_SECONDS_BESIDE_FLOOD} s); the flood still ran after them: {flooding}", flush=True)
    tally.check(flooding, "the flood ended before the requests beside it were done: they tested nothing")
    tally.check(max(times) <= MAX_SECONDS_BESIDE_FLOOD,
                f"beside a flood a request waited {max(times):.1f} s (bound {MAX_SECONDS_BESIDE_FLOOD} s)")
    reader.join(120)


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
            request = live_gateway.invoke_request(name, inputs)
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
                        try:
                            while len(received) < k:
                                chunk = connection.recv(k - len(received))
                                if not chunk:
                                    break
                                received += chunk
                        except socket.timeout:
                            pass  # this run's answer is shorter (a question waits): hang up here
                    if cases % 2:
                        # Half the cases reset the connection instead of closing it.
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                where = f"after {k} bytes" if not isinstance(k, tuple) else f"after {len(k[1])} request bytes"
                tally.check(gateway.wait_idle(10), f"{name}: a function still runs 10 s after a hang-up {where}")
                # (The Python workers kept between calls stay; what they run does not.)
                tally.check(live_gateway.gone(set(live_gateway.call_processes(gateway.pid)), timeout=GRACE + 5),
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
        print(f"  after: {after} (bounds: as below, threads +16 for idle function threads, no children)")
        check_descriptors(before, after, gateway)
        tally.check(after["threads"] <= before["threads"] + 16,
                    f"threads grew from {before['threads']} to {after['threads']}")
        tally.check(after["children"] == 0, f"{after['children']} child processes remain")
        tally.check(gateway.alive(), "the gateway is still running")


def check_hostile_manifests():
    """Broken and hostile prefab folders beside a good one: `validate` names each and exits 1,
    `serve` lists each in /health's load_errors and still serves the good one; nothing hangs."""
    print("== hostile manifests: validate and /health name each; the good prefab still serves")
    root = pathlib.Path(tempfile.mkdtemp(prefix="hostile-manifests-"))
    try:
        prefabs, outside = root / "prefabs", root / "outside"
        def manifest(folder, text, **files):
            (prefabs / folder).mkdir(parents=True)
            (prefabs / folder / "prefab-manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
            for name, content in files.items():
                (prefabs / folder / name).write_text(content)
        manifest("good", '{"functions": [{"name": "good", "streaming": true}]}',
                 **{"main.py": "def good():\n    yield {'type': 'content', 'data': 'fine'}\n"})
        manifest("wrong_types", '{"functions": [{"name": 3, "streaming": "yes"}]}')
        manifest("no_functions", "{}")
        manifest("duplicate", '{"functions": [{"name": "d"}, {"name": "d"}]}')
        manifest("zz_duplicate_across", '{"runtime": {"kind": "python"}, "functions": [{"name": "good"}]}',
                 **{"main.py": "def good():\n    return 1\n"})
        manifest("invalid_json", '{"functions": [')
        manifest("empty", "")
        manifest("huge", '{"functions": [{"name": "huge"}]}' + " " * (2 << 20))
        manifest("deep", "[" * 1_000_000)
        manifest("missing_entry", '{"runtime": {"kind": "python", "entry": "nope.py"}, "functions": [{"name": "m"}]}')
        manifest("escaping_entry", '{"runtime": {"entry": "../good/main.py"}, "functions": [{"name": "e"}]}')
        (prefabs / "is_a_directory" / "prefab-manifest.json").mkdir(parents=True)
        (prefabs / "fifo").mkdir()
        os.mkfifo(prefabs / "fifo" / "prefab-manifest.json")
        (outside / "elsewhere").mkdir(parents=True)
        (outside / "elsewhere" / "prefab-manifest.json").write_text('{"functions": [{"name": "x"}]}')
        (outside / "elsewhere" / "main.py").write_text("def x():\n    return 1\n")
        (prefabs / "linked_outside").symlink_to(outside / "elsewhere")
        broken = sorted(path.name for path in prefabs.iterdir() if path.name != "good")
        result = subprocess.run([str(live_gateway.BINARY), "validate", str(prefabs)], capture_output=True, text=True,
                                timeout=60)
        print("\n".join("  " + line for line in result.stdout.splitlines()))
        tally.check(result.returncode == 1, f"validate exits 1 on hostile manifests, not {result.returncode}")
        for name in broken:
            tally.check(f"/{name}/" in result.stdout or f"/{name}:" in result.stdout, f"validate names {name}")
        with LiveGateway(prefabs, "--log-level", "critical") as gateway:
            health = gateway.health()
            files = " ".join(problem["file"] for problem in health["load_errors"])
            for name in broken:
                tally.check(f"/{name}/" in files or files.endswith(f"/{name}") or f"/{name} " in files,
                            f"/health load_errors names {name}")
            status, _, messages = gateway.invoke("good", {})
            tally.check(status == 200 and live_gateway.events(messages)[0]["data"] == "fine",
                        f"the good prefab serves beside the hostile ones: {status} {messages!r:.200}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_gateway_killed():
    """A gateway killed with SIGKILL leaves no process of a running call: neither a Python runner
    nor a command, nor what they started in their process groups (PR_SET_PDEATHSIG and the
    guardian)."""
    with tempfile.TemporaryDirectory() as folder:
        prefabs = pathlib.Path(folder)
        (prefabs / "stay_py").mkdir()
        (prefabs / "stay_py/main.py").write_text(
            "import os, subprocess, time\n"
            "def stay_py():\n"
            "    child = subprocess.Popen(['sleep', '300'])\n"
            "    yield {'type': 'start', 'data': {'pid': os.getpid(), 'child': child.pid}}\n"
            "    time.sleep(300)\n")
        (prefabs / "stay_py/prefab-manifest.json").write_text(
            '{"functions": [{"name": "stay_py", "streaming": true}]}')
        (prefabs / "stay_sh").mkdir()
        script = prefabs / "stay_sh/stay.sh"
        script.write_text('#!/bin/sh\nread call\nsleep 300 &\n'
                          'echo "{\\"type\\": \\"start\\", \\"data\\": {\\"pid\\": $$, \\"child\\": $!}}"\n'
                          'wait\n')
        script.chmod(0o755)
        (prefabs / "stay_sh/prefab-manifest.json").write_text(
            '{"runtime": {"kind": "process", "command": ["./stay.sh"]}, '
            '"functions": [{"name": "stay_sh", "streaming": true}]}')
        with LiveGateway(prefabs, "--log-level", "warning") as gateway:
            pids, connections = [], []
            for name in ("stay_py", "stay_sh"):
                connection = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
                connections.append(connection)
                connection.sendall(live_gateway.invoke_request(name, {}))
                answer, found = b"", None
                while found is None:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                    found = re.search(rb'data: (\{.*"child".*\})\n', answer)
                data = json.loads(found.group(1)).get("data") or {} if found else {}
                tally.check("pid" in data and "child" in data, f"{name}: no start event with pids: {answer[-300:]!r}")
                pids += [data.get("pid"), data.get("child")]
            pids = [pid for pid in pids if pid]
            os.kill(gateway.pid, 9)
            gateway.process.wait()
            survivors = [pid for pid in pids if live_gateway.proc_stat(pid) is not None]
            if tally.check(live_gateway.gone(pids, 5),
                           f"processes of running calls outlived a SIGKILLed gateway: "
                           f"{[(pid, live_gateway.cmdline(pid)) for pid in survivors]}"):
                print(f"SIGKILL: the gateway's {len(pids)} call processes ended with it", flush=True)
            for connection in connections:
                connection.close()


def main():
    if "--no-build" not in sys.argv:
        live_gateway.build()
    check_gateway_killed()
    check_hostile_manifests()
    check_faults()
    check_disconnects()
    tally.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Process-runtime figures: time from request to first event for a Python and a Swift prefab,
and events per second relayed from a Python generator, through a release build of the gateway.

A benchmark, not a test: it prints figures. Usage: python3 bench/process_runtime.py [--calls N]
"""
import argparse
import http.client
import json
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

BURST_PY = '''
def burst_py(n: int = 1000):
    yield {"type": "start", "data": {"n": n}}
    for _ in range(n):
        yield {"type": "content", "data": "x"}
    yield {"type": "done", "data": {"n": n}}
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, function, inputs):
    """Returns (seconds to the first event, seconds to the end, events received)."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"inputs": inputs})
    started = time.perf_counter()
    connection.request("POST", f"/invoke/{function}", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    first = None
    tail = b""
    events = 0
    while True:
        chunk = response.read1(1 << 20)
        if not chunk:
            break
        if first is None and b"data:" in chunk:
            first = time.perf_counter() - started
        # An event ends with a blank line; one may straddle two chunks.
        events += (tail + chunk).count(b"\n\n")
        tail = chunk[-1:]
    connection.close()
    return first, time.perf_counter() - started, events


def summary(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"p50 {statistics.median(values) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   max {values[-1] * 1000:7.2f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--skip-build", action="store_true")
    options = parser.parse_args()

    if not options.skip_build:
        subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--product", "prefab-gateway"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-process-"))
    prefabs = work / "prefabs"
    for folder in ("batch_process", "python_batch"):
        shutil.copytree(ROOT / "prefabs" / folder, prefabs / folder)
    (prefabs / "python_burst").mkdir()
    (prefabs / "python_burst" / "main.py").write_text(BURST_PY)
    (prefabs / "python_burst" / "prefab-manifest.json").write_text(json.dumps(
        {"functions": [{"name": "burst_py", "streaming": True,
                        "parameters": [{"name": "n", "type": "integer", "default": 1000}]}]}))
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".build/release/prefab-gateway"), "serve", "--port", str(port), "--prefabs", str(prefabs),
         "--data", str(work / "data"), "--log-level", "warning"])
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.05)
        print(f"{options.calls} calls each, one new connection per call, release build, same machine\n")
        print("time from request to first event")
        for label, function, inputs in (
            ("Swift prefab  (batch_process, 1 item)", "batch_process", {"items": ["a"], "delay_ms": 0}),
            ("Python prefab (batch_items, 1 item)  ", "batch_items", {"items": ["a"]}),
        ):
            cold = call(port, function, inputs)[0]
            firsts = [call(port, function, inputs)[0] for _ in range(options.calls)]
            print(f"  {label}  first call {cold * 1000:7.2f} ms   {summary(firsts)}")

        print(f"\nevents relayed in one stream of {options.events} content events")
        for label, function, inputs in (
            ("Swift prefab  (batch_process)", "batch_process", {"items": ["x"] * options.events, "delay_ms": 0}),
            ("Python prefab (burst_py)     ", "burst_py", {"n": options.events}),
        ):
            _, total, events = call(port, function, inputs)
            print(f"  {label}  {events / total:12,.0f} events/s   ({events} events in {total:.3f} s)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

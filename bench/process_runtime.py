#!/usr/bin/env python3
"""Process-runtime figures through a release build of the gateway, for Python prefabs on workers
("isolation": "worker", the default) and with a process per call: time from request to first event
(a Swift prefab beside them), a prefab whose import takes 300 ms, Python echo at 64 keep-alive
connections, and events per second relayed from a Python generator; then the FastAPI peer's
in-process echo for comparison (from bench/.venv, which bash bench/run.sh installs).

A benchmark, not a test: it prints figures. Usage: python3 bench/process_runtime.py [--calls N]
[--isolation worker|process-per-call] [--no-peer] [--skip-build]
"""
import argparse
import http.client
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from free_port import free_port  # noqa: E402  (below the ephemeral range: scripts/free_port.py)
LOADGEN = ROOT / "bench" / "loadgen" / "sse_load"

BURST_PY = '''
def burst_py(n: int = 1000):
    yield {"type": "start", "data": {"n": n}}
    for _ in range(n):
        yield {"type": "content", "data": "x"}
    yield {"type": "done", "data": {"n": n}}
'''


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


def load(port, function, inputs, connections, requests, keepalive=True):
    """The load client's figures (bench/loadgen/sse_load): requests/s, time to first event..."""
    command = [str(LOADGEN), "--port", str(port), "--path", f"/invoke/{function}",
               "--body", json.dumps({"inputs": inputs}), "--connections", str(connections),
               "--requests", str(requests), "--timeout", "120"]
    if keepalive:
        command.append("--keepalive")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for(port, path="/health"):
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def prefabs_for(isolation, root):
    """The measured prefabs, the Python ones with the given isolation."""
    prefabs = root / isolation / "prefabs"
    for folder in ("batch_process", "python_batch"):
        shutil.copytree(ROOT / "prefabs" / folder, prefabs / folder)
    for folder in ("py_echo", "py_slow_import"):
        shutil.copytree(ROOT / "bench" / "prefabs" / folder, prefabs / folder)
    (prefabs / "python_burst").mkdir()
    (prefabs / "python_burst" / "main.py").write_text(BURST_PY)
    (prefabs / "python_burst" / "prefab-manifest.json").write_text(json.dumps(
        {"functions": [{"name": "burst_py", "streaming": True,
                        "parameters": [{"name": "n", "type": "integer", "default": 1000}]}]}))
    for manifest in prefabs.glob("*/prefab-manifest.json"):
        if (manifest.parent / "main.py").exists():
            data = json.loads(manifest.read_text())
            data.setdefault("runtime", {})["isolation"] = isolation
            manifest.write_text(json.dumps(data))
    return prefabs


def measure_gateway(isolation, work, options):
    prefabs = prefabs_for(isolation, work)
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".build/release/prefab-gateway"), "serve", "--port", str(port), "--prefabs", str(prefabs),
         "--data", str(work / isolation / "data"), "--log-level", "warning"])
    try:
        wait_for(port)
        time.sleep(1.0)  # the workers kept ready import their prefabs
        print(f"\n== Python prefabs with \"isolation\": \"{isolation}\"\n")
        print("time from request to first event, one new connection per call")
        for label, function, inputs in (
            ("Swift prefab  (batch_process, 1 item)", "batch_process", {"items": ["a"], "delay_ms": 0}),
            ("Python prefab (batch_items, 1 item)  ", "batch_items", {"items": ["a"]}),
            ("Python, 300 ms import (slow_import_py)", "slow_import_py", {}),
        ):
            cold = call(port, function, inputs)[0]
            firsts = [call(port, function, inputs)[0] for _ in range(options.calls)]
            print(f"  {label}  first call {cold * 1000:7.2f} ms   later: {summary(firsts)}")
        figures = load(port, "echo_py", {}, 1, options.requests)
        print(f"  Python echo_py, one keep-alive connection, {options.requests} calls: "
              f"p50 {figures['ttfe_ms']['p50']:.3f} ms   p99 {figures['ttfe_ms']['p99']:.3f} ms")
        figures = load(port, "echo_py", {}, 64, options.requests * 10)
        print(f"  Python echo_py, 64 keep-alive connections: {figures['requests_per_s']:,.0f} requests/s "
              f"(p50 {figures['ttfe_ms']['p50']:.2f} ms, failed {figures['requests_failed']})")
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


def measure_peer(options):
    """The FastAPI peer's in-process echo, if bench/.venv has it (bash bench/run.sh installs it)."""
    uvicorn = ROOT / "bench" / ".venv" / "bin" / "uvicorn"
    if not uvicorn.exists():
        print("\n(no bench/.venv/bin/uvicorn: run bash bench/run.sh once to compare with the FastAPI peer)")
        return
    print("\n== the FastAPI peer (bench/peers/fastapi), its in-process echo\n")
    for workers in (1, 2):
        port = free_port()
        server = subprocess.Popen([str(uvicorn), "app:app", "--port", str(port), "--workers", str(workers),
                                   "--log-level", "warning"], cwd=ROOT / "bench" / "peers" / "fastapi")
        try:
            wait_for(port)
            time.sleep(1.0)
            if workers == 1:
                figures = load(port, "echo", {}, 1, options.requests)
                print(f"  echo, one keep-alive connection, 1 worker: p50 {figures['ttfe_ms']['p50']:.3f} ms   "
                      f"p99 {figures['ttfe_ms']['p99']:.3f} ms")
            else:
                figures = load(port, "echo", {}, 64, options.requests * 10)
                print(f"  echo, 64 keep-alive connections, 2 workers: {figures['requests_per_s']:,.0f} requests/s")
        finally:
            server.terminate()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2000, help="echo_py calls on one connection (x10 on 64)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--isolation", choices=["worker", "process-per-call"], action="append",
                        help="measure only this isolation (repeatable; default both)")
    parser.add_argument("--no-peer", action="store_true", help="do not measure the FastAPI peer")
    parser.add_argument("--skip-build", action="store_true")
    options = parser.parse_args()

    if not options.skip_build:
        subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--product", "prefab-gateway"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["make", "-C", str(ROOT / "bench" / "loadgen")], check=True, stdout=subprocess.DEVNULL)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-process-"))
    print(f"{options.calls} calls each where one new connection per call, release build, same machine")
    try:
        for isolation in options.isolation or ["worker", "process-per-call"]:
            measure_gateway(isolation, work, options)
        if not options.no_peer:
            measure_peer(options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

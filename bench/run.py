#!/usr/bin/env python3
"""Benchmarks the Prefab Gateway against the FastAPI peer in one run, on loopback.

Builds the gateway (release) and the load client, installs the peer and matplotlib into
bench/.venv, then runs every scenario, in this order, against ONE long-lived gateway and one
long-lived peer per worker count (1 and 2 uvicorn workers):

  idle RSS after start-up, 1 s after 200 calls and 7 s after (gone quiet); bursts; echo; 1,000 /
  5,000 / 10,000 concurrent tickers; the Python prefabs (echo_py, burst_py and a prefab whose
  import takes 300 ms)

so that the ticker peaks are those of a gateway that has already run the burst and echo
scenarios, as issue 13 states them. `--fresh` starts a new server for each scenario instead. The
cap scenarios need other flags and run on gateways of their own. Each server's RSS is recorded
before and after every scenario (and the gateway's at the end, idle), its peak RSS and CPU sampled
during it.

Every row carries its target (issue 13's done-means, issue 4's burst and ticker targets) and a
met/missed verdict. Prints the table, writes a PNG chart (bench/chart.py, default
bench/results.png), `--markdown FILE` the table of docs/performance.md, `--json FILE` every figure. Every server
it starts is stopped, also on failure. A benchmark, not a test: `--smoke` runs each scenario tiny
on the debug build (CI), draws the chart to a temporary file, and fails when a scenario fails;
its figures are not judged.
"""
import argparse
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from free_port import free_port  # noqa: E402  (below the ephemeral range: scripts/free_port.py)
BENCH = ROOT / "bench"
LOADGEN = BENCH / "loadgen" / "sse_load"
VENV = BENCH / ".venv"
PEER_REQUIREMENTS = BENCH / "peers" / "fastapi" / "requirements.txt"
CHART_REQUIREMENT = "matplotlib"
MB = 2**20  # figures in "MB" are mebibytes, as /proc reports them

# Scenario sizes. (gateway, peer) pairs: the gateway is ~100x faster at bursts, so it makes more calls.
FULL = dict(burst_n=10_000, burst1_requests=(50, 5), burst8_requests=(400, 40), echo_requests=20_000,
            ttfe_requests=2_000, idle_calls=200, tickers=(1000, 5000, 10000), ticks=20, interval_ms=500,
            ticker_timeout=55, python_seconds=8.0, python_probe=20, python_rate_probe=128,
            slow_import_calls=(5, 400), settle_s=1.0, start_up_s=2.0, quiet_s=7.0, end_idle_s=7.0, cap_calls=150,
            ceiling_events=10_000, ceiling_streams=50, ceiling_requests=50_000)
SMOKE = dict(burst_n=100, burst1_requests=(5, 5), burst8_requests=(16, 16), echo_requests=200, ttfe_requests=100,
             idle_calls=200, tickers=(20, 50, 100), ticks=3, interval_ms=100, ticker_timeout=30,
             python_seconds=0.5, python_probe=5, python_rate_probe=16, slow_import_calls=(2, 3), settle_s=0.2,
             start_up_s=1.0, quiet_s=0.5, end_idle_s=0.5, cap_calls=150, ceiling_events=100, ceiling_streams=5,
             ceiling_requests=200)
NOMINAL_TICKERS = (1000, 5000, 10000)
# Measured runs of a scenario at 64 connections, on every server; its figure is the best run's.
RATE_RUNS = 2
# The targets (issue 13's done-means; issue 4's for bursts and tickers).
TICKER_TARGETS = {1000: dict(lag_ms=10), 5000: dict(lag_ms=20, rss_mb=200), 10000: dict(lag_ms=50, rss_mb=400)}
IDLE_TARGET_MB = 25
BURST_RATIO, BURST1_EVENTS = 50, 1_000_000
ECHO_RATIO, ECHO_TTFE_P50, ECHO_TTFE_P99 = 10, 0.15, 1.0
PYTHON_TTFE_FACTOR, PYTHON_RATE_RATIO, SLOW_IMPORT_TTFE = 1.5, 2, 5.0


def log(message):
    print(message, file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as file:
        return float(file.read().split()[0])


def steal_percent(since, wall):
    """The share of the CPUs' time that the host stole since `steal_seconds()` was `since`, over
    `wall` seconds."""
    return 100 * (steal_seconds() - since) / (wall * (os.cpu_count() or 1))


def steal_seconds():
    """CPU time the hypervisor gave to other guests while this machine's CPUs wanted to run, summed
    over the CPUs (`/proc/stat`, in clock ticks). On a shared host it is what moves the ticker
    scenarios' lag tail: 5,000 tickers gave lag p99 3.0 ms with none stolen and 39.5 and 68.2 ms
    with 8% and 16%, on the same binary (docs/performance.md)."""
    with open("/proc/stat") as file:
        fields = file.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def process_table():
    """{parent pid: [child pids]} for every process."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    return children


def descendants(pid):
    """The processes below pid (uvicorn's workers, the gateway's Python children)."""
    children, found = process_table(), []
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_and_cpu(pid):
    """(resident bytes, CPU seconds) of one process."""
    rss, ticks = 0, 0
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
    except OSError:
        pass
    return rss, ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process in its own process group, stopped with everything it started."""

    def __init__(self, kind, command, port, cwd=ROOT, note=""):
        self.kind, self.port, self.note = kind, port, note
        self.process = subprocess.Popen(command, cwd=cwd, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Drained all along, so a chatty server never blocks on a full pipe; the tail explains an exit.
        self.stderr_tail = []
        threading.Thread(target=self.drain, daemon=True).start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{kind} exited at start-up: {self.stderr()}")
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} did not start within 60 s")

    def drain(self):
        for line in self.process.stderr:
            self.stderr_tail = (self.stderr_tail + [line.decode(errors="replace")])[-20:]

    def stderr(self):
        return "".join(self.stderr_tail)[-2000:]

    def memory(self):
        """{"rss_mb": the server process, "children_mb": its descendants, "children": how many}."""
        children = descendants(self.process.pid)
        return {"rss_mb": rss_and_cpu(self.process.pid)[0] / MB,
                "children_mb": sum(rss_and_cpu(pid)[0] for pid in children) / MB, "children": len(children)}

    def cpu_seconds(self):
        return sum(rss_and_cpu(pid)[1] for pid in [self.process.pid, *descendants(self.process.pid)])

    def alive(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5).read()
            return True
        except OSError:
            return False

    def functions(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/manifest", timeout=10) as response:
            return {function["name"] for function in json.load(response)["functions"]}

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()


class Sampler:
    """Samples a server every 100 ms while a scenario runs: peak RSS (the server process, and with
    its children), CPU used, the machine's load average, and the CPU time its host stole."""

    def __init__(self, server):
        self.server = server
        self.peak, self.peak_tree, self.load_max = 0.0, 0.0, load_average()
        self.running = True
        self.cpu_start = server.cpu_seconds()
        self.steal_start = steal_seconds()
        self.started = time.time()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self):
        memory = self.server.memory()
        self.peak = max(self.peak, memory["rss_mb"])
        self.peak_tree = max(self.peak_tree, memory["rss_mb"] + memory["children_mb"])
        self.load_max = max(self.load_max, load_average())

    def loop(self):
        while self.running:
            self.sample()
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.thread.join()
        self.sample()
        wall = time.time() - self.started
        return {"peak_rss_mb": self.peak, "peak_rss_with_children_mb": self.peak_tree, "wall_s": wall,
                "cpu_percent": 100 * (self.server.cpu_seconds() - self.cpu_start) / wall,
                "load_average_max": self.load_max,
                "steal_percent": steal_percent(self.steal_start, wall)}


def load(port, path, body, connections, requests, expect=None, keepalive=False, interval=None, timeout=120,
         ramp=None):
    """Runs the C load client; its one JSON line of figures."""
    command = [str(LOADGEN), "--port", str(port), "--path", path, "--body", json.dumps({"inputs": body}),
               "--connections", str(connections), "--requests", str(requests), "--timeout", str(timeout)]
    if keepalive:
        command.append("--keepalive")
    if expect is not None:
        command += ["--expect-events", str(expect)]
    if interval is not None:
        command += ["--interval-ms", str(interval)]
    if ramp is not None:
        command += ["--ramp", str(ramp)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"load client failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def merge_sequential(results):
    """One figure set from load runs made one after the other (a probe and the main run)."""
    merged = dict(results[-1])
    merged["requests_ok"] = sum(r["requests_ok"] for r in results)
    merged["requests_failed"] = sum(r["requests_failed"] for r in results)
    errors = {}
    for r in results:
        for reason, count in r["errors"].items():
            errors[reason] = errors.get(reason, 0) + count
    merged["errors"] = errors
    return merged


def best_of(results, figure):
    """The figures of the run whose `figure` is best, with the counts (done, failed, errors) of all the
    runs and each run's figure (`runs`)."""
    best = dict(max(results, key=figure))
    merged = merge_sequential(results)
    best.update(requests_ok=merged["requests_ok"], requests_failed=merged["requests_failed"],
                errors=merged["errors"], runs=[figure(r) for r in results])
    return best


class Fleet:
    """The servers of a run: one long-lived server per kind, or a new one per scenario (`fresh`).
    Records each server's RSS after start-up, after every scenario, and at the end."""

    def __init__(self, starters, fresh, settle_s):
        self.starters, self.fresh, self.settle_s = starters, fresh, settle_s
        self.live = {}
        self.timeline = {kind: [] for kind in starters}
        self.notes = []

    def server(self, kind):
        server = self.live.get(kind)
        if server is not None and server.process.poll() is not None:
            self.notes.append(f"{kind} had exited (status {server.process.returncode}) and was restarted: "
                              f"{server.stderr()[-300:]}")
            server = None
        if server is None:
            server = self.starters[kind]()
            self.live[kind] = server
            self.timeline[kind].append({"after": "start-up", **server.memory()})
        return server

    def measure(self, kind, key, scenario):
        server = self.server(kind)
        before = server.memory()
        sampler = Sampler(server)
        try:
            result = scenario(server)
        finally:
            figures = sampler.stop()
        result.update(figures)
        result["alive_after"] = server.alive()
        if not result["alive_after"]:
            self.notes.append(f"{kind} did not answer /health after {key}: {server.stderr()[-300:]}")
        time.sleep(self.settle_s)
        after = server.memory()
        result["rss_before_mb"], result["rss_after_mb"] = before["rss_mb"], after["rss_mb"]
        result["children_after"], result["children_after_mb"] = after["children"], after["children_mb"]
        self.timeline[kind].append({"after": key, **after})
        if self.fresh:
            self.stop(kind)
        return result

    def stop(self, kind, idle_s=0.0):
        server = self.live.pop(kind, None)
        if server is None:
            return
        if idle_s and server.process.poll() is None:
            time.sleep(idle_s)
            self.timeline[kind].append({"after": f"the end ({idle_s:g} s idle)", **server.memory()})
        server.stop()

    def stop_all(self):
        for kind in list(self.live):
            self.stop(kind)


class Step:
    """One scenario: `run(server, function)` on the given kinds of server; `function` is the
    gateway's function name, or the peer's for the peer (`peer_function`). The gateway's figures
    are measured on the fleet's `gateway` server, or on another gateway (`gateway_server`)."""

    def __init__(self, key, kinds, run, function=None, peer_function=None, optional=False,
                 gateway_server="gateway"):
        self.key, self.kinds, self.run = key, kinds, run
        self.function, self.peer_function, self.optional = function, peer_function or function, optional
        self.gateway_server = gateway_server

    def server(self, kind):
        return self.gateway_server if kind == "gateway" else kind


def plan(size, peers, ticker_functions):
    """The scenarios in the order the issue measures them."""
    n = size["burst_n"]
    every = ["gateway", *peers]

    def idle(server, function):
        time.sleep(size["start_up_s"])  # what starts ahead (Python workers) has started
        fresh = server.memory()
        calls = load(server.port, f"/invoke/{function}", {"text": "hi"}, 4, size["idle_calls"], expect=3,
                     keepalive=True)
        time.sleep(size["settle_s"])
        served = server.memory()
        # The gateway gives back what the calls brought in once it has been quiet for --idle-trim (5 s).
        time.sleep(max(0.0, size["quiet_s"] - size["settle_s"]))
        quiet = server.memory()
        return {**calls, "fresh_mb": fresh["rss_mb"], "after_calls_mb": served["rss_mb"],
                "quiet_mb": quiet["rss_mb"], "quiet_children_mb": quiet["children_mb"],
                "fresh_children_mb": fresh["children_mb"], "fresh_children": fresh["children"],
                "after_calls_children_mb": served["children_mb"], "after_calls_children": served["children"]}

    def burst(connections, requests):
        """`requests` (the gateway's, the peer's): the gateway is 100x faster, so it makes more calls for a
        figure that is not mostly start-up, and the peer fewer, for a run that ends in time."""
        def run(server, function):
            count = requests[0] if server.kind == "gateway" else requests[1]
            return load(server.port, f"/invoke/{function}", {"n": n}, connections, count, expect=n + 2)
        return run

    def echo_rate(requests):
        """The better of RATE_RUNS runs, on every server alike: this host's speed moves by up to 15% within
        minutes, and a single run of a few seconds caught it at any point of that."""
        def run(server, function):
            return best_of([load(server.port, f"/invoke/{function}", {"text": "hi"}, 64, requests, expect=3,
                                 keepalive=True) for _ in range(RATE_RUNS)], lambda r: r["requests_per_s"])
        return run

    def echo_ttfe(requests):
        return lambda server, function: load(server.port, f"/invoke/{function}", {"text": "hi"}, 1, requests,
                                             expect=3, keepalive=True)

    def sized(probe_requests, connections, figure, top):
        """A Python scenario's size follows its speed (a process per call is 100x slower than a worker):
        a probe; a warm-up sized from it, run again, sized from itself, until it has lasted a quarter of
        python_seconds; then about python_seconds' worth of calls, between the probe's size and `top`,
        measured RATE_RUNS times at 64 connections (the best run's figures are the row's). The probe meets a
        cold pool (2 workers, more started as calls wait): a run sized from it alone was mostly the pool's
        growth (3,168 requests/s for echo_py at 64 connections against 3,950 once grown), and a warm-up
        sized from it alone (1,342 requests/s) lasted a fifth of its time, the pool still growing during
        the measured run (5,487 requests/s, against 6,383-6,676 after 5,000 warm-up calls). The peer's
        processes have served calls before too."""
        def run(server, function):
            def go(requests):
                return load(server.port, f"/invoke/{function}", {"text": "hi"}, connections, requests, expect=3,
                            keepalive=True, timeout=300)

            def requests_for(result, seconds):
                return int(min(top, max(probe_requests, figure(result) * seconds)))
            probe = go(probe_requests)
            warm_ups, warm_up_s = [], 0.0
            while warm_up_s < size["python_seconds"] / 4 and len(warm_ups) < 4:
                seconds = size["python_seconds"] / 4 - warm_up_s
                warm_ups.append(go(requests_for(warm_ups[-1] if warm_ups else probe, seconds)))
                warm_up_s += warm_ups[-1]["elapsed_s"]
            requests = requests_for(warm_ups[-1], size["python_seconds"])
            # As `echo_rate`: the better of RATE_RUNS measured runs.
            measured = best_of([go(requests) for _ in range(RATE_RUNS if connections > 1 else 1)], figure)
            merged = merge_sequential([probe, *warm_ups, measured])
            merged.update(probe=probe, requests=requests, warm_up_s=round(warm_up_s, 2),
                          warm_up_requests=sum(w["requests_ok"] + w["requests_failed"] for w in warm_ups))
            return merged
        return run

    def slow_import(server, function):
        """The first call to the prefab (its import, unless it was started ahead), then later calls one
        after the other on one connection."""
        path = f"/invoke/{function}"
        first = load(server.port, path, {"text": "hi"}, 1, 1, expect=3, timeout=60)
        probe_calls, top = size["slow_import_calls"]
        probe = load(server.port, path, {"text": "hi"}, 1, probe_calls, expect=3, keepalive=True, timeout=120)
        calls = int(min(top, max(probe_calls, size["python_seconds"] * 1000 / max(probe["ttfe_ms"]["p50"], 0.1))))
        later = load(server.port, path, {"text": "hi"}, 1, calls, expect=3, keepalive=True, timeout=300)
        merged = merge_sequential([first, probe, later])
        merged.update(first_ttfe_ms=first["ttfe_ms"]["p50"], later_ttfe_ms=later["ttfe_ms"], later_calls=calls,
                      probe_ttfe_ms=probe["ttfe_ms"])
        return merged

    def ticker(count):
        return lambda server, function: load(
            server.port, f"/invoke/{function}", {"n": size["ticks"], "interval_ms": size["interval_ms"]}, count,
            count, expect=size["ticks"] + 1, interval=size["interval_ms"], timeout=size["ticker_timeout"], ramp=20)

    steps = [
        Step("idle", every, idle, "echo"),
        Step("burst1", every, burst(1, size["burst1_requests"]), "burst"),
        Step("burst8", every, burst(8, size["burst8_requests"]), "burst"),
        Step("echo_rate", every, echo_rate(size["echo_requests"]), "echo"),
        Step("echo_ttfe", every, echo_ttfe(size["ttfe_requests"]), "echo"),
        # The same function without `runs_on_event_loop`: what a call handed to a thread and back costs.
        Step("echo_threads_rate", ["gateway"], echo_rate(size["echo_requests"]), "echo_threads", optional=True),
        Step("echo_threads_ttfe", ["gateway"], echo_ttfe(size["ttfe_requests"]), "echo_threads", optional=True),
    ]
    # After the tickers: issue 13 states the ticker targets for a gateway that has run the bursts and
    # echo, as the second flavour's gateway is warmed up. Before them, what the Python scenarios left
    # in the gateway (their finished streams are kept for resuming) added about 40 MB to the tickers'
    # peaks (199-200 MB against 162 MB for 5,000, 2026-12-05).
    # The peer runs its own `echo` and `burst` again beside each Python scenario: compared with its
    # figures from minutes before (and 10,000 tickers in between), a ratio also measured how the
    # host's speed drifted, which moved a run's gateway and peer figures by up to 15% each.
    python_steps = [
        Step("py_echo_rate", every,
             sized(size["python_rate_probe"], 64, lambda r: r["requests_per_s"], size["echo_requests"]),
             "echo_py", peer_function="echo"),
        Step("py_echo_ttfe", every,
             sized(size["python_probe"], 1, lambda r: 1000 / max(r["ttfe_ms"]["p50"], 0.01), size["ttfe_requests"]),
             "echo_py", peer_function="echo"),
        Step("py_burst", every, burst(1, size["burst1_requests"]), "burst_py", peer_function="burst"),
        Step("py_slow_import", ["gateway"], slow_import, "slow_import_py"),
    ]
    warm_up = steps[1:5]  # the bursts and echo (on the event loop)
    for index, function in enumerate(ticker_functions):
        # A second ticker flavour (`ticker_sync`) gets a second gateway, warmed up with the same bursts and
        # echo: measured after the first flavour's 10,000 streams, its peaks would be that run's leftovers.
        server = "gateway" if index == 0 else f"gateway_{function}"
        if index > 0:
            steps += [Step(f"{function}_warm_up_{step.key}", ["gateway"], step.run, step.function, optional=True,
                           gateway_server=server) for step in warm_up]
        for nominal, count in zip(NOMINAL_TICKERS, size["tickers"]):
            # The peer completes none of 1,000 already: it runs the first count only.
            kinds = every if nominal == NOMINAL_TICKERS[0] and index == 0 else ["gateway"]
            steps.append(Step(f"{function}{nominal}", kinds, ticker(count), function, peer_function="ticker",
                              optional=index > 0, gateway_server=server))
        if index == 0:
            steps += python_steps
    if not ticker_functions:
        steps += python_steps
    return steps


def cap_scenarios(size, start_gateway, ticker_function, failures):
    """Past the concurrency cap: each on a gateway of its own, since they need other flags. Each call lasts 3 s,
    so that all are in at once even when a busy machine accepts them slowly (with 0.6 s, a loaded debug build
    once finished all 150 calls without ever holding 100)."""
    calls = size["cap_calls"]
    results = {}
    for key, flags in (("cap", ["--max-concurrent", "100", "--max-queued", "0"]),
                       ("cap_queued", ["--max-concurrent", "100"])):
        log(f"== {key}: {calls} tickers at a gateway of its own with {' '.join(flags)}")
        try:
            fleet = Fleet({"gateway": lambda: start_gateway(flags)}, fresh=True, settle_s=0)
            try:
                results[key] = fleet.measure("gateway", key, lambda server: load(
                    server.port, f"/invoke/{ticker_function}", {"n": 3, "interval_ms": 1500}, calls, calls,
                    expect=4, timeout=30))
            finally:
                fleet.stop_all()
            results[key]["flags"] = flags
        except Exception as error:  # noqa: BLE001 - a failed scenario is reported, the run goes on
            failures.append(f"{key}: {error}")
            results[key] = {"error": str(error), "flags": flags}
    return results


def client_ceiling(size):
    """The load client against its own trivial server: what it can measure at most."""
    figures = {}
    for name, events, connections, requests in (("events_per_s", size["ceiling_events"], 1, size["ceiling_streams"]),
                                                ("requests_per_s", 1, 64, size["ceiling_requests"])):
        server = subprocess.Popen([str(LOADGEN), "--serve", "--port", "0", "--events", str(events)],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            port = int(server.stdout.readline().split()[1])
            figures[name] = load(port, "/", {}, connections, requests, keepalive=True)[name]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()
    return figures


def ensure_libcurl():
    """A static Swift standard library links Foundation's networking (the MCP SDK uses it) against
    the system's libcurl, which needs its development package (-lcurl)."""
    if subprocess.run(["sh", "-c", "ldconfig -p | grep -q 'libcurl.so '"]).returncode == 0:
        return
    log("installing libcurl4-openssl-dev (the static release build links -lcurl)")
    root = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*root, "apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*root, "apt-get", "install", "-y", "-qq", "libcurl4-openssl-dev"], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build(smoke):
    log(f"building the gateway ({'debug' if smoke else 'release'}) and the load client")
    flags = [] if smoke else ["-c", "release", "--static-swift-stdlib"]
    if not smoke:
        ensure_libcurl()
    subprocess.run(["swift", "build", *flags, "--product", "prefab-gateway"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["make", "-s", "-C", str(BENCH / "loadgen")], check=True)


def install_venv(peers):
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    wanted = []
    if peers and not (VENV / "bin" / "uvicorn").exists():
        wanted += ["-r", str(PEER_REQUIREMENTS)]
    if subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True).returncode != 0:
        wanted.append(CHART_REQUIREMENT)
    if wanted:
        log(f"installing into bench/.venv: {' '.join(wanted)}")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
                       check=True)


def git_commit():
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Judging: each row's cells, ratio, target and verdict, from the scenarios' figures.

def number(value, digits=0):
    return f"{value:,.{digits}f}"


def duration(milliseconds):
    return f"{milliseconds:.0f} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"


def check(name, value, target, better, unit="", chart=True):
    met = value is not None and (value >= target if better == "higher" else value <= target)
    return {"name": name, "value": value, "target": target, "better": better, "unit": unit, "met": met,
            "chart": chart}


def verdict(checks, error=None):
    if error:
        return None, f"no: {error}"
    if not checks:
        return None, "report"
    missed = [c for c in checks if not c["met"]]
    if not missed:
        return True, "yes"
    if len(missed) == len(checks):
        return False, "no"
    return False, "no: " + ", ".join(c["name"] for c in missed) + "; yes: " + ", ".join(
        c["name"] for c in checks if c["met"])


SHORT_NAMES = {"idle": "idle RSS", "burst1": "1 burst stream", "burst8": "8 burst streams",
               "echo_rate": "echo, 64 connections", "echo_ttfe": "echo, first event",
               "echo_threads_rate": "echo on threads, 64 connections", "echo_threads_ttfe": "echo on threads, first event",
               "py_echo_rate":
               "Python echo, 64 connections", "py_echo_ttfe": "Python echo, first event", "py_burst": "Python burst",
               "py_slow_import": "Python, 300 ms import", "cap": "past the cap", "rss_over_run": "RSS over the run"}


def short_name(key, size):
    if key in SHORT_NAMES:
        return SHORT_NAMES[key]
    function = key.rstrip("0123456789")
    count = dict(zip(NOMINAL_TICKERS, size["tickers"]))[int(key[len(function):])]
    return f"{count:,} {function}"


def judge(results, peers):
    """The table's rows, each with its target and verdict."""
    scenarios, size = results["scenarios"], results["size"]
    peer_kinds = [f"peer{w}" for w in peers]
    rows = []

    def figures(key, kind):
        value = scenarios.get(key, {}).get(kind)
        return value if value and "error" not in value else None

    def error_of(key):
        errors = [f"{kind}: {value['error']}" for kind, value in scenarios.get(key, {}).items()
                  if isinstance(value, dict) and "error" in value]
        return "; ".join(errors)[:300] or None

    def best_peer(key, value, lowest=False):
        found = [value(figures(key, kind)) for kind in peer_kinds if figures(key, kind)]
        return (min(found) if lowest else max(found)) if found else None

    def add(key, label, cells, ratio, target, checks, scenario_keys=None):
        error = next(filter(None, (error_of(k) for k in (scenario_keys or [key]))), None)
        met, text = verdict(checks, error)
        rows.append({"key": key, "short": short_name(key, size), "label": label, "cells": cells, "ratio": ratio,
                     "target": target, "checks": checks, "met": met, "verdict": text})

    def per_kind(key, render):
        return {kind: render(figures(key, kind)) if figures(key, kind) else "—"
                for kind in ["gateway", *peer_kinds]}

    def children(value, prefix):
        count, mb = value.get(f"{prefix}_children", 0), value.get(f"{prefix}_children_mb", 0)
        return f" + {mb:.0f} MB in {count} child processes" if count else ""

    # Idle: the gateway process; its child processes (Python workers started ahead) apart. The peer: all its processes.
    if "idle" in scenarios:
        cells = {}
        for kind in ["gateway", *peer_kinds]:
            value = figures("idle", kind)
            if not value:
                cells[kind] = "—"
            elif kind == "gateway":
                quiet = f" / {value['quiet_mb']:.1f}" if "quiet_mb" in value else ""
                cells[kind] = (f"{value['fresh_mb']:.1f} / {value['after_calls_mb']:.1f}{quiet} MB"
                               + children(value, "after_calls"))
            else:
                quiet = (f" / {value['quiet_mb'] + value['quiet_children_mb']:.1f}" if "quiet_mb" in value
                         else "")
                cells[kind] = (f"{value['fresh_mb'] + value['fresh_children_mb']:.1f} / "
                               f"{value['after_calls_mb'] + value['after_calls_children_mb']:.1f}{quiet} MB")
        gateway = figures("idle", "gateway")
        # Idle after the calls: once the gateway has gone quiet (older results have no such reading).
        after_calls = gateway.get("quiet_mb", gateway["after_calls_mb"]) if gateway else None
        checks = [check("after start-up", gateway["fresh_mb"], IDLE_TARGET_MB, "lower", "MB"),
                  check("after calls", after_calls, IDLE_TARGET_MB, "lower", "MB")] if gateway else []
        quiet_label = f" / {size['quiet_s']:g} s after (gone quiet: `--idle-trim`)" if "quiet_s" in size else ""
        add("idle", f"idle RSS, after start-up / {size['settle_s']:g} s after {size['idle_calls']} `echo` calls"
            + quiet_label, cells, "", f"≤ {IDLE_TARGET_MB} MB", checks)

    def rate_row(key, label, field, basis_key, basis, target_ratio, target_text, extra=()):
        gateway = figures(key, "gateway")
        if basis == "peer2":
            peer = figures(basis_key, "peer2")
            peer_value = peer[field] if peer else None
        else:
            peer_value = best_peer(basis_key, lambda f: f[field])
        ratio = gateway[field] / peer_value if gateway and peer_value else None
        checks = []
        if not peer_kinds and target_ratio:
            target_text += " (no peer run: not judged)"
        elif gateway and target_ratio:
            name = "× the 2-worker peer" if basis == "peer2" else "× the peer"
            checks.append(check(name, ratio, target_ratio, "higher", "×"))
        checks += [c for c in extra if gateway]
        cells = per_kind(basis_key, lambda f: number(f[field]))
        cells["gateway"] = number(gateway[field]) + steal_suffix(gateway) if gateway else "—"
        add(key, label, cells, f"{ratio:.1f}×" if ratio else "", target_text, checks, [key, basis_key])

    n = size["burst_n"]
    if "burst1" in scenarios:
        gateway = figures("burst1", "gateway")
        rate_row("burst1", f"one stream, `burst` n={n:,}: events/s", "events_per_s", "burst1", "best", BURST_RATIO,
                 f"≥ {BURST_RATIO}× and ≥ {BURST1_EVENTS:,}",
                 [check("≥ 1,000,000", gateway["events_per_s"] if gateway else None, BURST1_EVENTS, "higher",
                        "events/s")])
    if "burst8" in scenarios:
        rate_row("burst8", f"8 concurrent `burst` streams, n={n:,}: events/s", "events_per_s", "burst8", "best",
                 BURST_RATIO, f"≥ {BURST_RATIO}×")
    if "echo_rate" in scenarios:
        rate_row("echo_rate", "`echo` (`runs_on_event_loop`) at 64 keep-alive connections: requests/s",
                 "requests_per_s", "echo_rate", "peer2", ECHO_RATIO, f"≥ {ECHO_RATIO}× the 2-worker peer")

    def ttfe_cell(f):
        return f"{f['ttfe_ms']['p50']:.3f} / {f['ttfe_ms']['p99']:.3f} ms"

    if "echo_ttfe" in scenarios:
        gateway = figures("echo_ttfe", "gateway")
        peer = best_peer("echo_ttfe", lambda f: f["ttfe_ms"]["p50"], lowest=True)
        checks = [check("p50", gateway["ttfe_ms"]["p50"], ECHO_TTFE_P50, "lower", "ms"),
                  check("p99", gateway["ttfe_ms"]["p99"], ECHO_TTFE_P99, "lower", "ms")] if gateway else []
        ratio = f"{peer / gateway['ttfe_ms']['p50']:.1f}× faster" if gateway and peer else ""
        cells = per_kind("echo_ttfe", ttfe_cell)
        if gateway:
            cells["gateway"] += steal_suffix(gateway)
        add("echo_ttfe", "`echo` (`runs_on_event_loop`) time to first event, p50 / p99 (one keep-alive connection)",
            cells, ratio, f"≤ {ECHO_TTFE_P50} / ≤ {ECHO_TTFE_P99:g} ms", checks)

    # The same echo handed to a thread and back: reported beside the peer, no target.
    if "echo_threads_rate" in scenarios:
        rate_row("echo_threads_rate", "`echo_threads` (the same, on function threads) at 64 keep-alive connections: "
                 "requests/s", "requests_per_s", "echo_rate", "peer2", None, "report")
    if "echo_threads_ttfe" in scenarios:
        gateway = figures("echo_threads_ttfe", "gateway")
        peer = best_peer("echo_ttfe", lambda f: f["ttfe_ms"]["p50"], lowest=True)
        cells = per_kind("echo_ttfe", ttfe_cell)
        cells["gateway"] = ttfe_cell(gateway) + steal_suffix(gateway) if gateway else "—"
        ratio = f"{peer / gateway['ttfe_ms']['p50']:.1f}× faster" if gateway and peer else ""
        add("echo_threads_ttfe", "`echo_threads` time to first event, p50 / p99 (one keep-alive connection)", cells,
            ratio, "report", [], ["echo_threads_ttfe", "echo_ttfe"])

    def beside(key, earlier):
        """The peer's figures measured beside the Python scenario `key`; runs saved before the peer ran
        there have only its `earlier` ones."""
        return key if any(figures(key, kind) for kind in peer_kinds) else earlier

    if "py_echo_rate" in scenarios:
        rate_row("py_echo_rate", "Python `echo_py` at 64 keep-alive connections: requests/s (peer: its `echo`)",
                 "requests_per_s", beside("py_echo_rate", "echo_rate"), "peer2", PYTHON_RATE_RATIO,
                 f"≥ {PYTHON_RATE_RATIO}× the 2-worker peer")
    if "py_echo_ttfe" in scenarios:
        basis = beside("py_echo_ttfe", "echo_ttfe")
        gateway = figures("py_echo_ttfe", "gateway")
        peer = best_peer(basis, lambda f: f["ttfe_ms"]["p50"], lowest=True)
        factor = gateway["ttfe_ms"]["p50"] / peer if gateway and peer else None
        checks = [check("p50 vs the peer's", factor, PYTHON_TTFE_FACTOR, "lower", "× the peer's")
                  ] if gateway and peer_kinds else []
        cells = per_kind(basis, ttfe_cell)
        cells["gateway"] = ttfe_cell(gateway) if gateway else "—"
        add("py_echo_ttfe", "Python `echo_py` time to first event, p50 / p99 (peer: its in-process `echo`)", cells,
            f"{factor:.2f}× the peer's" if factor else "", f"p50 ≤ {PYTHON_TTFE_FACTOR}× the peer's", checks,
            ["py_echo_ttfe", basis])
    if "py_burst" in scenarios:
        rate_row("py_burst", f"Python `burst_py`, one stream, n={n:,}: events/s (peer: its `burst`)", "events_per_s",
                 beside("py_burst", "burst1"), "best", None, "report")
    if "py_slow_import" in scenarios:
        gateway = figures("py_slow_import", "gateway")
        checks = []
        cells = {kind: "" for kind in peer_kinds}
        cells["gateway"] = "—"
        if gateway:
            later = gateway["later_ttfe_ms"]
            checks = [check("later p50", later["p50"], SLOW_IMPORT_TTFE, "lower", "ms"),
                      check("later p99", later["p99"], SLOW_IMPORT_TTFE, "lower", "ms")]
            cells["gateway"] = (f"first {gateway['first_ttfe_ms']:.1f} ms; later {later['p50']:.2f} / "
                                f"{later['p99']:.2f} ms ({gateway['later_calls']} calls)")
        add("py_slow_import", "Python prefab whose import takes 300 ms: time to first event, first call; later "
            "calls p50 / p99", cells, "", f"later ≤ {SLOW_IMPORT_TTFE:g} ms", checks)

    for key in [k for k in scenarios if k.rstrip("0123456789") in results["ticker_functions"]]:
        function, nominal = key.rstrip("0123456789"), int(key[len(key.rstrip("0123456789")):])
        count = dict(zip(NOMINAL_TICKERS, size["tickers"]))[nominal]
        targets = TICKER_TARGETS[nominal]
        gateway = figures(key, "gateway")
        cells = {}
        for kind in ["gateway", *peer_kinds]:
            value = figures(key, kind)
            if not value:
                cells[kind] = "—"
            elif value["requests_ok"] == 0:
                cells[kind] = f"0 of {count:,} in {size['ticker_timeout']} s"
            else:
                rss = value["peak_rss_mb"] if kind == "gateway" else value["peak_rss_with_children_mb"]
                # The lag of the events that came once every stream had its first event (the load
                # client's `lag_after_all_started_ms`; runs kept before it had none): how much of
                # the lag is the connection storm.
                settled = value.get("lag_after_all_started_ms", {}).get("p99")
                after = "" if settled is None else f" ({settled:.1f} ms once all had started)"
                cells[kind] = (f"{value['requests_ok']:,} of {count:,}, lag p99 {value['lag_ms']['p99']:.1f} ms{after}, "
                               f"{rss:.0f} MB, first event p99 {duration(value['ttfe_ms']['p99'])}"
                               + (steal_suffix(value, ",") if kind == "gateway" else ""))
        checks = []
        if gateway:
            checks.append(check("all", gateway["requests_ok"] / count, 1.0, "higher", "of the streams", chart=False))
            checks.append(check("lag", gateway["lag_ms"]["p99"], targets["lag_ms"], "lower", "ms"))
            if "rss_mb" in targets:
                checks.append(check("RSS", gateway["peak_rss_mb"], targets["rss_mb"], "lower", "MB"))
        peers_done = [figures(key, kind)["requests_ok"] for kind in peer_kinds if figures(key, kind)]
        all_done = gateway and gateway["requests_ok"] == count
        ratio = "all vs none" if all_done and peers_done and not any(peers_done) else ""
        target = f"all, lag p99 ≤ {targets['lag_ms']} ms"
        if "rss_mb" in targets:
            target += f", peak ≤ {targets['rss_mb']} MB"
        first = function == results["ticker_functions"][0]
        where = "" if first else ", a second gateway after the same bursts and echo"
        add(key, f"{count:,} concurrent `{function}` ({size['ticks']} events, {size['interval_ms']} ms apart{where}): "
            "done, lag, peak RSS", cells, ratio, target, checks)

    cap, queued = results.get("cap", {}).get("cap", {}), results.get("cap", {}).get("cap_queued", {})
    if cap:
        calls = size["cap_calls"]
        error = cap.get("error") or queued.get("error")
        checks, text = [], "—"
        if not error:
            refused = sum(count for reason, count in cap["errors"].items() if reason in ("status_429", "status_503"))
            other = cap["requests_failed"] - refused
            clean = cap["requests_ok"] + refused == calls and refused > 0 and cap["alive_after"]
            checks = [check("clean 429s", 1.0 if clean else 0.0, 1.0, "higher", chart=False),
                      check("queue: all done", queued["requests_ok"] / calls, 1.0, "higher", chart=False)]
            text = (f"{cap['requests_ok']} done, {refused} clean 429s" + (f", {other} other failures" if other else "")
                    + f", {'still serving' if cap['alive_after'] else 'NOT serving'}; with the default queue "
                    f"{queued['requests_ok']} of {calls} done")
        met, verdict_text = verdict(checks, error)
        label = (f"past the cap, gateways of their own: `--max-concurrent 100 --max-queued 0`, {calls} tickers; "
                 "then with the default queue")
        rows.append({"key": "cap", "short": short_name("cap", size), "label": label, "cells": {"gateway": text},
                     "ratio": "", "target": "clean 429s; queued: all done", "checks": checks, "met": met,
                     "verdict": verdict_text})

    timeline = results["timeline"].get("gateway", [])
    if timeline and not results["fresh"]:
        peak = max(timeline[:-1], key=lambda t: t["rss_mb"])
        text = (f"{timeline[0]['rss_mb']:.1f} MB after start-up, {peak['rss_mb']:.0f} MB after {peak['after']}, "
                f"{timeline[-1]['rss_mb']:.0f} MB at {timeline[-1]['after']}")
        rows.append({"key": "rss_over_run", "short": short_name("rss_over_run", size),
                     "label": "the gateway's RSS over the run (after each scenario: the chart)",
                     "cells": {"gateway": text}, "ratio": "", "target": "report", "checks": [], "met": None,
                     "verdict": "report"})
    # The Python prefabs' processes after the Python scenarios: what serving them at that speed costs.
    for row in rows:
        gateway = figures(row["key"], "gateway")
        if row["key"] == "py_echo_rate" and gateway and gateway.get("children_after"):
            row["cells"]["gateway"] += (f"; {gateway['children_after']} child processes after it, "
                                        f"{gateway['children_after_mb']:.0f} MB")
    return rows


# ---------------------------------------------------------------------------------------------
# Output: the table on stdout, the markdown for docs/performance.md, the chart.

def columns(peers):
    return [("gateway", "gateway")] + [(f"peer{w}", f"peer, {w} worker{'s' if w > 1 else ''}") for w in peers]


def steal_suffix(figures, separator=";", digits=0):
    """The host's steal during a scenario (or the run), after the gateway's figure: when it is high
    the figure says more about the host than about the gateway. Older results have no such reading."""
    return f"{separator} host steal {figures['steal_percent']:.{digits}f}%" if "steal_percent" in figures else ""


def markdown(results, rows, peers):
    meta = results["meta"]
    lines = [f"<!-- bench/run.py {meta['date']}, commit {meta['commit']}, {meta['mode']}, {meta['duration_s']:.0f} s, "
             f"load average {meta['load_average_start']:.1f} at the start, {meta['load_average_max']:.1f} at most"
             f"{steal_suffix(meta, ',', 1)} -->",
             "| scenario | " + " | ".join(title for _, title in columns(peers)) + " | ratio | target | met |",
             "| --- " * (len(columns(peers)) + 4) + "|"]
    for row in rows:
        cells = [row["cells"].get(kind, "") for kind, _ in columns(peers)]
        lines.append("| " + " | ".join([row["label"], *cells, row["ratio"], row["target"], row["verdict"]]) + " |")
    return "\n".join(lines) + "\n"


def print_table(results, rows, peers):
    meta, ceiling = results["meta"], results["ceiling"]
    print(f"\nload client ceiling (against its own trivial server): {ceiling['events_per_s']:,.0f} events/s on one "
          f"stream, {ceiling['requests_per_s']:,.0f} requests/s at 64 connections")
    print(f"{meta['mode']}; load average {meta['load_average_start']:.1f} at the start, "
          f"{meta['load_average_max']:.1f} at most, {meta['load_average_end']:.1f} at the end{steal_suffix(meta, ',', 1)}; "
          f"{meta['duration_s']:.0f} s\n")
    for row in rows:
        print(f"{row['label']}")
        for kind, title in columns(peers):
            if row["cells"].get(kind):
                print(f"    {title:18} {row['cells'][kind]}")
        details = "; ".join(filter(None, [f"ratio {row['ratio']}" if row["ratio"] else "",
                                          f"target {row['target']}", f"met: {row['verdict']}"]))
        print(f"    {details}")
    judged = [row for row in rows if row["met"] is not None]
    print(f"\ntargets met: {sum(1 for row in judged if row['met'])} of {len(judged)} rows")
    for note in results["notes"]:
        print(f"note: {note}")


def draw_chart(json_path, png_path):
    subprocess.run([str(VENV / "bin" / "python"), str(BENCH / "chart.py"), str(json_path), str(png_path)], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every scenario tiny, on the debug build; fails when "
                        "a scenario fails (CI)")
    parser.add_argument("--fresh", action="store_true", help="a new gateway and peer for each scenario")
    parser.add_argument("--skip-build", action="store_true", help="use the gateway and load client as built")
    parser.add_argument("--gateway", type=pathlib.Path, help="the gateway executable to measure")
    parser.add_argument("--no-peer", action="store_true", help="run the gateway only")
    parser.add_argument("--only", help="run only these scenarios, comma-separated keys in the order of the full run "
                        "(e.g. burst1,burst8,echo_rate,echo_ttfe,ticker5000,ticker10000: the tickers then measured "
                        "after the same warm-up as in a full run); `cap` for the cap scenarios")
    parser.add_argument("--json", type=pathlib.Path, help="write every figure to this file")
    parser.add_argument("--markdown", type=pathlib.Path, help="write docs/performance.md's table to this file")
    parser.add_argument("--chart", type=pathlib.Path, help="the PNG chart (default: bench/results.png; with "
                        "--smoke a temporary file)")
    parser.add_argument("--from-json", type=pathlib.Path, help="run nothing: judge and show the figures of a run "
                        "kept with --json (the table, --markdown, the chart)")
    options = parser.parse_args()
    if options.from_json:
        install_venv([])
        results = json.loads(options.from_json.read_text())
        failures = [failure for failure in results["failures"] if not failure.startswith("the chart")]
        peers = results["peers"]
    else:
        results, failures, peers = run_benchmark(options)
    rows = judge(results, peers)
    results["rows"] = rows
    results["failures"] = failures

    json_path = options.json
    temporary = None
    if json_path is None:
        temporary = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".json", delete=False)
        json_path = pathlib.Path(temporary.name)
    json_path.write_text(json.dumps(results, indent=2))
    chart = options.chart or (pathlib.Path(tempfile.gettempdir()) / "bench-smoke.png" if options.smoke
                              else BENCH / "results.png")
    try:
        draw_chart(json_path, chart)
        log(f"chart: {chart}")
    except subprocess.CalledProcessError as error:
        failures.append(f"the chart: {error}")
    if temporary:
        json_path.unlink()
    if options.markdown:
        options.markdown.write_text(markdown(results, rows, peers))
    print_table(results, rows, peers)

    if options.smoke:
        failures += smoke_failures(results)
    for failure in failures:
        print(f"FAIL: {failure}")
    if options.smoke:
        print(f"smoke: {len(failures)} failures")
    sys.exit(1 if failures else 0)


def run_benchmark(options):
    """Builds, installs, runs every scenario; (results, failures, peers)."""
    started = time.time()
    size = SMOKE if options.smoke else FULL
    gateway_binary = options.gateway or ROOT / ".build" / ("debug" if options.smoke else "release") / "prefab-gateway"
    peers = [] if options.no_peer else [1, 2]

    if not options.skip_build:
        build(options.smoke)
    install_venv(peers)
    data_folders = []

    def start_gateway(extra=()):
        port = free_port()
        data = tempfile.mkdtemp(prefix="bench-data-")
        data_folders.append(data)
        return Server("gateway", [str(gateway_binary), "serve", "--port", str(port), "--prefabs",
                                  str(BENCH / "prefabs"), "--data", data, "--log-level", "warning",
                                  "--max-concurrent", "10000", *extra], port)

    def start_peer(workers):
        port = free_port()
        return Server(f"peer{workers}", [str(VENV / "bin" / "uvicorn"), "app:app", "--port", str(port), "--workers",
                                         str(workers), "--log-level", "warning", "--no-access-log"],
                      port, cwd=BENCH / "peers" / "fastapi")

    starters = {"gateway": start_gateway, **{f"peer{w}": (lambda w=w: start_peer(w)) for w in peers}}
    fleet = Fleet(starters, options.fresh, size["settle_s"])
    failures, scenarios = [], {}
    load_start = load_average()
    steal_start = steal_seconds()
    results = {"size": size, "scenarios": scenarios, "fresh": options.fresh, "notes": fleet.notes}
    try:
        log("== the load client's ceiling")
        results["ceiling"] = client_ceiling(size)
        # Which ticker functions the gateway has (`ticker`, and `ticker_sync` where it exists).
        probe = start_gateway()
        try:
            listed = probe.functions()
        finally:
            probe.stop()
        ticker_functions = [f for f in ("ticker", "ticker_sync") if f in listed]
        if "ticker_sync" not in listed:
            fleet.notes.append("no `ticker_sync` in the gateway's /manifest: its rows are skipped")
        results["ticker_functions"] = ticker_functions
        steps = plan(size, [f"peer{w}" for w in peers], ticker_functions)
        if options.only:
            # A second flavour's warm-up (`ticker_sync_warm_up_echo_rate`) follows its scenario (`echo_rate`).
            only = set(options.only.split(","))
            steps = [step for step in steps if step.key in only or step.key.split("_warm_up_")[-1] in only
                     and any(key.startswith(step.key.split("_warm_up_")[0]) for key in only)]
        for function in ticker_functions[1:]:
            starters[f"gateway_{function}"] = start_gateway
            fleet.timeline[f"gateway_{function}"] = []
        last_step = {kind: max((i for i, step in enumerate(steps) for k in step.kinds if step.server(k) == kind),
                                default=-1)
                     for kind in starters}
        for index, step in enumerate(steps):
            row = scenarios.setdefault(step.key, {})
            for kind in step.kinds:
                function = step.function if kind == "gateway" else step.peer_function
                if kind == "gateway" and function not in listed:
                    message = f"{step.key}: the gateway's /manifest does not list `{function}`; skipped"
                    fleet.notes.append(message)
                    if not step.optional:
                        failures.append(message)
                    continue
                log(f"== {step.key} on {step.server(kind)}{' (a fresh one)' if options.fresh else ''}")
                try:
                    row[kind] = fleet.measure(step.server(kind), step.key,
                                              lambda server: step.run(server, function))
                    log(f"   {row[kind]['wall_s']:.1f} s")
                except Exception as error:  # noqa: BLE001 - a failed scenario is reported, the run goes on
                    failures.append(f"{step.key} on {kind}: {error}")
                    row[kind] = {"error": str(error)}
            if not row:
                del scenarios[step.key]
            for kind, last in last_step.items():
                if last == index:
                    gateway = kind.startswith("gateway")
                    fleet.stop(kind, idle_s=0 if options.fresh else size["end_idle_s"] if gateway else 1.0)
        fleet.stop_all()
        if not options.only or "cap" in options.only.split(","):
            results["cap"] = cap_scenarios(size, start_gateway, ticker_functions[0] if ticker_functions else "ticker",
                                           failures)
    finally:
        fleet.stop_all()
        for folder in data_folders:
            shutil.rmtree(folder, ignore_errors=True)
    results["timeline"] = fleet.timeline
    results["peers"] = peers
    results["meta"] = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "commit": git_commit(), "gateway": str(gateway_binary), "cpus": os.cpu_count(),
                       "mode": ("smoke, " if options.smoke else "") + ("a fresh server per scenario" if options.fresh
                                                                        else "one long-lived gateway and peer each"),
                       "load_average_start": load_start, "load_average_end": load_average(),
                       "load_average_max": max([load_start, load_average()] + [
                           figures.get("load_average_max", 0) for row in scenarios.values()
                           for figures in row.values()]),
                       "duration_s": time.time() - started,
                       "steal_percent": steal_percent(steal_start, time.time() - started)}
    return results, failures, peers


def smoke_failures(results):
    """Tiny scenarios are not judged by their targets, only by running clean on the gateway."""
    failures = []
    for key, row in results["scenarios"].items():
        gateway = row.get("gateway")
        if gateway and "error" not in gateway and (gateway["requests_failed"] or not gateway["alive_after"]):
            failures.append(f"{key}: the gateway failed {gateway['requests_failed']} requests: {gateway['errors']}")
    for row in results["rows"]:
        if row["key"] == "cap" and row["met"] is not True:
            failures.append(f"cap: {row['cells']['gateway']} (expected clean 429s, and all done with the queue)")
    return failures


if __name__ == "__main__":
    main()

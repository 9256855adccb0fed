#!/usr/bin/env python3
"""Benchmarks the Prefab Gateway against the FastAPI peer in one run, on loopback.

Builds the gateway (release) and the load client, installs the peer into bench/.venv, then runs
every scenario against the gateway and against the peer with 1 and 2 uvicorn workers, sampling
each server's peak RSS and CPU, and prints a table with the figures, the ratio and the target.
Every server it starts is stopped, also on failure. A benchmark, not a test: `--smoke` runs each
scenario tiny (for CI, to keep the script from rotting) and checks only that it completes; it
uses the debug build, which CI has already made, since its figures are not judged.
"""
import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOADGEN = BENCH / "loadgen" / "sse_load"
GATEWAY = ROOT / ".build" / "release" / "prefab-gateway"
VENV = BENCH / ".venv"


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """pid and every process below it (uvicorn workers are children of its master)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_and_cpu(pids):
    """(resident bytes, CPU seconds) summed over pids."""
    rss, ticks = 0, 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as file:
                for line in file:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return rss, ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process in its own process group, stopped with everything it started."""

    def __init__(self, name, command, port, cwd=ROOT):
        self.name, self.port = name, port
        self.process = subprocess.Popen(command, cwd=cwd, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.process.stderr.read().decode()[-2000:]}")
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not start")

    def alive(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5).read()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()


class Sampler:
    """Samples a server's process tree every 100 ms: peak RSS, and CPU used while it runs."""

    def __init__(self, server):
        self.pid = server.process.pid
        self.peak = 0
        self.running = True
        _, self.cpu_start = rss_and_cpu(descendants(self.pid))
        self.started = time.time()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while self.running:
            rss, self.cpu_end = rss_and_cpu(descendants(self.pid))
            self.peak = max(self.peak, rss)
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.thread.join()
        rss, self.cpu_end = rss_and_cpu(descendants(self.pid))
        self.peak = max(self.peak, rss)
        wall = time.time() - self.started
        return {"peak_rss_mb": self.peak / 2**20, "cpu_percent": 100 * (self.cpu_end - self.cpu_start) / wall}


def load(port, path, body, connections, requests, expect=None, keepalive=False, interval=None, timeout=120,
         ramp=None):
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


def start_gateway(extra=()):
    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-data-")
    return Server("gateway", [str(GATEWAY), "serve", "--port", str(port), "--prefabs", str(BENCH / "prefabs"),
                              "--data", data, "--log-level", "warning", "--max-concurrent", "10000", *extra], port)


def start_peer(workers):
    port = free_port()
    return Server(f"peer-{workers}w", [str(VENV / "bin" / "uvicorn"), "app:app", "--port", str(port),
                                       "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
                  port, cwd=BENCH / "peers" / "fastapi")


def measure(start, scenario):
    """Starts a fresh server, runs one scenario under the sampler, stops the server."""
    server = start()
    try:
        sampler = Sampler(server)
        result = scenario(server)
        result.update(sampler.stop())
        result["alive_after"] = server.alive()
        return result
    finally:
        server.stop()


def scenarios(smoke):
    """(key, label, function suffix, run(server, suffix) -> result) for every scenario."""
    n_burst = 100 if smoke else 10_000
    echo_requests = 200 if smoke else 20_000
    ttfe_requests = 100 if smoke else 2_000
    tickers = {1000: 20, 5000: 50, 10000: 100} if smoke else {1000: 1000, 5000: 5000, 10000: 10000}
    ticks, interval = (3, 100) if smoke else (20, 500)

    def burst(connections, requests):
        return lambda server, name: load(server.port, f"/invoke/{name}", {"n": n_burst}, connections, requests,
                                         expect=n_burst + 2)

    def ticker(count):
        return lambda server, name: load(server.port, f"/invoke/{name}", {"n": ticks, "interval_ms": interval},
                                         count, count, expect=ticks + 1, interval=interval, timeout=55, ramp=20)

    result = [
        ("burst1", f"one stream, burst n={n_burst}: events/s", "burst", burst(1, 5)),
        ("burst8", f"8 concurrent burst n={n_burst}: events/s", "burst", burst(8, 40)),
        ("echo_rate", "echo at 64 connections (keep-alive): requests/s", "echo",
         lambda server, name: load(server.port, f"/invoke/{name}", {"text": "hi"}, 64, echo_requests, expect=3,
                                   keepalive=True)),
        ("echo_ttfe", "echo time to first event (keep-alive), ms", "echo",
         lambda server, name: load(server.port, f"/invoke/{name}", {"text": "hi"}, 1, ttfe_requests, expect=3,
                                   keepalive=True)),
    ]
    for count, requests in tickers.items():
        result.append((f"ticker{count}", f"{requests} concurrent ticker ({ticks} events, {interval} ms apart)",
                       "ticker", ticker(requests)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every scenario tiny; checks it completes")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="run the gateway only")
    parser.add_argument("--json", type=pathlib.Path, help="also write every figure to this file")
    options = parser.parse_args()

    if options.smoke:
        global GATEWAY
        GATEWAY = ROOT / ".build" / "debug" / "prefab-gateway"
    if not options.skip_build:
        log(f"building the gateway ({'debug' if options.smoke else 'release'}) and the load client")
        build = [] if options.smoke else ["-c", "release", "--static-swift-stdlib"]
        subprocess.run(["swift", "build", *build, "--product", "prefab-gateway"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["make", "-s", "-C", str(BENCH / "loadgen")], check=True)
    if not options.no_peer and not (VENV / "bin" / "uvicorn").exists():
        log("installing the peer (FastAPI + uvicorn) into bench/.venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "-r",
                        str(BENCH / "peers" / "fastapi" / "requirements.txt")], check=True)

    results = {"ceiling": client_ceiling(options.smoke)}
    peers = [] if options.no_peer else [1, 2]
    for key, label, function, run in scenarios(options.smoke):
        log(f"== {label}")
        row = {"label": label}
        count = int(key[6:]) if key.startswith("ticker") else 0
        row["gateway"] = measure(start_gateway, lambda server: run(server, function))
        for workers in peers:
            if count >= 10000:
                continue  # the peer completes none of 1,000 already
            row[f"peer{workers}"] = measure(lambda: start_peer(workers), lambda server: run(server, function))
        results[key] = row

    log("== past the concurrency cap")
    results["cap"] = measure(
        lambda: start_gateway(["--max-concurrent", "100", "--max-queued", "0"]),
        lambda server: load(server.port, "/invoke/ticker", {"n": 3, "interval_ms": 300}, 150, 150, expect=4,
                            timeout=30))
    log("== past the concurrency cap, with the queue")
    results["cap_queued"] = measure(
        lambda: start_gateway(["--max-concurrent", "100"]),
        lambda server: load(server.port, "/invoke/ticker", {"n": 3, "interval_ms": 300}, 150, 150, expect=4,
                            timeout=30))
    log("== idle")
    results["idle"] = {"gateway": idle_rss(start_gateway, "/invoke/echo", {"text": "hi"})}
    for workers in peers:
        results["idle"][f"peer{workers}"] = idle_rss(lambda: start_peer(workers), "/invoke/echo", {"text": "hi"})
    log("== Python prefabs through the gateway")
    results["python"] = python_rows(options.smoke)

    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    report(results, peers, options.smoke)
    if options.smoke:
        failures = smoke_failures(results)
        for failure in failures:
            print(f"FAIL: {failure}")
        print(f"{count_scenarios(results) - len(failures)} passed, {len(failures)} failed")
        sys.exit(1 if failures else 0)


def client_ceiling(smoke):
    """The load client against its own trivial server: what it can measure at most."""
    server = subprocess.Popen([str(LOADGEN), "--serve", "--port", "0", "--events", str(100 if smoke else 10_000)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(server.stdout.readline().split()[1])
        stream = load(port, "/", {}, 1, 5 if smoke else 50, keepalive=True)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        server = subprocess.Popen([str(LOADGEN), "--serve", "--port", "0", "--events", "1"],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        port = int(server.stdout.readline().split()[1])
        rate = load(port, "/", {}, 64, 200 if smoke else 50_000, keepalive=True)
        return {"events_per_s": stream["events_per_s"], "requests_per_s": rate["requests_per_s"]}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()


def idle_rss(start, path, body):
    """RSS after start-up, and again idle after 200 calls (the code that serves them is then resident)."""
    server = start()
    try:
        time.sleep(1.0)
        fresh = rss_and_cpu(descendants(server.process.pid))[0] / 2**20
        load(server.port, path, body, 4, 200, keepalive=True)
        time.sleep(1.0)
        served = rss_and_cpu(descendants(server.process.pid))[0] / 2**20
        return {"fresh": fresh, "after_calls": served}
    finally:
        server.stop()


def python_rows(smoke):
    calls = 10 if smoke else 50
    rows = {}
    server = start_gateway()
    try:
        rows["python_ttfe"] = load(server.port, "/invoke/echo_py", {"text": "hi"}, 1, calls, expect=3)["ttfe_ms"]
        rows["swift_ttfe"] = load(server.port, "/invoke/echo", {"text": "hi"}, 1, calls, expect=3)["ttfe_ms"]
        n = 1000 if smoke else 100_000
        rows["python_events_per_s"] = load(server.port, "/invoke/burst_py", {"n": n}, 1, 1, expect=n + 2)["events_per_s"]
    finally:
        server.stop()
    server = start_gateway(["--warm-processes", "2"])
    try:
        time.sleep(1.0)  # the warm children start
        ttfe = []
        for _ in range(calls):  # one at a time, with time for the next child to start
            ttfe.append(load(server.port, "/invoke/echo_py", {"text": "hi"}, 1, 1, expect=3)["ttfe_ms"]["p50"])
            time.sleep(0.1)
        ttfe.sort()
        rows["python_warm_ttfe"] = {"p50": ttfe[len(ttfe) // 2], "p99": ttfe[min(len(ttfe) - 1, int(len(ttfe) * .99))]}
    finally:
        server.stop()
    return rows


def figure(result, key):
    """The figure a scenario is judged by."""
    if key in ("burst1", "burst8"):
        return result["events_per_s"]
    if key == "echo_rate":
        return result["requests_per_s"]
    if key == "echo_ttfe":
        return result["ttfe_ms"]["p50"]
    return result["requests_ok"]


def report(results, peers, smoke):
    ceiling = results["ceiling"]
    print(f"\nload client ceiling (against its own trivial server): {ceiling['events_per_s']:,.0f} events/s on one "
          f"stream, {ceiling['requests_per_s']:,.0f} requests/s at 64 connections\n")
    header = f"{'scenario':58} {'gateway':>16} " + " ".join(f"{'peer ' + str(w) + 'w':>16}" for w in peers)
    print(header + f" {'ratio':>10}")
    print("-" * len(header + "           "))
    for key in ("burst1", "burst8", "echo_rate", "echo_ttfe", "ticker1000", "ticker5000", "ticker10000"):
        row = results[key]
        gateway = row["gateway"]
        cells = [format_figure(key, gateway)]
        peer_figures = []
        for workers in peers:
            peer = row.get(f"peer{workers}")
            cells.append(format_figure(key, peer) if peer else "—")
            if peer:
                peer_figures.append(figure(peer, key))
        ratio = ""
        if peer_figures:
            best = max(peer_figures) if key != "echo_ttfe" else min(peer_figures)
            mine = figure(gateway, key)
            if key == "echo_ttfe":
                ratio = f"{best / mine:.1f}x" if mine else ""
            elif best:
                ratio = f"{mine / best:.1f}x"
            else:
                ratio = "∞"
        print(f"{row['label']:58} " + " ".join(f"{cell:>16}" for cell in cells) + f" {ratio:>10}")
        if key == "echo_ttfe":
            print(f"{'   p99, ms':58} " + " ".join(
                f"{row[k]['ttfe_ms']['p99']:>16.3f}" if k in row else f"{'—':>16}"
                for k in ["gateway"] + [f"peer{w}" for w in peers]))
        if key.startswith("ticker"):
            print(f"{'   inter-event lag p99, ms':58} " + " ".join(
                f"{row[k]['lag_ms']['p99']:>16.1f}" if k in row else f"{'—':>16}"
                for k in ["gateway"] + [f"peer{w}" for w in peers]))
        print(f"{'   peak RSS MB / CPU %':58} " + " ".join(
            f"{row[k]['peak_rss_mb']:>9.0f} / {row[k]['cpu_percent']:>4.0f}" if k in row else f"{'—':>16}"
            for k in ["gateway"] + [f"peer{w}" for w in peers]))
    cap = results["cap"]
    print(f"\npast the cap (--max-concurrent 100 --max-queued 0, 150 tickers): {cap['requests_ok']} completed, "
          f"{cap['errors']} refused; gateway alive afterwards: {cap['alive_after']}")
    queued = results["cap_queued"]
    print(f"past the cap with the default queue (--max-concurrent 100, 150 tickers): {queued['requests_ok']} "
          f"completed, {queued['errors']} refused")
    idle = results["idle"]
    print("idle RSS, MB, after start-up / idle again after 200 echo calls: "
          + ", ".join(f"{name} {value['fresh']:.1f} / {value['after_calls']:.1f}" for name, value in idle.items()))
    python = results["python"]
    print(f"Python prefab through the gateway: time to first event p50 {python['python_ttfe']['p50']:.1f} ms "
          f"(p99 {python['python_ttfe']['p99']:.1f}) cold, {python['python_warm_ttfe']['p50']:.1f} ms "
          f"(p99 {python['python_warm_ttfe']['p99']:.1f}) with --warm-processes 2; Swift "
          f"{python['swift_ttfe']['p50']:.2f} ms; {python['python_events_per_s']:,.0f} events/s relayed from a "
          f"Python burst")


def format_figure(key, result):
    value = figure(result, key)
    if key.startswith("ticker"):
        return f"{value}/{result['requests_ok'] + result['requests_failed']} done"
    if key == "echo_ttfe":
        return f"{value:.3f}"
    return f"{value:,.0f}"


def count_scenarios(results):
    return sum(1 for key in results if key not in ("ceiling", "idle", "python", "cap_queued")) + 2


def smoke_failures(results):
    failures = []
    for key, row in results.items():
        if key in ("ceiling", "idle", "python", "cap", "cap_queued"):
            continue
        gateway = row["gateway"]
        if gateway["requests_failed"] or not gateway["alive_after"]:
            failures.append(f"{key}: the gateway failed {gateway['requests_failed']} requests: {gateway['errors']}")
    cap = results["cap"]
    refused = sum(count for reason, count in cap["errors"].items() if reason in ("status_503", "status_429"))
    if cap["requests_ok"] + refused != 150 or not cap["alive_after"] or refused == 0:
        failures.append(f"cap: {cap['requests_ok']} ok and {cap['errors']} (expected clean 429s only)")
    queued = results["cap_queued"]
    if queued["requests_ok"] != 150 or not queued["alive_after"]:
        failures.append(f"cap with the queue: {queued['requests_ok']} ok and {queued['errors']} (expected all 150)")
    return failures


if __name__ == "__main__":
    main()

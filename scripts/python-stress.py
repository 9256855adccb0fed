#!/usr/bin/env python3
"""Python stress: 300 concurrent `POST /invoke/ticker_py` ({"n": 6, "interval_ms": 1000}) on one
gateway serving bench/prefabs. Every stream must end with `done` after its 6 ticks, the gateway must
stay alive, and once the calls are over its descriptors, threads and child processes must come back
to what they were before the run (the Python workers each prefab keeps ready stay; the ones started
for the load end after 30 s idle). (Before the gateway started children itself, it crashed with
SIGSEGV inside Foundation's `Process.run()` in about 1 run in 3 of this load.)

Usage: python3 scripts/python-stress.py [--runs N] [--fresh] [--calls 300] [--binary PATH] [--no-build]
    --runs N    repeat the load N times in the same gateway (with --fresh: a new gateway per run)
Prints per run: time, failures, peak descriptors/threads/children, RSS before and after. Exits
non-zero on any failed check."""
import argparse
import json
import os
import pathlib
import socket
import threading
import time

import live_gateway
from live_gateway import LiveGateway, Tally

TICKS = 6
INTERVAL_MS = 1000
# Idle function threads end 30 s after their last call; within this many over the start the
# count has come back (the HTTP server's and runtime's own threads vary a little).
THREAD_SLACK = 8
# Descriptors over the start once the calls are over (connections being closed, a timer or two).
FD_SLACK = 10
# A call takes ~5 s of ticks plus the Python start of 300 interpreters on 2 cores (~20 s seen on
# a loaded debug build): a stream with nothing for this long has hung.
STREAM_TIMEOUT = 120

tally = Tally("python-stress")


def one_call(port, results, index):
    """Reads one ticker_py stream over a raw socket: ('ok', None) or (problem, detail)."""
    request = live_gateway.invoke_request("ticker_py", {"n": TICKS, "interval_ms": INTERVAL_MS})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=STREAM_TIMEOUT) as connection:
            connection.sendall(request)
            answer = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b'"type":"done"' in answer or b'"type":"error"' in answer:
                    # The terminal event is the stream's last: read until the chunked end.
                    if answer.endswith(b"0\r\n\r\n"):
                        break
        head, _, body = answer.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            results[index] = ("status", status.decode(errors="replace"))
            return
        kinds = []
        for line in body.split(b"\n"):
            if line.startswith(b"data: "):
                kinds.append(json.loads(line[6:]).get("type"))
        if kinds != ["progress"] * TICKS + ["done"]:
            results[index] = ("events", kinds)
            return
        results[index] = ("ok", None)
    except (OSError, ValueError) as error:
        results[index] = ("exception", repr(error))


def sample(gateway, peaks, stop):
    while not stop.is_set():
        try:
            stats = gateway.stats()
        except OSError:
            return  # the gateway is gone; the run's checks say so
        for key in ("fds", "threads", "children", "workers", "rss_mb"):
            peaks[key] = max(peaks.get(key, 0), stats[key])
        time.sleep(0.2)


def steady_stats(gateway):
    """The gateway's counts once its Python workers (those kept ready, started with the gateway)
    have stopped changing for a second."""
    stats = gateway.stats()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1)
        again = gateway.stats()
        if again["workers"] == stats["workers"]:
            return again
        stats = again
    return stats


def run_load(gateway, calls, label):
    before = steady_stats(gateway)
    spawned_before = spawn_seconds(gateway)
    peaks = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(gateway, peaks, stop), daemon=True)
    sampler.start()
    results = [None] * calls
    threads = [threading.Thread(target=one_call, args=(gateway.port, results, index)) for index in range(calls)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    alive = gateway.alive()
    tally.check(alive, f"{label}: the gateway died ({gateway.process.returncode}):\n{gateway.log_tail(15)}")
    problems = [result for result in results if result is None or result[0] != "ok"]
    tally.check(not problems, f"{label}: {len(problems)} of {calls} calls failed, e.g. {problems[:3]}")
    if not alive:
        return False
    tally.check(gateway.wait_idle(30), f"{label}: functions still run 30 s after every stream ended")
    after = settle(gateway, before)
    spawned = [now - then for now, then in zip(spawn_seconds(gateway), spawned_before)]
    spawn_ms = spawned[1] / spawned[0] * 1000 if spawned[0] else 0
    print(f"{label}: {calls} calls in {seconds:.1f} s, failures {len(problems)}; "
          f"spawn {spawn_ms:.2f} ms per child; peak fds {peaks.get('fds')}, "
          f"threads {peaks.get('threads')}, children {peaks.get('children')}, workers {peaks.get('workers')}, RSS {peaks.get('rss_mb')} MB; "
          f"before {before}; after {after}", flush=True)
    tally.check(after["children"] == 0, f"{label}: {after['children']} child processes remain")
    tally.check(after["workers"] <= before["workers"],
                f"{label}: {after['workers']} Python workers remain, {before['workers']} before")
    tally.check(after["io_fds"] <= before["io_fds"] + FD_SLACK,
                f"{label}: sockets, pipes and files {before['io_fds']} -> {after['io_fds']}")
    tally.check(after["threads"] <= before["threads"] + THREAD_SLACK,
                f"{label}: threads {before['threads']} -> {after['threads']}")
    return True


def spawn_seconds(gateway):
    """(children started, seconds spent starting them) from /metrics."""
    text = gateway.request("GET", "/metrics", timeout=10)[2].decode()
    values = {}
    for line in text.splitlines():
        for name in ("prefab_process_spawn_seconds_sum", "prefab_process_spawn_seconds_count"):
            if line.startswith(name):
                values[name] = float(line.split()[-1])
    return values.get("prefab_process_spawn_seconds_count", 0), values.get("prefab_process_spawn_seconds_sum", 0.0)


def settle(gateway, before):
    """The gateway's counts once idle threads and workers have ended (both after 30 s idle)."""
    deadline = time.monotonic() + 45
    while True:
        after = gateway.stats()
        back = (after["children"] == 0 and after["workers"] <= before["workers"] and after["io_fds"] <= before["io_fds"] + FD_SLACK
                and after["threads"] <= before["threads"] + THREAD_SLACK)
        if back or time.monotonic() > deadline:
            return after
        time.sleep(1)


def main():
    options = argparse.ArgumentParser()
    options.add_argument("--runs", type=int, default=1)
    options.add_argument("--calls", type=int, default=300)
    options.add_argument("--fresh", action="store_true", help="a new gateway for every run")
    options.add_argument("--binary", help="the prefab-gateway executable (default: the debug build)")
    options.add_argument("--no-build", action="store_true")
    arguments = options.parse_args()
    if arguments.binary:
        live_gateway.BINARY = pathlib.Path(arguments.binary).resolve()
    elif not arguments.no_build:
        live_gateway.build()
    # Default flags otherwise, as the load was measured with.
    flags = ["--log-level", "warning"]
    prefabs = live_gateway.ROOT / "bench/prefabs"
    started = time.monotonic()
    if arguments.fresh:
        for run in range(1, arguments.runs + 1):
            with LiveGateway(prefabs, *flags) as gateway:
                run_load(gateway, arguments.calls, f"run {run} (fresh gateway)")
    else:
        with LiveGateway(prefabs, *flags) as gateway:
            for run in range(1, arguments.runs + 1):
                if not run_load(gateway, arguments.calls, f"run {run}"):
                    break
    print(f"{arguments.runs} runs in {time.monotonic() - started:.0f} s", flush=True)
    tally.finish(unit="checks")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the shared store (`--store postgres://…`, docs/deployment.md) costs one replica: burst
events/s (one stream of `n` events, as bench/run.py's burst) and echo requests/s (64 kept-alive
connections), each measured on a gateway without --store and on one with it, alternately, `--rounds`
times; the best round of each is kept. PostgreSQL is started by scripts/cluster.sh (its replica is
not measured: the gateway measured is `--gateway`, the release build by default).

Usage: python3 bench/store_cost.py [--gateway PATH] [--rounds 3] [--json FILE]. Builds the load
client (bench/loadgen); build the gateway first (swift build -c release --product prefab-gateway)."""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import run as bench  # noqa: E402  (bench/run.py: the load client's wrapper)

BURST_N = 10_000


def start(gateway, port, data, store):
    command = [str(gateway), "serve", "--host", "127.0.0.1", "--port", str(port), "--prefabs",
               str(BENCH / "prefabs"), "--data", str(data), "--log-level", "warning"]
    if store:
        command += ["--store", store]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                health = json.load(response)
                if not store or health.get("store", {}).get("ready"):
                    return process
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not start")


def psql(store, sql):
    """One value from the store, through Debian's psql."""
    binary = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    return subprocess.run([str(binary), store, "-Atc", sql], capture_output=True, text=True, check=True).stdout.strip()


def measure(gateway, store):
    port = bench.free_port()
    with tempfile.TemporaryDirectory() as data:
        process = start(gateway, port, data, store)
        try:
            if store:
                psql(store, "DELETE FROM prefab_invocations")
            burst = bench.load(port, "/invoke/burst", {"n": BURST_N}, 1, 50, expect=BURST_N + 2)
            figures = {}
            if store:
                # The writer runs behind the clients: the calls' end rows, written after all their
                # events, give the store's own rate (a call's row ends only once its events are in).
                time.sleep(1)
                ended, seconds = psql(store, "SELECT count(*) || ' ' || extract(epoch FROM max(finished_at) - "
                                      "min(started_at)) FROM prefab_invocations WHERE state = 'done'").split()
                figures["stored_events_per_s"] = int(ended) * (BURST_N + 2) / float(seconds)
            time.sleep(1)  # the store's writer catches up before the next figure
            echo = bench.load(port, "/invoke/echo", {"text": "hi"}, 64, 20_000, expect=3, keepalive=True)
            if store:
                figures["echo_rows"] = int(psql(store, "SELECT count(*) FROM prefab_invocations"))
            return {"burst_events_per_s": burst["events_per_s"], "echo_requests_per_s": echo["requests_per_s"],
                    **figures}
        finally:
            process.terminate()
            process.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", type=pathlib.Path, default=ROOT / ".build/release/prefab-gateway")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    options = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(BENCH / "loadgen")], check=True)
    up = subprocess.run(["bash", "scripts/cluster.sh", "up", "1"], cwd=ROOT, capture_output=True, text=True,
                        env={**__import__("os").environ, "PREFAB_CLUSTER_NO_BUILD": "1"})
    if up.returncode != 0:
        sys.exit(f"cluster.sh up failed: {up.stderr[-2000:]}")
    store = next(line.split()[1] for line in up.stdout.splitlines() if line.startswith("store "))
    results = {"memory": [], "store": []}
    try:
        for _ in range(options.rounds):
            results["memory"].append(measure(options.gateway, None))
            results["store"].append(measure(options.gateway, store))
    finally:
        subprocess.run(["bash", "scripts/cluster.sh", "down"], cwd=ROOT)
    best = {kind: {key: max(r[key] for r in rounds) for key in rounds[0]} for kind, rounds in results.items()}
    print(f"{'':24}{'in memory':>12}{'--store':>12}{'ratio':>8}")
    for key in ("burst_events_per_s", "echo_requests_per_s"):
        memory, store_figure = best["memory"][key], best["store"][key]
        print(f"{key:24}{memory:>12,.0f}{store_figure:>12,.0f}{memory / store_figure:>7.2f}x")
    print(f"with --store, burst events in the store per s (all {BURST_N + 2} of each call written): "
          f"{best['store']['stored_events_per_s']:,.0f}; rows after the echo run: {best['store']['echo_rows']:,}")
    if options.json:
        options.json.write_text(json.dumps({"rounds": results, "best": best}, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Endurance: ONE gateway, rounds of mixed work, and what it holds after each round.

Each round runs, at the same time: large bursts (10,000 events, streamed and as JSON), `echo` at
64 connections, hundreds of concurrent `ticker` streams (an async function that sleeps on its
connection's event loop), Python calls (streams, a failing one), wizards answered over
POST /invocations/<id>/messages and wizards abandoned mid-question, cancels (DELETE), clients
hanging up mid-stream (a burst's and a sleeping ticker's), and calls that write files (fetched
once). After each round the script
waits for the calls to end and records the gateway's RSS, threads, descriptors, child processes
and output folders.

It fails when any call goes wrong; when RSS after the last round exceeds RSS after the first round
by more than the retention bound of docs/interactive-invocations.md (finished invocations: 64 MiB of events) plus SLACK_MB;
or when threads, descriptors, children or output folders do not come back to where they were
before the first round (within the slack below, after idle threads had time to end).

Usage: python3 scripts/endurance.py [--rounds N | --minutes N] [--release] [--no-build]."""
import argparse
import asyncio
import json
import pathlib
import random
import shutil
import subprocess
import tempfile
import threading
import time

import live_gateway
from live_gateway import LiveGateway, Tally

# The bound on what finished invocations keep (docs/interactive-invocations.md) (--max-finished-bytes default): 64 MiB.
RETENTION_BOUND_MB = 64
# RSS may differ this much between two rounds that leave the gateway holding the same things:
# allocator slack (arena high-water marks, fragmentation) and the runtime's caches. Derived from
# measurement: over a 30-minute run (release) RSS after round 2 onward varied within ~15 MB of its
# mean, and a debug build's within ~20 MB; SLACK_MB is twice that spread.
SLACK_MB = 40
OUTPUT_RETENTION = 3  # --output-retention seconds: folders of this run's files go within seconds
# The function thread pool keeps an idle thread for 30 s, and libdispatch its workers for a while.
THREAD_IDLE_WAIT = 32
THREAD_SLACK = 8
FD_SLACK = 8
ECHO_CONNECTIONS = 64
TICKER_STREAMS = 150  # concurrent `ticker` streams per unit of --scale
TICKER_EVENTS = 5
TICKER_INTERVAL_MS = 40

tally = Tally("endurance")
record = tally.record


def prefabs_folder():
    """The examples (wizards, report, Python ones) and the benchmark's burst prefabs, copied into one
    folder: the gateway loads one prefabs directory, and the two folders both have an `echo`."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="endurance-prefabs-"))
    for source in sorted((live_gateway.ROOT / "prefabs").iterdir()):
        if source.is_dir():
            shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    for name in ("bench_burst", "bench_ticker", "py_burst"):
        shutil.copytree(live_gateway.ROOT / "bench/prefabs" / name, folder / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return folder


class SSEConnection:
    """A stream read message by message (for wizards, cancels and hang-ups)."""

    def __init__(self, gateway, name, inputs):
        self.connection = gateway.connection(30)
        self.connection.request("POST", f"/invoke/{name}", body=json.dumps({"inputs": inputs}),
                                headers={"Content-Type": "application/json"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise ValueError(f"{name}: {self.response.status} {self.response.read()[:200]!r}")
        self.parser = live_gateway.SSEParser()
        self.pending = []
        self.received = 0

    def next_event(self):
        """The next event, or None at the end of the stream."""
        while not self.pending:
            chunk = self.response.read1(1 << 16)
            if not chunk:
                return None
            self.received += len(chunk)
            self.pending += self.parser.feed(chunk)
        return json.loads(self.pending.pop(0)["data"])

    def close(self):
        """Hangs up, whether the stream ended or not (the response holds the socket too)."""
        self.response.close()
        self.connection.close()


def raw_stream(gateway, name, inputs, headers=None):
    """(status, body bytes) of a call read to its end without parsing: quick for big bursts."""
    connection = gateway.connection(60)
    try:
        connection.request("POST", f"/invoke/{name}", body=json.dumps({"inputs": inputs}),
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# MARK: The kinds of work


def bursts(gateway, count):
    for index in range(count):
        if index % 4 == 3:
            status, body = raw_stream(gateway, "burst", {"n": 10000}, {"Accept": "application/json"})
            answer = json.loads(body) if status == 200 else {}
            record("burst_json", status == 200 and len(answer.get("events", [])) == 10002 and answer["success"],
                   f"{status} {body[:120]!r}")
        else:
            status, body = raw_stream(gateway, "burst", {"n": 10000})
            # start, 10,000 events, done: each message one `data:` line.
            record("burst", status == 200 and body.count(b"data: ") == 10002 and b'"type":"done"' in body[-200:],
                   f"{status} {len(body)} bytes, ends {body[-120:]!r}")


def echoes(gateway, calls):
    """`calls` echo calls on one kept-alive connection."""
    connection = gateway.connection(30)
    try:
        for index in range(calls):
            text = f"endurance {index}"
            connection.request("POST", "/invoke/echo", body=json.dumps({"inputs": {"text": text}}),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            ok = response.status == 200 and json.loads(body)["result"]["text"] == text
            if not ok or response.getheader("Connection") == "close":
                record("echo", ok, f"{response.status} {body[:120]!r}")
                connection.close()
                connection = gateway.connection(30)
        record("echo", True, "")
    finally:
        connection.close()


def python_calls(gateway, rng):
    status, body = raw_stream(gateway, "burst_py", {"n": 2000})
    record("python_burst", status == 200 and b'"type":"done"' in body[-300:], f"{status} {body[-120:]!r}")
    items = [rng.choice(["a", 3, None, {"k": "v"}]) for _ in range(4)]
    status, _, messages = gateway.invoke("batch_items", {"items": items})
    events = live_gateway.events(messages) if status == 200 else []
    record("python_batch", status == 200 and events and events[-1]["type"] == "done", f"{status} {events!r:.200}")
    status, _, messages = gateway.invoke("flaky_steps", {"steps": 4, "fail_at": 2})
    events = live_gateway.events(messages) if status == 200 else []
    record("python_fails", status == 200 and events and events[-1]["type"] == "error", f"{status} {events!r:.200}")
    status, body = raw_stream(gateway, "batch_items", {"items": [1, 2, 3]}, {"Accept": "application/json"})
    record("python_json", status == 200 and json.loads(body)["success"] is True, f"{status} {body[:120]!r}")


def wizard(gateway, name, abandon):
    stream = SSEConnection(gateway, name, {})
    try:
        invocation = None
        answers = {"name": "endurance", "template": "web"}
        while True:
            event = stream.next_event()
            if event is None:
                record(f"{name}_answered", False, "the stream ended before done")
                return
            invocation = invocation or event.get("invocation_id")
            if event["type"] == "question":
                if abandon:
                    record(f"{name}_abandoned", True, "")
                    return  # hangs up with a question open: the gateway cancels after --resume-grace
                question = event["data"]["questionId"]
                answer = {"type": "answer", "data": {"questionId": question, "answer": answers[question]}}
                status, _, body = gateway.request("POST", f"/invocations/{invocation}/messages",
                                                  json.dumps(answer).encode(),
                                                  headers={"Content-Type": "application/json"})
                if status != 202:
                    record(f"{name}_answered", False, f"answer refused: {status} {body[:200]!r}")
                    return
            elif event["type"] in ("done", "error"):
                record(f"{name}_answered", event["type"] == "done" and event["data"]["template"] == "web",
                       f"{event!r:.200}")
                return
    finally:
        stream.close()


def cancel(gateway):
    # A token a second: the DELETE must come while the call runs. With 30 ms the 18-token reply
    # once ended before it (409) on a loaded machine; a cancel wakes the sleep, so it costs nothing.
    stream = SSEConnection(gateway, "chat_stream", {"prompt": "cancel me", "delay_ms": 1000})
    try:
        first = stream.next_event()
        status, _, _ = gateway.request("DELETE", f"/invocations/{first['invocation_id']}")
        last = first
        while last and last["type"] not in ("done", "error"):
            last = stream.next_event()
        record("cancel", status == 202 and last and last.get("error_code") == "CANCELLED", f"{status} {last!r:.200}")
    finally:
        stream.close()


def hang_up(gateway, name, inputs, read_bytes=64 * 1024):
    """Reads the start of a long stream (its first event, then up to `read_bytes`) and hangs up; the
    call must end as cancelled."""
    stream = SSEConnection(gateway, name, inputs)
    first = stream.next_event()
    invocation = first["invocation_id"]
    while stream.received < read_bytes and stream.next_event():
        pass
    stream.close()
    deadline = time.monotonic() + 15
    state = None
    while time.monotonic() < deadline:
        state = json.loads(gateway.request("GET", f"/invocations/{invocation}")[2]).get("state")
        if state != "running":
            break
        time.sleep(0.05)
    record(f"hang_up_{name}", state == "cancelled", f"state {state} after the hang-up")


async def ticker_stream(port):
    """One `ticker` call on its own connection, read to its end (chunked framing undone): the
    events, or the reason it went wrong."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        inputs = {"n": TICKER_EVENTS, "interval_ms": TICKER_INTERVAL_MS}
        writer.write(live_gateway.invoke_request("ticker", inputs))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            return f"answer {head[:200]!r}"
        parser, messages = live_gateway.SSEParser(), []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            messages += parser.feed(chunk[:-2])
        return live_gateway.events(messages)
    finally:
        writer.close()


def tickers(gateway, count):
    """`count` concurrent `ticker` streams; each must carry its progress events in order, then done."""

    async def all_streams():
        return await asyncio.wait_for(asyncio.gather(*(ticker_stream(gateway.port) for _ in range(count)),
                                                     return_exceptions=True), 120)

    for outcome in asyncio.run(all_streams()):
        progress = [event["data"].get("current") for event in outcome if event["type"] == "progress"] \
            if isinstance(outcome, list) else None
        record("ticker", progress == list(range(1, TICKER_EVENTS + 1)) and outcome[-1]["type"] == "done",
               f"{outcome!r:.300}")


def files(gateway):
    status, _, messages = gateway.invoke("report", {"rows": 3})
    events = live_gateway.events(messages) if status == 200 else []
    listed = [event for event in events if event["type"] == "files"]
    ok = status == 200 and len(listed) == 1
    if ok:
        url = listed[0]["data"][0]["url"]
        file_status, _, content = gateway.request("GET", url[url.index("/files/"):])
        ok = file_status == 200 and content.startswith(b"month,units,revenue")
    record("files", ok, f"{status} {events!r:.200}")


def round_of_work(gateway, scale, seed):
    rng = random.Random(seed)
    work = [lambda: bursts(gateway, 10 * scale)]
    work += [lambda: echoes(gateway, 25 * scale) for _ in range(ECHO_CONNECTIONS)]
    work += [lambda: tickers(gateway, TICKER_STREAMS * scale)]

    def mixed():
        for _ in range(scale):
            python_calls(gateway, rng)
            wizard(gateway, "wizard", abandon=False)
            wizard(gateway, "wizard_py", abandon=False)
            wizard(gateway, rng.choice(["wizard", "wizard_py"]), abandon=True)
            cancel(gateway)
            hang_up(gateway, "burst", {"n": 100_000_000})
            hang_up(gateway, "burst_py", {"n": 10_000_000})
            # Hangs up while the function sleeps on its event loop's timer: nothing is being written.
            hang_up(gateway, "ticker", {"n": 1000, "interval_ms": 60_000}, read_bytes=0)
            files(gateway)

    work += [mixed, mixed]

    def guarded(job):
        try:
            job()
        except Exception as error:  # noqa: BLE001 - any broken call is a failure
            record("exception", False, repr(error))

    threads = [threading.Thread(target=guarded, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main():
    options = argparse.ArgumentParser()
    options.add_argument("--rounds", type=int, default=6)
    options.add_argument("--minutes", type=float, help="run rounds for this long instead of --rounds")
    options.add_argument("--scale", type=int, default=2, help="work per round (calls grow linearly)")
    options.add_argument("--release", action="store_true", help="use the release build")
    options.add_argument("--binary", help="run this prefab-gateway executable (implies --no-build)")
    options.add_argument("--no-build", action="store_true")
    arguments = options.parse_args()
    if arguments.release:
        live_gateway.BINARY = live_gateway.ROOT / ".build/release/prefab-gateway"
    if arguments.binary:
        live_gateway.BINARY = pathlib.Path(arguments.binary).resolve()
        arguments.no_build = True
    if not arguments.no_build:
        command = ["swift", "build", "--product", "prefab-gateway"] + (["-c", "release"] if arguments.release else [])
        subprocess.run(command, cwd=live_gateway.ROOT, check=True, stdout=subprocess.DEVNULL)
    prefabs = prefabs_folder()
    flags = ["--output-retention", OUTPUT_RETENTION, "--resume-grace", 1, "--log-level", "warning"]
    try:
        with LiveGateway(prefabs, *flags) as gateway:
            run(gateway, arguments)
    finally:
        shutil.rmtree(prefabs, ignore_errors=True)
    tally.finish(unit="calls and checks")


def run(gateway, arguments):
    before = gateway.stats()
    print(f"before: {before}", flush=True)
    started = time.monotonic()
    rounds = []
    index = 0
    while True:
        index += 1
        round_started = time.monotonic()
        round_of_work(gateway, arguments.scale, index)
        tally.check(gateway.wait_idle(30), f"round {index}: functions still run 30 s after the round")
        time.sleep(1)
        stats = gateway.stats()
        rounds.append(stats)
        print(f"round {index} ({time.monotonic() - round_started:.0f} s, {sum(tally.by_kind.values())} checks so far): "
              f"{stats}", flush=True)
        if not gateway.alive():
            break
        if arguments.minutes is not None:
            if time.monotonic() - started >= arguments.minutes * 60 and index >= 2:
                break
        elif index >= arguments.rounds:
            break
    print(f"by kind: {dict(sorted(tally.by_kind.items()))}")
    print(f"waiting {THREAD_IDLE_WAIT} s for idle function threads and output folders to go...", flush=True)
    time.sleep(THREAD_IDLE_WAIT)
    after = gateway.stats()
    print(f"after: {after}")
    first, last = rounds[0]["rss_mb"], rounds[-1]["rss_mb"]
    print(f"RSS: before {before['rss_mb']} MB, after round 1 {first} MB, after round {len(rounds)} {last} MB, "
          f"peak after a round {max(r['rss_mb'] for r in rounds)} MB; bound +{RETENTION_BOUND_MB} MiB "
          f"(retention) + {SLACK_MB} MB (slack)")
    tally.check(last <= first + RETENTION_BOUND_MB * 1.048576 + SLACK_MB,
                f"RSS {first} MB after round 1 -> {last} MB after round {len(rounds)}")
    tally.check(after["fds"] <= before["fds"] + FD_SLACK, f"descriptors {before['fds']} -> {after['fds']}")
    tally.check(after["threads"] <= before["threads"] + THREAD_SLACK,
                f"threads {before['threads']} -> {after['threads']}")
    tally.check(after["children"] == 0, f"{after['children']} child processes remain")
    tally.check(after["output_folders"] == 0, f"{after['output_folders']} output folders remain")
    # The gateway keeps at most 256 empty folders for later calls (SpareFolders.capacity).
    tally.check(after["spare_folders"] <= 256, f"{after['spare_folders']} empty folders remain, past the 256 spares")
    tally.check(gateway.alive(), "the gateway is still running")
    if tally.failures:
        print(gateway.log_tail())


if __name__ == "__main__":
    main()

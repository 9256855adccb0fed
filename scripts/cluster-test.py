#!/usr/bin/env python3
"""Cluster test: `scripts/cluster.sh up 3` (real PostgreSQL as --store, three replicas sharing it
and --data, real nginx in front), then, through different replicas and the balancer:

- a stream started on one replica and resumed on another with Last-Event-ID: no gap, no duplicate;
- the history bound: a follower asking for events no longer kept gets a gap message, then the rest;
- a wizard started on one replica, each question answered through another (and a wrong answer
  refused with the owner's 409);
- a cancel through another replica ends the stream with CANCELLED;
- output files read through every replica and the balancer, the same bytes;
- a replica killed with SIGKILL mid-run: its call seen ended (failed, REPLICA_LOST) from another
  replica within the lease time, the follower's stream ending with that error event;
- the balancer answering every call while that replica is down;
- MCP sessions through the balancer: routed by Mcp-Session-Id to the replica that has them.

Usage: python3 scripts/cluster-test.py [--no-build]. Standard library only. Always runs
`scripts/cluster.sh down`. Prints "N passed, M failed" and exits non-zero on any failure."""
import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEASE = 3  # seconds (--replica-lease)
GRACE = 1  # seconds (--resume-grace): a call nobody reads for this long is cancelled
passed = 0
failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok: {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL: {name} {detail}", flush=True)


def connect(url, timeout=30):
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def request(url, method, path, body=None, headers=None, timeout=30):
    connection = connect(url, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get_json(url, path):
    status, body = request(url, "GET", path)
    return status, json.loads(body) if body else None


class Stream:
    """An SSE response read event by event: (id or None, event dict)."""

    def __init__(self, url, method, path, body=None, headers=None):
        self.connection = connect(url, 60)
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def events(self):
        event_id, data = None, None
        while True:
            line = self.response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and data is not None:
                yield event_id, data
                event_id, data = None, None

    def close(self):
        self.connection.close()


def invoke_stream(url, name, inputs):
    return Stream(url, "POST", f"/invoke/{name}", {"inputs": inputs})


def follow(url, invocation, after=0):
    return Stream(url, "GET", f"/invocations/{invocation}/events", headers={"Last-Event-ID": str(after)})


def resumed_elsewhere(r1, r2):
    # The run outlasts the resume grace after its client left: the owner must count the client that
    # follows it through another replica as a reader.
    stream = invoke_stream(r1, "chat_stream", {"prompt": "one two three four five six seven eight", "delay_ms": 120})
    first, invocation = [], None
    for event_id, event in stream.events():
        invocation = invocation or event.get("invocation_id")
        first.append(event_id)
        if event_id == 5:
            break
    stream.close()  # the client's connection drops mid-run
    time.sleep(0.3)
    rest, last = [], None
    resumed = follow(r2, invocation, after=first[-1])
    check("resume: the other replica answers the stream", resumed.status == 200, resumed.status)
    for event_id, event in resumed.events():
        rest.append(event_id)
        last = event
    resumed.close()
    ids = first + rest
    check("resume: no gap, no duplicate", ids == list(range(1, len(ids) + 1)), ids)
    check(f"resume: it ends with done, though it ran past the {GRACE} s resume grace",
          last is not None and last.get("type") == "done", last)
    status, state = get_json(r1, f"/invocations/{invocation}")
    check("resume: the owner says done", state and state["state"] == "done", state)


def history_bound(r1, r2):
    """The store keeps what memory keeps (--event-history-bytes, 1 MiB): a follower asking for the
    start of a 3 MB run gets a gap message, then every event from the oldest kept, to the end."""
    stream = invoke_stream(r1, "chat_stream", {"prompt": "a " * 60_000, "delay_ms": 0})
    invocation, total = None, 0
    for event_id, event in stream.events():
        invocation = invocation or event.get("invocation_id")
        total = event_id or total
    stream.close()
    time.sleep(0.5)
    _, state = get_json(r2, f"/invocations/{invocation}")
    oldest = state and state["oldest_kept_event"]
    resumed = follow(r2, invocation, after=0)
    events = list(resumed.events())
    resumed.close()
    first_id, first = events[0] if events else (None, {})
    ids = [event_id for event_id, _ in events[1:]]
    check("history: the run's early events are no longer kept in the store", oldest and oldest > 1000,
          (total, oldest))
    check("history: a follower from the start gets a gap message first", first_id is None and
          first.get("type") == "gap" and first["data"]["last"] == oldest - 1, first)
    check("history: then every kept event once, to the end", ids == list(range(oldest, total + 1)),
          (ids[:3], ids[-3:], total))


def wizard_through_others(r1, others):
    stream = invoke_stream(r1, "wizard", {})
    invocation, answers, end = None, iter([("name", "cluster"), ("template", "web")]), None
    replicas = iter(others * 2)
    refused = None
    for _, event in stream.events():
        invocation = invocation or event.get("invocation_id")
        if event["type"] == "question":
            question, answer = next(answers)
            via = next(replicas)
            if refused is None:
                refused, _ = request(via, "POST", f"/invocations/{invocation}/messages",
                                     {"type": "answer", "data": {"questionId": "nope", "answer": "x"}})
            status, body = request(via, "POST", f"/invocations/{invocation}/messages",
                                   {"type": "answer", "data": {"questionId": question, "answer": answer}})
            check(f"wizard: '{question}' answered through {via}", status == 202, (status, body))
        if event["type"] in ("done", "error"):
            end = event
    stream.close()
    check("wizard: a wrong answer through another replica gets the owner's 409", refused == 409, refused)
    check("wizard: done with both answers", end and end["type"] == "done"
          and end["data"] == {"name": "cluster", "template": "web"}, end)


def cancel_through_other(r1, r2, r3):
    stream = invoke_stream(r1, "batch_process", {"items": list(range(50)), "delay_ms": 200})
    invocation, end = None, None
    for _, event in stream.events():
        invocation = invocation or event.get("invocation_id")
        if event["type"] == "progress":
            status, body = request(r2, "DELETE", f"/invocations/{invocation}")
            check("cancel: DELETE through another replica is accepted", status == 202, (status, body))
            break
    for _, event in stream.events():
        end = event
    stream.close()
    check("cancel: the stream ends with CANCELLED", end and end.get("error_code") == "CANCELLED", end)
    time.sleep(0.3)
    _, state = get_json(r3, f"/invocations/{invocation}")
    check("cancel: a third replica says cancelled", state and state["state"] == "cancelled", state)
    status, _ = request(r3, "DELETE", f"/invocations/{invocation}")
    check("cancel: a second cancel gets 409", status == 409, status)


def files_everywhere(replicas, balancer):
    stream = invoke_stream(replicas[1], "report", {"rows": 3})
    files = []
    for _, event in stream.events():
        if event["type"] == "files":
            files = event["data"]
    stream.close()
    check("files: the run lists its files", len(files) > 0, files)
    for entry in files:
        path = urllib.parse.urlsplit(entry["url"]).path
        bodies = []
        for url in replicas + [balancer]:
            status, body = request(url, "GET", path)
            bodies.append((status, body))
        check(f"files: {path} from every replica and the balancer",
              all(status == 200 and body == bodies[0][1] and len(body) == entry["size"] for status, body in bodies),
              [status for status, _ in bodies])
    status, _ = request(balancer, "GET", "/files/" + "0" * 32 + "/nothing.txt")
    check("files: an unknown file is 404 through the balancer", status == 404, status)


def replica_killed(victim, victim_pid, follower, other):
    stream = invoke_stream(victim, "chat_stream", {"prompt": "a " * 200, "delay_ms": 100})
    invocation = None
    for event_id, event in stream.events():
        invocation = invocation or event.get("invocation_id")
        if event_id == 3:
            break
    follower_stream = follow(follower, invocation, after=3)
    seen, end = [], [None]

    def read():
        for event_id, event in follower_stream.events():
            seen.append(event_id)
            end[0] = (event, time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    os.kill(victim_pid, signal.SIGKILL)
    killed = time.monotonic()
    stream.close()
    reader.join(timeout=LEASE + 10)
    event, at = end[0] or ({}, None)
    check("kill: the follower's stream ends with REPLICA_LOST",
          event.get("type") == "error" and event.get("error_code") == "REPLICA_LOST", event)
    check(f"kill: ended within the lease time ({LEASE} s) plus a renewal", at is not None and at - killed < LEASE + 2.5,
          None if at is None else round(at - killed, 2))
    check("kill: no gap or duplicate before the end", seen == list(range(4, 4 + len(seen))), seen[:5])
    _, state = get_json(other, f"/invocations/{invocation}")
    check("kill: another replica says failed, REPLICA_LOST",
          state and state["state"] == "failed" and state.get("error", {}).get("code") == "REPLICA_LOST", state)


def balancer_with_one_down(balancer):
    statuses = []
    for index in range(30):
        status, body = request(balancer, "POST", "/invoke/echo", {"inputs": {"text": f"n{index}"}})
        statuses.append(status if status != 200 or json.loads(body)["result"]["text"] == f"n{index}" else -1)
    check("balancer: 30 echo calls all answered while a replica is down", statuses == [200] * 30, statuses)
    status, _ = request(balancer, "GET", "/health")
    check("balancer: /health answers", status == 200, status)


def mcp_through_balancer(balancer):
    """MCP sessions live in one replica's memory: nginx routes /mcp by Mcp-Session-Id."""
    headers = {"Accept": "application/json, text/event-stream"}

    def post(message, session=None):
        connection = connect(balancer)
        try:
            extra = {"Mcp-Session-Id": session} if session else {}
            connection.request("POST", "/mcp", body=json.dumps(message).encode(),
                               headers={"Content-Type": "application/json", **headers, **extra})
            response = connection.getresponse()
            return response.status, response.getheader("Mcp-Session-Id"), response.read()
        finally:
            connection.close()

    status, session, _ = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "cluster-test", "version": "1"}}})
    check("mcp: initialize through the balancer", status == 200 and session, (status, session))
    if not session:
        return
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    answers = [post({"jsonrpc": "2.0", "id": 2 + index, "method": "tools/list"}, session) for index in range(6)]
    check("mcp: 6 tools/list calls of one session all reach its replica",
          all(status == 200 and b'"echo"' in body for status, _, body in answers),
          [status for status, _, _ in answers])


def main():
    env = dict(os.environ, PREFAB_CLUSTER_FLAGS=f"--replica-lease {LEASE} --resume-grace {GRACE}")
    if "--no-build" in sys.argv:
        env["PREFAB_CLUSTER_NO_BUILD"] = "1"
    started = time.monotonic()
    try:
        up = subprocess.run(["bash", "scripts/cluster.sh", "up", "3"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
        print(up.stdout, end="")
        if up.returncode != 0:
            print(up.stderr)
            check("cluster.sh up", False)
            return
        lines = [line.split() for line in up.stdout.splitlines()]
        balancer = next(line[1] for line in lines if line[0] == "balancer")
        replicas = [(line[1], int(line[2])) for line in lines if line[0] == "replica"]
        check("cluster.sh up: a balancer and three replicas", len(replicas) == 3 and balancer)
        urls = [url for url, _ in replicas]
        r1, r2, r3 = urls
        resumed_elsewhere(r1, r2)
        history_bound(r1, r2)
        wizard_through_others(r1, [r2, r3])
        cancel_through_other(r1, r2, r3)
        files_everywhere(urls, balancer)
        mcp_through_balancer(balancer)
        replica_killed(r3, replicas[2][1], r1, r2)
        balancer_with_one_down(balancer)
    finally:
        subprocess.run(["bash", "scripts/cluster.sh", "down"], cwd=ROOT, timeout=120)
        print(f"cluster test: {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")


if __name__ == "__main__":
    main()
    sys.exit(1 if failed else 0)

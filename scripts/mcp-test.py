#!/usr/bin/env python3
"""MCP test: the stock Python MCP client (PyPI `mcp`, pinned) against `/mcp` of a real gateway
serving the example prefabs, then against `prefab-gateway mcp` over stdio (started by the
client's `stdio_client`, as a desktop client does). Checks, over both: that every /manifest
function is a tool, that batch_process sends at least one progress notification per progress
event, that fail_midway comes back with isError, that report's files come as resource links
fetchable over HTTP, that both wizards are completed through elicitation, and that a cancelled
call leaves no running invocation within a few seconds. Over HTTP, that a second session works
after the first ended, and that RSS comes back level over rounds of sessions (one gateway); over stdio, that nothing but JSON-RPC reaches stdout, that the process
ends by itself when the client closes stdin, and that SIGTERM during a Python call ends it and
its children within a few seconds.

Usage: python3 scripts/mcp-test.py [--no-build]. Installs the client into .build-ci-mcp-venv/
(ignored by git) on first use. Exits non-zero on any failed check."""
import os
import pathlib
import subprocess
import sys

MCP_VERSION = "2.3.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".build-ci-mcp-venv"

sys.path.insert(0, str(ROOT / "scripts"))
from pinned_venv import reexec_in_venv  # noqa: E402

reexec_in_venv(VENV, "mcp", MCP_VERSION, "mcp-test")

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import anyio  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.types import ElicitResult  # noqa: E402

import live_gateway  # noqa: E402
from live_gateway import LiveGateway  # noqa: E402

failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition:
        failures.append(what)


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def answer_wizard(context, params):
    """Answers the wizards' questions: a name, then the first offered template."""
    schema = params.requested_schema["properties"]["answer"]
    if "enum" in schema:
        return ElicitResult(action="accept", content={"answer": schema["enum"][0]})
    return ElicitResult(action="accept", content={"answer": "demo"})


async def session_checks(gateway, url, functions):
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write, elicitation_callback=answer_wizard) as session:
            await tool_checks(session, lambda: gateway, functions, "")


async def tool_checks(session, find_gateway, functions, over):
    """The checks of one session; `find_gateway()` gives the HTTP side (files, /health, /metrics)
    once the session is initialized, `over` prefixes every check's name."""

    def check(condition, what):
        globals()["check"](condition, over + what)

    info = await session.initialize()
    check(info.server_info.name == "prefab-gateway", "initialize names the server prefab-gateway")
    gateway = find_gateway()

    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    check(set(functions) <= set(tools), f"every /manifest function is a tool ({len(functions)})")
    check(all(tool.input_schema.get("type") == "object" for tool in tools.values()),
          "every tool's inputSchema is an object schema")
    hints = tools["echo"].annotations
    check(hints is not None and (hints.title, hints.read_only_hint, hints.idempotent_hint, hints.open_world_hint)
          == ("Echo", True, True, False), f"echo's manifest annotations are its tool's ({hints})")

    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    items = ["a", "b", "c", "d"]
    result = await session.call_tool("batch_process", {"items": items, "delay_ms": 50},
                                     progress_callback=on_progress)
    check(not result.is_error, "batch_process succeeds")
    check(len(progress) >= len(items),
          f"batch_process: >= 1 progress notification per progress event ({len(progress)} for {len(items)})")
    check((result.structured_content or {}).get("total") == len(items),
          "batch_process: done data comes as structuredContent")
    check(any(block.type == "text" for block in result.content), "batch_process: a text rendering")
    invocation = (result.meta or {}).get("invocation_id", "")
    status, _, body = gateway.request("GET", f"/invocations/{invocation}")
    check(status == 200 and json.loads(body).get("state") == "done",
          "batch_process: the call is an invocation, done at /invocations/<id>")

    failed = await session.call_tool("fail_midway", {"steps": 3, "fail_at": 2, "delay_ms": 10})
    check(failed.is_error is True, "fail_midway comes back with isError")
    check("STEP_FAILED" in text_of(failed), "fail_midway's text carries its error code")

    report = await session.call_tool("report", {"rows": 3})
    links = [block for block in report.content if block.type == "resource_link"]
    check(not report.is_error and len(links) >= 2, f"report: its files as resource links ({len(links)})")
    for link in links:
        with urllib.request.urlopen(str(link.uri), timeout=30) as response:
            status, body = response.status, response.read()
        check(status == 200 and len(body) > 0 and f"127.0.0.1:{gateway.port}/" in str(link.uri),
              f"report: {link.name} is fetchable at its link ({link.uri})")

    for wizard in ("wizard", "wizard_py"):
        done = await session.call_tool(wizard, {})
        content = done.structured_content or {}
        check(not done.is_error and content.get("name") == "demo" and content.get("template"),
              f"{wizard}: both questions answered through elicitation ({json.dumps(content)})")

    # A call cancelled by the client (its task cancelled: the client sends
    # notifications/cancelled) leaves no running invocation. The wait runs on a thread:
    # the client sends its cancel from this event loop.
    with anyio.move_on_after(1.5):
        await session.call_tool("batch_process", {"items": list(range(100)), "delay_ms": 200})
    idle = await anyio.to_thread.run_sync(gateway.wait_idle, 5)
    check(idle, "a cancelled call leaves no running invocation within 5 s")
    metrics = gateway.request("GET", "/metrics")[2].decode()
    check(re.search(r'prefab_invocations_total\{[^}]*function="batch_process"[^}]*outcome="cancelled"', metrics)
          is not None, "the cancelled call is counted as cancelled in /metrics")


async def second_session(url):
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            echoed = await session.call_tool("echo", {"text": "again"})
            check((echoed.structured_content or {}).get("text") == "again",
                  "a second session after the first ended: echo answers")
            refused = await session.call_tool("wizard", {})
            check(refused.is_error and "ELICITATION_UNSUPPORTED" in text_of(refused),
                  "a client without elicitation: a question fails with ELICITATION_UNSUPPORTED")


# One gateway, MEMORY_ROUNDS rounds of MEMORY_SESSIONS sessions x MEMORY_CALLS (batch_process with
# progress, then echo) each, every session closed at the end of its round; finished invocations are
# kept 1 s only, so nothing the gateway holds by design grows. The bound: RSS after the last round
# may exceed RSS after round 2 by MEMORY_SLACK_MB. Derived from measurement (debug build): a build
# whose finished MCP calls were never freed (a reference cycle through the call's questions) grew
# ~1.6 MB per round of 400 calls, 9.6 MB over rounds 3-8; the fixed build stayed within 1 MB of
# its round-2 figure over 18 rounds of 800 calls.
MEMORY_ROUNDS, MEMORY_SESSIONS, MEMORY_CALLS, MEMORY_SLACK_MB = 8, 4, 50, 3.0


async def memory_rounds(gateway, url):
    async def one_session():
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                failed = 0
                for index in range(MEMORY_CALLS):
                    result = await session.call_tool(
                        "batch_process", {"items": [str(index), "b", "c"], "delay_ms": 0},
                        progress_callback=lambda *_: anyio.sleep(0))
                    failed += bool(result.is_error)
                    result = await session.call_tool("echo", {"text": "x" * 100})
                    failed += bool(result.is_error)
                return failed

    rss = []
    failed = [0]
    for _ in range(MEMORY_ROUNDS):
        async def count(failed=failed):
            failed[0] += await one_session()
        async with anyio.create_task_group() as group:
            for _ in range(MEMORY_SESSIONS):
                group.start_soon(count)
        await anyio.sleep(2.5)  # past the 1 s retention and the session idle time
        rss.append(live_gateway.rss_mb(gateway.pid))
    calls = MEMORY_ROUNDS * MEMORY_SESSIONS * MEMORY_CALLS * 2
    check(failed[0] == 0, f"memory rounds: {calls} tool calls, none failed ({failed[0]} failed)")
    figures = ", ".join(f"{value:.1f}" for value in rss)
    check(rss[-1] - rss[1] <= MEMORY_SLACK_MB,
          f"memory rounds: RSS after the last round within {MEMORY_SLACK_MB} MB of round 2 (MB per round: {figures})")


class Listener:
    """The HTTP listener `prefab-gateway mcp` runs beside stdio (on a free port), found in its log."""
    connection = LiveGateway.connection
    request = LiveGateway.request
    health = LiveGateway.health
    wait_idle = LiveGateway.wait_idle

    def __init__(self, log_path):
        log = log_path.read_text(errors="replace")
        match = re.search(r"output files served on http://127\.0\.0\.1:(\d+)", log)
        if match is None:
            raise RuntimeError(f"prefab-gateway mcp logged no listener:\n{log}")
        self.port = int(match.group(1))


def stdio_command(data):
    return ["mcp", "--prefabs", "prefabs", "--data", str(data), "--question-timeout", "20"]


def mcp_processes():
    return [pid for pid in live_gateway.children(os.getpid())
            if " mcp --prefabs " in live_gateway.cmdline(pid)]


async def stdio_checks(functions, data):
    """A desktop client's way: the client starts `prefab-gateway mcp` and talks over its stdio."""
    log_path = data / "mcp-stdio.log"
    server = StdioServerParameters(command=str(live_gateway.BINARY), args=stdio_command(data / "data"),
                                   cwd=str(ROOT))
    with open(log_path, "w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write):
            async with ClientSession(read, write, elicitation_callback=answer_wizard) as session:
                await tool_checks(session, lambda: Listener(log_path), functions, "stdio: ")
                pids = mcp_processes()
        # The client closed stdin and waits 2 s before it would send SIGTERM: the process ended
        # by itself, at EOF.
        check(len(pids) == 1 and live_gateway.gone(pids, 5), "stdio: the process ends when the client closes")
        log = log_path.read_text(errors="replace")
        check("the MCP client closed stdin" in log, "stdio: it ended at EOF on stdin (its log says so)")


def stdio_sigterm(data):
    """SIGTERM during a Python call: the process and the call's children end within a few
    seconds; stdout carried only JSON-RPC."""
    with open(data / "mcp-sigterm.log", "wb") as log:
        process = subprocess.Popen([str(live_gateway.BINARY), *stdio_command(data / "data")], cwd=ROOT,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "count_lines", "arguments": {"text": "a line\n" * 600, "every": 1, "delay_ms": 50},
                    "_meta": {"progressToken": "p"}}},
    ]
    try:
        process.stdin.write(b"".join(json.dumps(message).encode() + b"\n" for message in messages))
        process.stdin.flush()
        deadline = time.monotonic() + 30
        calls = []
        while time.monotonic() < deadline and not (calls and len(lines) >= 3):
            # A Python prefab's call runs in a worker, a child of the gateway.
            calls = live_gateway.children(process.pid)
            time.sleep(0.1)
        check(bool(calls) and len(lines) >= 3,
              f"stdio SIGTERM: a Python call runs ({len(calls)} children), with progress on stdout")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        check(code is not None and took < 8, f"stdio SIGTERM: the process ends ({took:.1f} s, exit {code})")
        check(bool(calls) and live_gateway.gone(calls, 5), "stdio SIGTERM: the call's children are gone")
        reader.join(5)
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line).get("jsonrpc") == "2.0")
            except ValueError:
                parsed.append(False)
        check(parsed and all(parsed), f"stdio: stdout carries only JSON-RPC ({len(lines)} lines)")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main():
    if "--no-build" not in sys.argv:
        live_gateway.build()
    with LiveGateway(ROOT / "prefabs", "--question-timeout", "20") as gateway:
        url = f"http://127.0.0.1:{gateway.port}/mcp"
        functions = [entry["name"] for entry in json.loads(gateway.request("GET", "/manifest")[2])["functions"]]
        started = time.monotonic()
        try:
            anyio.run(session_checks, gateway, url, functions)
            anyio.run(second_session, url)
        except Exception as error:  # a failure of the client is a failed check, with the gateway's log
            check(False, f"the MCP session ran without error: {error!r}")
            print(gateway.log_tail())
        print(f"mcp-test: {time.monotonic() - started:.1f} s")
    with LiveGateway(ROOT / "prefabs", "--invocation-retention", "1", "--output-retention", "1",
                     "--mcp-session-idle", "2") as gateway:
        started = time.monotonic()
        try:
            anyio.run(memory_rounds, gateway, f"http://127.0.0.1:{gateway.port}/mcp")
        except Exception as error:
            check(False, f"the MCP memory rounds ran without error: {error!r}")
            print(gateway.log_tail())
        print(f"mcp-test memory rounds: {time.monotonic() - started:.1f} s")
    data = pathlib.Path(tempfile.mkdtemp(prefix="mcp-stdio-"))
    started = time.monotonic()
    try:
        anyio.run(stdio_checks, functions, data)
        stdio_sigterm(data)
    except Exception as error:
        check(False, f"the MCP session over stdio ran without error: {error!r}")
        for log in data.glob("*.log"):
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    finally:
        for pid in mcp_processes():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)
    print(f"mcp-test over stdio: {time.monotonic() - started:.1f} s")
    if failures:
        print(f"mcp-test: {len(failures)} failed checks")
        sys.exit(1)
    print("mcp-test: every check passed")


if __name__ == "__main__":
    main()

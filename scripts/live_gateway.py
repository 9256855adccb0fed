"""The real prefab-gateway executable on a free loopback port, for the hardening scripts
(fault-test.py, http-fuzz.py, soak-test.py), and what they measure of it from /proc: open
descriptors, threads, child processes and memory. Standard library only."""
import collections
import http.client
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

from free_port import free_port  # below the ephemeral range: free_port.py says why

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = ROOT / ".build/debug/prefab-gateway"

# A script stopped with SIGTERM still stops its gateway (the `with` blocks unwind).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def invoke_request(name, inputs, headers=b""):
    """The bytes of `POST /invoke/<name>` with `{"inputs": inputs}`, for raw sockets; `headers` are
    more header lines, each ending in CRLF."""
    body = json.dumps({"inputs": inputs}).encode()
    return (b"POST /invoke/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (name.encode(), headers, len(body), body))


def build():
    """Builds the executable (quick when it is up to date)."""
    subprocess.run(["swift", "build", "--product", "prefab-gateway"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def is_empty_folder(path):
    """True when `path` is a folder with nothing in it (False when it is gone: taken meanwhile)."""
    try:
        return not any(path.iterdir())
    except OSError:
        return False


class LiveGateway:
    """`prefab-gateway serve` on `prefabs` with extra flags; stopped (and its data removed) on exit,
    even when a check failed."""

    def __init__(self, prefabs, *flags):
        self.prefabs = str(prefabs)
        self.flags = [str(flag) for flag in flags]
        self.port = free_port()
        self.data = pathlib.Path(tempfile.mkdtemp(prefix="gateway-hardening-"))
        self.log_path = self.data / "gateway.log"
        self.process = None

    def __enter__(self):
        try:
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self):
        log = open(self.log_path, "wb")
        command = [str(BINARY), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--prefabs", self.prefabs, "--data", str(self.data / "data"), *self.flags]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited at start:\n{self.log_tail()}")
            try:
                if self.request("GET", "/health", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not answer /health within 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data, ignore_errors=True)
        return False

    @property
    def pid(self):
        return self.process.pid

    @property
    def outputs(self):
        return self.data / "data" / "outputs"

    def alive(self):
        return self.process.poll() is None

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers, body bytes) of one request on a new connection."""
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def invoke(self, name, inputs, on_message=None, timeout=60, headers=None):
        """POSTs a call and reads its SSE stream to the end: (status, headers, messages). With
        `on_message`, each message goes to it instead of the list (for floods)."""
        connection = self.connection(timeout)
        try:
            body = json.dumps({"inputs": inputs})
            connection.request("POST", f"/invoke/{name}", body=body,
                               headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            kept = []
            parser = SSEParser()
            if response.status != 200 or "text/event-stream" not in (response.getheader("Content-Type") or ""):
                return response.status, dict(response.getheaders()), response.read()
            while True:
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                for message in parser.feed(chunk):
                    if on_message:
                        on_message(message)
                    else:
                        kept.append(message)
            if parser.pending():
                raise ValueError(f"the stream ended inside a message: {parser.pending()[:200]!r}")
            return response.status, dict(response.getheaders()), kept
        finally:
            connection.close()

    def health(self):
        return json.loads(self.request("GET", "/health", timeout=10)[2])

    def wait_idle(self, timeout=10):
        """True once no function is running (GET /health `running` is 0)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health().get("running") == 0:
                return True
            time.sleep(0.05)
        return False

    def stats(self):
        """Resources the gateway holds now."""
        entries = list(self.outputs.iterdir()) if self.outputs.exists() else []
        # Empty folders the gateway keeps for later calls (named after the ids of calls to come, at
        # most 256) are counted apart: one is left whenever a call ends with its folder empty. A
        # folder that holds anything is output, which the retention must remove.
        spares = [entry for entry in entries if is_empty_folder(entry)]
        kinds = describe_fds(self.pid)
        return {
            "fds": sum(kinds.values()),
            # Sockets, pipes and files: what a leak per call or connection would grow. The rest
            # (epoll, eventfd, timerfd) come three per runtime worker thread and go with it.
            "io_fds": sum(count for kind, count in kinds.items() if kind != "anon_inode"),
            "threads": len(os.listdir(f"/proc/{self.pid}/task")),
            # Processes of calls; the Python workers a prefab keeps between calls are counted apart.
            "children": len(call_processes(self.pid)),
            "workers": len(workers(self.pid)),
            "output_folders": len(entries) - len(spares),
            "spare_folders": len(spares),
            "rss_mb": rss_mb(self.pid),
        }


class SSEParser:
    """Server-Sent Events as the spec frames them: fields per line (LF, CRLF or CR), a blank line
    ends a message, `:` starts a comment. Messages are dicts with `data` (str) and `id`."""

    def __init__(self):
        self.buffer = b""
        self.data = []
        self.id = None
        self.fields = 0

    def feed(self, chunk):
        buffer = self.buffer + chunk
        messages = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            ret = buffer.find(b"\r", start, newline if newline >= 0 else len(buffer))
            cut = ret if ret >= 0 else newline
            if cut < 0:
                break
            # A CR at the very end may be the first half of a CRLF.
            if cut == ret and cut + 1 == len(buffer):
                break
            line = buffer[start:cut]
            start = cut + (2 if buffer[cut:cut + 2] == b"\r\n" else 1)
            if not line:
                if self.fields:
                    messages.append({"data": "\n".join(self.data), "id": self.id})
                self.data, self.fields = [], 0
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            text = value.decode("utf-8")  # raises on invalid UTF-8: a framing bug
            self.fields += 1
            if name == b"data":
                self.data.append(text)
            elif name == b"id":
                self.id = text
        self.buffer = buffer[start:]
        return messages

    def pending(self):
        return self.buffer if self.buffer or not self.fields else b"(unterminated fields)"


def events(messages):
    """The JSON events of parsed SSE messages."""
    return [json.loads(message["data"]) for message in messages]


def proc_stat(pid):
    """(ppid, process group) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(pid):
    return [child for child in all_pids() if (proc_stat(child) or (None,))[0] == pid]


def is_worker(pid):
    """A Python prefab's worker: the runner in worker mode, serving call after call."""
    return "prefab_runner.py --worker " in cmdline(pid)


def workers(pid):
    return [child for child in children(pid) if is_worker(child)]


def call_processes(pid):
    """The gateway's children that run a call (a process per call), and whatever a worker runs
    below it: none should remain once the calls are over."""
    found = []
    for child in children(pid):
        found += children(child) if is_worker(child) else [child]
    return found


def group_members(pgid):
    """Processes in a process group: what a prefab child started, even once re-parented."""
    return [pid for pid in all_pids() if (proc_stat(pid) or (None, None))[1] == pgid]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def describe_fds(pid):
    """What a process's descriptors are, counted by kind (socket, pipe, file...)."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":", 1)[0] if ":[" in target else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def gone(pids, timeout):
    """True once none of `pids`, nor any process in their groups, exists."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if proc_stat(pid) is not None or group_members(pid)]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Tally:
    """Counts checks; every failure is printed as it happens. `record` is the thread-safe form
    that also counts checks by kind."""

    def __init__(self, name):
        self.name = name
        self.tried = 0
        self.failures = []
        self.by_kind = collections.Counter()
        self.lock = threading.Lock()

    def record(self, kind, ok, what):
        with self.lock:
            self.by_kind[kind] += 1
            self.check(ok, f"{kind}: {what}")

    def check(self, condition, what):
        self.tried += 1
        if not condition:
            self.failures.append(what)
            print(f"FAIL: {what}", flush=True)
        return condition

    def finish(self, unit="cases"):
        print(f"{self.name}: {unit} tried: {self.tried}, failures found: {len(self.failures)}", flush=True)
        sys.exit(1 if self.failures else 0)

"""Runs calls of a Python prefab for the Prefab Gateway.

Usage: python3 prefab_runner.py [--worker] ENTRY_FILE

Without --worker the runner serves one call and exits (the prefab's "isolation":
"process-per-call"); with it, it serves calls one after another (see "Worker mode" below).

Reads the call as one JSON line on stdin:
    {"function": "...", "inputs": {...}, "invocation_id": "...", "output_dir": "...", "streaming": true}
imports ENTRY_FILE, calls the function with the inputs as keyword arguments, and writes to stdout
one JSON line per event a generator yields, or {"result": ...} for a plain return value. An
exception becomes an error event. The call may carry "question_timeout_seconds" (a number, or
null for no limit; 300 when absent) and "max_output_bytes" (the output folder's limit: files the
prefab writes are capped just past it, and a refused write is an OUTPUT_TOO_LARGE error).

Messages: stdin stays open, and every further line is a message from the client, one JSON object
with a string "type", e.g. {"type": "answer", "data": {"questionId": "q1", "answer": "A"}}. At most
MESSAGE_CAPACITY of them wait unread here; past that the runner stops reading stdin, the pipe fills,
and the gateway refuses more (TOO_MANY_MESSAGES), as for a Swift function that does not read.
A generator that yields {"type": "question", ...} gets the matching answer's data.answer as the
value of that yield (data.questionId is set to "q1", "q2", ... when absent); with no answer
within the timeout, QuestionTimeout (error_code QUESTION_TIMEOUT) is thrown into it. The module
`prefab_runtime` (ask, next_message, messages, QuestionTimeout) offers the same to any prefab.
Closing stdin cancels the call: whatever waits for a message ends the run quietly (exit 0).

Worker mode (--worker): the module is imported once, then `{"ready":true}` is written. Every
call line carries "call": N (1, 2, ...); messages for it arrive wrapped as
{"call": N, "message": {...}}, and one for another call (sent after its call ended) is dropped.
After a call's last event the runner writes `{"end":N}`, or `{"end":N,"exit":true}` when the worker
ends after the call (its import failed: the next call's worker imports again); a terminal event is
held back and written together with it (the gateway sends it only when the call ends anyway). It
has restored the
working directory and the environment, and, on stderr, the line FENCE, so the gateway tells the
calls' stderr lines apart. The call's unread messages are dropped. Closing stdin ends the worker;
the gateway cancels a call by killing the worker's process group.

Anything the prefab prints goes to stderr, so it can never corrupt the protocol. Only the
standard library is used.
"""

import collections.abc
import errno
import importlib.util
import types
import json
import math
import os
import queue
import select
import signal
import sys
import threading
import time
import traceback

DEFAULT_QUESTION_TIMEOUT = 300.0
# The gateway's bound on unread messages (PrefabContext.messageCapacity).
MESSAGE_CAPACITY = 256


def main():
    worker = len(sys.argv) == 3 and sys.argv[1] == "--worker"
    entry = os.path.abspath(sys.argv[-1])
    protocol_fd = os.dup(1)
    # print() and C extensions writing to fd 1 now reach stderr, which the gateway logs.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    writer = EventWriter(protocol_fd, hold_terminal=worker)
    runtime = Runtime()
    # Before the import, so a prefab can `import prefab_runtime` at its top.
    sys.modules["prefab_runtime"] = runtime.module()
    # The prefab is imported before the call arrives, so a pre-started (warm) runner only has to
    # call the function.
    module, load_error = None, None
    try:
        module = import_entry(entry)
    except Exception as error:  # noqa: BLE001 - any import failure is the prefab's error
        traceback.print_exc()
        load_error = error
    if worker:
        serve_calls(entry, module, load_error, writer, runtime)
        return
    try:
        call = json.loads(sys.stdin.readline())
        if not isinstance(call, dict):
            raise ValueError(f"the call is {type(call).__name__}, not an object")
    except ValueError as error:
        writer.error(f"the runner got no valid call: {error}", "PROTOCOL_ERROR")
        return
    # Every further line is a message; sys.stdin itself, since its buffer may already hold some.
    stdin = StdinReader(sys.stdin)
    session = runtime.session = Session(writer, stdin, stdin.queue)
    stdin.start()
    session.question_timeout = call_question_timeout(call)
    # A warm runner was started before its invocation: its variables arrive with the call.
    set_call_environment(call)
    limit_output(call.get("max_output_bytes"))
    serve(call, entry, module, load_error, writer, session)


def serve(call, entry, module, load_error, writer, session):
    """Runs one call; False when the prefab could not be loaded."""
    if load_error is not None:
        writer.error(f"cannot load {call.get('function')} from {os.path.basename(entry)}: "
                     f"{describe(load_error)}", getattr(load_error, "error_code", None) or "PREFAB_LOAD_FAILED")
        return False
    function = getattr(module, call.get("function", ""), None)
    if not callable(function):
        writer.error(f"{os.path.basename(entry)} has no function '{call.get('function')}'", "FUNCTION_NOT_FOUND")
        return True
    run(function, call.get("inputs") or {}, bool(call.get("streaming", True)), writer, session)
    return True


CALL_VARIABLES = ("PREFAB_INVOCATION_ID", "PREFAB_OUTPUT_DIR", "PREFAB_FUNCTION")
# os.environ's own mapping of bytes (not on Windows, where it keeps str): the call's variables are
# set in it directly, as os.environ[name] = value does but without its encoders in Python, which
# made up half the time of a worker's setting them.
_ENVIRON = os.environ
_ENVIRON_DATA = getattr(_ENVIRON, "_data", None) if os.name != "nt" else None
if not isinstance(_ENVIRON_DATA, dict):
    _ENVIRON_DATA = None
_FS_ENCODING = sys.getfilesystemencoding()
_CALL_ENVIRONMENT = tuple((name, os.fsencode(name), key) for name, key in
                          zip(CALL_VARIABLES, ("invocation_id", "output_dir", "function")))


def set_call_environment(call):
    data = _ENVIRON_DATA if os.environ is _ENVIRON else None  # a prefab may have replaced os.environ
    for name, encoded_name, key in _CALL_ENVIRONMENT:
        value = call.get(key, "")
        if not isinstance(value, str):
            value = str(value)
        if data is None:
            os.environ[name] = value
        else:
            # What os.environ.__setitem__ does: putenv first, so a refused value is not kept.
            value = value.encode(_FS_ENCODING, "surrogateescape")
            os.putenv(encoded_name, value)
            data[encoded_name] = value


class Environment:
    """The worker's environment as its calls must find it: what a call changes is undone after it.
    Compared as os.environ's own mapping of bytes, in C (dict(os.environ) decodes every entry)."""

    def __init__(self):
        data = getattr(os.environ, "_data", None)
        self.data = data if isinstance(data, dict) else None
        self.expected = self.current()
        # The call variables' keys in the mapping compared, worked out once.
        self.call_keys = tuple(os.fsencode(name) if self.data is not None else name for name in CALL_VARIABLES)

    def current(self):
        return dict(self.data) if self.data is not None else dict(os.environ)

    def call_began(self):
        """The call's own variables are set: they are expected until the next call's."""
        source = self.data if self.data is not None else os.environ
        expected = self.expected
        for key in self.call_keys:
            expected[key] = source[key]

    def restore(self):
        if (self.data if self.data is not None else dict(os.environ)) == self.expected:
            return
        os.environ.clear()
        for key, value in self.expected.items():
            os.environ[os.fsdecode(key)] = os.fsdecode(value)


# Written on stderr after each call of a worker; the gateway drops it and starts the next call's
# stderr tail (the lines a crash reports) after it.
FENCE = b"\x1eprefab-runner: end of call\n"


def serve_calls(entry, module, load_error, writer, runtime):
    """Worker mode: serves calls until stdin closes. What a call changes in the process's
    working directory and environment is undone before the next; module state is shared."""
    directory = os.getcwd()
    environment = Environment()
    own = set(descendants(os.getpid()))
    stdin = LineInput(sys.stdin.fileno())
    writer.ready()
    while True:
        line = stdin.line()
        if line is _CLOSED:
            return
        call = parse_line(line)
        if call is None or "message" in call:
            continue  # a message whose call has ended
        number = call.get("call")
        session = runtime.session = WorkerSession(writer, stdin, number)
        session.question_timeout = call_question_timeout(call)
        set_call_environment(call)
        environment.call_began()
        limit_output(call.get("max_output_bytes"))
        writer.begin_call()
        try:
            loaded = serve(call, entry, module, load_error, writer, session)
        except BaseException:
            # A SystemExit or KeyboardInterrupt from the prefab ends the worker without an end
            # line: the gateway sees the process end, as it would a process of the call's own.
            writer.send(writer.held)
            raise
        session.drop_unread()
        runtime.session = None
        try:
            moved = os.getcwd() != directory
        except OSError:
            moved = True  # the call removed the folder it went to
        if moved:
            os.chdir(directory)
        environment.restore()
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # a prefab closed or replaced it
        end_processes(own)
        os.write(2, FENCE)
        # After a failed import the worker ends, so that the next call imports the prefab again.
        leaving = not loaded or session.closed
        writer.end_call(number, leaving)
        if leaving:
            return


def end_processes(own):
    """What a call started ends with it, as it would with a process per call: every process below
    the worker but `own` (started while the module was imported) is killed, and its zombie
    reaped. (A process that left, its parent gone, was adopted by the gateway, which ends it.)"""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return  # no child at all: the usual case, one system call
    me = os.getpid()
    children = set(children_of(me))
    for pid in descendants(me):
        if pid not in own:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # gone already
    for pid in children - own:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # reaped by the prefab


def children_of(pid):
    """The children of `pid`, as each of its threads lists them in /proc."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as file:
                found += [int(child) for child in file.read().split()]
        except OSError:
            pass  # the thread ended
    return found


def descendants(pid):
    found, stack = [], [pid]
    while stack and len(found) < 100_000:
        children = children_of(stack.pop())
        found += children
        stack += children
    return found


def call_question_timeout(call):
    if "question_timeout_seconds" not in call:
        return DEFAULT_QUESTION_TIMEOUT
    value = seconds_or_none(call["question_timeout_seconds"])
    if value is False:
        note(f"question_timeout_seconds {call['question_timeout_seconds']!r} is not a number: "
             f"using {DEFAULT_QUESTION_TIMEOUT:g} s")
        return DEFAULT_QUESTION_TIMEOUT
    return value


def seconds_or_none(value):
    """A timeout in seconds (at least 0), None for no limit, or False when it is not one."""
    if type(value) is float and 0.0 < value < math.inf:
        return value  # the usual case (a call's 300.0), returned as the checks below would
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    return None if math.isinf(value) and value > 0 else max(0.0, float(value))


_output_limit = [None]  # the limit set last: a worker's calls set the same one again


def limit_output(max_bytes):
    """Caps every file the prefab writes at one byte past the call's output limit, so that the
    write past it fails (OSError EFBIG: Python ignores SIGXFSZ) and the gateway sees the folder
    over its limit. The cap also applies to files written outside the output folder."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        return
    if _output_limit[0] == max_bytes:
        return
    _output_limit[0] = max_bytes
    try:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        soft = max_bytes + 1 if hard == resource.RLIM_INFINITY else min(max_bytes + 1, hard)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    except (ImportError, ValueError, OSError) as error:
        note(f"cannot limit the output size to {max_bytes} bytes: {error}")


def note(text):
    print(f"prefab_runner: {text}", file=sys.stderr, flush=True)


def import_entry(entry):
    folder = os.path.dirname(entry)
    for path in (folder, os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)
    spec = importlib.util.spec_from_file_location("prefab_main", entry)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prefab_main"] = module
    spec.loader.exec_module(module)
    return module


def run(function, inputs, streaming, writer, session):
    try:
        result = function(**inputs)
        # A generator, or any other iterator (`return iter(events)`) of a streaming call, is streamed
        # event by event; a generator is told by its type first, which spares it the ABC check.
        if type(result) is types.GeneratorType or (streaming and isinstance(result, collections.abc.Iterator)):
            drive(result, writer, session)
        elif streaming:
            writer.event({"type": "done", "data": result} if result is not None else {"type": "done"})
        else:
            writer.result(result)
    except EndRun:
        return  # cancelled (stdin closed) while waiting for a message: nothing more is written
    except Exception as error:  # noqa: BLE001 - every exception becomes an error event
        traceback.print_exc()
        writer.error(describe(error), error_code(error))


def drive(generator, writer, session):
    """Writes each event the generator yields; a question's answer is sent back as the value of
    its yield, a missing one is thrown into it as QuestionTimeout. A plain iterator cannot take
    either: its answers are dropped, and a QuestionTimeout ends the run."""
    is_generator = isinstance(generator, types.GeneratorType)
    reply, failure = None, None
    while True:
        try:
            if not is_generator:
                if failure is not None:
                    raise failure
                event = next(generator)
            else:
                event = generator.throw(failure) if failure is not None else generator.send(reply)
        except StopIteration:
            return
        reply, failure = None, None
        question = None
        if isinstance(event, dict) and event.get("type") == "question":
            question = session.prepare_question(event, writer.count + 1)
            if question is None:
                close(generator)
                return
            event = question[0]
        if not writer.event(event):
            close(generator)
            return
        if question is not None:
            _, question_id, timeout = question
            try:
                reply = session.wait_for_answer(question_id, timeout)
            except QuestionTimeout as timed_out:
                failure = timed_out
            except EndRun:
                try:
                    close(generator)
                except Exception:  # noqa: BLE001 - the run is over either way
                    traceback.print_exc()
                raise


def close(iterator):
    """Closes a generator (its `finally` blocks run); other iterators have nothing to close."""
    closer = getattr(iterator, "close", None)
    if callable(closer):
        closer()


class EndRun(BaseException):
    """Ends the run without writing anything more: stdin closed while a message was awaited.
    A BaseException, so a prefab's `except Exception` does not stop it."""


class QuestionTimeout(Exception):
    """No answer to a question came within its timeout."""

    error_code = "QUESTION_TIMEOUT"


QuestionTimeout.__module__ = "prefab_runtime"

_CLOSED = object()  # put on the message queue when stdin reaches its end


class StdinReader:
    """A runner for one call: reads stdin on a thread of its own, every line a message of the call.
    Free places for unread messages (queued or in the session's backlog) bound what is read: the
    reader waits for one before it reads the next line, so a prefab that reads nothing holds at
    most MESSAGE_CAPACITY messages here and the rest stay in the pipe and the gateway's bound."""

    def __init__(self, stream):
        self.stream = stream
        self.free = threading.Semaphore(MESSAGE_CAPACITY)
        self.queue = queue.SimpleQueue()

    def start(self):
        threading.Thread(target=self._read, name="prefab-stdin", daemon=True).start()

    def _read(self):
        try:
            while True:
                self.free.acquire()
                line = self.stream.readline()
                if not line:
                    break
                if not line.strip():
                    self.free.release()
                    continue
                try:
                    value = json.loads(line)
                except ValueError as error:
                    note(f"ignored a message that is not valid JSON ({error}): {line.strip()!r:.120}")
                    self.free.release()
                    continue
                if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                    note(f"ignored a message that is not an object with a string 'type': {line.strip()!r:.120}")
                    self.free.release()
                    continue
                self.queue.put(value)
        except (OSError, ValueError) as error:
            note(f"stopped reading messages: {error}")
        finally:
            self.queue.put(_CLOSED)


_decode_json = json.JSONDecoder().decode  # what json.loads uses for a str


def parse_line(line):
    """A line of stdin as a JSON object; None (noted on stderr) when it is not one."""
    if not line.strip():
        return None
    try:
        try:
            # Strict UTF-8 straight to the decoder skips json.loads' check for another encoding:
            # a line it takes has no NUL and no byte order mark, which json.loads reads as UTF-8
            # too. Any other line gets json.loads' own value or error.
            value = _decode_json(line.decode("utf-8"))
        except ValueError:
            value = json.loads(line)
    except ValueError as error:
        note(f"ignored a line that is not valid JSON ({error}): {line.strip()!r:.120}")
        return None
    if not isinstance(value, dict):
        note(f"ignored a line that is not a JSON object: {line.strip()!r:.120}")
        return None
    return value


class LineInput:
    """A worker's stdin, read by whichever thread needs its next line (the one that waits for a
    call, or for a message), under a lock and with a timeout: with no thread of its own, a call's
    line reaches the thread that runs it without a hop, and a prefab that reads no messages leaves
    them in the pipe (the gateway's bound then refuses more)."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""
        self.ended = False
        self.lock = threading.Lock()

    def line(self, timeout=None):
        """The next line; None when none is complete within timeout (None: no limit); _CLOSED at
        the end of stdin."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # acquire() without a timeout argument takes the lock in a third of the time.
        if not (self.lock.acquire() if timeout is None else self.lock.acquire(timeout=max(0.0, timeout))):
            return None
        try:
            while True:
                index = self.buffer.find(b"\n")
                if index >= 0:
                    line, self.buffer = self.buffer[:index], self.buffer[index + 1:]
                    return line
                if self.ended:
                    return _CLOSED
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                        return None
                try:
                    chunk = os.read(self.fd, 65536)
                except InterruptedError:
                    continue
                if not chunk:
                    self.ended = True
                    self.buffer = b""
                else:
                    self.buffer += chunk
        finally:
            self.lock.release()


class Session:
    """The messages of one call, from the stdin reader's queue (a worker's: read as asked for);
    messages taken while waiting for a particular answer are kept, in order, in a backlog that is
    read first."""

    def __init__(self, writer, stdin, messages):
        self.writer = writer
        self.queue = messages
        self.backlog = []
        self.free = stdin.free
        self.closed = False
        self.question_count = 0
        self.question_timeout = DEFAULT_QUESTION_TIMEOUT

    def _take(self, timeout):
        """The next message from the queue; None when none comes within timeout (None: no limit).
        Raises EndRun once stdin is closed, and from then on writes nothing more."""
        if self.closed:
            raise EndRun()
        try:
            message = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if message is _CLOSED:
            self.closed = True
            self.writer.silent = True
            raise EndRun()
        return message

    def _closed(self):
        self.closed = True
        self.writer.silent = True
        raise EndRun()

    def _handed_over(self, message):
        """A message leaves the runner's keeping (the prefab has it): its place is free again."""
        self.free.release()
        return message

    def next_message(self, timeout=None):
        if self.backlog:
            return self._handed_over(self.backlog.pop(0))
        message = self._take(None if timeout is None else max(0.0, timeout))
        return message if message is None else self._handed_over(message)

    def messages(self):
        while True:
            try:
                message = self.next_message()
            except EndRun:
                return
            yield message

    def wait_for_answer(self, question_id, timeout):
        """The answer's data.answer; QuestionTimeout when none comes within timeout seconds."""
        for index, message in enumerate(self.backlog):
            if is_answer(message, question_id):
                del self.backlog[index]
                return self._handed_over(message)["data"].get("answer")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self._take(remaining)
            if message is None:
                raise QuestionTimeout(f"no answer to question '{question_id}' within {timeout:g} s")
            if is_answer(message, question_id):
                return self._handed_over(message)["data"].get("answer")
            self.backlog.append(message)

    def new_question_id(self, given):
        self.question_count += 1
        return given if given is not None else f"q{self.question_count}"

    def prepare_question(self, event, number):
        """(event to write, its question id, timeout) for a yielded question, its data completed
        with a questionId; None, after an INVALID_EVENT error, when its data is not an object."""
        data = event.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.writer.error(f"event {number} is a question whose data is {type(data).__name__}, not an object",
                              "INVALID_EVENT")
            return None
        question_id = self.new_question_id(data.get("questionId"))
        event = dict(event, data=dict(data, questionId=question_id))
        timeout = self.question_timeout
        if "timeout_seconds" in event:
            given = seconds_or_none(event["timeout_seconds"])
            if given is False:
                note(f"question '{question_id}': timeout_seconds {event['timeout_seconds']!r} is not a number")
            else:
                timeout = given
        return event, question_id, timeout

    def ask(self, text, options=None, question_id=None, timeout=None):
        question_id = self.new_question_id(question_id)
        data = {"questionId": question_id}
        if options is not None:
            data["options"] = list(options)
        event = {"type": "question", "text": text, "data": data}
        limit = self.question_timeout if timeout is None else seconds_or_none(timeout)
        if limit is False:
            raise TypeError(f"ask: timeout must be a number of seconds, not {timeout!r}")
        if timeout is not None and limit is not None:
            event["timeout_seconds"] = timeout
        if not self.writer.event(event):
            raise EndRun()  # the writer already sent the error event
        return self.wait_for_answer(question_id, limit)

class _NoBound:
    def release(self):
        pass


class WorkerSession(Session):
    """The messages of one call on a worker, read from stdin as the prefab asks for them: a message
    of another call (one sent as its call ended) is dropped. While the backlog holds
    MESSAGE_CAPACITY messages nothing more is read, as with a runner for one call."""

    def __init__(self, writer, stdin, number):
        self.input = stdin
        self.number = number
        super().__init__(writer, _NoReader, None)

    def drop_unread(self):
        """The call has ended: what it left unread is dropped (the rest of its messages, still in
        the pipe, are dropped as they are read)."""
        self.backlog = []

    def _take(self, timeout):
        if self.closed:
            raise EndRun()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if len(self.backlog) >= MESSAGE_CAPACITY:
                time.sleep(remaining if remaining is not None else 3600)
                if remaining is not None:
                    return None
                continue
            line = self.input.line(remaining)
            if line is None:
                return None
            if line is _CLOSED:
                self._closed()
            value = parse_line(line)
            if value is None or value.get("call") != self.number:
                continue  # not a message of this call
            message = value.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                note(f"ignored a message that is not an object with a string 'type': {line.strip()!r:.120}")
                continue
            return message


class _NoReader:
    free = _NoBound()


RUNTIME_DOC = """Talks with the client of a prefab run by the Prefab Gateway's Python runner.

    from prefab_runtime import ask
    name = ask("What is the project called?")
    template = ask(f"Which template for {name}?", options=["cli", "web", "library"])

ask() sends a question event and waits for its answer, next_message() and messages() give the
client's other messages. When the call is cancelled (stdin closed), a wait ends the run quietly.
A generator can instead yield {"type": "question", ...} and get the answer as the yield's value.
"""


class Runtime:
    """The `prefab_runtime` module, bound to the call that runs now."""

    def __init__(self):
        self.session = None

    def current(self):
        if self.session is None:
            raise RuntimeError("prefab_runtime is only usable while a call runs")
        return self.session

    def module(self):
        module = types.ModuleType("prefab_runtime", RUNTIME_DOC)
        runtime = self

        def ask(text, options=None, question_id=None, timeout=None):
            """Sends a question event and blocks until its answer arrives; returns the answer's
            value. Raises QuestionTimeout when none comes within timeout seconds (None: the
            call's question_timeout_seconds)."""
            return runtime.current().ask(text, options=options, question_id=question_id, timeout=timeout)

        def next_message(timeout=None):
            """The next message from the client (a dict with a string "type"), in order; None
            when none comes within timeout seconds (None: wait until one comes)."""
            return runtime.current().next_message(timeout)

        def messages():
            """The client's messages, in order, until stdin closes (the call was cancelled)."""
            return runtime.current().messages()

        for function in (ask, next_message, messages):
            function.__module__ = "prefab_runtime"
            setattr(module, function.__name__, function)
        module.QuestionTimeout = QuestionTimeout
        module.__all__ = ["ask", "next_message", "messages", "QuestionTimeout"]
        return module


def is_answer(message, question_id):
    data = message.get("data")
    return message.get("type") == "answer" and isinstance(data, dict) and data.get("questionId") == question_id


def error_code(error):
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        return "OUTPUT_TOO_LARGE"
    for attribute in ("error_code", "code"):
        code = getattr(error, attribute, None)
        if isinstance(code, str) and code:
            return code
    return "UNEXPECTED_ERROR"


def describe(error):
    return str(error) or type(error).__name__


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _one_shot_encode():
    """_ENCODER.encode without the C encoder json.encoder builds anew for every value: 0.8 against
    1.9 us a small event. It has no check for circular values: one ends in RecursionError, which
    EventWriter.encode reports as it does a circular value's ValueError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    encoder = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(encoder(value, 0))


_encode = _one_shot_encode()
_TERMINAL = ("done", "error")


class EventWriter:
    """Writes the protocol's lines on its own descriptor, each event at once. A worker holds a
    call's terminal event (and result) back and writes it with the call's end line: the gateway
    sends a terminal event only when the call ends, so one write does for both."""

    def __init__(self, fd, hold_terminal=False):
        self.fd = fd
        self.hold_terminal = hold_terminal
        self.held = b""
        self.count = 0
        self.silent = False  # set once the call is cancelled

    def event(self, event):
        """Writes one event; False (after an error event) when it cannot be sent."""
        self.count += 1
        if type(event) is not dict:  # noqa: E721 - the common case, checked fast
            if not isinstance(event, dict):
                self.error(f"event {self.count} is {type(event).__name__} {event!r:.80}, not a dict with a string "
                           "'type'", "INVALID_EVENT")
                return False
        kind = event.get("type")
        if not isinstance(kind, str):
            self.error(f"event {self.count} is {type(event).__name__} {event!r:.80}, not a dict with a string 'type'",
                       "INVALID_EVENT")
            return False
        # encode() inline: an event's own frames were a third of its time.
        try:
            line = _encode(event).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as error:
            self.unsendable(event, f"event {self.count}", error)
            return False
        self.write(line, kind in _TERMINAL)
        return True

    def result(self, value):
        line = self.encode({"result": value}, "the result")
        if line is not None:
            self.write(line, True)

    def error(self, message, code):
        self.write(json.dumps({"type": "error", "data": message, "error_code": code}).encode(), True)

    def encode(self, value, what):
        """The value as one line of UTF-8 JSON (without its newline), or None after an error event."""
        try:
            # encode() also refuses a lone surrogate ("\ud800"), which has no UTF-8 form.
            return _encode(value).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as error:
            self.unsendable(value, what, error)
            return None

    def unsendable(self, value, what, error):
        path, problem = find_unserialisable(value, "") or ("", f"not serialisable ({error})")
        self.error(f"{what} cannot be sent as JSON: field '{path.lstrip('.')}' is {problem}", "NOT_SERIALIZABLE")

    def write(self, line, terminal=False):
        if self.silent:
            return
        if terminal and self.hold_terminal:
            self.held += line + b"\n"
            return
        self.send(line + b"\n")

    def send(self, data):
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except BrokenPipeError:
            os._exit(0)  # the gateway stopped reading: the call was cancelled

    def ready(self):
        self.send(b'{"ready":true}\n')

    def begin_call(self):
        self.count = 0
        self.silent = False
        self.held = b""

    def end_call(self, number, leaving=False):
        """Writes what was held back and the end line, which the gateway never relays; `leaving`:
        the worker ends after it."""
        held, self.held = self.held, b""
        end = b'{"end":' + _encode(number).encode() + (b',"exit":true}\n' if leaving else b"}\n")
        self.send(held + end)


def find_unserialisable(value, path):
    if isinstance(value, str):
        return None if encodable(value) else (path, f"a string with a lone surrogate ({first_surrogate(value)}), "
                                                    "which UTF-8 cannot encode")
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"the number {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return (path, f"a dict with a key of type {type(key).__name__}")
            if isinstance(key, str) and not encodable(key):
                return (path, f"a dict with a key with a lone surrogate ({first_surrogate(key)}), "
                              "which UTF-8 cannot encode")
            found = find_unserialisable(item, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_unserialisable(item, f"{path}[{index}]")
            if found:
                return found
        return None
    return (path, f"a value of type {type(value).__name__}")


def encodable(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def first_surrogate(text):
    return next((f"\\u{ord(c):04x}" for c in text if 0xD800 <= ord(c) <= 0xDFFF), "?")


if __name__ == "__main__":
    main()

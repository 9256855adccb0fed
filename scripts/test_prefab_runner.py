"""Tests of Sources/PrefabGateway/Runtimes/Process/prefab_runner.py run as the gateway runs it: a
subprocess that gets the call and the client's messages on stdin and writes JSON lines on stdout.

    python3 -m pytest -q -p no:cacheprovider scripts/test_prefab_runner.py
"""
import json
import os
import pathlib
import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "Sources/PrefabGateway/Runtimes/Process/prefab_runner.py"
WIZARD = ROOT / "prefabs/python_wizard/main.py"
DEADLINE = 5.0  # seconds any single read may take


class Runner:
    """One runner process; lines from stdout are read by a thread, so no read can hang."""

    def __init__(self, entry):
        self.process = subprocess.Popen(
            [sys.executable, str(RUNNER), str(entry)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # end of stdout

    def call(self, function, inputs=None, **extra):
        self.send({"function": function, "inputs": inputs or {}, "invocation_id": "inv-1",
                   "output_dir": "/tmp", "streaming": True, **extra})

    def send(self, message):
        self.process.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.process.stdin.flush()

    def event(self):
        """The next event written; fails after DEADLINE seconds or at the end of stdout."""
        try:
            line = self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"no event within {DEADLINE} s")
        assert line is not None, f"stdout ended; stderr: {self.stderr()}"
        return json.loads(line)

    def events_until_end(self):
        events = []
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                pytest.fail(f"stdout did not end within {DEADLINE} s; got {events}")
            if line is None:
                return events
            events.append(json.loads(line))

    def close_stdin(self):
        self.process.stdin.close()

    def wait(self):
        return self.process.wait(timeout=DEADLINE)

    def stderr(self):
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


@pytest.fixture
def start():
    runners = []

    def start(entry):
        runners.append(Runner(entry))
        return runners[-1]

    yield start
    for runner in runners:
        runner.kill()


@pytest.fixture
def prefab(tmp_path):
    """Writes a small entry file and returns its path."""

    def prefab(source):
        path = tmp_path / "main.py"
        path.write_text(textwrap.dedent(source))
        return path

    return prefab


def answer(question_id, value):
    return {"type": "answer", "data": {"questionId": question_id, "answer": value}}


def test_the_wizard_answered_over_stdin_finishes_with_both_answers(start):
    runner = start(WIZARD)
    runner.call("wizard_py", {"greeting": "Hi"})
    assert runner.event() == {"type": "start", "data": {"message": "Hi"}}
    assert runner.event()["data"] == {"questionId": "name"}
    runner.send(answer("name", "demo"))
    question = runner.event()
    assert question["text"] == "Which template for demo?"
    assert question["data"] == {"questionId": "template", "options": ["cli", "web", "library"]}
    runner.send(answer("template", "cli"))
    assert runner.events_until_end() == [{"type": "done", "data": {"name": "demo", "template": "cli"}}]
    assert runner.wait() == 0


def test_a_bad_answer_ends_with_the_prefabs_error(start):
    runner = start(WIZARD)
    runner.call("wizard_py")
    runner.event(), runner.event()
    runner.send(answer("name", "demo"))
    runner.event()
    runner.send(answer("template", "desktop"))
    [error] = runner.events_until_end()
    assert error["type"] == "error" and error["error_code"] == "UNEXPECTED_ERROR"
    assert "unknown template 'desktop'" in error["data"]


def test_a_question_without_id_gets_q1_then_q2_and_other_messages_wait(start, prefab):
    runner = start(prefab("""
        import prefab_runtime

        def f():
            first = yield {"type": "question", "text": "First?"}
            second = yield {"type": "question", "text": "Second?", "data": {"hint": "x"}}
            yield {"type": "done", "data": [first, second, prefab_runtime.next_message(timeout=1)]}
    """))
    runner.call("f")
    assert runner.event() == {"type": "question", "text": "First?", "data": {"questionId": "q1"}}
    runner.send("not json")  # ignored, with a note on stderr
    runner.send({"type": "note", "data": "later"})  # not the answer: kept for next_message
    runner.send(answer("q1", 1))
    assert runner.event() == {"type": "question", "text": "Second?", "data": {"hint": "x", "questionId": "q2"}}
    runner.send(answer("q2", 2))
    assert runner.events_until_end() == [{"type": "done", "data": [1, 2, {"type": "note", "data": "later"}]}]
    assert runner.wait() == 0
    assert "not valid JSON" in runner.stderr()


def test_an_answer_sent_before_its_question_is_used(start, prefab):
    runner = start(prefab("""
        import time

        def f():
            yield {"type": "start"}
            time.sleep(0.3)  # the answer arrives meanwhile
            value = yield {"type": "question", "text": "Ready?", "data": {"questionId": "ready"}}
            yield {"type": "done", "data": value}
    """))
    runner.call("f")
    runner.send(answer("ready", "yes"))
    assert runner.event() == {"type": "start"}
    assert runner.event()["data"] == {"questionId": "ready"}
    assert runner.events_until_end() == [{"type": "done", "data": "yes"}]


def test_an_unanswered_question_ends_with_question_timeout(start):
    runner = start(WIZARD)
    runner.call("wizard_py", question_timeout_seconds=0.3)
    runner.event(), runner.event()
    [error] = runner.events_until_end()
    assert error == {"type": "error", "data": "no answer to question 'name' within 0.3 s",
                     "error_code": "QUESTION_TIMEOUT"}
    assert runner.wait() == 0


def test_a_generator_can_catch_the_timeout_and_go_on(start, prefab):
    runner = start(prefab("""
        from prefab_runtime import QuestionTimeout

        def f():
            try:
                value = yield {"type": "question", "text": "Quick?", "timeout_seconds": 0.2}
            except QuestionTimeout as error:
                value = f"{type(error).__name__}: {error} ({error.error_code})"
            yield {"type": "done", "data": value}
    """))
    runner.call("f")  # the call's default (300 s) is overridden by the question's timeout_seconds
    assert runner.event()["data"] == {"questionId": "q1"}
    assert runner.events_until_end() == [
        {"type": "done", "data": "QuestionTimeout: no answer to question 'q1' within 0.2 s (QUESTION_TIMEOUT)"}]


def test_closing_stdin_while_waiting_ends_quietly(start, prefab):
    runner = start(prefab("""
        def f():
            try:
                yield {"type": "question", "text": "Anyone?"}
            finally:
                print("cleaned up")  # reaches stderr
            yield {"type": "done"}
    """))
    runner.call("f")
    assert runner.event()["type"] == "question"
    runner.close_stdin()
    assert runner.events_until_end() == []
    assert runner.wait() == 0
    assert "cleaned up" in runner.stderr()


def test_closing_stdin_while_ask_waits_ends_quietly(start, prefab):
    runner = start(prefab("""
        from prefab_runtime import ask

        def f():
            try:
                ask("Anyone?")
            except Exception:
                yield {"type": "error", "data": "must not be written"}
            yield {"type": "done"}
    """))
    runner.call("f")
    assert runner.event()["type"] == "question"
    runner.close_stdin()
    assert runner.events_until_end() == []
    assert runner.wait() == 0


def test_ask_and_next_message_from_a_prefab(start, prefab):
    runner = start(prefab("""
        from prefab_runtime import ask, messages, next_message

        def f(count):
            name = ask("Name?")
            color = ask("Color?", options=["red", "blue"], question_id="color", timeout=5)
            yield {"type": "progress", "data": {"name": name, "color": color}}
            yield {"type": "nothing", "data": next_message(timeout=0.1)}
            received = []
            for message in messages():
                received.append(message["data"])
                if len(received) == count:
                    break
            yield {"type": "done", "data": received}
    """))
    runner.call("f", {"count": 2})
    assert runner.event() == {"type": "question", "text": "Name?", "data": {"questionId": "q1"}}
    runner.send({"type": "chat", "data": "early"})  # arrives while ask waits: kept, in order
    runner.send(answer("q1", "Ada"))
    assert runner.event() == {"type": "question", "text": "Color?", "timeout_seconds": 5,
                              "data": {"questionId": "color", "options": ["red", "blue"]}}
    runner.send(answer("color", "blue"))
    assert runner.event() == {"type": "progress", "data": {"name": "Ada", "color": "blue"}}
    assert runner.event() == {"type": "nothing", "data": {"type": "chat", "data": "early"}}
    runner.send({"type": "chat", "data": "one"})
    runner.send({"type": "chat", "data": "two"})
    assert runner.events_until_end() == [{"type": "done", "data": ["one", "two"]}]
    assert runner.wait() == 0


def test_ask_times_out_with_question_timeout(start, prefab):
    runner = start(prefab("""
        import prefab_runtime

        def f():
            prefab_runtime.ask("Anyone?", question_id="who")
            yield {"type": "done"}
    """))
    runner.call("f", question_timeout_seconds=0.2)
    assert runner.event()["data"] == {"questionId": "who"}
    assert runner.events_until_end() == [
        {"type": "error", "data": "no answer to question 'who' within 0.2 s", "error_code": "QUESTION_TIMEOUT"}]


def test_plain_events_and_results_are_unchanged(start, prefab):
    entry = prefab("""
        def stream():
            yield {"type": "progress", "data": 1}
            yield {"type": "bad", "data": float("nan")}

        def plain(x):
            return x * 2
    """)
    runner = start(entry)
    runner.call("stream")
    assert runner.event() == {"type": "progress", "data": 1}
    [error] = runner.events_until_end()
    assert error["error_code"] == "NOT_SERIALIZABLE"

    runner = start(entry)
    runner.call("plain", {"x": 21}, streaming=False)
    assert runner.events_until_end() == [{"result": 42}]


def test_a_lone_surrogate_is_an_error_naming_its_field(start, prefab):
    entry = prefab("""
        def stream():
            yield {"type": "content", "data": "fine"}
            yield {"type": "content", "data": {"text": "broken \\ud800 text"}}

        def keyed():
            return {"ok\\udfff": 1}
    """)
    runner = start(entry)
    runner.call("stream")
    assert runner.event() == {"type": "content", "data": "fine"}
    assert runner.events_until_end() == [{
        "type": "error", "error_code": "NOT_SERIALIZABLE",
        "data": "event 2 cannot be sent as JSON: field 'data.text' is a string with a lone surrogate (\\ud800), "
                "which UTF-8 cannot encode"}]

    runner = start(entry)
    runner.call("keyed", streaming=False)
    [error] = runner.events_until_end()
    assert error["error_code"] == "NOT_SERIALIZABLE"
    assert "a key with a lone surrogate (\\udfff)" in error["data"]


def test_an_iterator_that_is_not_a_generator_is_streamed(start, prefab):
    entry = prefab("""
        def listed():
            return iter([{"type": "progress", "data": 1}, {"type": "content", "data": "x"}])

        def mapped(n):
            return map(lambda i: {"type": "progress", "data": i}, range(n))
    """)
    runner = start(entry)
    runner.call("listed")
    assert runner.events_until_end() == [{"type": "progress", "data": 1}, {"type": "content", "data": "x"}]

    runner = start(entry)
    runner.call("mapped", {"n": 3})
    assert runner.events_until_end() == [{"type": "progress", "data": i} for i in range(3)]


def test_a_prefab_that_reads_no_messages_holds_at_most_the_bound(start, prefab):
    # The runner stops reading stdin once MESSAGE_CAPACITY (256) messages wait unread: the pipe
    # then fills and writes block. Without the bound it reads all 5,000 (about 5 MB) into memory.
    entry = prefab("""
        import time

        def deaf():
            yield {"type": "start"}
            time.sleep(30)
    """)
    runner = start(entry)
    runner.call("deaf")
    assert runner.event() == {"type": "start"}
    message = (json.dumps({"type": "note", "data": "x" * 1000}) + "\n").encode()
    descriptor = runner.process.stdin.fileno()
    os.set_blocking(descriptor, False)
    # Writes until the runner has taken nothing for a second (or all 5,000 are in).
    written, stalled_since = 0, None
    while written < 5000 * len(message):
        try:
            written += os.write(descriptor, message[written % len(message):])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    sent = written // len(message)
    # 256 held by the runner, a 64 KiB pipe (~65 messages), Python's 8 KiB read buffer (~8) and
    # the line being written.
    assert sent < 256 + 65 + 8 + 10, f"the runner took {sent} messages from a prefab that reads none"

"""Runs one call of a Python prefab for the Prefab Gateway.

Usage: python3 prefab_runner.py ENTRY_FILE

Reads the call as one JSON line on stdin:
    {"function": "...", "inputs": {...}, "invocation_id": "...", "output_dir": "...", "streaming": true}
imports ENTRY_FILE, calls the function with the inputs as keyword arguments, and writes to stdout
one JSON line per event a generator yields, or {"result": ...} for a plain return value. An
exception becomes an error event. stdin stays open for messages from the gateway.

Anything the prefab prints goes to stderr, so it can never corrupt the protocol. Only the
standard library is used.
"""

import importlib.util
import types
import json
import math
import os
import sys
import traceback


def main():
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    # print() and C extensions writing to fd 1 now reach stderr, which the gateway logs.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    writer = EventWriter(protocol)
    # The prefab is imported before the call arrives, so a pre-started (warm) runner only has to
    # call the function.
    module, load_error = None, None
    try:
        entry = os.path.abspath(sys.argv[1])
        module = import_entry(entry)
    except Exception as error:  # noqa: BLE001 - any import failure is the prefab's error
        traceback.print_exc()
        load_error = error
    try:
        call = json.loads(sys.stdin.readline())
    except ValueError as error:
        writer.error(f"the runner got no valid call: {error}", "PROTOCOL_ERROR")
        return
    # A warm runner was started before its invocation: its variables arrive with the call.
    os.environ["PREFAB_INVOCATION_ID"] = call.get("invocation_id", "")
    os.environ["PREFAB_OUTPUT_DIR"] = call.get("output_dir", "")
    os.environ["PREFAB_FUNCTION"] = call.get("function", "")
    if load_error is not None:
        writer.error(f"cannot load {call.get('function')} from {os.path.basename(sys.argv[1])}: "
                     f"{describe(load_error)}", getattr(load_error, "error_code", None) or "PREFAB_LOAD_FAILED")
        return
    function = getattr(module, call.get("function", ""), None)
    if not callable(function):
        writer.error(f"{os.path.basename(sys.argv[1])} has no function '{call.get('function')}'", "FUNCTION_NOT_FOUND")
        return
    run(function, call.get("inputs") or {}, bool(call.get("streaming", True)), writer)


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


def run(function, inputs, streaming, writer):
    try:
        result = function(**inputs)
        if isinstance(result, types.GeneratorType):
            for event in result:
                if not writer.event(event):
                    result.close()
                    return
        elif streaming:
            writer.event({"type": "done", "data": result} if result is not None else {"type": "done"})
        else:
            writer.result(result)
    except Exception as error:  # noqa: BLE001 - every exception becomes an error event
        traceback.print_exc()
        writer.error(describe(error), error_code(error))


def error_code(error):
    for attribute in ("error_code", "code"):
        code = getattr(error, attribute, None)
        if isinstance(code, str) and code:
            return code
    return "UNEXPECTED_ERROR"


def describe(error):
    return str(error) or type(error).__name__


class EventWriter:
    def __init__(self, stream):
        self.stream = stream
        self.count = 0

    def event(self, event):
        """Writes one event; False (after an error event) when it cannot be sent."""
        self.count += 1
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error(f"event {self.count} is {type(event).__name__} {event!r:.80}, not a dict with a string 'type'",
                       "INVALID_EVENT")
            return False
        line = self.encode(event, f"event {self.count}")
        if line is None:
            return False
        self.write(line)
        return True

    def result(self, value):
        line = self.encode({"result": value}, "the result")
        if line is not None:
            self.write(line)

    def error(self, message, code):
        self.write(json.dumps({"type": "error", "data": message, "error_code": code}))

    def encode(self, value, what):
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as error:
            path, problem = find_unserialisable(value, "") or ("", f"not serialisable ({error})")
            self.error(f"{what} cannot be sent as JSON: field '{path.lstrip('.')}' is {problem}", "NOT_SERIALIZABLE")
            return None

    def write(self, line):
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            os._exit(0)  # the gateway stopped reading: the call was cancelled


def find_unserialisable(value, path):
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"the number {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return (path, f"a dict with a key of type {type(key).__name__}")
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


if __name__ == "__main__":
    main()

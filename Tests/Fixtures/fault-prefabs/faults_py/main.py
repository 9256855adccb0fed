"""Python prefabs that misbehave on purpose; each first reports its process id."""
import os
import signal
import time


def started():
    return {"type": "start", "data": {"pid": os.getpid()}}


def py_crash():
    yield started()
    yield {"type": "content", "data": "about to exit"}
    os._exit(3)


def py_signal():
    yield started()
    yield {"type": "content", "data": "about to crash"}
    os.kill(os.getpid(), signal.SIGSEGV)


def py_hang():
    # No event at all: the call can only end by its time limit.
    while True:
        time.sleep(3600)
    yield


def py_flood(count=200000):
    yield started()
    for index in range(count):
        yield {"type": "content", "data": index}
    yield {"type": "done", "data": {"count": count}}


def py_flood_forever():
    yield started()
    index = 0
    while True:
        index += 1
        yield {"type": "content", "data": index}


def py_ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    yield started()
    while True:
        time.sleep(0.05)


def py_write_1gb():
    yield started()
    chunk = b"\0" * (1 << 20)
    with open(os.path.join(os.environ["PREFAB_OUTPUT_DIR"], "big.bin"), "wb") as file:
        for _ in range(1024):
            file.write(chunk)
    yield {"type": "done", "data": "wrote 1 GB"}

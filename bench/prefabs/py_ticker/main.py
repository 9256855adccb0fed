import time


def ticker_py(n: int = 20, interval_ms: int = 500):
    for i in range(1, max(n, 1) + 1):
        if i > 1:
            time.sleep(interval_ms / 1000)
        yield {"type": "progress", "data": {"current": i, "total": n, "percentage": int(i * 100 / n)}}
    yield {"type": "done"}

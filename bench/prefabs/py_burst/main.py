def burst_py(n: int = 1000):
    yield {"type": "start"}
    for _ in range(n):
        yield {"type": "content", "data": "x"}
    yield {"type": "done"}

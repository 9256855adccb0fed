"""The benchmark's stand-in for a real prefab that imports an SDK at module level (the seed's
`chat_stream` imports `openai`; 300 ms and more is common): the import takes 300 ms, the call is an
echo. A process per call pays the 300 ms on every call; a worker that lives pays it once."""
import time

time.sleep(0.3)


def slow_import_py(text: str = "hello"):
    yield {"type": "start"}
    yield {"type": "content", "data": text}
    yield {"type": "done"}

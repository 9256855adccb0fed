def echo_py(text: str = "hello"):
    yield {"type": "start"}
    yield {"type": "content", "data": text}
    yield {"type": "done"}

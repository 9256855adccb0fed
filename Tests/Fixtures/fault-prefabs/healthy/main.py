"""A well-behaved function: the control beside the faults."""


def healthy(text: str):
    yield {"type": "content", "data": text}
    yield {"type": "done", "data": {"length": len(text)}}

"""The peer: a prefab gateway as the common FastAPI tutorial builds it.

POST /invoke/<name> with {"inputs": {...}} streams the function's events as Server-Sent Events,
with StreamingResponse over a synchronous generator. Run: uvicorn app:app --workers N
"""
import json
import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

app = FastAPI()


def burst(n: int = 1000):
    yield {"type": "start"}
    for _ in range(n):
        yield {"type": "content", "data": "x"}
    yield {"type": "done"}


def ticker(n: int = 20, interval_ms: int = 500):
    for i in range(1, max(n, 1) + 1):
        if i > 1:
            time.sleep(interval_ms / 1000)
        yield {"type": "progress", "data": {"current": i, "total": n, "percentage": int(i * 100 / n)}}
    yield {"type": "done"}


def echo(text: str = "hello"):
    yield {"type": "start"}
    yield {"type": "content", "data": text}
    yield {"type": "done"}


FUNCTIONS = {"burst": burst, "ticker": ticker, "echo": echo}


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/invoke/{name}")
async def invoke(name: str, request: Request):
    function = FUNCTIONS.get(name)
    if function is None:
        raise HTTPException(status_code=404, detail=f"no function named {name}")
    body = await request.json()
    events = function(**body.get("inputs", {}))

    def stream():
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

"""Baseline (a): the naive design, a web process that proxies the upstream stream itself.

``POST /chat`` with ``{"model", "messages"}`` opens the upstream stream in the request's
own greenlet and re-emits each delta as SSE (``event: delta`` / ``data:
{"index":0,"content":…}``, then ``event: done``). Nothing is stored: a dropped connection
or a restart loses the answer. Served like Sluice's gateway:
``gunicorn --config gunicorn.conf.py bench.direct_proxy:app`` (gevent, 1 worker).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from flask import Flask, Response, request

from bench.upstream_client import make_session, read_contents

app = Flask(__name__)
BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8091/v1").rstrip("/")
SESSION = make_session(BASE_URL, pool_size=2000)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _frame(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _relay(model: str) -> Iterator[bytes]:
    yield b": direct\n\n"  # first byte at once, as Sluice's gateway does
    try:
        for batch in read_contents(SESSION, BASE_URL, model):
            # all deltas of one network read in one write
            yield "".join(_frame("delta", {"index": 0, "content": c}) for c in batch).encode()
    except Exception as exc:
        yield _frame("error", {"error": {"message": f"{type(exc).__name__}: {exc}"}}).encode()
        return
    yield _frame("done", {}).encode()


@app.post("/chat")
def chat() -> Response:
    body = request.get_json(force=True, silent=True) or {}
    model = str(body.get("model") or "bench")
    return Response(_relay(model), mimetype="text/event-stream", headers=SSE_HEADERS)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

"""Reading a streamed completion with ``requests``, for the two baselines.

Both baselines read the upstream as Sluice's worker does (``worker/runner.py``): one
keep-alive ``requests.Session`` per process with the same pool settings,
``iter_content(chunk_size=None)`` (one item per network read) and Sluice's own SSE
decoder, so the comparison is between architectures, not between parsers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

from sluice.sse_decoder import SSEDecoder
from worker.upstream import make_session

__all__ = ["make_session", "read_contents"]


def _contents(payload: Any) -> list[str]:
    out: list[str] = []
    for choice in payload.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if isinstance(content, str) and content:
            out.append(content)
    return out


def read_contents(
    session: requests.Session, base_url: str, model: str, timeout: float = 120
) -> Iterator[list[str]]:
    """The content deltas of one streamed completion, as a list per network read.

    Raises ``requests.HTTPError`` for a non-200 answer and ``RuntimeError`` when the
    stream ends without ``data: [DONE]``.
    """
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Accept": "text/event-stream", "Authorization": "Bearer bench"}
    response = session.post(
        f"{base_url}/chat/completions", json=body, headers=headers, stream=True,
        timeout=(10, timeout),
    )  # fmt: skip
    try:
        response.raise_for_status()
        decoder = SSEDecoder()
        for raw in response.iter_content(chunk_size=None):
            batch: list[str] = []
            for event in decoder.feed(raw):
                if event.data.strip() == "[DONE]":
                    if batch:
                        yield batch
                    return
                batch.extend(_contents(json.loads(event.data)))
            if batch:
                yield batch
        raise RuntimeError("the upstream closed the stream before [DONE]")
    finally:
        response.close()

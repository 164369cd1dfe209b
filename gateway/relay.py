"""A job's events as a ``text/event-stream`` response body (``/v1/jobs/<id>/events``).

Framing choices (read before changing):

* The first byte is written at once (some PaaS routers drop a request that sends nothing
  for 30 s) and a comment follows every idle heartbeat.
* Comments are a lone ``: …\\n`` line, with no blank line after them. A blank line there
  is harmless to browsers, but decoders derived from httpx-sse (openai-python's among
  them) dispatch an empty event for it once an id has been seen.
* For the same reason ``retry:`` rides in the first event instead of a block of its own.
* ``data`` is always one line of JSON (see ``sluice.events``).
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.feed import JobFeed
from sluice.events import sse_frame

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Encoding": "identity",
}


def sse_body(feed: JobFeed, retry_ms: int) -> Iterator[bytes]:
    yield f": sluice job {feed.job_id}\n".encode()
    retry = f"retry: {retry_ms}\n"
    for item in feed:
        if isinstance(item, tuple):
            yield (retry + sse_frame(*item)).encode()
            retry = ""
        else:
            yield b": keep-alive\n"

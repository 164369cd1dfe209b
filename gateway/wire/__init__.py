"""Wire formats: each a projection of a job's event log onto what one kind of client reads.

Every format is a module here with the same shape, a class that

* takes the job's events, as a ``gateway.feed.JobFeed`` yields them (``(id, log entry)``
  pairs in order, and ``HEARTBEAT`` when the job is quiet), and yields the bytes of its
  frames (``frames(items)``), ending where its format ends; and
* maps its own cursor, what its clients send to resume, to an event id of the log
  (``event_id(cursor)``: None when the cursor is not one of its own).

``sluice_sse`` is Sluice's own event stream (``/v1/jobs/<id>/events``); ``openai_chunks``
is OpenAI's ``chat.completion.chunk`` stream (``/v1/chat/completions``). The log stays the
one source of truth: a projection never reads Redis, so any format resumes from any
gateway process, as the log does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Protocol

from flask import Response

from gateway import stream_quota
from gateway.feed import Item, JobFeed
from sluice.metrics import ACTIVE_STREAMS

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Encoding": "identity",
}


class Projection(Protocol):
    def frames(self, items: Iterable[Item]) -> Iterator[bytes]: ...

    @staticmethod
    def event_id(cursor: str) -> int | None: ...


def stream_response(
    frames: Iterator[bytes], feed: JobFeed, headers: Mapping[str, str] | None = None
) -> Response:
    """A ``text/event-stream`` response of ``frames``, counted in
    ``sluice_active_streams`` while it lasts. The server closes the body even if it never
    started it (a client gone before the first byte): the feed's subscription goes too,
    and the request's place among its client's open streams (``gateway.stream_quota``),
    if its route reserved one."""
    return Response(
        _Body(frames, feed, stream_quota.take()),
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, **(headers or {})},
        direct_passthrough=True,
    )


class _Body:
    """The response body: the server iterates the generator itself (no wrapper called
    for every frame), and ``close`` (which the server calls even when the body never
    started) ends it, the feed's subscription and the stream's place in its client's
    quota. A client that disconnects mid-stream is noticed on the server's next write
    (the next event, or a heartbeat at the latest), which fails and closes the body."""

    def __init__(
        self, frames: Iterator[bytes], feed: JobFeed, place: stream_quota.Place | None
    ) -> None:
        self._frames = _joined(frames, feed)
        self._feed = feed
        self._place = place

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        try:
            self._frames.close()
        finally:
            try:
                self._feed.close()
            finally:
                if self._place is not None:
                    self._place.release()


def _joined(frames: Iterator[bytes], feed: JobFeed) -> Generator[bytes, None, None]:
    """The frames, those of items that came together joined into one chunk, counted in
    ``sluice_active_streams`` while they last.

    The server writes each chunk of the body with its own system call. A late joiner
    replaying a long answer, or a stream whose client reads slower than its job writes,
    has its items arrive many at a time (a page of the log, the messages that piled up);
    one write per frame would cost a system call and a pass through the server's chunk
    writer for every delta. While the feed says its next item is already in memory
    (``JobFeed.more``), frames wait in a list for it, so nothing waits on I/O: a live
    delta that arrives alone goes out at once, as before. (One generator for both jobs:
    each level of generators a parked stream is suspended in costs its greenlet ~0.6 kB.)
    """
    ACTIVE_STREAMS.inc()
    try:
        waiting: list[bytes] = []
        for frame in frames:
            if feed.more:
                waiting.append(frame)
                continue
            if waiting:
                waiting.append(frame)
                frame = b"".join(waiting)
                waiting.clear()
            yield frame
        if waiting:
            yield b"".join(waiting)
    finally:
        with contextlib.suppress(Exception):
            ACTIVE_STREAMS.dec()

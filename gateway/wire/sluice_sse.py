"""Sluice's own event stream: a job's log as SSE frames (``/v1/jobs/<id>/events``).

The frame is ``id: N\\nevent: T\\ndata: <json>\\n\\n``, rendered from the stored log entry
without parsing its JSON; the data is always one JSON line, so a token containing a
newline can never break the framing (flask-sse's ``splitlines()`` bug). The cursor is the
event id itself (``Last-Event-ID``).

Framing choices (read before changing):

* The first byte is written at once (some PaaS routers drop a request that sends nothing
  for 30 s) and a comment follows every idle heartbeat.
* Comments are a lone ``: …\\n`` line, with no blank line after them. A blank line there
  is harmless to browsers, but decoders derived from httpx-sse (openai-python's among
  them) dispatch an empty event for it once an id has been seen.
* For the same reason ``retry:`` rides in the first event instead of a block of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.feed import Item
from sluice.events import parse_event_id


def sse_frame(event_id: int, entry: str, id_prefix: str = "") -> str:
    """Render a stored log entry as one SSE event, without parsing its JSON."""
    type_, _, data = entry.partition(" ")
    return f"id: {id_prefix}{event_id}\nevent: {type_}\ndata: {data}\n\n"


class SluiceFrames:
    """The projection: every event, as it is in the log, under its own id."""

    id_prefix = ""

    def __init__(self, job_id: str, retry_ms: int) -> None:
        self.job_id = job_id
        self.retry_ms = retry_ms

    @staticmethod
    def event_id(cursor: str) -> int | None:
        return parse_event_id(cursor)

    def frames(self, items: Iterable[Item]) -> Iterator[bytes]:
        yield f": sluice job {self.job_id}\n".encode()
        retry = f"retry: {self.retry_ms}\n"
        for item in items:
            if isinstance(item, tuple):
                yield (retry + sse_frame(*item, self.id_prefix)).encode()
                retry = ""
            else:
                yield b": keep-alive\n"


class ConversationFrames(SluiceFrames):
    """A conversation's stream (``/v1/conversations/<id>/events``): its latest job's
    events, each id naming the job too (``<job id>/<event id>``), so that a client that
    reconnects after the conversation moved on to its next job is not resumed into the
    new job at the old job's position: its cursor names another job, and it gets the
    new one from its first event."""

    def __init__(self, job_id: str, retry_ms: int) -> None:
        super().__init__(job_id, retry_ms)
        self.id_prefix = f"{job_id}/"

    def after(self, cursor: str) -> int | None:
        """The event id to resume this job after: the cursor's own when it names this
        job, 0 when it names another (or is empty, or "0"), None when it is no cursor."""
        text = cursor.strip()
        if text in ("", "0"):
            return 0
        job_id, slash, event_id = text.rpartition("/")
        if not slash or not job_id:
            return None
        after = parse_event_id(event_id)
        if after is None:
            return None
        return after if job_id == self.job_id else 0

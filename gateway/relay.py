"""Relaying one job's events to one SSE client, from any gateway process.

The order of operations is the design (do not "simplify" it):

1. Subscribe to the job's live channel and wait for Redis to confirm the subscription.
2. Replay the durable log after the client's last event id.
3. Forward live messages, skipping ids already sent; if a live id jumps ahead (a message
   was published before step 1 completed, or pub/sub dropped one), re-read the log.
4. When nothing arrives for a heartbeat interval, re-read the log (pub/sub is
   at-most-once: a lost terminal event must not hang the client) and send a comment,
   which also tells us, through a failed write, that the client has gone.

The response ends after the terminal event; a reconnect at that point gets 204.

Comments (the first byte, heartbeats) are a lone ``: …\n`` line with no blank line after
it. A blank line there would be harmless to browsers, but decoders derived from httpx-sse
(openai-python's among them) dispatch an empty event for it once an id has been seen.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import redis

from sluice.events import TERMINAL_EVENTS, entry_type, parse_message, sse_frame
from sluice.jobs import JobStore

log = logging.getLogger("sluice.gateway.relay")

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Encoding": "identity",
}


class Relay:
    def __init__(
        self, store: JobStore, job_id: str, after: int, heartbeat: float, retry_ms: int
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.last = after
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.finished = False
        self._sent_retry = False

    def _emit(self, entries: list[tuple[int, str]]) -> Iterator[str]:
        for event_id, entry in entries:
            if event_id <= self.last:
                continue
            if event_id > self.last + 1:
                # a gap: read what we missed from the log, then carry on
                yield from self._emit(self.store.read_events(self.job_id, self.last))
                if event_id <= self.last:
                    continue
            frame = sse_frame(event_id, entry)
            if not self._sent_retry:
                # in the first event, not alone: a block with only ``retry:`` is dispatched
                # as an empty event by some SSE clients (httpx-sse, openai-python)
                frame = f"retry: {self.retry_ms}\n{frame}"
                self._sent_retry = True
            yield frame
            self.last = event_id
            if entry_type(entry) in TERMINAL_EVENTS:
                self.finished = True
                return

    def stream(self) -> Iterator[bytes]:
        """The response body: SSE text encoded as UTF-8, written as soon as produced."""
        for text in self._frames():
            yield text.encode()

    def _frames(self) -> Iterator[str]:
        # first byte at once: some PaaS routers drop a request with no byte in 30 s
        yield f": sluice job {self.job_id}\n"
        pubsub = self.store.redis.pubsub()
        try:
            pubsub.subscribe(self.store.keys.channel(self.job_id))
            self._await_subscription(pubsub)
            yield from self._emit(self.store.read_events(self.job_id, self.last))
            next_beat = time.monotonic() + self.heartbeat
            while not self.finished:
                timeout = max(0.0, next_beat - time.monotonic())
                message = pubsub.get_message(timeout=timeout)
                if message is not None and message["type"] == "message":
                    yield from self._emit(list(parse_message(message["data"])))
                    continue
                if time.monotonic() >= next_beat:
                    yield from self._emit(self.store.read_events(self.job_id, self.last))
                    if self.finished:
                        break
                    if self.store.get(self.job_id) is None:
                        log.info("job %s expired while streaming", self.job_id)
                        break
                    yield ": keep-alive\n"
                    next_beat = time.monotonic() + self.heartbeat
        except redis.RedisError as exc:
            # The client reconnects with Last-Event-ID, to this or another process.
            log.warning("job %s: relay lost Redis (%s); closing the stream", self.job_id, exc)
        except GeneratorExit:
            log.debug("job %s: client went away at event %d", self.job_id, self.last)
            raise
        finally:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()

    @staticmethod
    def _await_subscription(pubsub: redis.client.PubSub) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                return
        raise redis.TimeoutError("no subscription confirmation from Redis")

"""Following one job's events, from any gateway process: replay, then live, then the end.

The order of operations is the design (do not "simplify" it):

1. Subscribe to the job's live channel and wait for Redis to confirm the subscription
   (through the process's shared subscriber, ``gateway/hub.py``, by default).
2. Replay the durable log after the client's last event id.
3. Forward live messages, skipping ids already sent; if a live id jumps ahead (a message
   was published before step 1 completed, or pub/sub dropped one), re-read the log.
4. When nothing arrives for a heartbeat interval, re-read the log (pub/sub is
   at-most-once: a lost terminal event must not hang the client), check that the job still
   exists and has not ended, and yield ``HEARTBEAT`` so the caller writes something: a
   failed write is also how a WSGI server learns that the client has gone.

The feed ends after the terminal event (or when the job expired, or Redis went away: the
client then reconnects with its last id, to this process or another).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final, Protocol

import redis

from gateway.hub import Hub
from sluice.events import TERMINAL_EVENTS, entry_type, parse_message
from sluice.store import TERMINAL_STATUSES, JobStore

log = logging.getLogger("sluice.gateway.feed")
REPLAY_PAGE = 500  # log entries read at a time when catching up


class _Heartbeat:
    def __repr__(self) -> str:
        return "HEARTBEAT"


HEARTBEAT: Final = _Heartbeat()
# Set when this process is shutting down (SIGTERM): every feed ends at once, without a
# terminal event, so its client reconnects (with its last id) to another process.
DRAINING = threading.Event()


def drain() -> None:
    DRAINING.set()
    for hub in list(Hub.instances):
        hub.wake_all()


Item = tuple[int, str] | _Heartbeat


class Inbox(Protocol):
    """One feed's subscription to its job's channel (``gateway.hub.Listener``)."""

    stale: bool  # messages were dropped: re-read the log

    def get(self, timeout: float) -> list[str] | None: ...

    def close(self) -> None: ...


Subscribe = Callable[[str], Inbox]  # channel -> an inbox, once Redis confirmed it


class JobFeed:
    def __init__(
        self, store: JobStore, job_id: str, after: int, heartbeat: float, subscribe: Subscribe
    ) -> None:
        self.store = store
        self.subscribe = subscribe
        self.job_id = job_id
        self.last = after
        self.heartbeat = heartbeat
        self.finished = False
        # True while the next item is already in memory (the rest of a page of the log, or
        # of the messages that came together): the response joins their frames into one
        # write (``gateway.wire.stream_response``)
        self.more = False
        self._inbox: Inbox | None = None
        self._beat_by: float | None = None
        self._log_empty_when_subscribed = False

    def open(self) -> JobFeed:
        """Step 1 now: subscribe (idempotent). A route that starts the job itself calls
        this before the job is queued, so its first events arrive live, not by replay."""
        self._subscription()
        return self

    def subscribed_before_the_job(self) -> JobFeed:
        """The route subscribed before the job was even stored: every event of it comes
        live (or, after a gap, from the log), so the first read of the log, which could
        only find it empty, is skipped."""
        self._log_empty_when_subscribed = True
        return self

    def beat_by(self, deadline: float) -> JobFeed:
        """Yield a ``HEARTBEAT`` no later than ``deadline`` (``time.monotonic()``) if
        nothing came before, however long the heartbeat interval: a route that must send
        its first byte by a deadline learns in time that it has nothing else to send."""
        self._beat_by = deadline
        return self

    def _next_beat(self) -> float:
        beat = time.monotonic() + self.heartbeat
        if self._beat_by is not None and self._beat_by <= beat:
            beat, self._beat_by = self._beat_by, None
        return beat

    def _subscription(self) -> Inbox:
        if self._inbox is None:
            self._inbox = self.subscribe(self.store.keys.channel(self.job_id))
        return self._inbox

    def close(self) -> None:
        """Drop the subscription (idempotent; iterating to the end also does it)."""
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            with contextlib.suppress(redis.RedisError):
                inbox.close()

    def _new(self, entries: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        """The entries not yet sent, in order, filling gaps from the log. ``more`` says,
        as each is yielded, whether the next one is already here."""
        fresh = [pair for pair in entries if pair[0] > self.last]
        for position, (event_id, entry) in enumerate(fresh):
            if event_id <= self.last:
                continue
            if event_id > self.last + 1:
                self.more = False
                yield from self._from_log()
                if event_id <= self.last:
                    continue
            self.last = event_id
            terminal = entry_type(entry) in TERMINAL_EVENTS
            following = fresh[position + 1][0] if position + 1 < len(fresh) else None
            self.more = not terminal and following == event_id + 1
            yield event_id, entry
            if terminal:
                self.finished = True
                return
        self.more = False

    def _from_log(self) -> Iterator[tuple[int, str]]:
        """The log after the last event sent, a page at a time: a client that reads slowly
        holds one page in this process, not the rest of a long answer."""
        while not self.finished:
            page = self.store.read_events(self.job_id, self.last, limit=REPLAY_PAGE)
            yield from self._new(page)
            if len(page) < REPLAY_PAGE:
                return

    def __iter__(self) -> Iterator[Item]:
        try:
            inbox = self._subscription()
            if not self._log_empty_when_subscribed:
                yield from self._from_log()
            next_beat = self._next_beat()
            while not self.finished:
                messages = inbox.get(timeout=max(0.0, next_beat - time.monotonic()))
                if DRAINING.is_set():
                    log.info(
                        "job %s: this gateway is shutting down; ending the stream", self.job_id
                    )
                    break
                if inbox.stale:  # messages were dropped: the log has them
                    inbox.stale = False
                    yield from self._from_log()
                if messages:
                    yield from self._new([pair for m in messages for pair in parse_message(m)])
                    continue
                if time.monotonic() >= next_beat:
                    yield from self._from_log()
                    if self.finished:
                        break
                    progress = self.store.progress(self.job_id)
                    if progress is None:
                        log.info("job %s expired while streaming", self.job_id)
                        break
                    status, last_event_id = progress
                    if status in TERMINAL_STATUSES:
                        yield from self._from_log()  # (it may have ended since that read)
                        if not self.finished:
                            # ended, and its log holds nothing more for this client (a
                            # log that lost its tail): waiting would never end; the
                            # client's reconnect learns why (410 cursor_gone)
                            log.warning("job %s ended at event %d; its log ends at %d",
                                        self.job_id, last_event_id, self.last)  # fmt: skip
                        break
                    yield HEARTBEAT
                    next_beat = self._next_beat()
        except redis.RedisError as exc:
            log.warning("job %s: the feed lost Redis (%s); closing the stream", self.job_id, exc)
        except GeneratorExit:
            log.debug("job %s: client went away at event %d", self.job_id, self.last)
            raise
        finally:
            self.close()

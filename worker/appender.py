"""Group commit for the event appends of every job a worker process runs.

Each running job appends the deltas of every upstream read in one Lua call (``APPEND``:
RPUSH to the log and PUBLISH, ``sluice.scripts``). Sent one call per append, a worker with
100 streams makes 100 separate round trips, and each costs a send and a receive system
call, a pool checkout and redis-py's bookkeeping: about 40 % of the worker's CPU at 100
streams (py-spy), and the worker's CPU is what delays a delta when streams start in a
burst. Here the appends that arrive while one round trip is in flight all go out in the
next one, as one pipeline: one send and one receive for the whole batch.

Nothing waits to fill a batch (no timer, no size to reach): an append that finds the line
idle is sent at once, so an idle stream's delta is not held back. Appends go out in the
order they were handed over, so a job need not wait for one reply before handing over its
next append: ``worker.event_writer.EventWriter`` keeps a job's unconfirmed appends, each
fenced with the id it expects to follow (``expect_last``), and sends again in order what
a lost connection left unconfirmed. A job's append handed over while its previous one
still waits for the line joins that one (``send(..., after=...)``): a job that reads
faster than round trips go still makes one append per round trip, not one per read.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field

import redis

from sluice.events import Event
from sluice.metrics import APPEND_BATCH
from sluice.store import JobStore, append_result
from worker.pipelined import send_together

log = logging.getLogger("sluice.worker")
REPLY_TIMEOUT = 60.0  # seconds an append waits for its batch's reply before giving up
# events in one APPEND call at most: the script unpacks them onto Lua's stack, which
# refuses ~8,000 ("too many results to unpack")
MAX_EVENTS_PER_APPEND = 1000


@dataclass
class PendingAppend:
    """An append handed to the appender; ``result`` waits for its reply."""

    job_id: str
    events: list[Event]
    attempt: int
    expect_last: int
    done: threading.Event = field(default_factory=threading.Event)
    reply: object = None
    error: BaseException | None = None
    taken: bool = False  # on its way to Redis: no more events can join it

    def result(self, timeout: float = REPLY_TIMEOUT) -> int:
        """The id of the last event appended; raises the refusal or the Redis error."""
        if not self.done.wait(timeout):
            # the caller retries; its expect_last fence makes a late first write harmless
            raise redis.TimeoutError(f"no reply to an append within {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        return append_result(self.job_id, self.reply)


class BatchedAppender:
    def __init__(self, store: JobStore, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: collections.deque[PendingAppend] = collections.deque()
        self._queue_lock = threading.Lock()  # joining an append vs. taking it for a batch
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def append(self, job_id: str, events: list[Event], *, attempt: int, expect_last: int) -> int:
        """``JobStore.append`` for a running attempt, sent together with the appends of
        the process's other jobs; returns the id of the last event."""
        return self.send(job_id, events, attempt=attempt, expect_last=expect_last).result()

    def send(
        self,
        job_id: str,
        events: list[Event],
        *,
        attempt: int,
        expect_last: int,
        after: PendingAppend | None = None,
    ) -> PendingAppend:
        """Hand an append over without waiting for its reply; appends are sent in the
        order they are handed over. If ``after`` (the caller's previous append) has not
        left yet and these events follow it, they join it (up to
        ``MAX_EVENTS_PER_APPEND``) and it is returned."""
        with self._queue_lock:
            if (
                after is not None
                and not after.taken
                and (after.job_id, after.attempt) == (job_id, attempt)
                and after.expect_last + len(after.events) == expect_last
                and len(after.events) + len(events) <= MAX_EVENTS_PER_APPEND
            ):
                after.events.extend(events)
                return after
            pending = PendingAppend(job_id, list(events), attempt, expect_last)
            self._queue.append(pending)
        self._ensure_flusher()
        self._wake.set()
        return pending

    def _ensure_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._start_lock:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._run, name="sluice-appender", daemon=True
                )
                self._flusher.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                with self._queue_lock:
                    size = min(len(self._queue), self.max_batch)
                    batch = [self._queue.popleft() for _ in range(size)]
                    for pending in batch:
                        pending.taken = True
                self._send(batch)

    def _send(self, batch: list[PendingAppend]) -> None:
        """One round trip for the batch; every caller gets its own reply or error."""
        try:
            calls = [
                self.store.append_call(
                    p.job_id, p.events, attempt=p.attempt, expect_last=p.expect_last
                )
                for p in batch
            ]
            replies = send_together(self.store.redis, calls)
            APPEND_BATCH.observe(len(batch))
        except Exception as exc:  # the flusher must outlive any failure
            if not isinstance(exc, redis.RedisError):
                log.exception("appending a batch of %d failed", len(batch))
            for pending in batch:
                pending.error = exc
        else:
            for pending, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    pending.error = reply
                else:
                    pending.reply = reply
        finally:
            for pending in batch:
                pending.done.set()

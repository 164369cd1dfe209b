"""One attempt's writes to its job's event log, without waiting for each reply.

A job that waited for every append's reply before reading its next upstream chunk could
not read while the reply was on its way back, and the reply reached it only after the
appender's greenlet and then its own had their turn in the event loop. Since the
process's appender sends appends in the order they are handed over, a job can hand over
its append and read on. Each append carries the id it expects the log to end at
(``expect_last``), so the chain stays exact:

* a reply confirms its append and every earlier one (each was fenced on the one before);
* a refusal (job cancelled, ended, gone, or taken over) is raised at the job's next write;
* a lost connection or a lost reply leaves appends unconfirmed: they are sent again, in
  order, through a Redis outage of up to ``outage_tolerance`` seconds; one that had landed
  is recognised by its fence and not written twice.

A write handed over while the job's previous append still waits to be sent joins it, so a
job has at most two appends unconfirmed (one on the line, one waiting) and a burst of
reads costs one append per round trip, as when the job waited (up to
``MAX_EVENTS_PER_APPEND`` events each; a larger write is split). A terminal event is
written with ``flush=True``, which returns only once every append before it is confirmed.
"""

from __future__ import annotations

import collections
import enum
import logging
import time

import redis

from sluice.errors import AttemptSuperseded, OutOfSequence
from sluice.events import Event
from worker.appender import (
    MAX_EVENTS_PER_APPEND,
    REPLY_TIMEOUT,
    BatchedAppender,
    PendingAppend,
)

log = logging.getLogger("sluice.worker")


class _Outcome(enum.Enum):
    LANDED = "landed"  # this write and every earlier one are in the log
    LOST = "lost"  # no reply (a connection error): it may or may not have landed
    BEHIND = "behind"  # the log ends elsewhere: an earlier write was lost, or landed too


class EventWriter:
    def __init__(
        self,
        appender: BatchedAppender,
        job_id: str,
        attempt: int,
        last_id: int,
        *,
        outage_tolerance: float,
    ) -> None:
        self.appender = appender
        self.job_id = job_id
        self.attempt = attempt
        self.last_id = last_id  # where the log ends once every write handed over lands
        self.outage_tolerance = outage_tolerance
        self._unconfirmed: collections.deque[PendingAppend] = collections.deque()

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def write(self, events: list[Event], *, flush: bool = False) -> int:
        """Hand these events over; returns the id of the last. Raises a refusal met by an
        earlier write, or with ``flush`` by this one."""
        self._settle(block=False)
        for start in range(0, len(events), MAX_EVENTS_PER_APPEND):
            part = events[start : start + MAX_EVENTS_PER_APPEND]
            previous = self._unconfirmed[-1] if self._unconfirmed else None
            pending = self.appender.send(
                self.job_id, part, attempt=self.attempt, expect_last=self.last_id, after=previous
            )
            if pending is not previous:
                self._unconfirmed.append(pending)
            self.last_id += len(part)
        if flush:
            self.flush()
        return self.last_id

    def flush(self) -> None:
        """Return once every write handed over is confirmed; raise why one is not."""
        self._settle(block=True)

    def _settle(self, *, block: bool) -> None:
        """Drop the confirmed writes from the front; raise a refusal; resend after a loss."""
        queue = self._unconfirmed
        while queue:
            head = queue[0]
            if not head.done.is_set():
                if not block:
                    return
                head.done.wait(REPLY_TIMEOUT)  # no reply in time counts as lost
            if self._outcome(head) is not _Outcome.LANDED:
                self._resend()
                return
            queue.popleft()

    def _resend(self) -> None:
        """Send every unconfirmed write again, in order, each waiting for its reply.

        The fence makes this exact: a write that had landed is answered with its ids
        again, unless a later one landed too, and then it is ``BEHIND`` and the later
        one's confirmation covers it. Only the last write ``BEHIND`` means the log moved
        on without this attempt.
        """
        for unconfirmed in self._unconfirmed:  # let the first sends finish first
            unconfirmed.done.wait(REPLY_TIMEOUT)
        outcome = _Outcome.LANDED
        while self._unconfirmed:
            outcome = self._send_with_retries(self._unconfirmed[0])
            self._unconfirmed.popleft()
        if outcome is _Outcome.BEHIND:
            raise AttemptSuperseded(f"job {self.job_id}: the log moved on without this attempt")

    def _send_with_retries(self, unconfirmed: PendingAppend) -> _Outcome:
        deadline = time.monotonic() + self.outage_tolerance
        delay = 0.2
        while True:
            pending = self.appender.send(
                self.job_id,
                unconfirmed.events,
                attempt=self.attempt,
                expect_last=unconfirmed.expect_last,
            )
            pending.done.wait(REPLY_TIMEOUT)
            outcome = self._outcome(pending)
            if outcome is not _Outcome.LOST:
                return outcome
            if time.monotonic() + delay > deadline:
                raise pending.error or redis.TimeoutError("no reply to an append")
            log.warning("job %s: Redis unavailable (%s); retrying", self.job_id, pending.error)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _outcome(self, pending: PendingAppend) -> _Outcome:
        """What a finished (or timed-out) write says; raises a refusal or a Redis error
        that is not a lost connection."""
        if not pending.done.is_set():
            return _Outcome.LOST
        try:
            pending.result()  # raises its Redis error, or the refusal its reply stands for
        except (redis.ConnectionError, redis.TimeoutError):
            return _Outcome.LOST
        except OutOfSequence:
            return _Outcome.BEHIND
        return _Outcome.LANDED

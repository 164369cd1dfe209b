"""How a worker process writes its jobs' event logs: the one way the runner writes.

The runner asks the process's ``EventLog`` for an attempt's writer and calls ``write``
with the deltas of each upstream read and ``write_and_wait`` with the terminal event.
Behind those two calls, three levers keep a delta's way to Redis short; the runner knows
none of them.

**Group commit.** Each append is one Lua call (``APPEND``: RPUSH to the log and PUBLISH,
``sluice.scripts``). Sent one call per append, a worker with 100 streams makes 100
separate round trips, and each costs a send and a receive system call, a pool checkout
and redis-py's bookkeeping: about 40 % of the worker's CPU at 100 streams (py-spy), and
the worker's CPU is what delays a delta when streams start in a burst. So the appends of
every job that arrive while one round trip is in flight all go out in the next one, as one
pipeline: one send and one receive for the whole batch. Nothing waits to fill a batch (no
timer, no size to reach): an append that finds the line idle is sent at once, so an idle
stream's delta is not held back.

**Hand-over without waiting.** A job that waited for every append's reply before reading
its next upstream chunk could not read while the reply was on its way back, and the reply
reached it only after the flusher's greenlet and then its own had their turn in the event
loop. Appends go out in the order they are handed over, so a job hands over its append
and reads on. Each append is fenced with the id it expects the log to end at
(``expect_last``), so the chain stays exact: a reply confirms its append and every earlier
one (each was fenced on the one before), and a refusal (job cancelled, ended, gone, or
taken over) is raised at the job's next write. A write handed over while the job's
previous append still waits to be sent joins it, so a job has at most two appends
unconfirmed (one on the line, one waiting) and a burst of reads costs one append per round
trip, as when the job waited (up to ``MAX_EVENTS_PER_APPEND`` events each; a larger write
is split). The terminal event waits until every append before it is confirmed.

**Resend after a lost reply.** A lost connection or a lost reply (Redis restarting) leaves
appends unconfirmed: they are sent again, in order, through a Redis outage of up to
``outage_tolerance`` seconds, so a short outage pauses the stream instead of failing it;
one that had landed is recognised by its fence and not written twice (the store answers
``OutOfSequence`` when the log does not end where a write expected).

**Replicated watermark** (``SLUICE_REDIS_MIN_REPLICAS`` > 0, ``sluice.replication``). The
appends of a round trip are followed, in it, by a write of its own and ``WAIT``; once WAIT
says enough replicas have them, their ``COMMIT`` calls (raise each job's watermark,
publish its events) go out first in the next round trip, at once if no append waits. A
WAIT that times out leaves them pending: later round trips (or, when none comes, a round
trip of the write and WAIT alone, every ``RETRY_WAIT`` seconds) wait for them again.
After a failover the new master's log may end before what this attempt wrote (unreplicated
appends died with the old master): its next append is refused ``OutOfSequence``, the
attempt ends, and the job restarts with ``reset`` after the log's surviving end, which no
client has passed (clients see only up to the watermark).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from sluice.errors import AttemptSuperseded, OutOfSequence
from sluice.events import Event
from sluice.metrics import APPEND_BATCH
from sluice.node_pipelines import Waited
from sluice.store import Command, JobStore, append_result, send_together

log = logging.getLogger("sluice.worker")
REPLY_TIMEOUT = 60.0  # seconds an append waits for its batch's reply before giving up
# events in one APPEND call at most: the script unpacks them onto Lua's stack, which
# refuses ~8,000 ("too many results to unpack")
MAX_EVENTS_PER_APPEND = 1000
# the reason of the `reset` of a job whose log lost writes its attempt had confirmed
LOST_WRITES = "redis_lost_writes"
RETRY_WAIT = 0.2  # seconds between WAITs while a watermark waits for replicas and no append


class EventLog:
    """The event logs as one worker process writes them: one per process, shared by every
    attempt it runs, with one flusher thread sending the appends of all of them."""

    def __init__(self, store: JobStore, *, outage_tolerance: float, max_batch: int = 256) -> None:
        self.store = store
        self.outage_tolerance = outage_tolerance
        self.max_batch = max_batch
        self._queue: collections.deque[PendingAppend] = collections.deque()
        self._queue_lock = threading.Lock()  # joining an append vs. taking it for a batch
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        # the replicated watermark (flusher thread only): job id -> (up to, attempt)
        self._unreplicated: dict[str, tuple[int, int]] = {}  # landed, WAIT not yet enough
        self._replicated: dict[str, tuple[int, int]] = {}  # to COMMIT in the next round trip

    def writer(self, job_id: str, attempt: int, last_id: int) -> AttemptWriter:
        """The writer of one attempt at a job whose log ends at ``last_id`` (as claimed)."""
        return AttemptWriter(self, job_id, attempt, last_id)

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
            self._wake.wait(RETRY_WAIT if self._unreplicated else None)
            self._wake.clear()
            while self._queue or self._replicated or self._unreplicated:
                with self._queue_lock:
                    size = min(len(self._queue), self.max_batch)
                    batch = [self._queue.popleft() for _ in range(size)]
                    for pending in batch:
                        pending.taken = True
                if not batch and not self._replicated and not self._wake.is_set():
                    # only WAIT is left to do: once per RETRY_WAIT, not in a loop
                    self._send(batch)
                    break
                self._send(batch)

    def _send(self, batch: list[PendingAppend]) -> None:
        """One round trip for the batch; every caller gets its own reply or error."""
        try:
            calls: list[Command] = [
                self.store.append_call(
                    p.job_id, p.events, attempt=p.attempt, expect_last=p.expect_last
                )
                for p in batch
            ]
            if self.store.min_replicas:
                commits = [
                    (job_id, self.store.commit_call(job_id, upto, attempt))
                    for job_id, (upto, attempt) in self._replicated.items()
                ]
                self._replicated.clear()
                appends = [(p.job_id, call) for p, call in zip(batch, calls, strict=True)]
                waited = self.store.send_and_wait(commits + appends, self._unreplicated.keys())
                replies = self._watermark(batch, waited.replies[len(commits) :], waited)
            else:
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

    def _watermark(
        self, batch: list[PendingAppend], appended: list[object], waited: Waited
    ) -> list[object]:
        """Note the appends that landed; move every noted job whose WAIT (its master's, on
        a cluster) says the replicas have everything written so far to COMMIT next.
        Returns the appends' replies. (A lost round trip leaves its appends unconfirmed:
        they are resent, and noted then.)"""
        for pending, reply in zip(batch, appended, strict=True):
            if isinstance(reply, int) and reply > 0:
                upto, _ = self._unreplicated.get(pending.job_id, (0, 0))
                self._unreplicated[pending.job_id] = (max(upto, reply), pending.attempt)
        for job_id in waited.covered & self._unreplicated.keys():
            self._replicated[job_id] = self._unreplicated.pop(job_id)
        if self._replicated and not self._queue:
            self._wake.set()  # publish them now, not with the next append
        if self._unreplicated:
            acks = ",".join(str(acked) for acked in waited.acks.values())
            log.warning("event=redis.wait_short replicas=%s wanted=%d jobs=%d",
                        acks, self.store.min_replicas, len(self._unreplicated))  # fmt: skip
        return appended


@dataclass
class PendingAppend:
    """An append handed to the event log; ``result`` waits for its reply."""

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


class _Outcome(enum.Enum):
    LANDED = "landed"  # this write and every earlier one are in the log
    LOST = "lost"  # no reply (a connection error): it may or may not have landed
    BEHIND = "behind"  # the log ends elsewhere: an earlier write was lost, or landed too


class AttemptWriter:
    """One attempt's writes to its job's log: handed over in order, confirmed later."""

    def __init__(self, event_log: EventLog, job_id: str, attempt: int, last_id: int) -> None:
        self.event_log = event_log
        self.job_id = job_id
        self.attempt = attempt
        self.last_id = last_id  # where the log ends once every write handed over lands
        self._unconfirmed: collections.deque[PendingAppend] = collections.deque()

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def write(self, events: list[Event]) -> int:
        """Hand these events over without waiting; returns the id of the last. Raises a
        refusal met by an earlier write."""
        self._settle(block=False)
        for start in range(0, len(events), MAX_EVENTS_PER_APPEND):
            part = events[start : start + MAX_EVENTS_PER_APPEND]
            previous = self._unconfirmed[-1] if self._unconfirmed else None
            pending = self.event_log.send(
                self.job_id, part, attempt=self.attempt, expect_last=self.last_id, after=previous
            )
            if pending is not previous:
                self._unconfirmed.append(pending)
            self.last_id += len(part)
        return self.last_id

    def write_and_wait(self, events: list[Event]) -> int:
        """``write``, then ``flush``: for the terminal event, which must not be reported
        before it and everything before it is in the log."""
        last = self.write(events)
        self.flush()
        return last

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
            # The log does not end where this attempt's confirmed writes put it: another
            # attempt moved it on, or it lost them (a failover to a replica that never got
            # them). Hand the job back, so it restarts now, not when the lease runs out
            # (a job another attempt owns refuses this).
            with contextlib.suppress(redis.RedisError):
                self.event_log.store.release(self.job_id, self.attempt, LOST_WRITES)
            raise AttemptSuperseded(f"job {self.job_id}: the log moved on without this attempt")

    def _send_with_retries(self, unconfirmed: PendingAppend) -> _Outcome:
        deadline = time.monotonic() + self.event_log.outage_tolerance
        delay = 0.2
        while True:
            pending = self.event_log.send(
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

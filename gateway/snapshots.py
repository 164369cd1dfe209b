"""``?snapshot=1`` on Sluice's event stream: a late joiner gets the answer so far as one event.

A client that opens a long job's stream with no cursor would otherwise get every event
again, one SSE event per delta. With ``snapshot=1`` it gets one ``snapshot`` event first,
under the id ``n`` of the last log event it covers, whose data is events 1..n folded as the
poll view folds them (``sluice.events.Transcript``: a ``reset`` clears what came before),
and then the stream goes on exactly as for ``Last-Event-ID: n``. So the ids stay the log's:
a client that reconnects with the snapshot's id, or a later one, gets the exact tail.
The snapshot covers no terminal event: a job that ended has its terminal event follow the
snapshot under its own id, as for any cursor (docs/events.md, "snapshot").

Folding is what costs, so it is done once per job per process: ``SnapshotCache`` keeps the
latest fold of each recently joined job and a later joiner only reads (and applies) the
log entries after it. Deliberate choices (read before changing):

* A cached ``Transcript`` is never changed: a fold that extends one copies it first
  (``Transcript.copy``: new containers, shared strings), so a joiner that still renders an
  older fold never sees it move. The gateway runs gevent: greenlets switch at every Redis
  call, also in the middle of a fold.
* One fold per job at a time (a lock per job, taken only by joiners of that job): 100
  clients joining at once fold the log once; each of the others then reads only what
  came after it (usually nothing: one short ``LRANGE``).
* The log is read a page at a time (``REPLAY_PAGE``), each page applied and dropped.
* A fold that reached the terminal event is complete: later joiners read nothing.
* Bounded: at most ``CACHE_ENTRIES`` jobs and about ``CACHE_CHARS`` characters of folded
  text, least recently joined evicted first. An entry is dropped, and the log folded again
  from its start, when the job's attempt differs from the one it was folded at or its log is
  now shorter than the fold (Redis lost writes). The ids the gateway reads are those a
  failover cannot take back when the replicated watermark is on (``JobStore.read_events``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from flask import request

from gateway.feed import REPLAY_PAGE
from sluice.errors import InvalidRequest
from sluice.events import TERMINAL_EVENTS, ChoiceState, Event, Transcript, dumps, entry_type
from sluice.store import Job, JobStore

SNAPSHOT: Final = "snapshot"  # the event's type on the wire (never stored in a log)
CACHE_ENTRIES = 256
CACHE_CHARS = 16_000_000  # about 32-64 MB of str in CPython, the worst case
_LOGPROB_CHARS = 64  # what one logprobs token object counts for in that budget

# (after, limit) -> the log entries after ``after``, at most ``limit``, as ``(id, entry)``
ReadPage = Callable[[int, int], list[tuple[int, str]]]


def wanted() -> bool:
    """The ``snapshot`` query parameter: ``1``/``true`` or ``0``/``false`` (any case);
    anything else is a 400, as an unknown value should not silently mean "no"."""
    raw = request.args.get("snapshot")
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise InvalidRequest(
        f"snapshot must be 0, 1, true or false, not {raw[:40]!r}", param="snapshot"
    )


@dataclass(frozen=True)
class Folded:
    """A job's log folded up to ``upto`` (its last non-terminal event so far). Immutable
    by convention: ``transcript`` is shared by every joiner that got this fold."""

    upto: int
    attempt: int  # the job's attempt when it was folded (a change means: fold again)
    complete: bool  # the fold reached the terminal event: nothing more will come
    transcript: Transcript

    @cached_property
    def size(self) -> int:
        """What this fold counts for in the cache's budget (characters, roughly)."""
        total = 0
        for choice in self.transcript.choices.values():
            total += sum(len(text) for text in choice.texts())
            for logprobs in (choice.content_logprobs, choice.refusal_logprobs):
                total += _LOGPROB_CHARS * len(logprobs or ())
        return total

    @cached_property
    def entry(self) -> str:
        """The ``snapshot`` event as a log entry would be (``"<type> <json>"``), rendered
        once per fold: every joiner of an ended job sends these same bytes."""
        return f"{SNAPSHOT} {dumps(snapshot_data(self.transcript))}"


def snapshot_data(transcript: Transcript) -> dict[str, Any]:
    """The ``snapshot`` event's data (docs/events.md): the poll view's choices, each tool
    call with its ``index`` too, so that later ``tool_call`` fragments continue it."""
    return {
        "object": "sluice.snapshot",
        "last_event_id": transcript.last_event_id,
        "model": transcript.model,
        "attempt": transcript.attempt,
        "choices": [_choice(transcript.choices[i]) for i in sorted(transcript.choices)],
    }


def _choice(choice: ChoiceState) -> dict[str, Any]:
    out = choice.to_dict()
    if choice.tool_calls:
        calls = choice.tool_calls
        out["tool_calls"] = [{"index": i, **calls[i].to_dict()} for i in sorted(calls)]
    return out


class SnapshotCache:
    """The latest fold of recently joined jobs, least recently joined evicted first."""

    def __init__(
        self, entries: int = CACHE_ENTRIES, chars: int = CACHE_CHARS, page: int = REPLAY_PAGE
    ) -> None:
        self.max_entries = entries
        self.max_chars = chars
        self.page = page
        self._folds: OrderedDict[str, Folded] = OrderedDict()
        self._chars = 0
        self._guard = threading.Lock()  # held for dict work only, never across I/O
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._folds)

    @property
    def chars(self) -> int:
        return self._chars

    def fold(self, key: str, read: ReadPage, attempt: int, last_event_id: int) -> Folded:
        """The log of ``key`` folded up to its last non-terminal event, reading only what
        comes after the cached fold. ``attempt`` and ``last_event_id`` are the job's as
        the caller just read them: a cached fold they contradict is not used."""
        with self._job_lock(key):
            start = self._cached(key, attempt, last_event_id)
            if start is not None and start.complete:
                return start
            folded = self._extend(start, read, attempt)
            if folded is not start:
                self._store(key, folded)
            return folded

    def _extend(self, start: Folded | None, read: ReadPage, attempt: int) -> Folded:
        """``start`` with the log entries after it applied, a page at a time (``start``
        itself when the log holds nothing new)."""
        upto = start.upto if start else 0
        transcript: Transcript | None = None  # copied from start's on the first new entry
        complete = False
        while not complete:
            page = read(upto, self.page)
            for event_id, entry in page:
                if entry_type(entry) in TERMINAL_EVENTS:
                    complete = True
                    break
                if transcript is None:
                    transcript = start.transcript.copy() if start else Transcript()
                transcript.apply(event_id, Event.from_entry(entry))
                upto = event_id
            if len(page) < self.page:
                break
        if transcript is None:  # nothing new to apply
            if start is not None and not complete:
                return start
            transcript = start.transcript if start else Transcript()
        return Folded(upto, attempt, complete, transcript)

    def _cached(self, key: str, attempt: int, last_event_id: int) -> Folded | None:
        with self._guard:
            folded = self._folds.get(key)
            if folded is None:
                return None
            if folded.attempt != attempt or folded.upto > last_event_id:
                self._drop(key)
                return None
            self._folds.move_to_end(key)
            return folded

    def _store(self, key: str, folded: Folded) -> None:
        with self._guard:
            if key in self._folds:
                self._drop(key)
            if folded.size > self.max_chars:
                return  # would evict everything else and still not fit
            self._folds[key] = folded
            self._chars += folded.size
            while len(self._folds) > self.max_entries or self._chars > self.max_chars:
                self._drop(next(iter(self._folds)))

    def _drop(self, key: str) -> None:
        self._chars -= self._folds.pop(key).size

    @contextlib.contextmanager
    def _job_lock(self, key: str) -> Iterator[None]:
        """A lock of this job's own, kept only while someone holds or waits for it (so the
        locks are as many as the jobs being joined at this moment, not ever joined).
        (``threading.Lock`` is gevent's under gunicorn's gevent worker: a waiting
        greenlet yields.)"""
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[key]


CACHE = SnapshotCache()


def opening(store: JobStore, job: Job, after: int) -> tuple[list[tuple[int, str]], int]:
    """For a client with no cursor (``after`` 0): the ``snapshot`` event to send first, as
    a ``(id, entry)`` item of the feed, and the id its feed then resumes after. Nothing to
    add for a cursor, or for a log with no event to fold yet (the stream then starts at
    the log's first event, as without ``snapshot``)."""
    if after:
        return [], after
    folded = CACHE.fold(
        store.keys.events(job.id),
        lambda start, limit: store.read_events(job.id, start, limit=limit),
        job.attempt,
        job.last_event_id,
    )
    if not folded.upto:
        return [], 0
    return [(folded.upto, folded.entry)], folded.upto

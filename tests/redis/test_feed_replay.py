"""Catching up from the log, against the real Redis: a feed reads a long log a page at a
time (a slow client holds one page in the gateway) and sends every event once, in order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import snapshots
from gateway.feed import REPLAY_PAGE, JobFeed
from gateway.hub import Hub
from sluice.events import DONE, RESET, Event
from sluice.store import JobStore
from tests.helpers.support import delta, running_job


def test_a_long_log_is_replayed_a_page_at_a_time_without_gaps_or_repeats(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(store)  # `started` is event 1
    deltas = REPLAY_PAGE * 2 + 234
    last = 1
    for start in range(0, deltas, 500):
        batch = [e for n in range(start, min(start + 500, deltas)) for e in delta(f"{n},")]
        last = store.append(job_id, batch, attempt=1, expect_last=last)
    store.append(job_id, [Event(DONE, {"usage": None})], attempt=1, expect_last=last)
    pages: list[tuple[Any, int]] = []
    read_events = store.read_events

    def recording(job: str, after: int = 0, limit: int | None = None) -> list[tuple[int, str]]:
        page = read_events(job, after, limit)
        pages.append((limit, len(page)))
        return page

    monkeypatch.setattr(store, "read_events", recording)
    hub = Hub(store.redis, f"{store.keys.prefix}:hub")
    feed = JobFeed(store, job_id, after=5, heartbeat=5, subscribe=hub.subscribe)
    ids = [item[0] for item in feed if isinstance(item, tuple)]
    assert ids == list(range(6, deltas + 3))  # through `done`, each once
    assert feed.finished
    assert len(pages) >= 3
    assert all(limit == REPLAY_PAGE and size <= REPLAY_PAGE for limit, size in pages)


def test_read_events_honours_its_limit(store: JobStore) -> None:
    job_id = running_job(store)
    store.append(job_id, delta("a") + delta("b") + delta("c"), attempt=1, expect_last=1)
    assert [i for i, _ in store.read_events(job_id, 1, limit=2)] == [2, 3]
    assert [i for i, _ in store.read_events(job_id, 3, limit=2)] == [4]
    assert [i for i, _ in store.read_events(job_id)] == [1, 2, 3, 4]


def test_a_feed_into_an_ended_job_whose_log_lost_its_tail_ends_at_the_first_heartbeat(
    store: JobStore,
) -> None:
    """Redis lost the end of an ended job's log (a failover, an eviction): the feed sends
    what the log holds and then ends, instead of sending heartbeats until the client gives
    up; the client's reconnect gets the 410 that says why."""
    job_id = running_job(store)
    last = store.append(job_id, delta("a") + delta("b") + delta("c"), attempt=1, expect_last=1)
    store.append(job_id, [Event(DONE, {"usage": None})], attempt=1, expect_last=last)
    store.redis.ltrim(store.keys.events(job_id), 0, 2)  # events 1-3 of 5 are left
    hub = Hub(store.redis, f"{store.keys.prefix}:hub")
    feed = JobFeed(store, job_id, after=1, heartbeat=0.2, subscribe=hub.subscribe)
    items = list(feed)  # would never end if the feed waited for events 4 and 5
    assert [item[0] for item in items if isinstance(item, tuple)] == [2, 3]
    assert not feed.finished


def test_a_replay_s_frames_go_out_a_page_per_write(store: JobStore) -> None:
    """Replaying a long log, the response joins the frames of each page into one chunk
    (one system call), and ends every chunk on a whole frame: the feed says ``more``
    exactly while the next event is already in memory."""
    from gateway.wire import _joined
    from gateway.wire.sluice_sse import SluiceFrames

    job_id = running_job(store)
    deltas = REPLAY_PAGE + 20
    batch = [e for n in range(deltas) for e in delta(f"{n},")]
    last = store.append(job_id, batch, attempt=1, expect_last=1)
    store.append(job_id, [Event(DONE, {"usage": None})], attempt=1, expect_last=last)
    hub = Hub(store.redis, f"{store.keys.prefix}:hub")
    feed = JobFeed(store, job_id, after=0, heartbeat=5, subscribe=hub.subscribe)
    chunks = list(_joined(SluiceFrames(job_id, 1000).frames(feed), feed))
    # the opening comment, the first page (events 1-500), the rest (501-522 with `done`)
    assert len(chunks) == 3, [len(c) for c in chunks]
    assert all(c.endswith(b"\n") for c in chunks)
    body = b"".join(chunks).decode()
    assert [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")] == list(
        range(1, deltas + 3)
    )
    assert body.count("event: delta") == deltas
    assert body.endswith('event: done\ndata: {"usage":null}\n\n')


def test_a_snapshot_folds_the_log_through_a_reset_and_the_feed_goes_on_after_it(
    store: JobStore,
) -> None:
    """``?snapshot=1`` against the real log: the fold (pages, a reset) equals the poll's,
    covers no terminal event, and the feed resumes right after it; a later joiner of the
    same job reads only what came after the cached fold."""
    job_id = running_job(store)
    old = [e for n in range(REPLAY_PAGE + 10) for e in delta(f"old{n},")]
    last = store.append(job_id, old, attempt=1, expect_last=1)
    reset = Event(RESET, {"reason": "worker_lost", "attempt": 1})
    new = [e for n in range(REPLAY_PAGE) for e in delta(f"{n},")]
    last = store.append(job_id, [reset, *new], attempt=1, expect_last=last)
    job = store.get(job_id)
    assert job is not None
    [(snap_id, entry)], after = snapshots.opening(store, job, 0)
    assert snap_id == after == last
    kind, _, data = entry.partition(" ")
    assert kind == "snapshot"
    assert json.loads(data)["choices"] == store.transcript(job_id).choice_list()
    store.append(job_id, delta("end"), attempt=1, expect_last=last)
    end = store.append(job_id, [Event(DONE, {"usage": None})], attempt=1, expect_last=last + 1)
    job = store.get(job_id)
    assert job is not None
    [(later_id, later)], _ = snapshots.opening(store, job, 0)
    assert later_id == end - 1
    choices = json.loads(later.partition(" ")[2])["choices"]
    assert choices[0]["content"] == "".join(f"{n}," for n in range(REPLAY_PAGE)) + "end"
    hub = Hub(store.redis, f"{store.keys.prefix}:hub")
    feed = JobFeed(store, job_id, after=later_id, heartbeat=5, subscribe=hub.subscribe)
    assert [item[0] for item in feed if isinstance(item, tuple)] == [end]
    assert snapshots.opening(store, job, 7) == ([], 7)  # a cursor: no snapshot

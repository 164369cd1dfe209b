"""The worker's job watchers, against the real Redis and a real upstream stream: one thread
and one round trip per interval check on every running job of the process."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests

from devtools.fake_upstream import FakeUpstream
from sluice.events import CANCELLED, Event
from sluice.store import JobStore
from tests.helpers.support import UPSTREAM_KEY
from worker.watcher import JobWatchers


def _running(store: JobStore) -> str:
    job, _ = store.create(
        model="m", request={"model": "m", "messages": []}, prompt_tokens=1, truncated_messages=0
    )
    assert store.claim(job.id) is not None  # attempt 1
    return job.id


def _cancel(store: JobStore, job_id: str) -> None:
    store.append(job_id, [Event(CANCELLED, {"usage": None})])


def _read_to_the_end(response: requests.Response) -> None:
    # the cut ends it with an error; urllib3 raises AttributeError when the body was
    # closed under its read (as the worker's runner also knows)
    with contextlib.suppress(requests.RequestException, AttributeError):
        for _chunk in response.iter_content(None):
            pass


def test_a_cancelled_job_is_stopped_and_its_upstream_stream_cut(
    store: JobStore, upstream: FakeUpstream
) -> None:
    watchers = JobWatchers(store, poll_interval=3600)  # rounds run by hand below
    kept, cancelled = _running(store), _running(store)
    response = requests.post(
        f"{upstream.base_url}/chat/completions",
        json={"model": "stall", "messages": [], "stream": True},  # then silence
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
        stream=True,
        timeout=(5, 60),
    )
    with watchers.watch(kept, 1) as a, watchers.watch(cancelled, 1) as b:
        b.attach(response)
        watchers.check([a, b])
        assert not a.stopped and not b.stopped
        _cancel(store, cancelled)
        started = time.monotonic()
        reader = threading.Thread(target=_read_to_the_end, args=(response,), daemon=True)
        reader.start()  # blocked on a silent upstream
        watchers.check([a, b])
        assert b.stopped and not a.stopped
        reader.join(5)
        assert not reader.is_alive()  # the blocked read was woken, not left to time out
        assert time.monotonic() - started < 5
        assert not b.sleep(30)  # a stopped job's backoff ends at once


def test_one_thread_checks_on_every_job_and_renews_leases_when_due(store: JobStore) -> None:
    watchers = JobWatchers(store, poll_interval=0.05)
    jobs = [_running(store) for _ in range(30)]
    threads_before = threading.active_count()
    entered = [watchers.watch(job_id, 1).__enter__() for job_id in jobs]
    assert threading.active_count() <= threads_before + 1
    lease = store.redis.zscore(store.keys.leases_of(jobs[0]), jobs[0])
    for watcher in entered:
        watcher.next_renew = 0  # due now
    deadline = time.monotonic() + 5
    while store.redis.zscore(store.keys.leases_of(jobs[0]), jobs[0]) == lease:
        assert time.monotonic() < deadline, "the lease was not renewed"
        time.sleep(0.02)
    assert all(w.next_renew > time.monotonic() for w in entered)  # renewed, next one later
    _cancel(store, jobs[7])
    store.redis.hset(store.keys.job(jobs[8]), "attempt", 2)  # taken over by a new attempt
    entered[8].next_renew = 0  # its renewal is refused
    deadline = time.monotonic() + 5
    while not (entered[7].stopped and entered[8].stopped):
        assert time.monotonic() < deadline, "the stopped jobs were not noticed"
        time.sleep(0.02)
    assert [w.job_id for w in entered if w.stopped] == [jobs[7], jobs[8]]
    for watcher in entered:
        watcher.__exit__(None, None, None)


def test_renewals_survive_redis_forgetting_the_script(store: JobStore) -> None:
    watchers = JobWatchers(store, poll_interval=3600)
    job_id = _running(store)
    with watchers.watch(job_id, 1) as watcher:
        store.redis.script_flush()
        watcher.next_renew = 0
        watchers.check([watcher])
        assert not watcher.stopped
        assert watcher.next_renew > time.monotonic()


@pytest.mark.parametrize("shutdown", [True, False])
def test_losing_the_job_and_leaving_the_block_end_the_watching(
    store: JobStore, shutdown: bool
) -> None:
    watchers = JobWatchers(store, poll_interval=3600)
    job_id = _running(store)
    with watchers.watch(job_id, 1) as watcher:
        assert watcher in watchers._watching
        if shutdown:
            watcher.lost()
            assert watcher.stopped and watcher not in watchers._watching
    assert watcher not in watchers._watching

"""The worker's group commit of appends, against the real Redis: the appends of many jobs
share round trips, and each caller still gets its own ids, order and refusals."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from sluice.errors import AttemptSuperseded, JobAlreadyEnded, JobGone
from sluice.events import CANCELLED, Event
from sluice.store import JobStore, send_together
from tests.helpers.support import delta, running_job
from worker.event_log import EventLog


def _batches() -> tuple[float, float]:
    """(batches sent, appends in them) so far in this process."""
    count = REGISTRY.get_sample_value("sluice_worker_append_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("sluice_worker_append_batch_size_sum") or 0.0
    return count, total


def test_concurrent_jobs_share_round_trips_and_keep_their_own_order(store: JobStore) -> None:
    event_log = EventLog(store, outage_tolerance=5.0)
    jobs = [running_job(store) for _ in range(20)]
    per_job = 15
    before = _batches()
    errors: list[BaseException] = []
    go = threading.Barrier(len(jobs))

    def stream(job_id: str) -> None:
        try:
            last = 1
            go.wait()
            for n in range(per_job):
                last = event_log.append(job_id, delta(f"{n},"), attempt=1, expect_last=last)
                assert last == n + 2
        except BaseException as exc:  # reported below
            errors.append(exc)

    # Redis holds writes for a moment while every job appends: they queue up behind the
    # first round trip, so the next one carries many
    store.redis.execute_command("CLIENT", "PAUSE", "300", "WRITE")
    threads = [threading.Thread(target=stream, args=(job_id,)) for job_id in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    for job_id in jobs:
        assert store.transcript(job_id).texts() == ["".join(f"{n}," for n in range(per_job))]
        assert [i for i, _ in store.read_events(job_id)] == list(range(1, per_job + 2))
    batches, appends = (now - then for now, then in zip(_batches(), before, strict=True))
    assert appends == len(jobs) * per_job
    assert batches < appends / 2  # most appends shared a round trip


def test_each_caller_gets_its_own_refusal_and_the_rest_of_the_batch_is_written(
    store: JobStore,
) -> None:
    event_log = EventLog(store, outage_tolerance=5.0)
    ok, cancelled, superseded = running_job(store), running_job(store), running_job(store)
    store.append(cancelled, [Event(CANCELLED, {"usage": None})])
    store.redis.hset(store.keys.job(superseded), "attempt", 2)  # a newer attempt owns it
    outcomes: dict[str, object] = {}

    def attempt(name: str, job_id: str) -> None:
        try:
            outcomes[name] = event_log.append(job_id, delta("x"), attempt=1, expect_last=1)
        except Exception as exc:
            outcomes[name] = type(exc)

    store.redis.execute_command("CLIENT", "PAUSE", "200", "WRITE")  # one batch for all
    threads = [
        threading.Thread(target=attempt, args=(name, job_id))
        for name, job_id in [
            ("ok", ok),
            ("cancelled", cancelled),
            ("superseded", superseded),
            ("gone", "job_does-not-exist"),
        ]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == {
        "ok": 2,
        "cancelled": JobAlreadyEnded,
        "superseded": AttemptSuperseded,
        "gone": JobGone,
    }
    assert store.transcript(ok).texts() == ["x"]


def test_a_retried_append_is_not_written_twice(store: JobStore) -> None:
    event_log = EventLog(store, outage_tolerance=5.0)
    job_id = running_job(store)
    assert event_log.append(job_id, delta("a"), attempt=1, expect_last=1) == 2
    # the caller did not get the reply and sends the same append again
    assert event_log.append(job_id, delta("a"), attempt=1, expect_last=1) == 2
    assert store.transcript(job_id).texts() == ["a"]


def test_appends_survive_redis_forgetting_the_script(store: JobStore) -> None:
    event_log = EventLog(store, outage_tolerance=5.0)
    job_id = running_job(store)
    store.redis.script_flush()  # as after a Redis restart
    assert event_log.append(job_id, delta("a"), attempt=1, expect_last=1) == 2
    assert store.transcript(job_id).texts() == ["a"]


def test_an_unreachable_redis_fails_the_append_and_the_event_log_lives_on(
    store: JobStore,
) -> None:
    settings = store.settings
    dead = JobStore(redis.Redis(port=1, retry=Retry(NoBackoff(), 0)), settings)
    event_log = EventLog(dead, outage_tolerance=5.0)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        event_log.append("job_x", delta("a"), attempt=1, expect_last=1)
    with pytest.raises(redis.ConnectionError):  # the flusher is still there to answer
        event_log.append("job_x", delta("b"), attempt=1, expect_last=1)
    assert time.monotonic() - started < 5


def test_a_lost_script_is_loaded_once_for_a_whole_batch(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [running_job(store) for _ in range(5)]
    calls = [store.append_call(j, delta("a"), attempt=1, expect_last=1) for j in jobs]
    store.redis.script_flush()  # as after a Redis restart
    loads: list[str] = []
    real_load = store.redis.script_load

    def counting_load(script: str) -> str:
        loads.append(script)
        return real_load(script)

    monkeypatch.setattr(store.redis, "script_load", counting_load)
    assert send_together(store.redis, calls) == [2] * 5
    assert len(loads) == 1
    assert all(store.transcript(j).texts() == ["a"] for j in jobs)

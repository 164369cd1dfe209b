"""The job store against the real Redis: atomic ids, fencing, cancel, expiry."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from sluice.errors import AttemptSuperseded, JobAlreadyEnded, JobGone
from sluice.events import CANCELLED, DELTA, DONE, STARTED, Event, fold
from sluice.store import JobStore


def _new(store: JobStore, **kw: Any) -> str:
    job, created = store.create(
        model="m", request={"model": "m", "messages": []}, prompt_tokens=7,
        truncated_messages=0, **kw,
    )  # fmt: skip
    assert created
    return job.id


def test_job_ids_are_unguessable(store: JobStore) -> None:
    ids = {_new(store) for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) >= 4 + 22 for i in ids)  # "job_" + 128 bits in base64url


def test_appended_events_get_contiguous_ids_and_are_published_once(store: JobStore) -> None:
    job_id = _new(store)
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.keys.channel(job_id))
    pubsub.get_message(timeout=1)
    job = store.claim(job_id)  # appends and publishes `started` as event 1
    assert job is not None and job.last_event_id == 1
    batch = [Event(DELTA, {"index": 0, "content": c}) for c in ["a\n", "b\u2028", "c"]]
    assert store.append(job_id, batch, attempt=1) == 4
    messages = [pubsub.get_message(timeout=1) for _ in range(2)]
    assert [m["data"].count("\n") + 1 for m in messages if m] == [1, 3]
    assert [i for i, _ in store.read_events(job_id)] == [1, 2, 3, 4]
    assert [i for i, _ in store.read_events(job_id, after=2)] == [3, 4]
    assert store.transcript(job_id).texts() == ["a\nb\u2028c"]
    pubsub.close()


def test_claim_starts_the_job_in_one_step(store: JobStore) -> None:
    job_id = _new(store)
    job = store.claim(job_id)
    assert job is not None
    assert (job.status, job.attempt, job.model, job.last_event_id) == ("running", 1, "m", 1)
    assert job.started_at is not None and job.request == {"model": "m", "messages": []}
    [(event_id, entry)] = store.read_events(job_id)
    assert event_id == 1 and Event.from_entry(entry) == Event(STARTED, {"model": "m", "attempt": 1})
    assert store.redis.zscore(store.keys.leases_of(job_id), job_id) is not None


def test_claim_succeeds_once_so_a_duplicate_delivery_cannot_run_twice(store: JobStore) -> None:
    job_id = _new(store)
    assert store.claim(job_id) is not None
    assert store.claim(job_id) is None
    job = store.get(job_id)
    assert job is not None and job.status == "running" and job.attempt == 1
    assert len(store.read_events(job_id)) == 1  # one `started`


def test_a_superseded_attempt_cannot_write(store: JobStore) -> None:
    job_id = _new(store)
    store.claim(job_id)
    store.redis.hset(store.keys.job(job_id), "attempt", 2)
    with pytest.raises(AttemptSuperseded):
        store.append(job_id, [Event(DELTA, {"index": 0, "content": "x"})], attempt=1)
    assert [Event.from_entry(e).type for _, e in store.read_events(job_id)] == [STARTED]


def test_a_handed_back_attempt_can_neither_write_nor_renew(store: JobStore) -> None:
    """After RELEASE the attempt is over: an error it meets while being cut off (or a
    `done` it had almost finished) must not end the job the reaper is about to restart."""
    job_id = _new(store)
    store.claim(job_id)
    assert store.release(job_id, 1)
    for event in (Event(DELTA, {"index": 0, "content": "x"}), Event("error", {"error": {}})):
        with pytest.raises(AttemptSuperseded):
            store.append(job_id, [event], attempt=1)
    renew = store.renew_call(job_id, 1)
    assert renew.script(keys=renew.keys, args=renew.args) == 0
    assert store.redis.zscore(store.keys.leases_of(job_id), job_id) == 0  # still due for the reaper
    assert store.reap(job_id) == 2
    assert [Event.from_entry(e).type for _, e in store.read_events(job_id)] == [STARTED, "reset"]
    job = store.get(job_id)
    assert job is not None and job.status == "queued"


def test_terminal_event_ends_the_job_and_sets_the_finished_ttl(store: JobStore) -> None:
    job_id = _new(store)
    store.claim(job_id)
    store.append(job_id, [Event(DELTA, {"index": 0, "content": "x"})], attempt=1)
    store.append(job_id, [Event(DONE, {"finish_reasons": ["stop"], "usage": None})], attempt=1)
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded" and job.finished_at
    assert 0 < store.redis.ttl(store.keys.job(job_id)) <= 120
    assert 0 < store.redis.ttl(store.keys.events(job_id)) <= 120
    with pytest.raises(JobAlreadyEnded):
        store.append(job_id, [Event(DELTA, {"index": 0, "content": "late"})], attempt=1)


def test_unfinished_jobs_carry_a_safety_ttl(store: JobStore) -> None:
    job_id = _new(store)
    store.claim(job_id)
    store.append(job_id, [Event(DELTA, {"index": 0, "content": "x"})], attempt=1)
    assert store.redis.ttl(store.keys.job(job_id)) > 0
    assert store.redis.ttl(store.keys.events(job_id)) > 0


def test_cancel_is_final_and_idempotent(store: JobStore) -> None:
    job_id = _new(store)
    store.claim(job_id)
    store.append(job_id, [Event(DELTA, {"index": 0, "content": "x"})], attempt=1)
    usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    assert store.cancel(job_id, usage).status == CANCELLED
    assert store.cancel(job_id, usage).status == CANCELLED
    entries = store.read_events(job_id)
    assert [Event.from_entry(e).type for _, e in entries] == [STARTED, DELTA, CANCELLED]
    with pytest.raises(JobAlreadyEnded):  # the upstream may keep sending: dropped
        store.append(job_id, [Event(DELTA, {"index": 0, "content": "y"})], attempt=1)
    assert fold(entries).usage == usage


def test_events_for_a_missing_job_are_refused(store: JobStore) -> None:
    with pytest.raises(JobGone):
        store.append("job_missing", [Event(DELTA, {"index": 0, "content": "x"})])
    assert not store.redis.exists(store.keys.events("job_missing"))


def test_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first, created = store.create(
        model="m", request={}, prompt_tokens=1, truncated_messages=0, idempotency_key="k1"
    )
    again, created_again = store.create(
        model="m", request={}, prompt_tokens=1, truncated_messages=0, idempotency_key="k1"
    )
    assert created and not created_again
    assert again.id == first.id


def test_redis_is_real(store: JobStore) -> None:
    assert isinstance(store.redis, redis.Redis)
    assert store.redis.execute_command("INFO", "server")["redis_version"]

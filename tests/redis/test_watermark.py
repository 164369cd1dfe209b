"""The replicated watermark (``SLUICE_REDIS_MIN_REPLICAS``, ``sluice.replication``) on a
Redis without replicas, where every WAIT comes back short: the log grows, and nothing of it
is published or read until a WAIT says the replicas have it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from sluice.events import DONE, Event
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from tests.helpers.support import delta, running_job, wait_until
from worker.event_log import EventLog


@pytest.fixture
def watermarked(redis_url: str) -> Iterator[JobStore]:
    settings = Settings.from_env(
        redis_url=redis_url,
        key_prefix=f"sluice-unit-{secrets.token_hex(4)}",
        job_ttl=120,
        redis_min_replicas=1,
        redis_wait_timeout_ms=20,
    )
    client = make_redis(settings)
    store = JobStore(client, settings)
    assert store.min_replicas == 1
    yield store
    for key in client.scan_iter(f"{settings.key_prefix}:*"):
        client.delete(key)


def test_events_are_read_and_published_only_once_replicas_have_them(
    watermarked: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = watermarked
    job_id = running_job(store)  # `started` is event 1, not yet replicated
    live = store.redis.pubsub()
    live.subscribe(store.keys.channel(job_id))
    assert live.get_message(timeout=5)["type"] == "subscribe"
    writer = EventLog(store, outage_tolerance=5.0).writer(job_id, 1, 1)
    writer.write(delta("a"))
    writer.write_and_wait(delta("b"))
    assert store.log_length(job_id) == 3  # in the log...
    assert store.read_events(job_id) == []  # ...but no reader sees it
    assert live.get_message(timeout=0.3) is None  # and nothing was published
    assert store.progress(job_id) == ("running", 0)

    # a replica catches up: the next WAIT is enough (stand-in: a reply of 1 instead)
    probe = f"{store.keys.prefix}:probe"
    monkeypatch.setattr(store, "wait_calls", lambda: [("SET", probe, "0"), ("INCR", probe)])
    wait_until(lambda: len(store.read_events(job_id)) == 3, 5)
    message = live.get_message(timeout=1)
    assert message is not None and message["type"] == "message"
    assert [line.split(" ", 1)[0] for line in message["data"].split("\n")] == ["1", "2", "3"]


def test_an_ended_job_whose_watermark_lags_is_caught_up_by_its_reader(
    watermarked: JobStore,
) -> None:
    """A COMMIT that died with its master (its events were replicated, the raise was not):
    a reader that finds the job ended raises the watermark itself after its own WAIT."""
    store = watermarked
    job_id = running_job(store)
    store.redis.hset(store.keys.job(job_id), "replicated", 0)
    call = store.append_call(job_id, [Event(DONE, {})], attempt=1, expect_last=1)
    store.redis.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    assert store.read_events(job_id) == []
    assert store.progress(job_id) == ("succeeded", 2)  # (its WAIT is short here: logged)
    assert [i for i, _ in store.read_events(job_id)] == [1, 2]

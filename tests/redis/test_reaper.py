"""The reaper's second duty, against the real Redis and real Celery messages: sending again
the message of a queued job whose message went missing, and only then."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from sluice.task_queue import enqueue_job, job_at_head, make_celery
from worker.reaper import Reaper


@pytest.fixture
def queued_store(redis_url: str) -> Iterator[JobStore]:
    """A job store whose jobs count as stranded after 0 s, and a broker queue of its own."""
    run = secrets.token_hex(4)
    settings = Settings.from_env(
        redis_url=redis_url, key_prefix=f"sluice-reaper-{run}", queue=f"sluice-reaper-{run}",
        lease_ttl=0.0,
    )  # fmt: skip
    client = make_redis(settings)
    yield JobStore(client, settings)
    client.delete(settings.queue, *client.keys(f"{settings.key_prefix}:*"))


def submit(store: JobStore, count: int) -> list[str]:
    """Store jobs and send their messages, as the gateway does."""
    celery = make_celery(store.settings)
    ids = []
    for _ in range(count):
        job, _created = store.create(
            model="m", request={"model": "m", "messages": []}, prompt_tokens=1,
            truncated_messages=0,
        )  # fmt: skip
        enqueue_job(celery, job.id, store.settings.queue)
        ids.append(job.id)
    return ids


def reaper(store: JobStore) -> tuple[Reaper, list[str]]:
    sent: list[str] = []
    return Reaper(store, lambda job_id, _queue: sent.append(job_id)), sent


def test_jobs_waiting_their_turn_in_the_broker_are_not_sent_again(queued_store: JobStore) -> None:
    ids = submit(queued_store, 3)
    assert job_at_head(queued_store.redis, queued_store.settings.queue) == ids[0]
    sweeper, sent = reaper(queued_store)
    assert sweeper.send_again() == 0 and sent == []


def test_a_job_whose_message_was_taken_and_lost_is_sent_again(queued_store: JobStore) -> None:
    """A worker killed between kombu's BRPOP and its unacked bookkeeping, or holding the
    message in ``unacked`` when it died: the message left the queue, the job never ran."""
    ids = submit(queued_store, 3)
    queued_store.redis.rpop(queued_store.settings.queue)  # the oldest message, taken and lost
    # everything still waiting was sent after the lost one: only the lost one is missing
    for job_id in ids[1:]:
        queued_store.redis.zadd(queued_store.keys.queued_of(job_id), {job_id: 10**10})
    sweeper, sent = reaper(queued_store)
    assert sweeper.send_again() == 1 and sent == [ids[0]]


def test_with_the_queue_empty_every_stranded_job_is_sent_again_once(
    queued_store: JobStore,
) -> None:
    ids = submit(queued_store, 2)
    queued_store.redis.delete(queued_store.settings.queue)  # both messages gone
    sweeper, sent = reaper(queued_store)
    assert sweeper.send_again() == 2 and sorted(sent) == sorted(ids)
    # sent again just now: not again until it is stranded again (here lease_ttl is 0 s,
    # so only the clock's resolution separates the two sweeps)
    queued_store.settings = queued_store.settings.with_(lease_ttl=60.0)
    assert sweeper.send_again() == 0


def test_a_claimed_or_expired_job_is_never_sent_again(queued_store: JobStore) -> None:
    claimed, expired = submit(queued_store, 2)
    queued_store.redis.delete(queued_store.settings.queue)
    assert queued_store.claim(claimed) is not None
    queued_store.redis.delete(queued_store.keys.job(expired))
    sweeper, sent = reaper(queued_store)
    assert sweeper.send_again() == 0 and sent == []
    assert queued_store.sent_at(claimed) is None and queued_store.sent_at(expired) is None


def test_a_job_ended_while_queued_leaves_the_index(queued_store: JobStore) -> None:
    [job_id] = submit(queued_store, 1)
    queued_store.cancel(job_id, usage=None)
    assert queued_store.sent_at(job_id) is None

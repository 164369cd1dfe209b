"""Sluice's kombu transport (sluice/task_queue.py): one redis-py client per pool instead of one
per operation, and otherwise kombu's Redis transport, against the real Redis."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import redis
from kombu import Consumer, Queue

from sluice.settings import Settings
from sluice.task_queue import Channel, Transport, make_celery


def test_celery_uses_it_and_it_reuses_one_client_per_pool(redis_url: str) -> None:
    app = make_celery(Settings.from_env(redis_url=redis_url))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.ping()
        given = object()
        with channel.conn_or_acquire(given) as client:
            assert client is given  # a caller's own client is used as before
        old_pool = channel.pool
        channel._pool = None  # as kombu does when it drops its connections
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool is not old_pool


def test_messages_go_through_with_late_acks(redis_url: str) -> None:
    app = make_celery(Settings.from_env(redis_url=redis_url))
    name = f"sluice-broker-test-{secrets.token_hex(4)}"
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue(name)
        try:
            queue.put({"job": "a"})
            queue.put({"job": "b"})
            first = queue.get(timeout=5)
            assert first.payload == {"job": "a"}
            first.ack()
            second = queue.get(timeout=5)
            second.requeue()  # kombu's unacked bookkeeping puts it back
            again = queue.get(timeout=5)
            assert again.payload == {"job": "b"}
            again.ack()
            with pytest.raises(queue.Empty):
                queue.get(timeout=0.3)  # each message delivered and acked exactly once
        finally:
            queue.clear()
            queue.close()


def test_the_messages_behind_the_first_are_taken_a_batch_at_a_time(redis_url: str) -> None:
    """One drain takes the message BRPOP returned and those behind it, within the prefetch
    room; each is in kombu's unacked hash until acked, and none is delivered twice."""
    app = make_celery(Settings.from_env(redis_url=redis_url))
    name = f"sluice-broker-test-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(redis_url)
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue(name)
        try:
            for n in range(30):
                queue.put({"job": n})
            channel = conn.channel()
            received: list[Any] = []
            consumer = Consumer(
                channel, queues=[Queue(name)], callbacks=[lambda _b, m: received.append(m)]
            )
            consumer.qos(prefetch_count=20)
            consumer.consume()
            conn.drain_events(timeout=5)
            assert [m.payload["job"] for m in received] == list(range(20))  # one drain

            def booked() -> list[bool]:  # (other tests' workers share the unacked hash)
                return [bool(client.hexists(channel.unacked_key, m.delivery_tag)) for m in received]

            assert booked() == [True] * 20
            for message in received:
                message.ack()
            conn.drain_events(timeout=5)
            assert [m.payload["job"] for m in received] == list(range(30))
            for message in received[20:]:
                message.ack()
            assert booked() == [False] * 30 and client.llen(name) == 0
            consumer.cancel()
        finally:
            queue.clear()
            queue.close()

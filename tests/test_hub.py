"""The per-process shared subscriber, against the real Redis."""

from __future__ import annotations

import secrets
import time

import redis

from gateway.hub import INBOX_LIMIT, INBOX_LIMIT_CHARS, Hub


def new_hub(redis_url: str) -> tuple[Hub, redis.Redis, str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"sluice-hub-{secrets.token_hex(3)}"
    return Hub(client, f"{prefix}:control"), client, prefix


def test_many_listeners_share_one_redis_subscription(redis_url: str) -> None:
    hub, client, prefix = new_hub(redis_url)
    channel = f"{prefix}:job"
    listeners = [hub.subscribe(channel) for _ in range(3)]
    assert client.pubsub_numsub(channel) == [(channel, 1)]
    client.publish(channel, "1 delta {}")  # subscribe() returned after confirmation
    assert all(listener.get(timeout=2) == ["1 delta {}"] for listener in listeners)
    for listener in listeners:
        listener.close()
    deadline = time.monotonic() + 2
    while client.pubsub_numsub(channel) != [(channel, 0)] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.pubsub_numsub(channel) == [(channel, 0)]
    assert hub.channels == 0


def test_a_listener_that_falls_behind_is_marked_stale_not_buffered(redis_url: str) -> None:
    hub, client, prefix = new_hub(redis_url)
    channel = f"{prefix}:job"
    listener = hub.subscribe(channel)
    for i in range(INBOX_LIMIT + 50):
        client.publish(channel, f"{i + 1} delta {{}}")
    deadline = time.monotonic() + 5
    while not listener.stale and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.stale
    assert len(listener.get(timeout=0.1) or []) == INBOX_LIMIT
    listener.close()


def test_a_listener_behind_on_large_messages_holds_a_bounded_size(redis_url: str) -> None:
    """One message carries a whole append (up to 1,000 events in a token storm)."""
    hub, client, prefix = new_hub(redis_url)
    channel = f"{prefix}:job"
    listener = hub.subscribe(channel)
    big = "x" * (INBOX_LIMIT_CHARS // 4)
    for i in range(10):  # well under INBOX_LIMIT messages, 2.5 times the size limit
        client.publish(channel, f"{i + 1} delta {big}")
    deadline = time.monotonic() + 5
    while not listener.stale and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.stale
    held = listener.get(timeout=0.1) or []
    assert 1 <= len(held) < 4 and sum(map(len, held)) <= INBOX_LIMIT_CHARS
    listener.close()


def test_get_times_out_with_nothing(redis_url: str) -> None:
    hub, _client, prefix = new_hub(redis_url)
    listener = hub.subscribe(f"{prefix}:quiet")
    started = time.monotonic()
    assert listener.get(timeout=0.2) is None
    assert time.monotonic() - started >= 0.19
    listener.close()

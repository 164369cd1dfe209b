"""The per-process shared subscriber, against the real Redis."""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

import pytest
import redis

from devtools.local_redis import RedisServer
from gateway.hub import INBOX_LIMIT, INBOX_LIMIT_CHARS, Hub, Listener


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


def received(listener: Listener, timeout: float = 5.0) -> list[str]:
    """What the listener gets next, read as its feed reads it (a wake-up may be empty)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = listener.get(timeout=deadline - time.monotonic())
        if messages:
            return messages
    return []


def test_the_subscriber_survives_a_redis_crash_and_resubscribes(own_redis: RedisServer) -> None:
    """Killing Redis broke the socket under the reading thread; redis-py then raised
    ``ValueError: I/O operation on closed file``, which killed the thread for good: every
    later stream on the gateway waited for a confirmation that never came."""
    client = redis.Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=1)
    hub = Hub(client, "hub:control")
    before = hub.subscribe("job:a")
    assert hub.healthy
    own_redis.kill()
    with contextlib.suppress(redis.RedisError):
        hub.subscribe("job:b", timeout=0.5)  # while Redis is down: it may only time out
    deadline = time.monotonic() + 5
    while hub.healthy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not hub.healthy  # /readyz says so while it cannot subscribe
    own_redis.start()
    after = hub.subscribe("job:c", timeout=10)  # a new stream on this gateway works again
    assert hub.healthy
    deadline = time.monotonic() + 5
    while not before.stale and time.monotonic() < deadline:
        time.sleep(0.02)
    assert before.stale  # what it missed meanwhile is in the log: its feed re-reads it
    before.stale = False
    client.publish("job:a", "7 delta {}")
    client.publish("job:c", "2 delta {}")
    assert received(before) == ["7 delta {}"]
    assert received(after) == ["2 delta {}"]


def subscriber_port(hub: Hub) -> int:
    """The local port of the hub's subscribing connection (to kill that one alone)."""
    pubsub = hub._pubsub
    assert pubsub is not None and pubsub.connection is not None
    sock = pubsub.connection._sock
    assert sock is not None
    return int(sock.getsockname()[1])


def test_a_listener_of_a_dropped_connection_is_resubscribed(redis_url: str) -> None:
    """Redis closing the subscriber's connection (a failover, ``CLIENT KILL``, a proxy's
    idle timeout) is the same: the hub reconnects, resubscribes and marks it stale."""
    hub, client, prefix = new_hub(redis_url)
    channel = f"{prefix}:job"
    listener = hub.subscribe(channel)
    port = subscriber_port(hub)
    client.client_kill(f"127.0.0.1:{port}")  # this hub's connection, no other
    deadline = time.monotonic() + 10
    while not listener.stale and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.stale and hub.healthy
    listener.stale = False  # as its feed does, before it re-reads the log
    client.publish(channel, "5 delta {}")
    assert received(listener) == ["5 delta {}"]
    listener.close()


class _BreakingPubSub(redis.client.PubSub):
    """redis-py's PubSub, made to raise what it raised in the chaos soak when the socket
    was closed under the reader: ``ValueError: I/O operation on closed file``."""

    armed = False

    def get_message(self, *args: Any, **kwargs: Any) -> Any:
        if _BreakingPubSub.armed:
            _BreakingPubSub.armed = False
            assert self.connection is not None
            self.connection.disconnect()
            raise ValueError("I/O operation on closed file")
        return super().get_message(*args, **kwargs)


def test_the_subscriber_thread_survives_any_error_from_the_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    monkeypatch.setattr(
        client, "pubsub", lambda **kw: _BreakingPubSub(client.connection_pool, **kw)
    )
    prefix = f"sluice-hub-{secrets.token_hex(3)}"
    hub = Hub(client, f"{prefix}:control")
    first = hub.subscribe(f"{prefix}:a")
    _BreakingPubSub.armed = True
    client.publish(f"{prefix}:a", "1 delta {}")  # wakes the reader, which then breaks
    deadline = time.monotonic() + 5
    while not first.stale and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.stale  # resubscribed on a new connection: it re-reads the log
    first.stale = False
    second = hub.subscribe(f"{prefix}:b", timeout=5)  # and new streams work
    client.publish(f"{prefix}:b", "1 delta {}")
    assert received(second) == ["1 delta {}"]

"""The job queue's broker as the gateway and the reaper see it: how many jobs wait, whether it
answers, and (Redis only) which job's message is next.

Celery does the sending and the consuming (``sluice/task_queue.py``); this module is the
little Sluice reads from the broker itself, in one place for both brokers:

- **Redis** (``redis://``, ``rediss://``; ``REDIS_URL`` unless ``CELERY_BROKER_URL`` names
  another Redis): the queue is a list kombu pushes on the left and pops on the right, so its
  depth is ``LLEN`` and its head ``LINDEX -1``.
- **RabbitMQ** (``amqp://``, ``amqps://``): the depth is a passive ``queue.declare``'s
  ``message_count`` (the messages ready for delivery; those a worker holds unacked are not
  counted, as kombu's Redis ``unacked`` hash is not in ``LLEN``). One AMQP connection per
  process, opened at the first read and kept, with each queue's depth cached for
  ``DEPTH_CACHE_S``: a burst of submissions, ``/readyz`` probes and scrapes costs at most one
  round trip a second per queue, never a connection per request. The head of a RabbitMQ
  queue cannot be read without taking the message, so ``job_at_head`` answers only for an
  empty queue (see ``worker/reaper.py``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis

from sluice.settings import Settings

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
REDIS_SCHEMES = ("redis", "rediss")
DEPTH_CACHE_S = 1.0
EMPTY = None  # job_at_head: no message is waiting
UNKNOWN = ""  # job_at_head: a message waits, but whose cannot be told


class BrokerUnavailable(Exception):
    """The broker did not answer (or refused the read)."""


def broker_url(settings: Settings) -> str:
    """``CELERY_BROKER_URL``, else ``REDIS_URL``; refused when that is a Redis Cluster
    (kombu's Redis transport needs one Redis: its queue, unacked hash and their scripts
    span keys in different slots), so a misconfiguration stops the process at startup."""
    if settings.celery_broker_url:
        return settings.celery_broker_url
    if settings.redis_cluster:
        raise ValueError(
            "SLUICE_REDIS_CLUSTER is on, so REDIS_URL is a Redis Cluster, which cannot be "
            "the job queue's broker: set CELERY_BROKER_URL to RabbitMQ (amqp://) or a "
            "plain Redis (redis://)"
        )
    return settings.redis_url


def broker_kind(url: str) -> str:
    """``redis`` or ``amqp``; any other scheme is a configuration mistake."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    raise ValueError(
        f"CELERY_BROKER_URL: unsupported scheme {scheme!r} (redis://, rediss://, amqp://, amqps://)"
    )


def safe_url(url: str) -> str:
    """The URL for logs: without its password (nor the user's, when it has one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class Broker(Protocol):
    kind: str
    url: str  # without the password

    def queue_depth(self, queue: str) -> int:
        """Jobs waiting in ``queue`` (raises ``BrokerUnavailable``)."""

    def ping(self) -> None:
        """Raises ``BrokerUnavailable`` unless the broker answers."""

    def job_at_head(self, queue: str) -> str | None:
        """The id of the job whose message is next in ``queue``; ``EMPTY`` (None) when no
        message waits, ``UNKNOWN`` ("") when one does but whose cannot be told."""


class RedisBroker:
    kind = "redis"

    def __init__(self, client: redis.Redis, url: str) -> None:
        self.client = client
        self.url = safe_url(url)

    def queue_depth(self, queue: str) -> int:
        try:
            return int(self.client.llen(queue))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def job_at_head(self, queue: str) -> str | None:
        # kombu pushes on the left and pops on the right
        try:
            raw = self.client.lindex(queue, -1)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if raw is None:
            return EMPTY
        try:
            return str(json.loads(raw)["headers"]["id"])
        except (ValueError, KeyError, TypeError):
            return UNKNOWN


class AmqpBroker:
    kind = "amqp"

    def __init__(
        self, url: str, *, ssl: Any = None, cache_s: float = DEPTH_CACHE_S, name: str = "sluice"
    ) -> None:
        self._url = url
        self._name = name
        self.url = safe_url(url)
        self._ssl = ssl
        self.cache_s = cache_s
        self._lock = threading.Lock()  # (gevent-patched in both processes: a greenlet lock)
        self._connection: Any = None
        self._channel: Any = None
        self._depths: dict[str, tuple[float, int]] = {}

    def queue_depth(self, queue: str) -> int:
        cached = self._depths.get(queue)
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        with self._lock:
            cached = self._depths.get(queue)  # read by another greenlet meanwhile
            if cached is not None and time.monotonic() - cached[0] < self.cache_s:
                return cached[1]
            depth = self._read(queue)
            self._depths[queue] = (time.monotonic(), depth)
            return depth

    def ping(self) -> None:
        with self._lock:
            self._call(lambda channel: None)

    def job_at_head(self, queue: str) -> str | None:
        return EMPTY if self.queue_depth(queue) == 0 else UNKNOWN

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- under the lock ------------------------------------------------------------------

    def _read(self, queue: str) -> int:
        import amqp

        def declare(channel: Any) -> int:
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except amqp.exceptions.NotFound:
                # not declared yet (no worker or message ever came): nothing waits in it;
                # the broker closed the channel, so the next read opens another
                self._channel = None
                return 0

        result: int = self._call(declare)
        return result

    def _call(self, operation: Any) -> Any:
        """``operation(channel)`` on the kept connection; once more on a fresh one when the
        kept one broke (a broker restart, an idle connection a proxy dropped)."""
        import amqp
        from kombu.connection import Connection

        errors = (*amqp.Connection.connection_errors, *amqp.Connection.channel_errors, OSError)
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = Connection(
                        self._url,
                        ssl=self._ssl or False,
                        connect_timeout=2,
                        transport_options={"client_properties": {"connection_name": self._name}},
                    )
                    self._connection.connect()
                if self._channel is None:
                    self._channel = self._connection.channel()
                return operation(self._channel)
            except errors as exc:
                self._drop()
                if attempt == 2:
                    raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to close cleanly
                connection.release()


def make_broker(settings: Settings, redis_client: redis.Redis) -> Broker:
    """The broker ``settings`` name; ``redis_client`` (``REDIS_URL``'s) is reused when the
    broker is that same Redis."""
    url = broker_url(settings)
    if broker_kind(url) == "amqp":
        name = f"sluice-broker-reads queue={settings.queue}"
        return AmqpBroker(url, ssl=True if url.startswith("amqps") else None, name=name)
    if url == settings.redis_url:
        return RedisBroker(redis_client, url)
    from sluice.redis_client import make_redis

    own = settings.with_(redis_url=url, redis_cluster=False, redis_sentinels=())
    return RedisBroker(make_redis(own), url)

"""Redis clients built from ``REDIS_URL``, including the ``rediss://`` URLs PaaS add-ons give,
or, with ``REDIS_SENTINELS``, for the master the Sentinels name (found again after a
failover)."""

from __future__ import annotations

import logging
import ssl
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from sluice.settings import Settings

log = logging.getLogger("sluice.redis")


def make_redis(settings: Settings, **overrides: object) -> redis.Redis:
    """A client with decoded strings, TCP keepalive and retries with backoff on reconnect.

    Its pool holds up to ``SLUICE_REDIS_MAX_CONNECTIONS`` connections and makes a caller
    wait (up to 10 s) for a free one rather than fail: redis-py's default pool refuses a
    101st connection, which a gateway with hundreds of streams or a worker with hundreds
    of jobs reaches in a burst.

    With ``REDIS_SENTINELS`` the pool asks the Sentinels for the master's address each
    time it opens a connection, so a connection lost in a failover reconnects to the
    promoted replica (and one to a demoted master, answered READONLY, is dropped); the
    master's password and database are ``REDIS_URL``'s, its host and port are ignored.
    """
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    options.update(tls_options(settings))
    options.update(overrides)
    if settings.redis_cluster and settings.redis_sentinels:
        raise ValueError("SLUICE_REDIS_CLUSTER and REDIS_SENTINELS exclude each other")
    if settings.redis_cluster:
        return make_cluster(settings, options)
    if settings.redis_sentinels:
        return sentinel_master(settings, options)
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=10, **options
    )
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


# -- Redis Cluster (SLUICE_REDIS_CLUSTER) ------------------------------------------------


def make_cluster(settings: Settings, options: dict[str, object]) -> redis.Redis:
    """A ``RedisCluster`` found from ``REDIS_URL`` (a seed node): each node's pool holds up
    to ``SLUICE_REDIS_MAX_CONNECTIONS`` and makes a caller wait for a free connection; a
    command is routed by its key's slot and follows MOVED/ASK, and a connection error
    refreshes the slot map (a failover) before the retries.

    Typed as ``redis.Redis``: it answers the same commands (a pipeline is redis-py's
    ``ClusterPipeline``, which sends one pipeline per node), so call sites stay as they
    are; what differs on a cluster (sharded pub/sub, the key layout) is decided where
    ``Settings.redis_cluster`` is read."""
    cluster_options = dict(options)
    cluster_options.pop("retry_on_error", None)  # the cluster's own retry handles them
    cluster = RedisCluster.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        connection_pool_class=redis.BlockingConnectionPool,
        timeout=10,  # (the blocking pool's wait for a free connection)
        **cluster_options,
    )
    return cast("redis.Redis", cluster)


# -- Sentinel ------------------------------------------------------------------------------


class SentinelBlockingConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool with the blocking pool's bound: at most ``max_connections``,
    a caller waits (``timeout``) for a free one."""


class LoggingSentinel(Sentinel):
    """A Sentinel manager that logs the master it finds, once and after each change."""

    found: tuple[str, int] | None = None

    def discover_master(self, service_name: str) -> tuple[str, int]:
        address: tuple[str, int] = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        if address != self.found:
            previous, self.found = self.found, address
            log.info(
                "event=redis.master name=%s master=%s:%d previous=%s", service_name, *address,
                f"{previous[0]}:{previous[1]}" if previous else "-",
            )  # fmt: skip
        return address


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """``REDIS_SENTINELS`` as (host, port) pairs (26379 when a port is left out)."""
    addresses = []
    for entry in settings.redis_sentinels:
        host, _, port = entry.strip().rpartition(":") if ":" in entry else (entry, "", "26379")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def sentinel_master(settings: Settings, options: dict[str, object]) -> redis.Redis:
    """The client of the master named ``REDIS_SENTINEL_MASTER``, through a bounded pool."""
    url_options: dict[str, Any] = parse_url(settings.redis_url)
    for name in ("host", "port", "connection_class", "path"):
        url_options.pop(name, None)
    if settings.redis_url.startswith("rediss://"):
        url_options["ssl"] = True
    sentinel_kwargs: dict[str, object] = {
        "socket_connect_timeout": options["socket_connect_timeout"],
        "socket_timeout": 5,
        "socket_keepalive": True,
        "decode_responses": True,
    }
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    addresses = sentinel_addresses(settings)
    manager = LoggingSentinel(addresses, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master,
        connection_pool_class=SentinelBlockingConnectionPool,
        max_connections=settings.redis_max_connections,
        timeout=10,
        **{**url_options, **options},
    )
    client.auto_close_connection_pool = True
    return client


CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_options(settings: Settings) -> dict[str, str]:
    """redis-py's TLS options for a ``rediss://`` URL (none for ``redis://``)."""
    if not settings.redis_url.startswith("rediss://") or "ssl_cert_reqs" in settings.redis_url:
        return {}
    if settings.redis_ssl_cert_reqs not in CERT_REQS:
        raise ValueError("REDIS_SSL_CERT_REQS must be required, optional or none")
    return {"ssl_cert_reqs": settings.redis_ssl_cert_reqs}


def limiter_storage(settings: Settings) -> tuple[str, dict[str, Any]]:
    """flask-limiter's storage URI and options: ``REDIS_URL``; with ``REDIS_SENTINELS`` the
    ``limits`` library's ``redis+sentinel://`` form for the same master; on a Redis Cluster
    its ``redis+cluster://`` form (the seed node, without a database; TLS as an option),
    whose counters are single keys, each in its own slot."""
    options: dict[str, Any] = {**tls_options(settings)}
    if settings.redis_cluster:
        parts = urlsplit(settings.redis_url)
        if parts.scheme == "rediss":
            options["ssl"] = 1
        return f"redis+cluster://{parts.netloc}", options
    if not settings.redis_sentinels:
        return settings.redis_url, options
    auth = urlsplit(settings.redis_url).netloc.rpartition("@")[0]
    hosts = ",".join(f"{host}:{port}" for host, port in sentinel_addresses(settings))
    uri = f"redis+sentinel://{auth + '@' if auth else ''}{hosts}/{settings.redis_sentinel_master}"
    sentinel_kwargs = {"password": settings.redis_sentinel_password}  # None: no AUTH
    return uri, {"sentinel_kwargs": sentinel_kwargs, "use_replicas": False}

"""Redis clients built from ``REDIS_URL``, including the ``rediss://`` URLs PaaS add-ons give."""

from __future__ import annotations

import ssl
from typing import cast

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from sluice.settings import Settings


def make_redis(settings: Settings, **overrides: object) -> redis.Redis:
    """A client with decoded strings, TCP keepalive and retries with backoff on reconnect.

    Its pool holds up to ``SLUICE_REDIS_MAX_CONNECTIONS`` connections and makes a caller
    wait (up to 10 s) for a free one rather than fail: redis-py's default pool refuses a
    101st connection, which a gateway with hundreds of streams or a worker with hundreds
    of jobs reaches in a burst.
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
    if settings.redis_cluster:
        return make_cluster(settings, options)
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


CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_options(settings: Settings) -> dict[str, str]:
    """redis-py's TLS options for a ``rediss://`` URL (none for ``redis://``)."""
    if not settings.redis_url.startswith("rediss://") or "ssl_cert_reqs" in settings.redis_url:
        return {}
    if settings.redis_ssl_cert_reqs not in CERT_REQS:
        raise ValueError("REDIS_SSL_CERT_REQS must be required, optional or none")
    return {"ssl_cert_reqs": settings.redis_ssl_cert_reqs}

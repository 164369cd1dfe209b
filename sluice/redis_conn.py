"""Redis clients built from ``REDIS_URL``, including the ``rediss://`` URLs PaaS add-ons give."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from sluice.settings import Settings


def make_redis(settings: Settings, **overrides: object) -> redis.Redis:
    """A client with decoded strings, TCP keepalive and retries with backoff on reconnect."""
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    options.update(overrides)
    return redis.Redis.from_url(settings.redis_url, **options)

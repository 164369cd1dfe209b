"""Settings read from the environment (12-factor), one frozen object for both processes.

Every setting has a safe default so a fresh clone runs with no configuration; the README's
configuration table documents each one. Tests build their own ``Settings`` instead of
patching globals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    # For rediss:// URLs: verify the server's certificate ("required"), or not ("none":
    # PaaS Redis add-ons such as Heroku's use self-signed certificates).
    redis_ssl_cert_reqs: str = "required"
    # Connections each process may open to Redis (its pool waits when all are busy).
    redis_max_connections: int = 1000
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str = "https://api.openai.com/v1"
    port: int = 8000
    # Redis key prefix, so several deployments (or the test suite) can share one server.
    key_prefix: str = "sluice"
    # Name of the Celery queue jobs go to.
    queue: str = "sluice"
    # Seconds a finished job and its event log stay readable (replay, polling).
    job_ttl: int = 3600
    # Seconds an unfinished job's keys live at most (a safety net against leaks).
    max_job_age: int = 6 * 3600
    # A running job's worker renews its lease every lease_ttl/3 s; a job whose lease ran
    # out (its worker died) is restarted, up to max_attempts attempts in all.
    lease_ttl: float = 10.0
    max_attempts: int = 3
    reaper_interval: float = 2.0
    # Retries of a refused upstream request (429, 5xx, connection errors) before the first
    # delta, and the longest Retry-After honoured (a longer one fails the job at once).
    upstream_retries: int = 2
    upstream_max_retry_delay: float = 20.0
    # Seconds a worker keeps retrying to write to Redis before it gives the job up.
    redis_outage_tolerance: float = 30.0
    # Upstream timeouts: connect, and the longest silence tolerated between bytes.
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 120.0
    # Context window assumed for models Sluice does not know.
    default_context_window: int = 8192
    # Tokens kept free for the reply when the request sets no max_tokens.
    reply_reserve_tokens: int = 256
    # SSE: seconds between keep-alive comments on an idle stream.
    heartbeat_interval: float = 15.0
    # SSE: the reconnection delay suggested to EventSource clients, in milliseconds.
    sse_retry_ms: int = 2000
    # Seconds GET /v1/models caches the upstream's list.
    models_cache_ttl: float = 60.0
    # Gateway access keys (Authorization: Bearer …). Empty: the API is open (local use).
    access_keys: tuple[str, ...] = field(default=(), repr=False)
    # Requests per client (access key, else address) on the routes that start jobs, in
    # Flask-Limiter's notation, e.g. "60/minute;1000/day". Empty: no limit.
    rate_limit: str = ""
    # Origins allowed to call the API from a browser (CORS), comma-separated, or "*".
    cors_origins: tuple[str, ...] = ()
    # Reverse proxies in front of the gateway whose X-Forwarded-* headers are trusted.
    proxy_hops: int = 0
    # Jobs waiting in the queue beyond which new ones are refused (503 + Retry-After).
    max_queued: int = 1000
    # Largest accepted request body, in bytes.
    max_body_bytes: int = 1_000_000
    # Job submissions one gateway process works on at once (count, store, enqueue); the
    # rest wait their turn, so a burst of new jobs cannot stall the streams it relays.
    submit_concurrency: int = 4
    # Encrypts the upstream keys users bring per request (X-Upstream-Api-Key); the same
    # value on every gateway and worker. Unset: per-request keys are refused.
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": _env("REDIS_URL", cls.redis_url),
            "redis_max_connections": _int("SLUICE_REDIS_MAX_CONNECTIONS", 1000),
            "redis_ssl_cert_reqs": _env("REDIS_SSL_CERT_REQS", cls.redis_ssl_cert_reqs).lower(),
            "openai_api_key": os.environ.get("OPENAI_API_KEY") or None,
            "openai_base_url": _env("OPENAI_BASE_URL", cls.openai_base_url).rstrip("/"),
            "port": _int("PORT", cls.port),
            "key_prefix": _env("SLUICE_KEY_PREFIX", cls.key_prefix),
            "queue": _env("SLUICE_QUEUE", cls.queue),
            "job_ttl": _int("SLUICE_JOB_TTL", cls.job_ttl),
            "max_job_age": _int("SLUICE_MAX_JOB_AGE", cls.max_job_age),
            "lease_ttl": _float("SLUICE_LEASE_TTL", cls.lease_ttl),
            "max_attempts": _int("SLUICE_MAX_ATTEMPTS", cls.max_attempts),
            "reaper_interval": _float("SLUICE_REAPER_INTERVAL", cls.reaper_interval),
            "upstream_retries": _int("SLUICE_UPSTREAM_RETRIES", cls.upstream_retries),
            "upstream_max_retry_delay": _float(
                "SLUICE_UPSTREAM_MAX_RETRY_DELAY", cls.upstream_max_retry_delay
            ),
            "redis_outage_tolerance": _float(
                "SLUICE_REDIS_OUTAGE_TOLERANCE", cls.redis_outage_tolerance
            ),
            "upstream_connect_timeout": _float(
                "SLUICE_UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout
            ),
            "upstream_read_timeout": _float(
                "SLUICE_UPSTREAM_READ_TIMEOUT", cls.upstream_read_timeout
            ),
            "default_context_window": _int(
                "SLUICE_DEFAULT_CONTEXT_WINDOW", cls.default_context_window
            ),
            "reply_reserve_tokens": _int("SLUICE_REPLY_RESERVE_TOKENS", cls.reply_reserve_tokens),
            "heartbeat_interval": _float("SLUICE_HEARTBEAT_INTERVAL", cls.heartbeat_interval),
            "sse_retry_ms": _int("SLUICE_SSE_RETRY_MS", cls.sse_retry_ms),
            "models_cache_ttl": _float("SLUICE_MODELS_CACHE_TTL", cls.models_cache_ttl),
            "max_queued": _int("SLUICE_MAX_QUEUED", cls.max_queued),
            "max_body_bytes": _int("SLUICE_MAX_BODY_BYTES", cls.max_body_bytes),
            "submit_concurrency": _int("SLUICE_SUBMIT_CONCURRENCY", cls.submit_concurrency),
            "secret_key": os.environ.get("SLUICE_SECRET_KEY") or None,
            "access_keys": _list("SLUICE_ACCESS_KEYS"),
            "rate_limit": _env("SLUICE_RATE_LIMIT", ""),
            "cors_origins": _list("SLUICE_CORS_ORIGINS"),
            "proxy_hops": _int("SLUICE_PROXY_HOPS", 0),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

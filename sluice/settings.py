"""Every environment variable Sluice reads, declared once: name, default, unit, meaning, reader.

Two kinds, one declaration:

- the ``Settings`` fields, the gateway's and the worker's settings in one frozen object. Each
  field is declared where it stands (``CONNECTIONS.setting("REDIS_URL", …)``): the field's
  default *is* the variable's, and ``from_env`` reads every field through its declaration
  instead of naming each variable a second time;
- ``OTHERS``, the variables read before or beside ``Settings``: gunicorn's config, the
  Procfile, logging, metrics and tokenizer set-up, ``make run``, the terminal client. Code
  that can import this module reads them with ``read_env("NAME")``, which parses them as
  declared and knows their defaults.

The README's configuration tables are this declaration printed (``python -m sluice.settings``);
``tests/test_settings.py`` fails when the README differs from it, and when code anywhere reads
a variable that is not declared here, so no variable goes undocumented again.

Why dataclass metadata rather than a settings library: pydantic-settings is not installed, and
pydantic alone brings its own reading of values (JSON for lists, ``yes`` for booleans…), which
would change what a deployment's existing values mean; ``Settings`` stays the frozen
dataclass the code and the tests build (``Settings(...)``, ``with_``), and
``field(metadata=…)`` keeps each variable's name, unit and meaning on the field it fills.

Every setting has a safe default so a fresh clone runs with no configuration; an empty or
blank value counts as unset. Tests build their own ``Settings`` instead of patching globals.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# which processes read a variable (the tables' "read by" column)
GATEWAY = "gateway"
WORKER = "worker"
BOTH = "gateway, worker"
GUNICORN = "gunicorn"  # gunicorn.conf.py, in the web process's master


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _flag(value: str) -> bool:
    """``1``/``0`` (``true``/``false``, ``yes``/``no``, ``on``/``off`` too); anything else
    is a mistake worth failing on rather than a silent "off"."""
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a flag (1 or 0): {value!r}")


def _url(value: str) -> str:
    return value.rstrip("/")  # so the code can append "/chat/completions"


# how a value is read when the declaration names no parser: by the default's type
_PARSERS: dict[type, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _flag,
    tuple: _comma_list,
    type(None): str,
}


@dataclass(frozen=True)
class Var:
    """One environment variable: its row in the README and how its value is read."""

    name: str
    default: Any  # already parsed; None (or "" or ()): unset
    unit: str
    read_by: str
    meaning: str  # Markdown, one table cell
    group: str
    parse: Callable[[str], Any] = str  # turns the (stripped) value into the setting
    secret: bool = False  # a key: kept out of repr() and taken exactly as given

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The value ``environ`` (``os.environ``) gives; the default when unset or blank."""
        raw = (os.environ if environ is None else environ).get(self.name, "")
        if not raw.strip():
            return self.default
        return self.parse(raw if self.secret else raw.strip())

    def shown_default(self) -> str:
        """The default as the README writes it (and as it would be set: it parses back)."""
        value = self.default
        if value is None or value in ("", ()):
            return "unset"
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, float):
            text = str(int(value)) if value.is_integer() else repr(value)
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        return f"`{text}`"


@dataclass(frozen=True)
class Group:
    """A heading of the README's configuration tables; declares the variables under it."""

    title: str

    def variable(
        self,
        name: str,
        default: Any,
        unit: str,
        read_by: str,
        meaning: str,
        *,
        parse: Callable[[str], Any] | None = None,
        secret: bool = False,
    ) -> Var:
        parse = parse or _PARSERS[type(default)]
        return Var(name, default, unit, read_by, meaning, self.title, parse, secret)

    def setting(self, *args: Any, **kwargs: Any) -> Any:
        """A ``Settings`` field filled from the variable ``variable(*args)`` declares."""
        var = self.variable(*args, **kwargs)
        return field(default=var.default, repr=not var.secret, metadata={"env": var})


CONNECTIONS = Group("Redis and the upstream")
JOBS = Group("Jobs")
API = Group("The API and its streams")
PROCESSES = Group("Processes: gunicorn, the Procfile, logs, metrics, the tokenizer")
DEVELOPMENT = Group("`make run` (development)")
CLIENT = Group(
    "The terminal client (`python -m sluice_cli`): read on the user's machine, not the server's"
)
GROUPS = (CONNECTIONS, JOBS, API, PROCESSES, DEVELOPMENT, CLIENT)


@dataclass(frozen=True)
class Settings:
    """The gateway's and the worker's settings; each field declares its variable."""

    redis_url: str = CONNECTIONS.setting(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "URL",
        BOTH,
        "broker, event log and pub/sub; `rediss://` works",
    )
    celery_broker_url: str | None = CONNECTIONS.setting(
        "CELERY_BROKER_URL",
        None,
        "URL",
        BOTH,
        "the job queue's broker when it is not `REDIS_URL` (Celery's own name): RabbitMQ "
        "(`amqp://`), or another Redis; unset: `REDIS_URL`",
        secret=True,
    )
    redis_cluster: bool = CONNECTIONS.setting(
        "SLUICE_REDIS_CLUSTER",
        False,
        "flag",
        BOTH,
        "`REDIS_URL` is a seed node of a Redis Cluster (the event log, live delivery and "
        "rate limits shard across it); the broker must then be `CELERY_BROKER_URL`",
    )
    redis_sentinels: tuple[str, ...] = CONNECTIONS.setting(
        "REDIS_SENTINELS",
        (),
        "list",
        BOTH,
        "comma-separated `host:port` of Redis Sentinels: the log's Redis (and a Redis "
        "broker) is the master they name `REDIS_SENTINEL_MASTER`, found again after a failover",
    )
    redis_sentinel_master: str = CONNECTIONS.setting(
        "REDIS_SENTINEL_MASTER",
        "mymaster",
        "name",
        BOTH,
        "the master's name in the Sentinels' configuration",
    )
    redis_sentinel_password: str | None = CONNECTIONS.setting(
        "REDIS_SENTINEL_PASSWORD",
        None,
        "secret",
        BOTH,
        "the Sentinels' own password, when they have one (the master's is `REDIS_URL`'s)",
        secret=True,
    )
    redis_min_replicas: int = CONNECTIONS.setting(
        "SLUICE_REDIS_MIN_REPLICAS",
        -1,
        "count",
        BOTH,
        "replicas that must have an event (`WAIT`) before any client sees it, so a failover "
        "takes back nothing a client saw (docs/reliability.md); 0: off; -1: 1 with "
        "`REDIS_SENTINELS`, else 0. The same on gateways and workers",
    )
    redis_wait_timeout_ms: int = CONNECTIONS.setting(
        "SLUICE_REDIS_WAIT_TIMEOUT_MS",
        1000,
        "ms",
        BOTH,
        "how long one `WAIT` waits for those replicas before the worker tries again",
    )
    redis_ssl_cert_reqs: str = CONNECTIONS.setting(
        "REDIS_SSL_CERT_REQS",
        "required",
        "name",
        BOTH,
        "for `rediss://`: `required` verifies the server's certificate, `none` accepts a "
        "self-signed one (PaaS Redis add-ons such as Heroku's)",
        parse=str.lower,
    )
    redis_max_connections: int = CONNECTIONS.setting(
        "SLUICE_REDIS_MAX_CONNECTIONS",
        1000,
        "count",
        BOTH,
        "connections each process may open to Redis (its pool waits when all are busy)",
    )
    openai_api_key: str | None = CONNECTIONS.setting(
        "OPENAI_API_KEY",
        None,
        "secret",
        BOTH,
        "the upstream key; stays server-side (never in Redis, logs or responses)",
        secret=True,
    )
    openai_base_url: str = CONNECTIONS.setting(
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "URL",
        BOTH,
        "any OpenAI-compatible upstream (a trailing `/` is dropped)",
        parse=_url,
    )
    port: int = PROCESSES.setting(
        "PORT", 8000, "port", f"{GUNICORN}, `make run`", "the web process binds `0.0.0.0:$PORT`"
    )
    key_prefix: str = CONNECTIONS.setting(
        "SLUICE_KEY_PREFIX",
        "sluice",
        "name",
        BOTH,
        "prefix of every Redis key, so several deployments (or the test suite) can share "
        "one server",
    )
    queue: str = CONNECTIONS.setting(
        "SLUICE_QUEUE",
        "sluice",
        "name",
        f"{BOTH}, Procfile",
        "the Celery queue jobs go to (the Procfile's worker consumes it)",
    )
    job_ttl: int = JOBS.setting(
        "SLUICE_JOB_TTL",
        3600,
        "seconds",
        BOTH,
        "how long a finished job and its events stay readable (replay, polling)",
    )
    max_job_age: int = JOBS.setting(
        "SLUICE_MAX_JOB_AGE",
        6 * 3600,
        "seconds",
        BOTH,
        "longest an unfinished job's keys live (a guard against leaks), and the age past "
        "which a user's sealed upstream key is refused",
    )
    lease_ttl: float = JOBS.setting(
        "SLUICE_LEASE_TTL",
        10.0,
        "seconds",
        WORKER,
        "a worker's lease on a running job, renewed every third of it; a job whose lease "
        "ran out (its worker died) is restarted",
    )
    max_attempts: int = JOBS.setting(
        "SLUICE_MAX_ATTEMPTS",
        3,
        "count",
        WORKER,
        "attempts per job when workers die (then `worker_lost`)",
    )
    reaper_interval: float = JOBS.setting(
        "SLUICE_REAPER_INTERVAL",
        2.0,
        "seconds",
        WORKER,
        "between checks for jobs of lost workers",
    )
    upstream_retries: int = CONNECTIONS.setting(
        "SLUICE_UPSTREAM_RETRIES",
        2,
        "count",
        WORKER,
        "retries of a refused upstream request (429, 5xx, connection error) before the first delta",
    )
    upstream_max_retry_delay: float = CONNECTIONS.setting(
        "SLUICE_UPSTREAM_MAX_RETRY_DELAY",
        20.0,
        "seconds",
        WORKER,
        "longest `Retry-After` honoured; a longer one fails the job at once",
    )
    redis_outage_tolerance: float = JOBS.setting(
        "SLUICE_REDIS_OUTAGE_TOLERANCE",
        30.0,
        "seconds",
        WORKER,
        "how long a worker keeps retrying Redis writes before it gives the job up",
    )
    upstream_connect_timeout: float = CONNECTIONS.setting(
        "SLUICE_UPSTREAM_CONNECT_TIMEOUT", 10.0, "seconds", BOTH, "to connect to the upstream"
    )
    upstream_read_timeout: float = CONNECTIONS.setting(
        "SLUICE_UPSTREAM_READ_TIMEOUT",
        120.0,
        "seconds",
        WORKER,
        "longest upstream silence (between bytes) before the job fails",
    )
    default_context_window: int = JOBS.setting(
        "SLUICE_DEFAULT_CONTEXT_WINDOW",
        8192,
        "tokens",
        BOTH,
        "context window of models Sluice does not know",
    )
    reply_reserve_tokens: int = JOBS.setting(
        "SLUICE_REPLY_RESERVE_TOKENS",
        256,
        "tokens",
        GATEWAY,
        "kept free for the answer when the request sets no `max_tokens`",
    )
    heartbeat_interval: float = API.setting(
        "SLUICE_HEARTBEAT_INTERVAL",
        15.0,
        "seconds",
        GATEWAY,
        "between SSE keep-alive comments on an idle stream",
    )
    first_byte_wait: float = API.setting(
        "SLUICE_FIRST_BYTE_WAIT",
        20.0,
        "seconds",
        GATEWAY,
        "longest a streamed `/v1/chat/completions` answer waits for the job's first delta "
        "before its headers go out (keep it below your router's first-byte limit: 30 s on "
        "Heroku)",
    )
    default_model: str = API.setting(
        "SLUICE_DEFAULT_MODEL",
        "gpt-4o-mini",
        "name",
        GATEWAY,
        "the model `POST /api/chat` (the AI SDK's `useChat`) uses when its body names none",
    )
    sse_retry_ms: int = API.setting(
        "SLUICE_SSE_RETRY_MS",
        2000,
        "ms",
        GATEWAY,
        "reconnection delay suggested to EventSource clients",
    )
    models_cache_ttl: float = CONNECTIONS.setting(
        "SLUICE_MODELS_CACHE_TTL",
        60.0,
        "seconds",
        GATEWAY,
        "how long `GET /v1/models` caches the upstream's list",
    )
    access_keys: tuple[str, ...] = API.setting(
        "SLUICE_ACCESS_KEYS",
        (),
        "list",
        GATEWAY,
        "comma-separated gateway access keys (`Authorization: Bearer …`); unset: the API is "
        "open (local use)",
        secret=True,
    )
    rate_limit: str = API.setting(
        "SLUICE_RATE_LIMIT",
        "",
        "limits",
        GATEWAY,
        "requests per client (access key, else address) on the routes that start jobs, in "
        "Flask-Limiter's notation, e.g. `60/minute;1000/day`; unset: no limit",
    )
    vendor_parameters: tuple[str, ...] = API.setting(
        "SLUICE_VENDOR_PARAMETERS",
        (),
        "list",
        GATEWAY,
        "top-level request fields to forward to the upstream unchanged, besides OpenAI's and "
        "the known vendor parameters (`gateway/vendor_parameters.py`), comma-separated; `*` "
        "forwards every unknown field. Other unknown fields get a `400` naming them",
    )
    cors_origins: tuple[str, ...] = API.setting(
        "SLUICE_CORS_ORIGINS",
        (),
        "list",
        GATEWAY,
        "comma-separated origins (or `*`) allowed to call `/v1` from browsers",
    )
    proxy_hops: int = API.setting(
        "SLUICE_PROXY_HOPS",
        0,
        "count",
        GATEWAY,
        "reverse proxies in front of the gateway whose `X-Forwarded-*` headers are trusted",
    )
    max_streams_per_client: int = API.setting(
        "SLUICE_MAX_STREAMS_PER_CLIENT",
        1000,
        "count",
        GATEWAY,
        "event streams (and answers waited for: non-streamed chat completions, foreground "
        "Responses) one client (access key, else address, as for `SLUICE_RATE_LIMIT`) "
        "may hold open on one gateway process; one more gets a `429` with `Retry-After` "
        "(before any job starts). Counted per process: behind N processes a client can hold "
        "N times as many. `0`: no limit",
    )
    max_queued: int = JOBS.setting(
        "SLUICE_MAX_QUEUED",
        1000,
        "count",
        GATEWAY,
        "waiting jobs beyond which new ones are refused (`503` with `Retry-After`)",
    )
    max_body_bytes: int = API.setting(
        "SLUICE_MAX_BODY_BYTES",
        10_000_000,
        "bytes",
        GATEWAY,
        "largest request body (larger: `413`); images and files sent as data URLs count "
        "against it (a 7 MB image is about 9.3 MB of base64)",
    )
    submit_concurrency: int = JOBS.setting(
        "SLUICE_SUBMIT_CONCURRENCY",
        4,
        "count",
        GATEWAY,
        "job submissions (count, store, enqueue) one gateway process works on at once; the "
        "rest wait their turn (up to 60 s, then `503`), so a burst of new jobs does not stall "
        "the streams it relays. `0`: no limit",
    )
    secret_key: str | None = API.setting(
        "SLUICE_SECRET_KEY",
        None,
        "secret",
        BOTH,
        "encrypts users' own upstream keys (`X-Upstream-Api-Key`) and signs event URLs; the "
        "same on every process. Unset: `X-Upstream-Api-Key` is refused",
        secret=True,
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The settings the environment gives, each field read as its declaration says, then
        ``overrides`` (field names; an unknown one is a TypeError, as a typo should be)."""
        declared = {f.name: f.metadata["env"] for f in fields(cls)}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values = {name: var.read() for name, var in declared.items() if name not in overrides}
        return cls(**values, **overrides)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# Read outside Settings: by gunicorn.conf.py, the Procfile's shell, sluice/logs.py,
# sluice/metrics.py, sluice/tokens.py, worker/celery_app.py, devtools/launcher.py and
# sluice_cli/chat.py (each reads its own, before or without a Settings object).
OTHERS: tuple[Var, ...] = (
    PROCESSES.variable(
        "WEB_CONCURRENCY", 2, "count", GUNICORN, "gateway processes (gunicorn workers, gevent)"
    ),
    PROCESSES.variable(
        "SLUICE_WORKER_CONNECTIONS",
        2000,
        "count",
        GUNICORN,
        "open connections (streams) per gateway process",
    ),
    PROCESSES.variable(
        "SLUICE_GRACEFUL_TIMEOUT",
        20,
        "seconds",
        GUNICORN,
        "how long a stopping gateway process may take before it is killed (its streams end "
        "at once; other requests may finish)",
    ),
    PROCESSES.variable(
        "SLUICE_ACCESS_LOG",
        True,
        "flag",
        GUNICORN,
        "`1`: gunicorn writes a line per request to stdout; `0`: no access log",
    ),
    PROCESSES.variable(
        "FORWARDED_ALLOW_IPS",
        "127.0.0.1",
        "list",
        GUNICORN,
        "comma-separated addresses (or `*`) whose `X-Forwarded-Proto` gunicorn trusts",
    ),
    PROCESSES.variable(
        "WORKER_CONCURRENCY",
        100,
        "count",
        "Procfile",
        "concurrent jobs per Celery worker process (gevent pool)",
    ),
    PROCESSES.variable(
        "SLUICE_LOG_LEVEL",
        "INFO",
        "level",
        f"{BOTH}, {GUNICORN}",
        "level of Sluice's loggers and of gunicorn's error log (`DEBUG`, `INFO`, `WARNING`…)",
        parse=str.upper,
    ),
    PROCESSES.variable(
        "SLUICE_LOG_FORMAT",
        "text",
        "name",
        BOTH,
        "`json` for one JSON object per line",
        parse=str.lower,
    ),
    PROCESSES.variable(
        "SLUICE_WORKER_METRICS_PORT",
        None,
        "port",
        WORKER,
        "a worker serves Prometheus metrics on this port; unset: it serves none",
        parse=int,
    ),
    PROCESSES.variable(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "path",
        f"{GUNICORN}, {BOTH}",
        "where processes keep Prometheus' multiprocess files, which `/metrics` adds up; "
        "unset: gunicorn makes a fresh temporary directory at each start and exports it",
    ),
    PROCESSES.variable(
        "TIKTOKEN_CACHE_DIR",
        None,
        "path",
        BOTH,
        "where tiktoken's bundled files are seeded, for offline use; unset: "
        "`$XDG_CACHE_HOME/sluice/tiktoken`, or a temporary directory when that is read-only",
    ),
    PROCESSES.variable(
        "XDG_CACHE_HOME", None, "path", BOTH, "the base of that default; unset: `~/.cache`"
    ),
    DEVELOPMENT.variable(
        "SLUICE_DEMO_PORT",
        0,
        "port",
        "`make run`",
        "port of the demo upstream started when `OPENAI_API_KEY` is unset; `0`: any free port",
    ),
    CLIENT.variable(
        "SLUICE_URL",
        "http://127.0.0.1:8000",
        "URL",
        "`sluice_cli`",
        "the gateway the client talks to (`--url`)",
    ),
    CLIENT.variable(
        "SLUICE_MODEL", "gpt-4o-mini", "name", "`sluice_cli`", "the model it asks for (`--model`)"
    ),
    CLIENT.variable(
        "SLUICE_UPSTREAM_API_KEY",
        None,
        "secret",
        "`sluice_cli`",
        "the user's own upstream key, sent as `X-Upstream-Api-Key` (`--upstream-key`)",
        secret=True,
    ),
)


def _declared() -> dict[str, Var]:
    found: dict[str, Var] = {}
    undeclared = [f.name for f in fields(Settings) if "env" not in f.metadata]
    if undeclared:
        raise TypeError(f"Settings fields without a variable (a Group's setting()): {undeclared}")
    for var in [f.metadata["env"] for f in fields(Settings)] + list(OTHERS):
        if var.name in found:
            raise TypeError(f"{var.name} is declared twice")
        found[var.name] = var
    return found


# every declared variable by name, Settings' fields first
VARIABLES: dict[str, Var] = _declared()


def read_env(name: str) -> Any:
    """The declared variable ``name`` as the environment gives it (else its default)."""
    try:
        var = VARIABLES[name]
    except KeyError:
        raise KeyError(f"{name} is not declared in sluice/settings.py") from None
    return var.read()


def markdown() -> str:
    """The README's configuration tables: one per group, in the declaration's order."""
    parts: list[str] = []
    for group in GROUPS:
        rows = [var for var in VARIABLES.values() if var.group == group.title]
        parts.append(f"**{group.title}**\n")
        parts.append("| variable | default | unit | read by | meaning |")
        parts.append("| --- | --- | --- | --- | --- |")
        parts.extend(
            f"| `{v.name}` | {v.shown_default()} | {v.unit} | {v.read_by} | {v.meaning} |"
            for v in rows
        )
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")

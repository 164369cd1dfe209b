"""The fixtures every layer may use, registered by the root ``tests/conftest.py``.

Redis is the real server (started if none answers). The worker is a real Celery process
(gevent pool) and the gateway runs under gunicorn exactly as the Procfile runs it; the
upstream is ``devtools.fake_upstream`` over real HTTP on 127.0.0.1. Each session uses its
own key prefix and queue, so it never touches a developer's running instance.

A fixture starts nothing until a test asks for it: the unit layer asks for none of these
but ``without_proxy_env``, the Redis layer for Redis and the fake upstream, the integration
and browser layers for the stack's processes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream
from devtools.local_redis import RedisServer, ensure_redis
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from tests.helpers.stack import (
    LoggedProcess,
    ProcessLogs,
    RestartableGateway,
    Stack,
    isolated_stack,
    start_gateway,
    start_worker,
)
from tests.helpers.support import UPSTREAM_KEY, free_port

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE")


@pytest.fixture
def without_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle settings from this machine's environment, in either case."""
    for name in (*PROXY_VARS, "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, process = ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield url
    if process is not None:
        process.terminate()
        process.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, which it may stop, kill, pause and restart."""
    server = RedisServer(str(tmp_path), fsync="always")
    yield server
    server.resume()
    server.kill()


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    """A job store of its own (a fresh key prefix) on the real Redis, emptied afterwards."""
    settings = Settings.from_env(
        redis_url=redis_url, key_prefix=f"sluice-unit-{secrets.token_hex(4)}", job_ttl=120
    )
    client = make_redis(settings)
    yield JobStore(client, settings)
    for key in client.scan_iter(f"{settings.key_prefix}:*"):
        client.delete(key)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def settings(
    redis_url: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run = secrets.token_hex(4)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken")))
    return Settings.from_env(
        redis_url=redis_url,
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=upstream.base_url,
        key_prefix=f"sluice-test-{run}",
        queue=f"sluice-test-{run}",
        heartbeat_interval=1.0,
        upstream_read_timeout=2.0,
        upstream_connect_timeout=2.0,
        job_ttl=600,
        models_cache_ttl=0.5,
        secret_key="test-secret-" + run,
    )


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessLogs]:
    logs = ProcessLogs(tmp_path_factory.mktemp("logs"))
    yield logs
    logs.stop_all()


@pytest.fixture(scope="session")
def worker(settings: Settings, process_logs: ProcessLogs) -> LoggedProcess:
    return start_worker(settings, process_logs)


@pytest.fixture(scope="session")
def gateway_url(settings: Settings, process_logs: ProcessLogs, worker: LoggedProcess) -> str:
    _process, url = start_gateway(settings, process_logs)
    return url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def restartable_gateway(
    settings: Settings, process_logs: ProcessLogs, worker: LoggedProcess
) -> Iterator[RestartableGateway]:
    """A gateway of the module's own, on a fixed port, that a test may kill and restart."""
    gateway = RestartableGateway(settings, process_logs, free_port())
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser_gateway(restartable_gateway: RestartableGateway) -> RestartableGateway:
    return restartable_gateway


@pytest.fixture
def make_stack(settings: Settings, process_logs: ProcessLogs) -> Iterator[Callable[..., Stack]]:
    """Build isolated stacks: ``make_stack(workers=1, **settings_overrides)``."""
    stacks: list[Stack] = []

    def make(workers: int = 1, **overrides: Any) -> Stack:
        stack = isolated_stack(settings, process_logs, "stack", workers, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()

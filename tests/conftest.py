"""Fixtures that start the real stack once per session.

Redis is the real server (started if none answers). The worker is a real Celery process
(gevent pool) and the gateway runs under gunicorn exactly as the Procfile runs it; the
upstream is ``devtools.fake_upstream`` over real HTTP on 127.0.0.1. Each session uses its
own key prefix and queue, so it never touches a developer's running instance.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
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
from tests.support import (
    ROOT,
    ProcessLogs,
    RestartableGateway,
    free_port,
    stack_env,
    wait_ready,
    wait_until,
)

UPSTREAM_KEY = "sk-test-" + "k3y" * 8
ARTIFACTS = ROOT / "test-artifacts"


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


def start_worker(
    settings: Settings,
    logs: ProcessLogs,
    name: str = "worker",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "celery", "--app", "worker.celery_app", "worker",
        "--pool", "gevent", "--concurrency", "50", "--queues", settings.queue,
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"{name}-{secrets.token_hex(3)}@%h",
    ]  # fmt: skip
    process, log_path = logs.start(name, cmd, stack_env(settings, **(env or {})), cwd=ROOT)
    wait_until(lambda: "ready." in log_path.read_text(errors="replace"), 30, process, log_path)
    return process


def start_gateway(
    settings: Settings, logs: ProcessLogs, name: str = "gateway", app: str = "gateway.wsgi:app"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py",
        app,
    ]  # fmt: skip
    env = stack_env(settings, PORT=str(port), WEB_CONCURRENCY="2", SLUICE_ACCESS_LOG="0")
    process, log_path = logs.start(name, cmd, env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, log_path)
    return process, url


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessLogs]:
    logs = ProcessLogs(tmp_path_factory.mktemp("logs"))
    yield logs
    logs.stop_all()


@pytest.fixture(scope="session")
def worker(settings: Settings, process_logs: ProcessLogs) -> subprocess.Popen[bytes]:
    return start_worker(settings, process_logs)


@pytest.fixture(scope="session")
def gateway_url(
    settings: Settings, process_logs: ProcessLogs, worker: subprocess.Popen[bytes]
) -> str:
    _process, url = start_gateway(settings, process_logs)
    return url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def restartable_gateway(
    settings: Settings, process_logs: ProcessLogs, worker: subprocess.Popen[bytes]
) -> Iterator[RestartableGateway]:
    """A gateway of the module's own, on a fixed port, that a test may kill and restart."""
    gateway = RestartableGateway(settings, process_logs, free_port())
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser_gateway(restartable_gateway: RestartableGateway) -> RestartableGateway:
    return restartable_gateway


class Stack:
    """A gateway and workers of their own (own key prefix and queue), for fault tests."""

    def __init__(self, settings: Settings, logs: ProcessLogs, name: str) -> None:
        self.settings = settings
        self.logs = logs
        self.name = name
        self.workers: list[subprocess.Popen[bytes]] = []
        self.gateway = RestartableGateway(settings, logs, free_port(), name=f"{name}-gateway")
        self.gateway.start()

    @property
    def url(self) -> str:
        return self.gateway.url

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        worker = start_worker(self.settings, self.logs, name=f"{self.name}-worker", env=env)
        self.workers.append(worker)
        return worker

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.gateway.stop()
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(15)


@pytest.fixture
def make_stack(settings: Settings, process_logs: ProcessLogs) -> Iterator[Callable[..., Stack]]:
    """Build isolated stacks: ``make_stack(workers=1, **settings_overrides)``."""
    stacks: list[Stack] = []

    def make(workers: int = 1, **overrides: Any) -> Stack:
        run = secrets.token_hex(3)
        stack_settings = settings.with_(
            key_prefix=f"{settings.key_prefix}-{run}", queue=f"{settings.queue}-{run}", **overrides
        )
        stack = Stack(stack_settings, process_logs, f"stack-{run}")
        stacks.append(stack)
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield make
    for stack in stacks:
        stack.stop()

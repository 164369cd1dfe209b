"""The stack's processes for the integration and browser tests: a real Celery worker
(gevent pool) and gunicorn gateways started as the Procfile starts them, each with its
output in a log file of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.helpers.support import ROOT, free_port, wait_until

if TYPE_CHECKING:
    from sluice.settings import Settings


def stack_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a stack process: this machine's, with the test settings."""
    prefixes = ("OPENAI_", "SLUICE_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        REDIS_URL=settings.redis_url,
        CELERY_BROKER_URL=settings.celery_broker_url or "",  # blank: REDIS_URL
        REDIS_SSL_CERT_REQS=settings.redis_ssl_cert_reqs,
        REDIS_SENTINELS=",".join(settings.redis_sentinels),
        REDIS_SENTINEL_MASTER=settings.redis_sentinel_master,
        OPENAI_API_KEY=settings.openai_api_key or "",
        OPENAI_BASE_URL=settings.openai_base_url,
        SLUICE_KEY_PREFIX=settings.key_prefix,
        SLUICE_QUEUE=settings.queue,
        SLUICE_HEARTBEAT_INTERVAL=str(settings.heartbeat_interval),
        SLUICE_UPSTREAM_READ_TIMEOUT=str(settings.upstream_read_timeout),
        SLUICE_UPSTREAM_CONNECT_TIMEOUT=str(settings.upstream_connect_timeout),
        SLUICE_JOB_TTL=str(settings.job_ttl),
        SLUICE_MODELS_CACHE_TTL=str(settings.models_cache_ttl),
        SLUICE_SECRET_KEY=settings.secret_key or "",
        SLUICE_LEASE_TTL=str(settings.lease_ttl),
        SLUICE_MAX_ATTEMPTS=str(settings.max_attempts),
        SLUICE_REAPER_INTERVAL=str(settings.reaper_interval),
        SLUICE_UPSTREAM_RETRIES=str(settings.upstream_retries),
        SLUICE_UPSTREAM_MAX_RETRY_DELAY=str(settings.upstream_max_retry_delay),
        SLUICE_REDIS_OUTAGE_TOLERANCE=str(settings.redis_outage_tolerance),
        SLUICE_MAX_QUEUED=str(settings.max_queued),
        SLUICE_ACCESS_KEYS=",".join(settings.access_keys),
        SLUICE_RATE_LIMIT=settings.rate_limit,
        SLUICE_CORS_ORIGINS=",".join(settings.cors_origins),
        SLUICE_PROXY_HOPS=str(settings.proxy_hops),
        SLUICE_MAX_STREAMS_PER_CLIENT=str(settings.max_streams_per_client),
        SLUICE_MAX_BODY_BYTES=str(settings.max_body_bytes),
        SLUICE_VENDOR_PARAMETERS=",".join(settings.vendor_parameters),
        SLUICE_REDIS_MIN_REPLICAS=str(settings.redis_min_replicas),
        SLUICE_REDIS_WAIT_TIMEOUT_MS=str(settings.redis_wait_timeout_ms),
        PYTHONUNBUFFERED="1",
    )
    if settings.celery_broker_url:  # the broker apart from the log's Redis (a cluster's)
        env["CELERY_BROKER_URL"] = settings.celery_broker_url
    if settings.redis_cluster:
        env["SLUICE_REDIS_CLUSTER"] = "1"
    env.update(extra)
    return env


def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30
) -> None:
    """Wait until the gateway at ``base_url`` is up (``/healthz``; ``/readyz`` also needs
    a live worker, which some tests start later or never)."""

    def ready() -> bool:
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout, process, log_path)


class LoggedProcess(subprocess.Popen[bytes]):
    """A process whose output (stdout and stderr) goes to ``log_path``."""

    log_path: Path


class ProcessLogs:
    """Starts processes with their output in a log file each; stops them all at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[LoggedProcess] = []

    def start(
        self, name: str, cmd: list[str], env: Mapping[str, str], cwd: Path
    ) -> tuple[LoggedProcess, Path]:
        path = self.directory / f"{name}-{len(self.processes)}.log"
        with path.open("wb") as out:
            process = LoggedProcess(
                cmd, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        process.log_path = path
        self.processes.append(process)
        return process, path

    def stop_all(self) -> None:
        stop_processes(self.processes)


def stop_processes(processes: list[LoggedProcess]) -> None:
    """SIGTERM to each process's group, then SIGKILL to any still there after 15 s."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def start_worker(
    settings: Settings,
    logs: ProcessLogs,
    name: str = "worker",
    env: dict[str, str] | None = None,
) -> LoggedProcess:
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
    settings: Settings,
    logs: ProcessLogs,
    name: str = "gateway",
    app: str = "gateway.wsgi:app",
    env: dict[str, str] | None = None,
) -> tuple[LoggedProcess, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py",
        app,
    ]  # fmt: skip
    env = stack_env(
        settings, PORT=str(port), WEB_CONCURRENCY="2", SLUICE_ACCESS_LOG="0", **(env or {})
    )
    process, log_path = logs.start(name, cmd, env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, log_path)
    return process, url


@dataclass
class RestartableGateway:
    """One gunicorn gateway on a fixed port, which a test can kill and start again."""

    settings: Settings
    logs: ProcessLogs
    port: int
    name: str = "gateway-restartable"
    process: LoggedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = stack_env(self.settings, PORT=str(self.port), WEB_CONCURRENCY="1")
        cmd = [
            sys.executable, "-m", "gunicorn", "--no-control-socket", "--config",
            "gunicorn.conf.py", "gateway.wsgi:app",
        ]  # fmt: skip
        self.process, log_path = self.logs.start(self.name, cmd, env, cwd=ROOT)
        wait_ready(self.url, self.process, log_path)

    def kill(self) -> None:
        """SIGKILL the whole gateway (master and workers): a crash, not a shutdown."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)


class Stack:
    """A gateway and workers of their own (own key prefix and queue), for fault tests."""

    def __init__(self, settings: Settings, logs: ProcessLogs, name: str) -> None:
        self.settings = settings
        self.logs = logs
        self.name = name
        self.workers: list[LoggedProcess] = []
        self.gateway = RestartableGateway(settings, logs, free_port(), name=f"{name}-gateway")
        self.gateway.start()

    @property
    def url(self) -> str:
        return self.gateway.url

    def start_worker(self, env: dict[str, str] | None = None) -> LoggedProcess:
        worker = start_worker(self.settings, self.logs, name=f"{self.name}-worker", env=env)
        self.workers.append(worker)
        return worker

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        """SIGTERM the gateway and the workers together and wait for them all: each takes
        seconds to shut down, so one after the other cost every fault test the sum."""
        processes = [self.gateway.process, *self.workers]
        running = [p for p in processes if p is not None and p.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)


def isolated_stack(
    settings: Settings, logs: ProcessLogs, name: str, workers: int = 1, **overrides: Any
) -> Stack:
    """A stack of its own: a gateway and ``workers`` workers on ``settings`` with
    ``overrides``, under a key prefix and a queue no other test shares."""
    run = f"{name}-{secrets.token_hex(3)}"
    stack_settings = settings.with_(
        key_prefix=f"{settings.key_prefix}-{run}", queue=f"{settings.queue}-{run}", **overrides
    )
    stack = Stack(stack_settings, logs, run)
    for _ in range(workers):
        stack.start_worker()
    return stack

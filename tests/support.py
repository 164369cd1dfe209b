"""Helpers for the tests: processes with log files, waiting, and reading SSE streams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import connect_sse

from sluice.events import DELTA, TERMINAL_EVENTS, Event

if TYPE_CHECKING:
    from sluice.settings import Settings
    from sluice.store import JobStore

ROOT = Path(__file__).resolve().parent.parent


def stack_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a stack process: this machine's, with the test settings."""
    prefixes = ("OPENAI_", "SLUICE_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        REDIS_URL=settings.redis_url,
        REDIS_SSL_CERT_REQS=settings.redis_ssl_cert_reqs,
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
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def json_from_child(script: str) -> dict[str, Any]:
    """Run ``script`` in a fresh Python (one that may monkey-patch, say, without touching
    the test process) and return the JSON object its last line prints."""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(interval)
    logs = log_path.read_text(errors="replace")[-4000:] if log_path else ""
    raise AssertionError(f"condition not met within {timeout}s\n{logs}")


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


class ProcessLogs:
    """Starts processes with their output in a log file each; stops them all at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, cmd: list[str], env: Mapping[str, str], cwd: Path
    ) -> tuple[subprocess.Popen[bytes], Path]:
        path = self.directory / f"{name}-{len(self.processes)}.log"
        with path.open("wb") as out:
            process = subprocess.Popen(
                cmd, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        process.log_path = path  # type: ignore[attr-defined]
        self.processes.append(process)
        return process, path

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Received:
    id: int
    event: str
    data: dict[str, Any]


def read_stream(
    client: httpx.Client,
    path: str,
    headers: Mapping[str, str] | None = None,
    limit: int | None = None,
    *,
    body: Any = None,
    seen: dict[str, str] | None = None,
) -> list[Received]:
    """Read an SSE stream with httpx-sse until the server ends it (or ``limit`` events).

    With ``body`` it is a POST of that JSON; ``seen`` receives the response's headers.
    """
    out: list[Received] = []
    method, extra = ("GET", {}) if body is None else ("POST", {"json": body})
    with connect_sse(client, method, path, headers=dict(headers or {}), **extra) as source:
        if seen is not None:
            seen.update(source.response.headers)
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            out.append(Received(int(sse.id), sse.event, json.loads(sse.data)))
            if limit is not None and len(out) >= limit:
                break
    return out


def read_in_slices(
    client: httpx.Client, path: str, first: list[Received], size: int
) -> list[Received]:
    """After ``first``, read ``path`` ``size`` events at a time, reconnecting with
    ``Last-Event-ID`` after each slice, up to the terminal event; returns them all."""
    received = list(first)
    while not received or received[-1].event not in TERMINAL_EVENTS:
        headers = {"Last-Event-ID": str(received[-1].id)} if received else {}
        received += read_stream(client, path, headers=headers, limit=size)
    return received


def text_of(events: list[Received], index: int = 0) -> str:
    """The text a client reassembles: content deltas of a choice since the last reset."""
    text = ""
    for e in events:
        if e.event == "reset":
            text = ""
        elif e.event == "delta" and e.data["index"] == index:
            text += e.data.get("content", "")
    return text


def upstream_body(upstream: Any, prompt: str) -> dict[str, Any]:
    """The request the fake upstream received whose last message is ``prompt``."""
    for recorded in reversed(upstream.requests):
        messages = (recorded.body or {}).get("messages") or []
        if messages and messages[-1].get("content") == prompt:
            return recorded.body  # type: ignore[no-any-return]
    raise AssertionError(f"the upstream never saw {prompt!r}")


def create_job(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("model", "openai")
    body.setdefault("messages", [{"role": "user", "content": "Say hello"}])
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


@dataclass
class RestartableGateway:
    """One gunicorn gateway on a fixed port, which a test can kill and start again."""

    settings: Settings
    logs: ProcessLogs
    port: int
    name: str = "gateway-restartable"
    process: subprocess.Popen[bytes] | None = None

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


def running_job(store: JobStore) -> str:
    """A job claimed by attempt 1: `started` is event 1."""
    job, _ = store.create(
        model="m", request={"model": "m", "messages": []}, prompt_tokens=1, truncated_messages=0
    )
    assert store.claim(job.id) is not None
    return job.id


def delta(text: str) -> list[Event]:
    """One delta event with this text, as an append takes it."""
    return [Event(DELTA, {"index": 0, "content": text})]

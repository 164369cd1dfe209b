"""The deployment under the soak: a Redis of its own (append-only file on), two gateways and
two workers started as the Procfile starts them, and the fake upstream in this process.

Each process can be killed (SIGKILL), stopped (SIGTERM) and started again; a restarted
gateway comes back on its own port, so clients find it where they left it. Every
incarnation writes its own log file; the workers' logs (JSON lines) are what the checks
read to tell which upstream request each attempt streamed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, Processes, free_port, http_ok
from devtools.fake_upstream import FakeUpstream
from devtools.local_redis import RedisServer

log = logging.getLogger("bench.chaos")
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-chaos-" + secrets.token_hex(8)


@dataclass(frozen=True)
class SoakSettings:
    """What the soak runs with; everything else is the product's default."""

    # seconds: a stall longer than this fails a job that already sent text
    upstream_read_timeout: float = 5.0
    # seconds a worker rides out Redis before giving a job up (a pause longer than this
    # makes it give up, and the lease restarts the job)
    redis_outage_tolerance: float = 5.0
    lease_ttl: float = 10.0
    reaper_interval: float = 2.0
    max_attempts: int = 3
    worker_concurrency: int = 100

    def env(self) -> dict[str, str]:
        return {
            "SLUICE_UPSTREAM_READ_TIMEOUT": str(self.upstream_read_timeout),
            "SLUICE_UPSTREAM_CONNECT_TIMEOUT": "5",
            "SLUICE_REDIS_OUTAGE_TOLERANCE": str(self.redis_outage_tolerance),
            "SLUICE_LEASE_TTL": str(self.lease_ttl),
            "SLUICE_REAPER_INTERVAL": str(self.reaper_interval),
            "SLUICE_MAX_ATTEMPTS": str(self.max_attempts),
        }


@dataclass
class Member:
    """One gateway or worker: its name, its current process (None while down)."""

    name: str
    kind: str  # "gateway" or "worker"
    port: int = 0
    proc: Proc | None = None
    serving: bool = False  # started and answering (a starting one is not a fault's target)
    incarnation: int = 0
    logs: list[Path] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self.serving and self.proc is not None and self.proc.alive()


class Stack:
    def __init__(self, workdir: Path, settings: SoakSettings) -> None:
        self.workdir = workdir
        self.settings = settings
        self.run_id = secrets.token_hex(4)
        self.procs = Processes(workdir / "logs")
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        # appendfsync always, as docker-compose.yml runs it: with everysec a SIGKILL can
        # lose acknowledged writes (up to ~2 s of them while an fsync lags), which no
        # client of the log could survive
        self.redis = RedisServer(str(workdir / "redis"), fsync="always")
        self.redis_down = threading.Event()  # killed or paused: no second Redis fault
        self.upstream = FakeUpstream(api_key=UPSTREAM_KEY).start()
        self.gateways = [Member(f"gateway-{i}", "gateway", free_port()) for i in range(2)]
        self.workers = [Member(f"worker-{i}", "worker") for i in range(2)]

    # -- processes ----------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLUICE_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            REDIS_URL=self.redis.url,
            OPENAI_BASE_URL=self.upstream.base_url,
            OPENAI_API_KEY=UPSTREAM_KEY,
            SLUICE_KEY_PREFIX=f"chaos-{self.run_id}",
            SLUICE_QUEUE=f"chaos-{self.run_id}",
            SLUICE_MAX_QUEUED="100000",
            SLUICE_SECRET_KEY="chaos-" + self.run_id,
            SLUICE_LOG_FORMAT="json",
            SLUICE_ACCESS_LOG="0",
            WEB_CONCURRENCY="1",
            SLUICE_GRACEFUL_TIMEOUT="10",
            **self.settings.env(),
        )
        env.update(extra)
        return env

    def start(self, member: Member) -> None:
        """Start the member's next incarnation and wait until it serves."""
        with member.lock:
            name = f"{member.name}.{member.incarnation}"
            member.incarnation += 1
            if member.kind == "gateway":
                cmd = [
                    sys.executable, "-m", "gunicorn", "--no-control-socket", "--config",
                    "gunicorn.conf.py", "gateway.wsgi:app",
                ]  # fmt: skip
                env = self.env(PORT=str(member.port))
            else:
                cmd = [
                    sys.executable, "-m", "celery", "--app", "worker.celery_app", "worker",
                    "--pool", "gevent", "--concurrency", str(self.settings.worker_concurrency),
                    "--queues", f"chaos-{self.run_id}", "--loglevel", "INFO",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--hostname", f"{name}-{self.run_id}@%h",
                ]  # fmt: skip
                env = self.env()
            member.serving = False
            member.proc = self.procs.start(name, cmd, env, ROOT)
            member.logs.append(member.proc.log_path)
        self._wait_serving(member)
        member.serving = True

    def _wait_serving(self, member: Member, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        proc = member.proc
        assert proc is not None
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{member.name} exited at start:\n{proc.tail()}")
            if member.kind == "gateway" and http_ok(f"{member.url}/healthz", timeout=1):
                return
            if member.kind == "worker" and "ready." in proc.tail(200_000):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{member.name} did not start within {timeout:.0f}s:\n{proc.tail()}")

    def kill(self, member: Member) -> None:
        """SIGKILL the member's whole process group: a crash."""
        proc = member.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)
        member.proc = None
        member.serving = False

    def terminate(self, member: Member, grace: float = 30.0) -> None:
        """SIGTERM, as a deploy does: the gateway drains, the worker hands its jobs back;
        waits for it to exit (SIGKILL after ``grace``)."""
        proc = member.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs of SIGTERM; killing it", member.name,
                            grace)  # fmt: skip
            self.kill(member)

    def start_all(self) -> None:
        for member in [*self.workers, *self.gateways]:
            self.start(member)

    def ready(self) -> bool:
        """Every gateway answers /readyz (Redis, subscriber, a live worker)."""
        return all(http_ok(f"{g.url}/readyz", timeout=2) for g in self.gateways)

    def worker_logs(self) -> list[Path]:
        return [path for w in self.workers for path in w.logs]

    def stop(self) -> None:
        self.procs.stop_all()
        self.upstream.stop()
        self.redis.resume()
        self.redis.kill()

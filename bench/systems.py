"""The three systems under test, each started exactly as deployed (gunicorn + Celery).

* ``sluice``: the Procfile's ``web`` (gunicorn, gevent, ``WEB_CONCURRENCY=1``) and one
  Celery worker (gevent pool, ``--concurrency 1000``), with the environment
  ``tests/support.py:stack_env`` gives a stack; with ``shared=0`` the gateway is
  ``bench.per_stream_gateway`` (one pub/sub connection per stream, the "before"). Its
  client makes one request per stream or two (``Variant.requests``).
* ``direct``: ``bench.direct_proxy`` under the same gunicorn config; no worker.
* ``flask-sse``: ``bench.flask_sse_app`` under the same gunicorn config and a Celery
  worker (``bench.flask_sse_worker``) with the same pool and concurrency.
* ``resumable-stream``: the peer, vercel's ``resumable-stream`` in one Node process
  (``bench/peer/server.mjs``), which reads the same fake upstream; ``POST /chat`` is the
  stream, as the direct proxy's.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, Proc, Processes, free_port, wait_http

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
WORKER_CONCURRENCY = 1000
GATEWAY_APPS = {
    "sluice": "gateway.wsgi:app",
    "direct": "bench.direct_proxy:app",
    "flask-sse": "bench.flask_sse_app:app",
}
PER_STREAM_GATEWAY = "bench.per_stream_gateway:app"  # Sluice with shared=0
WORKER_APPS = {"sluice": "worker.celery_app", "flask-sse": "bench.flask_sse_worker"}
READY_PATHS = {
    "sluice": "/readyz",
    "direct": "/healthz",
    "flask-sse": "/healthz",
    "resumable-stream": "/healthz",
}
PEER = "resumable-stream"
PEER_SERVER = ROOT / "bench" / "peer" / "server.mjs"


@dataclass(frozen=True)
class Variant:
    """One row group of the table: a system, and for Sluice the subscriber switch."""

    system: str
    shared_subscriber: str | None = None  # "0", "1", or None (the deployed default)
    requests: int = 1  # Sluice's client: 1 = POST with "stream": true, 2 = POST then GET
    revision: str | None = None  # Sluice's code at this git revision (a lever's "before")
    root: Path = ROOT  # where its code is checked out

    @property
    def label(self) -> str:
        name = self.system if self.revision is None else f"{self.system}@{self.revision}"
        if self.shared_subscriber is None:
            return name
        return f"{name} shared={self.shared_subscriber} req={self.requests}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-").replace("=", "").replace("@", "-at-")


@dataclass(frozen=True)
class Context:
    run_id: str
    redis_url: str
    upstream_url: str  # http://127.0.0.1:PORT/v1
    extra_env: tuple[tuple[str, str], ...] = ()  # --env: settings for the systems under test

    @property
    def redis_pattern(self) -> str:
        """Matches every Redis key this run creates (and nothing else)."""
        return f"*sluice-bench-{self.run_id}*"


@dataclass
class Stack:
    variant: Variant
    base_url: str
    gateway: Proc
    worker: Proc | None


def _base_env(ctx: Context, port: int) -> dict[str, str]:
    """This machine's environment without OPENAI_/SLUICE_ settings, plus gunicorn's knobs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLUICE_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        REDIS_URL=ctx.redis_url,
        OPENAI_BASE_URL=ctx.upstream_url,
        OPENAI_API_KEY="sk-bench",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        SLUICE_WORKER_CONNECTIONS="2000",
        SLUICE_ACCESS_LOG="0",
        SLUICE_LOG_LEVEL="WARNING",
        # the benchmark opens its 10,000 streams from one client (one address)
        SLUICE_MAX_STREAMS_PER_CLIENT="0",
    )
    return env


def _env(variant: Variant, ctx: Context, port: int) -> dict[str, str]:
    env = _base_env(ctx, port)
    name = f"sluice-bench-{ctx.run_id}-{variant.slug}"
    if variant.system == "sluice":
        env.update(
            SLUICE_KEY_PREFIX=name,
            SLUICE_QUEUE=f"{name}-q",
            SLUICE_MAX_QUEUED="100000",
        )
    elif variant.system == "flask-sse":
        env["BENCH_FLASK_SSE_QUEUE"] = f"{name}-q"
    env.update(ctx.extra_env)
    return env


def _worker_cmd(variant: Variant, env: dict[str, str], ctx: Context, concurrency: int) -> list[str]:
    queue = env.get("SLUICE_QUEUE") or env["BENCH_FLASK_SSE_QUEUE"]
    return [
        sys.executable, "-m", "celery", "--app", WORKER_APPS[variant.system], "worker",
        "--pool", "gevent", "--concurrency", str(concurrency), "--queues", queue,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "WARNING", "--hostname", f"bench-{variant.slug}-{ctx.run_id}@%h",
    ]  # fmt: skip


def start_stack(
    variant: Variant, ctx: Context, procs: Processes, concurrency: int = WORKER_CONCURRENCY
) -> Stack:
    """Start the system's gateway (and worker, with ``concurrency`` greenlets); returns
    once the gateway answers.

    The worker's readiness is proven by the warm-up streams, which wait in the queue
    until it consumes them.
    """
    port = free_port()
    env = _env(variant, ctx, port)
    if variant.system == PEER:
        return _start_peer(variant, ctx, procs, env, port)
    worker = None
    if variant.system in WORKER_APPS:
        worker = procs.start(
            f"{variant.slug}-worker", _worker_cmd(variant, env, ctx, concurrency), env,
            variant.root,
            stop_signal=signal.SIGQUIT,  # cold shutdown: nothing left worth waiting for
        )  # fmt: skip
    app = GATEWAY_APPS[variant.system]
    if variant.shared_subscriber == "0":
        app = PER_STREAM_GATEWAY
    gunicorn = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py",
        app,
    ]  # fmt: skip
    gateway = procs.start(
        f"{variant.slug}-gateway", gunicorn, env, variant.root,
        stop_signal=signal.SIGINT,  # gunicorn's quick shutdown
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    wait_http(base_url + READY_PATHS[variant.system], gateway, timeout=60)
    log.info(
        "%s: gateway pid %d on %s%s",
        variant.label,
        gateway.pid,
        base_url,
        f", worker pid {worker.pid}" if worker else "",
    )
    return Stack(variant, base_url, gateway, worker)


def _start_peer(
    variant: Variant, ctx: Context, procs: Processes, env: dict[str, str], port: int
) -> Stack:
    """The Node server around resumable-stream (``make bench`` installs its packages)."""
    if not (PEER_SERVER.parent / "node_modules").is_dir():
        raise BenchError("bench/peer has no node_modules: run `make bench` (npm ci there)")
    env = {**env, "PEER_KEY_PREFIX": f"sluice-bench-{ctx.run_id}-peer"}
    gateway = procs.start(f"{variant.slug}-gateway", ["node", str(PEER_SERVER)], env, ROOT)
    base_url = f"http://127.0.0.1:{port}"
    wait_http(base_url + READY_PATHS[PEER], gateway, timeout=30)
    log.info("%s: node pid %d on %s", variant.label, gateway.pid, base_url)
    return Stack(variant, base_url, gateway, None)

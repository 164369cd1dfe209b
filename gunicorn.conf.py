"""Gunicorn settings for the gateway (the Procfile's ``web`` process).

gevent workers: each SSE stream is a cheap greenlet waiting on Redis, so one process holds
thousands of open streams; a sync worker would hold a whole thread per stream.
"""

import glob
import os
import sys
import tempfile
from typing import Any

try:
    from sluice.settings import read_env
except ModuleNotFoundError:  # --chdir from elsewhere: gunicorn adds that to sys.path later
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sluice.settings import read_env
from sluice.fd_limit import raise_open_file_limit

# Each variable is declared, with its default, in sluice/settings.py (the README's table).
# Prometheus multiprocess mode: every gateway process writes its metrics here and
# /metrics aggregates them (sluice/metrics.py). A fresh directory per server start.
metrics_dir = read_env("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="sluice-metrics-")
os.makedirs(metrics_dir, exist_ok=True)
for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
    os.remove(stale)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

bind = f"0.0.0.0:{read_env('PORT')}"
worker_class = "gevent"
workers = read_env("WEB_CONCURRENCY")
worker_connections = read_env("SLUICE_WORKER_CONNECTIONS")
# a socket per stream: the soft open-file limit (often 1,024) would refuse streams long
# before worker_connections; the workers inherit what the master sets (sluice/fd_limit.py)
raise_open_file_limit(int(worker_connections))
# connections waiting to be accepted: a burst of clients (a deploy's reconnects) that
# overflows it waits a second for a SYN retry (the kernel caps it at net.core.somaxconn)
backlog = 4096
# gevent workers notify the arbiter independently of requests, so long streams are fine.
timeout = 30
graceful_timeout = read_env("SLUICE_GRACEFUL_TIMEOUT")
keepalive = 5
accesslog = "-" if read_env("SLUICE_ACCESS_LOG") else None
# event URLs carry a signed token: the access log writes it as token=[redacted]
logger_class = "gateway.access_log.RedactingLogger"
errorlog = "-"
loglevel = read_env("SLUICE_LOG_LEVEL").lower()
forwarded_allow_ips = read_env("FORWARDED_ALLOW_IPS")


def child_exit(server: Any, worker: Any) -> None:
    """A gateway process ended: drop its live gauges from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """The app is loaded: keep full garbage collections short (``sluice/heap.py``).

    On SIGTERM, end this process's streams at once: their clients reconnect (with
    Last-Event-ID) to another gateway instead of waiting out the graceful timeout."""
    import threading
    import time

    from sluice.heap import freeze_startup_heap

    freeze_startup_heap()

    def watch() -> None:
        while worker.alive:
            time.sleep(0.5)
        from gateway.feed import drain

        drain()

    threading.Thread(target=watch, name="sluice-drain", daemon=True).start()

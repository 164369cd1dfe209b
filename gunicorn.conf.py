"""Gunicorn settings for the gateway (the Procfile's ``web`` process).

gevent workers: each SSE stream is a cheap greenlet waiting on Redis, so one process holds
thousands of open streams; a sync worker would hold a whole thread per stream.
"""

import glob
import os
import tempfile

# Prometheus multiprocess mode: every gateway process writes its metrics here and
# /metrics aggregates them (sluice/metrics.py). A fresh directory per server start.
metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
    prefix="sluice-metrics-"
)
os.makedirs(metrics_dir, exist_ok=True)
for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
    os.remove(stale)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("SLUICE_WORKER_CONNECTIONS", "2000"))
# gevent workers notify the arbiter independently of requests, so long streams are fine.
timeout = 30
graceful_timeout = int(os.environ.get("SLUICE_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = "-" if os.environ.get("SLUICE_ACCESS_LOG", "1") == "1" else None
# event URLs carry a signed token: the access log writes it as token=[redacted]
logger_class = "gateway.access_log.RedactingLogger"
errorlog = "-"
loglevel = os.environ.get("SLUICE_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A gateway process ended: drop its live gauges from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):  # type: ignore[no-untyped-def]
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

"""Prometheus metrics (the official client), shared names for both processes.

* Gateway (gunicorn, several worker processes): multiprocess mode. ``gunicorn.conf.py``
  gives every gateway process one ``PROMETHEUS_MULTIPROC_DIR``; ``/metrics`` aggregates
  them, plus cluster-wide gauges read from Redis at scrape time (queue depth, running
  jobs, live workers), so any gateway answers for the whole deployment.
* Worker (Celery): per-job metrics (jobs by status, time to first delta, duration,
  upstream errors, tokens), served on ``SLUICE_WORKER_METRICS_PORT`` when set. With a
  prefork pool (several processes), set ``PROMETHEUS_MULTIPROC_DIR`` for the worker too
  and the server aggregates its children.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from sluice.settings import read_env

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

JOBS = Counter("sluice_jobs", "Jobs that ended, by final status", ["status"])
UPSTREAM_ERRORS = Counter(
    "sluice_upstream_errors", "Upstream failures, by HTTP status or error type", ["status"]
)
TOKENS = Counter("sluice_tokens", "Tokens used by finished jobs", ["kind"])
TIME_TO_FIRST_DELTA = Histogram(
    "sluice_time_to_first_delta_seconds",
    "From a worker starting a job to its first delta",
    buckets=LATENCY_BUCKETS,
)
JOB_DURATION = Histogram(
    "sluice_job_duration_seconds",
    "From a worker starting a job to its end",
    buckets=DURATION_BUCKETS,
)
APPEND_BATCH = Histogram(
    "sluice_worker_append_batch_size",
    "Appends sent to Redis together in one round trip by a worker process",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ACTIVE_STREAMS = Gauge(
    "sluice_active_streams",
    "SSE and streamed chat-completion responses open in this gateway",
    multiprocess_mode="livesum",
)


class ClusterCollector(Collector):
    """Deployment-wide gauges, read from Redis when scraped."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # nothing to read from Redis when registering

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self.read()
        for name, help_text in (
            ("queue_depth", "Jobs waiting in the queue"),
            ("jobs_running", "Jobs a worker is streaming (holding a lease)"),
            ("workers_alive", "Worker processes seen in the last 15 s"),
        ):
            yield GaugeMetricFamily(f"sluice_{name}", help_text, value=values[name])


def gateway_registry(cluster: ClusterCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    if read_env("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:  # a single process (tests, the Flask dev server)
        registry.register(REGISTRY)
    registry.register(cluster)
    return registry


def serve_worker_metrics(port: int) -> None:
    if read_env("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)

"""``GET /metrics``: Prometheus text format (see ``sluice/metrics.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.services import services
from sluice.metrics import ACTIVE_STREAMS, ClusterCollector, gateway_registry
from sluice.presence import alive_workers

bp = Blueprint("metrics", __name__)
T = TypeVar("T")
_registry = {}


def _cluster_values() -> dict[str, float]:
    svc = services()
    with svc.redis.pipeline(transaction=False) as pipe:
        pipe.llen(svc.settings.queue)
        pipe.zcard(svc.store.keys.leases)
        depth, running = pipe.execute()
    return {
        "queue_depth": depth,
        "jobs_running": running,
        "workers_alive": alive_workers(svc.redis, svc.store.keys),
    }


@bp.get("/metrics")
def metrics() -> Response:
    if "registry" not in _registry:
        _registry["registry"] = gateway_registry(ClusterCollector(_cluster_values))
    return Response(generate_latest(_registry["registry"]), mimetype=CONTENT_TYPE_LATEST)


def counted(stream: Iterator[T]) -> Iterator[T]:
    """Count an open streamed response in ``sluice_active_streams`` while it lasts."""
    ACTIVE_STREAMS.inc()
    try:
        yield from stream
    finally:
        with contextlib.suppress(Exception):
            ACTIVE_STREAMS.dec()

"""``GET /metrics``: Prometheus text format (see ``sluice/metrics.py``)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.services import services
from sluice.metrics import ClusterCollector, gateway_registry
from sluice.presence import alive_workers

bp = Blueprint("metrics", __name__)
_registry: dict[str, CollectorRegistry] = {}  # built at the first scrape


def _cluster_values() -> dict[str, float]:
    svc = services()
    with svc.redis.pipeline(transaction=False) as pipe:
        pipe.llen(svc.settings.queue)
        for leases in svc.store.keys.lease_indexes:  # one, or one per bucket on a cluster
            pipe.zcard(leases)
        depth, *running = pipe.execute()
    return {
        "queue_depth": depth,
        "jobs_running": sum(running),
        "workers_alive": alive_workers(svc.redis, svc.store.keys),
    }


@bp.get("/metrics")
def metrics() -> Response:
    if "registry" not in _registry:
        _registry["registry"] = gateway_registry(ClusterCollector(_cluster_values))
    return Response(generate_latest(_registry["registry"]), mimetype=CONTENT_TYPE_LATEST)

"""``GET /metrics``: Prometheus text format (see ``sluice/metrics.py``)."""

from __future__ import annotations

import math

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.services import services
from sluice.broker import BrokerUnavailable
from sluice.metrics import ClusterCollector, gateway_registry
from sluice.presence import alive_workers

bp = Blueprint("metrics", __name__)
_registry: dict[str, CollectorRegistry] = {}  # built at the first scrape


def _cluster_values() -> dict[str, float]:
    svc = services()
    try:
        depth = float(svc.broker.queue_depth(svc.settings.queue))
    except BrokerUnavailable:
        depth = math.nan  # Prometheus' "no value": the broker did not answer
    with svc.redis.pipeline(transaction=False) as pipe:
        for leases in svc.store.keys.lease_indexes:  # one, or one per bucket on a cluster
            pipe.zcard(leases)
        running = pipe.execute()
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

"""Liveness and readiness probes, in the shape load balancers and Kubernetes expect.

``/healthz``: the process answers (200). ``/readyz``: 200 only when Redis answers, this
process's shared subscriber is subscribed (it carries every live stream), at least one
worker was alive in the last 15 s, and the queue is under ``SLUICE_MAX_QUEUED``;
otherwise 503, with each check's state in the body. The queue is read from the broker in
use (``sluice/broker.py``); the ``queue`` check names it (``redis`` or ``amqp``) and fails
with the error when the broker does not answer.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from gateway.services import services
from sluice.broker import BrokerUnavailable
from sluice.presence import alive_workers

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, dict[str, Any]] = {}
    try:
        svc.redis.ping()
        checks["redis"] = {"status": "ok"}
        workers = alive_workers(svc.redis, svc.store.keys)
        checks["workers"] = {"status": "ok" if workers else "failing", "alive": workers}
    except redis.RedisError as exc:
        checks["redis"] = {"status": "failing", "error": type(exc).__name__}
    limit = svc.settings.max_queued
    try:
        depth = svc.broker.queue_depth(svc.settings.queue)
        checks["queue"] = {"status": "ok" if depth < limit else "failing", "depth": depth,
                           "limit": limit, "broker": svc.broker.kind}  # fmt: skip
    except BrokerUnavailable as exc:
        error = str(exc).split(":")[0]
        checks["queue"] = {"status": "failing", "broker": svc.broker.kind, "error": error}
    checks["subscriber"] = (
        {"status": "ok"}
        if svc.hub.healthy
        else {"status": "failing", "error": (svc.hub.last_error or "").split(":")[0]}
    )
    ready = all(check["status"] == "ok" for check in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return jsonify(body), 200 if ready else 503

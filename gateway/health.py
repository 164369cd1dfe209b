"""Liveness and readiness probes, in the shape load balancers and Kubernetes expect."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify

from gateway.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    try:
        services().redis.ping()
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "checks": {"redis": str(exc)}}), 503
    return jsonify({"status": "ok", "checks": {"redis": "ok"}})

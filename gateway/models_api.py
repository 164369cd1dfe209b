"""``GET /v1/models``: the upstream's models, cached briefly, with their context windows."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from flask import Blueprint, jsonify

from gateway.services import services
from sluice.errors import UpstreamError
from sluice.models import lookup
from sluice.upstream_errors import error_from_response

bp = Blueprint("models", __name__)

_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_lock = threading.Lock()


def _fetch(base_url: str, api_key: str | None, timeout: float) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = requests.get(f"{base_url}/models", headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise UpstreamError(f"the upstream is unreachable: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise error_from_response(response.status_code, response.content, response.headers)
    data = response.json().get("data", [])
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


@bp.get("/v1/models")
def list_models():  # type: ignore[no-untyped-def]
    settings = services().settings
    key = settings.openai_base_url
    with _lock:
        cached = _cache.get(key)
    if cached is None or time.monotonic() - cached[0] > settings.models_cache_ttl:
        models = _fetch(key, settings.openai_api_key, settings.upstream_connect_timeout)
        cached = (time.monotonic(), models)
        with _lock:
            _cache[key] = cached
    data = []
    for model in cached[1]:
        info = lookup(model["id"], settings.default_context_window)
        data.append({**model, "context_window": info.context_window})
    return jsonify({"object": "list", "data": data})

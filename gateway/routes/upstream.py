"""Asking the upstream directly: its model list, and whether a key is valid.

A key sent here (``X-Upstream-Api-Key`` or the verify body) is used for this one request
to the upstream and is never stored or logged; an upstream error that quotes it has it
redacted (``sluice.upstream_errors.redact_keys``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import requests
from flask import Blueprint, Response, jsonify

from gateway import request
from gateway.services import services
from sluice.errors import InvalidRequest, UpstreamError
from sluice.keyvault import validate_user_key
from sluice.models import lookup
from sluice.upstream_errors import error_from_response

bp = Blueprint("upstream", __name__)

_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
_lock = threading.Lock()


def _get_models(base_url: str, api_key: str | None, timeout: float) -> requests.Response:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        # a redirect is the upstream's error, never followed (the configured upstream only)
        return requests.get(
            f"{base_url}/models", headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise UpstreamError(f"the upstream is unreachable ({type(exc).__name__})") from None


def _fetch(base_url: str, api_key: str | None, timeout: float) -> list[dict[str, Any]]:
    response = _get_models(base_url, api_key, timeout)
    if response.status_code != 200:
        raise error_from_response(
            response.status_code, response.content, response.headers, keys=(api_key,)
        )
    data = response.json().get("data", [])
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


@bp.get("/v1/models")
def list_models() -> Response:
    settings = services().settings
    api_key = request.upstream_key() or settings.openai_api_key
    # cached per upstream and per key (by its hash: the key itself is not kept)
    cache_key = (settings.openai_base_url, hashlib.sha256((api_key or "").encode()).hexdigest())
    with _lock:
        cached = _cache.get(cache_key)
    if cached is None or time.monotonic() - cached[0] > settings.models_cache_ttl:
        models = _fetch(settings.openai_base_url, api_key, settings.upstream_connect_timeout)
        cached = (time.monotonic(), models)
        with _lock:
            _cache[cache_key] = cached
    data = []
    for model in cached[1]:
        info = lookup(model["id"], settings.default_context_window)
        data.append({**model, "context_window": info.context_window})
    return jsonify({"object": "list", "data": data})


@bp.post("/v1/keys/verify")
def verify_key() -> Response:
    """``{"api_key": "sk-…"}`` → ``{"valid": true|false}``, by asking the upstream."""
    body = request.json_object()
    if set(body) != {"api_key"} or not isinstance(body["api_key"], str):
        raise InvalidRequest('send {"api_key": "<key>"}', param="api_key")
    api_key = validate_user_key(body["api_key"], param="api_key")
    settings = services().settings
    response = _get_models(settings.openai_base_url, api_key, settings.upstream_connect_timeout)
    if response.status_code == 200:
        return jsonify({"valid": True})
    if response.status_code in (401, 403):
        return jsonify({"valid": False})
    raise error_from_response(
        response.status_code, response.content, response.headers, keys=(api_key,)
    )

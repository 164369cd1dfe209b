"""Rate limits per client on the routes that start work, with Flask-Limiter and Redis.

The client is its access key (by owner id) when access keys are on, else its address
(``SLUICE_PROXY_HOPS`` makes the address the one a trusted proxy saw). Counters live in
Redis, so every gateway process shares them.
"""

from __future__ import annotations

from typing import cast

from flask import Flask
from flask.typing import RouteCallable
from flask_limiter import Limiter

from gateway import request as incoming
from sluice.redis_client import limiter_storage
from sluice.settings import Settings

LIMITED_ENDPOINTS = (
    "jobs.create_job",
    "openai.chat_completions",
    "responses.create_response",
    "ai_chat.chat",
    "upstream.verify_key",
)


def client_key() -> str:
    owner = incoming.owner()
    return f"key:{owner}" if owner else f"addr:{incoming.client_address()}"


def install_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    if not settings.rate_limit:
        return None
    uri, options = limiter_storage(settings)
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=uri,
        storage_options=options,
        strategy="moving-window",
        headers_enabled=True,
        key_prefix=f"{settings.key_prefix}:ratelimit",
    )
    for endpoint in LIMITED_ENDPOINTS:
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = cast(RouteCallable, limiter.limit(settings.rate_limit)(view))
    return limiter

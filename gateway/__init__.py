"""The Flask gateway: accepts jobs, relays their events as SSE, answers polls and cancels."""

from __future__ import annotations

import logging

from flask import Flask

from sluice.logs import configure_logging
from sluice.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory; tests pass their own ``Settings``."""
    from gateway import health, jobs, openai_compat, openapi, page, upstream_api
    from gateway.errors import register_error_handlers
    from gateway.services import Services

    configure_logging()
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["sluice"] = Services.build(settings)
    register_error_handlers(app)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(upstream_api.bp)
    app.register_blueprint(openai_compat.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    upstream = settings.openai_base_url
    logging.getLogger("sluice.gateway").info(
        "gateway ready: upstream %s (%s), redis %s",
        upstream,
        "server key set" if settings.openai_api_key else "no OPENAI_API_KEY",
        redact_url(settings.redis_url),
    )
    return app


def redact_url(url: str) -> str:
    """Hide the password of a ``redis://user:password@host`` URL for logging."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(parts.password, "***")
        return parts._replace(netloc=netloc).geturl()
    return url

"""The Flask gateway: accepts jobs, relays their events as SSE, answers polls and cancels."""

from __future__ import annotations

import logging

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from sluice.logs import configure_logging
from sluice.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory; tests pass their own ``Settings``."""
    from flask_cors import CORS
    from werkzeug.middleware.proxy_fix import ProxyFix

    from gateway.errors import register_error_handlers
    from gateway.limits import install_rate_limits
    from gateway.routes import BLUEPRINTS
    from gateway.services import Services
    from gateway.stream_quota import install as install_stream_quota

    configure_logging()
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.json = _UnsortedJSON(app)
    services = Services.build(settings)
    app.extensions["sluice"] = services
    app.before_request(services.access.authenticate)
    register_error_handlers(app)
    install_stream_quota(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    install_rate_limits(app, settings)
    if settings.cors_origins:
        CORS(
            app,
            resources={
                r"/v1/*": {"origins": list(settings.cors_origins)},
                r"/api/*": {"origins": list(settings.cors_origins)},
            },
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key",
                           "Last-Event-ID", "X-Upstream-Api-Key"],
            expose_headers=["Location", "Retry-After", "X-Sluice-Job-Id", "X-Sluice-Events-Url",
                            "x-vercel-ai-ui-message-stream"],
            max_age=600,
        )  # fmt: skip
    if settings.proxy_hops:
        # Flask's documented way to wrap its WSGI app; mypy sees it as replacing a method
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.proxy_hops,
            x_proto=settings.proxy_hops,
            x_host=settings.proxy_hops,
        )
    upstream = settings.openai_base_url
    logging.getLogger("sluice.gateway").info(
        "gateway ready: upstream %s (%s), redis %s, broker %s (%s), access keys %s, rate limit %s",
        upstream,
        "server key set" if settings.openai_api_key else "no OPENAI_API_KEY",
        redact_url(settings.redis_url),
        services.broker.url,
        services.broker.kind,
        "on" if settings.access_keys else "off",
        settings.rate_limit or "off",
    )
    return app


class _UnsortedJSON(DefaultJSONProvider):
    """Keys in the order the code wrote them (the docs' order), UTF-8 as is."""

    sort_keys = False
    ensure_ascii = False


def redact_url(url: str) -> str:
    """Hide the password of a ``redis://user:password@host`` URL for logging."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(parts.password, "***")
        return parts._replace(netloc=netloc).geturl()
    return url

"""The gateway's routes, one blueprint a module: ``BLUEPRINTS`` is what ``create_app``
registers."""

from __future__ import annotations

from gateway.routes import chat_completions, health, jobs, metrics, openapi, page, upstream

BLUEPRINTS = (
    jobs.bp,
    upstream.bp,
    chat_completions.bp,
    health.bp,
    page.bp,
    openapi.bp,
    metrics.bp,
)

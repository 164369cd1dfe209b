"""The gateway's routes, one blueprint a module: ``BLUEPRINTS`` is what ``create_app``
registers.

``PROJECTIONS`` are the route modules that describe their own paths for
``/openapi.json`` (``OPENAPI_PATHS``, and ``OPENAPI_MODELS`` for their request schemas)."""

from __future__ import annotations

from gateway.routes import (
    ai_chat,
    chat_completions,
    conversations,
    health,
    jobs,
    metrics,
    openapi,
    page,
    responses,
    upstream,
)

BLUEPRINTS = (
    jobs.bp,
    upstream.bp,
    chat_completions.bp,
    responses.bp,
    ai_chat.bp,
    conversations.bp,
    health.bp,
    page.bp,
    openapi.bp,
    metrics.bp,
)

PROJECTIONS = (responses, ai_chat, conversations)

"""Turning an upstream's error answer into a ``UpstreamError`` with its status and message.

OpenAI-compatible servers answer ``{"error": {"message", "type", "code", "param"}}``; some
send a bare string or plain text. The message is kept (users need "invalid API key", not
"502"), but cut short and never includes request headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sluice.errors import UpstreamAuthError, UpstreamError, UpstreamRateLimited

MAX_MESSAGE = 1000


def _message_and_fields(payload: Any) -> tuple[str | None, Any, str | None]:
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
            return (str(message) if message else None), err.get("code"), err.get("type")
        if isinstance(err, str):
            return err, None, None
    return None, None, None


def error_from_payload(payload: Any, status: int | None = None) -> UpstreamError:
    """An error object found inside a stream (``data: {"error": …}``)."""
    message, code, type_ = _message_and_fields(payload)
    return UpstreamError(
        (message or "the upstream reported an error in its stream")[:MAX_MESSAGE],
        upstream_status=status,
        code=code if isinstance(code, (str, int)) else None,
        upstream_type=type_,
    )


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """An HTTP error answer from the upstream."""
    try:
        payload = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        payload = None
    message, code, type_ = _message_and_fields(payload)
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text[:200] if text and not text.startswith("<") else f"HTTP {status}"
    cls = UpstreamError
    if status in (401, 403):
        cls = UpstreamAuthError
    elif status == 429:
        cls = UpstreamRateLimited
    error = cls(
        f"upstream answered {status}: {message}"[:MAX_MESSAGE],
        upstream_status=status,
        code=code if isinstance(code, (str, int)) else None,
        upstream_type=type_,
    )
    if headers is not None:
        error.retry_after = retry_after_seconds(headers)
    return error


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (Azure, precise) first, then ``Retry-After`` in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None

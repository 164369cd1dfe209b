"""Turning an upstream's error answer into a ``UpstreamError`` with its status and message.

OpenAI-compatible servers answer ``{"error": {"message", "type", "code", "param"}}``; some
send a bare string or plain text. The message is kept (users need "invalid API key", not
"502"), but cut short, never includes request headers, and has the key that was sent
redacted (``redact_keys``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sluice.errors import UpstreamAuthError, UpstreamError, UpstreamRateLimited

MAX_MESSAGE = 1000
REDACTED = "[redacted]"
MIN_REDACTED_KEY = 8  # shorter "keys" are placeholders (ollama, EMPTY), not secrets


def redact_keys(text: str, keys: Iterable[str | None]) -> str:
    """``text`` with every key of ``keys`` (the ones the request presented) replaced by
    ``[redacted]``.

    A provider's 401 may quote the key it was sent. OpenAI masks all but a few characters
    ("Incorrect API key provided: sk-ab***yz"), but other OpenAI-compatible servers and
    proxies quote it whole, and the message goes on to the job's error event (stored in
    Redis, sent to every client of the job, in the poll view and the OpenAI-compatible
    error) and to the logs: the server's ``OPENAI_API_KEY`` would reach whoever triggered
    the refusal, and a user's own key would sit in clear text where the sealed copy was
    kept out. So the message is redacted here, before anything stores, logs or sends it,
    and before it is cut short (a cut could leave most of a key behind). Values shorter
    than ``MIN_REDACTED_KEY`` are left alone: they are placeholders such as ``ollama``,
    which OpenAI itself quotes whole, and replacing them would only garble the message.
    """
    for key in keys:
        if key and len(key) >= MIN_REDACTED_KEY:
            text = text.replace(key, REDACTED)
    return text


def _message_and_fields(payload: Any) -> tuple[str | None, Any, str | None]:
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
            return (str(message) if message else None), err.get("code"), err.get("type")
        if isinstance(err, str):
            return err, None, None
    return None, None, None


def error_from_payload(
    payload: Any, status: int | None = None, keys: Iterable[str | None] = ()
) -> UpstreamError:
    """An error object found inside a stream (``data: {"error": …}``); ``keys``: the keys
    the request presented, redacted from the message."""
    message, code, type_ = _message_and_fields(payload)
    message = redact_keys(message or "the upstream reported an error in its stream", keys)
    return UpstreamError(
        message[:MAX_MESSAGE],
        upstream_status=status,
        code=code if isinstance(code, (str, int)) else None,
        upstream_type=type_,
    )


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    keys: Iterable[str | None] = (),
) -> UpstreamError:
    """An HTTP error answer from the upstream; ``keys``: the keys the request presented,
    redacted from the message (``redact_keys``)."""
    keys = tuple(keys)
    try:
        payload = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        payload = None
    message, code, type_ = _message_and_fields(payload)
    if message:
        message = redact_keys(message, keys)
    else:
        text = redact_keys(body.decode("utf-8", "replace").strip(), keys)
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

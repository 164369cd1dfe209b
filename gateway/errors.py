"""Rendering every failure in one JSON shape: ``{"error": {"type", "message", "param"?}}``.

The errors themselves are ``sluice.errors``' tree; this module turns each into its
response (status, ``Retry-After``), and maps what Flask, Werkzeug and pydantic raise
(a 404 route, a 405 method, a too-large body, a validation error) onto the tree first.
The OpenAI-compatible route renders the same errors in OpenAI's shape
(``gateway/routes/chat_completions.py``).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sluice.errors import (
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    SluiceError,
    for_http_status,
)

log = logging.getLogger("sluice.gateway")


def error_response(error: SluiceError) -> tuple[Response, int]:
    response = jsonify({"error": error.to_dict()})
    add_retry_after(response, error)
    return response, error.status


def add_retry_after(response: Response, error: Exception) -> None:
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)


def param_path(loc: tuple[int | str, ...]) -> str:
    """``("messages", 2, "role")`` -> ``"messages[2].role"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    first = exc.errors(include_url=False)[0]
    # pydantic adds the union member tried (e.g. "str", "list[TextPart]") to the location
    loc = tuple(
        p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_NAMES))
    )
    ctx = first.get("ctx") or {}
    if "param" in ctx:  # a model-level check that names its field
        loc = (*loc, ctx["param"])
    param = param_path(loc) if loc else None
    message = first["msg"].removeprefix("Value error, ")
    if "param" in ctx:
        message = message.removeprefix(f"{ctx['param']} ")
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "function-after", "constrained-str"}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(SluiceError)
    def _sluice_error(exc: SluiceError) -> tuple[Response, int]:
        if exc.status >= 500:
            log.warning("request failed: %s: %s", exc.type, exc.message)
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response, int]:
        return error_response(from_validation_error(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        return error_response(PayloadTooLarge("the request body is larger than allowed"))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return error_response(for_http_status(exc.code or 500, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        import redis

        if isinstance(exc, redis.RedisError):
            log.error("Redis unavailable: %s", exc)
            return error_response(ServiceUnavailable("the job store is unavailable; retry"))
        log.exception("unhandled error")
        return error_response(SluiceError("internal error"))

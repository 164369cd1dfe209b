"""One JSON error shape for every failure: ``{"error": {"type", "message", "param"?}}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sluice.errors import InvalidRequest, PayloadTooLarge, ServiceUnavailable, SluiceError

log = logging.getLogger("sluice.gateway")

_HTTP_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(error: SluiceError, status: int | None = None) -> tuple[Response, int]:
    response = jsonify({"error": error.to_dict()})
    add_retry_after(response, error)
    return response, status or error.status


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
    def _sluice_error(exc: SluiceError):  # type: ignore[no-untyped-def]
        if exc.status >= 500:
            log.warning("request failed: %s: %s", exc.type, exc.message)
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):  # type: ignore[no-untyped-def]
        return error_response(from_validation_error(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):  # type: ignore[no-untyped-def]
        return error_response(PayloadTooLarge("the request body is larger than allowed"))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        err = SluiceError(exc.description or exc.name)
        err.type = _HTTP_TYPES.get(status, "invalid_request" if status < 500 else "internal_error")
        return error_response(err, status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        import redis

        if isinstance(exc, redis.RedisError):
            log.error("Redis unavailable: %s", exc)
            return error_response(ServiceUnavailable("the job store is unavailable; retry"))
        log.exception("unhandled error")
        return error_response(SluiceError("internal error"))

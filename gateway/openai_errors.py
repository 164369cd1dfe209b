"""Errors in OpenAI's shape, for the routes that speak OpenAI's APIs (Chat Completions,
Responses): ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses,
which the official SDKs turn into their typed exceptions (``BadRequestError``,
``RateLimitError``, …). Every other route keeps Sluice's own shape (``gateway/errors.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from gateway.errors import add_retry_after, from_validation_error
from gateway.wire.openai_chunks import error_body
from sluice.errors import SluiceError, error_status


def error_response(error: dict[str, Any], job_id: str | None = None) -> Response:
    """An error recorded as ``to_dict()`` (a job's ``error`` event), in OpenAI's shape,
    with its status."""
    response = jsonify(error_body(error))
    response.status_code = error_status(error)
    if job_id:
        response.headers["X-Sluice-Job-Id"] = job_id
    return response


def _sluice_error(exc: SluiceError) -> Response:
    body = exc.to_dict()
    if exc.status < 500:
        body = {**body, "code": body.get("code") or exc.type, "type": "invalid_request_error"}
    response = jsonify(error_body(body))
    response.status_code = exc.status
    add_retry_after(response, exc)
    return response


def _validation_error(exc: ValidationError) -> Response:
    return _sluice_error(from_validation_error(exc))


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    response = jsonify(error_body({"type": kind, "message": exc.description or exc.name}))
    response.status_code = status
    if status == 429:
        response.headers.setdefault("Retry-After", "60")
    return response


def use_openai_errors(bp: Blueprint) -> None:
    """Render the blueprint's errors (Sluice's, validation's, HTTP's) in OpenAI's shape."""
    bp.register_error_handler(SluiceError, _sluice_error)
    bp.register_error_handler(ValidationError, _validation_error)
    bp.register_error_handler(HTTPException, _http_error)

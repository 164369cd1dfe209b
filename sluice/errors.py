"""One exception hierarchy for both processes (after httpx's ``_exceptions.py``).

Each class knows its stable error ``type`` and HTTP status, so the gateway's JSON error
handler and the worker's terminal ``error`` event are made from the same objects.
"""

from __future__ import annotations

from typing import Any


class SluiceError(Exception):
    """Base class: a failure with a stable ``type`` and a human message."""

    type = "internal_error"
    status = 500

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            body["param"] = self.param
        return body


class InvalidRequest(SluiceError):
    """The request is malformed or has a value out of range."""

    type = "invalid_request"
    status = 400


class ContextLengthExceeded(InvalidRequest):
    """The prompt cannot fit the model's context window even after trimming history."""

    type = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the configured limit."""

    type = "payload_too_large"
    status = 413


class UnsupportedMediaType(InvalidRequest):
    """The request body is not JSON."""

    type = "unsupported_media_type"
    status = 415


class NotFound(SluiceError):
    """No such job (never existed, expired, or not the caller's)."""

    type = "not_found"
    status = 404


class ServiceUnavailable(SluiceError):
    """A dependency (Redis, the queue) is down; retry after ``retry_after`` seconds."""

    type = "service_unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


PASSED_THROUGH_STATUSES = frozenset({400, 401, 403, 404, 409, 422, 429})
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class Overloaded(ServiceUnavailable):
    """Too many jobs are waiting; retry after ``retry_after`` seconds."""

    type = "overloaded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(SluiceError):
    """The upstream answered with an error status or an error inside its stream.

    Answered to the client with the upstream's own status when it is about the request
    (a bad key is a 401, a rate limit a 429), otherwise as a 502 Bad Gateway.
    """

    type = "upstream_error"
    default_status = 502
    # worth another try before any text was sent (429, 5xx, a connection error)
    retryable = False

    @property
    def status(self) -> int:  # type: ignore[override]
        if self.upstream_status in PASSED_THROUGH_STATUSES:
            return self.upstream_status
        return self.default_status

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        code: str | int | None = None,
        upstream_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.code = code
        self.upstream_type = upstream_type
        self.retry_after: float | None = None
        if upstream_status in RETRYABLE_STATUSES:
            self.retryable = True

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.upstream_status is not None:
            body["status"] = self.upstream_status
        if self.code is not None:
            body["code"] = self.code
        return body


class UpstreamAuthError(UpstreamError):
    """The upstream rejected the API key (401/403)."""

    type = "upstream_auth_error"


class UpstreamRateLimited(UpstreamError):
    """The upstream answered 429."""

    type = "upstream_rate_limited"


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, or went silent longer than the read timeout."""

    type = "upstream_timeout"
    default_status = 504


class UpstreamConnectionError(UpstreamError):
    """The connection to the upstream failed or broke."""

    type = "upstream_connection_error"
    retryable = True


class UpstreamProtocolError(UpstreamError):
    """The upstream's stream was malformed or ended before it finished."""

    type = "upstream_protocol_error"


class WorkerLost(SluiceError):
    """The worker running the job died and the job could not be retried."""

    type = "worker_lost"

"""Every error Sluice renders or records, in one tree (after httpx's ``_exceptions.py``).

Each class has a stable ``type`` (what clients match on) and an HTTP ``status``; the
gateway renders any of them as ``{"error": {"type", "message", "param"?}}`` with that
status, and the worker writes the same ``to_dict()`` into a job's terminal ``error``
event, which ``error_status`` maps back to the class's status (the OpenAI-compatible
route answers with it). Nothing else builds an error body by hand.

    SluiceError                      internal_error             500
    ├── InvalidRequest               invalid_request            400
    │   ├── ContextLengthExceeded    context_length_exceeded    400
    │   ├── PayloadTooLarge          payload_too_large          413
    │   └── UnsupportedMediaType     unsupported_media_type     415
    ├── Unauthorized                 unauthorized               401
    ├── NotFound                     not_found                  404
    │   └── JobGone                  not_found                  404  (expired meanwhile)
    ├── MethodNotAllowed             method_not_allowed         405
    ├── ConversationBusy             conversation_busy          409  (one job at a time)
    ├── CursorGone                   cursor_gone                410  (no such event)
    ├── JobStopped                   job_stopped                409  (a writer must stop)
    │   ├── JobAlreadyEnded          job_ended                  409
    │   └── AttemptSuperseded        attempt_superseded         409
    │       └── OutOfSequence        out_of_sequence            409
    ├── JobCancelled                 cancelled                  409
    ├── RateLimited                  rate_limited               429
    │   └── TooManyStreams           too_many_streams           429  (Retry-After)
    ├── StreamReset                  stream_reset               502
    ├── StreamInterrupted            stream_interrupted         502
    ├── ServiceUnavailable           service_unavailable        503  (Retry-After)
    │   └── Overloaded               overloaded                 503  (Retry-After)
    ├── UpstreamError                upstream_error             502, or the upstream's
    │   ├── UpstreamAuthError        upstream_auth_error             own 4xx when it is
    │   ├── UpstreamRateLimited      upstream_rate_limited           about the request
    │   ├── UpstreamTimeout          upstream_timeout           504
    │   ├── UpstreamConnectionError  upstream_connection_error  502
    │   └── UpstreamProtocolError    upstream_protocol_error    502
    ├── KeyVaultError                upstream_key_unavailable   500
    └── WorkerLost                   worker_lost                500

``JobStopped`` and its subclasses are the job store's refusals of a write (the job was
cancelled, ended, or taken over by a newer attempt): the worker stops on them and writes
nothing; a client never sees one.
"""

from __future__ import annotations

from typing import Any, ClassVar

PASSED_THROUGH_STATUSES = frozenset({400, 401, 403, 404, 409, 422, 429})
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


BY_TYPE: dict[str, type[SluiceError]] = {}  # each class by its ``type``, the first wins


class SluiceError(Exception):
    """Base class: a failure with a stable ``type``, an HTTP ``status`` and a message."""

    type: ClassVar[str] = "internal_error"
    status: int = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        BY_TYPE.setdefault(cls.type, cls)

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


class Unauthorized(SluiceError):
    """No valid gateway access key (``SLUICE_ACCESS_KEYS`` is set)."""

    type = "unauthorized"
    status = 401


class NotFound(SluiceError):
    """No such job (never existed, expired, or not the caller's), or no such route."""

    type = "not_found"
    status = 404


class JobGone(NotFound):
    """The job's keys are gone (it expired, or never existed) when the store wrote to it:
    for a client the same 404 as a job that was never there."""


class MethodNotAllowed(SluiceError):
    """The route exists, not with this method."""

    type = "method_not_allowed"
    status = 405


class ConversationBusy(SluiceError):
    """The conversation's latest job is still running: one job at a time per
    conversation (cancel it, or wait for its end, then submit again)."""

    type = "conversation_busy"
    status = 409

    def __init__(self, conversation_id: str, job_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} has a job still running ({job_id}); "
            "cancel it or wait for it to end, then submit again",
            param="conversation_id",
        )
        self.job_id = job_id

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "job_id": self.job_id}


class CursorGone(SluiceError):
    """A cursor this job's log cannot serve: past its last event, or into a log that
    expired or was lost. Waiting would never bring the events: answer at once."""

    type = "cursor_gone"
    status = 410


class JobStopped(SluiceError):
    """The store refused a write: this writer must stop (never shown to a client)."""

    type = "job_stopped"
    status = 409


class JobAlreadyEnded(JobStopped):
    """The job reached a terminal state; it takes no more events (e.g. it was cancelled)."""

    type = "job_ended"


class AttemptSuperseded(JobStopped):
    """A newer attempt owns the job (or the log moved on without this writer)."""

    type = "attempt_superseded"


class OutOfSequence(AttemptSuperseded):
    """The log does not end where this write expected: an earlier write of this attempt
    was lost (send it again), or the log moved on without it."""

    type = "out_of_sequence"


class JobCancelled(SluiceError):
    """The job was cancelled: how a format without a ``cancelled`` event says so."""

    type = "cancelled"
    status = 409

    def __init__(self, message: str = "the job was cancelled") -> None:
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "code": "job_cancelled"}


class RateLimited(SluiceError):
    """Too many requests from this client (``SLUICE_RATE_LIMIT``)."""

    type = "rate_limited"
    status = 429


class TooManyStreams(RateLimited):
    """The client holds ``SLUICE_MAX_STREAMS_PER_CLIENT`` open streams on this gateway
    process already (``gateway.stream_quota``); retry after ``retry_after`` seconds."""

    type = "too_many_streams"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StreamReset(SluiceError):
    """The job restarted after text was sent, in a format that cannot take text back."""

    type = "stream_reset"
    status = 502

    def __init__(
        self,
        message: str = "the job restarted after text was sent; resume it with /v1/jobs/<id>/events",
    ) -> None:
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "code": self.type}


class StreamInterrupted(SluiceError):
    """This gateway stopped following the job before it ended (shutdown, Redis lost)."""

    type = "stream_interrupted"
    status = 502

    def __init__(
        self, message: str = "the stream was interrupted; resume it with /v1/jobs/<id>/events"
    ) -> None:
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "code": self.type}


class ServiceUnavailable(SluiceError):
    """A dependency (Redis, the queue) is down; retry after ``retry_after`` seconds."""

    type = "service_unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(ServiceUnavailable):
    """Too many jobs are waiting; retry after ``retry_after`` seconds."""

    type = "overloaded"


class UpstreamError(SluiceError):
    """The upstream answered with an error status or an error inside its stream.

    Answered to the client with the upstream's own status when it is about the request
    (a bad key is a 401, a rate limit a 429), otherwise as a 502 Bad Gateway.
    """

    type = "upstream_error"
    default_status: ClassVar[int] = 502
    # worth another try before any text was sent (429, 5xx, a connection error)
    retryable = False

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
        self.status = _upstream_status(upstream_status, self.default_status)
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


class KeyVaultError(SluiceError):
    """A stored user key cannot be decrypted (wrong server secret, or too old)."""

    type = "upstream_key_unavailable"


class WorkerLost(SluiceError):
    """The worker running the job died and the job could not be retried."""

    type = "worker_lost"


def _upstream_status(upstream_status: int | None, default: int) -> int:
    if upstream_status is not None and upstream_status in PASSED_THROUGH_STATUSES:
        return upstream_status
    return default


def error_status(error: dict[str, Any]) -> int:
    """The HTTP status for an error recorded in a job's ``error`` event (``to_dict()``
    of one of the classes above): the upstream's own when it is about the request."""
    cls = BY_TYPE.get(str(error.get("type", "")), InvalidRequest)
    upstream_status = error.get("status")
    if issubclass(cls, UpstreamError):
        return _upstream_status(
            upstream_status if isinstance(upstream_status, int) else None, cls.default_status
        )
    return cls.status


def for_http_status(status: int, message: str) -> SluiceError:
    """A framework's own HTTP error (no such route, wrong method, rate limit) as one of
    the classes above."""
    known: dict[int, type[SluiceError]] = {
        401: Unauthorized,
        404: NotFound,
        405: MethodNotAllowed,
        413: PayloadTooLarge,
        415: UnsupportedMediaType,
        429: RateLimited,
    }
    cls = known.get(status) or (InvalidRequest if status < 500 else SluiceError)
    error = cls(message)
    error.status = status
    return error

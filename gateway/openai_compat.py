"""``POST /v1/chat/completions``: OpenAI's API, served through Sluice's queue.

Official SDKs work unchanged: ``stream: true`` answers in OpenAI's chunk format
(``chat.completion.chunk`` objects, a usage chunk when ``stream_options.include_usage``
is set, ``data: [DONE]``); otherwise one ``chat.completion`` once the job ends. Errors use
OpenAI's shape and statuses. Every answer carries ``X-Sluice-Job-Id``, so a client whose
connection drops can resume with ``/v1/jobs/<id>/events``.

Choices made here:

* A streamed answer's headers wait for the job's first delta (up to 20 s: retries of a
  refused upstream request fit, and PaaS routers still see a first byte in time). A job
  that fails before it produced anything (a bad key, a rate limit) answers with the HTTP
  error status, which SDKs turn into their typed exceptions.
* A failure after the first chunk is a ``data: {"error": …}`` frame (which openai-python
  raises as ``APIError``), then ``data: [DONE]``. So is a cancel, and a ``reset`` after
  text was sent: OpenAI's format has no way to take text back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import ClosingIterator

from gateway.body import json_object
from gateway.errors import add_retry_after, from_validation_error
from gateway.feed import HEARTBEAT, Item
from gateway.metrics_api import counted
from gateway.relay import SSE_HEADERS
from gateway.schemas import ChatCompletionRequest
from gateway.services import services
from gateway.submit import submit_and_follow
from sluice.errors import PASSED_THROUGH_STATUSES, SluiceError
from sluice.events import (
    CANCELLED,
    DELTA,
    DONE,
    ERROR,
    RESET,
    TERMINAL_EVENTS,
    Event,
    Transcript,
    dumps,
)
from sluice.store import Job

bp = Blueprint("openai", __name__)

CANCELLED_ERROR = {"type": "cancelled", "code": "job_cancelled", "message": "the job was cancelled"}
RESET_ERROR = {
    "type": "stream_reset",
    "code": "stream_reset",
    "message": "the job restarted after text was sent; resume it with /v1/jobs/<id>/events",
}


INTERRUPTED_ERROR = {
    "type": "stream_interrupted",
    "code": "stream_interrupted",
    "message": "the stream was interrupted; resume it with /v1/jobs/<id>/events",
}


def openai_error_body(error: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": {
            "message": error.get("message", "error"),
            "type": error.get("upstream_type") or error.get("type", "error"),
            "param": error.get("param"),
            "code": error.get("code"),
        }
    }


def status_for(error: dict[str, Any]) -> int:
    upstream_status = error.get("status")
    if upstream_status in PASSED_THROUGH_STATUSES:
        return int(upstream_status)
    type_ = str(error.get("type", ""))
    if type_ == "upstream_timeout":
        return 504
    if type_.startswith("upstream"):
        return 502
    if type_ == "cancelled":
        return 409
    return 500 if type_ in ("internal_error", "worker_lost") else 400


def error_response(error: dict[str, Any], status: int, job_id: str | None = None) -> Response:
    response = jsonify(openai_error_body(error))
    response.status_code = status
    if job_id:
        response.headers["X-Sluice-Job-Id"] = job_id
    return response


@bp.errorhandler(SluiceError)
def _sluice_error(exc: SluiceError) -> Response:
    body = exc.to_dict()
    if exc.status < 500:
        body = {**body, "code": body.get("code") or exc.type, "type": "invalid_request_error"}
    response = error_response(body, exc.status)
    add_retry_after(response, exc)
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    response = error_response({"type": kind, "message": exc.description or exc.name}, status)
    if status == 429:
        response.headers.setdefault("Retry-After", "60")
    return response


@bp.errorhandler(ValidationError)
def _validation_error(exc: ValidationError) -> Response:
    return _sluice_error(from_validation_error(exc))


class ChunkWriter:
    """Renders Sluice events as OpenAI ``chat.completion.chunk`` SSE frames."""

    def __init__(self, job: Job, include_usage: bool) -> None:
        self.job = job
        self.include_usage = include_usage
        self.role_sent: set[int] = set()
        self.text_sent = False

    def _frame(self, payload: Any) -> bytes:
        return f"data: {dumps(payload)}\n\n".encode()

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-{self.job.id}",
            "object": "chat.completion.chunk",
            "created": int(self.job.created_at),
            "model": self.job.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return self._frame(chunk)

    def _choice(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict:
        if index not in self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent.add(index)
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def error(self, error: dict[str, Any]) -> bytes:
        return self._frame(openai_error_body(error)) + b"data: [DONE]\n\n"

    def render(self, event: Event) -> bytes:
        data = event.data
        if event.type == DELTA:
            delta: dict[str, Any] = {}
            if data.get("content"):
                delta["content"] = data["content"]
                self.text_sent = True
            if data.get("reasoning"):
                delta["reasoning_content"] = data["reasoning"]
            return self._chunk([self._choice(data["index"], delta)])
        if event.type == DONE:
            out = b"".join(
                self._chunk([self._choice(index, {}, reason or "stop")])
                for index, reason in enumerate(data.get("finish_reasons") or ["stop"])
            )
            if self.include_usage:
                out += self._chunk([], usage=data.get("usage"))
            return out + b"data: [DONE]\n\n"
        if event.type == ERROR:
            return self.error(data.get("error", {}))
        if event.type == CANCELLED:
            return self.error(CANCELLED_ERROR)
        if event.type == RESET and self.text_sent:
            return self.error(RESET_ERROR)
        return b""

    def stream(self, items: Iterable[Item]) -> Iterator[bytes]:
        for item in items:
            if item is HEARTBEAT:
                yield b": keep-alive\n"
                continue
            assert isinstance(item, tuple)
            event = Event.from_entry(item[1])
            frame = self.render(event)
            if frame:
                yield frame
            if event.terminal or frame.endswith(b"[DONE]\n\n"):
                return
        yield self.error(INTERRUPTED_ERROR)


def completion(job: Job, transcript: Transcript) -> dict[str, Any]:
    """The non-streamed answer: one ``chat.completion`` object."""
    choices = []
    for choice in transcript.choice_list():
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice["content"],
            "refusal": None,
        }
        if choice.get("reasoning"):
            message["reasoning_content"] = choice["reasoning"]
        choices.append(
            {
                "index": choice["index"],
                "message": message,
                "logprobs": None,
                "finish_reason": choice["finish_reason"] or "stop",
            }
        )
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": int(job.created_at),
        "model": job.model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": transcript.usage,
    }


FIRST_BYTE_WAIT = 20.0  # below the 30 s some PaaS routers allow before the first byte


def _first_decisive(items: Iterator[Item]) -> list[Item]:
    """Events up to the first delta or terminal event, for at most ``FIRST_BYTE_WAIT``."""
    head: list[Item] = []
    deadline = time.monotonic() + FIRST_BYTE_WAIT
    for item in items:
        head.append(item)
        if item is HEARTBEAT:
            if time.monotonic() >= deadline:
                break
            continue
        assert isinstance(item, tuple)
        kind = Event.from_entry(item[1]).type
        if kind == DELTA or kind in TERMINAL_EVENTS:
            break
    return head


@bp.post("/v1/chat/completions")
def chat_completions():  # type: ignore[no-untyped-def]
    svc = services()
    params = ChatCompletionRequest.model_validate(json_object())
    job, feed = submit_and_follow(svc, params)
    items = iter(feed)
    head = _first_decisive(items)
    last = head[-1] if head else None
    if isinstance(last, tuple):
        first = Event.from_entry(last[1])
        if first.type in (ERROR, CANCELLED):
            items.close()  # type: ignore[attr-defined]
            error = first.data.get("error", {}) if first.type == ERROR else CANCELLED_ERROR
            return error_response(error, status_for(error), job.id)
    headers = {"X-Sluice-Job-Id": job.id, "X-Sluice-Events-Url": f"/v1/jobs/{job.id}/events"}
    if not params.stream:
        return _complete(job, chain(head, items), headers)
    include_usage = bool(params.stream_options and params.stream_options.include_usage)
    writer = ChunkWriter(job, include_usage)
    return Response(
        ClosingIterator(counted(writer.stream(chain(head, items))), feed.close),
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, **headers},
        direct_passthrough=True,
    )


def _complete(job: Job, items: Iterable[Item], headers: dict[str, str]) -> Response:
    transcript = Transcript()
    for item in items:
        if isinstance(item, tuple):
            event = Event.from_entry(item[1])
            transcript.apply(item[0], event)
            if event.type == ERROR:
                error = event.data.get("error", {})
                return error_response(error, status_for(error), job.id)
            if event.type == CANCELLED:
                return error_response(CANCELLED_ERROR, 409, job.id)
            if event.terminal:
                break
    else:
        return error_response(INTERRUPTED_ERROR, 502, job.id)
    response = jsonify(completion(job, transcript))
    response.headers.update(headers)
    return response

"""OpenAI's Responses API (``/v1/responses``), background mode included, through the queue.

Upstreams stay Chat Completions: the request becomes a chat job
(``gateway/responses_request.py``) and the job's log is projected onto Responses events
and objects (``gateway/wire/responses_events.py``). A response's id is its job's
(``resp_<x>`` for ``job_<x>``), so every gateway process serves every response.

* ``POST /v1/responses``: ``stream`` answers with the events; ``background`` without
  ``stream`` answers at once (status ``queued``); neither waits for the end and answers
  with the Response.
* ``GET /v1/responses/{id}``: the Response; with ``stream=true`` its events, resumable
  with ``starting_after`` (a sequence number). A ``starting_after`` past the last event
  the response has produced is a 400 at once (no client can have seen it), so no stream
  waits for events that never come; at the last event of an ended response the stream
  is empty.
* ``POST /v1/responses/{id}/cancel``: background responses only (a 400 otherwise, as
  OpenAI); idempotent: an ended response is returned as it is.
* ``DELETE /v1/responses/{id}``: cancels it if it still runs, then forgets it (404 after).
* ``GET /v1/responses/{id}/input_items``: its input items (OpenAI's list, ``order``,
  ``limit``, ``after``).

A response created with ``store: false`` is streamed or returned by its own request but
cannot be retrieved or chained (404, as OpenAI). Chaining (``previous_response_id``)
keeps what OpenAI keeps: the previous response's input and output (not its
instructions), for as long as its job is kept (``SLUICE_JOB_TTL``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from flask import request as flask_request
from pydantic import BaseModel

from gateway import request
from gateway.cancel import cancel
from gateway.feed import HEARTBEAT
from gateway.openai_errors import error_response, use_openai_errors
from gateway.responses_request import (
    ResponsesRequest,
    chat_parameters,
    echo,
    items_of,
)
from gateway.services import Services, services
from gateway.submit import submit
from gateway.wire import SSE_HEADERS, stream_response
from gateway.wire.responses_events import META_KEY, ResponsesEvents, job_id_of
from sluice.errors import InvalidRequest, NotFound, StreamInterrupted
from sluice.events import parse_event_id
from sluice.store import Job

bp = Blueprint("responses", __name__)
use_openai_errors(bp)


class ResponsesInvalid(InvalidRequest):
    """A 400 with OpenAI's ``code`` (``previous_response_not_found``, ...)."""

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        return {**body, "code": self.code} if self.code else body


class ResponseNotFound(NotFound):
    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.")


# -- create ---------------------------------------------------------------------------------


@bp.post("/v1/responses")
def create_response() -> Response:
    svc = services()
    req = ResponsesRequest.model_validate(request.json_object())
    if req.stream or not req.background:  # a foreground answer holds its connection too
        svc.reserve_stream()  # before the job: a client at its stream limit starts none
    history: list[dict[str, Any]] = []
    if req.previous_response_id is not None:
        history = _history_after(svc, req.previous_response_id)
    params = chat_parameters(req, history)
    meta = {
        META_KEY: {
            "echo": echo(req),
            "input": items_of(req),
            "history": history,
        }
    }
    follow = bool(req.stream) or not req.background
    submission = submit(svc, params, follow=follow, meta=meta)
    job, feed = submission.job, submission.feed
    headers = {"X-Sluice-Job-Id": job.id}
    if req.stream:
        assert feed is not None
        return stream_response(ResponsesEvents(job).frames(feed), feed, headers)
    projection = ResponsesEvents(job)
    if feed is not None:  # not background: the answer, once the job ends
        try:
            for item in feed:
                if item is not HEARTBEAT:
                    assert isinstance(item, tuple)
                    projection.apply(*item)
                    if projection.ended:
                        break
        finally:
            feed.close()
        if not projection.ended:
            return error_response(StreamInterrupted().to_dict(), job.id)
        if projection.failure is not None and projection.status == "failed":
            return error_response(projection.failure, job.id)
    response = jsonify(projection.snapshot())
    response.headers.update(headers)
    return response


def _history_after(svc: Services, previous_id: str) -> list[dict[str, Any]]:
    """The items a response chained to ``previous_id`` continues: the previous one's
    history, input and output (OpenAI's ``previous_response_not_found`` when it is not a
    stored response of the caller's)."""
    job = _stored(svc, previous_id)
    if job is None:
        raise ResponsesInvalid(
            f"Previous response with id '{previous_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    if not job.ended:
        raise InvalidRequest(
            f"Previous response with id '{previous_id}' is still in progress; "
            "wait for it to end (or cancel it) before continuing it.",
            param="previous_response_id",
        )
    meta = job.meta[META_KEY]
    output = _project(svc, job).output
    return [*meta.get("history", []), *meta.get("input", []), *output]


# -- read -----------------------------------------------------------------------------------


def _stored(svc: Services, response_id: str) -> Job | None:
    """The job of a stored response of the caller's, else None."""
    job_id = job_id_of(response_id)
    job = svc.store.get(job_id) if job_id else None
    if job is None or job.owner != request.owner() or META_KEY not in job.meta:
        return None
    return job if job.meta[META_KEY].get("echo", {}).get("store", True) else None


def _response_job(svc: Services, response_id: str) -> Job:
    job = _stored(svc, response_id)
    if job is None:
        raise ResponseNotFound(response_id)
    return job


def _project(svc: Services, job: Job) -> ResponsesEvents:
    """The projection after every event the job's log holds now."""
    projection = ResponsesEvents(job)
    projection.start()
    for event_id, entry in svc.store.read_events(job.id):
        projection.apply(event_id, entry)
    return projection


def _flag(name: str) -> bool:
    value = flask_request.args.get(name, "false")
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name} must be true or false", param=name)
    return value in ("true", "1")


@bp.get("/v1/responses/<response_id>")
def get_response(response_id: str) -> Response:
    svc = services()
    job = _response_job(svc, response_id)
    stream = _flag("stream")
    raw = flask_request.args.get("starting_after")
    if not stream:
        return jsonify(_project(svc, job).snapshot())
    after = -1
    if raw is not None:
        parsed = parse_event_id(raw)
        if parsed is None:
            raise InvalidRequest(
                "starting_after must be a sequence number (a non-negative integer)",
                param="starting_after",
            )
        after = parsed
    projection = _project(svc, job)
    last = projection.seq - 1
    if after > last:
        where = "ended" if projection.ended else "is still running"
        raise ResponsesInvalid(
            f"starting_after {after} is past the last event of this response: it {where} "
            f"at sequence number {last}",
            param="starting_after",
            code="cursor_gone",
        )
    if job.last_event_id and svc.store.log_length(job.id) < job.last_event_id:
        raise ResponsesInvalid(
            "this response's events are no longer kept; retrieve it without stream",
            param="stream",
            code="cursor_gone",
        )
    if projection.ended and after == last:
        return Response(
            [f": sluice response {response_id}: no events after {after}\n".encode()],
            mimetype="text/event-stream",
            headers=SSE_HEADERS,
        )
    svc.reserve_stream()
    feed = svc.feed(job.id, 0)
    frames = ResponsesEvents(job, starting_after=after).frames(feed)
    return stream_response(frames, feed, {"X-Sluice-Job-Id": job.id})


@bp.post("/v1/responses/<response_id>/cancel")
def cancel_response(response_id: str) -> Response:
    svc = services()
    job = _response_job(svc, response_id)
    if not job.meta[META_KEY]["echo"].get("background"):
        raise InvalidRequest("Cannot cancel a synchronous response.", param=None)
    return jsonify(_project(svc, cancel(svc, job)).snapshot())


@bp.delete("/v1/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    svc = services()
    job = _response_job(svc, response_id)
    cancel(svc, job)
    svc.store.delete(job.id)
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})


@bp.get("/v1/responses/<response_id>/input_items")
def input_items(response_id: str) -> Response:
    svc = services()
    job = _response_job(svc, response_id)
    order = flask_request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc", param="order")
    raw_limit = flask_request.args.get("limit", "20")
    limit = parse_event_id(raw_limit)
    if limit is None or not 1 <= limit <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100", param="limit")
    items = [_listed(job, i, item) for i, item in enumerate(job.meta[META_KEY].get("input", []))]
    if order == "desc":
        items.reverse()
    after = flask_request.args.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"no input item {after!r} in this response", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return jsonify(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def _listed(job: Job, index: int, item: dict[str, Any]) -> dict[str, Any]:
    """An input item as OpenAI lists it: an id (its own, or one derived from the job
    and its position), a status, and a message's content as parts."""
    prefix = ITEM_PREFIXES.get(item["type"], "item")
    out = {"id": item.get("id") or f"{prefix}_{job.id.removeprefix('job_')}_in{index}", **item}
    out.setdefault("status", "completed")
    if item["type"] == "message" and isinstance(item["content"], str):
        text = item["content"]
        out["content"] = [
            {"type": "output_text", "text": text, "annotations": []}
            if item["role"] == "assistant"
            else {"type": "input_text", "text": text}
        ]
    return out


# -- /openapi.json --------------------------------------------------------------------------

OPENAPI_MODELS: list[type[BaseModel]] = [ResponsesRequest]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {str(s): {"description": "error", **_json(ref)} for s in statuses}


RESPONSE_ID = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
RESPONSE_OBJECT = {"description": "the Response", **_json({"type": "object"})}
EVENTS = {"text/event-stream": {"schema": {"type": "string"}}}
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/responses": {
        "post": {
            "summary": "OpenAI's Responses API (background mode too), through the queue",
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                **_json({"$ref": "#/components/schemas/ResponsesRequest"}),
            },
            "responses": {
                "200": {
                    "description": "the Response, or its events with stream: true",
                    "content": {**_json({"type": "object"})["content"], **EVENTS},
                },
                **_errors(400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504),
            },
        }
    },
    "/v1/responses/{response_id}": {
        "get": {
            "summary": "A Response, or with stream=true its events after starting_after",
            "parameters": [
                RESPONSE_ID,
                {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
                {
                    "name": "starting_after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "the Response, or its events",
                    "content": {**_json({"type": "object"})["content"], **EVENTS},
                },
                **_errors(400, 404),
            },
        },
        "delete": {
            "summary": "Delete a Response (cancelled first if it still runs)",
            "parameters": [RESPONSE_ID],
            "responses": {
                "200": {"description": "deleted", **_json({"type": "object"})},
                **_errors(404),
            },
        },
    },
    "/v1/responses/{response_id}/cancel": {
        "post": {
            "summary": "Cancel a background Response (idempotent)",
            "parameters": [RESPONSE_ID],
            "responses": {"200": RESPONSE_OBJECT, **_errors(400, 404)},
        }
    },
    "/v1/responses/{response_id}/input_items": {
        "get": {
            "summary": "A Response's input items",
            "parameters": [
                RESPONSE_ID,
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                {"name": "after", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "a list of items", **_json({"type": "object"})},
                **_errors(400, 404),
            },
        }
    },
}

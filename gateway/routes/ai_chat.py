"""The Vercel AI SDK's chat routes, at the paths ``useChat`` calls by default, so a page
served from the gateway's origin needs no options: ``useChat({resume: true})``.

* ``POST /api/chat``: the transport's body (``id``: the chat, ``messages``: its
  ``UIMessage`` list, ``trigger``, ``messageId``; ``gateway/ui_messages.py`` validates and
  translates them) plus any chat parameter of ``/v1/chat/completions`` (``model``,
  ``temperature``, ``tools``…, which a page passes with ``sendMessage(…, {body})`` or the
  transport's ``body``); without ``model`` the default model. The job is the chat's
  conversation turn (one at a time: a second submit while one runs is a 409
  ``conversation_busy``; stop first) and the answer its UI message stream
  (``gateway/wire/ui_message_stream.py``), with ``X-Sluice-Job-Id``.
* ``GET /api/chat/<id>/stream``: the chat's running job from its first part (replayed
  from the log, then live), or 204 when none runs: what ``resume: true`` asks on load. A
  log that lost events (it expired, a failover lost its tail) is a stream of an ``error``
  part at once, never one that skips some silently.
* ``POST /api/chat/<id>/stop``: cancels the chat's running job (idempotent), as the
  page's stop button should besides ``stop()``, which only drops the connection.
* ``GET /api/chat/<id>``: ``{id, messages}``, the messages of the chat's latest request
  and, once that job ended, its answer (the message the stream built, same id), so a
  reloaded page renders these and resumes the stream without a duplicate.

Access keys and job ownership are those of ``/v1``: the chat belongs to its access key;
another key's chat is a 404 (204 for ``/stream``), as an unknown one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from gateway import request
from gateway.cancel import cancel
from gateway.feed import JobFeed
from gateway.request import ChatParameters, ConversationId
from gateway.services import services
from gateway.submit import submit
from gateway.ui_messages import UI_FIELDS, UIChatRequest, to_chat_messages
from gateway.vendor_parameters import split_vendor_parameters
from gateway.wire import SSE_HEADERS, stream_response
from gateway.wire.ui_message_stream import HEADERS, UIMessageStream, message_id, message_parts
from sluice.errors import NotFound
from sluice.store import Job

bp = Blueprint("ai_chat", __name__)
_CHAT_ID: TypeAdapter[str] = TypeAdapter(ConversationId)


def answer_id(job: Job) -> str:
    """The assistant message the job's stream builds: the one it continues (a request
    that ends with an assistant message, e.g. with tool results), else the job's own."""
    continued = job.meta.get("message_id")
    return continued if isinstance(continued, str) and continued else message_id(job.id)


def latest_job(chat_id: str) -> Job | None:
    """The chat's latest job, if the caller owns such a chat."""
    try:
        _CHAT_ID.validate_python(chat_id)
    except ValidationError:
        return None
    return services().store.conversation_job(request.owner(), chat_id)


def _stream(job: Job, feed: JobFeed) -> Response:
    frames = UIMessageStream(answer_id(job)).frames(feed)
    return stream_response(frames, feed, {**HEADERS, "X-Sluice-Job-Id": job.id})


@bp.post("/api/chat")
def chat() -> Response:
    svc = services()
    body = request.json_object()
    ui_body = {name: body.pop(name) for name in list(body) if name in UI_FIELDS}
    ui = UIChatRequest.model_validate(ui_body)
    body.setdefault("model", svc.settings.default_model)
    body["messages"] = to_chat_messages(ui.messages)
    vendor = split_vendor_parameters(
        body, ChatParameters.model_fields.keys(), svc.settings.vendor_parameters
    )
    params = ChatParameters.model_validate(body)
    params._vendor = vendor
    meta: dict[str, Any] = {"ui_messages": ui_body["messages"], "trigger": ui.trigger}
    last = ui.messages[-1]
    if last.role == "assistant" and last.id:
        meta["message_id"] = last.id  # the answer continues that message
    svc.reserve_stream()  # before the job: a client at its stream limit starts none
    submission = submit(svc, params, follow=True, conversation=ui.id, meta=meta)
    assert submission.feed is not None
    return _stream(submission.job, submission.feed)


@bp.get("/api/chat/<chat_id>/stream")
def resume(chat_id: str) -> Response:
    job = latest_job(chat_id)
    if job is None or job.ended:
        return Response(status=204)  # useChat: nothing to resume
    svc = services()
    if job.last_event_id and svc.store.log_length(job.id) < job.last_event_id:
        # the log expired or lost its tail: say so in the stream's own terms, at once
        body = UIMessageStream(answer_id(job)).lost()
        return Response(body, mimetype="text/event-stream", headers={**SSE_HEADERS, **HEADERS})
    svc.reserve_stream()
    return _stream(job, svc.feed(job.id, 0))


@bp.post("/api/chat/<chat_id>/stop")
def stop(chat_id: str) -> Response:
    job = latest_job(chat_id)
    if job is None:
        raise NotFound(f"no chat {chat_id!r} (it may have expired)", param="chatId")
    job = cancel(services(), job)
    return jsonify({"id": chat_id, "job_id": job.id, "status": job.status})


@bp.get("/api/chat/<chat_id>")
def get_chat(chat_id: str) -> Response:
    job = latest_job(chat_id)
    if job is None:
        raise NotFound(f"no chat {chat_id!r} (it may have expired)", param="chatId")
    messages = [dict(m) for m in job.meta.get("ui_messages") or ()]
    if job.ended:
        answer = answer_id(job)
        parts = message_parts(answer, services().store.read_events(job.id))
        if any(part["type"] != "step-start" for part in parts):
            if messages and messages[-1].get("id") == answer:  # the answer continued it
                messages[-1]["parts"] = [*messages[-1].get("parts", ()), *parts]
            else:
                messages.append({"id": answer, "role": "assistant", "parts": parts})
    return jsonify({"id": chat_id, "messages": messages})


# -- /openapi.json ------------------------------------------------------------------------


class AIChatRequest(UIChatRequest):
    """``POST /api/chat``: ``useChat``'s body. Any other field is a chat parameter of
    ``/v1/chat/completions`` (``model``, ``temperature``, ``max_tokens``, ``tools``…)."""

    model_config = ConfigDict(strict=True, extra="allow")


OPENAPI_MODELS: list[type[BaseModel]] = [AIChatRequest]
_CHAT = {"name": "chatId", "in": "path", "required": True, "schema": {"type": "string"}}
_STREAM = {
    "description": (
        "the UI message stream (x-vercel-ai-ui-message-stream: v1): data: {part} frames, "
        "then data: [DONE]; header X-Sluice-Job-Id"
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "error", **_ERROR} for status in statuses}


def _chat_json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {}}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/chat": {
        "post": {
            "summary": "AI SDK useChat: start the chat's next answer, as a UI message stream",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/AIChatRequest"}}
                },
            },
            "responses": {"200": _STREAM, **_errors(400, 401, 409, 413, 415, 429, 503)},
        }
    },
    "/api/chat/{chatId}/stream": {
        "get": {
            "summary": "AI SDK useChat resume: the chat's running answer from its first part",
            "parameters": [_CHAT],
            "responses": {
                "200": _STREAM,
                "204": {"description": "no answer is running in this chat"},
                **_errors(401),
            },
        }
    },
    "/api/chat/{chatId}/stop": {
        "post": {
            "summary": "Cancel the chat's running answer (idempotent)",
            "parameters": [_CHAT],
            "responses": {
                "200": _chat_json("{id, job_id, status}: the chat's latest job"),
                **_errors(401, 404),
            },
        }
    },
    "/api/chat/{chatId}": {
        "get": {
            "summary": "The chat's UI messages: its latest request and, once ended, the answer",
            "parameters": [_CHAT],
            "responses": {
                "200": _chat_json("{id, messages}: UIMessages for useChat's messages"),
                **_errors(401, 404),
            },
        }
    },
}

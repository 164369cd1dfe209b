"""``/v1/conversations/<id>``: a conversation's latest job, to follow, poll or cancel.

A job may be a turn of a conversation (``conversation_id`` on ``/v1/jobs``, the chat id of
the AI SDK's ``/api/chat``). A second tab, or a page reloaded mid-answer, knows the
conversation but not the job: this route joins the conversation's latest job, replayed
from its first event (or from the client's cursor) and then live, in Sluice's own event
format with ids that name the job (``gateway.wire.sluice_sse.ConversationFrames``).

One job at a time per conversation (``gateway.submit``): the latest job is the one that
is running, if any. ``GET /v1/conversations/<id>`` polls it (``{"id", "object", "job"}``
with the job's poll view) and ``POST /v1/conversations/<id>/cancel`` cancels it, for a
client that knows the conversation and not the job.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from gateway import request, snapshots
from gateway.cancel import cancel
from gateway.routes.jobs import check_cursor, snapshot
from gateway.routes.openapi import SNAPSHOT_PARAM
from gateway.services import Services, services
from gateway.wire import stream_response
from gateway.wire.sluice_sse import ConversationFrames
from sluice.errors import InvalidRequest, NotFound
from sluice.store import Job

bp = Blueprint("conversations", __name__)
CONVERSATION_ID = re.compile(r"[!-.0-~]{1,128}")  # as ``gateway.request.ConversationId``


def latest_job(svc: Services, conversation_id: str) -> Job:
    """The caller's conversation's latest job (else 404, as for one that does not exist)."""
    job = None
    if CONVERSATION_ID.fullmatch(conversation_id):
        job = svc.store.conversation_job(request.owner(), conversation_id)
    if job is None:
        raise NotFound(f"no conversation {conversation_id!r} with a job (it may have expired)")
    return job


def _view(conversation_id: str, job: Job) -> dict[str, Any]:
    return {"id": conversation_id, "object": "sluice.conversation", "job": snapshot(job)}


@bp.get("/v1/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Response:
    return jsonify(_view(conversation_id, latest_job(services(), conversation_id)))


@bp.post("/v1/conversations/<conversation_id>/cancel")
def cancel_conversation(conversation_id: str) -> Response:
    """Cancel the latest job if it is running (idempotent)."""
    svc = services()
    return jsonify(_view(conversation_id, cancel(svc, latest_job(svc, conversation_id))))


@bp.get("/v1/conversations/<conversation_id>/events")
def conversation_events(conversation_id: str) -> Response:
    svc = services()
    job = latest_job(svc, conversation_id)
    frames = ConversationFrames(job.id, svc.settings.sse_retry_ms)
    cursor, param = request.cursor()
    after = frames.after(cursor)
    if after is None:
        raise InvalidRequest(
            f"{param} must be an event id of this stream (<job id>/<n>)", param=param
        )
    snapshot_wanted = snapshots.wanted()
    check_cursor(svc, job, after, param)
    if job.ended and after >= job.last_event_id:
        return Response(status=204)  # stops EventSource from reconnecting
    lead: list[tuple[int, str]] = []
    if snapshot_wanted:  # (a cursor of an earlier job of the conversation counts as none)
        lead, after = snapshots.opening(svc.store, job, after)
    svc.reserve_stream()
    feed = svc.feed(job.id, after)
    return stream_response(frames.frames(chain(lead, feed)), feed, {"X-Sluice-Job-Id": job.id})


CONVERSATION_ID_PARAM = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_CONVERSATION = {
    "description": "the conversation and its latest job's poll view",
    "content": {"application/json": {"schema": {"type": "object"}}},
}
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/conversations/{conversation_id}": {
        "get": {
            "summary": "A conversation's latest job",
            "parameters": [CONVERSATION_ID_PARAM],
            "responses": {
                "200": _CONVERSATION,
                "404": {"description": "no such conversation", "content": _ERROR},
            },
        }
    },
    "/v1/conversations/{conversation_id}/cancel": {
        "post": {
            "summary": "Cancel a conversation's running job (idempotent)",
            "parameters": [CONVERSATION_ID_PARAM],
            "responses": {
                "200": _CONVERSATION,
                "404": {"description": "no such conversation", "content": _ERROR},
            },
        }
    },
    "/v1/conversations/{conversation_id}/events": {
        "get": {
            "summary": "Follow a conversation's latest job as Server-Sent Events",
            "description": (
                "The latest job of the conversation, from its first event (or after the "
                "Last-Event-ID `<job id>/<n>` of this stream), then live. A cursor that "
                "names another job starts this one from its first event. With snapshot=1 "
                "and no cursor of this job, the answer so far comes first as one "
                "`snapshot` event (docs/events.md)."
            ),
            "parameters": [
                CONVERSATION_ID_PARAM,
                SNAPSHOT_PARAM,
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "the event stream; header X-Sluice-Job-Id",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "204": {"description": "the client already has the job's terminal event"},
                "400": {"description": "not a cursor of this stream", "content": _ERROR},
                "404": {"description": "no such conversation", "content": _ERROR},
                "410": {
                    "description": "the cursor is past the job's log (cursor_gone)",
                    "content": _ERROR,
                },
            },
        }
    },
}
OPENAPI_MODELS: list[type[BaseModel]] = []

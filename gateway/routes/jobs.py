"""The jobs API: start, stream, poll and cancel a completion."""

from __future__ import annotations

from itertools import chain
from typing import Any

from flask import Blueprint, Response, jsonify, url_for

from gateway import request, snapshots
from gateway.cancel import cancel
from gateway.request import JobRequest
from gateway.services import Services, services
from gateway.submit import submit
from gateway.wire import stream_response
from gateway.wire.sluice_sse import SluiceFrames
from sluice.errors import CursorGone, InvalidRequest, NotFound
from sluice.store import Job

bp = Blueprint("jobs", __name__)


def job_or_404(job_id: str) -> Job:
    """The job, if it exists and belongs to the caller (else 404, as if it did not)."""
    job = services().store.get(job_id) if len(job_id) <= 64 else None
    if job is None or job.owner != request.owner():
        raise NotFound(f"no job {job_id!r} (it may have expired)")
    return job


def links(job: Job) -> dict[str, str]:
    """The job's URLs; ``events_url`` carries a signed token when access keys are on, so
    a browser's ``EventSource`` (which cannot send headers) can open it. A job that is a
    conversation's turn has its conversation's too (``conversation_events_url``)."""
    access = services().access
    token = access.events_token(job.id, job.owner)
    out = {
        "url": url_for("jobs.get_job", job_id=job.id),
        "events_url": url_for("jobs.job_events", job_id=job.id, **_token(token)),
    }
    if job.conversation:
        token = access.events_token(job.conversation, job.owner, "c")
        out["conversation_events_url"] = url_for(
            "conversations.conversation_events",
            conversation_id=job.conversation,
            **_token(token),
        )
    return out


def _token(token: str | None) -> dict[str, Any]:
    return {"token": token} if token else {}


@bp.post("/v1/jobs")
def create_job() -> Response:
    svc = services()
    params = request.chat_parameters(JobRequest, svc.settings.vendor_parameters)
    if params.stream:
        return _create_and_stream(svc, params)
    job = submit(svc, params, conversation=params.conversation_id).job
    body = {
        "id": job.id,
        "object": "sluice.job",
        "status": job.status,
        "model": job.model,
        "created_at": job.created_at,
        "prompt_tokens": job.prompt_tokens,
        "prompt_tokens_estimated": job.prompt_tokens_estimated,
        "truncated_messages": job.truncated_messages,
        "conversation_id": job.conversation,
        **links(job),
    }
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = body["url"]
    return response


def _create_and_stream(svc: Services, params: JobRequest) -> Response:
    """``"stream": true``: one request starts the job and is its event stream (as
    OpenAI's background mode with streaming). The stream subscribes before the job is
    queued, so no event has to be fetched again from the log; a client that loses it
    resumes from the ``X-Sluice-Events-Url`` header with ``Last-Event-ID``."""
    svc.reserve_stream()  # before the job: a client at its stream limit starts none
    submission = submit(svc, params, follow=True, conversation=params.conversation_id)
    job, feed = submission.job, submission.feed
    assert feed is not None
    urls = links(job)
    frames = SluiceFrames(job.id, svc.settings.sse_retry_ms).frames(feed)
    headers = {
        "Location": urls["url"],
        "X-Sluice-Job-Id": job.id,
        "X-Sluice-Events-Url": urls["events_url"],
    }
    return stream_response(frames, feed, headers)


def snapshot(job: Job) -> dict[str, Any]:
    """The poll view: the job's state and the text its events carried so far."""
    transcript = services().store.transcript(job.id)
    return {
        "id": job.id,
        "object": "sluice.job",
        "status": job.status,
        "model": job.model,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempt": job.attempt,
        "prompt_tokens": job.prompt_tokens,
        "prompt_tokens_estimated": job.prompt_tokens_estimated,
        "truncated_messages": job.truncated_messages,
        "choices": transcript.choice_list(),
        "usage": transcript.usage,
        "usage_estimated": transcript.usage_estimated,
        "error": transcript.error,
        "last_event_id": transcript.last_event_id,
        "conversation_id": job.conversation,
        **links(job),
    }


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(snapshot(job_or_404(job_id)))


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    """The job's events after the client's cursor; with ``?snapshot=1`` and no cursor,
    one ``snapshot`` event of the answer so far first (``gateway.snapshots``)."""
    job = job_or_404(job_id)
    cursor, param = request.cursor()
    after = SluiceFrames.event_id(cursor)
    if after is None:
        raise InvalidRequest(f"{param} must be a non-negative integer event id", param=param)
    snapshot_wanted = snapshots.wanted()
    svc = services()
    check_cursor(svc, job, after, param)
    if job.ended and after >= job.last_event_id:
        return Response(status=204)  # stops EventSource from reconnecting
    lead: list[tuple[int, str]] = []
    if snapshot_wanted:
        lead, after = snapshots.opening(svc.store, job, after)
    svc.reserve_stream()
    feed = svc.feed(job.id, after)
    frames = SluiceFrames(job.id, svc.settings.sse_retry_ms).frames(chain(lead, feed))
    return stream_response(frames, feed)


def check_cursor(svc: Services, job: Job, after: int, param: str) -> None:
    """Refuse at once (410 ``cursor_gone``) a cursor the log cannot serve, which would
    otherwise wait for events that never come or skip some silently: an id past the
    job's last event (no client can have seen it), or a log that holds fewer events than
    the job wrote (it expired, or Redis lost its tail)."""
    if after > job.last_event_id:
        where = "ended" if job.ended else "is"
        raise CursorGone(
            f"event {after} does not exist; the job {where} at event {job.last_event_id}",
            param=param,
        )
    if job.last_event_id and svc.store.log_length(job.id) < job.last_event_id:
        raise CursorGone(
            f"the job's log no longer holds its {job.last_event_id} events (it expired or "
            "was lost); poll the job instead",
            param=param,
        )


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Idempotent; a job that expires meanwhile is a 404 (the store raises ``JobGone``)."""
    return jsonify(snapshot(cancel(services(), job_or_404(job_id))))

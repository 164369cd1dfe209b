"""The jobs API: start, stream, poll and cancel a completion."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.wsgi import ClosingIterator

from gateway.access import current_owner
from gateway.body import json_object
from gateway.metrics_api import counted
from gateway.relay import SSE_HEADERS, sse_body
from gateway.schemas import JobRequest
from gateway.services import Services, services
from gateway.submit import submit_and_follow, submit_from_request
from sluice.errors import InvalidRequest, NotFound
from sluice.events import parse_event_id
from sluice.logs import job_event
from sluice.metrics import JOBS
from sluice.store import Job
from sluice.tokens import estimate_usage

bp = Blueprint("jobs", __name__)
log = logging.getLogger("sluice.gateway")


def _job_or_404(job_id: str, owner: str | None = None) -> Job:
    """The job, if it exists and belongs to the caller (else 404, as if it did not)."""
    job = services().store.get(job_id) if len(job_id) <= 64 else None
    owner = current_owner() if owner is None else owner
    if job is None or job.owner != owner:
        raise NotFound(f"no job {job_id!r} (it may have expired)")
    return job


def _links(job: Job) -> dict[str, str]:
    token = services().access.events_token(job.id, job.owner)
    params = {"token": token} if token else {}
    return {
        "url": url_for("jobs.get_job", job_id=job.id),
        "events_url": url_for("jobs.job_events", job_id=job.id, **params),
    }


@bp.post("/v1/jobs")
def create_job():  # type: ignore[no-untyped-def]
    svc = services()
    params = JobRequest.model_validate(json_object())
    if params.stream:
        return _create_and_stream(svc, params)
    job, _created = submit_from_request(svc, params)
    body = {
        "id": job.id,
        "object": "sluice.job",
        "status": job.status,
        "model": job.model,
        "created_at": job.created_at,
        "prompt_tokens": job.prompt_tokens,
        "truncated_messages": job.truncated_messages,
        **_links(job),
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
    job, feed = submit_and_follow(svc, params)
    links = _links(job)
    # the server closes the body even if it never started it: the subscription goes too
    body = ClosingIterator(counted(sse_body(feed, svc.settings.sse_retry_ms)), feed.close)
    return Response(
        body,
        mimetype="text/event-stream",
        headers={
            **SSE_HEADERS,
            "Location": links["url"],
            "X-Sluice-Job-Id": job.id,
            "X-Sluice-Events-Url": links["events_url"],
        },
        direct_passthrough=True,
    )


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
        "truncated_messages": job.truncated_messages,
        "choices": transcript.choice_list(),
        "usage": transcript.usage,
        "usage_estimated": transcript.usage_estimated,
        "error": transcript.error,
        "last_event_id": transcript.last_event_id,
        **_links(job),
    }


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(snapshot(_job_or_404(job_id)))


def _last_event_id() -> tuple[int, str]:
    """The client's cursor and where it came from (the header wins over ``?after=``)."""
    raw = request.headers.get("Last-Event-ID")
    param = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, param = request.args.get("after", "0"), "after"
    event_id = parse_event_id(raw)
    if event_id is None:
        raise InvalidRequest(f"{param} must be a non-negative integer event id", param=param)
    return event_id, param


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str):  # type: ignore[no-untyped-def]
    owner = None
    token = request.args.get("token")
    if token and not current_owner() and services().access.enabled:
        # EventSource cannot send headers: the signed URL stands for the owner
        owner = services().access.events_token_owner(job_id, token) or "\0invalid"
    job = _job_or_404(job_id, owner)
    after, param = _last_event_id()
    if after > job.last_event_id:
        # an id no client can have seen: it would wait for events that never come
        where = "ended" if job.ended else "is"
        raise InvalidRequest(
            f"event {after} does not exist; the job {where} at event {job.last_event_id}",
            param=param,
        )
    if job.ended and after >= job.last_event_id:
        return Response(status=204)  # stops EventSource from reconnecting
    settings = services().settings
    feed = services().feed(job.id, after)
    return Response(
        counted(sse_body(feed, settings.sse_retry_ms)),
        mimetype="text/event-stream",
        headers=SSE_HEADERS,
        direct_passthrough=True,
    )


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    store = services().store
    job = _job_or_404(job_id)
    if not job.ended:
        transcript = store.transcript(job.id)
        window = services().settings.default_context_window
        usage = estimate_usage(job.prompt_tokens, transcript.texts(), job.model, window)
        job = store.cancel(job.id, usage)
        job_event(log, "job.cancelled", job.id, completion_tokens=usage["completion_tokens"])
        JOBS.labels("cancelled").inc()
    return jsonify(snapshot(job))

"""Turning validated chat parameters into a queued job: count, trim, store, enqueue."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import request

from gateway.access import current_owner
from gateway.feed import JobFeed
from gateway.schemas import ChatParameters
from gateway.services import Services, user_upstream_key
from gateway.upstream_params import upstream_parameters
from sluice.errors import InvalidRequest, Overloaded, ServiceUnavailable
from sluice.logs import job_event
from sluice.models import lookup
from sluice.store import Job
from sluice.task_queue import enqueue_job
from sluice.tokens import fit_to_context

log = logging.getLogger("sluice.gateway")


def submit_job(
    svc: Services,
    params: ChatParameters,
    *,
    owner: str = "",
    idempotency_key: str | None = None,
    upstream_key: str | None = None,
    before_enqueue: Callable[[Job], None] | None = None,
) -> tuple[Job, bool]:
    """Store and enqueue a job; returns ``(job, created)`` (False: idempotent replay).

    ``upstream_key`` is a user's own key for this job only; it is stored encrypted.
    ``before_enqueue`` runs once the job is stored and before a worker can see it.
    """
    waiting = svc.redis.llen(svc.settings.queue)
    if waiting >= svc.settings.max_queued:
        log.warning(
            "refusing a job: %d jobs are waiting (limit %d)", waiting, svc.settings.max_queued
        )
        raise Overloaded(f"{waiting} jobs are waiting to run; try again shortly", retry_after=5)
    sealed = None
    if upstream_key is not None:
        if svc.vault is None:
            raise InvalidRequest(
                "this server does not accept per-request upstream keys (SLUICE_SECRET_KEY is "
                "not set)",
                param="X-Upstream-Api-Key",
            )
        sealed = svc.vault.seal(upstream_key)
    info = lookup(params.model, svc.settings.default_context_window)
    messages = [m.model_dump(exclude_none=True) for m in params.messages]
    fitted = fit_to_context(messages, info, params.reply_limit, svc.settings.reply_reserve_tokens)
    request = {
        "model": params.model,
        "messages": fitted.messages,
        **upstream_parameters(info, params.optional_parameters()),
    }
    job, created = svc.store.create(
        model=params.model,
        request=request,
        prompt_tokens=fitted.prompt_tokens,
        truncated_messages=fitted.dropped,
        owner=owner,
        idempotency_key=idempotency_key,
        sealed_upstream_key=sealed,
    )
    if not created:
        return job, False
    try:
        if before_enqueue is not None:
            before_enqueue(job)
        enqueue_job(svc.celery, job.id, svc.settings.queue)
    except Exception as exc:
        # Redis (or the broker) went away between storing the job and sending its
        # message: take the job back, so that the client's retry (told to by the 503,
        # with the same Idempotency-Key or not) starts one that runs. If even that fails,
        # the job stays queued and a reaper sends its message once Redis is back.
        withdrawn = _withdraw(svc, job, idempotency_key, owner)
        log.error(
            "job %s: could not enqueue (%s: %s); %s",
            job.id, type(exc).__name__, exc,
            "withdrawn" if withdrawn else "left queued for the reaper to send",
        )  # fmt: skip
        raise ServiceUnavailable("the job queue is unavailable; retry") from exc
    job_event(
        log,
        "job.accepted",
        job.id,
        model=params.model,
        prompt_tokens=fitted.prompt_tokens,
        truncated_messages=fitted.dropped,
        own_key=upstream_key is not None,
    )
    return job, True


def _withdraw(svc: Services, job: Job, idempotency_key: str | None, owner: str) -> bool:
    try:
        return svc.store.withdraw(job.id, idempotency_key, owner)
    except Exception as exc:
        log.warning("job %s: cannot withdraw it either: %s", job.id, exc)
        return False


def submit_from_request(
    svc: Services,
    params: ChatParameters,
    before_enqueue: Callable[[Job], None] | None = None,
) -> tuple[Job, bool]:
    """``submit_job`` with what the current request says: its owner (access key), its
    ``Idempotency-Key`` and its own upstream key. Both job-starting routes use this."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", param="Idempotency-Key")
    owner, upstream_key = current_owner(), user_upstream_key()
    with svc.submissions.slot():
        return submit_job(
            svc,
            params,
            owner=owner,
            idempotency_key=key,
            upstream_key=upstream_key,
            before_enqueue=before_enqueue,
        )


def submit_and_follow(svc: Services, params: ChatParameters) -> tuple[Job, JobFeed]:
    """Submit a job whose events this request will stream.

    The feed subscribes after the job is stored and before it is queued, so even a worker
    that starts it at once cannot publish an event this stream then has to fetch again
    from the log: the first delta goes out live, one relay hop after the upstream sent it.
    """
    opened: list[JobFeed] = []

    def subscribe(job: Job) -> None:
        opened.append(svc.feed(job.id, 0).open())

    try:
        job, _created = submit_from_request(svc, params, before_enqueue=subscribe)
    except BaseException:
        for feed in opened:
            feed.close()
        raise
    # an idempotent replay of an existing job subscribes when the stream starts
    return job, opened[0] if opened else svc.feed(job.id, 0)

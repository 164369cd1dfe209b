"""Turning validated chat parameters into a queued job: count, trim, store, enqueue."""

from __future__ import annotations

import logging

from gateway.schemas import ChatParameters
from gateway.services import Services
from sluice.errors import ServiceUnavailable
from sluice.events import ERROR, Event
from sluice.jobs import Job
from sluice.models import lookup
from sluice.queue import RUN_JOB_TASK
from sluice.tokens import fit_to_context

log = logging.getLogger("sluice.gateway")


def submit_job(
    svc: Services, params: ChatParameters, *, owner: str = "", idempotency_key: str | None = None
) -> tuple[Job, bool]:
    """Store and enqueue a job; returns ``(job, created)`` (False: idempotent replay)."""
    info = lookup(params.model, svc.settings.default_context_window)
    messages = [m.model_dump(exclude_none=True) for m in params.messages]
    fitted = fit_to_context(messages, info, params.max_tokens, svc.settings.reply_reserve_tokens)
    request = {"model": params.model, "messages": fitted.messages, **params.upstream_parameters()}
    if request.get("max_tokens") == 0:
        del request["max_tokens"]  # 0 means no limit
    job, created = svc.store.create(
        model=params.model,
        request=request,
        prompt_tokens=fitted.prompt_tokens,
        truncated_messages=fitted.dropped,
        owner=owner,
        idempotency_key=idempotency_key,
    )
    if not created:
        return job, False
    try:
        svc.celery.send_task(
            RUN_JOB_TASK,
            args=[job.id],
            queue=svc.settings.queue,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
        )
    except Exception as exc:
        log.error("job %s: could not enqueue: %s", job.id, exc)
        error = {"type": "service_unavailable", "message": "the job could not be queued"}
        svc.store.append(job.id, [Event(ERROR, {"error": error})])
        raise ServiceUnavailable("the job queue is unavailable; retry") from exc
    log.info(
        "job %s accepted: model=%s prompt_tokens=%d truncated_messages=%d",
        job.id,
        params.model,
        fitted.prompt_tokens,
        fitted.dropped,
    )
    return job, True

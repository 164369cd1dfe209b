"""Cancelling a job, as every route that offers it does (``/v1/jobs/<id>/cancel``, the
Responses API's cancel, the AI SDK's stop route): end it with ``cancelled`` and the usage
its text so far is estimated at. Idempotent: an ended job is returned as it is."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sluice.logs import job_event
from sluice.metrics import JOBS
from sluice.store import Job
from sluice.tokens import estimate_usage

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("sluice.gateway")


def cancel(svc: Services, job: Job) -> Job:
    """The job, cancelled (or as it ended); a job that expires meanwhile raises
    ``JobGone`` (a 404)."""
    if job.ended:
        return job
    texts = svc.store.transcript(job.id).completion_texts()
    window = svc.settings.default_context_window
    usage = estimate_usage(job.prompt_tokens, texts, job.model, window)
    job = svc.store.cancel(job.id, usage)
    job_event(log, "job.cancelled", job.id, completion_tokens=usage["completion_tokens"])
    JOBS.labels("cancelled").inc()
    return job

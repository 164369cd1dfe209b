"""Starting a job: the steps from validated parameters to a queued job, in order.

``submit`` is the whole story: wait for a submission slot; refuse when the queue is full
or when the job's conversation has a job still running; seal the caller's own upstream
key; count the prompt and trim old messages to fit the context window; build the request
the upstream will get; store the job (or find the one its ``Idempotency-Key`` started);
make it its conversation's latest job; subscribe to its events when this request will
stream them; enqueue it; log it. Subscribing after the job is stored and before it is queued
means even a worker that starts it at once cannot publish an event this stream then has
to fetch again from the log: the first delta goes out live, one hop after the upstream
sent it.

Submission slots (``SubmissionGate``): how many job submissions one gateway process works
on at once.

A gateway process is one event loop: it relays every stream it holds and starts every job
it is sent. Submitting a job costs CPU (validation, token counting, Celery's message) and
a few Redis round trips; when a hundred arrive in the same instant and all run together,
each loop turn works through all of them before it gets back to the streams, every
submission finishes late, and the deltas of the running streams wait. With a few slots,
submissions finish one after another in arrival order (the first in about a millisecond
instead of after the whole burst), the worker gets them spread out, and the streams'
deltas go out between them. The others wait their turn without using any CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import request
from gateway.feed import JobFeed
from gateway.request import ChatParameters
from sluice.broker import Broker, BrokerUnavailable
from sluice.errors import ConversationBusy, InvalidRequest, Overloaded, ServiceUnavailable
from sluice.logs import job_event
from sluice.models import lookup, upstream_messages, upstream_parameters
from sluice.store import Job, new_job_id
from sluice.task_queue import enqueue_job
from sluice.tokens import FittedPrompt, fit_to_context

if TYPE_CHECKING:  # (the services hold a SubmissionGate)
    from gateway.services import Services

log = logging.getLogger("sluice.gateway")


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an idempotent replay of the job the key started
    feed: JobFeed | None  # subscribed before the job was queued, when following


def submit(
    svc: Services,
    params: ChatParameters,
    *,
    follow: bool = False,
    conversation: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Submission:
    """Start a job from ``params`` and what the request says (its owner, its
    ``Idempotency-Key``, its own upstream key); with ``follow``, its feed too.

    ``conversation``: the job becomes the conversation's latest, unless its latest is
    still running (``ConversationBusy``, a 409). ``meta``: what the route keeps with the
    job to render it later (``Job.meta``)."""
    owner, idempotency_key = request.owner(), request.idempotency_key()
    user_key = request.upstream_key()
    with svc.submissions.slot():
        _refuse_when_full(svc)
        previous = _conversation_free(svc, owner, conversation)
        sealed = _seal(svc, user_key)
        fitted, upstream_request = _upstream_request(svc, params)
        job_id = new_job_id()
        # the stream subscribes while the job is stored (both before it is queued): one
        # round trip less between the request and its answer's first byte
        opening = _Opening(svc.feed(job_id, 0).subscribed_before_the_job()) if follow else None
        try:
            job, created = svc.store.create(
                model=params.model,
                request=upstream_request,
                prompt_tokens=fitted.prompt_tokens,
                prompt_tokens_estimated=fitted.estimated,
                truncated_messages=fitted.dropped,
                owner=owner,
                idempotency_key=idempotency_key,
                sealed_upstream_key=sealed,
                meta=meta,
                conversation=conversation,
                job_id=job_id,
            )
        except BaseException:
            if opening is not None:
                opening.abandon()
            raise
        if not created:  # a replay: its stream subscribes when it starts
            if opening is not None:
                opening.abandon()
            return Submission(job, False, svc.feed(job.id, 0) if follow else None)
        if conversation is not None and not svc.store.point_conversation(
            owner, conversation, job.id, previous
        ):  # another submit to this conversation got there first
            if opening is not None:
                opening.abandon()
            svc.store.withdraw(job.id, idempotency_key, owner)
            raise ConversationBusy(conversation, svc.store.conversation_job_id(owner, conversation))
        feed = opening.feed if opening is not None else None
        try:
            if opening is not None:
                opening.wait()
            enqueue_job(svc.celery, job.id, svc.settings.queue)
        except BaseException as exc:  # (a greenlet killed here must not keep its channel)
            if feed is not None:
                feed.close()
            if not isinstance(exc, Exception):
                raise
            _take_back(svc, job, idempotency_key, owner, exc)
            raise ServiceUnavailable("the job queue is unavailable; retry") from exc
    job_event(log, "job.accepted", job.id, model=params.model,
              prompt_tokens=fitted.prompt_tokens, truncated_messages=fitted.dropped,
              own_key=user_key is not None)  # fmt: skip
    return Submission(job, True, feed)


class _Opening:
    """A feed subscribing on a thread of its own (a greenlet under gevent) while the
    submission goes on; ``wait`` returns once it is subscribed, or raises why not."""

    def __init__(self, feed: JobFeed) -> None:
        self.feed = feed
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="sluice-subscribe", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            self.feed.open()
        except BaseException as exc:  # (handed to the submission, which raises it)
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """The job will not be followed after all: drop the subscription once made."""
        self._thread.join()
        self.feed.close()


def _refuse_when_full(svc: Services) -> None:
    """``Overloaded`` when ``SLUICE_MAX_QUEUED`` jobs wait in the broker (``QueueGauge``:
    read at most once a second below half the limit; RabbitMQ's depth is at most a
    second old, ``sluice.broker``); ``ServiceUnavailable`` when it is down."""
    try:
        waiting = svc.queue_gauge.waiting(svc.settings.queue, svc.settings.max_queued)
    except BrokerUnavailable as exc:
        log.warning("refusing a job: the broker is unavailable (%s)", exc)
        raise ServiceUnavailable("the job queue is unavailable; retry") from exc
    if waiting >= svc.settings.max_queued:
        log.warning(
            "refusing a job: %d jobs are waiting (limit %d)", waiting, svc.settings.max_queued
        )
        raise Overloaded(f"{waiting} jobs are waiting to run; try again shortly", retry_after=5)


def _conversation_free(svc: Services, owner: str, conversation: str | None) -> str:
    """The id of the conversation's latest job ('' for none), which must have ended."""
    if conversation is None:
        return ""
    latest_id = svc.store.conversation_job_id(owner, conversation)
    latest = svc.store.get(latest_id) if latest_id else None
    if latest is not None and not latest.ended:
        raise ConversationBusy(conversation, latest.id)
    return latest_id


def _seal(svc: Services, user_key: str | None) -> str | None:
    """The caller's own upstream key, encrypted for the job's hash (never the message)."""
    if user_key is None:
        return None
    if svc.vault is None:
        raise InvalidRequest(
            "this server does not accept per-request upstream keys (SLUICE_SECRET_KEY is not set)",
            param="X-Upstream-Api-Key",
        )
    return svc.vault.seal(user_key)


def _upstream_request(svc: Services, params: ChatParameters) -> tuple[FittedPrompt, dict[str, Any]]:
    """The prompt trimmed to the model's context window, and the request the upstream
    gets: the parameters its family accepts (``sluice.models.upstream_parameters``)."""
    info = lookup(params.model, svc.settings.default_context_window)
    messages = [m.model_dump(exclude_unset=True) for m in params.messages]  # as sent
    tools = [t.model_dump(exclude_none=True) for t in params.tools or ()]
    fitted = fit_to_context(
        messages, info, params.reply_limit, svc.settings.reply_reserve_tokens, tools=tools
    )
    body = {
        "model": params.model,
        "messages": upstream_messages(info, fitted.messages),
        **upstream_parameters(info, params.optional_parameters()),
        **params.vendor_parameters,
    }
    return fitted, body


def _take_back(
    svc: Services, job: Job, idempotency_key: str | None, owner: str, exc: Exception
) -> None:
    """Redis (or the broker) went away between storing the job and sending its message:
    take the job back, so that the client's retry (told to by the 503, with the same
    Idempotency-Key or not) starts one that runs. If even that fails, the job stays
    queued and a reaper sends its message once Redis is back."""
    try:
        withdrawn = svc.store.withdraw(job.id, idempotency_key, owner)
    except Exception as withdraw_exc:
        log.warning("job %s: cannot withdraw it either: %s", job.id, withdraw_exc)
        withdrawn = False
    log.error(
        "job %s: could not enqueue (%s: %s); %s",
        job.id, type(exc).__name__, exc,
        "withdrawn" if withdrawn else "left queued for the reaper to send",
    )  # fmt: skip


# -- the queue's depth ----------------------------------------------------------------------

DEPTH_FRESH = 1.0  # seconds a queue depth read stands in for the submissions after it


class QueueGauge:
    """How many jobs wait in the queue, as admission needs it: read afresh from half the
    limit on, and at most once per ``fresh_for`` seconds below it.

    Reading the depth is a broker round trip before every job is stored: on the way of
    every stream's first byte, and in a burst (a thousand jobs in the same second) one
    more wait for the process's event loop to come round per submission. A depth read
    less than a second ago, plus the submissions this process let through since (counted
    as queued whether or not they get there), answers as well while it stays below half
    the limit; from there on every submission reads the broker again, so one gateway
    process never lets more than ``SLUICE_MAX_QUEUED`` wait, and the other processes'
    submissions of that second would have to fill the other half to get past it.
    """

    def __init__(self, broker: Broker, fresh_for: float = DEPTH_FRESH) -> None:
        self.broker = broker
        self.fresh_for = fresh_for
        self._reads: dict[str, tuple[float, int, int]] = {}  # queue: (when, depth, since)

    def waiting(self, queue: str, limit: int) -> int:
        """The jobs waiting in ``queue`` (raises ``BrokerUnavailable``)."""
        now = time.monotonic()
        read = self._reads.get(queue)
        if read is not None:
            at, depth, since = read
            if now - at < self.fresh_for and 2 * (depth + since + 1) < limit:
                self._reads[queue] = (at, depth, since + 1)
                return depth + since
        depth = self.broker.queue_depth(queue)
        self._reads[queue] = (time.monotonic(), depth, 1)
        return depth


# -- submission slots ----------------------------------------------------------------------

SLOT_WAIT = 60.0  # seconds a submission waits for a slot before it is refused (503)


class SubmissionGate:
    """At most ``limit`` submissions in progress; ``limit`` < 1 means no limit.

    ``threading`` is gevent's under gunicorn's gevent workers (monkey-patched), so waiting
    parks the greenlet; waiters get slots in arrival order.
    """

    def __init__(self, limit: int, wait: float = SLOT_WAIT) -> None:
        self.limit = limit
        self.wait = wait
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self._slots is None:
            yield
            return
        if not self._slots.acquire(timeout=self.wait):
            raise Overloaded(
                f"this gateway process is still starting other jobs after {self.wait:g}s; "
                "try again shortly",
                retry_after=1,
            )
        try:
            yield
        finally:
            self._slots.release()

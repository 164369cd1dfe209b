"""Running one job: claim it, stream the upstream with retries, end it with ``done`` or
``error``, once.

The Celery task (``worker.celery_app.run_job``) is a thin shell around ``JobRunner.run``,
so this logic is testable without Celery, and so the task never raises: every failure
becomes a terminal event, or a log line when the job is no longer this attempt's.

Read top to bottom, the attempt's story (anchors part b, 5, 17, 21):

1. **Claim** (``JobRunner.run``): one Lua call makes the queued job this attempt's and
   appends ``started``. A job that is not queued (a duplicate delivery, or it ended) is
   skipped; if Redis cannot be reached the message goes back to the queue untouched.
2. **Stream with retries** (``JobRun._stream_with_retries``): before the first delta
   reaches the log, a refusal worth retrying (429, 5xx, a connection error) is retried
   with backoff, honouring ``Retry-After``; once text was sent there is no silent retry
   (it would duplicate or change the text): the job fails.
3. **Append each read's deltas** (``JobRun._append_deltas``) in one write to the
   attempt's writer, without waiting for Redis; ``worker.event_log`` keeps the writes in
   order and exact, and rides out a Redis outage shorter than
   ``SLUICE_REDIS_OUTAGE_TOLERANCE``.
4. **One outcome** (``JobRun.run``): ``done`` with the usage (counted here when the
   upstream sent none) or ``error``, each written once everything before it is in the
   log; or *stopped*, writing nothing more, when the job is no longer this attempt's
   (cancelled, taken over, handed back): the store refuses its writes, or the watcher
   cut its upstream read.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import redis
import requests
from celery.exceptions import Reject

from sluice.errors import (
    AttemptSuperseded,
    JobAlreadyEnded,
    JobGone,
    SluiceError,
    UpstreamError,
    UpstreamProtocolError,
)
from sluice.events import DONE, ERROR, Event
from sluice.logs import job_event
from sluice.metrics import JOB_DURATION, JOBS, TIME_TO_FIRST_DELTA, TOKENS, UPSTREAM_ERRORS
from sluice.settings import Settings
from sluice.sse_decoder import ServerSentEvent, SSEDecoder, SSEProtocolError
from sluice.store import Job, JobStore
from sluice.tokens import estimate_usage
from worker.event_log import EventLog
from worker.gevent_tuning import yield_to_running_streams
from worker.upstream import ChunkReader, Upstream, body_chunks, map_read_error, recycle
from worker.watcher import JobWatcher, JobWatchers

log = logging.getLogger("sluice.worker")
# the store's refusals of an attempt's writes: the job is no longer this attempt's
_STOPPED = (JobAlreadyEnded, JobGone, AttemptSuperseded)


class JobRunner:
    """The jobs of one worker process: what their attempts share (the event log, the
    watchers, the upstream's connection pool), and which of them are running."""

    def __init__(
        self, store: JobStore, upstream: Upstream, settings: Settings, poll_interval: float = 1.0
    ) -> None:
        self.store = store
        self.event_log = EventLog(store, outage_tolerance=settings.redis_outage_tolerance)
        self.watchers = JobWatchers(store, poll_interval)
        self.upstream = upstream
        self.settings = settings
        self.active: set[JobRun] = set()  # the attempts this process is running
        self.shutting_down = False

    def run(self, job_id: str) -> None:
        """Claim the job, then run the attempt to its one outcome."""
        if self.shutting_down:
            # a message delivered during a warm shutdown goes back to the queue untouched
            raise Reject("this worker is shutting down", requeue=True)
        yield_to_running_streams()
        try:
            job = self.store.claim(job_id)
        except redis.RedisError as exc:
            # not claimed, so nothing is lost: the message goes back to the queue
            log.warning("job %s: cannot claim (%s); requeueing", job_id, exc)
            raise Reject(f"Redis unavailable: {exc}", requeue=True) from None
        if job is None:
            log.info("job %s: not queued (already running, ended or expired); skipping", job_id)
            return
        run = JobRun(self, job)
        self.active.add(run)
        try:
            run.run()
        finally:
            self.active.discard(run)

    def hand_back_all(self) -> int:
        """Shutting down: give every running job back so another worker restarts it now,
        instead of being killed at the end of the platform's grace period."""
        self.shutting_down = True
        handed = 0
        for run in list(self.active):
            try:
                if self.store.release(run.job.id, run.attempt):
                    handed += 1
                    job_event(log, "job.handed_back", run.job.id, attempt=run.attempt)
            except redis.RedisError as exc:
                log.warning("job %s: cannot hand back (%s); its lease will lapse", run.job.id, exc)
            if run.watcher is not None:
                run.watcher.lost()  # stop streaming at once
        return handed


class JobRun:
    """One attempt at one job."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.job = job
        self.attempt = job.attempt  # as claimed
        self.writer = runner.event_log.writer(job.id, job.attempt, job.last_event_id)
        self.started = time.monotonic()
        self.first_delta_at: float | None = None
        self.reader = ChunkReader(int(job.request.get("n") or 1))
        self.watcher: JobWatcher | None = None
        self.ended = False  # this attempt wrote the job's terminal event
        # the upstream's id of the request now streaming (OpenAI, vLLM and most servers
        # send x-request-id): logged so a job's attempt can be found in the provider's logs
        self.upstream_request_id: str | None = None

    def run(self) -> None:
        """The attempt, to one outcome: ``done``, ``error``, or stopped (the job is no
        longer this attempt's: cancelled, taken over or handed back), logged once."""
        job = self.job
        try:
            # the claim appended the `started` event
            job_event(log, "job.started", job.id, attempt=self.attempt, model=job.model)
            with self.runner.watchers.watch(job.id, self.attempt) as w:
                self.watcher = w
                self._stream_with_retries(w)
        except _STOPPED as exc:
            self._stopped(exc)
        except SluiceError as exc:
            self._fail(exc)
        except redis.RedisError as exc:
            # Redis stayed away longer than the outage tolerance: nothing can be written,
            # so the attempt gives up and the lease, once it lapses, restarts the job
            self._stopped(exc, logging.WARNING)
        except Exception as exc:
            if self.ended:  # its terminal event is in: nothing left to report
                log.debug("job %s: %r after the attempt ended", job.id, exc)
                return
            log.exception("job %s: unexpected failure", job.id)
            self._fail(SluiceError(f"internal error: {type(exc).__name__}"))

    def _stream_with_retries(self, watcher: JobWatcher) -> None:
        retries = self.settings.upstream_retries
        for retry in range(retries + 1):
            try:
                self._stream_once(watcher)
                return
            except UpstreamError as exc:
                delay = backoff(retry, exc.retry_after)
                if (
                    self.reader.deltas  # text was sent: no silent retry
                    or not exc.retryable
                    or retry == retries
                    or delay > self.settings.upstream_max_retry_delay
                ):
                    raise
                job_event(
                    log,
                    "job.retry",
                    self.job.id,
                    upstream_status=exc.upstream_status,
                    error=exc.type,
                    retry=retry + 1,
                    of=retries,
                    delay_s=round(delay, 2),
                )
                if not watcher.sleep(delay):
                    raise JobAlreadyEnded("stopped while waiting to retry") from None

    def _stream_once(self, watcher: JobWatcher) -> None:
        """One upstream request, read to its end, then ``done``."""
        upstream = self.runner.upstream
        yield_to_running_streams()
        api_key = upstream.api_key_for(self.job.sealed_upstream_key)
        self.reader.keys = (api_key,)  # an in-stream error quoting it gets it redacted
        response = upstream.open_stream(self.job.request, api_key)
        self.upstream_request_id = response.headers.get("x-request-id")
        watcher.attach(response)
        chunks = body_chunks(response)
        saw_done = False
        try:
            saw_done = self._read(chunks, watcher)
        finally:
            if not saw_done:
                response.close()
        try:
            if watcher.stopped:
                raise JobAlreadyEnded("stopped while reading")
            if not saw_done and not self.reader.finished:
                raise UpstreamProtocolError(
                    "the upstream closed the stream before the completion finished"
                )
            self._succeed()  # `done` goes out first; then the connection is tidied up
        finally:
            if saw_done:
                watcher.detach()
                recycle(response, chunks)

    def _read(self, chunks: Iterator[bytes], watcher: JobWatcher) -> bool:
        """Append the deltas of every read, up to ``[DONE]`` (True) or the end of the body
        (False); a failed read raises the error it stands for."""
        decoder = SSEDecoder()
        try:
            for chunk in chunks:
                if self._append_deltas(decoder.feed(chunk)):
                    return True
            return self._append_deltas(decoder.close())
        except Exception as exc:
            if watcher.stopped:
                # the watcher cut the response under the read (cancel, take-over, hand-back);
                # what that raises depends on where the read was (urllib3 may even raise
                # AttributeError on the closed body): the job is simply no longer ours
                raise JobAlreadyEnded("stopped while reading") from None
            if isinstance(exc, requests.RequestException):
                raise map_read_error(exc) from None
            if isinstance(exc, SSEProtocolError):
                raise UpstreamProtocolError(f"malformed stream from the upstream: {exc}") from None
            raise

    def _append_deltas(self, sse_events: list[ServerSentEvent]) -> bool:
        """Write the deltas of these upstream events in one write, without waiting for
        Redis; True at ``[DONE]``."""
        deltas, done = self.reader.read(sse_events)
        if deltas:
            self.writer.write(deltas)
            if self.first_delta_at is None:
                self._first_delta()
        return done

    def _first_delta(self) -> None:
        self.first_delta_at = time.monotonic()
        TIME_TO_FIRST_DELTA.observe(self.first_delta_at - self.started)
        job_event(
            log,
            "job.first_delta",
            self.job.id,
            attempt=self.attempt,
            ttfd_ms=round((self.first_delta_at - self.started) * 1000),
            upstream_request_id=self.upstream_request_id,
        )

    def _succeed(self) -> None:
        """End the job with ``done``, once every delta before it is in the log."""
        job, reader = self.job, self.reader
        usage, estimated = reader.usage, reader.usage is None
        if usage is None:
            usage = estimate_usage(
                job.prompt_tokens,
                reader.completion_texts(),
                job.model,
                self.settings.default_context_window,
            )
        data: dict[str, Any] = {
            "finish_reasons": reader.finish_reason_list(),
            "usage": usage,
            "usage_estimated": estimated,
        }
        self.writer.write_and_wait([Event(DONE, data)])
        self.ended = True
        JOBS.labels("succeeded").inc()
        JOB_DURATION.observe(time.monotonic() - self.started)
        TOKENS.labels("prompt").inc(usage["prompt_tokens"])
        TOKENS.labels("completion").inc(usage["completion_tokens"])
        job_event(
            log,
            "job.succeeded",
            job.id,
            attempt=self.attempt,
            finish=",".join(str(r) for r in data["finish_reasons"]),
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            usage_estimated=estimated,
            duration_s=round(time.monotonic() - self.started, 3),
            upstream_request_id=self.upstream_request_id,
        )

    def _fail(self, exc: SluiceError) -> None:
        """End the job with ``error``, and log it only if the event landed: a job that was
        cancelled, taken over or handed back meanwhile was stopped, not failed."""
        error = exc.to_dict()
        if isinstance(exc, UpstreamError) and exc.upstream_type:
            error.setdefault("upstream_type", exc.upstream_type)
        try:
            self.writer.write_and_wait([Event(ERROR, {"error": error})])
        except _STOPPED as refused:
            self._stopped(refused)
            return
        except redis.RedisError as redis_exc:
            # the lease runs out and the reaper restarts the job once Redis is back
            log.error(
                "job %s: cannot record the failure (%s): %s", self.job.id, exc.type, redis_exc
            )
            return
        self.ended = True
        JOBS.labels("failed").inc()
        JOB_DURATION.observe(time.monotonic() - self.started)
        if isinstance(exc, UpstreamError):
            UPSTREAM_ERRORS.labels(str(exc.upstream_status or exc.type)).inc()
        job_event(
            log,
            "job.failed",
            self.job.id,
            logging.WARNING,
            attempt=self.attempt,
            error=exc.type,
            upstream_status=getattr(exc, "upstream_status", None),
            reason=exc.message,
            duration_s=round(time.monotonic() - self.started, 3),
            upstream_request_id=self.upstream_request_id,
        )

    def _stopped(self, exc: BaseException, level: int = logging.INFO) -> None:
        """The job is no longer this attempt's: log it once, write nothing."""
        job_event(
            log,
            "job.stopped",
            self.job.id,
            level,
            attempt=self.attempt,
            reason=type(exc).__name__,
            upstream_request_id=self.upstream_request_id,
        )


def backoff(retry: int, retry_after: float | None) -> float:
    """openai-python's schedule: 0.5 s doubling to 8 s, with jitter; Retry-After wins."""
    if retry_after is not None:
        return retry_after
    return min(8.0, 0.5 * 2.0**retry) * random.uniform(0.75, 1.0)

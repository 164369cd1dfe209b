"""Running one job: claim it, stream the upstream, append every delta, end it once.

The Celery task is a thin shell around ``JobRunner.run`` so this logic is testable
without Celery, and so the task never raises: every failure becomes a terminal event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import requests

from sluice.errors import SluiceError, UpstreamError, UpstreamProtocolError
from sluice.events import DONE, ERROR, STARTED, Event
from sluice.jobs import AttemptSuperseded, Job, JobAlreadyEnded, JobGone, JobStore
from sluice.keyvault import KeyVaultError, vault_for
from sluice.models import lookup
from sluice.settings import Settings
from sluice.sse_parser import SSEDecoder, SSEProtocolError
from sluice.tokens import count_text
from worker.chunks import ChunkReader
from worker.upstream import Upstream, map_read_error
from worker.watch import CancelWatcher

log = logging.getLogger("sluice.worker")

_STOPPED = (JobAlreadyEnded, JobGone, AttemptSuperseded)


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        upstream: Upstream,
        settings: Settings,
        cancel_poll_interval: float = 0.5,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.cancel_poll_interval = cancel_poll_interval

    def run(self, job_id: str) -> None:
        attempt = self.store.claim(job_id)
        if not attempt:
            log.info("job %s: not queued (already running, ended or expired); skipping", job_id)
            return
        job = self.store.get(job_id)
        if job is None:
            return
        started = time.monotonic()
        try:
            self.store.append(
                job_id, [Event(STARTED, {"model": job.model, "attempt": attempt})], attempt=attempt
            )
            log.info("job %s started: attempt=%d model=%s", job_id, attempt, job.model)
            with CancelWatcher(self.store, job_id, self.cancel_poll_interval) as watcher:
                self._stream(job, attempt, watcher, started)
        except _STOPPED as exc:
            log.info("job %s stopped: %s", job_id, type(exc).__name__)
        except SluiceError as exc:
            self._fail(job, attempt, exc, started)
        except Exception as exc:
            log.exception("job %s: unexpected failure", job_id)
            self._fail(job, attempt, SluiceError(f"internal error: {type(exc).__name__}"), started)

    def _stream(self, job: Job, attempt: int, watcher: CancelWatcher, started: float) -> None:
        request = job.request
        reader = ChunkReader(int(request.get("n") or 1))
        decoder = SSEDecoder()
        response = self.upstream.open_stream(request, self._api_key(job))
        watcher.attach(response)
        saw_done = False
        first_delta_at: float | None = None
        try:
            for chunk in response.iter_content(chunk_size=None):
                saw_done = self._relay(job, attempt, reader, decoder.feed(chunk))
                if first_delta_at is None and reader.deltas:
                    first_delta_at = time.monotonic()
                    log.info(
                        "job %s: first delta after %.0f ms",
                        job.id,
                        (first_delta_at - started) * 1000,
                    )
                if saw_done:
                    break
            else:
                saw_done = self._relay(job, attempt, reader, decoder.close())
        except requests.RequestException as exc:
            if watcher.cancelled:
                raise JobAlreadyEnded("cancelled while reading") from None
            raise map_read_error(exc) from None
        except SSEProtocolError as exc:
            raise UpstreamProtocolError(f"malformed stream from the upstream: {exc}") from None
        finally:
            response.close()
        if watcher.cancelled:
            raise JobAlreadyEnded("cancelled while reading")
        if not saw_done and not reader.finished:
            raise UpstreamProtocolError(
                "the upstream closed the stream before the completion finished"
            )
        self._succeed(job, attempt, reader, started)

    def _api_key(self, job: Job) -> str | None:
        """The user's own key for this job if it brought one, else the server's."""
        if job.sealed_upstream_key is None:
            return self.settings.openai_api_key
        vault = vault_for(self.settings.secret_key, self.settings.max_job_age)
        if vault is None:
            raise KeyVaultError("the job carries a user key but SLUICE_SECRET_KEY is not set")
        return vault.open(job.sealed_upstream_key)

    def _relay(self, job: Job, attempt: int, reader: ChunkReader, sse_events: list[Any]) -> bool:
        """Append the deltas of these upstream events in one round trip; True at [DONE]."""
        out: list[Event] = []
        done = False
        for sse in sse_events:
            if sse.data.strip() == "[DONE]":
                done = True
                break
            try:
                payload = json.loads(sse.data)
            except ValueError:
                raise UpstreamProtocolError("the upstream sent a chunk that is not JSON") from None
            if sse.event == "error":
                from sluice.upstream_errors import error_from_payload

                raise error_from_payload(payload)
            out.extend(reader.consume(payload))
        if out:
            self.store.append(job.id, out, attempt=attempt)
        return done

    def _succeed(self, job: Job, attempt: int, reader: ChunkReader, started: float) -> None:
        usage, estimated = reader.usage, False
        if usage is None:
            encoding = lookup(job.model, self.settings.default_context_window).encoding
            completion = sum(count_text(t, encoding) for t in reader.completion_texts())
            usage = {
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": job.prompt_tokens + completion,
            }
            estimated = True
        data = {
            "finish_reasons": reader.finish_reason_list(),
            "usage": usage,
            "usage_estimated": estimated,
        }
        self.store.append(job.id, [Event(DONE, data)], attempt=attempt)
        log.info(
            "job %s succeeded: finish=%s usage=%s%s duration=%.2fs",
            job.id,
            ",".join(str(r) for r in data["finish_reasons"]),
            json.dumps(usage),
            " (estimated)" if estimated else "",
            time.monotonic() - started,
        )

    def _fail(self, job: Job, attempt: int, exc: SluiceError, started: float) -> None:
        error = exc.to_dict()
        if isinstance(exc, UpstreamError) and exc.upstream_type:
            error.setdefault("upstream_type", exc.upstream_type)
        log.warning(
            "job %s failed after %.2fs: %s: %s",
            job.id,
            time.monotonic() - started,
            exc.type,
            exc.message,
        )
        with contextlib.suppress(_STOPPED):
            self.store.append(job.id, [Event(ERROR, {"error": error})], attempt=attempt)

"""``POST /v1/chat/completions``: OpenAI's API, served through Sluice's queue.

Official SDKs work unchanged (the format: ``gateway/wire/openai_chunks.py``). Errors use
OpenAI's shape and statuses. Every answer carries ``X-Sluice-Job-Id`` and
``X-Sluice-Events-Url`` (signed like a job's ``events_url`` when access keys are on), so a
client whose connection drops can resume the job in Sluice's own format.

A streamed answer's headers wait for the job's first delta, up to
``SLUICE_FIRST_BYTE_WAIT`` (20 s by default: retries of a refused upstream request fit,
and PaaS routers, which cut a request with no first byte at 30 s, still see one in time,
whatever the heartbeat interval). A job that fails before it produced anything (a bad
key, a rate limit) answers with the HTTP error status, which SDKs turn into their typed
exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import chain

from flask import Blueprint, Response, jsonify

from gateway import request
from gateway.feed import HEARTBEAT, Item
from gateway.openai_errors import error_response, use_openai_errors
from gateway.request import ChatCompletionRequest
from gateway.routes.jobs import links
from gateway.services import services
from gateway.submit import submit
from gateway.wire import stream_response
from gateway.wire.openai_chunks import OpenAIChunks, completion, terminal_error
from sluice.errors import StreamInterrupted
from sluice.events import DELTA, TERMINAL_EVENTS, Event, Transcript
from sluice.store import Job

bp = Blueprint("openai", __name__)
use_openai_errors(bp)


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    svc = services()
    params = request.chat_parameters(ChatCompletionRequest, svc.settings.vendor_parameters)
    # before the job: a client at its stream limit starts none (a non-streamed answer
    # holds its connection for the job's length as well)
    svc.reserve_stream()
    submission = submit(svc, params, follow=True)
    job, feed = submission.job, submission.feed
    assert feed is not None
    deadline = time.monotonic() + svc.settings.first_byte_wait
    items = iter(feed.beat_by(deadline))
    head = _first_decisive(items, deadline)
    last = head[-1] if head else None
    if isinstance(last, tuple):
        error = terminal_error(Event.from_entry(last[1]))
        if error is not None:
            feed.close()
            return error_response(error, job.id)
    headers = {"X-Sluice-Job-Id": job.id, "X-Sluice-Events-Url": links(job)["events_url"]}
    if not params.stream:
        return _complete(job, chain(head, items), headers)
    include_usage = bool(params.stream_options and params.stream_options.include_usage)
    frames = OpenAIChunks(job, include_usage).frames(chain(head, items))
    return stream_response(frames, feed, headers)


def _first_decisive(items: Iterator[Item], deadline: float) -> list[Item]:
    """Events up to the first delta or terminal event, or up to the heartbeat the feed
    yields at ``deadline`` (``JobFeed.beat_by``)."""
    head: list[Item] = []
    for item in items:
        head.append(item)
        if item is HEARTBEAT:
            if time.monotonic() >= deadline:
                break
            continue
        assert isinstance(item, tuple)
        kind = Event.from_entry(item[1]).type
        if kind == DELTA or kind in TERMINAL_EVENTS:
            break
    return head


def _complete(job: Job, items: Iterable[Item], headers: dict[str, str]) -> Response:
    """The non-streamed answer, once the job ends."""
    transcript = Transcript()
    for item in items:
        if isinstance(item, tuple):
            event = Event.from_entry(item[1])
            transcript.apply(item[0], event)
            error = terminal_error(event)
            if error is not None:
                return error_response(error, job.id)
            if event.terminal:
                break
    else:
        return error_response(StreamInterrupted().to_dict(), job.id)
    response = jsonify(completion(job, transcript))
    response.headers.update(headers)
    return response

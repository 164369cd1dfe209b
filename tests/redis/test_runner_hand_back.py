"""A worker's hand-back at SIGTERM racing a job's read, with the real job runner, Redis and
upstream stream (no processes): the job goes back to the queue, it is not failed."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from devtools.fake_upstream import FakeUpstream
from sluice.events import Event
from sluice.store import JobStore
from worker.runner import JobRunner
from worker.upstream import Upstream


def test_a_job_handed_back_between_two_reads_goes_back_to_the_queue(
    store: JobStore,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hand-back closes the upstream response while the job is not inside a read (it
    waits for its append to be taken); its next read then meets a closed body, and
    urllib3 raises AttributeError there (the chaos soak saw ``error internal_error:
    AttributeError`` 0.1 s after ``job.handed_back``)."""
    settings = store.settings.with_(
        openai_base_url=upstream.base_url, openai_api_key=upstream.api_key
    )
    runner = JobRunner(store, Upstream(settings), settings)
    job, _ = store.create(
        model="slow;delay=0.02;words=200",
        request={"model": "slow;delay=0.02;words=200", "messages": [{"role": "user",
                                                                    "content": "hi"}]},
        prompt_tokens=1, truncated_messages=0,
    )  # fmt: skip
    holding, handed_back = threading.Event(), threading.Event()
    send = runner.event_log.send
    calls = 0

    def send_then_hold(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:  # the job is between reads, its append waiting to be taken
            holding.set()
            assert handed_back.wait(10)
        return send(*args, **kwargs)

    monkeypatch.setattr(runner.event_log, "send", send_then_hold)
    worker = threading.Thread(target=runner.run, args=(job.id,))
    with caplog.at_level(logging.INFO, logger="sluice.worker"):
        worker.start()
        assert holding.wait(10)
        assert runner.hand_back_all() == 1  # SIGTERM: release, then cut the response
        handed_back.set()
        worker.join(10)
    assert not worker.is_alive()
    types = [Event.from_entry(entry).type for _, entry in store.read_events(job.id)]
    assert "error" not in types
    outcomes = [r.message for r in caplog.records if "event=job." in r.message]
    assert not any("job.failed" in m or "job.succeeded" in m for m in outcomes), outcomes
    assert any("job.stopped" in m for m in outcomes), outcomes
    assert store.reap(job.id) == 2  # a reaper restarts it, with a `reset`
    last = Event.from_entry(store.read_events(job.id)[-1][1])
    assert last.type == "reset" and last.data["reason"] == "worker_shutdown"

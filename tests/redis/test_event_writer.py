"""A job's writes handed over without waiting, against the real Redis: they land in order,
refusals surface, and lost replies are sent again without writing anything twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import worker.event_log
from sluice.errors import AttemptSuperseded, JobAlreadyEnded
from sluice.events import DONE, Event
from sluice.store import JobStore, ScriptCall
from tests.helpers.support import delta, running_job, wait_until
from worker.event_log import AttemptWriter, EventLog


def _writer(store: JobStore, job_id: str, outage_tolerance: float = 5.0) -> AttemptWriter:
    return EventLog(store, outage_tolerance=outage_tolerance).writer(job_id, 1, 1)


def _assert_log(store: JobStore, job_id: str, texts: list[str]) -> None:
    """Exactly these deltas after `started`, in order, ids without gaps or repeats."""
    events = store.read_events(job_id)
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert store.transcript(job_id).texts() == ["".join(texts)]


def test_writes_do_not_wait_for_replies_and_join_while_the_line_is_busy(
    store: JobStore,
) -> None:
    job_id = running_job(store)
    writer = _writer(store, job_id)
    live = store.redis.pubsub()
    live.subscribe(store.keys.channel(job_id))
    assert live.get_message(timeout=5)["type"] == "subscribe"
    # Redis holds writes for a moment: every write returns before any reply came back
    store.redis.execute_command("CLIENT", "PAUSE", "500", "WRITE")
    ids = [writer.write(delta(f"{n},")) for n in range(10)]
    assert ids == list(range(2, 12))  # the ids are known before the replies
    assert store.redis.llen(store.keys.events(job_id)) == 1  # none has landed yet
    # the writes made while an append waits for the line join it
    assert writer.unconfirmed <= 2
    writer.write_and_wait([Event(DONE, {"usage": None})])  # waits for all of them
    assert writer.unconfirmed == 0
    _assert_log(store, job_id, [f"{n}," for n in range(10)])
    job = store.get(job_id)
    assert job is not None and job.status == "succeeded"
    published = []
    while (message := live.get_message(timeout=1)) is not None:
        published.append(message["data"].count("\n") + 1)
    live.close()
    assert sum(published) == 11  # each event published once
    assert len(published) <= 3  # one message per append, not per write


def test_a_storm_of_writes_is_split_into_appends_redis_can_run(store: JobStore) -> None:
    """Lua refuses to unpack ~8,000 values: joined or large writes stay under a cap."""
    job_id = running_job(store)
    writer = _writer(store, job_id)
    store.redis.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
    texts = [f"{n}," for n in range(18000)]
    for text in texts[:9000]:
        writer.write(delta(text))  # these join while the line is busy
    writer.write([event for text in texts[9000:] for event in delta(text)])  # one big read
    writer.write_and_wait([Event(DONE, {"usage": None})])
    _assert_log(store, job_id, texts)


def test_a_refusal_is_raised_by_a_later_write_or_flush(store: JobStore) -> None:
    job_id = running_job(store)
    writer = _writer(store, job_id)
    writer.write_and_wait(delta("a"))
    store.cancel(job_id, usage=None)  # the user cancels while the job streams
    writer.write(delta("b"))  # handed over; its refusal comes back later
    with pytest.raises(JobAlreadyEnded):
        writer.flush()
    assert store.transcript(job_id).texts() == ["a"]


Fault = Callable[[Callable[..., list[object]], redis.Redis, Sequence[object]], list[object]]


def _lose_reply(
    send: Callable[..., list[object]], client: redis.Redis, calls: Sequence[object]
) -> list[object]:
    send(client, calls)  # the writes land ...
    raise redis.ConnectionError("connection reset (the reply was lost)")  # ... unconfirmed


def _drop_request(
    send: Callable[..., list[object]], client: redis.Redis, calls: Sequence[object]
) -> list[object]:
    raise redis.ConnectionError("connection reset (the request was lost)")


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([_lose_reply], id="reply-lost"),
        pytest.param([_drop_request], id="request-lost"),
        pytest.param([_lose_reply, _lose_reply, _lose_reply], id="replies-lost-in-a-row"),
        pytest.param([_drop_request, _drop_request], id="requests-lost-in-a-row"),
        pytest.param([_lose_reply, _drop_request, _lose_reply], id="mixed"),
        pytest.param([None, _lose_reply, None, _drop_request], id="between-good-ones"),
    ],
)
def test_lost_round_trips_are_sent_again_without_loss_or_repeat(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, faults: list[Fault | None]
) -> None:
    job_id = running_job(store)
    writer = _writer(store, job_id)
    real_send = worker.event_log.send_together
    sent: list[int] = []  # the number of events in each round trip attempted

    def faulty_send(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[object]:
        fault = faults[len(sent)] if len(sent) < len(faults) else None
        sent.append(sum(call.args[7] for call in calls))
        if fault is None:
            return real_send(client, calls)
        return fault(real_send, client, calls)

    monkeypatch.setattr(worker.event_log, "send_together", faulty_send)
    texts = [f"{n}," for n in range(8)]
    for n, text in enumerate(texts):
        writer.write(delta(text))
        # one round trip per write, so each fault hits the write it is meant for
        wait_until(lambda n=n: len(sent) > n, 5)
    writer.write_and_wait([Event(DONE, {"usage": None})])
    _assert_log(store, job_id, texts)
    assert sum(sent) > len(texts) + 1  # some events were sent again


def test_a_log_that_moved_on_without_the_writer_stops_it(store: JobStore) -> None:
    job_id = running_job(store)
    writer = _writer(store, job_id)
    writer.write_and_wait(delta("a"))
    # someone else wrote as this attempt (a worker that wrongly believes it owns the job)
    store.append(job_id, delta("X") + delta("Y"), attempt=1, expect_last=2)
    writer.write(delta("b"))
    with pytest.raises(AttemptSuperseded):
        writer.flush()
    assert store.transcript(job_id).texts() == ["aXY"]


def test_an_outage_longer_than_the_tolerance_fails_the_flush(store: JobStore) -> None:
    dead = JobStore(redis.Redis(port=1, retry=Retry(NoBackoff(), 0)), store.settings)
    writer = EventLog(dead, outage_tolerance=1.0).writer("job_x", 1, 1)
    writer.write(delta("a"))  # handing over does not fail
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        writer.flush()
    assert 0.5 < time.monotonic() - started < 5  # it retried (0.2 s, then 0.4 s)

"""The gateway's submission gate: a few submissions at once, the rest in turn."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.submit import QueueGauge, SubmissionGate
from sluice.errors import Overloaded


def test_submissions_beyond_the_limit_wait_for_a_slot_in_arrival_order() -> None:
    gate = SubmissionGate(2)
    order: list[int] = []
    release = threading.Event()

    def submit(n: int) -> None:
        with gate.slot():
            order.append(n)
            release.wait(5)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # arrive in order
    assert order == [0, 1]  # two in progress, two waiting
    release.set()
    for thread in threads:
        thread.join(5)
    assert sorted(order) == [0, 1, 2, 3]


def test_a_submission_that_waits_too_long_is_refused_with_retry_after() -> None:
    gate = SubmissionGate(1, wait=0.05)
    with gate.slot(), pytest.raises(Overloaded) as refused, gate.slot():
        pass
    assert refused.value.retry_after == 1
    with gate.slot():  # the slot came back
        pass


def test_zero_means_no_limit() -> None:
    gate = SubmissionGate(0)
    with gate.slot(), gate.slot(), gate.slot():
        pass


class CountingBroker:
    """A broker whose queue depth is set by the test; counts the reads."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.reads = 0

    def queue_depth(self, queue: str) -> int:
        self.reads += 1
        return self.depth


def test_the_queue_depth_is_read_once_per_second_far_from_the_limit() -> None:
    broker = CountingBroker(10)
    gauge = QueueGauge(broker, fresh_for=60)  # type: ignore[arg-type]  # (a test double)
    # ten submissions in a burst: one read, each later one counted as queued after it
    assert [gauge.waiting("q", limit=1000) for _ in range(10)] == list(range(10, 20))
    assert broker.reads == 1


def test_from_half_the_limit_every_submission_reads_the_broker() -> None:
    broker = CountingBroker(7)
    gauge = QueueGauge(broker, fresh_for=60)  # type: ignore[arg-type]
    assert gauge.waiting("q", limit=20) == 7  # read
    assert gauge.waiting("q", limit=20) == 8  # 7 + 1 let through: below half (10)
    broker.depth = 9
    assert gauge.waiting("q", limit=20) == 9  # 7 + 2 + 1 would reach half: read again
    assert gauge.waiting("q", limit=20) == 9  # and again: the refusal sees the real depth
    assert broker.reads == 3


def test_a_depth_goes_stale() -> None:
    broker = CountingBroker(0)
    gauge = QueueGauge(broker, fresh_for=0.01)  # type: ignore[arg-type]
    gauge.waiting("q", limit=100)
    time.sleep(0.02)
    broker.depth = 42
    assert gauge.waiting("q", limit=100) == 42 and broker.reads == 2

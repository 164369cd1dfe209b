"""The gateway's submission gate: a few submissions at once, the rest in turn."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.submit import SubmissionGate
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

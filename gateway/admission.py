"""How many job submissions one gateway process works on at once.

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

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sluice.errors import Overloaded

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

"""Finding jobs whose worker died, and restarting them.

Every running job holds a lease in Redis that its worker renews every ``lease_ttl / 3``
seconds (``worker/watcher.py``). Each worker process runs this reaper: every
``reaper_interval`` seconds it looks for leases that ran out, and for each one the
``REAP`` script (atomic, so concurrent reapers agree) either appends ``reset`` and puts the
job back in its queue, or, after ``max_attempts``, fails it with ``worker_lost``. A job is
thus restarted within about ``lease_ttl + reaper_interval`` seconds of its worker's death.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from sluice.jobs import JobStore
from sluice.logs import job_event
from sluice.metrics import JOBS

log = logging.getLogger("sluice.worker.reaper")


class Reaper:
    def __init__(self, store: JobStore, enqueue: Callable[[str, str], None]) -> None:
        self.store = store
        self.enqueue = enqueue  # (job id, queue) -> None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sluice-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.store.settings.reaper_interval):
            try:
                self.sweep()
            except redis.RedisError as exc:
                log.warning("reaper: Redis unavailable (%s); will retry", exc)
            except Exception:
                log.exception("reaper: unexpected failure")

    def sweep(self) -> int:
        """Handle every expired lease once; returns how many jobs were restarted."""
        restarted = 0
        for job_id in self.store.expired_leases():
            outcome = self.store.reap(job_id)
            if outcome > 0:
                job = self.store.get(job_id)
                queue = job.queue if job and job.queue else self.store.settings.queue
                job_event(log, "job.restarted", job_id, logging.WARNING, attempt=outcome)
                self.enqueue(job_id, queue)
                restarted += 1
            elif outcome < 0:
                JOBS.labels("failed").inc()
                job_event(log, "job.failed", job_id, logging.ERROR, error="worker_lost",
                          attempts=self.store.settings.max_attempts)  # fmt: skip
        return restarted

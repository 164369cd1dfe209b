"""While a job runs: keep its lease, and notice that it was cancelled or taken away.

Cancel is cooperative (Celery's ``revoke(terminate=True)`` is prefork-only and must not be
used programmatically). The gateway's cancel is authoritative in Redis; this watcher
checks the job's status every ``poll_interval`` seconds and renews the worker's lease every
``lease_ttl / 3``. When the job is no longer this attempt's to run (cancelled, expired, or
reaped and restarted elsewhere after a partition), it shuts the upstream socket down.
``shutdown()`` wakes a read blocked on a silent upstream, which ``response.close()`` alone
does not, so a cancel takes effect promptly even while nothing arrives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import redis

from sluice.jobs import RUNNING, JobStore
from worker.upstream import socket_of

log = logging.getLogger("sluice.worker")


class JobWatcher:
    def __init__(
        self, store: JobStore, job_id: str, attempt: int, poll_interval: float = 0.5
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.attempt = attempt
        self.poll_interval = poll_interval
        self.renew_every = store.settings.lease_ttl / 3
        self.stopped = False  # the job is no longer ours to run
        self._response: Any = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id}", daemon=True)

    def __enter__(self) -> JobWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def attach(self, response: Any) -> None:
        """The upstream response to cut when the job stops being ours."""
        with self._lock:
            self._response = response
            if self.stopped:
                self._abort()

    def detach(self) -> None:
        """The stream ended: leave its connection alone (it may go back to the pool)."""
        with self._lock:
            self._response = None

    def stop_now(self) -> None:
        """The job is being given away (shutdown): stop streaming at once."""
        with self._lock:
            self.stopped = True
            self._abort()

    def sleep(self, seconds: float) -> bool:
        """Wait (a retry backoff); returns False at once if the job stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopped and time.monotonic() < deadline:
            self._done.wait(min(self.poll_interval, deadline - time.monotonic()))
        return not self.stopped

    def _run(self) -> None:
        next_renew = time.monotonic() + self.renew_every
        while not self._done.wait(self.poll_interval):
            try:
                if time.monotonic() >= next_renew:
                    ours = self.store.renew(self.job_id, self.attempt)
                    next_renew = time.monotonic() + self.renew_every
                else:
                    ours = (
                        self.store.redis.hget(self.store.keys.job(self.job_id), "status") == RUNNING
                    )
            except redis.RedisError as exc:
                log.warning("job %s: cannot check on the job: %s", self.job_id, exc)
                continue
            if not ours:
                with self._lock:
                    self.stopped = True
                    self._abort()
                return

    def _abort(self) -> None:
        if self._response is None:
            return
        log.info("job %s: stopped (cancelled or taken over); closing the upstream", self.job_id)
        sock = socket_of(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # closing a half-read response may raise; it is going anyway
        with contextlib.suppress(Exception):
            self._response.close()

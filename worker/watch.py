"""Noticing that a running job was cancelled (or expired) and cutting its upstream.

Cancel is cooperative (Celery's ``revoke(terminate=True)`` is prefork-only and must not
be used programmatically). The gateway's cancel is authoritative in Redis; this watcher
polls the job's status every ``interval`` seconds and, on cancel, shuts down the
upstream socket. ``shutdown()`` wakes a read that is blocked on a silent upstream, which
``response.close()`` alone does not, so cancel is prompt even while nothing arrives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

import redis

from sluice.jobs import JobStore

log = logging.getLogger("sluice.worker")


def _socket_of(response: Any) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock


class CancelWatcher:
    def __init__(self, store: JobStore, job_id: str, interval: float) -> None:
        self.store = store
        self.job_id = job_id
        self.interval = interval
        self.cancelled = False
        self._response: Any = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id}", daemon=True)

    def __enter__(self) -> CancelWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def attach(self, response: Any) -> None:
        with self._lock:
            self._response = response
            if self.cancelled:
                self._abort()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                job = self.store.get(self.job_id)
            except redis.RedisError as exc:
                log.warning("job %s: cannot check for cancel: %s", self.job_id, exc)
                continue
            if job is None or job.ended:
                with self._lock:
                    self.cancelled = True
                    self._abort()
                return

    def _abort(self) -> None:
        if self._response is None:
            return
        log.info("job %s: cancelled; closing the upstream connection", self.job_id)
        sock = _socket_of(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # closing a half-read response may raise; it is going anyway
        with contextlib.suppress(Exception):
            self._response.close()

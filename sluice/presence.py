"""Which workers are alive: each worker process stamps a sorted set every few seconds.

The gateway's ``/readyz`` counts the workers seen within ``STALE_AFTER`` seconds; a
deployment whose workers are all gone is not ready, even if Redis answers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from sluice.keys import Keys

log = logging.getLogger("sluice.presence")
BEAT_EVERY = 5.0
STALE_AFTER = 15.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive_workers(client: redis.Redis, keys: Keys) -> int:
    return int(client.zcount(keys.workers, time.time() - STALE_AFTER, "+inf"))


class Presence:
    """Runs in a worker process: stamps ``keys.workers`` until stopped."""

    def __init__(self, client: redis.Redis, keys: Keys, name: str | None = None) -> None:
        self.client = client
        self.keys = keys
        self.name = name or worker_name()
        self._stop = threading.Event()

    def beat(self) -> None:
        now = time.time()
        with self.client.pipeline() as pipe:
            pipe.zadd(self.keys.workers, {self.name: now})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - 4 * STALE_AFTER)
            pipe.execute()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="sluice-presence", daemon=True).start()

    def stop(self) -> None:
        """Leave at once (a graceful shutdown), instead of going stale."""
        self._stop.set()
        try:
            self.client.zrem(self.keys.workers, self.name)
        except redis.RedisError as exc:
            log.debug("could not leave the worker registry: %s", exc)

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("cannot record this worker as alive: %s", exc)
            if self._stop.wait(BEAT_EVERY):
                return

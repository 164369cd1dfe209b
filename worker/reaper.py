"""Finding jobs that lost their worker, or their message, and starting them again.

Every running job holds a lease in Redis that its worker renews every ``lease_ttl / 3``
seconds (``worker/watcher.py``). Each worker process runs this reaper: every
``reaper_interval`` seconds it looks for leases that ran out, and for each one the
``REAP`` script (atomic, so concurrent reapers agree) either appends ``reset`` and puts the
job back in its queue, or, after ``max_attempts``, fails it with ``worker_lost``. A job is
thus restarted within about ``lease_ttl + reaper_interval`` seconds of its worker's death.

A queued job has no worker yet, but its message can go missing all the same: a worker
killed after taking the message and before claiming the job leaves it in kombu's
``unacked`` hash until the visibility timeout (two hours), and a kill between kombu's
``BRPOP`` and that bookkeeping loses it outright. So the reaper also looks at jobs queued
for longer than ``lease_ttl``: one whose message cannot be waiting in the broker any more
gets it sent again. The broker queue is first-in first-out, so a job sent before the job
whose message is next in line (or when the queue is empty) is not in it. A second
message for a job that was not lost after all is harmless: the claim admits one.

On RabbitMQ (``CELERY_BROKER_URL=amqp://…``) the broker keeps what it confirmed until it
is acked: a dead worker's connection closes and its unacked messages are delivered again
to another worker at once (a claimed job's copy is refused by the claim, and the lease
restarts that job as above). What can still strand a queued job there is a message never
sent (a gateway killed between storing the job and sending its message). A RabbitMQ queue's
head cannot be read without taking it, so ``sluice.broker`` only tells an empty queue (no
message ready) from a non-empty one: an old queued job is sent again when its queue has no
message ready, and the jobs waiting their turn in a busy queue are left alone until it
drains. A job sent again while its message was in fact with a worker, about to be
claimed, is the harmless duplicate above.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from sluice.broker import Broker, BrokerUnavailable, RedisBroker
from sluice.logs import job_event
from sluice.metrics import JOBS
from sluice.store import JobStore

log = logging.getLogger("sluice.worker.reaper")
# sent at the same moment as the head's message, give or take the clocks of two gateways
# and the gap between storing a job and sending its message
SEND_ORDER_SLACK = 1.0


class Reaper:
    def __init__(
        self, store: JobStore, enqueue: Callable[[str, str], None], broker: Broker | None = None
    ) -> None:
        self.store = store
        self.enqueue = enqueue  # (job id, queue) -> None
        # where the queues are read (``sluice.broker``): the job store's Redis by default
        self.broker = broker or RedisBroker(store.redis, store.settings.redis_url)
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
                self.send_again()
            except redis.RedisError as exc:
                log.warning("reaper: Redis unavailable (%s); will retry", exc)
            except BrokerUnavailable as exc:
                log.warning("reaper: the broker is unavailable (%s); will retry", exc)
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

    def send_again(self) -> int:
        """Send the message of every queued job whose message went missing; returns how
        many were sent. Only jobs sent before the head of the queue are read, so a long
        queue of jobs waiting their turn costs one round trip a sweep, not one a job."""
        own = self.store.settings.queue
        own_head = self._head_sent_at(own)
        if own_head is None:
            return 0  # the head is not a queued job's; it is consumed soon, look then
        heads: dict[str, float | None] = {own: own_head}
        cutoff = min(time.time() - self.store.settings.lease_ttl, own_head - SEND_ORDER_SLACK)
        sent = 0
        for job_id, sent_at in self.store.sent_before(cutoff):
            job = self.store.get(job_id)
            if job is None:  # expired before it ever ran
                self.store.forget_queued(job_id)
                continue
            queue = job.queue or own
            if queue not in heads:  # a job of another deployment's queue
                heads[queue] = self._head_sent_at(queue)
            head = heads[queue]
            if head is None or sent_at >= head - SEND_ORDER_SLACK:
                continue  # it may still be waiting its turn behind the head
            if not self.store.mark_sent(job_id):
                continue  # claimed meanwhile
            waited = round(time.time() - sent_at, 1)
            job_event(log, "job.sent_again", job_id, logging.WARNING, queue=queue, waited_s=waited)
            self.enqueue(job_id, queue)
            sent += 1
        return sent

    def _head_sent_at(self, queue: str) -> float | None:
        """When the message next in ``queue`` was sent: ``inf`` when the queue is empty
        (no message is waiting, so every old one is missing), None when it is unknown (the
        head is not a queued job's: a duplicate, say, about to be consumed and skipped)."""
        head = self.broker.job_at_head(queue)
        if head is None:
            return math.inf
        return self.store.sent_at(head) if head else None

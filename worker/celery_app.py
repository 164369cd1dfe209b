"""The Celery worker: ``celery -A worker.celery_app worker --pool gevent``.

Streaming a completion is I/O-bound, so one process runs many jobs on gevent greenlets
(``--pool gevent --concurrency N``); prefork would block a whole process per stream.

On RabbitMQ the worker's consumer leaves out Celery's native delayed delivery
(``JobConsumer``): Celery adds it whenever it sees a quorum queue, and it declares 28
exchanges and 28 quorum queues (``celery_delayed_*``) on the broker at every start, for
ETA and countdown tasks, which Sluice never sends (a job runs when a worker is free; a
retry waits inside the attempt).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import ClassVar

from celery.signals import worker_init, worker_ready, worker_shutting_down
from celery.worker.consumer import Consumer

from sluice.broker import Broker, broker_kind, broker_url, make_broker, safe_url
from sluice.fd_limit import raise_open_file_limit
from sluice.heap import freeze_startup_heap
from sluice.logs import configure_logging
from sluice.metrics import serve_worker_metrics
from sluice.presence import Presence
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from sluice.task_queue import RUN_JOB_TASK, enqueue_job, make_celery
from worker.gevent_tuning import cooperative_kombu_sleep, spawn
from worker.reaper import Reaper
from worker.runner import JobRunner
from worker.upstream import Upstream

configure_logging()
cooperative_kombu_sleep()
settings = Settings.from_env()
app = make_celery(settings, main="sluice-worker")
log = logging.getLogger("sluice.worker")


class _JobConsumerSteps(Consumer.Blueprint):
    default_steps: ClassVar[list[str]] = [
        step for step in Consumer.Blueprint.default_steps if not step.endswith(":DelayedDelivery")
    ]


class JobConsumer(Consumer):
    """Celery's consumer without native delayed delivery (the module's docstring)."""

    Blueprint = _JobConsumerSteps


app.conf.worker_consumer = f"{__name__}:JobConsumer"
_background: dict[str, Presence | Reaper] = {}


@lru_cache(maxsize=1)
def runner() -> JobRunner:
    store = JobStore(make_redis(settings), settings)
    log.info(
        "worker ready: upstream %s (%s), broker %s (%s), queue %s",
        settings.openai_base_url,
        "server key set" if settings.openai_api_key else "no OPENAI_API_KEY",
        safe_url(broker_url(settings)),
        broker_kind(broker_url(settings)),
        settings.queue,
    )
    return JobRunner(store, Upstream(settings), settings)


@lru_cache(maxsize=1)
def broker() -> Broker:
    return make_broker(settings, runner().store.redis)


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> None:
    runner().run(job_id)


def _enqueue(job_id: str, queue: str) -> None:
    enqueue_job(app, job_id, queue)


@worker_init.connect
def _open_files(sender: object = None, **_kwargs: object) -> None:
    """A socket per running job (its upstream's): enough open files for ``--concurrency``
    of them (``sluice.fd_limit``)."""
    raise_open_file_limit(int(getattr(sender, "concurrency", 0) or 0))


@worker_ready.connect
def _settle_heap(**_kwargs: object) -> None:
    """Loaded and about to take tasks: keep full garbage collections short."""
    freeze_startup_heap()


@worker_ready.connect
def _start_reaper(**_kwargs: object) -> None:
    store = runner().store
    presence = Presence(store.redis, store.keys)
    presence.start()
    _background["presence"] = presence
    reaper = Reaper(store, _enqueue, broker())
    reaper.start()
    _background["reaper"] = reaper
    port = os.environ.get("SLUICE_WORKER_METRICS_PORT")
    if port:
        serve_worker_metrics(int(port))
        log.info("metrics on :%s/metrics", port)
    log.info(
        "reaper started: leases of %.0fs, checked every %.0fs, %d attempts per job",
        settings.lease_ttl,
        settings.reaper_interval,
        settings.max_attempts,
    )


@worker_shutting_down.connect
def _leave(**_kwargs: object) -> None:
    """SIGTERM (a deploy, a PaaS restart): leave the registry and hand running jobs back,
    so they restart on another worker at once rather than when the grace period ends.

    Runs in a greenlet (a thread without gevent): this signal arrives inside the event
    loop's callback, where blocking on Redis is not allowed."""

    def hand_back() -> None:
        for helper in _background.values():
            helper.stop()  # leave the registry; restart no more jobs from here
        handed = runner().hand_back_all()
        log.info("shutting down: handed %d running job(s) back", handed)

    spawn(hand_back, name="sluice-hand-back")

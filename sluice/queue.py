"""The Celery application both sides share: the gateway sends by task name, the worker runs.

The gateway never imports the worker's code: it calls ``send_task(RUN_JOB_TASK, ...)``
on an app built from the same settings.
"""

from __future__ import annotations

from celery import Celery

from sluice.broker import TRANSPORT
from sluice.redis_conn import CERT_REQS, tls_options
from sluice.settings import Settings

RUN_JOB_TASK = "sluice.run_job"


def make_celery(settings: Settings, main: str = "sluice") -> Celery:
    app = Celery(main, broker=settings.redis_url)
    app.conf.update(
        broker_transport=TRANSPORT,  # kombu's Redis transport, one client per pool
        task_default_queue=settings.queue,
        task_ignore_result=True,
        # Results are off (the job store has them), but Celery keeps its backend object
        # per thread, and every gevent greenlet counts as one: without this each task (and
        # each send_task) built a new one, ~5 % of the CPU of a job start on either side.
        result_backend_thread_safe=True,
        task_serializer="json",
        accept_content=["json"],
        # A job's state lives in Sluice's own job store; the message carries only its id.
        # Ack late and re-queue when a worker dies, so a lost worker does not lose the job;
        # the job store's claim makes a duplicate delivery harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # kombu's own Redis pool: acks of many concurrent late-acked tasks need connections
        broker_transport_options={
            "visibility_timeout": 2 * 3600,
            "max_connections": settings.redis_max_connections,
        },
        broker_pool_limit=100,
    )
    if tls_options(settings):
        app.conf.broker_use_ssl = {"ssl_cert_reqs": CERT_REQS[settings.redis_ssl_cert_reqs]}
    return app

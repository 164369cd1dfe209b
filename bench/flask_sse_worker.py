"""Baseline (b), worker side: a Celery task that streams the upstream into flask-sse.

Reads the upstream exactly as Sluice's worker does (``bench.upstream_client``: pooled
``requests`` session, ``iter_content``, Sluice's SSE decoder) and calls flask-sse's
``sse.publish({"content": …}, type="delta", channel=<id>)`` per delta, then
``type="done"`` (or ``type="error"``). flask-sse's ``publish`` is used as shipped: it
builds a new Redis client (and so opens a new connection) on every call.

``celery --app bench.flask_sse_worker worker --pool gevent --concurrency 1000 --queues …``
"""

from __future__ import annotations

import os

from celery import Celery
from flask import Flask
from flask_sse import sse

from bench.upstream_client import make_session, read_contents

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_FLASK_SSE_QUEUE", "bench-flask-sse")
BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8091/v1").rstrip("/")

app = Celery("bench-flask-sse", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

# flask-sse reads REDIS_URL from the current Flask app's config
flask_app = Flask(__name__)
flask_app.config["REDIS_URL"] = REDIS_URL
SESSION = make_session(BASE_URL, pool_size=2000)


@app.task(name="bench.flask_sse.relay", ignore_result=True)
def relay(channel: str, model: str) -> None:
    with flask_app.app_context():
        try:
            for batch in read_contents(SESSION, BASE_URL, model):
                for content in batch:
                    sse.publish({"index": 0, "content": content}, type="delta", channel=channel)
        except Exception as exc:
            error = {"message": f"{type(exc).__name__}: {exc}"}
            sse.publish({"error": error}, type="error", channel=channel)
            return
        sse.publish({}, type="done", channel=channel)

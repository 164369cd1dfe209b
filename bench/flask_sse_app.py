"""Baseline (b), web side: the ``flask-sse`` extension (singingwolfboy) relaying deltas.

``GET /stream?channel=<id>`` is flask-sse's own blueprint, unmodified: each open stream
holds its own Redis pub/sub connection and relays what is published on its channel.
flask-sse keeps no history, so a client must be subscribed before the job starts: the
benchmark's client opens ``/stream`` first, then ``POST /start`` with ``{"channel",
"model"}``, which waits until Redis reports a subscriber on the channel (``PUBSUB
NUMSUB``, polled from 2 ms apart backing off to 50 ms, at most 10 s) and only then
enqueues the Celery task (``bench.flask_sse_worker``). Without that barrier, early deltas
would be lost whenever the subscription is slower than the task (under load it is).

flask-sse also never ends a stream: the client closes it after the ``done`` event, and
the server's greenlet stays parked on its pub/sub connection until the process stops
(flask-sse has no heartbeat to notice the client left). Served like Sluice's gateway:
``gunicorn --config gunicorn.conf.py bench.flask_sse_app:app``.
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, Response, jsonify, request
from flask_sse import sse

from bench.flask_sse_worker import QUEUE, relay

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app.register_blueprint(sse, url_prefix="/stream")
# the barrier's own client: a blocking pool, so 1,000 waiting starts queue for connections
# instead of failing (redis-py's default pool refuses a 101st connection)
REDIS = redis.Redis(
    connection_pool=redis.BlockingConnectionPool.from_url(
        app.config["REDIS_URL"], max_connections=200, timeout=10
    )
)
SUBSCRIBE_WAIT = 10.0


def _subscribed(channel: str) -> bool:
    """Poll PUBSUB NUMSUB, from 2 ms apart backing off to 50 ms, at most SUBSCRIBE_WAIT."""
    deadline, delay = time.monotonic() + SUBSCRIBE_WAIT, 0.002
    while time.monotonic() < deadline:
        if REDIS.pubsub_numsub(channel)[0][1] > 0:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False


@app.post("/start")
def start() -> tuple[Response, int]:
    body = request.get_json(force=True, silent=True) or {}
    channel, model = str(body.get("channel") or ""), str(body.get("model") or "bench")
    if not channel:
        return jsonify({"error": "channel is required"}), 400
    if not _subscribed(channel):
        return jsonify({"error": "no subscriber on the channel"}), 409
    relay.apply_async(args=[channel, model], queue=QUEUE)
    return jsonify({"channel": channel, "status": "queued"}), 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

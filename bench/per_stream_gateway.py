"""The gateway with one Redis pub/sub connection per stream: the benchmark's "before".

Sluice's gateway shares one pub/sub connection per process among all its streams
(``gateway/hub.py``). To measure what that buys, the benchmark also runs the gateway as
flask-sse and most relays do, each stream subscribing on a connection of its own:
``gunicorn … bench.per_stream_gateway:app``. Not part of the product.
"""

from __future__ import annotations

import time

import redis

from gateway import create_app
from gateway.services import Services


class OwnSubscription:
    """A Redis pub/sub connection of one stream's own, confirmed before it is used."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.stale = False
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(channel)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                return
        self.pubsub.close()
        raise redis.TimeoutError("no subscription confirmation from Redis")

    def get(self, timeout: float) -> list[str] | None:
        # wake at least every second: a draining process must notice
        message = self.pubsub.get_message(timeout=min(timeout, 1.0))
        if message is not None and message["type"] == "message":
            return [message["data"]]
        return None

    def close(self) -> None:
        self.pubsub.close()


app = create_app()
_services: Services = app.extensions["sluice"]
_services.subscribe = lambda channel: OwnSubscription(_services.redis, channel)

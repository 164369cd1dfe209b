"""kombu's Redis transport, without a new redis-py client object for every operation.

kombu's Redis channel builds a ``redis.Redis`` around its connection pool each time it
needs one that is not its consumer's: to publish a message (the gateway's ``send_task``),
and twice per message a worker receives (the unacked bookkeeping of late acks, and the
ack). With redis-py 8, building one copies its table of ~250 response callbacks: it was
7 % of a worker's CPU per job and 4 % of the gateway's per submission (py-spy, 1,000 jobs).
A client is only a handle on the pool (the connections are the pool's), so this channel
builds one per pool and hands it out every time; kombu's behaviour is otherwise unchanged.

Used through Celery's ``broker_transport`` setting (``sluice.queue.make_celery``); the
broker URL (``redis://`` or ``rediss://``) still says where Redis is and how to reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "sluice.broker:Transport"


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            # the first use, or kombu replaced the pool (after a disconnect)
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel

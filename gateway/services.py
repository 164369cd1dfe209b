"""The objects one gateway process shares across requests (Redis, job store, queue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import redis
from celery import Celery
from flask import current_app
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from gateway.access import AccessControl
from gateway.feed import JobFeed, Subscribe
from gateway.hub import Hub
from gateway.limits import client_key
from gateway.shard_hub import ShardedHub
from gateway.stream_quota import StreamQuota, reserve
from gateway.submit import QueueGauge, SubmissionGate
from sluice.broker import Broker, make_broker
from sluice.keyvault import KeyVault, vault_for
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from sluice.task_queue import make_celery


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    celery: Celery
    broker: Broker  # what the gateway reads from the job queue's broker (depth, readiness)
    vault: KeyVault | None
    access: AccessControl
    hub: Hub
    submissions: SubmissionGate
    subscribe: Subscribe  # how a feed subscribes to its job's channel: through the hub
    streams: StreamQuota  # open streams per client on this process
    queue_gauge: QueueGauge = field(init=False)  # the broker's queue depth, for admission

    def __post_init__(self) -> None:
        self.queue_gauge = QueueGauge(self.broker)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        client = make_redis(settings)
        vault = vault_for(settings.secret_key, settings.max_job_age)
        store = JobStore(client, settings)
        # no health-check PINGs: the hub's one reader must be the only one on its socket;
        # no retries: the hub reconnects itself, and marks listeners stale
        hub_client = make_redis(settings, health_check_interval=0, retry=Retry(NoBackoff(), 0))
        hub: Hub
        if settings.redis_cluster:  # sharded pub/sub: one subscriber connection per master
            hub = ShardedHub(cast("RedisCluster", hub_client), f"{settings.key_prefix}:hub")
        else:
            hub = Hub(hub_client, f"{settings.key_prefix}:hub")
        access = AccessControl(settings)
        gate = SubmissionGate(settings.submit_concurrency)
        celery = make_celery(settings)
        broker = make_broker(settings, client)
        streams = StreamQuota(settings.max_streams_per_client)
        return cls(
            settings, client, store, celery, broker, vault, access, hub, gate, hub.subscribe,
            streams,
        )  # fmt: skip

    def reserve_stream(self) -> None:
        """Claim this request's place among its client's open streams (429 past
        ``SLUICE_MAX_STREAMS_PER_CLIENT``), before its job or its feed exists."""
        reserve(self.streams, client_key())

    def feed(self, job_id: str, after: int) -> JobFeed:
        heartbeat = self.settings.heartbeat_interval
        return JobFeed(self.store, job_id, after, heartbeat, self.subscribe)


def services() -> Services:
    services: Services = current_app.extensions["sluice"]
    return services

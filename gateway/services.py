"""The objects one gateway process shares across requests (Redis, job store, queue)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from sluice.jobs import JobStore
from sluice.queue import make_celery
from sluice.redis_conn import make_redis
from sluice.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    celery: Celery

    @classmethod
    def build(cls, settings: Settings) -> Services:
        client = make_redis(settings)
        return cls(settings, client, JobStore(client, settings), make_celery(settings))


def services() -> Services:
    return current_app.extensions["sluice"]

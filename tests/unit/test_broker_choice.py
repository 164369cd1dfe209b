"""Which transport Celery gets for which broker URL (sluice/task_queue.py, sluice/broker.py):
a ``redis://`` or ``rediss://`` broker keeps Sluice's own kombu Redis transport, an
``amqp://`` one gets Celery's stock py-amqp transport with quorum queues, publisher confirms
and late acks. Nothing connects: kombu builds a transport without opening a socket."""

from __future__ import annotations

import pytest
from kombu.transport import pyamqp

from sluice.broker import AmqpBroker, RedisBroker, broker_kind, broker_url, make_broker, safe_url
from sluice.settings import Settings
from sluice.task_queue import Transport, make_celery

AMQP = "amqp://sluice:s3cret@rabbit.internal:5672/jobs"


@pytest.fixture(autouse=True)
def _no_broker_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery itself prefers the environment's CELERY_BROKER_URL to the app's broker."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


def transport_of(settings: Settings) -> object:
    app = make_celery(settings)
    return app.connection_for_write().transport


def test_a_redis_broker_url_uses_sluices_transport() -> None:
    for settings in (
        Settings(redis_url="redis://127.0.0.1:6379/0"),
        Settings(redis_url="redis://127.0.0.1:6379/0", celery_broker_url="redis://other:6380/1"),
        Settings(redis_url="rediss://u:p@redis.example:6380/0", redis_ssl_cert_reqs="none"),
    ):
        assert isinstance(transport_of(settings), Transport), settings
        assert broker_kind(broker_url(settings)) == "redis"
    app = make_celery(Settings(celery_broker_url="redis://other:6380/1"))
    assert app.conf.broker_url == "redis://other:6380/1"  # CELERY_BROKER_URL, not REDIS_URL
    assert app.conf.broker_transport_options["visibility_timeout"] == 7200


def test_an_amqp_broker_url_uses_py_amqp_with_quorum_queues_confirms_and_late_acks() -> None:
    settings = Settings(celery_broker_url=AMQP, queue="jobs-q")
    transport = transport_of(settings)
    assert isinstance(transport, pyamqp.Transport) and not isinstance(transport, Transport)
    app = make_celery(settings)
    conf = app.conf
    assert conf.broker_url == AMQP and conf.broker_transport is None
    assert conf.broker_transport_options["confirm_publish"] is True
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    [queue] = conf.task_queues
    assert queue.name == "jobs-q" and queue.routing_key == "jobs-q"
    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert queue.durable and not queue.auto_delete and not queue.exclusive
    # a queue Celery creates because it is missing (another deployment's) is a quorum one too
    missing = app.amqp.queues["another-q"]
    assert missing.queue_arguments == {"x-queue-type": "quorum"}


def test_the_brokers_sluice_reads_follow_the_url() -> None:
    amqp_broker = make_broker(Settings(celery_broker_url=AMQP), redis_client=None)  # type: ignore[arg-type]
    assert isinstance(amqp_broker, AmqpBroker) and amqp_broker.kind == "amqp"
    assert amqp_broker.url == "amqp://sluice@rabbit.internal:5672/jobs"  # no password in logs
    sentinel = object()
    redis_broker = make_broker(Settings(), redis_client=sentinel)  # type: ignore[arg-type]
    assert isinstance(redis_broker, RedisBroker) and redis_broker.client is sentinel


def test_urls_are_logged_without_their_password_and_odd_schemes_are_refused() -> None:
    assert safe_url("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest@127.0.0.1:5672//"
    assert safe_url("redis://:pw@h:6379/0") == "redis://h:6379/0"
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"
    with pytest.raises(ValueError, match="unsupported scheme"):
        broker_kind("sqs://key@region")

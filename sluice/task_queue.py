"""The Celery application both sides share: the gateway sends by task name, the worker runs.

The gateway never imports the worker's code: it calls ``send_task(RUN_JOB_TASK, ...)``
on an app built from the same settings.

The message is only a doorbell: it carries the job's id (as its task id too), and the
job store holds everything else. A doorbell can go missing (a worker killed between
taking a message and claiming its job leaves it in kombu's ``unacked`` hash for the
visibility timeout, two hours; a kill between ``BRPOP`` and that bookkeeping loses it);
the reaper rings again for such a job (``worker/reaper.py``), and the claim makes a
second ring harmless.

The broker transport (``Transport``, below) is kombu's Redis transport without a new
redis-py client object for every operation. kombu's Redis channel builds a ``redis.Redis``
around its connection pool each time it needs one that is not its consumer's: to publish a
message (the gateway's ``send_task``), and twice per message a worker receives (the unacked
bookkeeping of late acks, and the ack). With redis-py 8, building one copies its table of
~250 response callbacks: it was 7 % of a worker's CPU per job and 4 % of the gateway's per
submission (py-spy, 1,000 jobs). A client is only a handle on the pool (the connections are
the pool's), so this channel builds one per pool and hands it out every time; kombu's
behaviour is otherwise unchanged. ``make_celery`` sets it as Celery's ``broker_transport``;
the broker URL (``redis://`` or ``rediss://``) still says where Redis is and how to reach it.

The broker is ``CELERY_BROKER_URL``, else ``REDIS_URL``. An ``amqp://`` (or ``amqps://``)
URL gets Celery's stock py-amqp transport instead, with quorum queues, publisher confirms
and late acks (``_on_rabbitmq`` says why each); what Sluice itself reads from the broker
(queue depth, readiness, the reaper's look at the queue's head) is ``sluice/broker.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from sluice.broker import broker_kind, broker_url
from sluice.redis_client import CERT_REQS, sentinel_addresses, tls_options
from sluice.settings import Settings

RUN_JOB_TASK = "sluice.run_job"
# kombu's Redis transport with one redis-py client per pool (``Transport`` below)
TRANSPORT = "sluice.task_queue:Transport"
# the same for a Redis broker found through REDIS_SENTINELS (kombu's SentinelTransport)
SENTINEL_TRANSPORT = "sluice.task_queue:SentinelTransport"
# kombu retries a publish while the broker reconnects: long enough to ride out a Redis
# restart of a few seconds (0.1 + 0.6 + 1.1 + 1.6 + 2 s), as the job store's own retries do
ENQUEUE_RETRY_POLICY = {"max_retries": 5, "interval_start": 0.1, "interval_step": 0.5,
                        "interval_max": 2.0}  # fmt: skip


def enqueue_job(celery: Celery, job_id: str, queue: str) -> None:
    """Send the job's message (its id, also as the task id, so a queue's head names the
    job waiting there); raises when the broker stays unreachable through the retries."""
    celery.send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=queue,
        task_id=job_id,
        retry=True,
        retry_policy=ENQUEUE_RETRY_POLICY,
    )


def job_at_head(client: redis.Redis, queue: str) -> str | None:
    """The id of the job whose message is next in ``queue`` on a Redis broker (kombu
    pushes on the left and pops on the right), None when the queue is empty, "" when the
    message there is not one of ours. (``sluice.broker`` reads it for either broker.)"""
    raw = client.lindex(queue, -1)
    if raw is None:
        return None
    try:
        return str(json.loads(raw)["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


def make_celery(settings: Settings, main: str = "sluice") -> Celery:
    url = broker_url(settings)
    rabbitmq = broker_kind(url) == "amqp"
    celery_url, transport, sentinel_options = (
        (url, "", {}) if rabbitmq else redis_broker(settings, url)
    )
    app = Celery(main, broker=celery_url)
    app.conf.update(
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
        broker_pool_limit=100,
    )
    if rabbitmq:
        _on_rabbitmq(app, settings, main)
        return app
    app.conf.update(
        broker_transport=transport,  # kombu's Redis transport, one client per pool
        # kombu's own Redis pool: acks of many concurrent late-acked tasks need connections
        broker_transport_options={
            "visibility_timeout": 2 * 3600,
            "max_connections": settings.redis_max_connections,
            **sentinel_options,
        },
    )
    if tls_options(settings.with_(redis_url=url)):
        app.conf.broker_use_ssl = {"ssl_cert_reqs": CERT_REQS[settings.redis_ssl_cert_reqs]}
    return app


def job_queue(name: str) -> Queue:
    """A job queue on RabbitMQ: a durable quorum queue (replicated by Raft on a cluster,
    kept on disk, never exclusive or auto-deleted: what quorum queues require) bound to a
    direct exchange of its name, as Celery would declare it otherwise."""
    return Queue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        auto_delete=False,
        exclusive=False,
        queue_arguments={"x-queue-type": "quorum"},
    )


def connection_name(main: str, queue: str) -> str:
    """How RabbitMQ lists a Sluice process's connections (``rabbitmqctl list_connections
    user_provided_name``, the management UI): its role and its queue."""
    return f"{main} queue={queue}"


def _on_rabbitmq(app: Celery, settings: Settings, main: str) -> None:
    """Celery's stock py-amqp transport (the URL's ``amqp://`` picks it), with:

    - **Quorum queues.** ``task_queues`` declares the deployment's queue (``SLUICE_QUEUE``)
      as one; a queue Celery creates because it is missing (a worker started with another
      ``--queues``, the reaper re-ringing a job of another deployment's queue) is one too
      (``task_create_missing_queue_type``). Publishing declares the queue as well, so a
      job sent before any worker started is kept, not dropped as unroutable. Celery sees
      the quorum queue and turns global QoS off (quorum queues have none): the prefetch
      count is per consumer and fixed.
    - **Publisher confirms** (``confirm_publish``): ``send_task`` returns once RabbitMQ has
      the message (on disk, on a quorum of nodes); a refusal or a broken connection raises,
      so the gateway withdraws the job and answers ``503`` instead of losing it silently.
    - **Late acks, prefetch = concurrency** (``worker_prefetch_multiplier=1``, set above):
      a message is acked when its job's attempt ends, so a worker's unacked messages are
      its running jobs plus those about to start, never more than its gevent pool's
      ``--concurrency``. A worker whose pool is full is sent nothing more, and every job
      waiting goes to a worker with a free slot: one long stream holds back no other job
      (a larger multiplier would park jobs behind full pools; a message acked at once would
      let a full worker keep taking them). A worker that dies (its connection closes)
      has its unacked messages redelivered at once by RabbitMQ; a job it had claimed is
      refused by the claim (it is still running under the dead worker's lease) and the
      reaper restarts it when the lease runs out; one it had not claimed yet simply runs.
    - **consumer_timeout**: RabbitMQ closes a channel whose delivery stays unacked longer
      than ``consumer_timeout`` (30 min by default). With late acks a job streaming longer
      would lose its worker's channel: Celery reconnects, the running jobs go on (Celery
      does not cancel them: ``worker_cancel_long_running_tasks_on_connection_loss`` stays
      off), their redelivered messages are skipped by the claim, and their acks on the old
      channel are logged and dropped: no job is lost or run twice, but the worker stops
      taking jobs while it reconnects. Set ``consumer_timeout`` above your longest job
      (``SLUICE_MAX_JOB_AGE``, 6 h, is a bound) in ``rabbitmq.conf``, or per queue with the
      ``consumer-timeout`` policy on RabbitMQ 3.12 and later.
    """
    app.conf.update(
        task_queues=[job_queue(settings.queue)],
        task_create_missing_queues=True,
        task_create_missing_queue_type="quorum",
        task_default_queue_type="quorum",
        task_default_exchange=settings.queue,
        task_default_exchange_type="direct",
        task_default_routing_key=settings.queue,
        broker_transport_options={
            "confirm_publish": True,
            "client_properties": {"connection_name": connection_name(main, settings.queue)},
        },
    )
    if urlsplit(broker_url(settings)).scheme == "amqps":
        app.conf.broker_use_ssl = True


def redis_broker(settings: Settings, url: str) -> tuple[str, str, dict[str, Any]]:
    """The broker URL, transport and extra transport options of a Redis broker at ``url``:
    when that is ``REDIS_URL``'s Redis and ``REDIS_SENTINELS`` is set, kombu's Sentinel
    form (``sentinel://host:port;sentinel://…``, the master by ``master_name``, its
    password and database from ``REDIS_URL``), whose pool asks the Sentinels for the
    master at each new connection and so follows a failover."""
    if not settings.redis_sentinels or url != settings.redis_url:
        return url, TRANSPORT, {}
    parts = urlsplit(settings.redis_url)
    auth = parts.netloc.rpartition("@")[0]
    auth = f"{auth}@" if auth else ""
    db = parts.path or "/0"
    urls = [f"sentinel://{auth}{host}:{port}{db}" for host, port in sentinel_addresses(settings)]
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master}
    if settings.redis_sentinel_password:
        options["sentinel_kwargs"] = {"password": settings.redis_sentinel_password}
    return ";".join(urls), SENTINEL_TRANSPORT, options


# -- the broker transport ------------------------------------------------------------


class SharedClient:
    """The channel's one redis-py client per pool (mixed into kombu's channels)."""

    _shared_client: Any = None
    pool: Any
    _create_client: Any

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


# messages a worker takes from the queue in one round trip after the one BRPOP waited for
# (within its prefetch room): the doorbells of a burst of jobs, taken a batch at a time
MAX_TAKEN_TOGETHER = 100


class BatchQoS(kombu_redis.QoS):
    """kombu's late-ack bookkeeping (each delivered message is in the ``unacked`` hash
    until it is acked), for messages whose bookkeeping a batch wrote before delivering
    them (``book``): their delivery only records them in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._booked: set[str] = set()

    def book(self, client: Any, payloads: list[dict[str, Any]]) -> None:
        """Write the bookkeeping of these messages (as ``append`` would, each) in one round
        trip; a message without the properties it needs is left to ``append``."""
        now = time.time()
        tags = []
        with client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                properties = payload.get("properties") or {}
                tag, delivery = properties.get("delivery_tag"), properties.get("delivery_info")
                if not tag or not isinstance(delivery, dict):
                    continue
                raw = dumps([payload, delivery.get("exchange"), delivery.get("routing_key")])
                pipe.zadd(self.unacked_index_key, {tag: now})
                pipe.hset(self.unacked_key, tag, raw)
                tags.append(tag)
            pipe.execute()
        self._booked.update(tags)

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self._booked:
            self._booked.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # (kombu's in-memory part)
            return
        super().append(message, delivery_tag)


class TakenTogether:
    """kombu's Redis channel (mixed in), taking the messages that wait behind the one
    BRPOP returned a batch at a time.

    kombu reads one message per round trip (BRPOP), then writes its late-ack bookkeeping
    (another round trip), both in the worker's consumer greenlet. In a worker that is
    streaming hundreds of answers, each of those round trips waits for the event loop to
    come round to the consumer again: in the benchmark's burst of 10,000 jobs the worker
    claimed about 90 a second while it had room for all of them (the last one 110 s after
    it was queued), and at 1,000 the last claim came 7 s after the first request. Now,
    when BRPOP returns a message, the messages behind it (up to ``MAX_TAKEN_TOGETHER``,
    and no more than the prefetch limit leaves room for) come with one RPOP and their
    bookkeeping goes out in one pipeline (a message carries its delivery tag from when it
    was published), and only then are they delivered: a few round trips for a hundred
    jobs. What kombu guarantees stays: a message is in the ``unacked`` hash before its
    task can run, and one taken but never booked (a kill in between) is a lost doorbell,
    rung again by the reaper (``worker/reaper.py``), as with kombu's own BRPOP.
    """

    QoS = BatchQoS
    qos: BatchQoS
    connection: Any
    priority_steps: list[int]
    _active_queues: list[str]
    conn_or_acquire: Any
    _q_for_pri: Any

    def _brpop_read(self, **options: Any) -> bool:
        delivered = bool(super()._brpop_read(**options))  # type: ignore[misc]  # (kombu's)
        if delivered:
            self._take_waiting()
        return delivered

    def _take_waiting(self) -> None:
        room = self.qos.can_consume_max_estimate()
        room = MAX_TAKEN_TOGETHER if room is None else min(room, MAX_TAKEN_TOGETHER)
        if room <= 0:
            return
        with self.conn_or_acquire() as client:
            taken: list[tuple[str, bytes]] = []
            for queue in self._active_queues:  # (in kombu's priority order per queue)
                for priority in self.priority_steps:
                    if len(taken) >= room:
                        break
                    key = self._q_for_pri(queue, priority)
                    items = client.rpop(key, room - len(taken)) or []
                    taken += [(queue, item) for item in items]
                    if items:
                        break  # the rest of this queue's priorities wait for the next BRPOP
            if not taken:
                return
            payloads = [(queue, loads(bytes_to_str(item))) for queue, item in taken]
            # booked before any is delivered: none of their tasks can run before it
            self.qos.book(client, [payload for _, payload in payloads])
        for queue, payload in payloads:
            self.connection._deliver(payload, queue)


class Channel(TakenTogether, SharedClient, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(TakenTogether, SharedClient, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel

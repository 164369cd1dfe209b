"""The event log on a real Redis Cluster (``SLUICE_REDIS_CLUSTER``): three masters and
three replicas on loopback (``tests.helpers.cluster``), a gunicorn gateway and Celery
workers on it, the Celery broker the machine's plain Redis (``CELERY_BROKER_URL``: a
cluster cannot be the broker). Streams, resumes, fifty answers at once spread over every
master, and a worker killed mid-answer."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
from redis.cluster import RedisCluster as ClusterClient

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.keys import Keys
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from tests.helpers.cluster import RedisCluster
from tests.helpers.stack import ProcessLogs, Stack
from tests.helpers.support import (
    Received,
    create_job,
    delta,
    follow,
    read_stream,
    running_job,
    text_of,
    upstream_body,
    wait_for_text,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    nodes = RedisCluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def cluster_settings(settings: Settings, cluster: RedisCluster, redis_url: str) -> Settings:
    run = secrets.token_hex(3)
    return settings.with_(
        redis_url=cluster.url,
        redis_cluster=True,
        celery_broker_url=redis_url,  # the machine's plain Redis
        key_prefix=f"{settings.key_prefix}-cluster-{run}",
        queue=f"{settings.queue}-cluster-{run}",
        lease_ttl=3.0,
        reaper_interval=1.0,
    )


@pytest.fixture(scope="module")
def stack(cluster_settings: Settings, process_logs: ProcessLogs) -> Iterator[Stack]:
    stack = Stack(cluster_settings, process_logs, f"cluster-{secrets.token_hex(3)}")
    try:
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def nodes(cluster: RedisCluster) -> Iterator[ClusterClient]:
    client = ClusterClient.from_url(cluster.url, decode_responses=True)
    yield client
    client.close()


def ask(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def test_the_gateway_is_ready_on_the_cluster(stack: Stack) -> None:
    with stack.client() as client:
        ready = client.get("/readyz")
        metrics = client.get("/metrics")  # (sums the 64 lease indexes)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["redis"] == {"status": "ok"}
    assert metrics.status_code == 200 and "sluice_jobs_running 0.0" in metrics.text


def test_a_job_streams_on_the_cluster(stack: Stack, upstream: FakeUpstream) -> None:
    prompt = f"cluster plain {secrets.token_hex(3)}"
    body = {"model": "openai", "messages": ask(prompt), "stream": True}
    with stack.client() as client:
        events = read_stream(client, "/v1/jobs", body=body)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "started" and events[-1].event == "done"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


def test_a_stream_resumes_after_last_event_id(stack: Stack, upstream: FakeUpstream) -> None:
    prompt = f"cluster resume {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(client, model="slow;delay=0.02;words=30", messages=ask(prompt))
        first = read_stream(client, job["events_url"], limit=5)
        rest = read_stream(client, job["events_url"], headers={"Last-Event-ID": str(first[-1].id)})
    events = first + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


@pytest.fixture(scope="module")
def fifty(stack: Stack) -> list[tuple[str, str, list[Received]]]:
    """Fifty jobs streamed at once: (job id, prompt, events)."""
    prompts = [f"cluster fifty {i} {secrets.token_hex(3)}" for i in range(50)]

    def run(prompt: str) -> tuple[str, str, list[Received]]:
        with stack.client() as client:
            job = create_job(client, model="slow;delay=0.02;words=40", messages=ask(prompt))
            return job["id"], prompt, follow(client, job["events_url"])

    with ThreadPoolExecutor(50) as pool:
        return list(pool.map(run, prompts))


def test_fifty_concurrent_answers_are_exact(
    fifty: list[tuple[str, str, list[Received]]], upstream: FakeUpstream
) -> None:
    for _job_id, prompt, events in fifty:
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-1].event == "done"
        assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


def test_jobs_spread_over_every_master(
    fifty: list[tuple[str, str, list[Received]]],
    cluster: RedisCluster,
    cluster_settings: Settings,
    nodes: ClusterClient,
) -> None:
    keys = Keys(cluster_settings.key_prefix, sharded=True)
    owners = {
        nodes.nodes_manager.get_node_from_slot(nodes.keyslot(keys.job(job_id))).port
        for job_id, _prompt, _events in fifty
    }
    masters = cluster.master_ports()
    assert len(masters) == 3 and owners == set(masters)
    for job_id, _prompt, events in fifty:  # each job's log is on its bucket's master
        assert nodes.llen(keys.events(job_id)) == len(events)
    # the gateway followed them with SSUBSCRIBE on each master (sharded pub/sub)
    for port in masters:
        stats = cluster.cli(port, "info", "commandstats")
        assert "cmdstat_ssubscribe:calls=" in stats, (port, stats)


def test_a_worker_killed_mid_answer_restarts_the_job_on_another(
    stack: Stack, upstream: FakeUpstream
) -> None:
    prompt = f"cluster survive {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(client, model="slow;delay=0.03;words=60", messages=ask(prompt))
        wait_for_text(client, job["url"], 30, timeout=20)
        victim = stack.workers[0]
        stack.start_worker()  # the one that takes over
        killed_at = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)  # no shutdown, no ack, no goodbye
        victim.wait(10)
        events = follow(client, job["events_url"])
        recovery_s = time.monotonic() - killed_at
        poll = client.get(job["url"]).json()
    kinds = [e.event for e in events]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert kinds.count("reset") == 1 and kinds[-1] == "done"
    assert events[kinds.index("reset")].data == {"reason": "worker_lost", "attempt": 2}
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    assert poll["status"] == "succeeded" and poll["attempt"] == 2
    assert recovery_s < 20


def test_a_cluster_is_refused_as_the_broker(cluster_settings: Settings) -> None:
    from sluice.task_queue import make_celery

    with pytest.raises(ValueError, match="CELERY_BROKER_URL"):
        make_celery(cluster_settings.with_(celery_broker_url=None))


def test_the_rate_limits_count_on_the_cluster(
    cluster_settings: Settings, nodes: ClusterClient
) -> None:
    from gateway.limits import limiter_storage

    uri, _options = limiter_storage(cluster_settings)
    assert uri.startswith("redis+cluster://127.0.0.1:")
    from limits import parse, storage, strategies

    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(uri))
    limit, who = parse("2/minute"), f"cluster-{secrets.token_hex(3)}"
    assert [limiter.hit(limit, who) for _ in range(3)] == [True, True, False]


def test_the_watermark_waits_on_each_master_and_follows_a_moved_slot(
    cluster_settings: Settings, nodes: ClusterClient
) -> None:
    """``SLUICE_REDIS_MIN_REPLICAS=1`` on the cluster: the appends of jobs on every master
    go out with a probe write and WAIT on each master's own connection, and each master's
    WAIT covers its jobs; a stale slot map (MOVED) is refreshed and the group sent again,
    its WAIT with it (``sluice.node_pipelines``)."""
    settings = cluster_settings.with_(redis_min_replicas=1)
    store = JobStore(make_redis(settings), settings)
    jobs = [running_job(store) for _ in range(9)]
    manager = cast("ClusterClient", store.redis).nodes_manager
    masters = {manager.get_node_from_slot(nodes.keyslot(store.keys.job(j))).name for j in jobs}
    calls = [(j, store.append_call(j, delta("a"), attempt=1, expect_last=1)) for j in jobs]
    waited = store.send_and_wait(calls)
    assert waited.replies == [2] * len(jobs)
    assert waited.covered == set(jobs) and set(waited.acks) == masters
    assert all(acked == 1 for acked in waited.acks.values()), waited.acks

    # the client's slot map sends the first job's slot to another master: MOVED, then
    # the group is sent again to the right one
    slot = nodes.keyslot(store.keys.job(jobs[0]))
    right = manager.get_node_from_slot(slot)
    primaries = [node for node in manager.nodes_cache.values() if node.server_type == "primary"]
    manager.slots_cache[slot] = [next(node for node in primaries if node.name != right.name)]
    calls = [(j, store.append_call(j, delta("b"), attempt=1, expect_last=2)) for j in jobs]
    waited = store.send_and_wait(calls, waiting=jobs)
    assert waited.replies == [3] * len(jobs)
    assert waited.covered == set(jobs)
    assert manager.get_node_from_slot(slot).name == right.name  # (refreshed)


def test_a_master_killed_mid_answer_fails_over_and_the_answer_completes(
    stack: Stack,
    cluster: RedisCluster,
    cluster_settings: Settings,
    nodes: ClusterClient,
    upstream: FakeUpstream,
) -> None:
    """The master that holds the job's bucket is SIGKILLed while the job streams; its
    replica takes over (cluster-node-timeout 2 s), the worker's appends and the gateway's
    subscriber follow it, and the client's stream resumes to the exact answer. (Last in
    the module: the cluster has one master without a replica after it.)"""
    prompt = f"cluster failover {secrets.token_hex(3)}"
    keys = Keys(cluster_settings.key_prefix, sharded=True)
    with stack.client() as client:
        job = create_job(client, model="slow;delay=0.05;words=120", messages=ask(prompt))
        owner = nodes.nodes_manager.get_node_from_slot(nodes.keyslot(keys.job(job["id"]))).port
        first = read_stream(client, job["events_url"], limit=10)  # live, mid-answer
        killed_at = time.monotonic()
        cluster.kill(owner)
        events = first + follow(client, job["events_url"], after=first)
        resumed_s = time.monotonic() - killed_at
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    assert owner not in cluster.master_ports()  # its replica took over
    assert resumed_s < 30

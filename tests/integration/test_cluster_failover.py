"""The replicated watermark on a Redis Cluster (``SLUICE_REDIS_MIN_REPLICAS=1``): a master
whose replica stopped receiving its writes goes on acknowledging appends, then dies, and
the replica that takes over has a shorter log than the workers wrote. Clients saw only what
the replica had (each master's WAIT, ``sluice.node_pipelines``), so the jobs on that master
restart with ``reset`` after their logs' surviving end, and every client ends with exactly
its answer. A cluster of its own (three masters, three replicas): the test leaves it with a
master that was killed and came back as a replica."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis.cluster import RedisCluster as ClusterClient

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.keys import Keys
from sluice.settings import Settings
from tests.helpers.cluster import RedisCluster
from tests.helpers.stack import ProcessLogs, Stack, isolated_stack
from tests.helpers.support import (
    Received,
    create_job,
    follow,
    text_of,
    upstream_body,
    wait_for_text,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    nodes = RedisCluster(tmp_path)
    try:
        yield nodes.start()
    finally:
        nodes.stop()


def watermarked_stack(
    settings: Settings, process_logs: ProcessLogs, cluster: RedisCluster, redis_url: str
) -> Stack:
    return isolated_stack(
        settings,
        process_logs,
        "cluster-wm",
        redis_url=cluster.url,
        redis_cluster=True,
        redis_min_replicas=1,
        redis_wait_timeout_ms=300,
        celery_broker_url=redis_url,  # the machine's plain Redis
        lease_ttl=10.0,  # (outlives the failover: the worker finds the lost writes itself)
        reaper_interval=1.0,
    )


def replica_of(cluster: RedisCluster, master: int) -> int:
    info = cluster.cli(master, "info", "replication")
    line = next(line for line in info.splitlines() if line.startswith("slave0:"))
    return int(dict(part.split("=", 1) for part in line[7:].split(","))["port"])


def test_writes_a_cluster_master_never_replicated_are_neither_a_gap_nor_a_repeat(
    settings: Settings,
    process_logs: ProcessLogs,
    cluster: RedisCluster,
    redis_url: str,
    upstream: FakeUpstream,
) -> None:
    stack = watermarked_stack(settings, process_logs, cluster, redis_url)
    nodes = ClusterClient.from_url(cluster.url, decode_responses=True)
    keys = Keys(stack.settings.key_prefix, sharded=True)
    prompts = [f"cluster lost {i} {secrets.token_hex(3)}" for i in range(6)]
    try:
        with stack.client() as client:
            jobs = [
                create_job(client, model="slow;delay=0.05;words=100",
                           messages=[{"role": "user", "content": prompt}])
                for prompt in prompts
            ]  # fmt: skip
            owners = [
                nodes.nodes_manager.get_node_from_slot(nodes.keyslot(keys.job(str(j["id"])))).port
                for j in jobs
            ]
            victim = Counter(owners).most_common(1)[0][0]  # the master with the most jobs
            replica = replica_of(cluster, victim)
            for job in jobs:
                wait_for_text(client, str(job["url"]), 10, timeout=20)

            def one(job: dict[str, object]) -> list[Received]:
                with stack.client() as own:
                    return follow(own, str(job["events_url"]), max_reconnects=60)

            with ThreadPoolExecutor(len(jobs)) as pool:
                futures = [pool.submit(one, job) for job in jobs]
                time.sleep(0.5)  # every client is streaming
                # the replica's link goes down and stays down (its handshake's AUTH fails):
                # the master acknowledges appends the replica never gets
                cluster.cli(replica, "config", "set", "masterauth", "not-the-password")
                cluster.cli(replica, "client", "kill", "type", "master")
                wait_until(
                    lambda: (
                        "master_link_status:down" in cluster.cli(replica, "info", "replication")
                    ),
                    5,
                )
                time.sleep(1.5)  # (five WAITs time out meanwhile)
                killed_at = time.monotonic()
                cluster.kill(victim)
                wait_until(lambda: replica in cluster.master_ports(), 20)
                promoted_s = time.monotonic() - killed_at
                cluster.cli(replica, "config", "set", "masterauth", "")
                # a replica again (the watermark waits for one): the killed node rejoins as
                # its replica's
                cluster.start_node(victim)
                answers = [future.result() for future in futures]
            done_s = time.monotonic() - killed_at
    finally:
        nodes.close()
        stack.stop()
    for prompt, events in zip(prompts, answers, strict=True):
        assert [e.id for e in events] == list(range(1, len(events) + 1)), [e.id for e in events]
        assert events[-1].event == "done", events[-3:]
        assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    for owner, events in zip(owners, answers, strict=True):
        resets = [e.data for e in events if e.event == "reset"]
        if owner == victim:  # its log lost what the replica never got: restarted
            # (by its worker, which found the log shorter than its confirmed writes; or by
            # a reaper, if its lease ran out during the failover)
            assert resets and resets[-1]["reason"] in ("redis_lost_writes", "worker_lost"), resets
        else:  # the other masters' jobs went on
            assert resets == [], resets
    reasons = [e.data["reason"] for events in answers for e in events if e.event == "reset"]
    print(f"cluster lost writes: promoted in {promoted_s:.1f}s, all done in {done_s:.1f}s, "
          f"{owners.count(victim)}/{len(jobs)} jobs on the killed master, "
          f"resets {reasons}")  # fmt: skip

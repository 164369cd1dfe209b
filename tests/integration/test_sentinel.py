"""The stack on a Sentinel-managed Redis (issue #17): one master, one replica, three
Sentinels (``tests/helpers/sentinel.py``), a gateway and workers configured with
``REDIS_SENTINELS`` only (``REDIS_URL``'s host is the first master, which a stack that
ignored the Sentinels would stay on). The tests share one topology and one stack, in this
order: the failover is last, since it leaves the topology without a replica."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.settings import Settings
from tests.helpers.sentinel import SentinelTopology
from tests.helpers.stack import ProcessLogs, Stack, isolated_stack
from tests.helpers.support import (
    Received,
    create_job,
    follow,
    read_stream,
    text_of,
    upstream_body,
    wait_for_text,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(Path(tmp_path_factory.mktemp("sentinel")))
    yield topology
    topology.stop()


def sentinel_stack(
    settings: Settings,
    process_logs: ProcessLogs,
    topology: SentinelTopology,
    lease_ttl: float = 6.0,
) -> Stack:
    return isolated_stack(
        settings, process_logs, "sentinel",
        redis_url=topology.url, redis_sentinels=topology.sentinels,
        lease_ttl=lease_ttl, reaper_interval=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(
    settings: Settings, process_logs: ProcessLogs, topology: SentinelTopology
) -> Iterator[Stack]:
    stack = sentinel_stack(settings, process_logs, topology)
    yield stack
    stack.stop()


def ask(client: httpx.Client, model: str, prompt: str) -> dict[str, object]:
    return create_job(client, model=model, messages=[{"role": "user", "content": prompt}])


def assert_exact(events: list[Received], upstream: FakeUpstream, prompt: str) -> None:
    """Ids without a gap or a repeat, one terminal ``done``, the answer since the last
    reset exactly the upstream's."""
    assert [e.id for e in events] == list(range(1, len(events) + 1)), [e.id for e in events]
    assert events[-1].event == "done", events[-3:]
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


def test_a_stream_through_sentinel(stack: Stack, upstream: FakeUpstream) -> None:
    prompt = f"sentinel plain {secrets.token_hex(3)}"
    with stack.client() as client:
        job = ask(client, "openai", prompt)
        events = read_stream(client, str(job["events_url"]))
        assert client.get("/readyz").status_code == 200
    assert_exact(events, upstream, prompt)
    for process in (stack.gateway.process, stack.workers[0]):
        assert process is not None
        assert "event=redis.master name=mymaster" in process.log_path.read_text()


def test_resume_with_last_event_id(stack: Stack, upstream: FakeUpstream) -> None:
    prompt = f"sentinel resume {secrets.token_hex(3)}"
    with stack.client() as client:
        job = ask(client, "slow;delay=0.01;words=40", prompt)
        seen = read_stream(client, str(job["events_url"]), limit=6)
        rest = read_stream(client, str(job["events_url"]), {"Last-Event-ID": str(seen[-1].id)})
    assert_exact(seen + rest, upstream, prompt)


def test_fifty_concurrent_exact_answers(stack: Stack, upstream: FakeUpstream) -> None:
    prompts = [f"sentinel burst {i} {secrets.token_hex(3)}" for i in range(50)]

    def one(prompt: str) -> list[Received]:
        with stack.client() as client:
            job = ask(client, "openai", prompt)
            return follow(client, str(job["events_url"]))

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, prompts))
    for prompt, events in zip(prompts, answers, strict=True):
        assert_exact(events, upstream, prompt)


def test_a_worker_killed_mid_answer_restarts_the_job(stack: Stack, upstream: FakeUpstream) -> None:
    prompt = f"sentinel worker killed {secrets.token_hex(3)}"
    with stack.client() as client:
        job = ask(client, "slow;delay=0.03;words=60", prompt)
        wait_for_text(client, str(job["url"]), 20, timeout=20)
        victim = stack.workers.pop(0)
        stack.start_worker()  # the one that takes over
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        events = follow(client, str(job["events_url"]))
    assert [e.event for e in events].count("reset") == 1
    assert_exact(events, upstream, prompt)


def test_a_failover_mid_answer_loses_and_repeats_nothing(
    stack: Stack, upstream: FakeUpstream, topology: SentinelTopology
) -> None:
    """SIGKILL the master while ten slow answers stream: the replica is promoted, and each
    client, reconnecting as EventSource does, ends with exactly its answer (since the last
    reset, if its job restarted), with no id twice or missing; ``/readyz`` recovers."""
    answers, prompts = stream_through_a_failover(stack, topology, "failover", 10)
    for prompt, events in zip(prompts, answers, strict=True):
        assert_exact(events, upstream, prompt)


def test_writes_the_master_never_replicated_are_neither_a_gap_nor_a_repeat(
    settings: Settings, process_logs: ProcessLogs, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The replica stops receiving the replication stream while the master goes on
    acknowledging appends (longer than a WAIT's timeout), then the master dies: the
    promoted replica's logs end before what the workers wrote. Clients saw only what the
    replica had (the replicated watermark), so each job restarts with ``reset`` after its
    surviving end and every client ends with exactly its answer. (Without the watermark,
    clients see events the replica never got, then other events under the same ids.)"""
    topology = SentinelTopology(tmp_path)
    # the lease outlives the frozen replication and the failover (the promoted replica's
    # leases are as old as the freeze): the workers find the lost writes themselves, where
    # a 6 s lease sometimes lapsed first and the reaper restarted the job as worker_lost
    stack = sentinel_stack(settings, process_logs, topology, lease_ttl=10.0)
    try:
        answers, prompts = stream_through_a_failover(stack, topology, "lost", 5, freeze=2.5)
    finally:
        stack.stop()
        topology.stop()
    for prompt, events in zip(prompts, answers, strict=True):
        assert_exact(events, upstream, prompt)
    for events in answers:
        resets = [e.data for e in events if e.event == "reset"]
        assert resets and resets[-1]["reason"] == "redis_lost_writes", resets


def stream_through_a_failover(
    stack: Stack, topology: SentinelTopology, name: str, jobs_n: int, freeze: float = 0.0
) -> tuple[list[list[Received]], list[str]]:
    prompts = [f"sentinel {name} {i} {secrets.token_hex(3)}" for i in range(jobs_n)]
    with stack.client() as client:
        jobs = [ask(client, "slow;delay=0.05;words=100", prompt) for prompt in prompts]
        for job in jobs:
            wait_for_text(client, str(job["url"]), 10, timeout=20)

        def one(job: dict[str, object]) -> list[Received]:
            with stack.client() as own:
                return follow(own, str(job["events_url"]), max_reconnects=60)

        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [pool.submit(one, job) for job in jobs]
            time.sleep(0.5)  # every client is streaming
            if freeze:
                topology.proxy.freeze()  # the master acknowledges what the replica never gets
                time.sleep(freeze)
            killed_at = time.monotonic()
            old = topology.kill_master()
            topology.wait_failover(old)
            promoted_s = time.monotonic() - killed_at
            # a replica again (the watermark waits for one): the crashed node restarted
            topology.restart_first_master()
            answers = [future.result() for future in futures]
        done_s = time.monotonic() - killed_at

        def ready() -> bool:
            try:
                return client.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 20)
    restarted = sum(1 for events in answers if any(e.event == "reset" for e in events))
    print(f"{name}: promoted in {promoted_s:.1f}s, all done in {done_s:.1f}s, "
          f"{restarted}/{len(answers)} jobs restarted")  # fmt: skip
    return answers, prompts

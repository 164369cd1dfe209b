"""RabbitMQ as the broker (``CELERY_BROKER_URL=amqp://…``), on the machine's real RabbitMQ:
streams, resumes, 50 jobs at once, a worker SIGKILLed mid-answer, the broker dropping every
connection of the stack mid-answer, and the queue depth the gateway reads from it.

The broker is shared (other suites, a developer's own queues): each stack has a queue of
its own (the session's queue name plus a random suffix), deleted with its exchange at the
end, and the connection drop closes only this stack's connections (Sluice names them:
``sluice.task_queue.connection_name``). Without a RabbitMQ on ``SLUICE_TEST_AMQP_URL``
(``amqp://guest:guest@127.0.0.1:5672//``) these tests are skipped, but fail under CI
(``.ci/run`` starts one)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.broker import AmqpBroker
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from sluice.task_queue import make_celery
from tests.helpers.stack import ProcessLogs, Stack, isolated_stack
from tests.helpers.support import (
    ARTIFACTS,
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
MEASURED = ARTIFACTS / "reliability.json"
AMQP_URL = os.environ.get("SLUICE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _rabbitmq_answers() -> bool:
    parts = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _rabbitmq() -> None:
    if not _rabbitmq_answers():
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is needed at {AMQP_URL} (.ci/run starts one)")
        pytest.skip(f"needs RabbitMQ at {AMQP_URL} (apt-get install rabbitmq-server)")


def record(name: str, **figures: object) -> None:
    """As tests/integration/test_faults.py does: into test-artifacts/reliability.json."""
    MEASURED.parent.mkdir(exist_ok=True)
    data = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    data[name] = figures
    MEASURED.write_text(json.dumps(data, indent=2, sort_keys=True))


def delete_queue(name: str) -> None:
    app = make_celery(Settings(celery_broker_url=AMQP_URL, queue=name))
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_delete(name)
        channel.exchange_delete(name)


@pytest.fixture
def amqp_stack(settings: Settings, process_logs: ProcessLogs) -> Iterator[Callable[..., Stack]]:
    """``make_stack`` on RabbitMQ: its queue (and exchange) deleted at the end."""
    stacks: list[Stack] = []

    def make(workers: int = 1, **overrides: object) -> Stack:
        stack = isolated_stack(
            settings, process_logs, "amqp", workers, celery_broker_url=AMQP_URL, **overrides
        )
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
        delete_queue(stack.settings.queue)


def exact(events: list[Received], upstream: FakeUpstream, prompt: str) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done", events[-3:]
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


def ask(client: httpx.Client, prompt: str, model: str = "openai;words=12") -> dict:
    return create_job(client, model=model, messages=[{"role": "user", "content": prompt}])


def test_streams_resumes_and_50_concurrent_answers_are_exact(
    amqp_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    stack = amqp_stack(workers=1)
    log = stack.workers[0].log_path.read_text(errors="replace")
    assert "broker amqp://guest@127.0.0.1:5672// (amqp)" in log and "guest:guest" not in log
    assert "celery_delayed" not in log  # no native delayed delivery declared
    with stack.client() as client:
        prompt = f"plain {secrets.token_hex(3)}"
        job = ask(client, prompt, model="slow;delay=0.02;words=20")
        first = read_stream(client, job["events_url"], limit=4)
        rest = read_stream(client, job["events_url"], headers={"Last-Event-ID": str(first[-1].id)})
        exact(first + rest, upstream, prompt)
        assert rest[0].id == first[-1].id + 1  # resumed after event 4, nothing repeated

        prompts = [f"many {i} {secrets.token_hex(3)}" for i in range(50)]
        with ThreadPoolExecutor(16) as pool:
            jobs = list(pool.map(lambda p: ask(client, p), prompts))
            finished = list(pool.map(lambda j: follow(client, j["events_url"]), jobs))
    for prompt, events in zip(prompts, finished, strict=True):
        exact(events, upstream, prompt)


def test_a_worker_killed_mid_answer_restarts_the_job_on_another(
    amqp_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    """RabbitMQ redelivers the dead worker's unacked message at once: the other worker's
    claim refuses it (the job still runs under the dead lease), and its reaper restarts the
    job when the lease runs out, with ``reset``."""
    stack = amqp_stack(workers=1, lease_ttl=3.0, reaper_interval=1.0)
    prompt = f"survive amqp {secrets.token_hex(3)}"
    with stack.client() as client:
        job = ask(client, prompt, model="slow;delay=0.03;words=60")
        wait_for_text(client, job["url"], 30, timeout=20)
        victim = stack.workers[0]
        stack.start_worker()
        killed_at = time.monotonic()
        os.killpg(victim.pid, 9)
        victim.wait(10)
        events = follow(client, job["events_url"])
        recovery_s = time.monotonic() - killed_at
        poll = client.get(job["url"]).json()
    kinds = [e.event for e in events]
    assert kinds.count("reset") == 1
    assert events[kinds.index("reset")].data == {"reason": "worker_lost", "attempt": 2}
    exact(events, upstream, prompt)
    assert poll["status"] == "succeeded" and poll["attempt"] == 2
    assert recovery_s < 20
    heir = stack.workers[1].log_path.read_text(errors="replace")
    assert f"job {job['id']}: not queued (already running" in heir  # the broker's redelivery
    assert f"event=job.restarted job={job['id']} attempt=2" in heir  # the lease's restart
    record("amqp_worker_killed", recovery_s=round(recovery_s, 1), lease_ttl_s=3.0)


def stack_connections(queue: str) -> list[str]:
    """The pids of the RabbitMQ connections Sluice's processes of ``queue`` opened (by the
    ``connection_name`` they send)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid",
         "client_properties"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    name = re.compile(r'\{"connection_name","[^"]* queue=' + re.escape(queue) + r'"\}')
    return [line.split("\t", 1)[0] for line in listed.stdout.splitlines() if name.search(line)]


def close_connections(pids: list[str]) -> None:
    closing = [
        subprocess.Popen(
            ["rabbitmqctl", "-q", "close_connection", pid, "test"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in pids
    ]
    for process in closing:
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output


def test_a_broker_connection_drop_mid_answer_loses_nothing(
    amqp_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    """Every connection of the stack (the worker's consumer, the gateway's publishers, its
    depth reads) closed by RabbitMQ while answers stream: they finish exactly (Celery
    reconnects; the running jobs go on, their messages come back and the claim skips
    them), and a job submitted meanwhile runs or is refused with 503 and Retry-After."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl to close the stack's connections")
    stack = amqp_stack(workers=1)
    queue = stack.settings.queue
    with stack.client() as client:
        prompts = [f"drop {i} {secrets.token_hex(3)}" for i in range(3)]
        running = [ask(client, p, model="slow;delay=0.05;words=60") for p in prompts]
        for job in running:
            wait_for_text(client, job["url"], 10, timeout=20)
        pids = stack_connections(queue)
        assert len(pids) >= 2, pids  # the worker's and the gateway's, at least
        close_connections(pids)
        late_prompt = f"during the drop {secrets.token_hex(3)}"
        late = client.post(
            "/v1/jobs",
            json={
                "model": "openai;words=8",
                "messages": [{"role": "user", "content": late_prompt}],
            },
        )
        with ThreadPoolExecutor(4) as pool:
            finished = list(pool.map(lambda j: follow(client, j["events_url"]), running))
        for prompt, events in zip(prompts, finished, strict=True):
            exact(events, upstream, prompt)
            assert [e.event for e in events].count("started") == 1  # one attempt, no reset
        if late.status_code == 202:
            exact(follow(client, late.json()["events_url"]), upstream, late_prompt)
        else:
            assert late.status_code == 503 and int(late.headers["Retry-After"]) > 0
        worker_log = stack.workers[0].log_path.read_text(errors="replace")
        assert "Connection to broker lost" in worker_log  # the drop did reach the worker
        record("amqp_connection_drop", connections_closed=len(pids), running_jobs=3,
               submitted_during_drop=late.status_code, lost=0, duplicated=0)  # fmt: skip
        # the worker reconnected and takes new jobs
        again = f"after the drop {secrets.token_hex(3)}"
        exact(follow(client, ask(client, again)["events_url"]), upstream, again)
    wait_until(lambda: len(stack_connections(queue)) >= 2, 10)


def test_the_queue_depth_readiness_and_the_full_queue_read_rabbitmq(
    amqp_stack: Callable[..., Stack],
) -> None:
    stack = amqp_stack(workers=0, max_queued=3)
    with stack.client() as client:
        statuses = [ask(client, f"q{i}") and 202 for i in range(3)]
        time.sleep(1.2)  # the gateway's depth is at most a second old
        refused = client.post(
            "/v1/jobs", json={"model": "openai", "messages": [{"role": "user", "content": "x"}]}
        )
        statuses.append(refused.status_code)
        assert statuses == [202, 202, 202, 503]
        assert refused.json()["error"]["type"] == "overloaded"
        assert refused.headers["retry-after"].isdigit()
        ready = client.get("/readyz")
        queue = ready.json()["checks"]["queue"]
        assert ready.status_code == 503
        assert queue == {"status": "failing", "depth": 3, "limit": 3, "broker": "amqp"}
        scraped = client.get("/metrics").text
        assert "sluice_queue_depth 3.0" in scraped
    # and read directly: a queue no one has declared yet is empty, not an error
    broker = AmqpBroker(AMQP_URL, cache_s=0)
    try:
        assert broker.queue_depth(f"sluice-never-declared-{secrets.token_hex(3)}") == 0
        assert broker.queue_depth(stack.settings.queue) == 3
        broker.ping()
    finally:
        broker.close()


def test_a_queued_job_whose_message_never_went_out_is_sent_again(
    amqp_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    """A gateway killed between storing a job and sending its message, on RabbitMQ: the
    queue holds no message ready, so a worker's reaper sends it once the job has waited a
    lease."""
    stack = amqp_stack(workers=0, lease_ttl=2.0, reaper_interval=0.5)
    store = JobStore(make_redis(stack.settings), stack.settings)
    prompt = f"never sent {secrets.token_hex(3)}"
    job, _ = store.create(
        model="openai;words=6",
        request={"model": "openai;words=6", "messages": [{"role": "user", "content": prompt}]},
        prompt_tokens=3,
        truncated_messages=0,
    )
    stack.start_worker()
    with stack.client() as client:
        events = follow(client, f"/v1/jobs/{job.id}/events")
    exact(events, upstream, prompt)
    log = stack.workers[0].log_path.read_text(errors="replace")
    assert f"event=job.sent_again job={job.id}" in log
    store.redis.close()

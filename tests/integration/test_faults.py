"""Faults provoked for real: workers SIGKILLed, duplicate deliveries, upstream refusals,
connect timeouts, a gateway crash, Redis restarting, a full queue. Each test records what
it measured in test-artifacts/reliability.json (summarised in docs/reliability.md)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from devtools.local_redis import RedisServer
from sluice.redis_client import make_redis
from sluice.store import JobStore
from sluice.task_queue import RUN_JOB_TASK, make_celery
from tests.helpers.stack import ProcessLogs, Stack
from tests.helpers.support import (
    ARTIFACTS,
    Received,
    create_job,
    follow,
    free_port,
    last_prompt,
    read_stream,
    status_of,
    text_of,
    upstream_body,
    wait_for_text,
    wait_until,
)

pytestmark = pytest.mark.integration
MEASURED = ARTIFACTS / "reliability.json"


def record(name: str, **figures: object) -> None:
    MEASURED.parent.mkdir(exist_ok=True)
    data = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    data[name] = figures
    MEASURED.write_text(json.dumps(data, indent=2, sort_keys=True))


def after_last_reset(events: list[Received]) -> list[Received]:
    resets = [i for i, e in enumerate(events) if e.event == "reset"]
    return events[resets[-1] + 1 :] if resets else events


def kill_group(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


# -- workers --------------------------------------------------------------------------------


def test_a_worker_killed_mid_stream_restarts_the_job_on_another(
    make_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    stack = make_stack(workers=1)
    prompt = f"survive {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(
            client, model="slow;delay=0.03;words=60", messages=[{"role": "user", "content": prompt}]
        )
        wait_for_text(client, job["url"], 30, timeout=20)
        victim = stack.workers[0]
        stack.start_worker()  # the one that will take over
        killed_at = time.monotonic()
        kill_group(victim)  # SIGKILL: no shutdown, no ack, no goodbye
        events = follow(client, job["events_url"])
        recovered = next(e for e in events if e.event == "started" and e.data["attempt"] == 2)
        recovery_s = time.monotonic() - killed_at
        poll = client.get(job["url"]).json()
    kinds = [e.event for e in events]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert kinds.count("reset") == 1 and kinds[-1] == "done"
    reset = events[kinds.index("reset")]
    assert reset.data == {"reason": "worker_lost", "attempt": 2}
    assert recovered.id == reset.id + 1
    text = text_of(events)
    assert text == expected_reply(upstream_body(upstream, prompt))
    assert poll["status"] == "succeeded" and poll["attempt"] == 2
    assert poll["choices"][0]["content"] == text
    assert recovery_s < 30
    record("worker_killed", recovery_s=round(recovery_s, 1), lost=0, duplicated=0)


def test_a_worker_killed_holding_an_unclaimed_message_does_not_strand_its_job(
    make_stack: Callable[..., Stack], upstream: FakeUpstream, process_logs: ProcessLogs
) -> None:
    """A worker that took a job's message and died before claiming the job left the
    message in kombu's ``unacked`` hash and the job ``queued`` for the visibility timeout
    (two hours). A consumer process that takes the message and dies reproduces that
    exactly; a live worker's reaper must send the message again within a lease."""
    stack = make_stack(workers=0, lease_ttl=3.0)
    prompt = f"stranded {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(client, messages=[{"role": "user", "content": prompt}])
        take_and_die = (
            "import os, sys; from kombu import Connection;"
            "queue = Connection(sys.argv[1]).SimpleQueue(sys.argv[2]);"
            "message = queue.get(timeout=10);"
            "print(message.headers['id'], flush=True); os._exit(0)"
        )
        taken = subprocess.run(
            [sys.executable, "-c", take_and_die, stack.settings.redis_url, stack.settings.queue],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert taken.stdout.strip() == job["id"]
        assert client.get(job["url"]).json()["status"] == "queued"
        started = time.monotonic()
        stack.start_worker()
        events = follow(client, job["events_url"])
        recovered_s = time.monotonic() - started
    assert events[-1].event == "done"
    assert [e.event for e in events].count("started") == 1
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    assert recovered_s < 3.0 + 2 * stack.settings.reaper_interval + 10
    log = stack.workers[0].log_path.read_text(errors="replace")
    assert f"event=job.sent_again job={job['id']}" in log
    record("unclaimed_message_of_a_dead_worker", recovered_s=round(recovered_s, 1))


def test_a_worker_killed_mid_burst_leaves_no_job_queued(make_stack: Callable[..., Stack]) -> None:
    """The chaos soak's finding as its issue describes it: 30 jobs at once, one of two
    workers SIGKILLed while they arrive. Every job ends, each with one answer."""
    stack = make_stack(workers=2)
    with stack.client() as client, ThreadPoolExecutor(8) as pool:
        submits = [
            pool.submit(create_job, client, model="slow;delay=0.01;words=30") for _ in range(30)
        ]
        time.sleep(0.15)
        kill_group(stack.workers[0])
        jobs = [future.result() for future in submits]
        finished = list(pool.map(lambda job: follow(client, job["events_url"]), jobs))
    for events in finished:
        kinds = [e.event for e in events]
        assert kinds[-1] == "done" and [e.id for e in events] == list(range(1, len(events) + 1))


def test_a_job_whose_workers_keep_dying_fails_with_worker_lost(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(workers=1, max_attempts=1)
    with stack.client() as client:
        job = create_job(client, model="slow;delay=0.05;words=200")
        wait_for_text(client, job["url"], 10, timeout=20)
        kill_group(stack.workers[0])
        stack.start_worker()  # its reaper finds the dead lease
        started = time.monotonic()
        events = follow(client, job["events_url"])
        failed_s = time.monotonic() - started
    assert events[-1].event == "error"
    assert events[-1].data["error"]["type"] == "worker_lost"
    assert "reset" not in [e.event for e in events]
    record("worker_lost_at_attempt_limit", seconds_to_error=round(failed_s, 1))


def test_a_duplicate_delivery_does_not_start_a_second_stream(
    make_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    stack = make_stack(workers=1)
    prompt = f"once {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(
            client, model="slow;delay=0.02;words=30", messages=[{"role": "user", "content": prompt}]
        )
        celery = make_celery(stack.settings)
        for _ in range(3):  # the broker redelivers the same message
            celery.send_task(RUN_JOB_TASK, args=[job["id"]], queue=stack.settings.queue)
        events = follow(client, job["events_url"])
        time.sleep(1)
        final = client.get(job["url"]).json()
    assert [e.event for e in events].count("started") == 1
    assert final["last_event_id"] == events[-1].id and final["attempt"] == 1
    sent = [r for r in upstream.requests if last_prompt(r) == prompt]
    assert len(sent) == 1
    record("duplicate_delivery", deliveries=4, upstream_requests=1, started_events=1)


# -- upstream faults ----------------------------------------------------------------------


def test_a_rate_limit_before_the_first_delta_is_retried_after_retry_after(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    model = f"http-429-then-ok;failures=1;retry_after=1;tag={secrets.token_hex(3)}"
    started = time.monotonic()
    job = create_job(client, model=model)
    events = read_stream(client, job["events_url"])
    elapsed = time.monotonic() - started
    assert events[-1].event == "done"
    assert [e.event for e in events].count("started") == 1
    assert elapsed >= 1.0  # Retry-After was honoured
    assert len([r for r in upstream.requests if r.body and r.body.get("model") == model]) == 2
    record("upstream_429_then_ok", seconds=round(elapsed, 2), retries=1)


def test_server_errors_are_retried_then_reported(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    model = f"http-503-then-ok;failures=2;tag={secrets.token_hex(3)}"
    assert read_stream(client, create_job(client, model=model)["events_url"])[-1].event == "done"
    always = f"http-500;tag={secrets.token_hex(3)}"
    events = read_stream(client, create_job(client, model=always)["events_url"])
    assert events[-1].data["error"]["status"] == 500
    assert len([r for r in upstream.requests if r.body and r.body.get("model") == always]) == 3


def test_a_long_retry_after_fails_at_once(client: httpx.Client, upstream: FakeUpstream) -> None:
    model = f"http-429;retry_after=600;tag={secrets.token_hex(3)}"
    started = time.monotonic()
    events = read_stream(client, create_job(client, model=model)["events_url"])
    assert events[-1].data["error"]["type"] == "upstream_rate_limited"
    assert time.monotonic() - started < 5
    assert len([r for r in upstream.requests if r.body and r.body.get("model") == model]) == 1


def test_no_silent_retry_after_text_was_sent(client: httpx.Client, upstream: FakeUpstream) -> None:
    model = f"truncated;fail_after=3;tag={secrets.token_hex(3)}"
    events = read_stream(client, create_job(client, model=model)["events_url"])
    assert [e.event for e in events].count("delta") == 3
    assert events[-1].event == "error"
    assert len([r for r in upstream.requests if r.body and r.body.get("model") == model]) == 1


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port whose accept queue is full: connecting to it hangs until the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    yield f"http://127.0.0.1:{port}/v1"
    for s in [*fillers, listener]:
        s.close()


def test_connect_timeouts_and_refusals_are_retried_then_reported(
    make_stack: Callable[..., Stack], blackhole: str
) -> None:
    stack = make_stack(
        workers=1, openai_base_url=blackhole, upstream_connect_timeout=0.5, upstream_retries=1
    )
    with stack.client() as client:
        started = time.monotonic()
        events = read_stream(client, create_job(client)["events_url"])
        elapsed = time.monotonic() - started
    error = events[-1].data["error"]
    assert error["type"] == "upstream_timeout" and "connect" in error["message"]
    assert 1.0 <= elapsed < 10  # two connect timeouts of 0.5 s and a backoff between
    closed_port = f"http://127.0.0.1:{free_port()}/v1"
    refused = make_stack(workers=1, openai_base_url=closed_port, upstream_retries=1)
    with refused.client() as client:
        events = read_stream(client, create_job(client)["events_url"])
    assert events[-1].data["error"]["type"] == "upstream_connection_error"
    record("upstream_connect_timeout", seconds_to_error=round(elapsed, 2))


# -- gateway and Redis -----------------------------------------------------------------------


def test_a_client_of_a_killed_gateway_gets_exactly_the_rest_from_another(
    make_stack: Callable[..., Stack], upstream: FakeUpstream, process_logs: ProcessLogs
) -> None:
    stack = make_stack(workers=1)
    other = make_stack(workers=0)
    other.gateway.stop()
    other.gateway.settings = stack.settings  # same deployment: same prefix and queue
    other.gateway.start()
    prompt = f"gateway crash {secrets.token_hex(3)}"
    with stack.client() as first, other.client() as second:
        job = create_job(
            first, model="slow;delay=0.03;words=80", messages=[{"role": "user", "content": prompt}]
        )
        seen = read_stream(first, job["events_url"], limit=8)
        stack.gateway.kill()
        rest = follow_from(second, job["events_url"], seen[-1].id)
    events = seen + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    record("gateway_killed", lost=0, duplicated=0)


def follow_from(client: httpx.Client, path: str, after: int) -> list[Received]:
    return read_stream(client, path, headers={"Last-Event-ID": str(after)})


def test_a_redis_restart_mid_stream_neither_loses_nor_hangs(
    make_stack: Callable[..., Stack], upstream: FakeUpstream, own_redis: RedisServer
) -> None:
    stack = make_stack(workers=1, redis_url=own_redis.url)
    prompt = f"redis restart {secrets.token_hex(3)}"
    with stack.client() as client:
        job = create_job(
            client,
            model="slow;delay=0.03;words=100",
            messages=[{"role": "user", "content": prompt}],
        )
        seen = read_stream(client, job["events_url"], limit=10)
        started = time.monotonic()
        own_redis.restart(down_for=1.5)
        rest = follow(client, job["events_url"], after=seen)
        elapsed = time.monotonic() - started
        poll = client.get(job["url"]).json()
    events = seen + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done" and poll["status"] == "succeeded"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    record("redis_restarted", downtime_s=1.5, seconds_to_done=round(elapsed, 1), lost=0)


def test_jobs_submitted_through_a_redis_restart_run_or_are_refused_with_retry_after(
    make_stack: Callable[..., Stack], own_redis: RedisServer
) -> None:
    """Jobs created while Redis restarted (down 1.7 s in the soak, 3 s here) used to end
    ``service_unavailable: the job could not be queued``, and a retry with the same
    Idempotency-Key returned that failed job. Now each submission is accepted and runs,
    or is refused with 503 and Retry-After, and its retry (same key) gets a job that runs."""
    stack = make_stack(workers=1, redis_url=own_redis.url)
    refused: list[int] = []
    restarted = threading.Event()

    def submit(i: int, client: httpx.Client) -> dict:
        body = {"model": "openai;words=5", "messages": [{"role": "user", "content": f"r{i}"}]}
        headers = {"Idempotency-Key": f"restart-{i}"}
        for _ in range(60):
            try:
                response = client.post("/v1/jobs", json=body, headers=headers)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if response.status_code == 202:
                return response.json()
            assert response.status_code == 503, response.text
            refused.append(int(response.headers["Retry-After"]))
            time.sleep(0.5)
        raise AssertionError(f"job {i} was never accepted")

    def submitter(first: int, client: httpx.Client) -> list[dict]:
        """Back to back, so that some job is always between being stored and queued."""
        jobs = []
        while not restarted.is_set() or len(jobs) < 5:
            jobs.append(submit(first + len(jobs), client))
        return jobs

    def crash_and_restart() -> None:
        time.sleep(1.0)
        own_redis.kill()  # SIGKILL: a crash (the append-only file keeps what it acked)
        time.sleep(1.7)
        own_redis.start()
        time.sleep(1.0)
        restarted.set()

    with stack.client() as client, ThreadPoolExecutor(17) as pool:
        crash = pool.submit(crash_and_restart)
        batches = [pool.submit(submitter, 1000 * n, client) for n in range(16)]
        crash.result()
        jobs = [job for batch in batches for job in batch.result()]
        finished = list(pool.map(lambda job: follow(client, job["events_url"]), jobs))
    failures = [events[-1].data for events in finished if events[-1].event != "done"]
    assert failures == []
    assert all(seconds > 0 for seconds in refused)
    record("submits_through_redis_restart", jobs=len(jobs), refused_with_503=len(refused))


def test_a_worker_keeps_serving_while_it_reconnects_to_a_crashed_redis(
    make_stack: Callable[..., Stack], own_redis: RedisServer
) -> None:
    """kombu's wait between attempts to reach the broker froze the whole gevent worker
    (the chaos soak: its streams' reads timed out with data unread): its metrics
    endpoint, served by a thread of the same event loop, must keep answering."""
    stack = make_stack(workers=0, redis_url=own_redis.url)
    port = free_port()
    stack.start_worker(env={"SLUICE_WORKER_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"
    assert httpx.get(url, timeout=5).status_code == 200
    own_redis.kill()
    answered, deadline = 0, time.monotonic() + 2.5
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answered += httpx.get(url, timeout=0.5).status_code == 200
        time.sleep(0.05)
    own_redis.start()
    assert answered >= 10, f"the worker answered {answered} times in 2.5 s without Redis"
    with stack.client() as client:  # and it works again
        assert follow(client, create_job(client)["events_url"])[-1].event == "done"


# -- backpressure -----------------------------------------------------------------------------


def test_a_full_queue_answers_503_with_retry_after(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(workers=0, max_queued=3)
    with stack.client() as client:
        statuses = []
        for _ in range(5):
            response = client.post(
                "/v1/jobs", json={"model": "openai", "messages": [{"role": "user", "content": "x"}]}
            )
            statuses.append(response.status_code)
        assert statuses == [202, 202, 202, 503, 503]
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["type"] == "overloaded"
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "openai", "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 503 and "retry-after" in chat.headers
    record("queue_full", max_queued=3, accepted=3, refused_with_503=2)


def test_a_slow_reader_does_not_grow_the_gateway(
    make_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    stack = make_stack(workers=1)
    assert stack.gateway.process is not None
    pid = stack.gateway.process.pid
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=True
    ).stdout.split()

    def rss_kb() -> int:
        total = 0
        for child in children:
            status = Path(f"/proc/{child}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmRSS"))
            total += int(line.split()[1])
        return total

    prompt = f"slow reader {secrets.token_hex(3)}"
    store = JobStore(make_redis(stack.settings), stack.settings)
    with stack.client() as client:
        # warm both gateway processes first (a process's first stream starts its subscriber
        # thread and connection): the growth measured is the unread stream's alone
        warm = create_job(client, model="slow;delay=0.05;words=20")

        def read_warm(_: int) -> int:
            with stack.client() as other:  # a connection of its own: either process
                return len(read_stream(other, warm["events_url"]))

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(read_warm, range(6)))
        job = create_job(
            client, model="openai;words=20000", messages=[{"role": "user", "content": prompt}]
        )
        before = rss_kb()
        sock = socket.create_connection(("127.0.0.1", stack.gateway.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {job['events_url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # watch the job in Redis, not through the gateway: its memory is what we measure
        wait_until(lambda: status_of(store, job["id"]) == "succeeded", 60)
        time.sleep(1)
        grown_kb = rss_kb() - before
        sock.close()
        with client.stream("GET", job["events_url"]) as response:
            stream_kb = sum(len(chunk) for chunk in response.iter_bytes()) // 1024
        events = read_stream(client, job["events_url"])
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    # an unread stream must not be buffered in the gateway
    assert grown_kb < stream_kb / 2, f"grew {grown_kb} kB for an unread stream of {stream_kb} kB"
    record("slow_reader", events=len(events), stream_kb=stream_kb, gateway_rss_growth_kb=grown_kb)

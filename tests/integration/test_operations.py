"""What operators rely on: readiness, metrics, lifecycle logs, graceful shutdown."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from tests.helpers.stack import ProcessLogs, RestartableGateway, Stack
from tests.helpers.support import (
    create_job,
    free_port,
    read_stream,
    text_of,
    upstream_body,
    wait_for_text,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_readyz_reports_redis_workers_and_queue(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "ok"
    assert checks["workers"]["alive"] >= 1
    assert checks["queue"]["status"] == "ok" and checks["queue"]["limit"] > 0
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_fails_without_a_live_worker_and_when_the_queue_is_full(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(workers=0, max_queued=2)
    with stack.client() as c:
        not_ready = c.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["workers"] == {"status": "failing", "alive": 0}
        assert c.get("/healthz").status_code == 200  # alive, just not ready
        stack.start_worker()
        wait_until(lambda: c.get("/readyz").status_code == 200, 20)
        stack.workers[0].terminate()  # a warm shutdown leaves the registry at once
        stack.workers[0].wait(30)
        wait_until(lambda: c.get("/readyz").status_code == 503, 20)
        for _ in range(2):
            c.post("/v1/jobs", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        queue = c.get("/readyz").json()["checks"]["queue"]
        assert queue == {"status": "failing", "depth": 2, "limit": 2, "broker": "redis"}


def job_lines(logs: ProcessLogs, job_id: str) -> list[str]:
    """The job's log lines from every process's log, in time order (each line starts with
    its timestamp; the files come in whatever order the directory lists them)."""
    lines = [
        line
        for path in logs.directory.glob("*.log")
        for line in path.read_text(errors="replace").splitlines()
        if f"job={job_id}" in line or f'"job": "{job_id}"' in line
    ]
    return sorted(lines, key=lambda line: line[:23])


def test_each_job_leaves_one_structured_line_per_lifecycle_step(
    client: httpx.Client, process_logs: ProcessLogs
) -> None:
    secret_words = f"do not log me {secrets.token_hex(4)}"
    job = create_job(client, messages=[{"role": "user", "content": secret_words}])
    read_stream(client, job["events_url"])
    time.sleep(0.3)
    lines = job_lines(process_logs, job["id"])
    events = [line.split("event=")[1].split()[0] for line in lines]
    assert events == ["job.accepted", "job.started", "job.first_delta", "job.succeeded"]
    succeeded = lines[-1]
    for field in ("prompt_tokens=", "completion_tokens=", "duration_s=", "finish=stop"):
        assert field in succeeded
    failed = create_job(client, model="http-401")
    read_stream(client, failed["events_url"])
    time.sleep(0.3)
    assert any("event=job.failed" in line and "upstream_status=401" in line
               for line in job_lines(process_logs, failed["id"]))  # fmt: skip
    everything = "".join(p.read_text(errors="replace") for p in process_logs.directory.glob("*"))
    assert secret_words not in everything


def test_logs_can_be_json_lines(
    make_stack: Callable[..., Stack], process_logs: ProcessLogs
) -> None:
    stack = make_stack(workers=0)
    stack.start_worker(env={"SLUICE_LOG_FORMAT": "json"})
    with stack.client() as c:
        job = create_job(c)
        read_stream(c, job["events_url"])
    time.sleep(0.3)
    lines = [
        json.loads(line)
        for path in process_logs.directory.glob(f"{stack.name}-worker*.log")
        for line in path.read_text().splitlines()
        if line.startswith("{") and job["id"] in line
    ]
    # the lifecycle records; Celery's own lines name the job too (its id is the task id)
    records = [r for r in lines if "event" in r]
    assert [r["event"] for r in records] == ["job.started", "job.first_delta", "job.succeeded"]
    assert all(r["job"] == job["id"] and r["level"] == "info" for r in records)


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples whose line starts with ``name``."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_gateway_metrics_count_streams_and_read_the_cluster_from_redis(
    client: httpx.Client,
) -> None:
    job = create_job(client, model="slow;delay=0.1;words=30")
    with client.stream("GET", job["events_url"]) as response:
        next(response.iter_bytes())
        during = client.get("/metrics")
        assert during.headers["content-type"].startswith("text/plain")
        assert metric(during.text, "sluice_active_streams") >= 1
        assert metric(during.text, "sluice_jobs_running") >= 1
        assert metric(during.text, "sluice_workers_alive") >= 1
        assert "sluice_queue_depth" in during.text
    client.post(f"{job['url']}/cancel")
    time.sleep(0.5)
    after = client.get("/metrics").text
    assert metric(after, "sluice_active_streams") == 0
    assert metric(after, 'sluice_jobs_total{status="cancelled"}') >= 1


def test_worker_metrics_cover_jobs_latency_errors_and_tokens(
    make_stack: Callable[..., Stack],
) -> None:
    from tests.helpers.support import free_port

    port = free_port()
    stack = make_stack(workers=0)
    stack.start_worker(env={"SLUICE_WORKER_METRICS_PORT": str(port)})
    with stack.client() as c:
        for model in ("openai", "openai", "http-401"):
            read_stream(c, create_job(c, model=model)["events_url"])
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert metric(text, 'sluice_jobs_total{status="succeeded"}') == 2
    assert metric(text, 'sluice_jobs_total{status="failed"}') == 1
    assert metric(text, 'sluice_upstream_errors_total{status="401"}') == 1
    assert metric(text, "sluice_time_to_first_delta_seconds_count") == 2
    assert metric(text, "sluice_job_duration_seconds_count") == 3
    assert metric(text, 'sluice_tokens_total{kind="completion"}') > 0


def test_a_gateway_given_sigterm_ends_its_streams_at_once_and_clients_resume_elsewhere(
    make_stack: Callable[..., Stack], upstream: FakeUpstream, gateway_url: str
) -> None:
    stack = make_stack(workers=1)
    prompt = f"drain {secrets.token_hex(3)}"
    with stack.client() as c:
        job = create_job(
            c, model="slow;delay=0.05;words=80", messages=[{"role": "user", "content": prompt}]
        )
        seen = read_stream(c, job["events_url"], limit=5)
        with c.stream("GET", job["events_url"], headers={"Last-Event-ID": str(seen[-1].id)}) as r:
            chunks = r.iter_bytes()
            next(chunks)
            started = time.monotonic()
            assert stack.gateway.process is not None
            stack.gateway.process.terminate()  # SIGTERM to the gunicorn master
            rest_raw = b"".join(chunks)  # the stream ends, without a terminal event
            ended_s = time.monotonic() - started
        assert b"event: done" not in rest_raw and ended_s < 5
        assert stack.gateway.process.wait(15) == 0
        # the client reconnects to another gateway of the deployment, with its last id
        other = RestartableGateway(stack.settings, stack.logs, free_port(), name="drain-b")
        other.start()
        try:
            with httpx.Client(base_url=other.url, timeout=30) as c2:
                ids = [int(x[4:]) for x in rest_raw.splitlines() if x.startswith(b"id: ")]
                last = max(ids, default=seen[-1].id)
                rest = read_stream(c2, job["events_url"], headers={"Last-Event-ID": str(last)})
                full = read_stream(c2, job["events_url"])
        finally:
            other.stop()
    assert rest[-1].event == "done"
    assert text_of(full) == expected_reply(upstream_body(upstream, prompt))


def test_a_worker_given_sigterm_hands_its_jobs_back_at_once(
    make_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    stack = make_stack(workers=1)
    prompt = f"hand back {secrets.token_hex(3)}"
    with stack.client() as c:
        job = create_job(
            c, model="slow;delay=0.05;words=100", messages=[{"role": "user", "content": prompt}]
        )
        read_stream(c, job["events_url"], limit=5)
        stack.start_worker()
        first = stack.workers[0]
        started = time.monotonic()
        first.terminate()  # SIGTERM: Celery's warm shutdown
        assert first.wait(20) == 0
        exit_s = time.monotonic() - started
        events = read_stream(c, job["events_url"])
    resets = [e for e in events if e.event == "reset"]
    assert [r.data for r in resets] == [{"reason": "worker_shutdown", "attempt": 2}]
    assert exit_s < 10  # it did not wait for the 5 s answer to finish streaming... nor hang
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


def test_a_worker_given_sigterm_mid_read_fails_none_of_its_jobs(
    make_stack: Callable[..., Stack], upstream: FakeUpstream
) -> None:
    """The hand-back closes each upstream response while its job may be inside a read;
    whatever urllib3 raises then (an AttributeError on the closed body, seen in the chaos
    soak), the job goes back to the queue: no ``error``, no ``job.failed``, one outcome."""
    stack = make_stack(workers=1)
    prompts = [f"busy reader {secrets.token_hex(3)}" for _ in range(16)]
    with stack.client() as c:
        jobs = [
            create_job(
                c,
                model="slow;delay=0.004;words=1500",
                messages=[{"role": "user", "content": prompt}],
            )
            for prompt in prompts
        ]
        for job in jobs:
            wait_for_text(c, job["url"], 20)
        first = stack.workers[0]
        stack.start_worker()
        first.terminate()  # SIGTERM: Celery's warm shutdown, hand-back
        assert first.wait(20) == 0
        outcomes = [read_stream(c, job["events_url"]) for job in jobs]
    log = first.log_path.read_text(errors="replace")
    assert "job.failed" not in log and "internal_error" not in log
    for job, prompt, events in zip(jobs, prompts, outcomes, strict=True):
        kinds = [e.event for e in events]
        assert "error" not in kinds, (job["id"], events[-1])
        assert kinds[-1] == "done"
        resets = [e.data for e in events if e.event == "reset"]
        assert resets == [{"reason": "worker_shutdown", "attempt": 2}], job["id"]
        assert text_of(events) == expected_reply(upstream_body(upstream, prompt))


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis speaking TLS only, with a self-signed certificate (as PaaS add-ons do)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is needed for the TLS test")
        pytest.skip("needs Debian's redis-server (built with TLS)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file",
         str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
         "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, 10, process)
    yield f"rediss://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def test_the_stack_runs_over_rediss_with_a_self_signed_certificate(
    make_stack: Callable[..., Stack], tls_redis: str, upstream: FakeUpstream
) -> None:
    import redis as redis_lib

    verified = redis_lib.Redis.from_url(tls_redis, socket_connect_timeout=2)
    with pytest.raises(redis_lib.ConnectionError):
        verified.ping()  # the default verifies the certificate, and this one is self-signed
    stack = make_stack(workers=1, redis_url=tls_redis, redis_ssl_cert_reqs="none",
                       rate_limit="100/minute")  # fmt: skip
    prompt = f"over tls {secrets.token_hex(3)}"
    with stack.client() as c:
        assert c.get("/readyz").json()["checks"]["redis"]["status"] == "ok"
        job = create_job(c, messages=[{"role": "user", "content": prompt}])
        events = read_stream(c, job["events_url"])
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))

"""Several processes: any gateway relays any job; a bad key; the README's run command."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.redis_client import make_redis
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs, stack_env, start_gateway, start_worker, wait_ready
from tests.helpers.support import ROOT, create_job, free_port, read_stream, text_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_gateway(settings: Settings, process_logs: ProcessLogs, worker: object) -> Iterator[str]:
    process, url = start_gateway(settings, process_logs, name="gateway-b")
    yield url
    process.terminate()
    process.wait(15)


def test_a_job_is_relayed_by_a_gateway_that_did_not_accept_it(
    client: httpx.Client, second_gateway: str, upstream: FakeUpstream
) -> None:
    prompt = f"cross-process {secrets.token_hex(4)}"
    job = create_job(
        client, model="slow;delay=0.01;words=40", messages=[{"role": "user", "content": prompt}]
    )
    first = read_stream(client, job["events_url"], limit=6)
    with httpx.Client(base_url=second_gateway, timeout=30) as other:
        rest = read_stream(other, job["events_url"], headers={"Last-Event-ID": str(first[-1].id)})
        assert other.get(job["url"]).json()["status"] == "succeeded"
    events = first + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    body = next(r.body for r in upstream.requests if r.body and prompt in str(r.body))
    assert text_of(events) == expected_reply(body)


def test_a_bad_server_key_reads_as_a_bad_key_and_is_stored_nowhere(
    settings: Settings, process_logs: ProcessLogs
) -> None:
    wrong_key = "sk-wrong-" + secrets.token_hex(16)
    bad = settings.with_(openai_api_key=wrong_key, queue=f"{settings.queue}-badkey")
    start_worker(bad, process_logs, name="worker-badkey")
    _process, url = start_gateway(bad, process_logs, name="gateway-badkey")
    with httpx.Client(base_url=url, timeout=30) as client:
        job = create_job(client)
        events = read_stream(client, job["events_url"])
        models = client.get("/v1/models")
    error = events[-1].data["error"]
    assert events[-1].event == "error"
    assert (error["type"], error["status"]) == ("upstream_auth_error", 401)
    assert "Incorrect API key provided" in error["message"]
    assert models.status_code == 401
    assert models.json()["error"]["type"] == "upstream_auth_error"
    r = make_redis(settings)
    for key in r.scan_iter("*"):
        kind = r.type(key)
        values = {
            "string": lambda k: [r.get(k)],
            "list": lambda k: r.lrange(k, 0, -1),
            "hash": lambda k: list(r.hgetall(k).values()),
        }.get(kind, lambda k: [])(key)
        assert not any(wrong_key in str(v) for v in values), key
    for log in process_logs.directory.glob("*badkey*.log"):
        assert wrong_key not in log.read_text(errors="replace")


def test_run_command_starts_redis_the_stack_and_a_labelled_demo_upstream(
    settings: Settings, tmp_path: object
) -> None:
    port = free_port()
    env = stack_env(settings, PORT=str(port), WORKER_CONCURRENCY="5", WEB_CONCURRENCY="1")
    env.pop("OPENAI_API_KEY")
    env.pop("OPENAI_BASE_URL")
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing answers there yet
    env["SLUICE_QUEUE"] = f"{settings.queue}-run"
    log_path = ROOT / "test-artifacts" / "make-run.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "devtools.launcher"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"

        wait_ready(base, launcher, log_path, timeout=60)
        with httpx.Client(base_url=base, timeout=30) as client:
            models = client.get("/v1/models").json()["data"]
            assert models and all(m["owned_by"] == "sluice-demo-upstream" for m in models)
            job = create_job(client, model="sluice-demo")
            events = read_stream(client, job["events_url"])
        assert events[-1].event == "done" and "demo" in text_of(events).lower()
        assert "DEMO upstream" in log_path.read_text()
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    assert launcher.returncode is not None
    log = log_path.read_text()
    # honcho passed SIGTERM on: gunicorn and Celery shut down gracefully
    assert "Warm shutdown" in log and "Shutting down: Master" in log


def test_streams_relay_with_a_redis_connection_per_client_too(
    settings: Settings, process_logs: ProcessLogs, worker: object, upstream: FakeUpstream
) -> None:
    """The benchmark's "before" (bench/per_stream_gateway.py) still streams exactly."""
    _process, url = start_gateway(
        settings, process_logs, name="gateway-own-sub", app="bench.per_stream_gateway:app"
    )
    prompt = f"own subscriber {secrets.token_hex(4)}"
    with httpx.Client(base_url=url, timeout=30) as client:
        job = create_job(client, messages=[{"role": "user", "content": prompt}])
        events = read_stream(client, job["events_url"])
    body = next(r.body for r in upstream.requests if r.body and prompt in str(r.body))
    assert text_of(events) == expected_reply(body)

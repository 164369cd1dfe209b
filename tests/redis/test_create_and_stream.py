"""``POST /v1/jobs`` with ``"stream": true``: the stream exists before the job is queued."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from gateway import create_app
from sluice.settings import Settings

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def app(redis_url: str) -> Iterator[Flask]:
    settings = Settings.from_env(
        redis_url=redis_url, key_prefix="sluice-create-stream", queue="sluice-create-stream-q",
    )  # fmt: skip
    app = create_app(settings)
    yield app
    r = app.extensions["sluice"].redis
    r.delete(settings.queue, *r.keys(f"{settings.key_prefix}:*"))


def subscribers(app: Flask, job_id: str) -> int:
    svc = app.extensions["sluice"]
    [(_channel, count)] = svc.redis.pubsub_numsub(svc.store.keys.channel(job_id))
    return int(count)


def unsubscribed(app: Flask, job_id: str) -> bool:
    """The process let go of the channel (Redis applies the UNSUBSCRIBE a moment later)."""
    deadline = time.monotonic() + 2
    while subscribers(app, job_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    return subscribers(app, job_id) == 0


def test_the_stream_subscribes_before_the_job_is_queued_and_lets_go_when_closed(
    app: Flask,
) -> None:
    svc = app.extensions["sluice"]
    seen: dict[str, Any] = {}

    def send_task(name: str, args: list[str], **_kw: Any) -> None:
        seen["job"] = args[0]
        seen["subscribers"] = subscribers(app, args[0])  # a worker could publish now

    svc.celery.send_task = send_task
    response = app.test_client().post("/v1/jobs", json=GOOD, buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert seen["subscribers"] == 1
    job_id = seen["job"]
    assert response.headers["X-Sluice-Job-Id"] == job_id
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    assert response.headers["X-Sluice-Events-Url"].startswith(f"/v1/jobs/{job_id}/events")
    assert response.headers["Cache-Control"].startswith("no-cache")
    assert svc.hub.channels == 1
    response.close()  # the client left before reading a byte: the subscription goes too
    assert svc.hub.channels == 0
    assert unsubscribed(app, job_id)


def test_a_failed_enqueue_drops_the_subscription_and_withdraws_the_job(app: Flask) -> None:
    """The broker went away between storing the job and sending its message: a 503 with
    Retry-After, nothing left behind, and the client's retry (same Idempotency-Key) gets a
    job that runs (a job that had failed for good used to be returned to it)."""
    svc = app.extensions["sluice"]
    seen: dict[str, str] = {}

    def send_task(name: str, args: list[str], **_kw: Any) -> None:
        seen["job"] = args[0]
        raise ConnectionError("broker down")

    svc.celery.send_task = send_task
    headers = {"Idempotency-Key": "retry-me"}
    response = app.test_client().post("/v1/jobs", json=GOOD, headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["type"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert svc.hub.channels == 0
    assert unsubscribed(app, seen["job"])
    assert svc.store.get(seen["job"]) is None  # withdrawn, with its queued-index entry
    assert svc.store.sent_at(seen["job"]) is None
    sent: list[str] = []
    svc.celery.send_task = lambda name, args, **_kw: sent.append(args[0])
    retry = app.test_client().post("/v1/jobs", json={**GOOD, "stream": False}, headers=headers)
    assert retry.status_code == 202
    job = retry.get_json()
    assert job["id"] != seen["job"] and sent == [job["id"]]
    assert job["status"] == "queued"


def test_cancelling_a_job_that_expires_meanwhile_is_a_404(app: Flask) -> None:
    """The job is found, then its keys expire before the cancel is written: the store
    raises JobGone, which the client gets as the 404 of a job that does not exist."""
    client = app.test_client()
    job = client.post("/v1/jobs", json={**GOOD, "stream": False}).get_json()
    store = app.extensions["sluice"].store
    read = store.transcript

    def expiring(job_id: str) -> Any:
        transcript = read(job_id)
        store.redis.delete(store.keys.job(job_id), store.keys.events(job_id))
        return transcript

    store.transcript = expiring
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 404
    assert response.get_json()["error"]["type"] == "not_found"

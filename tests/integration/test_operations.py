"""What operators rely on: readiness, metrics, lifecycle logs, graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Stack
from tests.support import wait_until

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
        assert queue == {"status": "failing", "depth": 2, "limit": 2}

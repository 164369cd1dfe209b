"""A gevent worker's event loop keeps running while kombu waits to reach the broker again."""

from __future__ import annotations

from tests.helpers.support import json_from_child

# a child process, started as the `celery` command starts a worker: the pool is chosen
# (and kombu imported) before gevent patches, then the worker's app is imported
SCRIPT = """
import json, sys, time
import celery
sys.argv = ["celery", "worker", "--pool", "gevent"]
celery.maybe_patch_concurrency()
import gevent
import kombu.utils.functional as kombu_functional
out = {"blocking_before": kombu_functional.sleep is not time.sleep}
import worker.celery_app  # noqa: F401
ticks = []
ticker = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0.01) for _ in range(1000)])
gevent.sleep(0)
kombu_functional.sleep(0.3)  # what retry_over_time does between attempts
out["ticks_while_kombu_slept"] = len(ticks)
ticker.kill()
print(json.dumps(out))
"""


def test_kombus_retry_sleep_lets_the_streams_run() -> None:
    out = json_from_child(SCRIPT)
    assert out["blocking_before"]  # the import order this works around
    assert out["ticks_while_kombu_slept"] >= 10  # 0 when the sleep blocked the process

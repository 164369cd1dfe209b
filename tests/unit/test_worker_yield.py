"""A job start in a gevent worker lets pending stream events go first, for a bounded time."""

from __future__ import annotations

from tests.helpers.support import json_from_child

# runs in a child process: monkey-patching the test process would change every other test
SCRIPT = """
from gevent import monkey; monkey.patch_all()
import json, time, gevent
from worker.gevent_tuning import yield_to_running_streams

out = {}
t = time.monotonic(); yield_to_running_streams(); out["idle_loop_s"] = time.monotonic() - t

order = []
def stream(n):  # stands for a stream's greenlet, woken by a delta
    order.append(f"delta{n}")
for n in range(3):
    gevent.spawn(stream, n)
yield_to_running_streams()
order.append("start")
out["order"] = order

stop = False
def busy():  # an event loop that never runs out of work
    while not stop:
        gevent.sleep(0)
spinner = gevent.spawn(busy)
gevent.sleep(0)
t = time.monotonic(); yield_to_running_streams(0.05); out["busy_loop_s"] = time.monotonic() - t
stop = True
spinner.join()
print(json.dumps(out))
"""


def test_a_start_waits_for_pending_events_but_never_much_longer_than_its_bound() -> None:
    out = json_from_child(SCRIPT)
    assert out["idle_loop_s"] < 0.05  # nothing pending: no wait
    assert out["order"] == ["delta0", "delta1", "delta2", "start"]
    assert 0.04 <= out["busy_loop_s"] < 1.0  # a loop that is never idle: the bound holds


def test_outside_gevent_there_is_nothing_to_wait_for() -> None:
    import time

    from worker.gevent_tuning import yield_to_running_streams

    started = time.monotonic()
    yield_to_running_streams(5.0)  # pytest's process is not patched: returns at once
    assert time.monotonic() - started < 1.0

"""Both long-running processes freeze their startup heap out of the garbage collector's
scans once they are ready (sluice/heap.py)."""

from __future__ import annotations

from tests.helpers.support import json_from_child

# each check runs in a child process: freezing the test process's heap would change it
GATEWAY = """
import gc, json, types
namespace = {}
exec(open("gunicorn.conf.py").read(), namespace)
before = gc.get_freeze_count()
from gateway.wsgi import app  # gunicorn loads the app, then calls post_worker_init
namespace["post_worker_init"](types.SimpleNamespace(alive=True))
print(json.dumps({"before": before, "after": gc.get_freeze_count()}))
"""

WORKER = """
import gc, json, weakref
from celery.signals import worker_ready
import worker.celery_app as celery_app
before = gc.get_freeze_count()
celery_app._settle_heap()
receivers = [r() if isinstance(r, weakref.ReferenceType) else r for _, r in worker_ready.receivers]
connected = celery_app._settle_heap in receivers
print(json.dumps({"before": before, "after": gc.get_freeze_count(), "connected": connected}))
"""


def test_the_gateway_process_freezes_its_heap_once_the_app_is_loaded() -> None:
    out = json_from_child(GATEWAY)
    assert out["before"] == 0
    assert int(out["after"]) > 10_000  # Flask, Celery, redis-py... all exempt now


def test_the_worker_freezes_its_heap_when_it_is_ready() -> None:
    out = json_from_child(WORKER)
    assert out["connected"] is True
    assert out["before"] == 0
    assert int(out["after"]) > 10_000

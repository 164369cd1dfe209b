"""Short full garbage collections in the long-running processes (gateway, worker).

A full (generation 2) collection walks every object the process tracks, and a gateway or
worker process holds ~84,000 of them in that generation from its imports alone (Flask,
Celery, kombu, redis-py, requests, tiktoken...). While it runs, nothing else does: in the
benchmark such collections took 13-64 ms, and every delta of every stream waited.
``gc.freeze()`` once the process is ready moves those objects to a permanent generation
that collections skip, so a full collection walks only what was created since (the
approach CPython documents for ``gc.freeze`` and Instagram described for its web
servers).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("sluice.heap")


def freeze_startup_heap() -> int:
    """Collect once, then exempt every object alive now from later collections;
    returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("froze %d startup objects out of the garbage collector's scans", frozen)
    return frozen

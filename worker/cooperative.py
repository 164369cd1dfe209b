"""Keeping a gevent worker's event loop free while Celery waits for its broker.

Celery imports ``kombu.utils.functional`` while it chooses the pool, before gevent patches
the standard library, so that module keeps the blocking ``time.sleep`` it imported. kombu
sleeps through it between attempts to reach the broker again (``retry_over_time``: the
consumer's "Trying again in 2.00 seconds…", and publishes retried through an outage): in
a gevent worker that froze the whole process, every running stream with it, for the
retry interval, 2 s and then longer. A stream's upstream read timed out while data sat
unread, and its lease could not be renewed. The chaos soak found it (a worker's metrics
endpoint did not answer for 2.0 s after Redis was killed).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("sluice.worker")


def cooperative_kombu_sleep() -> bool:
    """Point kombu's retry sleep at gevent's, in a gevent-patched process; returns whether
    it had to (False: not patched, or kombu already sleeps cooperatively)."""
    from gevent import monkey

    if not monkey.is_module_patched("time"):
        return False
    import kombu.utils.functional as kombu_functional

    if kombu_functional.sleep is not monkey.get_original("time", "sleep"):
        return False
    kombu_functional.sleep = time.sleep  # gevent's, since time is patched
    log.debug("kombu's retry sleep now yields to the event loop")
    return True
